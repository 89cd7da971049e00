//! The parent's handle on one worker process: start it, talk to it, end it.
//!
//! A [`WorkerProcess`] owns the child (so it is always reaped: by
//! [`WorkerProcess::reap`], [`WorkerProcess::kill_and_reap`], or on drop)
//! and the reading end of its channel. Writing goes through a shared
//! [`Channel`], so that a submitting thread can hand a task straight to an
//! idle worker.

use std::io::{self, BufReader};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bootstrap::{ENV_VAR, WorkerEnv};
use crate::error::{Error, ExitCause, RemotePanic};
use crate::func::{Identity, Image};
use crate::protocol::ProtocolError;
use crate::protocol::attach::{self, Inbox, TaskFrame};
use crate::protocol::frame::{self, ReadError};
use crate::protocol::message::{self, FromWorker};
use crate::sandbox::Policy;
use crate::sys;
use crate::sys::fd::FdReader;
use crate::sys::shm::Marker;
use crate::task::panics::shielded;
use crate::worker::output::{ExitWatch, Output};

/// What every worker of a pool is started with.
#[derive(Debug, Clone)]
pub(crate) struct StartConfig {
    /// The build of procpool's image in the parent, which the worker must
    /// match.
    pub(crate) identity: Identity,
    /// What to start: the parent's own image (`/proc/self/exe`, usually).
    pub(crate) program: PathBuf,
    /// The worker's arguments: the parent's own, `argv[0]` included, as
    /// Python's spawned workers keep `sys.argv`.
    pub(crate) args: Vec<std::ffi::OsString>,
    /// How long a worker may take to answer the handshake.
    pub(crate) start_timeout: Duration,
    /// The largest frame body accepted from a worker.
    pub(crate) max_body: usize,
    /// The data segment cap of each worker, in bytes.
    pub(crate) max_memory: Option<u64>,
    /// The sandbox each worker locks itself down with after its
    /// initializer, for a sandboxed pool.
    pub(crate) sandbox: Option<Arc<Policy>>,
}

impl StartConfig {
    /// # Errors
    ///
    /// [`Error::Bootstrap`] if procpool's image cannot be read or cannot be
    /// started again (procpool in a shared library).
    pub(crate) fn new(start_timeout: Duration) -> Result<StartConfig, Error> {
        let image = Image::current().map_err(Error::Bootstrap)?;
        let mut args: Vec<_> = std::env::args_os().collect();
        if args.is_empty() {
            args.push("procpool-worker".into());
        }
        Ok(StartConfig {
            identity: image.identity,
            program: image.worker_program().map_err(Error::Bootstrap)?,
            args,
            start_timeout,
            max_body: frame::DEFAULT_MAX_BODY,
            max_memory: None,
            sandbox: None,
        })
    }
}

/// The writing side of a worker's channel, shared by the threads that hand
/// it tasks.
#[derive(Debug)]
pub(crate) struct Channel {
    pub(super) stream: UnixStream,
    write: Mutex<()>,
}

impl Channel {
    /// The writing side of the parent's end of a worker's channel.
    pub(crate) fn new(stream: UnixStream) -> Channel {
        Channel {
            stream,
            write: Mutex::new(()),
        }
    }

    /// Sends one whole frame. Fails when the worker is gone.
    pub(crate) fn send(&self, frame: &[u8]) -> io::Result<()> {
        let _one_writer = self.write.lock().unwrap_or_else(|e| e.into_inner());
        sys::fd::send_all(&self.stream, frame)
    }

    /// Sends task frames, in order, each after the shared regions it names,
    /// in as few writes as possible. Fails when the worker is gone.
    pub(crate) fn send_tasks(&self, frames: &[&TaskFrame]) -> io::Result<()> {
        let _one_writer = self.write.lock().unwrap_or_else(|e| e.into_inner());
        if frames.iter().all(|f| f.attached.is_empty()) {
            let bytes: Vec<&[u8]> = frames.iter().map(|f| f.bytes.as_slice()).collect();
            return sys::fd::send_all_vectored(&self.stream, &bytes);
        }
        frames.iter().try_for_each(|f| f.send(&self.stream))
    }

