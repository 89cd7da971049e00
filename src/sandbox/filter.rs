//! The system call policy of a sandboxed worker: what a Rust worker needs
//! (measured: see the module's tests and `Sandbox::log_only`), and nothing
//! that makes a new socket, connects, starts a program or a process,
//! traces, signals another process, mounts or enters a namespace.
//!
//! Calls are named, not numbered, and resolved for the machine's
//! architecture (by the `syscalls` crate): a name the architecture lacks
//! (`open` on aarch64) is skipped.

use std::collections::BTreeMap;
use std::str::FromStr;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};
use syscalls::Sysno;

use super::{Policy, SyscallRule};

/// When a conditionally allowed call is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    /// The first argument is this process (or 0, "myself", where the call
    /// takes that).
    OwnProcess,
    /// `clone` of a thread: shares memory, is a thread, enters no namespace.
    Thread,
    /// `rt_sigaction` of any signal but SIGSYS (the filter's messenger).
    NotSigsys,
    /// `prctl` options that read state or name a thread or mapping.
    HarmlessPrctl,
    /// `ioctl` requests that ask about a descriptor or set its flags.
    HarmlessIoctl,
}

impl When {
    fn describe(self) -> &'static str {
        match self {
            When::OwnProcess => "only on the worker itself",
            When::Thread => "only to start a thread; a new process or namespace fails with EPERM",
            When::NotSigsys => "any signal but SIGSYS",
            When::HarmlessPrctl => {
                "PR_SET_NAME, PR_GET_NAME, PR_SET_VMA, PR_GET_DUMPABLE, PR_GET_NO_NEW_PRIVS, \
                 PR_GET_SECCOMP, PR_CAPBSET_READ"
            }
            When::HarmlessIoctl => "TCGETS, TIOCGWINSZ, FIONREAD, FIONBIO, FIOCLEX, FIONCLEX",
        }
    }
}

/// Allowed without conditions.
#[rustfmt::skip]
const ALLOWED: &[&str] = &[
    // Descriptors the worker holds, and files Landlock lets it open.
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
    "pwritev2", "lseek", "close", "close_range", "dup", "dup2", "dup3", "fcntl", "flock", "fsync",
    "fdatasync", "ftruncate", "fallocate", "fstat", "newfstatat", "stat", "lstat", "statx", "fstatfs",
    "statfs", "open", "openat", "openat2", "access", "faccessat", "faccessat2", "readlink",
    "readlinkat", "getcwd", "getdents64", "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename",
    "renameat", "renameat2", "truncate", "pipe", "pipe2", "memfd_create", "copy_file_range",
    "sendfile", "splice", "tee",
    // Waiting on descriptors and time.
    "poll", "ppoll", "select", "pselect6", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait",
    "epoll_pwait2", "eventfd2", "timerfd_create", "timerfd_settime", "timerfd_gettime", "nanosleep",
    "clock_nanosleep", "clock_gettime", "clock_getres", "gettimeofday", "time", "getitimer",
    "setitimer", "alarm",
    // Existing sockets (the channel to the parent); no new ones.
    "sendto", "recvfrom", "sendmsg", "recvmsg", "shutdown", "getsockopt", "setsockopt", "getsockname",
    "getpeername",
    // Memory.
    "brk", "mmap", "munmap", "mprotect", "mremap", "madvise", "msync", "mincore", "membarrier",
    // Signals, threads and their synchronisation.
    "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigsuspend", "rt_sigtimedwait",
    "sigaltstack", "restart_syscall", "futex", "futex_waitv", "set_robust_list", "get_robust_list",
    "set_tid_address", "rseq", "sched_yield", "sched_getaffinity", "sched_getparam",
    "sched_getscheduler", "arch_prctl", "exit", "exit_group", "wait4", "waitid",
    // Who and where the worker is.
    "getpid", "gettid", "getppid", "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid",
    "getgroups", "getpgrp", "getpgid", "getsid", "getrlimit", "getrusage", "times", "uname", "sysinfo",
    "getrandom", "getpriority", "getcpu",
];

/// Allowed when their arguments pass a check.
const CONDITIONAL: &[(&str, When)] = &[
    ("clone", When::Thread),
    ("kill", When::OwnProcess),
    ("tgkill", When::OwnProcess),
    ("prlimit64", When::OwnProcess),
    ("sched_setaffinity", When::OwnProcess),
    ("rt_sigaction", When::NotSigsys),
    ("prctl", When::HarmlessPrctl),
    ("ioctl", When::HarmlessIoctl),
];

