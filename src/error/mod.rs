//! The one error type of the crate ([`Error`]); the details it carries
//! (exit causes, remote panics) are in [`details`].

mod details;

pub use details::{DataKind, ExitCause, PanicLocation, RemotePanic};

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// A `Result` whose error is [`Error`].
///
/// # Examples
///
/// ```
/// fn workers() -> procpool::Result<usize> {
///     Ok(procpool::Pool::new(1)?.processes())
/// }
/// assert_eq!(workers().unwrap(), 1);
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong with a pool or one of its tasks.
///
/// Task failures (a panic, a dead worker, a value that does not serialise)
/// are reported for the task that failed, and only for it: the pool keeps all
/// its workers and stays usable. Errors of the pool itself (a worker that
/// cannot start, a call after [`close`](crate::Pool::close)) say what to do
/// in their message.
///
/// The error is `Clone` so that a failed [`AsyncResult`](crate::AsyncResult)
/// can report its error every time it is asked.
///
/// # Examples
///
/// ```
/// use procpool::{Error, Pool};
///
/// fn fails(x: u32) -> u32 {
///     if x == 3 { panic!("three is not allowed") }
///     x
/// }
///
/// let pool = Pool::new(2)?;
/// match pool.map(fails, 0..5) {
///     Err(Error::Panicked { index, panic }) => {
///         assert_eq!(index, Some(3));
///         assert_eq!(panic.message(), "three is not allowed");
///     }
///     other => panic!("unexpected {other:?}"),
/// }
/// // The pool is still fine.
/// assert_eq!(pool.apply(fails, 4)?, 4);
/// # Ok::<(), procpool::Error>(())
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An argument to a procpool call was out of range (zero processes, a
    /// chunk size of zero, an option that does not apply to the call).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The operating system refused to start a worker process.
    #[error("could not start a worker process: {source} (check the process limit and free memory)")]
    Spawn {
        /// What the operating system said.
        #[source]
        source: Arc<io::Error>,
    },

    /// A worker process started but did not become a working member of the
    /// pool: it is another executable, it did not answer the handshake in
    /// time, or the worker bootstrap did not run in it.
    #[error("worker process {pid} failed to start: {reason}")]
    WorkerStart {
        /// The worker's process id.
        pid: u32,
        /// What went wrong, and what to do about it.
        reason: String,
    },

    /// The task panicked in the worker. The worker survived and keeps serving.
    #[error("{} panicked {panic}", TaskName(*index))]
    Panicked {
        /// Position of the task's item in the input of a `map`-like call;
        /// `None` for `apply`/`apply_async`.
        index: Option<usize>,
        /// The panic message, location and (when `RUST_BACKTRACE` is set in
        /// the worker) backtrace.
        panic: RemotePanic,
    },

    /// The worker process running the task died (a signal such as SIGKILL
    /// or SIGSEGV, `abort`, `exit`, or a stack overflow: see
    /// [`ExitCause::StackOverflow`]). The pool has started a replacement.
    #[error("{}: worker process {pid} died ({cause}){}", TaskName(*index), Attempts(*attempts))]
    WorkerDied {
        /// Position of the first item of the lost chunk in a `map`-like call;
        /// `None` for `apply`/`apply_async`.
        index: Option<usize>,
        /// The dead worker's process id.
        pid: u32,
        /// How it ended.
        cause: ExitCause,
        /// How many times the task was run: 1, or more with
        /// [`retries`](crate::PoolBuilder::retries), each attempt losing its
        /// worker.
        attempts: u32,
    },

    /// The task ran past its timeout ([`Call::with_timeout`](crate::Call::with_timeout)
    /// or [`PoolBuilder::task_timeout`](crate::PoolBuilder::task_timeout)).
    /// It was killed together with its worker process, which the pool
    /// replaced; other tasks were not touched.
    #[error("{}: ran past its timeout of {after:?} and was killed with worker process {pid} (the pool started a replacement)", TaskName(*index))]
    TimedOut {
        /// Position of the item in a `map`-like call; `None` for `apply`.
        index: Option<usize>,
        /// The killed worker's process id.
        pid: u32,
        /// The timeout it ran past.
        after: Duration,
    },

    /// The task was cancelled by [`AsyncResult::cancel`](crate::AsyncResult::cancel)
    /// before it finished: it was taken off the queue, or killed with its
    /// worker process (which the pool replaced).
    #[error("the task was cancelled")]
    Cancelled,

    /// The task used more memory than the pool's
    /// [`max_memory_per_worker`](crate::PoolBuilder::max_memory_per_worker)
    /// allows. Its worker process was stopped by the limit and replaced.
    #[error("{}: exceeded the memory limit of {limit} bytes per worker{} in worker process {pid}, which was replaced (raise PoolBuilder::max_memory_per_worker, or use less memory per task)", TaskName(*index), Requested(*requested))]
    MemoryLimit {
        /// Position of the item in a `map`-like call; `None` for `apply`.
        index: Option<usize>,
        /// The stopped worker's process id.
        pid: u32,
        /// The limit, in bytes.
        limit: u64,
        /// The size of the allocation that failed, when the worker said.
        requested: Option<u64>,
    },

    /// The task made a system call that the worker's
    /// [`Sandbox`](crate::Sandbox) refuses (a socket, `execve`, `fork`,
    /// `ptrace`, a signal to another process...). The call did not run; the
    /// worker was stopped and replaced. Not retried: it would fail again.
    #[error("{}: the sandbox refused system call `{syscall}` in worker process {pid}, which was stopped and replaced (allow it with Sandbox::allow_syscalls only if the task really needs it)", TaskName(*index))]
    SandboxViolation {
        /// Position of the item in a `map`-like call; `None` for `apply`.
        index: Option<usize>,
        /// The stopped worker's process id.
        pid: u32,
        /// The name of the system call (as in `man 2 syscalls`), or
        /// `"#N"` for a number this machine has no name for.
        syscall: String,
    },

    /// A [strict](crate::Enforcement::Strict) [`Sandbox`](crate::Sandbox)
    /// cannot be enforced in full on this machine's kernel, so no pool was
    /// made.
    #[error(
        "the sandbox cannot be enforced in full here: the kernel lacks {missing} (use Sandbox::best_effort() to apply what it supports, or a newer kernel)"
    )]
    SandboxUnavailable {
        /// The parts the kernel lacks.
        missing: String,
    },

    /// The pool's [`initializer`](crate::PoolBuilder::initializer) failed
    /// (returned an error or panicked) in a new worker. When starting the
    /// pool, the pool is not made; later, the worker's seat stops being
    /// refilled after a few failures in a row, and when no worker is left
    /// every waiting task gets this error.
    #[error("the pool's initializer failed in worker process {pid}: {message}")]
    Initializer {
        /// The worker's process id.
        pid: u32,
        /// The error it returned, or its panic.
        message: String,
    },

    /// A task's argument or result could not be turned into bytes.
    #[error("{}: could not serialise the {what}: {message}", TaskName(*index))]
    Encode {
        /// Position of the item in a `map`-like call; `None` for `apply`.
        index: Option<usize>,
        /// Whether the argument or the result failed.
        what: DataKind,
        /// What the serialiser said.
        message: String,
    },

    /// A task's argument or result could not be rebuilt from its bytes (its
    /// `Deserialize` does not accept what its `Serialize` wrote).
    #[error("{}: could not deserialise the {what}: {message}", TaskName(*index))]
    Decode {
        /// Position of the item in a `map`-like call; `None` for `apply`.
        index: Option<usize>,
        /// Whether the argument or the result failed.
        what: DataKind,
        /// What the deserialiser said.
        message: String,
    },

    /// A task's encoded argument or result exceeds the largest message the
    /// pool sends.
    #[error("{}: the encoded {what} is {size} bytes, more than the limit of {limit} bytes (use a smaller chunk size or split the data)", TaskName(*index))]
    TooLarge {
        /// Position of the item in a `map`-like call; `None` for `apply`.
        index: Option<usize>,
        /// Whether the argument or the result was too large.
        what: DataKind,
        /// Its size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },

    /// The pool was closed with [`close`](crate::Pool::close): it finishes the
    /// work it has but accepts no new tasks. Make a new pool.
    #[error("the pool is closed and accepts no new tasks (make a new pool)")]
    Closed,

    /// The pool was terminated (by [`terminate`](crate::Pool::terminate) or by
    /// being dropped) before this task finished; the task was not run or was
    /// killed.
    #[error("the pool was terminated before the task finished")]
    Terminated,

    /// [`join`](crate::Pool::join) was called before
    /// [`close`](crate::Pool::close) or [`terminate`](crate::Pool::terminate).
    #[error("join() needs close() or terminate() first, or it would wait forever")]
    NotClosed,

    /// [`AsyncResult::get_timeout`](crate::AsyncResult::get_timeout) gave up
    /// waiting. The task goes on running; ask again later.
    #[error("the result was not ready after {0:?} (the task is still running; ask again)")]
    Timeout(Duration),

    /// The value of this result was already handed out by an earlier `get`.
    #[error("the value of this result was already taken by an earlier get()")]
    ResultTaken,

    /// `get` or `wait` was called, inside a callback, on a result whose own
    /// callback has not run yet. Waiting would deadlock: callbacks run one
    /// at a time on the pool's callback thread.
    #[error("waiting inside a callback for a result that itself has a pending callback would deadlock")]
    WaitInCallback,

    /// A worker sent something that is not valid procpool protocol. The worker
    /// was killed and replaced.
    #[error("worker process {pid} broke the protocol: {message}")]
    Protocol {
        /// The worker's process id.
        pid: u32,
        /// What was wrong with what it sent.
        message: String,
    },

    /// This process was started as a procpool worker but is running normal
    /// code: the worker bootstrap (a constructor that runs before `main`) did
    /// not run in it.
    #[error("this process is a procpool worker whose bootstrap did not run: {0}")]
    Bootstrap(String),

    /// The Redis server of a pool built with
    /// `PoolBuilder::redis` (cargo feature `redis`) could not be
    /// reached (at `build()`, or for longer than the pool's
    /// `redis_outage` later), or
    /// refused a command.
    #[error("the Redis server at {url} {message}")]
    Redis {
        /// The server's address, without its password.
        url: String,
        /// What went wrong, and what to do about it.
        message: String,
    },

    /// No worker host of this program's build serves the queue of a pool
    /// built with `PoolBuilder::redis` (cargo feature `redis`), and
    /// none came within the pool's start timeout.
    #[error(
        "no live worker host serves queue {queue:?} for this build ({build}) ; hosts seen: {seen} (start hosts of this very executable with PROCPOOL_REDIS, PROCPOOL_SECRET and PROCPOOL_QUEUE={queue})"
    )]
    NoHost {
        /// The queue the pool sends to.
        queue: String,
        /// This program's build, as hosts announce theirs.
        build: String,
        /// The hosts that were seen on the queue (other builds), or "none".
        seen: String,
    },
}

