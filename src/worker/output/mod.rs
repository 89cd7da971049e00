//! Relaying a worker's stdout and stderr to the parent's, whole lines at a
//! time.
//!
//! A worker's standard output and error are pipes to the parent. A relay
//! thread per worker reads them and hands complete lines to the parent's
//! [`Writer`] for that stream, a queue with a writer thread of its own that
//! writes batches of whole lines to descriptor 1 or 2, so lines from
//! different workers never splice into each other, even for writers that
//! emit a line in pieces (Rust's unbuffered `eprintln!` does). A line
//! without its newline waits for the rest (up to 64 KiB), or for the end of
//! the task.
//!
//! Nothing of the pool waits on the parent's output: only the writers'
//! writer threads write to it. If nobody reads the parent's stdout, its
//! writer fills up; the relay threads then leave the workers' output in their
//! pipes, and a worker that keeps printing waits in its own `write`.
//!
//! Before a task's result is delivered, its supervisor [`drain`s](Output::drain)
//! the pipes: what the task printed, an unfinished last line included, is
//! queued, and the drain waits (a while at most, see [`writer::PATIENCE`])
//! until it is written, so that it is on the terminal before the result is
//! in the caller's hands. The pipes outlive the worker: what a worker wrote
//! just before it crashed is still relayed ([`Output::finish`]).
//!
//! The relay thread also watches the worker process itself ([`ExitWatch`],
//! a pidfd): when it exits, the thread ends reading on its channel. A worker
//! that forked a process (without `exec`) shares its channel with it, so the
//! channel alone would not tell the supervisor of the worker's death. The
//! watch costs the supervisor nothing per message: it reads with plain
//! blocking reads.

mod lines;
mod writer;

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{ChildStderr, ChildStdout};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use self::lines::{complete_lines, failed_allocation};
use self::writer::{DRAIN_LIMIT, PATIENCE, RELAY_LIMIT, Writer};
use crate::worker::handle::Channel;

/// How many reads per pipe the relay thread makes before it lets go of the
/// lock.
const RELAY_TURN: usize = 8;

/// How many reads per pipe a drain makes at most (16 MiB): all a task
/// printed, unless something it started keeps printing into the same pipe.
const DRAIN_TURN: usize = 1024;

/// Who reads the pipes, which sets how much and what happens to an
/// unfinished last line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The relay thread: a few reads, while the writers have room; an
    /// unfinished line waits for the rest.
    Relay,
    /// A task has ended: all it wrote, while the writers hold less than
    /// [`DRAIN_LIMIT`]. With `idle` (the worker runs no other task, so the
    /// pipes hold this task's output alone) an unfinished last line is
    /// passed on; else it may be the next task's, and waits.
    Drain { idle: bool },
    /// The worker has exited: all it wrote, an unfinished line included.
    Finish,
}

#[derive(Debug)]
struct Pipe {
    fd: OwnedFd,
    writer: &'static Writer,
}

#[derive(Debug, Default)]
struct Buffers {
    partial: [Vec<u8>; 2],
    closed: [bool; 2],
    /// Each writer's mark for the last lines of this worker pushed to it.
    marks: [u64; 2],
    /// The worker has exited, or closed its end of a pipe: what it wrote
    /// is read even when the writers are full (and dropped past
    /// [`DRAIN_LIMIT`]), so that no thread waits on a dead worker.
    exited: bool,
    /// Bytes of output dropped that way.
    dropped: u64,
}

#[derive(Debug)]
struct Relay {
    /// The worker's stdout (relayed to the parent's stdout), and stderr.
    pipes: [Pipe; 2],
    buffers: Mutex<Buffers>,
    /// Whether to look for the standard library's report of a failed
    /// allocation on stderr (the worker has a memory cap).
    watch_alloc: bool,
    /// The size of the failed allocation, plus one; 0 while none was seen.
    alloc_failure: AtomicU64,
}

/// What the relay thread watches besides the pipes: the worker's exit, and
/// the channel to end reading on when it comes.
#[derive(Debug)]
pub(crate) struct ExitWatch {
    /// Readable once the worker has exited.
    pub(crate) pidfd: OwnedFd,
    pub(crate) channel: Arc<Channel>,
}

/// The relay of one worker's output.
#[derive(Debug, Clone)]
pub(crate) struct Output {
    shared: Arc<Relay>,
}

