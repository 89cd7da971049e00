//! A worker's way into the pool, on the parent's side: its handshake, its
//! initializer, and (for a sandboxed pool) its lockdown. Each step either
//! succeeds or leaves the process reaped, with the reason in the error.

use std::io;
use std::time::Duration;

use super::handle::{StartConfig, WorkerProcess};
use crate::error::Error;
use crate::protocol::frame::{self, ReadError};
use crate::protocol::message::{self, FromWorker};
use crate::protocol::{PROTOCOL_VERSION, codec};
use crate::sandbox::Policy;
use crate::sys;
use crate::sys::shm::Marker;
use crate::task::panics::shielded;

/// How long a worker that ended its handshake early may take to exit.
const HANDSHAKE_EXIT_GRACE: Duration = Duration::from_secs(1);

/// Why a handshake failed, and whether the worker is ending on its own.
#[derive(Debug)]
struct HandshakeFailure {
    reason: String,
    exiting: bool,
}

impl WorkerProcess {
    /// Waits for the worker's `READY`.
    ///
    /// # Errors
    ///
    /// [`Error::WorkerStart`] if it does not become a worker; the process is
    /// then reaped, after `before_reaping` has run.
    pub(crate) fn handshake(
        &mut self,
        config: &StartConfig,
        before_reaping: impl FnOnce(),
    ) -> Result<(), Error> {
        self.read_handshake(config.start_timeout).map_err(|failure| {
            // Whoever lists this pid must stop before it can be reused.
            before_reaping();
            // A worker that refused or hung up is on its way out: let it
            // finish, so the error shows its real exit status.
            let grace = if failure.exiting {
                HANDSHAKE_EXIT_GRACE
            } else {
                Duration::ZERO
            };
            let cause = self.reap_within(grace);
            Error::WorkerStart {
                pid: self.pid,
                reason: format!("{} [the process {cause}]", failure.reason),
            }
        })
    }

    fn read_handshake(&mut self, timeout: Duration) -> Result<(), HandshakeFailure> {
        let exiting = |reason: String| HandshakeFailure {
            reason,
            exiting: true,
        };
        self.reader
            .get_ref()
            .set_read_timeout(Some(timeout))
            .map_err(|e| exiting(e.to_string()))?;
        let first = frame::read_frame(&mut self.reader, &mut self.body, self.max_body);
        let _ = self.reader.get_ref().set_read_timeout(None);
        let kind = match first {
            Ok(kind) => kind,
            Err(ReadError::Io(e))
                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
            {
                return Err(HandshakeFailure {
                    reason: format!(
                        "it did not answer the handshake within {timeout:?} and was killed; \
                         raise PoolBuilder::start_timeout if the machine is very busy"
                    ),
                    exiting: false,
                });
            }
            Err(ReadError::Closed | ReadError::Truncated) => {
                return Err(exiting(
                    "it ended before the handshake. Usually this means the worker bootstrap did \
                     not run in it: procpool re-runs this executable and turns it into a worker \
                     from a constructor that runs before `main`"
                        .to_owned(),
                ));
            }
            Err(ReadError::Protocol(e)) => {
                return Err(exiting(format!("its handshake is not procpool protocol: {e}")));
            }
            Err(ReadError::Io(e)) => return Err(exiting(format!("reading its handshake failed: {e}"))),
        };
        match FromWorker::decode(kind, &self.body) {
            Ok(FromWorker::Ready { protocol, pid }) if protocol == PROTOCOL_VERSION && pid == self.pid => {
                // Its started-job marker, before anything else is sent.
                let (marker, fd) = Marker::create().map_err(|e| exiting(format!("no marker page: {e}")))?;
                sys::fd::send_with_fd(&self.channel.stream, &message::mark_frame(), &fd)
                    .map_err(|e| exiting(format!("sending its marker page failed: {e}")))?;
                self.marker = Some(marker);
                Ok(())
            }
            Ok(FromWorker::Ready { protocol, pid }) => Err(exiting(format!(
                "its handshake says protocol {protocol} and pid {pid}, expected {PROTOCOL_VERSION} and {}",
                self.pid
            ))),
            Ok(FromWorker::Reject(reason)) => Err(exiting(format!("it refused to serve: {reason}"))),
            Ok(other) => Err(exiting(format!("it sent {other:?} instead of a handshake"))),
            Err(e) => Err(exiting(format!("its handshake is not procpool protocol: {e}"))),
        }
    }

    /// Runs the pool's initializer (a `TASK` frame for job 0) in a worker
    /// that passed its handshake, within `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Initializer`] with what the initializer returned or how it
    /// panicked; [`Error::WorkerStart`] if the worker died or broke the
    /// protocol. The worker is then killed and reaped, after
    /// `before_reaping` has run.
    pub(crate) fn initialize(
        &mut self,
        frame: &[u8],
        timeout: Duration,
        before_reaping: impl FnOnce(),
    ) -> Result<(), Error> {
        let outcome = self.read_init(frame, timeout);
        if let Err(e) = outcome {
            before_reaping();
            let cause = self.kill_and_reap();
            return Err(match e {
                Error::WorkerStart { pid, reason } => Error::WorkerStart {
                    pid,
                    reason: format!("{reason} [the process {cause}]"),
                },
                other => other,
            });
        }
        Ok(())
    }

