//! [`PoolBuilder`]: the options of a pool.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;

use crate::bootstrap;
use crate::pool::Pool;
use crate::pool::job::init_frame;
use crate::pool::policy::{TaskPolicy, WorkerLimits};
use crate::pool::shared::Options;
use crate::pool::shared::Shared;
use crate::pool::supervisor;
use crate::protocol::frame::DEFAULT_MAX_BODY;
use crate::sandbox::Sandbox;
use crate::task::{Init, InitResult};
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
    policy: TaskPolicy,
    limits: WorkerLimits,
    init: Option<InitFrame>,
    sandbox: Option<Sandbox>,
    #[cfg(feature = "redis")]
    pub(crate) cluster: super::cluster_options::ClusterOptions,
}

/// The encoded initializer call (or why it could not be encoded).
#[derive(Clone)]
struct InitFrame(Result<Vec<u8>, Error>);

impl fmt::Debug for InitFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InitFrame")
    }
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            processes: None,
            start_timeout: DEFAULT_START_TIMEOUT,
            program: None,
            policy: TaskPolicy::default(),
            limits: WorkerLimits::default(),
            init: None,
            sandbox: None,
            #[cfg(feature = "redis")]
            cluster: Default::default(),
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

    /// A hard timeout for every task of the pool (a call can set its own
    /// with [`Pool::with_timeout`], which explains what happens). Off by
    /// default. With a pool-wide timeout, `map`-like calls send tasks one at
    /// a time.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = procpool::Pool::builder().processes(1).task_timeout(Duration::from_millis(200)).build()?;
    /// let err = pool.apply(|s: u64| std::thread::sleep(Duration::from_secs(s)), 60).unwrap_err();
    /// assert!(err.is_timed_out());
    /// assert_eq!(pool.apply(|x: u8| x, 5)?, 5);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn task_timeout(mut self, timeout: Duration) -> Self {
        self.policy.timeout = Some(timeout);
        self
    }

    /// How many more times a task is run when its worker dies under it, for
    /// every task of the pool (default 0; see [`Pool::with_retries`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::builder().processes(1).retries(1).build()?;
    /// let err = pool.apply(|_: ()| -> u8 { std::process::abort() }, ()).unwrap_err();
    /// assert!(matches!(err, procpool::Error::WorkerDied { attempts: 2, .. }));
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn retries(mut self, retries: u32) -> Self {
        self.policy.retries = retries;
        self
    }

    /// Replaces each worker process after it has run `tasks` tasks (Python's
    /// `maxtasksperchild`, but counting tasks, not chunks: a chunk longer
    /// than a worker's remaining budget is split). The replacement is
    /// started while the other workers keep working. Use it to bound what a
    /// leaky task or library can accumulate.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::builder().processes(1).max_tasks_per_child(2).build()?;
    /// let pids = pool.with_chunksize(5).map(|_: u8| std::process::id(), 0..6)?;
    /// assert!(pids[0] == pids[1] && pids[1] != pids[2] && pids[2] == pids[3] && pids[3] != pids[4]);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn max_tasks_per_child(mut self, tasks: u64) -> Self {
        self.limits.max_tasks = Some(tasks);
        self
    }

    /// Caps the memory of each worker process at `bytes`: its data segment
    /// (heap and private memory, `RLIMIT_DATA`), set before the worker
    /// starts and inherited by processes a task starts. A task whose
    /// allocation fails under the cap gets [`Error::MemoryLimit`], and its
    /// worker is replaced. Leave room above what a worker needs at rest
    /// (a few MiB).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::builder().processes(1).max_memory_per_worker(128 << 20).build()?;
    /// assert_eq!(pool.apply(|n: usize| vec![7u8; n].len(), 1 << 20)?, 1 << 20);
    /// assert!(pool.apply(|n: usize| vec![7u8; n].len(), 1 << 30).unwrap_err().is_memory_limit());
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn max_memory_per_worker(mut self, bytes: u64) -> Self {
        self.limits.max_memory = Some(bytes);
        self
    }

    /// Runs `init(arg)` once in every worker process before it takes tasks,
    /// replacements included (Python's `initializer=`/`initargs=`). It may
    /// return `()` or a `Result<(), E>`. Use it to set up per-worker state
    /// (in a `static`/`OnceLock` of the worker) that tasks then use.
    ///
    /// If it fails (returns an error or panics) while the pool starts,
    /// [`build`](Self::build) returns [`Error::Initializer`]. If it starts
    /// failing later, for a replacement worker, that seat stops being
    /// refilled after 3 failures in a row (never an endless respawn loop);
    /// when no worker is left, every waiting task and later call gets the
    /// error. It counts toward the [`start_timeout`](Self::start_timeout).
    ///
    /// (A replacement that fails to start for any other reason, such as
    /// the system refusing a new process for a while, is tried again with
    /// a growing pause, up to 2 s, for as long as the pool runs. Once every
    /// seat has failed 3 times in a row, waiting tasks and new calls get
    /// the error instead of waiting, until a worker starts again.)
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::OnceLock;
    ///
    /// static GREETING: OnceLock<String> = OnceLock::new();
    ///
    /// fn setup(greeting: String) -> Result<(), String> {
    ///     GREETING.set(greeting).map_err(|_| "set twice".to_string())
    /// }
    /// fn greet(name: String) -> String {
    ///     format!("{} {name}", GREETING.get().map_or("?", |g| g.as_str()))
    /// }
    ///
    /// let pool = procpool::Pool::builder().processes(2).initializer(setup, "hello".to_string()).build()?;
    /// assert_eq!(pool.apply(greet, "Ada".to_string())?, "hello Ada");
    ///
    /// let bad = procpool::Pool::builder().processes(2).initializer(setup, String::new());
    /// fn refuse(_: ()) -> Result<(), String> { Err("no database".into()) }
    /// let err = bad.initializer(refuse, ()).build().unwrap_err();
    /// assert!(matches!(&err, procpool::Error::Initializer { message, .. } if message == "no database"));
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn initializer<A, R>(mut self, init: fn(A) -> R, arg: A) -> Self
    where
        A: Serialize + DeserializeOwned + 'static,
        R: InitResult,
    {
        self.init = Some(InitFrame(init_frame::<Init<A, R>>(init, &arg, DEFAULT_MAX_BODY)));
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

    /// Locks every worker down with `sandbox` after its initializer, before
    /// its first task: for input you do not trust. See [`Sandbox`] and the
    /// [`sandbox`](crate::sandbox) module for what a sandboxed worker can
    /// and cannot do.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use procpool::{Pool, Sandbox};
    ///
    /// let pool = Pool::builder().processes(2).sandbox(Sandbox::strict()).build()?;
    /// let err = pool.apply(|_: ()| std::net::TcpStream::connect("127.0.0.1:80").is_ok(), ()).unwrap_err();
    /// assert!(err.is_sandbox_violation());
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn sandbox(mut self, sandbox: Sandbox) -> Self {
        self.sandbox = Some(sandbox);
        self
    }

    /// Starts the workers (in parallel) and waits until every one has
    /// answered its handshake.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for zero processes, a zero start timeout,
    /// a zero task timeout, task budget or memory cap;
    /// [`Error::Initializer`] if the initializer fails in a worker;
    /// [`Error::Spawn`] or [`Error::WorkerStart`] if a worker cannot be
    /// started (the workers already started are then stopped);
    /// [`Error::Bootstrap`] when called inside a worker process whose
    /// bootstrap did not run; for a [`sandbox`](Self::sandbox), what
    /// [`Sandbox::check`] says.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = procpool::Pool::builder().processes(0).build().unwrap_err();
    /// assert!(matches!(err, procpool::Error::InvalidArgument(_)));
    /// ```
    pub fn build(self) -> Result<Pool, Error> {
        #[cfg(feature = "redis")]
        if self.cluster.is_set() {
            return self.build_remote();
        }
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
        super::capacity::check(processes)?;
        self.policy.check()?;
        if self.limits.max_tasks == Some(0) || self.limits.max_memory == Some(0) {
            return Err(Error::InvalidArgument(
                "max_tasks_per_child and max_memory_per_worker must be at least 1".into(),
            ));
        }
        let init = self.init.map(|frame| frame.0).transpose()?;
        let mut start = StartConfig::new(self.start_timeout)?;
        if let Some(program) = self.program {
            start.program = program;
        }
        start.max_memory = self.limits.max_memory;
        if let Some(sandbox) = &self.sandbox {
            sandbox.check()?;
            start.sandbox = Some(std::sync::Arc::new(sandbox.resolved_policy()));
        }
        let options = Options {
            start,
            policy: self.policy,
            limits: self.limits,
            init,
            #[cfg(feature = "redis")]
            remote: None,
        };
        start_pool(processes, options)
    }
}

