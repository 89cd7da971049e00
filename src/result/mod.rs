//! Results: the one-shot [`slot`] behind every [`AsyncResult`], the
//! [`sink`]s that turn a chunk's raw results into values, and the lazy
//! [`imap`] iterators.

pub(crate) mod imap;
pub(crate) mod sink;
pub(crate) mod slot;

pub use imap::{IMap, IMapStream, IMapUnordered};
pub use slot::AsyncResult;
