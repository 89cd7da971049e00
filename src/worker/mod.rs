//! Both ends of a worker: the parent's handle on a child process
//! ([`handle`]), and the child's side: its main loop ([`child`]), the chunk
//! runner it calls ([`entry`]) and its panic capture ([`panics`]), and the
//! relay of its output to the parent's terminal ([`output`]).

pub(crate) mod child;
pub(crate) mod entry;
pub(crate) mod handle;
pub(crate) mod output;
pub(crate) mod panics;