impl Error {
    /// Whether the task panicked in its worker.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(1)?;
    /// let err = pool.apply(|_: ()| -> u8 { panic!("no") }, ()).unwrap_err();
    /// assert!(err.is_panic());
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn is_panic(&self) -> bool {
        matches!(self, Error::Panicked { .. })
    }

    /// Whether the task's worker process died while running it.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(1)?;
    /// let err = pool.apply(|code: i32| -> u8 { std::process::exit(code) }, 3).unwrap_err();
    /// assert!(err.is_worker_died());
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn is_worker_died(&self) -> bool {
        matches!(self, Error::WorkerDied { .. })
    }

    /// Whether the task ran past its timeout and was killed
    /// ([`Error::TimedOut`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = procpool::Pool::new(1)?;
    /// let err = pool
    ///     .with_timeout(Duration::from_millis(100))
    ///     .apply(|s: u64| std::thread::sleep(Duration::from_secs(s)), 60)
    ///     .unwrap_err();
    /// assert!(err.is_timed_out());
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn is_timed_out(&self) -> bool {
        matches!(self, Error::TimedOut { .. })
    }

    /// Whether the task was cancelled ([`Error::Cancelled`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = procpool::Pool::new(1)?;
    /// let h = pool.apply_async(|s: u64| std::thread::sleep(Duration::from_secs(s)), 60)?;
    /// assert!(h.cancel());
    /// assert!(h.get().unwrap_err().is_cancelled());
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Cancelled)
    }

    /// Whether the task went over the pool's memory limit
    /// ([`Error::MemoryLimit`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::builder().processes(1).max_memory_per_worker(256 << 20).build()?;
    /// let err = pool.apply(|n: usize| vec![1u8; n].len(), 1 << 30).unwrap_err();
    /// assert!(err.is_memory_limit(), "{err}");
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn is_memory_limit(&self) -> bool {
        matches!(self, Error::MemoryLimit { .. })
    }

    /// Whether the sandbox refused a system call of the task
    /// ([`Error::SandboxViolation`]).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use procpool::{Pool, Sandbox};
    /// let pool = Pool::builder().processes(1).sandbox(Sandbox::strict()).build()?;
    /// let err = pool.apply(|_: ()| std::process::Command::new("/bin/true").status().is_ok(), ()).unwrap_err();
    /// assert!(err.is_sandbox_violation(), "{err}");
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn is_sandbox_violation(&self) -> bool {
        matches!(self, Error::SandboxViolation { .. })
    }

    /// Whether a wait gave up (the task itself goes on).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = procpool::Pool::new(1)?;
    /// let slow = pool.apply_async(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), 300)?;
    /// assert!(slow.get_timeout(Duration::from_millis(1)).unwrap_err().is_timeout());
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout(_))
    }

    /// Whether the call was refused because the pool was closed.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(1)?;
    /// pool.close();
    /// assert!(pool.apply(|x: u8| x, 1).unwrap_err().is_closed());
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::Closed)
    }

    /// Whether the task was cut short by the pool being terminated.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(1)?;
    /// pool.terminate();
    /// assert!(pool.apply(|x: u8| x, 1).unwrap_err().is_terminated());
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn is_terminated(&self) -> bool {
        matches!(self, Error::Terminated)
    }

    /// The input position of the failed task in a `map`-like call, if the
    /// error belongs to one.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(2)?;
    /// let err = pool.map(|x: u8| assert!(x != 7), 0..10).unwrap_err();
    /// assert_eq!(err.index(), Some(7));
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn index(&self) -> Option<usize> {
        match self {
            Error::Panicked { index, .. }
            | Error::WorkerDied { index, .. }
            | Error::TimedOut { index, .. }
            | Error::MemoryLimit { index, .. }
            | Error::Encode { index, .. }
            | Error::Decode { index, .. }
            | Error::TooLarge { index, .. }
            | Error::SandboxViolation { index, .. } => *index,
            _ => None,
        }
    }

    /// The `index` field of the errors that belong to one task.
    fn index_slot(&mut self) -> Option<&mut Option<usize>> {
        match self {
            Error::Panicked { index, .. }
            | Error::WorkerDied { index, .. }
            | Error::TimedOut { index, .. }
            | Error::MemoryLimit { index, .. }
            | Error::Encode { index, .. }
            | Error::Decode { index, .. }
            | Error::TooLarge { index, .. }
            | Error::SandboxViolation { index, .. } => Some(index),
            _ => None,
        }
    }

    pub(crate) fn spawn(source: io::Error) -> Self {
        Error::Spawn {
            source: Arc::new(source),
        }
    }

    /// The same error, attributed to the item at `index` of a `map`-like call.
    pub(crate) fn at_index(mut self, at: usize) -> Self {
        if let Some(index) = self.index_slot() {
            *index = Some(at);
        }
        self
    }

    /// [`at_index`](Self::at_index) when `index` is known.
    pub(crate) fn at_index_opt(self, index: Option<usize>) -> Self {
        match index {
            Some(i) => self.at_index(i),
            None => self,
        }
    }
}

