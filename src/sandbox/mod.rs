//! Sandboxed workers, for input you do not trust.
//!
//! A worker of a pool built with [`PoolBuilder::sandbox`](crate::PoolBuilder::sandbox)
//! locks itself down after its bootstrap and the pool's initializer have
//! run (so the initializer can still open what it needs), before its first
//! task, as Chromium's renderers do:
//!
//! 1. its environment is cleared, but for `RUST_BACKTRACE` and
//!    `RUST_LIB_BACKTRACE` (whether panics carry backtraces), when it is
//!    the only thread (see below);
//! 2. rlimits: no core files, a file-size limit, a descriptor limit (the
//!    memory cap of [`max_memory_per_worker`](crate::PoolBuilder::max_memory_per_worker)
//!    was set at start);
//! 3. it becomes non-dumpable, sets `no_new_privs` and drops every
//!    capability (a root program's workers keep uid 0, not its powers);
//! 4. Landlock: no file-system access but reading the program's own files
//!    (for backtraces) and what [`Sandbox::allow_read`] and
//!    [`Sandbox::allow_write`] name; no TCP `bind` or `connect`; no signal
//!    to, or abstract socket of, a process outside the worker;
//! 5. a seccomp filter, on every thread: the system calls a Rust worker
//!    needs, and nothing that makes a socket, connects, starts a program
//!    (`execve`) or a process (`fork`, `clone` but for threads), traces,
//!    signals another process, mounts or enters a namespace. A refused call
//!    never runs: the worker is stopped with SIGSYS, its task fails with
//!    [`Error::SandboxViolation`] naming the
//!    call, and the pool replaces the worker. Where Landlock refuses (a
//!    file), the task sees the ordinary `io::Error` (EACCES).
//!
//! Descriptors the parent had open never reach a worker (it closes them at
//! start); the channel to the parent and the output pipes are all it has.
//!
//! What the sandbox does **not** protect against:
//!
//! - bugs in the kernel (the calls it allows still reach it); side
//!   channels (timing, caches);
//! - what the initializer left open: its descriptors, and its threads (a
//!   thread started before the lockdown is filtered but not under Landlock
//!   on kernels before Landlock ABI 8; with such threads the environment
//!   is also kept, as clearing it under them is not safe);
//! - what a task can learn without opening a file: `stat` and `readlink`
//!   of any path (Landlock governs opening, not metadata), and the
//!   original environment and arguments, whose strings stay in the
//!   process's memory after the variables are removed;
//! - what the worker says: a compromised worker can send wrong results,
//!   and write the page that tells the parent how it died (so it can
//!   mislabel its own error: a made-up refused call, or a job that "never
//!   started", which goes back to the queue at most 3 times);
//! - the disk: a task may fill the paths it may write (and a scratch
//!   directory on a memory-backed `/tmp`), each file up to
//!   [`Sandbox::max_file_size`].
//!
//! ```no_run
//! use procpool::{Pool, Sandbox};
//!
//! fn parse(input: Vec<u8>) -> usize {
//!     input.len() // a parser with a history of memory bugs
//! }
//!
//! println!("{}", Sandbox::probe());
//! let pool = Pool::builder().processes(2).sandbox(Sandbox::strict()).build()?;
//! assert_eq!(pool.apply(parse, vec![1, 2, 3])?, 3);
//! # Ok::<(), procpool::Error>(())
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;

mod bpf;
mod filter;
pub(crate) mod lockdown;
mod report;

pub use report::SandboxReport;

/// The name of the refused system call `nr` for an error: its name, `#N`
/// for a number without one, or a note when the worker could not say
/// (the call was made with every signal blocked, so the kernel ended the
/// worker before its handler could record it).
pub(crate) fn describe_syscall(nr: Option<u32>) -> String {
    match nr.map(i64::from) {
        Some(nr) => filter::name(nr).map_or_else(|| format!("#{nr}"), str::to_owned),
        None => "(unknown: it was made with signals blocked)".to_owned(),
    }
}

