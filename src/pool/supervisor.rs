//! Supervision: one thread per seat starts its worker, reads everything
//! the worker sends, and, when the worker dies, fails the job it held
//! (naming the signal or exit code), reaps it, and starts a replacement.
//!
//! Reading blocks in `read`, so a worker's death (its end of the channel
//! closes) wakes its supervisor at once; so does `terminate`, which cuts the
//! parent's end.

use std::sync::Arc;
use std::sync::mpsc::Sender;

use crate::error::Error;
use crate::pool::shared::{Lifecycle, Shared};
use crate::protocol::message::FromWorker;
use crate::result::sink::{ChunkOutcome, validate};
use crate::worker::handle::{RecvError, WorkerProcess};

/// How many times in a row a seat tries to start a replacement worker
/// before it gives up.
const RESTART_ATTEMPTS: usize = 3;

/// Starts the supervisor of `seat`; it reports on `started` whether its
/// first worker came up.
pub(crate) fn start(
    shared: &Arc<Shared>,
    seat: usize,
    started: Sender<Result<(), Error>>,
) -> std::io::Result<()> {
    let handle = {
        let shared = Arc::clone(shared);
        std::thread::Builder::new()
            .name(format!("procpool-seat-{seat}"))
            .spawn(move || guarded(&shared, seat, &started))?
    };
    shared.add_thread(handle);
    Ok(())
}

/// Runs the supervisor; if it ever panicked (a bug), the job its seat held
/// fails instead of waiting forever, and the seat is given up.
fn guarded(shared: &Shared, seat: usize, started: &Sender<Result<(), Error>>) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(shared, seat, started)));
    if let Err(payload) = outcome {
        let error = Error::Protocol {
            pid: 0,
            message: format!(
                "procpool's supervisor of worker seat {seat} failed: {}",
                crate::protocol::codec::panic_text(&*payload)
            ),
        };
        let (lost, _) = shared.seat_lost(seat);
        if let Some(ticket) = lost {
            ticket.complete(ChunkOutcome::Failed(error.clone()));
        }
        shared.seat_gave_up(seat, error);
    }
}

enum BringUp {
    Up(WorkerProcess),
    /// The pool no longer wants a worker here.
    Stopped,
    Failed(Error),
}

fn run(shared: &Shared, seat: usize, started: &Sender<Result<(), Error>>) {
    let mut worker = match bring_up(shared, seat) {
        BringUp::Up(worker) => worker,
        BringUp::Stopped => {
            let _ = started.send(Err(Error::Terminated));
            return;
        }
        BringUp::Failed(e) => {
            let _ = started.send(Err(e));
            return;
        }
    };
    let _ = started.send(Ok(()));
    loop {
        let stop = serve(shared, seat, &mut worker);
        let pid = worker.pid();
        let (lost, lifecycle) = shared.seat_lost(seat);
        let cause = if lifecycle == Lifecycle::Joining && lost.is_none() && matches!(stop, Stop::Closed) {
            worker.reap()
        } else {
            worker.kill_and_reap()
        };
        // Start the replacement before reporting the death, so that whoever
        // learns of the death finds the pool whole again.
        let replacement = lifecycle
            .replaces_workers()
            .then(|| spawn_registered(shared, seat));
        if let Some(ticket) = lost {
            let error = match (lifecycle, stop) {
                (Lifecycle::Terminated, _) => Error::Terminated,
                (_, Stop::Broken(message)) => Error::Protocol { pid, message },
                (_, Stop::Closed) => Error::WorkerDied {
                    index: None,
                    pid,
                    cause,
                },
            };
            ticket.complete(ChunkOutcome::Failed(error));
        }
        let Some(first_try) = replacement else {
            return;
        };
        worker = match restart(shared, seat, first_try) {
            Some(worker) => worker,
            None => return,
        };
    }
}

/// Starts a worker process for `seat` and records it there.
fn spawn_registered(shared: &Shared, seat: usize) -> BringUp {
    let mut worker = match WorkerProcess::spawn(&shared.start) {
        Ok(worker) => worker,
        Err(e) => return BringUp::Failed(e),
    };
    if !shared.worker_spawned(seat, worker.pid(), worker.channel()) {
        worker.kill_and_reap();
        return BringUp::Stopped;
    }
    BringUp::Up(worker)
}

/// Takes a spawned worker through its handshake into the pool.
fn admit(shared: &Shared, seat: usize, spawned: BringUp) -> BringUp {
    let mut worker = match spawned {
        BringUp::Up(worker) => worker,
        other => return other,
    };
    if let Err(e) = worker.handshake(&shared.start, || shared.worker_gone(seat)) {
        return match shared.lifecycle().replaces_workers() {
            true => BringUp::Failed(e),
            false => BringUp::Stopped,
        };
    }
    match shared.worker_ready(seat) {
        Ok(next) => {
            if let Some((channel, frame)) = next {
                let _ = channel.send(&frame);
            }
            BringUp::Up(worker)
        }
        Err(_) => {
            shared.worker_gone(seat);
            worker.kill_and_reap();
            BringUp::Stopped
        }
    }
}

/// Starts a worker for `seat` and lets it join the pool.
fn bring_up(shared: &Shared, seat: usize) -> BringUp {
    admit(shared, seat, spawn_registered(shared, seat))
}

/// Replaces a dead worker, starting from the process `first_try` already
/// spawned; gives the seat up after repeated failures.
fn restart(shared: &Shared, seat: usize, first_try: BringUp) -> Option<WorkerProcess> {
    let mut attempt = first_try;
    let mut last = None;
    for _ in 0..RESTART_ATTEMPTS {
        match admit(shared, seat, attempt) {
            BringUp::Up(worker) => return Some(worker),
            BringUp::Stopped => return None,
            BringUp::Failed(e) => last = Some(e),
        }
        attempt = spawn_registered(shared, seat);
    }
    shared.seat_gave_up(seat, last.expect("at least one attempt"));
    None
}

/// Why a worker stopped being served.
enum Stop {
    /// Its channel closed: it died, or exited when told to.
    Closed,
    /// It broke the protocol (or gave up with a fault).
    Broken(String),
}

/// Reads the worker's results until it stops.
fn serve(shared: &Shared, seat: usize, worker: &mut WorkerProcess) -> Stop {
    let output = worker.output();
    loop {
        let message = match worker.recv() {
            Ok(message) => message,
            Err(RecvError::Closed) => return Stop::Closed,
            Err(RecvError::Broken(e)) => return Stop::Broken(e.0),
        };
        match message {
            FromWorker::Done { job, count, results } => {
                if let Err(e) = validate(results, count) {
                    return Stop::Broken(e.0);
                }
                let (ticket, next) = match shared.finished(seat, job, count) {
                    Ok(done) => done,
                    Err(message) => return Stop::Broken(message),
                };
                // Keep the worker busy while this thread decodes.
                if let Some((channel, frame)) = next {
                    let _ = channel.send(&frame);
                }
                // What the task printed comes before its result.
                output.drain();
                ticket.complete(ChunkOutcome::Results(results));
            }
            FromWorker::Fault(reason) => return Stop::Broken(format!("the worker gave up: {reason}")),
            other => return Stop::Broken(format!("unexpected message {other:?}")),
        }
    }
}