    /// Tells the worker there is no more work: it exits when it reads this.
    pub(crate) fn finish(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    /// Ends reading: the supervisor's blocked read returns (after what the
    /// worker already sent) with the end of the channel.
    pub(crate) fn stop_reading(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Read);
    }

    /// Cuts the channel both ways: the worker's reader sees the end at once.
    pub(crate) fn cut(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// A message from a worker, and what reading it involved.
#[derive(Debug)]
pub(crate) struct Received<'a> {
    pub(crate) message: FromWorker<'a>,
    /// It took a read from the channel: output the worker wrote before
    /// sending it may be waiting in its pipes. (A message that did not
    /// came with an earlier one that did.)
    pub(crate) fresh: bool,
    /// More of what the worker sent is already read: another message
    /// follows without waiting.
    pub(crate) more: bool,
}

/// What [`WorkerProcess::recv`] gives instead of a message.
#[derive(Debug)]
pub(crate) enum RecvError {
    /// The worker closed its channel (it exited, or is exiting).
    Closed,
    /// It sent something that is not protocol.
    Broken(ProtocolError),
}

/// One live worker process.
#[derive(Debug)]
pub(crate) struct WorkerProcess {
    pub(super) child: Option<Child>,
    pub(super) output: Output,
    pub(super) pid: u32,
    pub(super) reader: BufReader<FdReader>,
    /// The shared regions of the frames being read.
    pub(super) inbox: Inbox,
    pub(super) channel: Arc<Channel>,
    pub(super) body: Vec<u8>,
    pub(super) max_body: usize,
    /// Where the worker records the job it starts (once it is ready).
    pub(super) marker: Option<Marker>,
    /// The panic a job's worker reported before aborting (`panic =
    /// "abort"`), with the job's id.
    pub(super) aborted: Option<(u64, RemotePanic)>,
    /// Whether the worker locks itself down (a sandboxed pool).
    pub(super) sandboxed: bool,
    /// Its private scratch directory (`Sandbox::scratch`), removed when
    /// it is reaped.
    pub(super) scratch: Option<PathBuf>,
}

impl WorkerProcess {
    /// Starts a worker process. It is not usable before
    /// [`handshake`](Self::handshake) succeeds.
    ///
    /// # Errors
    ///
    /// [`Error::Spawn`] if the process cannot be started.
    pub(crate) fn spawn(config: &StartConfig) -> Result<WorkerProcess, Error> {
        let (ours, theirs) = UnixStream::pair().map_err(Error::spawn)?;
        let writer = ours.try_clone().map_err(Error::spawn)?;
        // The worker's end goes in as its stdin (it moves it elsewhere and
        // reopens /dev/null there). With no code to run between `fork` and
        // `exec`, the standard library starts the worker with
        // `posix_spawn`, whose cost does not grow with the parent's memory
        // as a `fork` does.
        let mut env = WorkerEnv::new(0, config.identity, config.max_memory);
        env.sandboxed = config.sandbox.is_some();
        let mut command = Command::new(&config.program);
        command
            .arg0(&config.args[0])
            .args(&config.args[1..])
            .env(ENV_VAR, env.to_value())
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().map_err(Error::spawn)?;
        // The command holds the worker's end until it is dropped.
        drop(command);
        let pid = child.id();
        let channel = Arc::new(Channel::new(writer));
        // Watch the process itself, not only its channel: a process the
        // worker forked may hold the channel open after the worker died.
        let exit = sys::process::pidfd_open(pid).map(|pidfd| ExitWatch {
            pidfd,
            channel: Arc::clone(&channel),
        });
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let output = match (stdout, stderr) {
            (Some(stdout), Some(stderr)) => {
                Output::start(stdout, stderr, exit, pid, config.max_memory.is_some())
            }
            _ => Err(io::Error::other("the worker's output pipes are missing")),
        };
        let output = match output {
            Ok(output) => output,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::spawn(e));
            }
        };
        Ok(WorkerProcess {
            pid,
            output,
            child: Some(child),
            reader: BufReader::with_capacity(64 * 1024, FdReader::new(ours)),
            inbox: Inbox::default(),
            channel,
            body: Vec::new(),
            max_body: config.max_body,
            marker: None,
            aborted: None,
            sandboxed: config.sandbox.is_some(),
            scratch: None,
        })
    }

    /// The id of the job the worker last started (0 if none).
    pub(crate) fn started_job(&self) -> Option<u64> {
        self.marker.as_ref().map(Marker::get)
    }

    /// The worker's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The writing side of the channel.
    pub(crate) fn channel(&self) -> Arc<Channel> {
        Arc::clone(&self.channel)
    }

    /// Blocks for the next message from the worker.
    ///
    /// A `PANIC` (a job's panic, sent as the worker aborts) is not handed
    /// out: it is kept for [`last_words`](Self::last_words), and the next
    /// message is read, which is the end of the channel.
    pub(crate) fn recv(&mut self) -> Result<Received<'_>, RecvError> {
        // The last message's shared regions are done with.
        self.inbox.clear();
        let (kind, fresh) = match self.read_frames() {
            Ok(read) => read,
            Err(e) => {
                // The worker is gone or broken: no frame will claim them.
                self.inbox.forget();
                return Err(e);
            }
        };
        Ok(Received {
            fresh,
            more: !self.reader.buffer().is_empty(),
            message: FromWorker::decode(kind, &self.body).map_err(RecvError::Broken)?,
        })
    }

    /// Reads frames up to the next message to hand out (into `body`): its
    /// kind, and whether reading it took a read from the channel.
    fn read_frames(&mut self) -> Result<(u8, bool), RecvError> {
        let mut fresh = false;
        loop {
            let buffered = self.reader.buffer().len();
            let kind = match frame::read_frame(&mut self.reader, &mut self.body, self.max_body) {
                Ok(kind) => kind,
                Err(ReadError::Closed) => return Err(RecvError::Closed),
                // Cut short: the worker died while it was writing.
                Err(ReadError::Truncated) => return Err(RecvError::Closed),
                Err(ReadError::Protocol(e)) => return Err(RecvError::Broken(e)),
                // Descriptors it sent were lost, or too many wait.
                Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::InvalidData => {
                    return Err(RecvError::Broken(ProtocolError::new(e.to_string())));
                }
                Err(ReadError::Io(_)) => return Err(RecvError::Closed),
            };
            // Fewer bytes were buffered than the frame holds: it took a
            // read.
            fresh |= buffered < frame::HEADER_LEN + self.body.len();
            if kind == attach::DESCS_TO_PARENT {
                self.inbox
                    .receive(self.reader.get_mut(), &self.body)
                    .map_err(RecvError::Broken)?;
                continue;
            }
            // A job's regions go to its results.
            let job = match FromWorker::decode(kind, &self.body) {
                Ok(FromWorker::Done { job, .. }) => Some((job, true)),
                Ok(FromWorker::Part { job, .. }) => Some((job, false)),
                _ => None,
            };
            let buffered = self.reader.buffer().len();
            self.inbox
                .deliver_for(self.reader.get_mut(), buffered, job)
                .map_err(RecvError::Broken)?;
            if kind == message::PANIC {
                let decoded = FromWorker::decode(kind, &self.body).map_err(RecvError::Broken)?;
                if let FromWorker::Panicked { job, panic } = decoded {
                    self.aborted = Some((job, panic));
                }
                continue;
            }
            return Ok((kind, fresh));
        }
    }

    /// What the dead worker said about how job `job` killed it, as the
    /// job's error, when running the job again would end the same way: a
    /// panic under `panic = "abort"` ([`Error::Panicked`]), or a stack
    /// overflow ([`Error::WorkerDied`] with [`ExitCause::StackOverflow`];
    /// `cause` is how the worker ended, `attempts` how many times the job
    /// ran). `None` for any other death.
    pub(crate) fn last_words(&self, job: u64, cause: ExitCause, attempts: u32) -> Option<Error> {
        match &self.aborted {
            Some((aborted, panic)) if *aborted == job => Some(Error::Panicked {
                index: None,
                panic: panic.clone(),
            }),
            _ if self.sandboxed && cause.signal() == Some(libc::SIGSYS) => {
                let refused = self.marker.as_ref().and_then(|m| m.violation(self.pid));
                Some(Error::SandboxViolation {
                    index: None,
                    pid: self.pid,
                    syscall: crate::sandbox::describe_syscall(refused),
                })
            }
            _ => cause.is_stack_overflow().then_some(Error::WorkerDied {
                index: None,
                pid: self.pid,
                cause,
                attempts,
            }),
        }
    }

    /// The item of its job that was running when the worker recorded its
    /// death in [`last_words`](Self::last_words) (a stack overflow, a
    /// refused system call), counted from its first result not yet
    /// delivered; `None` when it did not say.
    pub(crate) fn failed_item(&self) -> Option<u32> {
        self.marker.as_ref().and_then(Marker::failed_item)
    }

    /// Whether the worker's signal handler saw a fault hit its stack's
    /// guard (see `sys::signal`).
    fn overflowed(&self) -> bool {
        self.marker.as_ref().is_some_and(|m| m.stack_overflowed(self.pid))
    }

    /// The relay of the worker's output. [`Output::drain`] it before
    /// delivering a result, so that what the task printed comes first.
    pub(crate) fn output(&self) -> Output {
        self.output.clone()
    }

    /// Removes the worker's scratch directory, once it is gone.
    fn remove_scratch(&mut self) {
        if let Some(dir) = self.scratch.take()
            && let Err(e) = sys::tree::remove_tree(&dir)
            && e.kind() != io::ErrorKind::NotFound
        {
            let pid = self.pid;
            shielded(
                || tracing::warn!(pid, dir = %dir.display(), %e, "procpool could not remove a worker's scratch directory"),
            );
        }
    }

    /// Kills the worker (if it still runs) and reaps it.
    pub(crate) fn kill_and_reap(&mut self) -> ExitCause {
        self.channel.cut();
        match self.child.take() {
            Some(mut child) => {
                let _ = child.kill();
                let cause = cause_of(child.wait(), self.overflowed());
                self.output.finish();
                self.remove_scratch();
                cause
            }
            None => ExitCause::Unknown,
        }
    }

    /// Waits for a worker that was told to finish to exit, and reaps it.
    pub(crate) fn reap(&mut self) -> ExitCause {
        match self.child.take() {
            Some(mut child) => {
                let cause = cause_of(child.wait(), self.overflowed());
                self.output.finish();
                self.remove_scratch();
                cause
            }
            None => ExitCause::Unknown,
        }
    }

    /// Gives a worker that is ending on its own up to `grace` to exit, then
    /// kills it; reaps it either way.
    pub(crate) fn reap_within(&mut self, grace: Duration) -> ExitCause {
        let deadline = Instant::now() + grace;
        if let Some(child) = self.child.as_mut() {
            while Instant::now() < deadline {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        self.child = None;
                        self.output.finish();
                        self.remove_scratch();
                        return cause_of(Ok(status), self.overflowed());
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                    Err(_) => break,
                }
            }
        }
        self.kill_and_reap()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        // Never leave a child running or unreaped.
        self.kill_and_reap();
    }
}

/// How the worker ended: its exit status, and whether its stack overflowed.
fn cause_of(status: io::Result<ExitStatus>, overflowed: bool) -> ExitCause {
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => ExitCause::Exited(code),
            (None, Some(signal @ (libc::SIGSEGV | libc::SIGBUS))) if overflowed => {
                ExitCause::StackOverflow { signal }
            }
            (None, Some(signal)) => ExitCause::Signaled {
                signal,
                core_dumped: status.core_dumped(),
            },
            (None, None) => ExitCause::Unknown,
        },
        Err(_) => ExitCause::Unknown,
    }
}