    /// Sends `frame` (an initializer or a lockdown: `what`) and reads the
    /// answer's kind, within `timeout`.
    fn request(&mut self, frame: &[u8], what: &str, timeout: Duration) -> Result<u8, Error> {
        let pid = self.pid;
        let start_error = |reason: String| Error::WorkerStart { pid, reason };
        if self.channel.send(frame).is_err() {
            return Err(start_error(format!("it died before its {what} ran")));
        }
        let socket = self.reader.get_ref();
        socket.set_read_timeout(Some(timeout)).map_err(Error::spawn)?;
        let read = frame::read_frame(&mut self.reader, &mut self.body, self.max_body);
        let _ = self.reader.get_ref().set_read_timeout(None);
        match read {
            Ok(kind) => Ok(kind),
            Err(ReadError::Io(e))
                if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) =>
            {
                Err(start_error(format!(
                    "its {what} did not finish within the start timeout ({timeout:?}); raise \
                     PoolBuilder::start_timeout for a slow {what}"
                )))
            }
            Err(_) => Err(start_error(format!("it died while running its {what}"))),
        }
    }

    /// Locks the worker down (a sandboxed pool), after its initializer.
    ///
    /// # Errors
    ///
    /// [`Error::WorkerStart`] if the worker refused or failed to lock
    /// itself down; it is then killed and reaped, after `before_reaping`.
    pub(crate) fn lock_down(
        &mut self,
        policy: &Policy,
        timeout: Duration,
        before_reaping: impl FnOnce(),
    ) -> Result<(), Error> {
        let pid = self.pid;
        // The parent names the scratch directory, so that it removes only
        // what it named, whatever the worker says.
        let mut policy = policy.clone();
        if let Some(base) = &policy.scratch_base {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let dir = base.join(format!("procpool-scratch-{pid}-{nanos:x}"));
            policy.scratch = Some(dir.clone());
            self.scratch = Some(dir);
        }
        let mut body = Vec::new();
        codec::encode(&policy, &mut body).map_err(Error::InvalidArgument)?;
        let frame = message::bytes_frame(message::LOCK, &body);
        let outcome = self.request(&frame, "lockdown", timeout).and_then(|kind| {
            match FromWorker::decode(kind, &self.body) {
                Ok(FromWorker::Locked(summary)) => {
                    shielded(|| tracing::debug!(pid, summary, "procpool worker locked down"));
                    Ok(())
                }
                Ok(other) => Err(Error::WorkerStart {
                    pid,
                    reason: format!("it answered its sandbox's lockdown with {other:?}"),
                }),
                Err(e) => Err(Error::WorkerStart {
                    pid,
                    reason: format!("its answer to the lockdown is not protocol: {e}"),
                }),
            }
        });
        if outcome.is_err() {
            before_reaping();
            self.kill_and_reap();
        }
        outcome
    }

    fn read_init(&mut self, frame: &[u8], timeout: Duration) -> Result<(), Error> {
        let pid = self.pid;
        let start_error = |reason: String| Error::WorkerStart { pid, reason };
        let kind = self.request(frame, "initializer", timeout)?;
        match FromWorker::decode(kind, &self.body) {
            Ok(FromWorker::Done {
                job,
                count: 1,
                results,
                ..
            }) if job == message::INIT_JOB => {
                init_outcome(results).map_err(|message| Error::Initializer { pid, message })
            }
            // It panicked, and panics abort.
            Ok(FromWorker::Panicked { job, panic }) if job == message::INIT_JOB => Err(Error::Initializer {
                pid,
                message: format!("it panicked {panic}"),
            }),
            Ok(other) => Err(start_error(format!("it answered its initializer with {other:?}"))),
            Err(e) => Err(start_error(format!(
                "its answer to the initializer is not protocol: {e}"
            ))),
        }
    }
}

/// What the initializer's one result item says.
fn init_outcome(results: &[u8]) -> Result<(), String> {
    use crate::protocol::{codec, items};
    let mut all = items::Items::new(results);
    let (tag, body) = match all.next() {
        Some(Ok(item)) => item,
        _ => return Err("its result is malformed".into()),
    };
    match tag {
        items::RES_OK => codec::decode::<Result<(), String>>(body)?,
        items::RES_PANIC => match codec::decode::<crate::error::RemotePanic>(body) {
            Ok(panic) => Err(format!("it panicked {panic}")),
            Err(_) => Err("it panicked".into()),
        },
        _ => Err(String::from_utf8_lossy(body).into_owned()),
    }
}
