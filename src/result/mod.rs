//! Results: the one-shot [`slot`] behind every [`AsyncResult`], the
//! [`sink`]s that turn a chunk's raw results into values, and the lazy
//! [`imap`] iterators with their read-ahead [`window`].

pub(crate) mod imap;
pub(crate) mod sink;
pub(crate) mod slot;
pub(crate) mod window;

pub use imap::{IMap, IMapStream, IMapUnordered};
pub use slot::AsyncResult;
