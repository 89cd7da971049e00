//! The operating-system layer: every system call procpool makes, behind
//! safe functions. It knows nothing of the protocol or the pool. Most of
//! procpool's `unsafe` is here; the rest is in `func` (turning ids back
//! into functions, where the soundness argument lives). The worker's
//! signal handler is here too ([`signal`]). Each `unsafe` block says, in a
//! `SAFETY:` comment, why it holds. Linux only for now (`/proc`, pidfds,
//! `close_range`).

pub(crate) mod confine;
pub(crate) mod fd;
pub(crate) mod held;
pub(crate) mod image;
pub(crate) mod output;
pub(crate) mod process;
pub(crate) mod region;
pub(crate) mod shm;
pub(crate) mod signal;
#[cfg(feature = "redis")]
pub(crate) mod terminate;
pub(crate) mod tree;