#[cfg(feature = "redis")]
impl PoolBuilder {
    fn build_remote(self) -> Result<Pool, Error> {
        if self.start_timeout.is_zero() {
            return Err(Error::InvalidArgument(
                "the start timeout must be longer than zero".into(),
            ));
        }
        self.policy.check()?;
        let local_only = [
            (
                self.processes.is_some(),
                "processes (hosts set theirs with PROCPOOL_PROCESSES)",
            ),
            (self.limits.max_tasks.is_some(), "max_tasks_per_child"),
            (self.limits.max_memory.is_some(), "max_memory_per_worker"),
            (self.init.is_some(), "initializer"),
            (self.sandbox.is_some(), "sandbox"),
            (self.program.is_some(), "worker_program_for_tests"),
        ]
        .into_iter()
        .find_map(|(set, name)| set.then_some(name));
        super::cluster_options::build(self.cluster, self.start_timeout, self.policy, local_only)
    }
}

/// Starts the supervisors (each starts its worker) and waits until every
/// worker is up; on the first failure, stops what was started.
fn start_pool(processes: usize, options: Options) -> Result<Pool, Error> {
    bootstrap::check_parent()?;
    bootstrap::refuse_pool_in_unbooted_worker()?;
    let shared = Shared::new(processes, options).map_err(Error::spawn)?;
    // From here on, a failure terminates what was started.
    let pool = Pool { shared };
    let (started, reports) = std::sync::mpsc::channel();
    for seat in 0..processes {
        supervisor::start(&pool.shared, seat, started.clone()).map_err(Error::spawn)?;
    }
    drop(started);
    // Each supervisor reports once; the first failure drops (and so
    // terminates) the pool.
    for _ in 0..processes {
        match reports.recv() {
            Ok(report) => report?,
            Err(_) => {
                return Err(Error::Spawn {
                    source: std::sync::Arc::new(std::io::Error::other(
                        "a worker's supervisor thread ended before its worker started",
                    )),
                });
            }
        }
    }
    Ok(pool)
}
