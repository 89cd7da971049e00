//! procpool: a pool of long-lived worker **processes** for Rust, what
//! Python's `multiprocessing.Pool` is for Python.
//!
//! A [`Pool`] starts a fixed set of workers (copies of the running program)
//! and runs your functions in them: [`Pool::map`] over many items,
//! [`Pool::apply`] for one, [`Pool::apply_async`] and [`Pool::map_async`]
//! returning an [`AsyncResult`], lazy [`Pool::imap`] iterators. Arguments
//! and results cross to the workers with serde. Everything that can fail is
//! an [`Error`].
//!
//! Why processes, when threads are cheaper: **isolation**. A task that
//! panics, aborts, segfaults, leaks or calls a non-thread-safe C library
//! cannot take your program down; procpool reports what happened to that
//! task, replaces the worker if it died, and goes on.
//!
//! ```
//! use procpool::Pool;
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! let pool = Pool::new(4)?;
//! let squares = pool.map(square, 0..10)?;
//! assert_eq!(squares[9], 81);
//!
//! // A panic fails its task only.
//! let err = pool.apply(|x: u64| if x == 0 { panic!("zero!") } else { 1 / x }, 0).unwrap_err();
//! assert!(err.is_panic());
//! assert_eq!(pool.apply(square, 12)?, 144);
//! # Ok::<(), procpool::Error>(())
//! ```
//!
//! # Python → procpool
//!
//! | Python | procpool |
//! |--------|----------|
//! | `Pool(5)` | [`Pool::new(5)`](Pool::new) |
//! | `Pool()` | [`Pool::builder().build()`](PoolBuilder::build) (one worker per CPU) |
//! | `pool.apply(f, (x,))` | [`pool.apply(f, x)`](Pool::apply) |
//! | `pool.apply_async(f, (x,))` | [`pool.apply_async(f, x)`](Pool::apply_async) |
//! | `apply_async(f, (x,), callback=cb, error_callback=ecb)` | [`pool.with_callback(cb).with_error_callback(ecb).apply_async(f, x)`](Pool::with_callback) |
//! | `pool.map(f, xs)` | [`pool.map(f, xs)`](Pool::map) |
//! | `pool.map(f, xs, chunksize=10)` | [`pool.with_chunksize(10).map(f, xs)`](Pool::with_chunksize) |
//! | `pool.map_async(f, xs, callback=cb)` | [`pool.with_callback(cb).map_async(f, xs)`](Pool::map_async) |
//! | `pool.imap(f, xs)` / `imap_unordered` | [`pool.imap(f, xs)`](Pool::imap) / [`imap_unordered`](Pool::imap_unordered) |
//! | `pool.starmap(f, [(a, b)])` / `starmap_async` | [`pool.starmap(f, [(a, b)])`](Pool::starmap) / [`starmap_async`](Pool::starmap_async) |
//! | `res.get()` / `res.get(timeout)` | [`res.get()`](AsyncResult::get) / [`res.get_timeout(d)`](AsyncResult::get_timeout) |
//! | `res.wait()` / `res.ready()` / `res.successful()` | [`wait`](AsyncResult::wait) / [`ready`](AsyncResult::ready) / [`successful`](AsyncResult::successful) |
//! | `pool.close()` / `pool.join()` / `pool.terminate()` | [`close`](Pool::close) / [`join`](Pool::join) / [`terminate`](Pool::terminate) |
//! | `Pool(initializer=f, initargs=(x,))` | [`Pool::builder().initializer(f, x)`](PoolBuilder::initializer) |
//! | `Pool(maxtasksperchild=n)` | [`Pool::builder().max_tasks_per_child(n)`](PoolBuilder::max_tasks_per_child) (counts tasks, not chunks) |
//! | (none: a hung task hangs) | [`pool.with_timeout(d)`](Pool::with_timeout), [`res.cancel()`](AsyncResult::cancel), [`max_memory_per_worker`](PoolBuilder::max_memory_per_worker), [`with_retries`](Pool::with_retries) |
//! | `if __name__ == '__main__':` | nothing: workers never run `main` |
//! | (none: a parser exploit runs with all of the program's rights) | [`Pool::builder().sandbox(Sandbox::strict())`](PoolBuilder::sandbox): see [`sandbox`] |
//!
//! # Task functions
//!
//! A task function is a `fn(A) -> R`: a fn item, or a closure that captures
//! nothing, of one argument (use a tuple for several, or [`Pool::starmap`],
//! which takes named functions of 2 to 4 arguments). Its argument and
//! result implement `Serialize` and `Deserialize`; every serde feature
//! works. Arguments and results that are primitive numbers (`u8` to
//! `u128`, `i8` to `i128`, `usize`, `isize`, `f32`, `f64`) skip serde: a
//! chunk of them crosses as their bytes, one after another, and a panic
//! still fails only its own item. There is nothing to register: the function travels as its
//! address in the (identical) worker executable. A closure that captures
//! variables is refused at compile time, with rustc's note that closures
//! "can only be coerced to `fn` types if they do not capture any
//! variables": the worker is another process and cannot see them.
//!
//! ```compile_fail,E0308
//! let pool = procpool::Pool::new(1).unwrap();
//! let offset = 10u64;
//! pool.map(move |x: u64| x + offset, 0..4).unwrap(); // captures `offset`
//! ```
//!
//! # How workers start
//!
//! Workers are started by re-running the program's own executable (Python's
//! *spawn* start method). A constructor in procpool takes over such a
//! process before its `main` runs, so there is nothing to add to `main`, and
//! tests (`cargo test`, `cargo nextest`, doc tests) work as they are: each
//! test binary is its own worker executable. The program's own static
//! constructors (C++ statics, `inventory` registrations) run in a worker
//! before it takes over, except those of crates linked after procpool.
//! Workers keep the parent's arguments and process name (as `ps` shows
//! them), hold no descriptor of the parent's but their own, and each has a
//! private socket to the parent; its stdin is empty and its stdout and
//! stderr are relayed to the parent's.
//!
//! A worker serves only its parent: before it runs anything it checks that
//! its executable is the parent's build (device, inode and build id of the
//! image that holds procpool), that the socket's peer is its parent process
//! running as its own user, and it refuses worker mode outright in a setuid,
//! setgid or file-capability program. A pool in such a program, or one whose
//! procpool lies in a shared library rather than the executable, is refused
//! with [`Error::Bootstrap`].
//!
//! # Errors and failure isolation
//!
//! A task's failure is reported for that task: [`Error::Panicked`] (with
//! the remote message and location), [`Error::WorkerDied`] (with the signal
//! or exit code; the worker is replaced), [`Error::Encode`] /
//! [`Error::Decode`] for a value that does not cross. The pool keeps its
//! workers and stays usable.
//!
//! Because workers are processes, the pool can also stop a task by force:
//! a hard timeout ([`Pool::with_timeout`], [`PoolBuilder::task_timeout`]:
//! [`Error::TimedOut`]), cancellation ([`AsyncResult::cancel`]:
//! [`Error::Cancelled`]), and a memory cap
//! ([`PoolBuilder::max_memory_per_worker`]: [`Error::MemoryLimit`]) each
//! kill the task's worker and start a replacement. Idempotent work can be
//! retried when its worker dies ([`Pool::with_retries`]); leaky work can
//! run in recycled workers ([`PoolBuilder::max_tasks_per_child`]); and
//! [`PoolBuilder::initializer`] prepares each worker once. Workers exit as
//! soon as the parent does, however it ends (even by SIGKILL), and are
//! always reaped. The README's *Failure handling* table lists every case.
//!
//! # Fitting in
//!
//! * **async**: [`AsyncResult`] is a `Future` and
//!   [`IMap::into_stream`] gives a `futures::Stream`; awaiting never waits
//!   for a result on the executor's thread, on any runtime.
//! * **Progress**: `pool.with_progress().map(..)` draws a bar with
//!   done/total, rate and ETA (cargo feature `progress`, indicatif).
//! * **Worker state**: [`PoolBuilder::initializer`] sends a value to each
//!   worker once and builds per-worker state from it.
//! * **Logs**: worker start, exit, death, replacement, timeout, cancel and
//!   recycling are [`tracing`](https://docs.rs/tracing) events with the
//!   worker's pid.
//! * **Insights**: [`Pool::stats`] tells where the time went.
//!
//! # Platforms
//!
//! Linux. Workers are started from `/proc/self/exe` (or, for a program run
//! through the dynamic loader, from the program's own file).

