//! Process-wide settings and exits of a worker process.

use std::os::fd::{AsFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigHandler, Signal, signal};

/// Ignores SIGPIPE, as the Rust runtime does for `main`: a task that writes
/// to a closed pipe gets an error instead of being killed. (The worker runs
/// before the runtime would have done this.)
pub(crate) fn ignore_sigpipe() {
    // SAFETY: `SigIgn` installs no handler code, so there is nothing that
    // could run in signal context; changing the disposition is process-wide
    // and happens before the worker starts any thread.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) };
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

/// Blocks until the peer of `fd` has closed it (its process died or closed
/// the channel). Data arriving on `fd` does not wake it.
pub(crate) fn wait_for_hangup(fd: impl AsFd) {
    loop {
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::empty())];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {
                let revents = fds[0].revents().unwrap_or(PollFlags::POLLHUP);
                if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
                    return;
                }
            }
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
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

/// Caps the data segment (`RLIMIT_DATA`: heap and private writable
/// memory) of the process `command` starts at `bytes`.
pub(crate) fn limit_memory(command: &mut std::process::Command, bytes: u64) {
    use std::os::unix::process::CommandExt;
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    let hook = move || {
        // SAFETY: `setrlimit` reads the `rlimit` we pass by reference, which
        // lives on this stack frame for the call.
        match unsafe { libc::setrlimit(libc::RLIMIT_DATA, &limit) } {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        }
    };
    // SAFETY: the hook runs between `fork` and `exec`, where only
    // async-signal-safe calls are allowed; it makes one, `setrlimit`, and
    // allocates nothing (the error path reads `errno` only).
    unsafe {
        command.pre_exec(hook);
    }
}