/// The private scratch directory of this worker, in a task of a pool
/// whose sandbox has [`Sandbox::scratch`]; `None` elsewhere.
///
/// # Examples
///
/// ```
/// // Not in a sandboxed worker:
/// assert!(procpool::sandbox::scratch_dir().is_none());
/// ```
pub fn scratch_dir() -> Option<&'static Path> {
    lockdown::SCRATCH.get().map(PathBuf::as_path)
}

/// How a sandbox copes with a kernel that cannot enforce all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Enforcement {
    /// Every part or no pool: [`PoolBuilder::build`](crate::PoolBuilder::build)
    /// fails with [`Error::SandboxUnavailable`] where the kernel lacks one.
    Strict,
    /// What the kernel supports; [`Sandbox::probe`] tells what that is.
    BestEffort,
}

/// What the filter of a sandbox does with one system call, from
/// [`Sandbox::syscall_rule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyscallRule {
    /// The call is allowed.
    Allowed,
    /// The call is allowed when its arguments are as described; otherwise
    /// it is refused.
    AllowedIf(&'static str),
    /// The call fails with this error number (`clone3`: ENOSYS, so that
    /// glibc falls back to `clone`, whose flags the filter can check).
    Errno(i32),
    /// The call stops the worker: [`Error::SandboxViolation`].
    Refused,
    /// The kernel runs the call without consulting the filter: `uretprobe`
    /// and `uprobe` (Linux 6.13 and later, x86_64), the return paths of
    /// user-space probes. Outside a probe, `uretprobe` ends the worker
    /// with SIGILL and `uprobe` fails with ENXIO.
    Unfiltered,
}

/// The policy as it crosses to the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Policy {
    pub(crate) enforcement: Enforcement,
    pub(crate) log_only: bool,
    pub(crate) read: Vec<PathBuf>,
    pub(crate) write: Vec<PathBuf>,
    pub(crate) network: bool,
    pub(crate) syscalls: Vec<i64>,
    pub(crate) max_file_size: u64,
    pub(crate) max_open_files: u64,
    /// Where workers make their scratch directories (`Sandbox::scratch`).
    pub(crate) scratch_base: Option<PathBuf>,
    /// This worker's scratch directory, named by the parent.
    pub(crate) scratch: Option<PathBuf>,
    /// The filter's table, looked up by the parent (empty: the worker
    /// looks the names up itself).
    pub(crate) table: Vec<(u32, filter::Action)>,
    /// The program's own files, readable for backtraces (listed by the
    /// parent).
    pub(crate) program_files: Vec<PathBuf>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            enforcement: Enforcement::Strict,
            log_only: false,
            read: Vec::new(),
            write: Vec::new(),
            network: false,
            syscalls: Vec::new(),
            max_file_size: 1 << 30,
            max_open_files: 64,
            scratch_base: None,
            scratch: None,
            table: Vec::new(),
            program_files: Vec::new(),
        }
    }
}

/// The lockdown of a sandboxed pool's workers; see the [module
/// docs](crate::sandbox) for what it does and does not do, and
/// [`PoolBuilder::sandbox`](crate::PoolBuilder::sandbox).
///
/// ```no_run
/// use procpool::{Pool, Sandbox};
///
/// let sandbox = Sandbox::strict()
///     .allow_read("/usr/share/fonts")
///     .allow_write("/tmp/thumbnails")
///     .max_file_size(64 << 20);
/// let pool = Pool::builder().sandbox(sandbox).build()?;
/// # Ok::<(), procpool::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    policy: Policy,
    unknown: Vec<String>,
}

impl Sandbox {
    /// The profile most users want: everything in the [module
    /// docs](crate::sandbox), enforced in full ([`Enforcement::Strict`]).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(procpool::Sandbox::strict().enforcement(), procpool::Enforcement::Strict);
    /// ```
    pub fn strict() -> Sandbox {
        Sandbox {
            policy: Policy::default(),
            unknown: Vec::new(),
        }
    }

