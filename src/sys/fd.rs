//! Descriptors: taking over the channel a worker was started with (as its
//! stdin), and writing frames to a socket without ever raising SIGPIPE.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::stat::{SFlag, fstat};

/// Takes ownership of the channel descriptor `raw` that the parent passed to
/// this worker, after checking it is an open socket. The parent passes it
/// as stdin (descriptor 0): it is then moved to a descriptor of its own,
/// and stdin is reopened on `/dev/null`, so that a task reading stdin
/// cannot read the channel.
pub(crate) fn adopt_channel(raw: RawFd) -> io::Result<UnixStream> {
    if raw < 0 || raw == 1 || raw == 2 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("channel descriptor {raw} is stdout, stderr or invalid"),
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
    if raw == 0 {
        // A copy above the standard streams, close-on-exec: our own
        // children must not inherit it.
        let moved = fcntl(borrowed, FcntlArg::F_DUPFD_CLOEXEC(3)).map_err(io::Error::from)?;
        let null = std::fs::File::open("/dev/null")?;
        // SAFETY: `dup2` takes two descriptors we hold open (`null`, and 0
        // which it replaces atomically) and touches no memory.
        if unsafe { libc::dup2(null.as_raw_fd(), 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `moved` was just made by `F_DUPFD_CLOEXEC` and nothing
        // else in this process knows it: this is its only owner.
        return Ok(UnixStream::from(unsafe { OwnedFd::from_raw_fd(moved) }));
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

/// Sends `bytes` (a small frame) with the descriptor `fd` attached.
pub(crate) fn send_with_fd(stream: &UnixStream, bytes: &[u8], fd: &OwnedFd) -> io::Result<()> {
    use std::io::IoSlice;

    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let fds = [fd.as_raw_fd()];
    let control = [ControlMessage::ScmRights(&fds)];
    let sent = sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(bytes)],
        &control,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    // The descriptor went with the first byte; the rest is plain data.
    send_all(stream, &bytes[sent..])
}

/// Reads exactly `buf.len()` bytes (a small frame sent with
/// [`send_with_fd`]) and the descriptor that came with them, reading no
/// further than the frame.
pub(crate) fn recv_with_fd(stream: &UnixStream, buf: &mut [u8]) -> io::Result<Option<OwnedFd>> {
    use std::io::IoSliceMut;

    use nix::errno::Errno;
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut got = 0;
    let mut received = None;
    while got < buf.len() {
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buf[got..])];
        let msg = match recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => msg,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if msg.bytes == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        for cmsg in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for raw in fds {
                    // SAFETY: the kernel just installed this descriptor in
                    // our table for this message; we are its only owner.
                    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
                    received.get_or_insert(fd);
                }
            }
        }
        got += msg.bytes;
    }
    Ok(received)
}
