//! [`PoolBuilder`]: the options of a pool.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;
use crate::pool::Pool;
use crate::worker::handle::StartConfig;

/// The default time a worker has to start and answer its handshake.
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Configures and starts a [`Pool`]; made by [`Pool::builder`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let pool = procpool::Pool::builder()
///     .processes(3)
///     .start_timeout(Duration::from_secs(10))
///     .build()?;
/// assert_eq!(pool.processes(), 3);
/// assert_eq!(pool.worker_pids().len(), 3);
/// # Ok::<(), procpool::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until build() is called"]
pub struct PoolBuilder {
    processes: Option<usize>,
    start_timeout: Duration,
    program: Option<PathBuf>,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            processes: None,
            start_timeout: DEFAULT_START_TIMEOUT,
            program: None,
        }
    }
}

impl PoolBuilder {
    /// A builder with the defaults: one worker per available CPU, a 30 s
    /// start timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::PoolBuilder::new().build()?;
    /// assert!(pool.processes() >= 1);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of worker processes (Python's `processes`). The default
    /// is [`std::thread::available_parallelism`].
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::builder().processes(2).build()?;
    /// assert_eq!(pool.processes(), 2);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn processes(mut self, processes: usize) -> Self {
        self.processes = Some(processes);
        self
    }

    /// How long a worker may take from being started to answering its
    /// handshake before it is killed and the start fails (default 30 s).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = procpool::Pool::builder().processes(1).start_timeout(Duration::from_secs(5)).build()?;
    /// assert_eq!(pool.processes(), 1);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Starts workers from `program` instead of this process's own
    /// executable. Only for testing how the pool refuses a worker that is
    /// not this program (a real worker must be the same executable, and is
    /// checked for it); not part of the supported API.
    #[doc(hidden)]
    pub fn worker_program_for_tests(mut self, program: impl Into<PathBuf>) -> Self {
        self.program = Some(program.into());
        self
    }

    /// Starts the workers (in parallel) and waits until every one has
    /// answered its handshake.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for zero processes or a zero start timeout;
    /// [`Error::Spawn`] or [`Error::WorkerStart`] if a worker cannot be
    /// started (the workers already started are then stopped);
    /// [`Error::Bootstrap`] when called inside a worker process whose
    /// bootstrap did not run.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = procpool::Pool::builder().processes(0).build().unwrap_err();
    /// assert!(matches!(err, procpool::Error::InvalidArgument(_)));
    /// ```
    pub fn build(self) -> Result<Pool, Error> {
        let processes = match self.processes {
            Some(0) => {
                return Err(Error::InvalidArgument("a pool needs at least one process".into()));
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if self.start_timeout.is_zero() {
            return Err(Error::InvalidArgument(
                "the start timeout must be longer than zero".into(),
            ));
        }
        let mut start = StartConfig::new(self.start_timeout)?;
        if let Some(program) = self.program {
            start.program = program;
        }
        Pool::start(processes, start)
    }
}
