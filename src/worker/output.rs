//! Relaying a worker's stdout and stderr to the parent's, whole lines at a
//! time.
//!
//! A worker's standard output and error are pipes to the parent. A relay
//! thread per worker copies complete lines to the parent's stdout and
//! stderr (descriptors 1 and 2), one `write` per batch of whole lines, so
//! lines from different workers never splice into each other, even for
//! writers that emit a line in pieces (Rust's unbuffered `eprintln!` does).
//! A line without its newline waits for the rest (up to 64 KiB).
//!
//! Before a task's result is delivered, its supervisor [`drain`s](Output::drain)
//! the pipes, so what a task printed is on the terminal before its result is
//! in the caller's hands. The pipes outlive the worker: what a worker wrote
//! just before it crashed is still relayed ([`Output::finish`]).
//!
//! The relay thread also watches the worker process itself ([`ExitWatch`],
//! a pidfd): when it exits, the thread ends reading on its channel. A worker
//! that forked a process (without `exec`) shares its channel with it, so the
//! channel alone would not tell the supervisor of the worker's death. The
//! watch costs the supervisor nothing per message: it reads with plain
//! blocking reads.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{ChildStderr, ChildStdout};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::worker::handle::Channel;

/// A partial line longer than this is passed on as it is.
const MAX_PARTIAL: usize = 64 * 1024;

/// How many reads per pipe the relay thread makes before it lets go of the
/// lock.
const RELAY_TURN: usize = 8;

/// How many reads per pipe a drain makes at most (16 MiB): all a task
/// printed, unless something it started keeps printing into the same pipe.
const DRAIN_TURN: usize = 1024;

#[derive(Debug, Clone, Copy)]
enum Target {
    Stdout,
    Stderr,
}

#[derive(Debug)]
struct Pipe {
    fd: OwnedFd,
    target: Target,
}

#[derive(Debug, Default)]
struct Buffers {
    partial: [Vec<u8>; 2],
    closed: [bool; 2],
}

