//! Descriptors: handing the worker's end of its channel across `exec`, and
//! taking it over on the other side.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::stat::{SFlag, fstat};

/// Makes `fd` survive the `exec` of `command`, in the child only.
///
/// Every descriptor procpool makes is close-on-exec, so that workers
/// started at the same time by other threads do not inherit each other's
/// channels (an inherited channel would keep a dead parent's socket open).
/// This clears the flag after `fork`, in the child, for this one
/// descriptor.
pub(crate) fn inherit_across_exec(command: &mut Command, fd: &impl AsRawFd) {
    let raw = fd.as_raw_fd();
    let hook = move || {
        // SAFETY: `raw` is open in the child: it is open in the parent for as
        // long as the `Command` is being spawned (the caller owns it) and
        // `fork` copies the table. The borrow lasts for this one call.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))
            .map(drop)
            .map_err(io::Error::from)
    };
    // SAFETY: the hook runs between `fork` and `exec`, where only
    // async-signal-safe calls are allowed; it makes exactly one, `fcntl`,
    // allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(hook);
    }
}

/// Takes ownership of the channel descriptor `raw` that the parent passed to
/// this worker, after checking it is an open socket.
pub(crate) fn adopt_channel(raw: RawFd) -> io::Result<UnixStream> {
    if raw < 3 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("channel descriptor {raw} is a standard stream"),
        ));
    }
    // SAFETY: only used for the `fstat` and `fcntl` below; an fd that is not
    // open makes them fail with EBADF, which is reported.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    let stat = fstat(borrowed).map_err(io::Error::from)?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("channel descriptor {raw} is not a socket"),
        ));
    }
    // Our own children must not inherit it.
    fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(io::Error::from)?;
    // SAFETY: `raw` is an open socket (checked above) that the parent made
    // for this worker alone. Nothing else in this process uses it: the
    // bootstrap runs before `main` and removes the variable that named it,
    // and it takes it over exactly once.
    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
    Ok(UnixStream::from(owned))
}

/// Writes all of `buf` to `stream` without ever raising SIGPIPE (a dead
/// peer gives `BrokenPipe` instead, whatever the process does with the
/// signal).
pub(crate) fn send_all(stream: &UnixStream, mut buf: &[u8]) -> io::Result<()> {
    use nix::errno::Errno;
    use nix::sys::socket::{MsgFlags, send};
    while !buf.is_empty() {
        match send(stream.as_raw_fd(), buf, MsgFlags::MSG_NOSIGNAL) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Writes all of `bufs`, in order, with as few `sendmsg` calls as the
/// socket allows, never raising SIGPIPE (see [`send_all`]).
pub(crate) fn send_all_vectored(stream: &UnixStream, bufs: &[&[u8]]) -> io::Result<()> {
    use std::io::IoSlice;

    use nix::errno::Errno;
    use nix::sys::socket::{MsgFlags, sendmsg};
    if let [one] = bufs {
        return send_all(stream, one);
    }
    let (mut first, mut offset) = (0, 0);
    while first < bufs.len() {
        let slices: Vec<IoSlice<'_>> = std::iter::once(IoSlice::new(&bufs[first][offset..]))
            .chain(bufs[first + 1..].iter().map(|b| IoSlice::new(b)))
            .collect();
        let mut sent = match sendmsg::<()>(stream.as_raw_fd(), &slices, &[], MsgFlags::MSG_NOSIGNAL, None) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        // Skip what was written: whole buffers, then into the next one.
        while first < bufs.len() && sent >= bufs[first].len() - offset {
            sent -= bufs[first].len() - offset;
            first += 1;
            offset = 0;
        }
        offset += sent;
    }
    Ok(())
}
