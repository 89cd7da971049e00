//! The parent side: [`Pool`], its [`builder`](PoolBuilder), per-call
//! options ([`Call`]), and the machinery behind them: turning calls into
//! jobs ([`engine`], [`job`]), the shared state and dispatch ([`shared`]),
//! one supervisor thread per worker ([`supervisor`]), failure policies
//! ([`policy`]), and how many workers fit in this process ([`capacity`]).

mod builder;
pub(crate) mod call;
#[cfg(feature = "redis")]
mod cluster_options;
#[cfg(feature = "redis")]
pub(crate) use cluster_options::check_queue;
mod capacity;
mod engine;
pub(crate) mod job;
mod options;
pub(crate) mod policy;
#[cfg(feature = "redis")]
pub(crate) mod remote;
pub(crate) mod shared;
pub(crate) mod stats;
pub(crate) mod supervisor;

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use builder::PoolBuilder;
pub use call::Call;
pub use stats::{HostStats, PoolStats, WorkerStats};

use crate::error::Error;
use crate::result::{AsyncResult, IMap, IMapUnordered};
use crate::task::StarFn;
use shared::Shared;

/// A pool of long-lived worker processes: Python's
/// `multiprocessing.Pool`.
///
/// Workers are copies of the running program (started from
/// `/proc/self/exe`), each with a private channel to the parent. A task
/// names a function (a fn item or a closure that captures nothing) and an
/// argument; the argument and the result cross the channel with serde.
/// Tasks run one at a time per worker; a finished task frees its worker for
/// the next one, it does not end the process.
///
/// `Pool` is `Send + Sync`: share it between threads by reference or in an
/// `Arc`.
///
/// # Examples
///
/// ```
/// use procpool::Pool;
///
/// fn square(x: u64) -> u64 { x * x }
///
/// let pool = Pool::new(4)?;
/// assert_eq!(pool.map(square, 0..5)?, [0, 1, 4, 9, 16]);
/// assert_eq!(pool.apply(square, 3)?, 9);
/// let later = pool.apply_async(square, 4)?;
/// assert_eq!(later.get()?, 16);
/// pool.close();
/// pool.join()?;
/// # Ok::<(), procpool::Error>(())
/// ```
///
/// # Caveats
///
/// * **Dropping** a pool terminates it, like [`terminate`](Self::terminate):
///   queued tasks are dropped, running ones are killed with their workers,
///   every worker is reaped before `drop` returns, and every
///   [`AsyncResult`] not yet done resolves to [`Error::Terminated`]. It
///   waits for nothing but the workers' exit, so it cannot block forever.
///   Call [`close`](Self::close) and [`join`](Self::join) first to let the
///   work finish.
/// * A worker never outlives the parent: the kernel kills it as soon as
///   the parent dies (`PR_SET_PDEATHSIG`), even in the middle of a task,
///   and even if the parent was killed with SIGKILL.
/// * Workers are in the parent's process group: Ctrl-C in a terminal sends
///   SIGINT to the parent and its workers alike, so all stop at once. A
///   program that catches SIGINT to shut down cleanly sees its running
///   tasks fail with [`Error::WorkerDied`] (naming SIGINT); queued tasks
///   run in replacement workers until it calls [`terminate`](Self::terminate).
/// * Task functions run in another process: statics, thread-locals and
///   anything set up in `main` are those of the worker (a fresh copy of the
///   program in which `main` has not run).
/// * Worker stdout and stderr are the parent's: `println!` in a task reaches
///   the terminal, a line at a time. A worker flushes its output before it
///   returns each result, and what a task printed is written before its
///   result is delivered; an unfinished last line (`print!` without `\n`)
///   is ended with a newline then, so the next task's text starts a line of
///   its own (unless the worker already runs a task sent ahead, see below:
///   the line may be that task's). The pool never waits on the parent's output: if nobody reads
///   it, results still come (after a wait of a second at most, then none),
///   the pool holds a few MiB of worker output, and beyond that a task that
///   prints waits in its own `write` until the output is read.
/// * To keep workers busy between short tasks, the pool sends a worker a
///   few tasks at a time when more tasks wait than there are workers and
///   tasks have been taking well under a millisecond. Those tasks wait for
///   the one the worker runs: if it hangs forever, so do they. Give tasks
///   that may hang a timeout ([`with_timeout`](Self::with_timeout)): a task
///   with a timeout is never sent ahead, and nothing is sent behind it.
/// * A task's panic is caught and returned; its worker keeps serving. With
///   `panic = "abort"`, a panic kills the worker instead, and the task fails
///   with [`Error::WorkerDied`].
pub struct Pool {
    pub(crate) shared: Arc<Shared>,
}