#![deny(missing_docs)]

mod bootstrap;
#[cfg(feature = "redis")]
mod cluster;
mod error;
mod func;
#[cfg(any(test, feature = "fuzzing"))]
mod fuzz;
#[cfg(feature = "redis")]
mod host;
mod pool;
mod progress;
mod protocol;
mod result;
pub mod sandbox;
mod sys;
mod task;
mod worker;

pub use error::{DataKind, Error, ExitCause, PanicLocation, RemotePanic, Result};
pub use pool::{Call, HostStats, Pool, PoolBuilder, PoolStats, WorkerStats};
pub use protocol::bytes::Bytes;
pub use result::{AsyncResult, Callbacks, IMap, IMapStream, IMapUnordered, IntoCallbacks, NoCallbacks};
pub use sandbox::{Enforcement, Sandbox, SandboxReport, SyscallRule};
pub use task::{InitResult, StarFn};

/// Entry points for `cargo fuzz` (the `fuzzing` feature); not part of the
/// supported API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    /// Feeds `bytes` to the parent's reader of a worker channel.
    pub fn parent_reads(bytes: &[u8]) {
        crate::fuzz::parent_reads(bytes);
    }

    /// Feeds `bytes` to a worker's reader of its channel.
    pub fn worker_reads(bytes: &[u8]) {
        crate::fuzz::worker_reads(bytes);
    }
}

/// The README's examples, run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
