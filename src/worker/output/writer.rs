//! The parent's standard output or error as a queue with a writer thread of
//! its own.
//!
//! Relay threads and drains [`push`](Writer::push) whole lines and never
//! write to the parent's descriptor themselves: only the writer's own
//! thread does, and it alone waits when nobody reads the parent's output.
//! The queue is bounded in two steps: past [`RELAY_LIMIT`] the relay
//! threads stop reading the workers' pipes (a worker that keeps printing
//! then waits in its own `write`), and a drain moves a task's output in up
//! to [`DRAIN_LIMIT`].
//!
//! A drain that wants its lines written before the task's result is
//! delivered waits for its [mark](Writer::wait_written), but only for a while
//! ([`PATIENCE`]): when that passes, the writer counts as stalled, and nobody
//! waits for it again until its writer has caught up.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::lines::{ATOMIC_WRITE, next_write};
use crate::sys::output::{Signal, write_all};

/// While a writer holds this much, the relay threads leave the workers'
/// output in their pipes.
pub(super) const RELAY_LIMIT: usize = 1 << 20;

/// A drain moves what a task printed into a writer while the writer holds less
/// than this; beyond it, what a worker that has exited wrote is dropped.
pub(super) const DRAIN_LIMIT: usize = 4 << 20;

/// How long a drain waits for what it queued to be written before the
/// result is delivered anyway.
pub(super) const PATIENCE: Duration = Duration::from_secs(1);

/// One of the parent's output descriptors, written by a thread of its own.
pub(super) struct Writer {
    /// Where the lines go: the parent's stdout or stderr (a pipe in tests).
    dest: Box<dyn AsFd + Send + Sync>,
    state: Mutex<Queue>,
    /// Wakes the writer thread: there is something to write.
    work: Condvar,
    /// Wakes waiting drains: something was written, or the writer stalled.
    progress: Condvar,
    /// Bytes written (or dropped by a failed write) so far.
    written: AtomicU64,
    /// Raised while the writer holds less than [`RELAY_LIMIT`]: what a relay
    /// thread `poll`s for when it stopped reading for lack of room.
    room: Signal,
}

#[derive(Debug, Default)]
struct Queue {
    /// Writes to make, in order: each whole lines of at most
    /// [`ATOMIC_WRITE`] bytes, or one longer line.
    queue: VecDeque<Vec<u8>>,
    /// Bytes queued or being written.
    held: usize,
    /// Bytes pushed so far: the mark of the last push.
    pushed: u64,
    /// Whether `held` has reached [`RELAY_LIMIT`] (and `room` is lowered).
    full: bool,
    /// Whether a drain gave up waiting since the writer last caught up.
    stalled: bool,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("dest", &self.dest.as_fd())
            .field("state", &self.state)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

/// The writers of this process's standard output and error (in that order),
/// each started on first use.
pub(super) fn standard() -> io::Result<[&'static Writer; 2]> {
    static STDOUT: Mutex<Option<&'static Writer>> = Mutex::new(None);
    static STDERR: Mutex<Option<&'static Writer>> = Mutex::new(None);
    fn get(
        slot: &Mutex<Option<&'static Writer>>,
        dest: impl AsFd + Send + Sync + 'static,
        name: &str,
    ) -> io::Result<&'static Writer> {
        let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(writer) = *slot {
            return Ok(writer);
        }
        let writer = Writer::start(Box::new(dest), name)?;
        *slot = Some(writer);
        Ok(writer)
    }
    Ok([
        get(&STDOUT, io::stdout(), "stdout")?,
        get(&STDERR, io::stderr(), "stderr")?,
    ])
}