#[derive(Debug)]
struct Shared {
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
    shared: Arc<Shared>,
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
        let pipes = [
            Pipe {
                fd: OwnedFd::from(stdout),
                target: Target::Stdout,
            },
            Pipe {
                fd: OwnedFd::from(stderr),
                target: Target::Stderr,
            },
        ];
        for pipe in &pipes {
            fcntl(pipe.fd.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(io::Error::from)?;
        }
        let shared = Arc::new(Shared {
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

    /// Passes on every complete line the worker has written so far. This
    /// runs before results are delivered: when the worker printed nothing,
    /// it costs one `poll` and an uncontended lock.
    pub(crate) fn drain(&self) {
        if self.shared.has_output() {
            self.shared.pump(false, DRAIN_TURN);
        } else {
            // Empty pipes may mean the relay thread has just read them and
            // is writing the lines out: taking its lock waits for that.
            drop(self.shared.lock());
        }
    }

    /// The worker has exited: passes on everything it wrote, including an
    /// unfinished last line.
    pub(crate) fn finish(&self) {
        self.shared.pump(true, DRAIN_TURN);
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

/// The size in a line that is exactly `memory allocation of N bytes
/// failed`, the standard library's report before it aborts.
fn failed_allocation(lines: &[u8]) -> Option<u64> {
    lines.split(|&b| b == b'\n').find_map(|line| {
        let digits = line
            .strip_prefix(b"memory allocation of ")?
            .strip_suffix(b" bytes failed")?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    })
}

impl Shared {
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

    /// The relay thread: waits for output and passes it on, until both
    /// pipes are closed (by the worker and any process it started); ends
    /// reading on the channel as soon as the worker has exited.
    fn run(&self, mut exit: Option<ExitWatch>) {
        loop {
            let closed = self.lock().closed;
            if closed.iter().all(|c| *c) {
                if let Some(exit) = exit.take() {
                    // The pipes can close before the exit is visible.
                    let mut fds = [PollFd::new(exit.pidfd.as_fd(), PollFlags::POLLIN)];
                    while let Err(Errno::EINTR) = poll(&mut fds, PollTimeout::NONE) {}
                    exit.channel.stop_reading();
                }
                return;
            }
            let mut fds: Vec<PollFd<'_>> = self
                .pipes
                .iter()
                .zip(closed)
                .filter(|(_, closed)| !closed)
                .map(|(pipe, _)| PollFd::new(pipe.fd.as_fd(), PollFlags::POLLIN))
                .collect();
            let pipes = fds.len();
            if let Some(exit) = &exit {
                fds.push(PollFd::new(exit.pidfd.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => return,
            }
            let exited = fds
                .get(pipes)
                .and_then(PollFd::revents)
                .is_some_and(|r| !r.is_empty());
            drop(fds);
            self.pump(false, RELAY_TURN);
            if exited && let Some(exit) = exit.take() {
                // What the worker sent before it died is still read first.
                exit.channel.stop_reading();
            }
        }
    }

    /// Reads what is in the pipes (at most `turn` reads per pipe, so that a
    /// process that prints without pause cannot keep the lock) and passes
    /// on complete lines; with `all`, the rest too.
    fn pump(&self, all: bool, turn: usize) {
        let mut buffers = self.lock();
        let mut chunk = [0u8; 16 * 1024];
        for (i, pipe) in self.pipes.iter().enumerate() {
            let mut reads = 0;
            while !buffers.closed[i] && reads < turn {
                match nix::unistd::read(pipe.fd.as_fd(), &mut chunk) {
                    Ok(0) => buffers.closed[i] = true,
                    Ok(n) => {
                        reads += 1;
                        buffers.partial[i].extend_from_slice(&chunk[..n]);
                        self.emit_lines(pipe.target, &mut buffers.partial[i], false);
                    }
                    Err(Errno::EINTR) => {}
                    Err(Errno::EAGAIN) => break,
                    Err(_) => buffers.closed[i] = true,
                }
            }
            let rest = all || buffers.closed[i];
            self.emit_lines(pipe.target, &mut buffers.partial[i], rest);
        }
    }

    /// Passes on the complete lines at the front of `partial` (all of it
    /// with `rest`, or when it has grown past [`MAX_PARTIAL`]).
    fn emit_lines(&self, target: Target, partial: &mut Vec<u8>, rest: bool) {
        let complete = complete_lines(partial, rest);
        if complete == 0 {
            return;
        }
        if self.watch_alloc
            && matches!(target, Target::Stderr)
            && let Some(size) = failed_allocation(&partial[..complete])
        {
            self.alloc_failure.store(size.saturating_add(1), Ordering::SeqCst);
        }
        emit(target, &partial[..complete]);
        partial.drain(..complete);
    }
}

/// How many bytes at the front of `partial` to pass on: its complete lines
/// (all of it with `rest`, or when it has grown past [`MAX_PARTIAL`]). An
/// unfinished line passed on gets a newline, so that nothing splices onto
/// it.
fn complete_lines(partial: &mut Vec<u8>, rest: bool) -> usize {
    let mut complete = if rest || partial.len() > MAX_PARTIAL {
        partial.len()
    } else {
        partial.iter().rposition(|&b| b == b'\n').map_or(0, |at| at + 1)
    };
    if complete > 0 && partial[complete - 1] != b'\n' {
        partial.insert(complete, b'\n');
        complete += 1;
    }
    complete
}

/// The most a write to a pipe may hold and stay in one piece (`PIPE_BUF`).
const ATOMIC_WRITE: usize = 4096;

/// Writes whole lines to the parent's descriptor, with `write(2)` directly:
/// not through Rust's `Stdout`/`Stderr`, whose locks a parent thread may
/// hold while it waits for a result (which would deadlock the relay). Each
/// write holds whole lines and at most [`ATOMIC_WRITE`] bytes where it can,
/// so that lines from several workers (and the parent's own) never splice
/// into each other on a pipe; only a line longer than that goes alone, in
/// pieces.
fn emit(target: Target, mut lines: &[u8]) {
    while !lines.is_empty() {
        let cut = next_write(lines);
        write_all(target, &lines[..cut]);
        lines = &lines[cut..];
    }
}

/// How much of `lines` the next write takes: all of it if it fits in an
/// atomic write, else the whole lines that do, else the first line.
fn next_write(lines: &[u8]) -> usize {
    if lines.len() <= ATOMIC_WRITE {
        return lines.len();
    }
    match lines[..ATOMIC_WRITE].iter().rposition(|&b| b == b'\n') {
        Some(at) => at + 1,
        None => lines
            .iter()
            .position(|&b| b == b'\n')
            .map_or(lines.len(), |at| at + 1),
    }
}

fn write_all(target: Target, mut lines: &[u8]) {
    let (stdout, stderr) = (io::stdout(), io::stderr());
    let fd = match target {
        Target::Stdout => stdout.as_fd(),
        Target::Stderr => stderr.as_fd(),
    };
    while !lines.is_empty() {
        match nix::unistd::write(fd, lines) {
            Ok(0) => return,
            Ok(n) => lines = &lines[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                // A non-blocking descriptor: wait until it takes more.
                let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::from(100u8));
            }
            // A parent whose output is closed loses worker output, like its own.
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_allocation_failure_report_is_recognised() {
        assert_eq!(
            failed_allocation(b"x\nmemory allocation of 1073741824 bytes failed\n"),
            Some(1 << 30)
        );
        assert_eq!(
            failed_allocation(b"memory allocation of many bytes failed\n"),
            None
        );
        assert_eq!(failed_allocation(b"memory allocation of 12 bytes\n"), None);
        assert_eq!(
            failed_allocation(b"note: memory allocation of 5 bytes failed\n"),
            None
        );
    }

    #[test]
    fn long_batches_are_cut_at_line_ends_into_atomic_writes() {
        let line = [b'x'; 99];
        let mut batch = Vec::new();
        for _ in 0..100 {
            batch.extend_from_slice(&line);
            batch.push(b'\n');
        }
        let mut rest = &batch[..];
        let mut writes = 0;
        while !rest.is_empty() {
            let cut = next_write(rest);
            assert!(cut <= ATOMIC_WRITE && rest[cut - 1] == b'\n', "cut at {cut}");
            rest = &rest[cut..];
            writes += 1;
        }
        assert_eq!(writes, 3, "10,000 bytes of 100-byte lines: 40 + 40 + 20 lines");
        // A line longer than an atomic write goes alone, whole.
        let mut long = vec![b'y'; 5000];
        long.extend_from_slice(b"\nshort\n");
        assert_eq!(next_write(&long), 5001);
        assert_eq!(next_write(b"ab\ncd"), 5);
    }

    #[test]
    fn only_whole_lines_pass_unless_told() {
        let mut partial = b"one\ntwo".to_vec();
        assert_eq!(complete_lines(&mut partial, false), 4);
        assert_eq!(complete_lines(&mut partial, true), 8);
        assert_eq!(partial, b"one\ntwo\n");
    }
}