    /// The same rules, applied as far as the kernel supports them
    /// ([`Enforcement::BestEffort`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let sandbox = procpool::Sandbox::best_effort();
    /// assert_eq!(sandbox.enforcement(), procpool::Enforcement::BestEffort);
    /// ```
    pub fn best_effort() -> Sandbox {
        let mut sandbox = Sandbox::strict();
        sandbox.policy.enforcement = Enforcement::BestEffort;
        sandbox
    }

    /// How the sandbox copes with a kernel that lacks a part.
    ///
    /// # Examples
    ///
    /// ```
    /// use procpool::{Enforcement, Sandbox};
    /// assert_eq!(Sandbox::strict().enforcement(), Enforcement::Strict);
    /// ```
    pub fn enforcement(&self) -> Enforcement {
        self.policy.enforcement
    }

    /// Lets tasks read the file, or the directory tree, at `path`. It must
    /// exist when the pool is built.
    ///
    /// # Examples
    ///
    /// ```
    /// let sandbox = procpool::Sandbox::strict().allow_read("/usr/share/zoneinfo");
    /// ```
    pub fn allow_read(mut self, path: impl Into<PathBuf>) -> Self {
        self.policy.read.push(path.into());
        self
    }

    /// Lets tasks read, write, create and remove files at or under `path`.
    /// It must exist when the pool is built.
    ///
    /// # Examples
    ///
    /// ```
    /// let scratch = std::env::temp_dir();
    /// let sandbox = procpool::Sandbox::strict().allow_write(scratch);
    /// ```
    pub fn allow_write(mut self, path: impl Into<PathBuf>) -> Self {
        self.policy.write.push(path.into());
        self
    }

    /// Lets tasks make sockets, `connect`, `bind` and `listen` (TCP, UDP
    /// and unix sockets).
    ///
    /// # Examples
    ///
    /// ```
    /// use procpool::{Sandbox, SyscallRule};
    /// let nr = libc::SYS_socket;
    /// assert_eq!(Sandbox::strict().syscall_rule(nr), SyscallRule::Refused);
    /// assert_eq!(Sandbox::strict().allow_network().syscall_rule(nr), SyscallRule::Allowed);
    /// ```
    pub fn allow_network(mut self) -> Self {
        self.policy.network = true;
        self
    }

