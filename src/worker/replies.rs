//! Result coalescing: a worker sends the results of short tasks together.
//!
//! A `DONE` frame may wait to go out with the next ones only while all of
//! these hold, so that nothing waits on a task it cannot see finishing:
//! - the next task is already read, whole, so the worker goes straight on
//!   to it (an `apply` round trip, or a worker that would block for its
//!   next task, sends at once);
//! - the task was one item (an `apply`, or a chunk size of 1: chunks of
//!   several items have results enough to fill a write), and short
//!   ([`SHORT`]), like the ones the parent sends ahead;
//! - the results held are few ([`MAX_FRAMES`]), small ([`MAX_BYTES`]) and
//!   recent ([`MAX_WAIT`] since the first of them).
//!
//! What this costs on a death. A death that the worker records itself (a
//! stack overflow, a call the sandbox refused, a panic when panics abort)
//! sends the results held first (`sys::held`), so they arrive as usual.
//! Any other death (SIGKILL, `abort`, a segfault, `exit`) loses them: the
//! parent learns which task the worker last started from its marker page;
//! the tasks before it whose results had not arrived ran, and their
//! results died with the worker, so they are handled as a death (run again
//! if the call has retries left, else [`Error::WorkerDied`](crate::Error::WorkerDied));
//! the tasks after it never started and go back to the queue. See
//! `pool::supervisor::report`.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use crate::sys;

/// The most results held at once...
pub(super) const MAX_FRAMES: u32 = 16;
/// ... and bytes of them...
pub(super) const MAX_BYTES: usize = 64 << 10;
/// ... and how long the first of them may wait.
pub(super) const MAX_WAIT: Duration = Duration::from_micros(50);
/// A task that took longer than this sends its result (and those held)
/// at once: the next one may be as long.
pub(super) const SHORT: Duration = Duration::from_micros(50);

/// The `DONE` frames a worker holds back; see the [module docs](self).
#[derive(Debug, Default)]
pub(super) struct Replies {
    held: Vec<u8>,
    frames: u32,
    since: Option<Instant>,
}

impl Replies {
    /// Adds the `DONE` frame of a task of `items` items that took `took`,
    /// and sends it with the ones held unless it may wait; `next_in_hand`
    /// says whether the next task is already read.
    ///
    /// # Errors
    ///
    /// When the parent is gone.
    pub(super) fn finished(
        &mut self,
        channel: &UnixStream,
        done: &[u8],
        (items, took): (u32, Duration),
        next_in_hand: bool,
    ) -> io::Result<()> {
        let now = Instant::now();
        let may_wait = next_in_hand
            && items == 1
            && took < SHORT
            && self.frames < MAX_FRAMES - 1
            && self.held.len() + done.len() < MAX_BYTES
            && self.since.is_none_or(|since| now - since < MAX_WAIT);
        if may_wait {
            self.held.extend_from_slice(done);
            self.frames += 1;
            self.since.get_or_insert(now);
            // A death that a handler records sends them first.
            sys::held::publish(channel.as_raw_fd(), &self.held);
            return Ok(());
        }
        flush_output();
        let sent = match self.frames {
            0 => sys::fd::send_all(channel, done),
            _ => sys::fd::send_all_vectored(channel, &[&self.held, done]),
        };
        self.clear(channel);
        sent
    }

    /// Sends the frames held, if any (before anything else goes out).
    ///
    /// # Errors
    ///
    /// When the parent is gone.
    pub(super) fn flush(&mut self, channel: &UnixStream) -> io::Result<()> {
        if self.frames == 0 {
            return Ok(());
        }
        flush_output();
        let sent = sys::fd::send_all(channel, &self.held);
        self.clear(channel);
        sent
    }

    fn clear(&mut self, channel: &UnixStream) {
        if self.frames > 0 {
            sys::held::publish(channel.as_raw_fd(), &[]);
        }
        self.held.clear();
        self.frames = 0;
        self.since = None;
    }
}

/// Task output must reach the terminal before the result reaches the
/// parent, and must not be lost when the worker is later killed.
pub(super) fn flush_output() {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sent(from: &mut UnixStream) -> Vec<u8> {
        from.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        let _ = from.read_to_end(&mut got);
        got
    }

    #[test]
    fn short_results_wait_for_the_next_only_while_it_is_in_hand() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let mut replies = Replies::default();
        let quick = (1, Duration::from_micros(1));
        replies.finished(&ours, b"one;", quick, true).unwrap();
        replies.finished(&ours, b"two;", quick, true).unwrap();
        assert!(sent(&mut theirs).is_empty());
        // Nothing more in hand: everything goes, in order.
        replies.finished(&ours, b"three;", quick, false).unwrap();
        assert_eq!(sent(&mut theirs), b"one;two;three;");
        // A long task sends at once, even with more in hand.
        replies.finished(&ours, b"long;", (1, SHORT), true).unwrap();
        assert_eq!(sent(&mut theirs), b"long;");
        // So does a chunk of several items.
        replies
            .finished(&ours, b"chunk;", (2, Duration::ZERO), true)
            .unwrap();
        assert_eq!(sent(&mut theirs), b"chunk;");
        // So does the one that reaches the count bound.
        for _ in 0..MAX_FRAMES - 1 {
            replies.finished(&ours, b".", quick, true).unwrap();
        }
        assert!(sent(&mut theirs).is_empty());
        replies.finished(&ours, b"!", quick, true).unwrap();
        assert_eq!(sent(&mut theirs).len(), MAX_FRAMES as usize);
        // And `flush` sends what is held.
        replies.finished(&ours, b"held", quick, true).unwrap();
        replies.flush(&ours).unwrap();
        replies.flush(&ours).unwrap();
        assert_eq!(sent(&mut theirs), b"held");
    }

    #[test]
    fn large_results_do_not_wait() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let mut replies = Replies::default();
        let big = vec![7u8; MAX_BYTES];
        replies.finished(&ours, &big, (1, Duration::ZERO), true).unwrap();
        assert_eq!(sent(&mut theirs).len(), MAX_BYTES);
    }
}