impl Output {
    /// Starts relaying the worker's two pipes.
    pub(crate) fn start(
        stdout: ChildStdout,
        stderr: ChildStderr,
        exit: Option<ExitWatch>,
        pid: u32,
        watch_alloc: bool,
    ) -> io::Result<Output> {
        let [to_stdout, to_stderr] = writer::standard()?;
        let pipes = [
            Pipe {
                fd: OwnedFd::from(stdout),
                writer: to_stdout,
            },
            Pipe {
                fd: OwnedFd::from(stderr),
                writer: to_stderr,
            },
        ];
        for pipe in &pipes {
            fcntl(pipe.fd.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(io::Error::from)?;
        }
        let shared = Arc::new(Relay {
            pipes,
            buffers: Mutex::new(Buffers::default()),
            watch_alloc,
            alloc_failure: AtomicU64::new(0),
        });
        let relay = Arc::clone(&shared);
        std::thread::Builder::new()
            .name(format!("procpool-output-{pid}"))
            .spawn(move || relay.run(exit))?;
        Ok(Output { shared })
    }

    /// Passes on everything the worker has written so far, and waits a
    /// while at most until it is written. With `idle` (the worker has no
    /// other task: what it wrote is all the finished task's), an unfinished
    /// last line is passed on too, with a newline, so that the next task's
    /// text does not run on from it. This runs before results are
    /// delivered: when the worker printed nothing, it costs one `poll` and
    /// an uncontended lock.
    pub(crate) fn drain(&self, idle: bool) {
        self.shared.collect(Mode::Drain { idle });
    }

    /// The worker has exited: passes on everything it wrote, including an
    /// unfinished last line, and waits a while at most until it is written.
    pub(crate) fn finish(&self) {
        self.shared.collect(Mode::Finish);
    }

    /// Forgets a reported allocation failure: a task delivered a result
    /// after it, so it was not fatal.
    pub(crate) fn forget_alloc_failure(&self) {
        self.shared.alloc_failure.store(0, Ordering::SeqCst);
    }

    /// The size of an allocation the worker reported as failed on stderr
    /// (the standard library's `memory allocation of N bytes failed`, just
    /// before it aborts), when the relay was asked to watch for it.
    pub(crate) fn alloc_failure(&self) -> Option<u64> {
        match self.shared.alloc_failure.load(Ordering::SeqCst) {
            0 => None,
            n => Some(n - 1),
        }
    }
}

impl Relay {
    fn lock(&self) -> MutexGuard<'_, Buffers> {
        self.buffers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether either pipe has something to read (or has closed).
    fn has_output(&self) -> bool {
        let mut fds = self
            .pipes
            .each_ref()
            .map(|pipe| PollFd::new(pipe.fd.as_fd(), PollFlags::POLLIN));
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(ready) => ready > 0,
            // Cannot tell: read, as if there were output.
            Err(_) => true,
        }
    }

    /// A drain or finish: queues what the worker wrote, then waits until
    /// the writers have written it, up to [`PATIENCE`] (less if a writer is
    /// known to be stalled).
    fn collect(&self, mode: Mode) {
        let marks = {
            let mut buffers = self.lock();
            if mode == Mode::Finish {
                buffers.exited = true;
            }
            let held = mode == Mode::Drain { idle: true } && buffers.partial.iter().any(|p| !p.is_empty());
            if mode == Mode::Finish || held || self.has_output() {
                self.pump(&mut buffers, mode);
            }
            buffers.marks
        };
        let deadline = Instant::now() + PATIENCE;
        for (pipe, mark) in self.pipes.iter().zip(marks) {
            pipe.writer.wait_written(mark, deadline);
        }
    }

