//! Function transport and build identity: how a `TASK` frame names the code
//! a worker runs, and why the worker may trust the name.
//!
//! procpool needs no registration of task functions. A task's
//! [`Target`](crate::protocol::message::Target) carries three numbers:
//!
//! * `runner`: the [`FunctionId`] of a [`Runner`] record, the chunk runner
//!   monomorphised for the task's kernel (its argument and result types,
//!   and for `starmap` the function item);
//! * `func`: the [`FunctionId`] of the task function itself, when it travels
//!   as a fn pointer (`apply`, `map`, `imap`...); `0` when the kernel's type
//!   already names it (`starmap`, whose function is a fn item);
//! * `signature`: a hash of the kernel's type name. The runner compares it
//!   with its own before it touches `func`, so a runner and a function of
//!   mismatched types are refused instead of called.
//!
//! A `FunctionId` is a distance in bytes from [`anchor`](id::anchor), a
//! fixed function of this crate; a worker adds its own `anchor`'s address.
//!
//! # The argument that makes this sound
//!
//! The distance between two places of one image is the same in every
//! process that runs that build, wherever the loader put it (ASLR moves the
//! whole image, not single functions). So the address a worker computes is
//! the one the parent named, **provided** the worker runs the same build as
//! the parent, the ids were made in the image that holds `anchor`, and the
//! ids come from the parent. These hold because:
//!
//! 1. **Same build.** The parent starts workers from the file of the image
//!    that holds procpool's code ([`Image::worker_program`]: its own
//!    executable; a pool whose procpool lies in a shared library is refused).
//!    The worker refuses to serve unless that image's device, inode and
//!    build id ([`Identity`]) match the parent's, before its first task.
//! 2. **Ids of this image.** The parent makes ids only from real runner
//!    records and function pointers, and refuses a function that lies
//!    outside the image's code (from a shared library).
//! 3. **Ids from the parent.** A worker serves only a channel whose other
//!    end the parent made: it checks the socket's peer credentials (the
//!    parent's pid, our own user) and refuses to run in a process the kernel
//!    marked secure-execution (setuid, setgid, file capabilities), where
//!    the environment and descriptors come from a less privileged user (see
//!    `worker::child`).
//!
//! # Failing closed
//!
//! As a last line against a corrupt or forged frame, a worker calls only a
//! `runner` id that names a real [`Runner`] record of its image (see
//! [`runner`]): an id that names any other code or data is refused.
//! The `func` of a fn pointer task is only checked to lie in the image's
//! code: a fn pointer carries no mark that could be checked, and all the
//! runner can verify is its own signature. Given point 3, whoever can send
//! a frame is the parent itself, which can run any code anyway.
//!
//! `starmap` makes the value of a fn item type in the worker instead of
//! sending a pointer ([`fn_item`]). Telling a fn item from a closure in
//! generic code is possible only through the type's name, whose format
//! rustc does not promise; so the build script checks the format with the
//! very compiler that builds procpool, and without that check `starmap`
//! fails to compile (it fails closed at compile time).

pub(crate) mod fn_item;
mod id;
mod image;
pub(crate) mod runner;

pub(crate) use id::{FunctionId, resolve, signature_of};
pub(crate) use image::{Identity, Image};
pub(crate) use runner::Runner;