/// Answered with an error number instead of ending the worker. `clone3`
/// cannot be filtered by its flags (they are in memory); with ENOSYS glibc
/// falls back to `clone`, which can. A new process fails with EPERM, as
/// the task sees it (`Command::spawn` returns "Operation not permitted"):
/// glibc's `posix_spawn` blocks every signal around its `clone`, and a
/// trap would then end the worker without saying which call it was.
const ERRNO: &[(&str, i32)] = &[
    ("clone3", libc::ENOSYS),
    ("fork", libc::EPERM),
    ("vfork", libc::EPERM),
];

/// Allowed with [`Sandbox::allow_network`](super::Sandbox::allow_network).
#[rustfmt::skip]
const NETWORK: &[&str] = &[
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4", "sendmmsg", "recvmmsg",
];

/// Calls the kernel runs without asking seccomp (Linux 6.13 and later, on
/// x86_64): the return paths of user-space probes. Outside a probe's
/// trampoline `uretprobe` ends the caller with SIGILL and `uprobe` fails
/// with ENXIO; neither reaches anything else.
const UNFILTERED: &[&str] = &["uretprobe", "uprobe"];

/// The number of the call named `name` on this architecture.
pub(super) fn number(name: &str) -> Option<i64> {
    Sysno::from_str(name).ok().map(|s| i64::from(s.id()))
}

/// The name of call `nr` on this architecture.
pub(crate) fn name(nr: i64) -> Option<&'static str> {
    usize::try_from(nr).ok().and_then(Sysno::new).map(|s| s.name())
}

/// The rule for call `nr` under `policy`.
pub(super) fn rule(policy: &Policy, nr: i64) -> SyscallRule {
    let named = |list: &[&str]| list.iter().any(|n| number(n) == Some(nr));
    if policy.syscalls.contains(&nr) || named(ALLOWED) || (policy.network && named(NETWORK)) {
        return SyscallRule::Allowed;
    }
    if named(UNFILTERED) {
        return SyscallRule::Unfiltered;
    }
    if let Some((_, when)) = CONDITIONAL.iter().find(|(n, _)| number(n) == Some(nr)) {
        return SyscallRule::AllowedIf(when.describe());
    }
    match ERRNO.iter().find(|(n, _)| number(n) == Some(nr)) {
        Some((_, errno)) => SyscallRule::Errno(*errno),
        None => SyscallRule::Refused,
    }
}

/// The filters to install, in order: the calls answered with an errno,
/// then the allowlist (a refused call traps, or is logged in log-only
/// mode), which refuses `seccomp` itself and so must come last.
pub(crate) fn programs(policy: &Policy, pid: u32) -> Result<Vec<BpfProgram>, String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())?;
    let mut allowed: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let names = ALLOWED
        .iter()
        .chain(ERRNO.iter().map(|(n, _)| n))
        .chain(if policy.network { NETWORK } else { &[] });
    for nr in names
        .filter_map(|n| number(n))
        .chain(policy.syscalls.iter().copied())
    {
        allowed.insert(nr, Vec::new());
    }
    for (name, when) in CONDITIONAL {
        if let Some(nr) = number(name) {
            // `clone` passes here: the EPERM filter below refuses a clone
            // that is not a thread (a trap here would win over its errno).
            let rules = match when {
                When::Thread => Vec::new(),
                _ => conditions(*when, pid)?,
            };
            allowed.entry(nr).or_insert(rules);
        }
    }
    let refused = match policy.log_only {
        true => SeccompAction::Log,
        false => SeccompAction::Trap,
    };
    let mut by_errno: BTreeMap<i32, BTreeMap<i64, Vec<SeccompRule>>> = BTreeMap::new();
    for (name, errno) in ERRNO {
        if let Some(nr) = number(name).filter(|nr| !policy.syscalls.contains(nr)) {
            by_errno.entry(*errno).or_default().insert(nr, Vec::new());
        }
    }
    if let Some(clone) = number("clone").filter(|nr| !policy.syscalls.contains(nr)) {
        by_errno
            .entry(libc::EPERM)
            .or_default()
            .insert(clone, not_a_thread()?);
    }
    let mut filters = Vec::new();
    for (errno, rules) in by_errno {
        let errno = u32::try_from(errno).map_err(|e| e.to_string())?;
        filters.push(compile(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno),
            arch,
        )?);
    }
    filters.push(compile(allowed, refused, SeccompAction::Allow, arch)?);
    Ok(filters)
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
    arch: TargetArch,
) -> Result<BpfProgram, String> {
    let filter = SeccompFilter::new(rules, mismatch, matched, arch).map_err(|e| e.to_string())?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())
}

/// The `clone` flags that make namespaces.
const NAMESPACES: libc::c_int = libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP;