impl Pool {
    /// Starts a pool of `processes` workers (Python's `Pool(processes)`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for `0`; otherwise as
    /// [`PoolBuilder::build`].
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(5)?;
    /// assert_eq!(pool.processes(), 5);
    /// assert!(procpool::Pool::new(0).is_err());
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn new(processes: usize) -> Result<Pool, Error> {
        Pool::builder().processes(processes).build()
    }

    /// A [`PoolBuilder`] for the other options.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::builder().processes(2).build()?;
    /// assert_eq!(pool.processes(), 2);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn builder() -> PoolBuilder {
        PoolBuilder::new()
    }

    /// Where the pool's work went so far: tasks completed and failed,
    /// respawns, time in task functions versus (de)serialisation, and each
    /// worker's share. See [`PoolStats`].
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(2)?;
    /// pool.map(|x: u32| x + 1, 0..100)?;
    /// assert_eq!(pool.stats().tasks_completed, 100);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn stats(&self) -> PoolStats {
        self.shared.stats()
    }

    /// The number of workers the pool keeps running. For a pool fed
    /// through Redis (`PoolBuilder::redis`, cargo feature `redis`), the worker processes of the
    /// live hosts of its queue and build when it was built (it sizes
    /// default chunks; hosts may come and go since).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(procpool::Pool::new(3)?.processes(), 3);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn processes(&self) -> usize {
        self.shared.processes
    }

    /// The process ids of the live workers (a replacement counts from the
    /// moment it is started). A worker that died is replaced by one with a
    /// new pid before its task's error is delivered; after
    /// [`join`](Self::join) or [`terminate`](Self::terminate) the list is
    /// empty. Always empty for a pool fed through Redis
    /// (`PoolBuilder::redis`, cargo feature `redis`): its workers are on its hosts' machines
    /// ([`PoolStats::hosts`] counts their work).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(2)?;
    /// let pids = pool.worker_pids();
    /// assert_eq!(pids.len(), 2);
    /// assert!(!pids.contains(&std::process::id()));
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn worker_pids(&self) -> Vec<u32> {
        self.shared.worker_pids()
    }

    /// Runs `f(arg)` in a worker and waits for its result (Python's
    /// `apply`).
    ///
    /// # Errors
    ///
    /// The task's failure ([`Error::Panicked`], [`Error::WorkerDied`],
    /// [`Error::Encode`], [`Error::Decode`]), or [`Error::Closed`] /
    /// [`Error::Terminated`] when the pool no longer takes tasks.
    ///
    /// # Examples
    ///
    /// ```
    /// fn add((a, b): (u32, u32)) -> u32 { a + b }
    /// let pool = procpool::Pool::new(1)?;
    /// assert_eq!(pool.apply(add, (2, 3))?, 5);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn apply<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<R, Error>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Call::new(self).apply(f, arg)
    }

    /// Submits `f(arg)` and returns at once (Python's `apply_async`). For
    /// callbacks, see [`with_callback`](Self::with_callback).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after [`close`](Self::close), [`Error::Terminated`]
    /// after [`terminate`](Self::terminate). The task's own failure comes
    /// from the [`AsyncResult`].
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(2)?;
    /// let h = pool.apply_async(|x: i64| -x, 5)?;
    /// assert_eq!(h.get()?, -5);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn apply_async<A, R>(&self, f: fn(A) -> R, arg: A) -> Result<AsyncResult<R>, Error>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Call::new(self).apply_async(f, arg)
    }

    /// Runs `f` on every item and returns the results in input order
    /// (Python's `map`). Blocks until every item is done; the pool stays
    /// open. Items are sent in chunks of
    /// `ceil(n / (4 × processes))` (CPython's default; see
    /// [`with_chunksize`](Self::with_chunksize)); a default chunk also ends
    /// once its encoded arguments reach 8 MiB, so that large items go a few
    /// at a time.
    ///
    /// # Errors
    ///
    /// If items fail, `map` still waits for all of them, then returns the
    /// error of the lowest failing input position (see [`Error::index`]).
    /// [`Error::Closed`] / [`Error::Terminated`] when the pool no longer
    /// takes tasks.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(3)?;
    /// let lengths = pool.map(|s: String| s.len(), ["a", "bb", "ccc"].map(String::from))?;
    /// assert_eq!(lengths, [1, 2, 3]);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn map<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<Vec<R>, Error>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        Call::new(self).map(f, items)
    }

    /// Submits a `map` and returns at once (Python's `map_async`); the
    /// result is the whole `Vec`.
    ///
    /// # Errors
    ///
    /// As [`apply_async`](Self::apply_async); the items' failures come from
    /// the [`AsyncResult`], as for [`map`](Self::map).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(2)?;
    /// let all = pool.map_async(|x: u8| x + 1, 0..4)?;
    /// assert_eq!(all.get()?, [1, 2, 3, 4]);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn map_async<A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<AsyncResult<Vec<R>>, Error>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        Call::new(self).map_async(f, items)
    }

    /// A lazy, ordered `map` (Python's `imap`): the iterator yields each
    /// result, in input order, as soon as it and those before it are done.
    ///
    /// The input is read as the results are consumed, so it may be endless
    /// or larger than memory, whether or not its length is known. It must
    /// be `Send`, so that the iterator can move to another thread. Read
    /// ahead and not yet taken are at most four chunks per worker (at most
    /// 2^18 items with the default chunk size), and reading stops once
    /// 8 MiB per worker of encoded arguments and results are held (past
    /// that, only a worker left without work gets one more chunk).
    ///
    /// Like CPython's `imap`, chunks start at one item, so the first result
    /// comes as soon as its task is done; then, unless a chunk size is set
    /// ([`with_chunksize`](Self::with_chunksize)), chunks grow while tasks
    /// are quick and shrink when they slow down, aiming at about 40 ms from
    /// a chunk's submission to its results (queueing included). A default
    /// chunk also ends once its encoded arguments reach 2 MiB.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] / [`Error::Terminated`] when the pool no longer
    /// takes tasks. Each item's failure is that item's `Err`. Input still
    /// unread when the pool is joined or terminated yields
    /// [`Error::Closed`] or [`Error::Terminated`] for each of its items.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(2)?;
    /// let evens = (0u64..).step_by(2); // endless
    /// let first: Vec<u64> = pool.imap(|x: u64| x / 2, evens)?.take(5).collect::<Result<_, _>>()?;
    /// assert_eq!(first, [0, 1, 2, 3, 4]);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn imap<'a, A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<IMap<'a, R>, Error>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        Call::new(self).imap(f, items)
    }

    /// Like [`imap`](Self::imap), but yields results in the order they
    /// finish (Python's `imap_unordered`).
    ///
    /// # Errors
    ///
    /// As [`imap`](Self::imap).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(2)?;
    /// let total: u64 = pool.imap_unordered(|x: u64| x * 10, 1..=4)?.map(|r| r.unwrap()).sum();
    /// assert_eq!(total, 100);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn imap_unordered<'a, A, R, I>(&self, f: fn(A) -> R, items: I) -> Result<IMapUnordered<'a, R>, Error>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        Call::new(self).imap_unordered(f, items)
    }

    /// `map` for functions of 2 to 4 arguments, given as tuples (Python's
    /// `starmap`).
    ///
    /// # Errors
    ///
    /// As [`map`](Self::map).
    ///
    /// # Examples
    ///
    /// ```
    /// fn mul(a: u32, b: u32) -> u32 { a * b }
    /// let pool = procpool::Pool::new(2)?;
    /// assert_eq!(pool.starmap(mul, vec![(1, 2), (3, 4)])?, [2, 12]);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn starmap<F, Args, I>(&self, f: F, items: I) -> Result<Vec<F::Output>, Error>
    where
        F: StarFn<Args> + Copy + 'static,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        Args: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = Args>,
    {
        Call::new(self).starmap(f, items)
    }

    /// Submits a `starmap` and returns at once (Python's `starmap_async`).
    ///
    /// # Errors
    ///
    /// As [`map_async`](Self::map_async).
    ///
    /// # Examples
    ///
    /// ```
    /// fn between(lo: i32, x: i32, hi: i32) -> bool { lo <= x && x <= hi }
    /// let pool = procpool::Pool::new(2)?;
    /// let h = pool.starmap_async(between, [(0, 5, 9), (0, 10, 9)])?;
    /// assert_eq!(h.get()?, [true, false]);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn starmap_async<F, Args, I>(&self, f: F, items: I) -> Result<AsyncResult<Vec<F::Output>>, Error>
    where
        F: StarFn<Args> + Copy + 'static,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        Args: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = Args>,
    {
        Call::new(self).starmap_async(f, items)
    }

    /// Stops taking new tasks (Python's `close`); the tasks already
    /// submitted, including the remaining chunks of calls in progress, still
    /// run. Calling it again does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(1)?;
    /// let h = pool.apply_async(|x: u8| x, 1)?;
    /// pool.close();
    /// assert!(pool.apply_async(|x: u8| x, 2).unwrap_err().is_closed());
    /// pool.join()?;
    /// assert_eq!(h.get()?, 1);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn close(&self) {
        self.shared.close();
    }

    /// Waits for every submitted task and its callbacks, then lets the
    /// workers exit and reaps them (Python's `join`). After `terminate`, it
    /// returns once the workers are reaped.
    ///
    /// # Errors
    ///
    /// [`Error::NotClosed`] if neither [`close`](Self::close) nor
    /// [`terminate`](Self::terminate) was called (it would wait forever);
    /// [`Error::WaitInCallback`] when called from a callback (it would wait
    /// for itself).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(2)?;
    /// assert!(matches!(pool.join(), Err(procpool::Error::NotClosed)));
    /// pool.close();
    /// pool.join()?;
    /// assert!(pool.worker_pids().is_empty());
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn join(&self) -> Result<(), Error> {
        self.shared.join()
    }

    /// Stops at once (Python's `terminate`): queued tasks are dropped,
    /// running tasks are killed with their workers (SIGKILL), and every
    /// unfinished [`AsyncResult`] resolves to [`Error::Terminated`]. The
    /// workers are reaped before it returns. Later calls are refused with
    /// [`Error::Terminated`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = procpool::Pool::new(1)?;
    /// let slow = pool.apply_async(|s: u64| std::thread::sleep(Duration::from_secs(s)), 60)?;
    /// pool.terminate();
    /// assert!(slow.get().unwrap_err().is_terminated());
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn terminate(&self) {
        self.shared.terminate();
    }
}

impl Drop for Pool {
    /// Terminates the pool; see [`Pool`]'s caveats.
    fn drop(&mut self) {
        self.shared.terminate();
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_types_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Pool>();
        check::<PoolBuilder>();
        check::<AsyncResult<String>>();
        fn send<T: Send>() {}
        send::<IMap<'static, String>>();
        send::<IMapUnordered<'static, String>>();
    }
}
