//! Results: the one-shot [`slot`] behind every [`AsyncResult`], the
//! [`sink`]s that turn a chunk's raw results into values, the lazy
//! [`imap`] iterators with their read-ahead [`window`], the
//! [`callbacks`] thread and a call's cancel token, and the count of
//! outstanding work that `join` waits on ([`pending`]). Nothing here knows
//! the pool: it reaches it through [`CancelCall`](slot::CancelCall) and the
//! `imap` producer closure.

pub(crate) mod callbacks;
pub(crate) mod imap;
pub(crate) mod pending;
pub(crate) mod sink;
pub(crate) mod slot;
pub(crate) mod window;

pub use callbacks::{Callbacks, IntoCallbacks, NoCallbacks};
pub use imap::{IMap, IMapStream, IMapUnordered};
pub use slot::AsyncResult;
