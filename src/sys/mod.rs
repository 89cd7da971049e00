//! The operating-system layer: the only module with `unsafe` code and raw
//! system calls. Each `unsafe` block says, in a `SAFETY:` comment, why it
//! holds. Linux only for now (the worker image comes from
//! `/proc/self/exe`, the code range from `/proc/self/maps`).

mod ctor;
pub(crate) mod entry;
pub(crate) mod fd;
pub(crate) mod output;
pub(crate) mod process;
pub(crate) mod shm;
