//! The wire protocol between the parent and its workers.
//!
//! Everything that crosses a worker's private channel is a *frame*
//! ([`frame`]): an 8-byte header (body length, message kind) and a body.
//! [`message`] gives the bodies their meaning: the parent sends `Task`
//! frames; a worker answers once with `Ready` (or `Reject`), then one `Done`
//! per task (or a `Fault` before it gives up). A task carries a chunk of
//! items ([`items`]), each encoded on its own by the one serde codec
//! ([`codec`]), so that one bad item fails alone; values of a plain type
//! ([`plain`]) cross as runs of native bytes instead. Which function a task runs
//! is explicit in every `Task` frame: a [`message::Target`], three numbers
//! whose meaning belongs to the `func` layer above.
//!
//! Large byte payloads ([`bytes::Bytes`]) cross as shared memory regions
//! whose descriptors travel beside the frames ([`attach`]).
//!
//! Apart from sending those descriptors, nothing here does I/O on its own;
//! nothing trusts its input: every decoder
//! checks lengths and kinds and reports a [`ProtocolError`].

pub(crate) mod attach;
pub(crate) mod bytes;
pub(crate) mod codec;
pub(crate) mod frame;
pub(crate) mod items;
pub(crate) mod message;
pub(crate) mod plain;

/// Bumped whenever the layout of a frame or message changes.
pub(crate) const PROTOCOL_VERSION: u32 = 7;

/// Something that is not valid protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ProtocolError(pub(crate) String);

impl ProtocolError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ProtocolError(message.into())
    }
}