/// The rules (any one matches) for a `clone` that is not a thread: one of
/// the thread flags missing, or a namespace flag present.
fn not_a_thread() -> Result<Vec<SeccompRule>, String> {
    let flag = |flag: libc::c_int, value: libc::c_int| {
        SeccompCondition::new(
            0,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(flag as u32 as u64),
            value as u32 as u64,
        )
        .and_then(|c| SeccompRule::new(vec![c]))
        .map_err(|e| e.to_string())
    };
    let mut rules = vec![flag(libc::CLONE_THREAD, 0)?, flag(libc::CLONE_VM, 0)?];
    for bit in 0..32 {
        let ns = NAMESPACES & (1 << bit);
        if ns != 0 {
            rules.push(flag(ns, ns)?);
        }
    }
    Ok(rules)
}

/// The seccomp rules (any one of which allows the call) for `when`.
fn conditions(when: When, pid: u32) -> Result<Vec<SeccompRule>, String> {
    let cond = |arg: u8, op: SeccompCmpOp, value: u64| {
        SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(|e| e.to_string())
    };
    let rule = |conds: Vec<SeccompCondition>| SeccompRule::new(conds).map_err(|e| e.to_string());
    let any_of = |arg: u8, values: &[u64]| -> Result<Vec<SeccompRule>, String> {
        values
            .iter()
            .map(|v| rule(vec![cond(arg, SeccompCmpOp::Eq, *v)?]))
            .collect()
    };
    match when {
        When::OwnProcess => any_of(0, &[0, u64::from(pid)]),
        // Checked by the EPERM filter (see `not_a_thread`).
        When::Thread => Ok(Vec::new()),
        When::NotSigsys => Ok(vec![rule(vec![cond(0, SeccompCmpOp::Ne, libc::SIGSYS as u64)?])?]),
        When::HarmlessPrctl => any_of(
            0,
            &[
                libc::PR_SET_NAME as u64,
                libc::PR_GET_NAME as u64,
                libc::PR_GET_DUMPABLE as u64,
                libc::PR_GET_NO_NEW_PRIVS as u64,
                libc::PR_GET_SECCOMP as u64,
                libc::PR_CAPBSET_READ as u64,
                0x5356_4d41, // PR_SET_VMA
            ],
        ),
        // The request's type differs across targets (`c_ulong`, `c_int`).
        #[allow(clippy::unnecessary_cast)]
        When::HarmlessIoctl => any_of(
            1,
            &[
                libc::TCGETS as u64,
                libc::TIOCGWINSZ as u64,
                libc::FIONREAD as u64,
                libc::FIONBIO as u64,
                libc::FIOCLEX as u64,
                libc::FIONCLEX as u64,
            ],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_in_the_lists_is_a_system_call_of_some_architecture() {
        // On x86_64 every name resolves; elsewhere the legacy ones may not.
        if std::env::consts::ARCH == "x86_64" {
            let all = ALLOWED
                .iter()
                .chain(NETWORK)
                .chain(CONDITIONAL.iter().map(|(n, _)| n))
                .chain(ERRNO.iter().map(|(n, _)| n));
            for name in all {
                assert!(number(name).is_some(), "{name} is not a system call here");
            }
        }
    }

    #[test]
    fn the_rules_say_what_the_policy_says() {
        let strict = Policy::default();
        assert_eq!(rule(&strict, number("read").unwrap()), SyscallRule::Allowed);
        assert_eq!(rule(&strict, number("socket").unwrap()), SyscallRule::Refused);
        assert_eq!(rule(&strict, number("execve").unwrap()), SyscallRule::Refused);
        assert_eq!(
            rule(&strict, number("clone3").unwrap()),
            SyscallRule::Errno(libc::ENOSYS)
        );
        assert!(matches!(
            rule(&strict, number("clone").unwrap()),
            SyscallRule::AllowedIf(_)
        ));
        assert_eq!(rule(&strict, 100_000), SyscallRule::Refused);
        let open = Policy {
            network: true,
            syscalls: vec![number("execve").unwrap()],
            ..Policy::default()
        };
        assert_eq!(rule(&open, number("socket").unwrap()), SyscallRule::Allowed);
        assert_eq!(rule(&open, number("execve").unwrap()), SyscallRule::Allowed);
        assert_eq!(name(number("socket").unwrap()), Some("socket"));
    }

    #[test]
    fn the_filters_compile() {
        let filters = programs(&Policy::default(), std::process::id()).unwrap();
        assert_eq!(filters.len(), 3, "ENOSYS, EPERM, the allowlist");
        assert!(filters.iter().all(|f| !f.is_empty()));
    }
}
