//! The one error type of the crate, and the details it carries.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

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
    /// or SIGSEGV, `abort`, `exit`). The pool has started a replacement.
    #[error("{}: worker process {pid} died ({cause})", TaskName(*index))]
    WorkerDied {
        /// Position of the first item of the lost chunk in a `map`-like call;
        /// `None` for `apply`/`apply_async`.
        index: Option<usize>,
        /// The dead worker's process id.
        pid: u32,
        /// How it ended.
        cause: ExitCause,
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
            | Error::Encode { index, .. }
            | Error::Decode { index, .. }
            | Error::TooLarge { index, .. } => *index,
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
        match &mut self {
            Error::Panicked { index, .. }
            | Error::WorkerDied { index, .. }
            | Error::Encode { index, .. }
            | Error::Decode { index, .. }
            | Error::TooLarge { index, .. } => *index = Some(at),
            _ => {}
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

/// Which value of a task failed to (de)serialise.
///
/// # Examples
///
/// ```
/// assert_eq!(procpool::DataKind::Argument.to_string(), "argument");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DataKind {
    /// The value sent to the worker.
    Argument,
    /// The value sent back by the worker.
    Result,
}

impl fmt::Display for DataKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataKind::Argument => "argument",
            DataKind::Result => "result",
        })
    }
}

/// How a worker process ended.
///
/// # Examples
///
/// ```
/// use procpool::ExitCause;
/// let cause = ExitCause::Signaled { signal: 9, core_dumped: false };
/// assert_eq!(cause.signal(), Some(9));
/// assert_eq!(cause.to_string(), "killed by signal 9 (SIGKILL)");
/// assert_eq!(ExitCause::Exited(3).to_string(), "exited with code 3");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitCause {
    /// It exited with this code (`std::process::exit`, or returning from a
    /// worker loop that was told to stop).
    Exited(i32),
    /// A signal ended it (SIGKILL, SIGSEGV, SIGABRT from `abort()`...).
    Signaled {
        /// The signal number.
        signal: i32,
        /// Whether it left a core dump.
        core_dumped: bool,
    },
    /// The operating system reported neither (should not happen on Linux).
    Unknown,
}

impl ExitCause {
    /// The signal that ended the process, if a signal did.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(procpool::ExitCause::Exited(0).signal(), None);
    /// ```
    pub fn signal(&self) -> Option<i32> {
        match self {
            ExitCause::Signaled { signal, .. } => Some(*signal),
            _ => None,
        }
    }

    /// The exit code, if the process exited on its own.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(procpool::ExitCause::Exited(4).code(), Some(4));
    /// ```
    pub fn code(&self) -> Option<i32> {
        match self {
            ExitCause::Exited(code) => Some(*code),
            _ => None,
        }
    }
}

impl fmt::Display for ExitCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitCause::Exited(code) => write!(f, "exited with code {code}"),
            ExitCause::Signaled { signal, core_dumped } => {
                write!(f, "killed by signal {signal}")?;
                if let Ok(sig) = nix::sys::signal::Signal::try_from(*signal) {
                    write!(f, " ({})", sig.as_str())?;
                }
                if *core_dumped {
                    f.write_str(", core dumped")?;
                }
                Ok(())
            }
            ExitCause::Unknown => f.write_str("ended for an unknown reason"),
        }
    }
}

/// A panic that happened in a worker process, as the parent sees it.
///
/// # Examples
///
/// ```
/// let pool = procpool::Pool::new(1)?;
/// let err = pool.apply(|_: ()| -> u8 { panic!("boom {}", 42) }, ()).unwrap_err();
/// let procpool::Error::Panicked { panic, .. } = err else { unreachable!() };
/// assert_eq!(panic.message(), "boom 42");
/// assert!(panic.location().unwrap().file().ends_with(".rs"));
/// # Ok::<(), procpool::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemotePanic {
    message: String,
    location: Option<PanicLocation>,
    backtrace: Option<String>,
}

impl RemotePanic {
    pub(crate) fn new(message: String, location: Option<PanicLocation>, backtrace: Option<String>) -> Self {
        RemotePanic {
            message,
            location,
            backtrace,
        }
    }

    /// The panic message (`"boom"` for `panic!("boom")`).
    ///
    /// # Examples
    ///
    /// See [`RemotePanic`].
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Where in the source the panic happened, when known.
    ///
    /// # Examples
    ///
    /// See [`RemotePanic`].
    pub fn location(&self) -> Option<&PanicLocation> {
        self.location.as_ref()
    }

    /// The worker's backtrace, captured when `RUST_BACKTRACE` is set in the
    /// worker's environment (workers inherit the parent's).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(1)?;
    /// let err = pool.apply(|_: ()| -> u8 { panic!("no") }, ()).unwrap_err();
    /// if let procpool::Error::Panicked { panic, .. } = err {
    ///     // `None` unless RUST_BACKTRACE was set.
    ///     let _maybe: Option<&str> = panic.backtrace();
    /// }
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn backtrace(&self) -> Option<&str> {
        self.backtrace.as_deref()
    }
}

impl fmt::Display for RemotePanic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = &self.location {
            write!(f, "at {loc}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(bt) = &self.backtrace {
            write!(f, "\nworker backtrace:\n{bt}")?;
        }
        Ok(())
    }
}

/// A source location of a [`RemotePanic`].
///
/// # Examples
///
/// See [`RemotePanic::location`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PanicLocation {
    file: String,
    line: u32,
    column: u32,
}

impl PanicLocation {
    pub(crate) fn new(file: String, line: u32, column: u32) -> Self {
        PanicLocation { file, line, column }
    }

    /// The source file.
    ///
    /// # Examples
    ///
    /// See [`RemotePanic`].
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The line, counting from 1.
    ///
    /// # Examples
    ///
    /// See [`RemotePanic`].
    pub fn line(&self) -> u32 {
        self.line
    }

    /// The column, counting from 1.
    ///
    /// # Examples
    ///
    /// See [`RemotePanic`].
    pub fn column(&self) -> u32 {
        self.column
    }
}

impl fmt::Display for PanicLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
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
        };
        assert_eq!(
            died.to_string(),
            "task 4: worker process 77 died (killed by signal 11 (SIGSEGV))"
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
