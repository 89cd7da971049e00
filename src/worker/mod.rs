//! Both ends of a worker: the parent's handle on a child process
//! ([`handle`]) and the relay of its output to the parent's terminal
//! ([`output`]); the child's side: the constructor that starts it
//! (`boot`) and its main loop ([`child`]), which sends the results of
//! short tasks together (`replies`).

mod boot;
mod bring_up;
pub(crate) mod child;
pub(crate) mod handle;
pub(crate) mod output;
mod replies;