    /// Also allows the named system calls (as in `man 2 syscalls`, e.g.
    /// `"execve"`), without conditions. A name this machine does not know
    /// makes [`PoolBuilder::build`](crate::PoolBuilder::build) fail with
    /// [`Error::InvalidArgument`].
    ///
    /// # Examples
    ///
    /// ```
    /// use procpool::{Sandbox, SyscallRule};
    /// let sandbox = Sandbox::strict().allow_syscalls(["mlock", "munlock"]);
    /// assert_eq!(sandbox.syscall_rule(libc::SYS_mlock), SyscallRule::Allowed);
    /// ```
    pub fn allow_syscalls<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for name in names {
            match filter::number(name.as_ref()) {
                Some(nr) => self.policy.syscalls.push(nr),
                None => self.unknown.push(name.as_ref().to_owned()),
            }
        }
        self
    }

    /// Gives each worker a private, empty directory that its tasks may
    /// write, made at its lockdown in the system's temporary directory
    /// (`$TMPDIR` of the parent, or `/tmp`) and removed when the worker
    /// ends. Tasks find it with [`scratch_dir`], and as
    /// `std::env::temp_dir()`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use procpool::{Pool, Sandbox};
    ///
    /// fn convert(data: Vec<u8>) -> Result<usize, String> {
    ///     let dir = procpool::sandbox::scratch_dir().ok_or("no scratch directory")?;
    ///     let page = dir.join("page.tmp");
    ///     std::fs::write(&page, &data).map_err(|e| e.to_string())?;
    ///     Ok(std::fs::read(&page).map_err(|e| e.to_string())?.len())
    /// }
    ///
    /// let pool = Pool::builder().sandbox(Sandbox::strict().scratch()).build()?;
    /// assert_eq!(pool.apply(convert, vec![1, 2, 3])?.unwrap(), 3);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn scratch(mut self) -> Self {
        self.policy.scratch_base = Some(std::env::temp_dir());
        self
    }

    /// Logs refused system calls instead of refusing them: the kernel's log
    /// (`dmesg`, `journalctl -k`) shows `type=1326 ... syscall=N` for each.
    /// For finding what a task needs; **not a sandbox**.
    ///
    /// # Examples
    ///
    /// ```
    /// let audit = procpool::Sandbox::strict().log_only();
    /// ```
    pub fn log_only(mut self) -> Self {
        self.policy.log_only = true;
        self
    }

    /// The largest file a task may write (`RLIMIT_FSIZE`; 1 GiB unless
    /// set). A write past it fails with EFBIG.
    ///
    /// # Examples
    ///
    /// ```
    /// let sandbox = procpool::Sandbox::strict().max_file_size(16 << 20);
    /// ```
    pub fn max_file_size(mut self, bytes: u64) -> Self {
        self.policy.max_file_size = bytes;
        self
    }

    /// The most descriptors a worker may hold (`RLIMIT_NOFILE`; 64 unless
    /// set).
    ///
    /// # Examples
    ///
    /// ```
    /// let sandbox = procpool::Sandbox::strict().max_open_files(16);
    /// ```
    pub fn max_open_files(mut self, count: u64) -> Self {
        self.policy.max_open_files = count;
        self
    }

    /// What the filter does with system call `nr` (a `libc::SYS_*` number
    /// of this machine).
    ///
    /// # Examples
    ///
    /// ```
    /// use procpool::{Sandbox, SyscallRule};
    /// let sandbox = Sandbox::strict();
    /// assert_eq!(sandbox.syscall_rule(libc::SYS_read), SyscallRule::Allowed);
    /// assert_eq!(sandbox.syscall_rule(libc::SYS_execve), SyscallRule::Refused);
    /// assert!(matches!(sandbox.syscall_rule(libc::SYS_clone), SyscallRule::AllowedIf(_)));
    /// ```
    pub fn syscall_rule(&self, nr: i64) -> SyscallRule {
        filter::rule(&self.policy, nr)
    }

    /// What the kernel of this machine can enforce.
    ///
    /// # Examples
    ///
    /// ```
    /// let report = procpool::Sandbox::probe();
    /// println!("{report}");
    /// ```
    pub fn probe() -> SandboxReport {
        SandboxReport::probe()
    }

    /// Checks the sandbox against its own knobs and this machine's kernel;
    /// returns what will be enforced. [`PoolBuilder::build`](crate::PoolBuilder::build)
    /// calls it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an unknown system call name or a
    /// path that does not exist; [`Error::SandboxUnavailable`] when the
    /// sandbox is [strict](Enforcement::Strict) and the kernel lacks a part.
    ///
    /// # Examples
    ///
    /// ```
    /// let err = procpool::Sandbox::strict().allow_syscalls(["no_such_call"]).check().unwrap_err();
    /// assert!(err.to_string().contains("no_such_call"));
    /// ```
    pub fn check(&self) -> Result<SandboxReport, Error> {
        if let Some(name) = self.unknown.first() {
            return Err(Error::InvalidArgument(format!(
                "Sandbox::allow_syscalls: {name:?} is not a system call of this machine ({})",
                std::env::consts::ARCH
            )));
        }
        for path in self.policy.read.iter().chain(&self.policy.write) {
            if !Path::new(path).exists() {
                return Err(Error::InvalidArgument(format!(
                    "Sandbox::allow_read/allow_write: {} does not exist",
                    path.display()
                )));
            }
        }
        let report = SandboxReport::probe();
        let missing = report.missing(self.policy.network);
        if self.policy.enforcement == Enforcement::Strict && !missing.is_empty() {
            return Err(Error::SandboxUnavailable {
                missing: missing.join(", "),
            });
        }
        Ok(report)
    }

    /// The policy as it crosses to the workers, with the system calls
    /// looked up once, here.
    pub(crate) fn resolved_policy(&self) -> Policy {
        let mut policy = self.policy.clone();
        policy.table = filter::actions(&policy).into_iter().collect();
        policy.program_files = lockdown::program_files();
        policy
    }
}
