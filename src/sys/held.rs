//! The results a worker holds back (result coalescing, in
//! `worker::replies`), published where a handler that records the
//! worker's death can send them first: the parent then gets every result
//! the worker finished before the task that killed it.
//!
//! The worker's main thread publishes the bytes after each change, before
//! it runs the next task; the handlers run on that thread, in a task, so
//! they see a whole, live buffer. Async-signal-safe: atomic loads and
//! `send`.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicUsize, Ordering};

static FD: AtomicI32 = AtomicI32::new(-1);
static PTR: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static LEN: AtomicUsize = AtomicUsize::new(0);

/// Publishes `bytes` as the results held back for the channel `fd`.
///
/// The caller keeps `bytes` alive and unchanged until it publishes again
/// (an empty slice once they are sent), and runs no task in between.
pub(crate) fn publish(fd: RawFd, bytes: &[u8]) {
    LEN.store(0, Ordering::Release);
    FD.store(fd, Ordering::Relaxed);
    PTR.store(bytes.as_ptr().cast_mut(), Ordering::Relaxed);
    LEN.store(bytes.len(), Ordering::Release);
}

/// Sends the results published as held back, if any, and forgets them.
/// For a handler (or a panic hook) that records the worker's death, just
/// before the process ends.
pub(crate) fn send() {
    let len = LEN.swap(0, Ordering::Acquire);
    let (fd, ptr) = (FD.load(Ordering::Relaxed), PTR.load(Ordering::Relaxed));
    if len == 0 || fd < 0 || ptr.is_null() {
        return;
    }
    let mut sent = 0;
    while sent < len {
        // SAFETY: `publish`'s caller keeps `len` bytes at `ptr` alive and
        // unchanged while they are published, and `send` is
        // async-signal-safe; a failure (the parent is gone) ends the loop.
        let n = unsafe { libc::send(fd, ptr.add(sent).cast(), len - sent, libc::MSG_NOSIGNAL) };
        match n {
            n if n > 0 => sent += n as usize,
            _ if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => {}
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn published_bytes_are_sent_once() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let held = b"held results".to_vec();
        publish(ours.as_raw_fd(), &held);
        send();
        send();
        publish(ours.as_raw_fd(), &[]);
        send();
        drop(ours);
        let mut got = Vec::new();
        theirs.read_to_end(&mut got).unwrap();
        assert_eq!(got, held);
    }
}
