//! The parent's end of worker output: writing to its standard output or
//! error, and a readiness flag that threads can `poll` for.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// Writes all of `buf` to `fd`, waiting as long as it takes: only the
/// thread that owns a sink's writes calls this, and nothing else waits for
/// that thread. A descriptor someone made non-blocking is waited for with
/// `poll` (`POLLOUT`). On an error (a closed or broken output) the rest is
/// dropped, as the parent's own output would be.
pub(crate) fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(0) => return,
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(_) => return,
                }
            }
            Err(_) => return,
        }
    }
}

/// A flag that other threads wait for with `poll`: its descriptor is
/// readable while the flag is raised. A pipe holding one byte while raised;
/// the caller serialises [`raise`](Signal::raise) and
/// [`lower`](Signal::lower) (under its own lock) and calls each only to
/// change the state.
#[derive(Debug)]
pub(crate) struct Signal {
    read: OwnedFd,
    write: OwnedFd,
}

impl Signal {
    /// A lowered flag.
    pub(crate) fn new() -> io::Result<Signal> {
        let (read, write) =
            nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).map_err(io::Error::from)?;
        Ok(Signal { read, write })
    }

    /// Raises the flag: its descriptor becomes readable.
    pub(crate) fn raise(&self) {
        // A full pipe (it never is: one byte at most) is as good as raised.
        while let Err(Errno::EINTR) = nix::unistd::write(&self.write, &[1]) {}
    }

    /// Lowers the flag: empties the pipe.
    pub(crate) fn lower(&self) {
        let mut bytes = [0u8; 16];
        loop {
            match nix::unistd::read(&self.read, &mut bytes) {
                Ok(0) | Err(Errno::EAGAIN) => return,
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }

    /// The descriptor to `poll` for `POLLIN`: readable while raised.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raised(signal: &Signal) -> bool {
        let mut fds = [PollFd::new(signal.fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::ZERO).unwrap() == 1
    }

    #[test]
    fn a_signal_is_readable_exactly_while_raised() {
        let signal = Signal::new().unwrap();
        assert!(!raised(&signal), "a new signal starts lowered");
        signal.raise();
        assert!(raised(&signal));
        signal.lower();
        assert!(!raised(&signal));
        signal.raise();
        assert!(raised(&signal), "a signal can be raised again");
    }

    #[test]
    fn write_all_waits_for_a_non_blocking_descriptor() {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).unwrap();
        // More than the pipe holds: the writer must wait for the reader.
        let data: Vec<u8> = (0..256 * 1024).map(|i| i as u8).collect();
        let expected = data.clone();
        let writer = std::thread::spawn(move || write_all(write.as_fd(), &data));
        let mut got = Vec::new();
        let mut chunk = [0u8; 8192];
        while got.len() < expected.len() {
            let mut fds = [PollFd::new(read.as_fd(), PollFlags::POLLIN)];
            let ready = poll(&mut fds, PollTimeout::from(60_000u16)).unwrap();
            assert!(ready > 0, "the writer sent nothing for 60 s");
            match nix::unistd::read(&read, &mut chunk) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        writer.join().unwrap();
        assert!(got == expected, "the bytes arrived changed or incomplete");
    }
}
