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

use syscalls::Sysno;

use serde::{Deserialize, Serialize};

use super::{Policy, SyscallRule, bpf};

/// When a conditionally allowed call is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum When {
    /// The first argument is this process, or 0 ("myself" for `prlimit64`
    /// and `sched_setaffinity`).
    OwnProcess,
    /// The first argument is this process, and not 0: for `kill`, 0 is
    /// the whole process group, which holds the parent.
    OwnPid,
    /// `clone` of a thread: shares memory, is a thread, enters no namespace.
    Thread,
    /// `rt_sigaction` of any signal but SIGSYS (the filter's messenger).
    NotSigsys,
    /// `prctl` options that read state or name a thread or mapping.
    HarmlessPrctl,
    /// `ioctl` requests that ask about a descriptor or set its flags.
    HarmlessIoctl,
    /// `mmap` of anything but shared anonymous memory, which the memory
    /// cap (`RLIMIT_DATA`) does not count.
    NotSharedAnonymous,
    /// `fcntl` commands on the descriptor itself: not `F_SETOWN` or
    /// `F_SETSIG`, which would have the kernel signal another process
    /// (SIGIO) for the worker, nor leases and directory notifications.
    HarmlessFcntl,
}

impl When {
    /// The `prctl` options of [`When::HarmlessPrctl`].
    pub(super) const PRCTL_OPTIONS: &[u32] = &[
        libc::PR_SET_NAME as u32,
        libc::PR_GET_NAME as u32,
        libc::PR_GET_DUMPABLE as u32,
        libc::PR_GET_NO_NEW_PRIVS as u32,
        libc::PR_GET_SECCOMP as u32,
        libc::PR_CAPBSET_READ as u32,
        0x5356_4d41, // PR_SET_VMA
    ];
    /// The `ioctl` requests of [`When::HarmlessIoctl`].
    pub(super) const IOCTL_REQUESTS: &[u32] = &[
        libc::TCGETS as u32,
        libc::TIOCGWINSZ as u32,
        libc::FIONREAD as u32,
        libc::FIONBIO as u32,
        libc::FIOCLEX as u32,
        libc::FIONCLEX as u32,
    ];
    /// The `fcntl` commands of [`When::HarmlessFcntl`].
    pub(super) const FCNTL_COMMANDS: &[u32] = &[
        libc::F_DUPFD as u32,
        libc::F_GETFD as u32,
        libc::F_SETFD as u32,
        libc::F_GETFL as u32,
        libc::F_SETFL as u32,
        libc::F_GETLK as u32,
        libc::F_SETLK as u32,
        libc::F_SETLKW as u32,
        libc::F_OFD_GETLK as u32,
        libc::F_OFD_SETLK as u32,
        libc::F_OFD_SETLKW as u32,
        libc::F_DUPFD_CLOEXEC as u32,
        libc::F_SETPIPE_SZ as u32,
        libc::F_GETPIPE_SZ as u32,
        libc::F_ADD_SEALS as u32,
        libc::F_GET_SEALS as u32,
    ];
    /// The `clone` flags of a thread...
    pub(super) const THREAD_FLAGS: u32 = (libc::CLONE_THREAD | libc::CLONE_VM) as u32;
    /// ... and, with them, those that make namespaces: a thread has the
    /// first and none of the rest.
    pub(super) const THREAD_MASK: u32 = (libc::CLONE_THREAD
        | libc::CLONE_VM
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUSER
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWCGROUP) as u32;

    fn describe(self) -> &'static str {
        match self {
            When::OwnProcess | When::OwnPid => "only on the worker itself",
            When::Thread => "only to start a thread; a new process or namespace fails with EPERM",
            When::NotSigsys => "any signal but SIGSYS",
            When::HarmlessPrctl => {
                "PR_SET_NAME, PR_GET_NAME, PR_SET_VMA, PR_GET_DUMPABLE, PR_GET_NO_NEW_PRIVS, \
                 PR_GET_SECCOMP, PR_CAPBSET_READ"
            }
            When::HarmlessIoctl => "TCGETS, TIOCGWINSZ, FIONREAD, FIONBIO, FIOCLEX, FIONCLEX",
            When::NotSharedAnonymous => "not MAP_SHARED with MAP_ANONYMOUS",
            When::HarmlessFcntl => {
                "duplicating, descriptor and status flags, locks, pipe size, seals (not F_SETOWN, \
                 F_SETSIG, F_SETLEASE, F_NOTIFY)"
            }
        }
    }
}

