//! What an [`Error`](super::Error) carries: which value failed to cross,
//! how a worker ended, and a panic as the worker saw it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which value of a task failed to (de)serialise.
///
/// # Examples
///
/// ```
/// assert_eq!(procpool::DataKind::Argument.to_string(), "argument");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The task overflowed its stack, and `signal` (SIGSEGV, or SIGBUS)
    /// ended the worker. The worker said so before it died, as a program's
    /// main thread prints "has overflowed its stack". Running the task again
    /// would overflow again, so it is not retried even with
    /// [`retries`](crate::PoolBuilder::retries).
    StackOverflow {
        /// The signal that ended the process.
        signal: i32,
    },
    /// The task ran on another machine's worker host (a pool built with
    /// `PoolBuilder::redis` (cargo feature `redis`)) that stopped
    /// answering while it held the task: it was killed, hung, or lost its
    /// network past its lease.
    HostLost,
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
            ExitCause::Signaled { signal, .. } | ExitCause::StackOverflow { signal } => Some(*signal),
            _ => None,
        }
    }

    /// Whether the task overflowed its stack ([`ExitCause::StackOverflow`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use procpool::ExitCause;
    /// assert!(ExitCause::StackOverflow { signal: 11 }.is_stack_overflow());
    /// assert!(!ExitCause::Signaled { signal: 11, core_dumped: false }.is_stack_overflow());
    /// ```
    pub fn is_stack_overflow(&self) -> bool {
        matches!(self, ExitCause::StackOverflow { .. })
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
                write!(f, "killed by signal {}", SignalName(*signal))?;
                if *core_dumped {
                    f.write_str(", core dumped")?;
                }
                Ok(())
            }
            ExitCause::Unknown => f.write_str(
                "ended for an unknown reason: its exit status was gone when procpool waited for it. \
                 Does this program ignore SIGCHLD or reap children itself (waitpid(-1), a \
                 subreaper)? That takes workers' exit statuses from the pool",
            ),
            ExitCause::StackOverflow { signal } => {
                write!(f, "stack overflow, killed by signal {}", SignalName(*signal))
            }
            ExitCause::HostLost => {
                f.write_str("its worker host stopped answering: killed, hung, or cut off past its lease")
            }
        }
    }
}

/// Prints "11 (SIGSEGV)", or the bare number of a signal nix does not know.
struct SignalName(i32);

impl fmt::Display for SignalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        match nix::sys::signal::Signal::try_from(self.0) {
            Ok(sig) => write!(f, " ({})", sig.as_str()),
            Err(_) => Ok(()),
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