impl Writer {
    /// A writer for `dest`, with its writer thread (`procpool-{name}`)
    /// started. Sinks live as long as the process.
    pub(super) fn start(dest: Box<dyn AsFd + Send + Sync>, name: &str) -> io::Result<&'static Writer> {
        let room = Signal::new()?;
        room.raise();
        let writer: &'static Writer = Box::leak(Box::new(Writer {
            dest,
            state: Mutex::new(Queue::default()),
            work: Condvar::new(),
            progress: Condvar::new(),
            written: AtomicU64::new(0),
            room,
        }));
        std::thread::Builder::new()
            .name(format!("procpool-{name}"))
            .spawn(move || writer.run())?;
        Ok(writer)
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `lines` (whole lines) for writing, after everything pushed
    /// before; returns the mark that [`wait_written`](Writer::wait_written)
    /// takes to wait for them.
    pub(super) fn push(&self, lines: &[u8]) -> u64 {
        let mut state = self.lock();
        let mut rest = lines;
        while !rest.is_empty() {
            let cut = next_write(rest);
            let piece = &rest[..cut];
            match state.queue.back_mut() {
                Some(last) if last.len() + piece.len() <= ATOMIC_WRITE => last.extend_from_slice(piece),
                _ => state.queue.push_back(piece.to_vec()),
            }
            rest = &rest[cut..];
        }
        state.held += lines.len();
        state.pushed += lines.len() as u64;
        if !state.full && state.held >= RELAY_LIMIT {
            state.full = true;
            self.room.lower();
        }
        self.work.notify_one();
        state.pushed
    }

    /// Whether the writer holds less than `limit` bytes.
    pub(super) fn has_room(&self, limit: usize) -> bool {
        self.lock().held < limit
    }

    /// Readable while the writer holds less than [`RELAY_LIMIT`].
    pub(super) fn room(&self) -> BorrowedFd<'_> {
        self.room.fd()
    }

    /// Waits until everything up to `mark` is written, but not past
    /// `deadline`, and not at all while the writer is stalled. Passing the
    /// deadline stalls the writer.
    pub(super) fn wait_written(&self, mark: u64, deadline: Instant) {
        if self.written.load(Ordering::Acquire) >= mark {
            return;
        }
        let mut state = self.lock();
        loop {
            if self.written.load(Ordering::Acquire) >= mark || state.stalled {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                state.stalled = true;
                let held = state.held;
                // The subscriber is user code on a pool thread.
                crate::task::panics::shielded(|| {
                    tracing::debug!(
                        held,
                        "the parent's output takes nothing: worker output is no longer waited for"
                    )
                });
                // Nobody else waits for it either.
                self.progress.notify_all();
                return;
            }
            state = self
                .progress
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The writer thread: writes what is queued, in order, for as long as
    /// the process lives.
    fn run(&self) {
        loop {
            let chunk = {
                let mut state = self.lock();
                loop {
                    match state.queue.pop_front() {
                        Some(chunk) => break chunk,
                        None => state = self.work.wait(state).unwrap_or_else(PoisonError::into_inner),
                    }
                }
            };
            write_all(self.dest.as_fd(), &chunk);
            let mut state = self.lock();
            state.held -= chunk.len();
            self.written.fetch_add(chunk.len() as u64, Ordering::Release);
            if state.full && state.held < RELAY_LIMIT {
                state.full = false;
                self.room.raise();
            }
            if state.held == 0 {
                state.stalled = false;
            }
            drop(state);
            self.progress.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::OwnedFd;

    use nix::fcntl::OFlag;
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

    use super::*;

    /// The longest a test waits for what should take milliseconds.
    const HANG: Duration = Duration::from_secs(60);

    /// A writer that writes into a pipe; the read end, blocking.
    fn piped() -> (&'static Writer, OwnedFd) {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        (Writer::start(Box::new(write), "test").unwrap(), read)
    }

    fn read_exactly(fd: &OwnedFd, n: usize) -> Vec<u8> {
        let mut got = vec![0u8; n];
        let mut at = 0;
        while at < n {
            match nix::unistd::read(fd, &mut got[at..]) {
                Ok(0) => panic!("the pipe closed after {at} of {n} bytes"),
                Ok(k) => at += k,
                Err(e) => panic!("read: {e}"),
            }
        }
        got
    }

    fn lines(count: usize, len: usize) -> Vec<u8> {
        let mut all = Vec::new();
        for i in 0..count {
            let mut line = format!("{i:06} ").into_bytes();
            line.resize(len - 1, b'x');
            line.push(b'\n');
            all.extend_from_slice(&line);
        }
        all
    }

    #[test]
    fn lines_are_written_in_order_and_marks_pass() {
        let (writer, read) = piped();
        let first = lines(100, 50);
        let second = lines(100, 70);
        writer.push(&first);
        let mark = writer.push(&second);
        assert_eq!(mark, (first.len() + second.len()) as u64);
        let got = read_exactly(&read, first.len() + second.len());
        assert!(got[..first.len()] == first[..] && got[first.len()..] == second[..]);
        writer.wait_written(mark, Instant::now() + HANG);
        assert!(
            writer.written.load(Ordering::Acquire) >= mark,
            "wait_written gave up early"
        );
        assert!(!writer.lock().stalled);
    }

    #[test]
    fn nobody_waits_twice_for_a_stalled_sink() {
        let (writer, read) = piped();
        // More than the pipe holds, and nobody reads it.
        let mark = writer.push(&lines(2000, 100));
        let start = Instant::now();
        writer.wait_written(mark, start + Duration::from_millis(50));
        assert!(writer.lock().stalled, "a drain that gave up stalls the writer");
        let again = Instant::now();
        writer.wait_written(mark, again + HANG);
        assert!(again.elapsed() < HANG, "waited for a stalled writer");
        // Once the writer has caught up, the writer is waited for again.
        read_exactly(&read, 2000 * 100);
        let state = writer.lock();
        let state = writer
            .progress
            .wait_timeout_while(state, HANG, |s| s.held > 0)
            .unwrap()
            .0;
        assert_eq!(state.held, 0, "the writer did not catch up");
        assert!(!state.stalled, "a writer that caught up still counts as stalled");
    }

    #[test]
    fn room_is_signalled_below_the_relay_limit() {
        let (writer, read) = piped();
        let has_room_signal = |timeout: PollTimeout| {
            let mut fds = [PollFd::new(writer.room(), PollFlags::POLLIN)];
            poll(&mut fds, timeout).unwrap() == 1
        };
        assert!(writer.has_room(RELAY_LIMIT) && has_room_signal(PollTimeout::ZERO));
        // More than the limit even once the pipe is full.
        let block = lines((RELAY_LIMIT + (256 << 10)) / 100, 100);
        writer.push(&block);
        assert!(
            !writer.has_room(RELAY_LIMIT),
            "the writer holds more than the pipe takes"
        );
        assert!(!has_room_signal(PollTimeout::ZERO), "room signalled while full");
        assert!(writer.has_room(DRAIN_LIMIT));
        // Reading lets the writer go on: room comes back.
        let reader = std::thread::spawn(move || read_exactly(&read, block.len()) == block);
        assert!(
            has_room_signal(PollTimeout::from(60_000u16)),
            "no room after the pipe was read"
        );
        assert!(reader.join().unwrap(), "the lines arrived changed");
    }
}