/// Allowed without conditions.
#[rustfmt::skip]
const ALLOWED: &[&str] = &[
    // Descriptors the worker holds, and files Landlock lets it open.
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
    "pwritev2", "lseek", "close", "close_range", "dup", "dup2", "dup3", "flock", "fsync",
    "fdatasync", "ftruncate", "fallocate", "fstat", "newfstatat", "stat", "lstat", "statx", "fstatfs",
    "statfs", "open", "openat", "openat2", "access", "faccessat", "faccessat2", "readlink",
    "readlinkat", "getcwd", "getdents64", "mkdir", "mkdirat", "rmdir", "unlink", "unlinkat", "rename",
    "renameat", "renameat2", "truncate", "pipe", "pipe2", "copy_file_range",
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
    "brk", "munmap", "mprotect", "mremap", "madvise", "msync", "mincore", "membarrier",
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
    ("kill", When::OwnPid),
    ("tgkill", When::OwnPid),
    ("prlimit64", When::OwnProcess),
    ("sched_setaffinity", When::OwnProcess),
    ("rt_sigaction", When::NotSigsys),
    ("prctl", When::HarmlessPrctl),
    ("ioctl", When::HarmlessIoctl),
    ("fcntl", When::HarmlessFcntl),
    ("mmap", When::NotSharedAnonymous),
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
    let action = u32::try_from(nr)
        .ok()
        .and_then(|nr| actions(policy).get(&nr).copied());
    match action {
        Some(Action::Allow) => SyscallRule::Allowed,
        Some(Action::Errno(errno)) => SyscallRule::Errno(errno),
        Some(Action::Check(when)) => SyscallRule::AllowedIf(when.describe()),
        None if UNFILTERED.iter().any(|n| number(n) == Some(nr)) => SyscallRule::Unfiltered,
        None => SyscallRule::Refused,
    }
}

/// What the filter does with one call (a call not in the table is
/// refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Action {
    Allow,
    Errno(i32),
    Check(When),
}

/// The filter's table for `policy`, by call number.
pub(super) fn actions(policy: &Policy) -> BTreeMap<u32, Action> {
    let mut table = BTreeMap::new();
    let mut put = |name: &str, action| {
        if let Some(nr) = number(name).and_then(|nr| u32::try_from(nr).ok()) {
            table.insert(nr, action);
        }
    };
    for (name, errno) in ERRNO {
        put(name, Action::Errno(*errno));
    }
    for (name, when) in CONDITIONAL {
        put(name, Action::Check(*when));
    }
    let network = if policy.network { NETWORK } else { &[] };
    for name in ALLOWED.iter().chain(network) {
        put(name, Action::Allow);
    }
    for nr in policy.syscalls.iter().filter_map(|nr| u32::try_from(*nr).ok()) {
        table.insert(nr, Action::Allow);
    }
    table
}

