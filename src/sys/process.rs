//! Process-wide settings and exits of a worker process.

use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigHandler, Signal, signal};

/// Ignores SIGPIPE, as the Rust runtime does for `main`: a task that writes
/// to a closed pipe gets an error instead of being killed. (The worker runs
/// before the runtime would have done this.)
pub(crate) fn ignore_sigpipe() {
    let _ = ignore(Signal::SIGPIPE);
}

/// Ignores `sig` in this process (SIGPIPE at start; SIGXFSZ at a sandbox's
/// lockdown, so that a write past the file-size limit fails with EFBIG).
pub(crate) fn ignore(sig: Signal) -> std::io::Result<()> {
    // SAFETY: `SigIgn` installs no handler code, so there is nothing that
    // could run in signal context; the disposition is process-wide.
    unsafe { signal(sig, SigHandler::SigIgn) }
        .map(drop)
        .map_err(std::io::Error::from)
}

/// Whether the kernel started this program in secure-execution mode
/// (`AT_SECURE`): it is setuid, setgid or has file capabilities, so its
/// environment and descriptors come from a less privileged user.
pub(crate) fn secure_execution() -> bool {
    // SAFETY: `getauxval` reads the auxiliary vector the kernel gave the
    // process; it takes an integer and touches no memory of ours.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// This process's user and group ids: real and effective.
pub(crate) fn user_ids() -> (u32, u32) {
    // SAFETY: `getuid` and `geteuid` take nothing and cannot fail.
    unsafe { (libc::getuid(), libc::geteuid()) }
}

/// This process's soft limit on open descriptors, if it has one.
pub(crate) fn descriptor_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` through the pointer, which
    // points at ours.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    (limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// The pid of this process's parent.
pub(crate) fn parent_pid() -> u32 {
    nix::unistd::getppid().as_raw() as u32
}

/// Names this thread (the first 15 bytes of `name`): for a process's first
/// thread, the name `ps`, `top` and `pgrep` show.
pub(crate) fn set_thread_name(name: &str) {
    let mut bytes = [0u8; 16];
    let cut = name.len().min(15);
    bytes[..cut].copy_from_slice(&name.as_bytes()[..cut]);
    // SAFETY: `PR_SET_NAME` reads a NUL-terminated string of at most 16
    // bytes from the pointer, which `bytes` is (its last byte stays 0).
    unsafe { libc::prctl(libc::PR_SET_NAME, bytes.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

/// Removes `key` from this process's environment.
pub(crate) fn remove_env(key: &str) {
    // SAFETY: called by the bootstrap before `main`, when the process has a
    // single thread: no other thread can be reading the environment.
    unsafe { std::env::remove_var(key) };
}

/// Ends the process at once with `code`, running no exit handlers and
/// taking no locks (safe to call while another thread holds stdout).
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

/// Makes the kernel SIGKILL this process when its parent dies, even in the
/// middle of a task: a worker never outlives its parent. The parent's
/// thread that started the worker (its supervisor) lives until it has
/// reaped the worker, so only the parent's death can trigger it.
///
/// `Err` if the parent died before the request took effect: its end of
/// `channel` is then already closed.
pub(crate) fn die_with_parent(channel: impl AsFd) -> Result<(), ()> {
    // SAFETY: `prctl(PR_SET_PDEATHSIG, sig)` takes integers only and
    // changes a setting of this process.
    let set = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) };
    if set != 0 {
        return Err(());
    }
    // A parent that died before the request leaves its end of the channel
    // closed: see that without waiting.
    let mut fds = [PollFd::new(channel.as_fd(), PollFlags::empty())];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(_) => match fds[0].revents() {
            Some(r) if r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) => Err(()),
            _ => Ok(()),
        },
        Err(_) => Ok(()),
    }
}

/// A pidfd for the child `pid`: readable once the child has exited. `None`
/// on kernels without `pidfd_open` (before Linux 5.3).
///
/// `pid` must be an unreaped child of this process, so that it cannot have
/// been reused by another process.
pub(crate) fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: `pidfd_open(pid, 0)` takes two integers and returns a new
    // descriptor or -1; it reads and writes no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = RawFd::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the kernel just created this descriptor for us; nothing else
    // in the process knows it, so this is its only owner.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends SIGKILL to `pid`.
///
/// `pid` must be an unreaped child of this process (so that it cannot have
/// been reused by another process); a child that already exited ignores it.
pub(crate) fn kill(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Caps this process's data segment (`RLIMIT_DATA`: heap and private
/// writable memory) at `bytes`; processes it starts inherit the cap.
pub(crate) fn limit_memory(bytes: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: `setrlimit` reads the `rlimit` passed by reference, which
    // lives for the call.
    match unsafe { libc::setrlimit(libc::RLIMIT_DATA, &limit) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}