/// Prints " after 3 attempts" when a task was retried.
struct Attempts(u32);

impl fmt::Display for Attempts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 | 1 => Ok(()),
            n => write!(f, " on each of its {n} attempts"),
        }
    }
}

/// Prints " (it asked for 1048576 bytes)" when the failed allocation is known.
struct Requested(Option<u64>);

impl fmt::Display for Requested {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(n) => write!(f, " (an allocation of {n} bytes failed)"),
            None => Ok(()),
        }
    }
}

/// Prints "task" or "task 7" in error messages.
struct TaskName(Option<usize>);

impl fmt::Display for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(i) => write!(f, "task {i}"),
            None => f.write_str("task"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_task_and_the_cause() {
        let died = Error::WorkerDied {
            index: Some(4),
            pid: 77,
            cause: ExitCause::Signaled {
                signal: 11,
                core_dumped: false,
            },
            attempts: 1,
        };
        assert_eq!(
            died.to_string(),
            "task 4: worker process 77 died (killed by signal 11 (SIGSEGV))"
        );
        let retried = Error::WorkerDied {
            index: None,
            pid: 5,
            cause: ExitCause::Exited(3),
            attempts: 3,
        };
        assert!(
            retried.to_string().ends_with("on each of its 3 attempts"),
            "{retried}"
        );
        let panic = Error::Panicked {
            index: None,
            panic: RemotePanic::new(
                "boom".into(),
                Some(PanicLocation::new("src/a.rs".into(), 3, 9)),
                None,
            ),
        };
        assert_eq!(panic.to_string(), "task panicked at src/a.rs:3:9: boom");
        let overflow = Error::WorkerDied {
            index: None,
            pid: 8,
            cause: ExitCause::StackOverflow { signal: 11 },
            attempts: 1,
        };
        assert_eq!(
            overflow.to_string(),
            "task: worker process 8 died (stack overflow, killed by signal 11 (SIGSEGV))"
        );
    }

    #[test]
    fn at_index_only_touches_task_errors() {
        let e = Error::Decode {
            index: None,
            what: DataKind::Result,
            message: "x".into(),
        };
        assert_eq!(e.at_index(9).index(), Some(9));
        assert_eq!(Error::Closed.at_index(9).index(), None);
    }

    #[test]
    fn error_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Error>();
    }
}