/// The seccomp program for `policy` in process `pid`.
pub(crate) fn program(policy: &Policy, pid: u32) -> Result<Vec<libc::sock_filter>, String> {
    let refused = if policy.log_only { bpf::LOG } else { bpf::TRAP };
    // The parent looked the names up once for every worker (`table`).
    let table = match policy.table.is_empty() {
        true => actions(policy),
        false => policy.table.iter().copied().collect(),
    };
    bpf::program(&table, refused, pid)
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
    fn the_table_the_parent_resolves_makes_the_same_program() {
        let sandbox = super::super::Sandbox::strict()
            .allow_network()
            .allow_syscalls(["execve"]);
        let fields =
            |p: Vec<libc::sock_filter>| -> Vec<_> { p.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect() };
        let resolved = sandbox.resolved_policy();
        assert!(!resolved.table.is_empty());
        let mut plain = resolved.clone();
        plain.table.clear();
        assert_eq!(
            fields(program(&resolved, 7).unwrap()),
            fields(program(&plain, 7).unwrap())
        );
    }

    /// The program does, for every call number and the argument cases of
    /// each check, what `rule` (the documented policy) says.
    #[test]
    fn the_program_does_what_the_rules_say() {
        for policy in [
            Policy::default(),
            Policy {
                network: true,
                syscalls: vec![number("execve").unwrap(), number("clone").unwrap()],
                ..Policy::default()
            },
        ] {
            let pid = 4242;
            let p = program(&policy, pid).unwrap();
            assert!(p.len() < 600, "{} instructions", p.len());
            let arch = bpf::run(&p, 0, 0, [0; 6]); // the wrong architecture
            assert_eq!(arch, bpf::KILL);
            let arch = match std::env::consts::ARCH {
                "x86_64" => 0xc000_003e,
                "aarch64" => 0xc000_00b7,
                _ => return,
            };
            for nr in 0..600u32 {
                let call = |args: [u64; 6]| bpf::run(&p, arch, nr, args);
                match rule(&policy, i64::from(nr)) {
                    SyscallRule::Allowed => assert_eq!(call([0; 6]), bpf::ALLOW, "#{nr}"),
                    SyscallRule::Refused | SyscallRule::Unfiltered => {
                        assert_eq!(call([0; 6]), bpf::TRAP, "#{nr}")
                    }
                    SyscallRule::Errno(e) => assert_eq!(call([0; 6]), bpf::errno(e), "#{nr}"),
                    SyscallRule::AllowedIf(_) => {
                        let when = CONDITIONAL
                            .iter()
                            .find(|(n, _)| number(n) == Some(i64::from(nr)))
                            .unwrap()
                            .1;
                        let (yes, no): (&[[u64; 6]], &[[u64; 6]]) = match when {
                            When::OwnProcess => (
                                &[[0; 6], [pid as u64, 9, 0, 0, 0, 0]],
                                &[[1; 6], [4243, 0, 0, 0, 0, 0]],
                            ),
                            When::OwnPid => (
                                &[[pid as u64, 9, 0, 0, 0, 0]],
                                &[[0; 6], [1; 6], [4243, 0, 0, 0, 0, 0]],
                            ),
                            When::NotSigsys => (
                                &[[libc::SIGINT as u64, 0, 0, 0, 0, 0]],
                                &[[libc::SIGSYS as u64, 0, 0, 0, 0, 0]],
                            ),
                            When::HarmlessPrctl => (
                                &[[libc::PR_SET_NAME as u64, 0, 0, 0, 0, 0]],
                                &[
                                    [libc::PR_SET_DUMPABLE as u64, 1, 0, 0, 0, 0],
                                    [libc::PR_SET_SECCOMP as u64, 0, 0, 0, 0, 0],
                                ],
                            ),
                            When::HarmlessIoctl => (
                                &[[1, u64::from(When::IOCTL_REQUESTS[0]), 0, 0, 0, 0]],
                                &[[0, 0x5412 /* TIOCSTI */, 0, 0, 0, 0]],
                            ),
                            When::NotSharedAnonymous => (
                                &[
                                    [0, 4096, 3, (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64, 0, 0],
                                    [0, 4096, 1, libc::MAP_SHARED as u64, 3, 0],
                                ],
                                &[
                                    [0, 4096, 3, (libc::MAP_SHARED | libc::MAP_ANONYMOUS) as u64, 0, 0],
                                    [
                                        0,
                                        4096,
                                        3,
                                        (libc::MAP_SHARED_VALIDATE | libc::MAP_ANONYMOUS) as u64,
                                        0,
                                        0,
                                    ],
                                ],
                            ),
                            When::HarmlessFcntl => (
                                &[[3, libc::F_SETFD as u64, 1, 0, 0, 0]],
                                &[
                                    [3, libc::F_SETOWN as u64, 1, 0, 0, 0],
                                    [3, 10 /* F_SETSIG */, 0, 0, 0, 0],
                                ],
                            ),
                            When::Thread => (
                                &[[
                                    u64::from(When::THREAD_FLAGS) | libc::CLONE_SETTLS as u64,
                                    0,
                                    0,
                                    0,
                                    0,
                                    0,
                                ]],
                                &[],
                            ),
                        };
                        for args in yes {
                            assert_eq!(call(*args), bpf::ALLOW, "#{nr} {args:?}");
                        }
                        for args in no {
                            assert_eq!(call(*args), bpf::TRAP, "#{nr} {args:?}");
                        }
                        if when == When::Thread {
                            assert_eq!(
                                call([libc::SIGCHLD as u64, 0, 0, 0, 0, 0]),
                                bpf::errno(libc::EPERM)
                            );
                        }
                    }
                }
            }
        }
    }
}
