//! The system calls a worker makes to lock itself down (see `sandbox`),
//! and the SIGSYS handler that reports a system call the filter refused.
//!
//! The filter answers a refused call with SIGSYS (`SECCOMP_RET_TRAP`). The
//! handler records the call's number and the worker's pid in the marker
//! page, which the parent reads after the worker died, then ends the
//! process with SIGSYS: the handler is installed with `SA_RESETHAND`, so
//! the signal it sends itself, pending until it returns, finds the default
//! action. The refused call itself never ran. A task cannot take the
//! handler over: the filter refuses `rt_sigaction` for SIGSYS, and the
//! kernel forces the signal through even where it is blocked or ignored.

use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use super::shm::Marker;

/// Sets `no_new_privs`: `execve` can no longer grant privileges (setuid,
/// file capabilities), which seccomp and Landlock require of an
/// unprivileged process.
pub(crate) fn no_new_privs() -> io::Result<()> {
    // SAFETY: `prctl` with integer arguments only; no memory involved.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
}

/// Makes the process non-dumpable: no core file, and other processes of
/// the same user can no longer `ptrace` it or read its memory.
pub(crate) fn not_dumpable() -> io::Result<()> {
    // SAFETY: as above.
    check(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) })
}

/// Drops every capability: the bounding set (while the process still may:
/// it takes `CAP_SETPCAP`), the ambient set, then the effective,
/// permitted and inheritable sets. A worker of a root program then keeps
/// uid 0 but none of root's powers (raising a hard rlimit, poisoning
/// pages, reading any file...). Without capabilities this changes nothing.
pub(crate) fn drop_capabilities() -> io::Result<()> {
    // Up to the kernel's last capability: `PR_CAPBSET_DROP` of a number it
    // does not know fails with EINVAL, which ends the loop.
    for cap in 0..64 {
        // SAFETY: `prctl` with integer arguments only.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) } != 0 {
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINVAL) => break,
                // Without CAP_SETPCAP the bounding set cannot be changed;
                // with no capabilities and `no_new_privs`, none can be
                // gained from it either.
                Some(libc::EPERM) => break,
                _ => return Err(io::Error::last_os_error()),
            }
        }
    }
    // SAFETY: as above.
    let ambient = unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    // Kernels before 4.3 have no ambient set: nothing to clear.
    if ambient != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
        return Err(io::Error::last_os_error());
    }
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let none = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: `capset` reads one header and, for version 3, two data
    // structs, all ours and of the kernel's layout.
    let result = unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, none.as_ptr()) };
    match result {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Lowers both limits of `resource` to `value` (never raises the hard one).
pub(crate) fn limit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    // SAFETY: all-zero is a valid `rlimit`; `getrlimit` writes into ours.
    let mut current: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `getrlimit` writes one `rlimit` into `current`.
    check(unsafe { libc::getrlimit(resource, &mut current) })?;
    let value = value.min(current.rlim_max);
    let new = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: `setrlimit` reads one `rlimit` we own.
    check(unsafe { libc::setrlimit(resource, &new) })
}

/// How many threads this process has (from `/proc/self/task`).
pub(crate) fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Removes every variable from the environment.
///
/// # Safety
///
/// No other thread may read or change the environment meanwhile (the
/// caller checked that it is the only thread).
pub(crate) unsafe fn clear_environment() {
    // SAFETY: the caller promises no other thread touches the environment
    // (`clearenv` bypasses the standard library's lock on it).
    unsafe { libc::clearenv() };
}

/// The Landlock ABI version the kernel offers, 0 where it has none (or
/// Landlock is disabled at boot).
pub(crate) fn landlock_abi() -> u32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute, size 0 and the VERSION flag, the call
    // only returns a number; no memory is read or written.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    u32::try_from(version).unwrap_or(0)
}