    /// The relay thread: waits for output and passes it on, until both
    /// pipes are closed (by the worker and any process it started); ends
    /// reading on the channel as soon as the worker has exited.
    fn run(&self, mut exit: Option<ExitWatch>) {
        loop {
            let (closed, exited) = {
                let buffers = self.lock();
                (buffers.closed, buffers.exited)
            };
            if closed.iter().all(|c| *c) {
                if let Some(exit) = exit.take() {
                    // The pipes can close before the exit is visible.
                    let mut fds = [PollFd::new(exit.pidfd.as_fd(), PollFlags::POLLIN)];
                    while let Err(Errno::EINTR) = poll(&mut fds, PollTimeout::NONE) {}
                    exit.channel.stop_reading();
                }
                return;
            }
            // Each open pipe is read if its writer has room; if not, the
            // thread waits for room instead, and for the pipe's hangup
            // (reported whatever the events asked for).
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(5);
            let mut waits = Vec::with_capacity(2);
            for (pipe, _) in self.pipes.iter().zip(closed).filter(|(_, closed)| !closed) {
                if exited || pipe.writer.has_room(RELAY_LIMIT) {
                    fds.push(PollFd::new(pipe.fd.as_fd(), PollFlags::POLLIN));
                } else {
                    fds.push(PollFd::new(pipe.writer.room(), PollFlags::POLLIN));
                    waits.push(fds.len());
                    fds.push(PollFd::new(pipe.fd.as_fd(), PollFlags::empty()));
                }
            }
            let watched = fds.len();
            if let Some(exit) = &exit {
                fds.push(PollFd::new(exit.pidfd.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => return,
            }
            let exited_now = fds
                .get(watched)
                .and_then(PollFd::revents)
                .is_some_and(|r| !r.is_empty());
            // A waiting pipe whose writers are all gone: its worker has
            // exited, or closed it; it no longer waits for room.
            let hung_up = waits
                .iter()
                .any(|&at| fds[at].revents().is_some_and(|r| !r.is_empty()));
            drop(fds);
            {
                let mut buffers = self.lock();
                buffers.exited |= exited_now || hung_up;
                self.pump(&mut buffers, Mode::Relay);
            }
            if exited_now && let Some(exit) = exit.take() {
                // What the worker sent before it died is still read first.
                exit.channel.stop_reading();
            }
        }
    }

    /// Reads what is in the pipes and passes on complete lines (and an
    /// unfinished last one, for a drain of an idle worker that read all
    /// there was, or a finish); how much it reads is up to `mode`.
    fn pump(&self, buffers: &mut Buffers, mode: Mode) {
        let (turn, limit) = match mode {
            // A few reads at a time, so that a process that prints without
            // pause cannot keep the lock.
            Mode::Relay if !buffers.exited => (RELAY_TURN, RELAY_LIMIT),
            Mode::Relay => (RELAY_TURN, DRAIN_LIMIT),
            Mode::Drain { .. } | Mode::Finish => (DRAIN_TURN, DRAIN_LIMIT),
        };
        let mut chunk = [0u8; 16 * 1024];
        for (i, pipe) in self.pipes.iter().enumerate() {
            let mut reads = 0;
            let mut emptied = false;
            while !buffers.closed[i] && reads < turn {
                let room = pipe.writer.has_room(limit);
                if !room && !buffers.exited {
                    // Left in the pipe until the writer has room.
                    break;
                }
                match nix::unistd::read(pipe.fd.as_fd(), &mut chunk) {
                    Ok(0) => buffers.closed[i] = true,
                    Ok(n) if room => {
                        reads += 1;
                        buffers.partial[i].extend_from_slice(&chunk[..n]);
                        self.emit_lines(i, buffers, false);
                    }
                    Ok(n) => {
                        reads += 1;
                        self.drop_output(buffers, n);
                    }
                    Err(Errno::EINTR) => {}
                    Err(Errno::EAGAIN) => {
                        emptied = true;
                        break;
                    }
                    Err(_) => buffers.closed[i] = true,
                }
            }
            let rest = match mode {
                Mode::Relay => buffers.closed[i],
                Mode::Drain { idle } => buffers.closed[i] || (idle && emptied),
                Mode::Finish => true,
            };
            self.emit_lines(i, buffers, rest);
        }
    }

    /// Passes on the complete lines at the front of pipe `i`'s partial
    /// line (all of it with `rest`, or when it has grown too long).
    fn emit_lines(&self, i: usize, buffers: &mut Buffers, rest: bool) {
        let partial = &mut buffers.partial[i];
        let complete = complete_lines(partial, rest);
        if complete == 0 {
            return;
        }
        if self.watch_alloc
            && i == 1
            && let Some(size) = failed_allocation(&partial[..complete])
        {
            self.alloc_failure.store(size.saturating_add(1), Ordering::SeqCst);
        }
        buffers.marks[i] = self.pipes[i].writer.push(&partial[..complete]);
        partial.drain(..complete);
    }

    /// Counts `n` bytes of a dead worker's output dropped because the
    /// parent's output takes nothing; says so once.
    fn drop_output(&self, buffers: &mut Buffers, n: usize) {
        if buffers.dropped == 0 {
            // The subscriber is user code on a pool thread.
            crate::task::panics::shielded(|| {
                tracing::warn!(
                    "the parent's output takes nothing: dropping what an exited worker wrote \
                     beyond {DRAIN_LIMIT} bytes"
                )
            });
        }
        buffers.dropped += n as u64;
    }
}
