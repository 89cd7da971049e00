//! Descriptors: taking over the channel a worker was started with (as its
//! stdin), closing what else it inherited, asking who is at the other end,
//! and writing frames to a socket without ever raising SIGPIPE.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::stat::{SFlag, fstat};

/// The descriptor a worker keeps its channel on, once adopted.
pub(crate) const CHANNEL_FD: RawFd = 3;

/// Takes ownership of the channel that the parent passed to this worker as
/// its stdin, after checking it is a socket: moves it to [`CHANNEL_FD`]
/// (close-on-exec: the worker's own children must not inherit it), reopens
/// stdin on `/dev/null` (a task reading stdin must not read the channel),
/// and closes every other descriptor the worker inherited above stderr, as
/// CPython's spawn does: a pipe of the parent's must not stay open in its
/// workers.
pub(crate) fn adopt_channel() -> io::Result<UnixStream> {
    check_socket(0)?;
    // SAFETY: `dup3` takes two integers: 0 (checked open above) and the
    // target, which it closes first if open (nothing in this process uses
    // it: the bootstrap runs before `main` and the worker closes everything
    // above stderr below anyway).
    if unsafe { libc::dup3(0, CHANNEL_FD, libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `CHANNEL_FD` was just made by `dup3` above: this is its only
    // owner.
    let channel = UnixStream::from(unsafe { OwnedFd::from_raw_fd(CHANNEL_FD) });
    let null = std::fs::File::open("/dev/null")?;
    // SAFETY: `dup2` takes two descriptors we hold open (`null`, and 0
    // which it replaces atomically) and touches no memory.
    if unsafe { libc::dup2(null.as_raw_fd(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    drop(null);
    close_from(CHANNEL_FD + 1)?;
    Ok(channel)
}

/// Closes every descriptor from `first` up.
fn close_from(first: RawFd) -> io::Result<()> {
    // SAFETY: `close_range` takes integers only. Closing descriptors this
    // process does not use is harmless; the caller runs before `main`, when
    // only the bootstrap's own descriptors (below `first`) are in use.
    if unsafe { libc::close_range(first as libc::c_uint, libc::c_uint::MAX, 0) } == 0 {
        return Ok(());
    }
    // Kernels before 5.9: close what /proc lists.
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= first)
        .collect();
    for fd in open {
        // SAFETY: as above; the directory's own descriptor is among them
        // and already closed, which `close` reports harmlessly.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

fn check_socket(raw: RawFd) -> io::Result<()> {
    // SAFETY: only used for the `fstat` below; an fd that is not open makes
    // it fail with EBADF, which is reported.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    let stat = fstat(borrowed).map_err(io::Error::from)?;
    if SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFSOCK {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("descriptor {raw} is not a socket"),
        ));
    }
    Ok(())
}

/// Runs `f` on the socket `raw` without taking it over (it stays open and
/// where it is), or fails if `raw` is not an open socket.
pub(crate) fn with_socket<T>(raw: RawFd, f: impl FnOnce(&UnixStream) -> T) -> io::Result<T> {
    if raw < 0 {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    check_socket(raw)?;
    // SAFETY: `raw` is an open socket (checked above); the `ManuallyDrop`
    // keeps it from being closed, so this only borrows it for `f`.
    let stream = std::mem::ManuallyDrop::new(unsafe { UnixStream::from_raw_fd(raw) });
    Ok(f(&stream))
}

/// Who made the other end of a socket: its process id and effective user.
pub(crate) fn peer_of(stream: &UnixStream) -> io::Result<(u32, u32)> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let creds = getsockopt(stream, PeerCredentials).map_err(io::Error::from)?;
    Ok((creds.pid() as u32, creds.uid()))
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

/// The most descriptors one `sendmsg` carries (the kernel's limit is 253).
pub(crate) const FDS_PER_MESSAGE: usize = 250;

/// Writes all of `bytes`, with `fds` attached: up to [`FDS_PER_MESSAGE`]
/// of them to each `sendmsg`, each of which carries at least one byte.
/// `bytes` must be long enough for every batch (one byte each).
pub(crate) fn send_with_fds(stream: &UnixStream, mut bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    use std::io::IoSlice;

    use nix::errno::Errno;
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let mut batches = fds.chunks(FDS_PER_MESSAGE);
    for batch in batches.by_ref() {
        // One byte per batch at least, the rest with the last one.
        let sent = loop {
            let control = [ControlMessage::ScmRights(batch)];
            let take = if batch.len() < FDS_PER_MESSAGE {
                bytes.len()
            } else {
                1
            };
            let Some(data) = bytes.get(..take.max(1)) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "more descriptors than bytes to carry them",
                ));
            };
            match sendmsg::<()>(
                stream.as_raw_fd(),
                &[IoSlice::new(data)],
                &control,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => break n,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        };
        bytes = &bytes[sent..];
    }
    send_all(stream, bytes)
}

/// The reading side of a channel that may carry descriptors: reads with
/// `recvmsg`, and keeps the descriptors that come with the bytes, in
/// order, until [`take`](Self::take)n. A read whose descriptors did not
/// fit (`MSG_CTRUNC`: this process is out of descriptors) fails with
/// `InvalidData` rather than lose them silently.
#[derive(Debug)]
pub(crate) struct FdReader<S = UnixStream> {
    stream: S,
    fds: Vec<OwnedFd>,
}

impl<S: std::borrow::Borrow<UnixStream>> FdReader<S> {
    /// The most descriptors kept unclaimed: a peer that sends more breaks
    /// the protocol.
    pub(crate) const MAX_HELD: usize = 1 << 14;

    /// Reads from `stream` (owned or borrowed).
    pub(crate) fn new(stream: S) -> FdReader<S> {
        FdReader {
            stream,
            fds: Vec::new(),
        }
    }

    /// The first `n` descriptors received and not yet taken, or `None` if
    /// fewer came.
    pub(crate) fn take(&mut self, n: usize) -> Option<Vec<OwnedFd>> {
        (n <= self.fds.len()).then(|| self.fds.drain(..n).collect())
    }

    /// How many descriptors wait to be taken.
    pub(crate) fn held(&self) -> usize {
        self.fds.len()
    }

    /// Closes the descriptors no frame claimed.
    pub(crate) fn discard(&mut self) {
        self.fds.clear();
    }
}

impl<S: std::borrow::Borrow<UnixStream>> std::ops::Deref for FdReader<S> {
    type Target = UnixStream;

    fn deref(&self) -> &UnixStream {
        self.stream.borrow()
    }
}

impl<S: std::borrow::Borrow<UnixStream>> io::Read for FdReader<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::io::IoSliceMut;

        use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
        let mut space = nix::cmsg_space!([RawFd; 253]);
        let mut iov = [IoSliceMut::new(buf)];
        let msg = recvmsg::<()>(
            self.stream.borrow().as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut received = 0;
        for cmsg in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for raw in fds {
                    // SAFETY: the kernel just installed this descriptor in
                    // our table for this message; we are its only owner.
                    self.fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
                    received += 1;
                }
            }
        }
        if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("descriptors sent with the data were lost (MSG_CTRUNC; {received} kept)"),
            ));
        }
        if self.fds.len() > Self::MAX_HELD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("more than {} descriptors sent and not claimed", Self::MAX_HELD),
            ));
        }
        Ok(msg.bytes)
    }
}