/// Whether the kernel can filter system calls with seccomp-BPF and answer
/// a refused call with SIGSYS.
pub(crate) fn seccomp_trap_available() -> bool {
    const SECCOMP_GET_ACTION_AVAIL: libc::c_uint = 2;
    let action: u32 = libc::SECCOMP_RET_TRAP;
    // SAFETY: the call reads one `u32` from the address we pass.
    let result = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_GET_ACTION_AVAIL,
            0,
            &action as *const u32,
        )
    };
    result == 0
}

/// Installs the seccomp `program` on every thread of the process (TSYNC).
/// `no_new_privs` must be set.
pub(crate) fn install_filter(program: &[libc::sock_filter]) -> io::Result<()> {
    let len = u16::try_from(program.len()).map_err(|_| io::Error::other("the filter is too long"))?;
    let fprog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: the kernel copies `len` instructions from `filter`, which
    // points to that many in `program`, borrowed for the call.
    let result = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &fprog as *const libc::sock_fprog,
        )
    };
    match result {
        0 => Ok(()),
        -1 => Err(io::Error::last_os_error()),
        tid => Err(io::Error::other(format!(
            "thread {tid} could not take the filter (it has one of its own)"
        ))),
    }
}

/// Where the handler records a refused call, set once.
static REPORT_TO: OnceLock<&'static Marker> = OnceLock::new();
/// This process's id, read before the filter is in place.
static PID: AtomicU32 = AtomicU32::new(0);

/// Installs the SIGSYS handler that reports refused system calls in
/// `marker`. Call it before the filter is applied (which then refuses any
/// change to it).
pub(crate) fn report_violations(marker: &'static Marker) -> io::Result<()> {
    PID.store(std::process::id(), Ordering::Relaxed);
    let _ = REPORT_TO.set(marker);
    // SAFETY: all-zero is a valid `sigaction` (no flags, empty mask),
    // filled in below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_sigsys as *const () as libc::sighandler_t;
    action.sa_flags = libc::SA_SIGINFO | libc::SA_RESETHAND;
    // SAFETY: `sigemptyset` writes the mask we own; `sigaction` reads our
    // action. The handler is async-signal-safe (see `on_sigsys`) and reads
    // statics set above.
    check(unsafe {
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut())
    })
}

/// The part of the kernel's `siginfo_t` that SIGSYS fills in
/// (`_sigsys` in `<asm-generic/siginfo.h>`, on 64-bit targets).
#[repr(C)]
struct SigsysInfo {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    _pad: libc::c_int,
    call_addr: *mut libc::c_void,
    syscall: libc::c_int,
    arch: libc::c_uint,
}

const _: () = assert!(std::mem::size_of::<SigsysInfo>() <= std::mem::size_of::<libc::siginfo_t>());

/// Records the refused call and ends the process with SIGSYS. Only atomic
/// loads and stores, `send` and one `tgkill`, which the filter allows for
/// this process.
extern "C" fn on_sigsys(_signal: libc::c_int, info: *mut libc::siginfo_t, _context: *mut libc::c_void) {
    let pid = PID.load(Ordering::Relaxed);
    if let Some(marker) = REPORT_TO.get()
        && !info.is_null()
    {
        // SAFETY: the kernel passes a valid `siginfo_t` for a SIGSYS
        // handler installed with SA_SIGINFO, and `SigsysInfo` is a prefix
        // of its layout for SIGSYS.
        let syscall = unsafe { (*info.cast::<SigsysInfo>()).syscall };
        marker.set_violation(pid, syscall as u32);
        // The results finished before this task go first (`send` is
        // allowed: results always go out with it).
        super::held::send();
    }
    // SAFETY: signals this thread of this process; SIGSYS is blocked while
    // the handler runs, so it is delivered as the handler returns, with the
    // default action that SA_RESETHAND restored: the process ends.
    unsafe {
        libc::syscall(
            libc::SYS_tgkill,
            pid as libc::pid_t,
            libc::syscall(libc::SYS_gettid),
            libc::SIGSYS,
        );
    }
}

fn check(result: libc::c_int) -> io::Result<()> {
    match result {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}
