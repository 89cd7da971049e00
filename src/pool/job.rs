//! A job is one chunk on its way to a worker: the encoded `TASK` frame, and
//! the [`Ticket`] that says where its outcome goes.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::error::{DataKind, Error};
use crate::pool::pending::PendingToken;
use crate::pool::shared::Shared;
use crate::protocol::function::Call;
use crate::protocol::items::{self, PushError};
use crate::protocol::{codec, message};
use crate::result::sink::{ChunkMeta, ChunkOutcome, Sink};
use crate::task::Kernel;

/// One chunk to run.
pub(crate) struct Job {
    /// The whole `TASK` frame, ready to send.
    pub(crate) frame: Vec<u8>,
    pub(crate) ticket: Ticket,
    /// Set when the chunk cannot be sent at all (its frame is over the
    /// limit): the job then fails with it instead of being queued.
    pub(crate) unsendable: Option<Error>,
}

impl Job {
    /// Fails the whole chunk without running it.
    pub(crate) fn fail(self, error: Error) {
        self.ticket.complete(ChunkOutcome::Failed(error));
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("id", &self.ticket.id)
            .field("bytes", &self.frame.len())
            .finish()
    }
}

/// Where a chunk's outcome goes. Completed exactly once: explicitly, or on
/// drop with [`Error::Terminated`], so that no waiter is ever left hanging.
pub(crate) struct Ticket {
    pub(crate) id: u64,
    pub(crate) meta: ChunkMeta,
    sink: Option<Arc<dyn Sink>>,
    _pending: PendingToken,
}

impl Ticket {
    pub(crate) fn complete(mut self, outcome: ChunkOutcome<'_>) {
        if let Some(sink) = self.sink.take() {
            sink.complete(&self.meta, outcome);
        }
    }

    /// Drops the ticket without an outcome, for a job the caller is told
    /// about directly: its callbacks do not run, and its result (which
    /// nobody holds) resolves to [`Error::Terminated`].
    pub(crate) fn abandon(mut self) {
        self.sink = None;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(sink) = self.sink.take() {
            sink.complete(&self.meta, ChunkOutcome::Failed(Error::Terminated));
        }
    }
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("id", &self.id)
            .field("meta", &self.meta)
            .finish()
    }
}

/// Encodes chunks of arguments for one task function.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Encoder {
    call: Call,
    max_body: usize,
}

impl Encoder {
    /// The encoder for `func` run by kernel `K`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the function is not part of this
    /// executable's image (it comes from a shared library), so a worker
    /// could not find it.
    pub(crate) fn new<K: Kernel>(shared: &Shared, func: K::Func) -> Result<Encoder, Error> {
        let call = K::call_for(func).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "the task function ({}) is not part of this program's executable (does it come from \
                 a shared library?); workers can only run functions linked into the program",
                std::any::type_name::<K::Func>()
            ))
        })?;
        Ok(Encoder {
            call,
            max_body: shared.start.max_body,
        })
    }

    /// Takes up to `size` items from `items` and encodes them as chunk
    /// number `chunk`, whose first item is at input position `first`.
    /// Returns `None` when `items` has nothing left.
    pub(crate) fn chunk<A: Serialize>(
        &self,
        shared: &Shared,
        items: &mut impl Iterator<Item = A>,
        size: usize,
        chunk: usize,
        first: usize,
        sink: &Arc<dyn Sink>,
    ) -> Option<Job> {
        let mut frame = Vec::new();
        message::start_task(&mut frame);
        let mut holes = Vec::new();
        let mut count = 0u32;
        for item in items.by_ref().take(size) {
            if let Err(e) = items::push_with(&mut frame, items::ARG_VALUE, |buf| codec::encode(&item, buf)) {
                let error = match e {
                    PushError::Body(message) => Error::Encode {
                        index: None,
                        what: DataKind::Argument,
                        message,
                    },
                    PushError::TooLarge(size) => Error::TooLarge {
                        index: None,
                        what: DataKind::Argument,
                        size,
                        limit: u32::MAX as usize,
                    },
                };
                items::push_bytes(&mut frame, items::ARG_HOLE, &[]);
                holes.push((count, error));
            }
            count += 1;
        }
        if count == 0 {
            return None;
        }
        let id = shared.next_job_id();
        let unsendable = message::finish_task(&mut frame, id, self.call, count, self.max_body)
            .err()
            .map(|size| Error::TooLarge {
                index: None,
                what: DataKind::Argument,
                size,
                limit: self.max_body,
            });
        Some(Job {
            frame,
            ticket: Ticket {
                id,
                meta: ChunkMeta {
                    chunk,
                    first,
                    count,
                    holes,
                },
                sink: Some(Arc::clone(sink)),
                _pending: shared.pending.token(),
            },
            unsendable,
        })
    }
}
