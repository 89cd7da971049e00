//! Supervision: one thread per seat starts its worker (running the pool's
//! initializer in it), reads everything the worker sends, and, when the
//! worker dies, reports the job it held (timed out or cancelled if the pool
//! killed it on purpose, over the memory limit, or dead with its signal or
//! exit code; or runs it again when it may be retried), reaps it, and
//! starts a replacement. A worker whose task budget is spent is let go and
//! replaced the same way.
//!
//! Reading blocks in `read`, so a worker's death (its end of the channel
//! closes) wakes its supervisor at once; so does `terminate`, which cuts the
//! parent's end.
//!
//! # A seat never gives up on a transient failure
//!
//! A replacement that cannot start (the system refuses a process for a
//! while, the worker fails its handshake) is tried again after a pause
//! that doubles from [`RESTART_PAUSE`] up to [`RESTART_PAUSE_MAX`], until
//! it starts or the pool stops (which cuts the pause short). After
//! [`RESTART_ATTEMPTS`] failures in a row the seat reports itself down:
//! while every seat is down, waiting tasks and new calls get the error
//! instead of waiting; the first seat back takes the pool out of that
//! state. Only an initializer that fails [`RESTART_ATTEMPTS`] times in a
//! row gives its seat up for good: that is the caller's code saying no, and
//! it is not run in an endless loop.
//!
//! # User code on these threads
//!
//! A supervisor runs user code: the `tracing` subscriber, and through the
//! sinks, wakers, progress bars and the `Drop` of results. Each call is
//! shielded (see [`callbacks`](crate::result::callbacks)); should a panic
//! still get through, the supervisor fails the jobs its seat held, and
//! starts over with a new worker.

use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use crate::error::{Error, ExitCause};
use crate::pool::policy::Doom;
use crate::pool::shared::{Finished, Lifecycle, Lost, Running, Shared};
use crate::protocol::message::FromWorker;
use crate::result::sink::{ChunkOutcome, validate};
use crate::task::panics::{drop_shielded, shielded};
use crate::worker::handle::{Received, RecvError, WorkerProcess};

/// How many times in a row a seat fails to start a replacement worker
/// before it reports itself down (and an initializer fails before its seat
/// gives up for good).
const RESTART_ATTEMPTS: u32 = 3;

/// The pause after a seat's first failed start; it doubles with each
/// failure in a row.
const RESTART_PAUSE: Duration = Duration::from_millis(10);

/// The longest pause between two tries to start a worker.
const RESTART_PAUSE_MAX: Duration = Duration::from_secs(2);

/// How long a worker that was told to stop (its task budget is spent) may
/// take to exit before it is killed.
const RETIRE_GRACE: Duration = Duration::from_secs(5);

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
            .spawn(move || guarded(&shared, seat, started))?
    };
    shared.add_thread(handle);
    Ok(())
}

/// Runs the supervisor. If it panics (a bug, or user code that got past
/// its shield), the jobs its seat held fail instead of waiting forever, its
/// worker is killed and reaped, and it starts over with a new worker: the
/// seat is not lost, though it pauses before it starts over, longer each
/// time. A pool still starting fails with the panic instead.
fn guarded(shared: &Shared, seat: usize, started: Sender<Result<(), Error>>) {
    let mut started = Some(started);
    let mut pause = RESTART_PAUSE;
    loop {
        let run = std::panic::AssertUnwindSafe(|| run(shared, seat, &mut started));
        let Err(payload) = std::panic::catch_unwind(run) else {
            return;
        };
        let error = Error::Protocol {
            pid: 0,
            message: format!(
                "procpool's supervisor of worker seat {seat} failed: {}",
                crate::protocol::codec::panic_text(&*payload)
            ),
        };
        drop_shielded(payload);
        for running in shared.seat_lost(seat).held {
            let error = error.clone();
            shielded(move || running.ticket.complete(ChunkOutcome::Failed(error)));
        }
        if let Some(started) = started.take() {
            let _ = started.send(Err(error));
            return;
        }
        shielded(|| tracing::error!(seat, %error, "procpool supervisor failed; starting the seat over"));
        if !shared.pause_restart(pause) {
            return;
        }
        pause = (pause * 2).min(RESTART_PAUSE_MAX);
    }
}

enum BringUp {
    Up(WorkerProcess),
    /// The pool no longer wants a worker here.
    Stopped,
    Failed(Error),
}

/// Forgets the seat's worker pid if the supervisor unwinds (a bug), before
/// the worker itself is dropped (killed and reaped): a pid in a seat is
/// always an unreaped child.
struct ForgetOnUnwind<'a> {
    shared: &'a Shared,
    seat: usize,
}

impl Drop for ForgetOnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.shared.forget_pid(self.seat);
        }
    }
}

/// Supervises `seat`: starts its first worker (reporting on `started`
/// whether it came up), or, once the pool has started, a replacement.
fn run(shared: &Shared, seat: usize, started: &mut Option<Sender<Result<(), Error>>>) {
    let mut worker = match started.is_some() {
        true => {
            let first = bring_up(shared, seat);
            let up = match &first {
                BringUp::Up(worker) => {
                    let pid = worker.pid();
                    shielded(|| tracing::debug!(pid, seat, "procpool worker started"));
                    Ok(())
                }
                BringUp::Stopped => Err(Error::Terminated),
                BringUp::Failed(e) => Err(e.clone()),
            };
            if let Some(started) = started.take() {
                let _ = started.send(up);
            }
            match first {
                BringUp::Up(worker) => worker,
                _ => return,
            }
        }
        false => match restart(shared, seat, spawn_registered(shared, seat)) {
            Some(worker) => worker,
            None => return,
        },
    };
    // Declared after the worker, so dropped before it.
    let _forget = ForgetOnUnwind { shared, seat };
    loop {
        let stop = serve(shared, seat, &mut worker);
        let pid = worker.pid();
        let replacement = match stop {
            Stop::Retire(replacement) => {
                let replacement = *replacement;
                // The replacement took the seat; let the spent worker exit.
                worker.channel().finish();
                if !matches!(replacement, BringUp::Up(_)) {
                    shared.seat_lost(seat);
                }
                let cause = worker.reap_within(RETIRE_GRACE);
                shielded(
                    || tracing::info!(pid, seat, %cause, "procpool worker recycled after max_tasks_per_child"),
                );
                match replacement {
                    BringUp::Stopped => None,
                    other => Some(other),
                }
            }
            stop => {
                let lost = shared.seat_lost(seat);
                let graceful = lost.lifecycle == Lifecycle::Joining
                    && lost.held.is_empty()
                    && matches!(stop, Stop::Closed);
                let cause = match graceful {
                    true => worker.reap(),
                    false => worker.kill_and_reap(),
                };
                shielded(|| match (graceful, lost.doom, &stop) {
                    (true, _, _) => tracing::debug!(pid, seat, %cause, "procpool worker exited"),
                    (false, Some(doom), _) => {
                        tracing::info!(pid, seat, ?doom, "procpool worker killed on purpose")
                    }
                    (false, None, Stop::Broken(message)) => {
                        tracing::warn!(pid, seat, %message, "procpool worker broke the protocol and was killed")
                    }
                    (false, None, _) if lost.lifecycle == Lifecycle::Terminated => {
                        tracing::debug!(pid, seat, "procpool worker stopped by terminate")
                    }
                    (false, None, _) => tracing::warn!(pid, seat, %cause, "procpool worker died"),
                });
                // Start the replacement before reporting the death, so that
                // whoever learns of the death finds the pool whole again.
                let replacement = lost
                    .lifecycle
                    .replaces_workers()
                    .then(|| spawn_registered(shared, seat));
                report(shared, lost, stop, pid, cause, &worker);
                replacement
            }
        };
        let Some(first_try) = replacement else {
            return;
        };
        worker = match restart(shared, seat, first_try) {
            Some(worker) => worker,
            None => return,
        };
    }
}

/// How many times a job may go back to the queue as never started.
const MAX_UNSTARTED_REQUEUES: u32 = 3;

/// Reports the job a lost worker was running (if any): what happened to
/// it, or runs it again. The jobs it was sent ahead and had not started
/// go back to the queue; those it ran but whose results it had not sent
/// count as lost with it.
fn report(shared: &Shared, lost: Lost, stop: Stop, pid: u32, cause: ExitCause, worker: &WorkerProcess) {
    let mut held = lost.held;
    if lost.stray_kill && lost.lifecycle != Lifecycle::Terminated {
        // The pool killed this worker for a job that finished in time: what
        // it ran next did nothing wrong and runs again.
        return shared.requeue_unstarted(held);
    }
    // The jobs before the one the worker last started ran, but their
    // results were held back (`worker::replies`) and died with it.
    let ran = worker
        .started_job()
        .and_then(|job| held.iter().position(|running| running.ticket.id == job))
        .unwrap_or(0);
    for running in held.drain(..ran) {
        match lost.lifecycle {
            Lifecycle::Terminated => running.ticket.complete(ChunkOutcome::Failed(Error::Terminated)),
            _ => died(shared, running, pid, cause),
        }
    }
    if ran > 0 && lost.doom.is_some() {
        // The pool killed the worker for the first of them (a timeout or
        // a cancel), which had finished: what ran next did nothing wrong.
        return shared.requeue_unstarted(held);
    }
    let Some(running) = held.pop_front() else {
        return;
    };
    // A worker that died on its own before it started the job it was
    // handed (killed while idle, just as the job was sent): the job never
    // ran, and runs elsewhere without counting an attempt.
    // The marker is the worker's word: a task that forges it and exits
    // would have its job requeued forever, so after a few requeues the
    // job counts as started.
    let never_started = worker.started_job().is_some_and(|job| job != running.ticket.id)
        && running.ticket.unstarted_requeues < MAX_UNSTARTED_REQUEUES;
    if never_started
        && lost.doom.is_none()
        && lost.lifecycle != Lifecycle::Terminated
        && matches!(stop, Stop::Closed)
    {
        let mut running = running;
        running.ticket.unstarted_requeues += 1;
        held.push_front(running);
        return shared.requeue_unstarted(held);
    }
    shared.requeue_unstarted(held);
    let error = match (lost.lifecycle, lost.doom, stop) {
        (Lifecycle::Terminated, _, _) => Error::Terminated,
        (_, Some(Doom::TimedOut(after)), _) => Error::TimedOut {
            index: None,
            pid,
            after,
        },
        (_, Some(Doom::Cancelled), _) => Error::Cancelled,
        (_, None, Stop::Broken(message)) => Error::Protocol { pid, message },
        (_, None, Stop::Closed | Stop::Retire(_)) => {
            match (shared.limits.max_memory, worker.output().alloc_failure()) {
                // The standard library reports a failed allocation, then
                // aborts.
                (Some(limit), Some(requested)) if cause.signal() == Some(libc::SIGABRT) => {
                    Error::MemoryLimit {
                        index: None,
                        pid,
                        limit,
                        requested: Some(requested),
                    }
                }
                // What the worker said before it died (a stack overflow, a
                // panic under `panic = "abort"`) would happen again: the
                // job's outcome, not a death to retry.
                _ => match worker.last_words(running.ticket.id, cause, running.ticket.attempt) {
                    Some(error) => match worker.failed_item() {
                        Some(item) if item < running.ticket.meta.count && running.ticket.meta.count > 1 => {
                            return fail_one_item(shared, running, item, error, (pid, cause));
                        }
                        _ => error,
                    },
                    None => return died(shared, running, pid, cause),
                },
            }
        }
    };
    running.ticket.complete(ChunkOutcome::Failed(error));
}

/// Item `item` of the chunk `running` killed its worker in a way that would
/// happen again (`error`); `death` is the worker's pid and how it ended.
/// That item fails alone: the items after it never ran and run elsewhere;
/// the items before it ran, but their results died with the worker, so
/// they are handled as a death (run again if the call has retries left,
/// else [`Error::WorkerDied`]).
fn fail_one_item(shared: &Shared, running: Running, item: u32, error: Error, death: (u32, ExitCause)) {
    let mut job = running.unstarted();
    let mut before = None;
    if item > 0 {
        let (head, rest) = job.split(item, shared.next_job_id(), shared.pending.token());
        before = Some(head);
        job = rest;
    }
    if job.ticket.meta.count > 1 {
        let (one, after) = job.split(1, shared.next_job_id(), shared.pending.token());
        shared.requeue(std::iter::once(after));
        job = one;
    }
    job.fail(error);
    if let Some(head) = before {
        died(shared, Running::from(head), death.0, death.1);
    }
}

/// The worker running `running` died: run it again if it may be retried,
/// or report the death with the number of attempts.
fn died(shared: &Shared, running: Running, pid: u32, cause: ExitCause) {
    match running.retry() {
        Ok(job) => {
            let attempt = job.ticket.attempt;
            shielded(|| {
                tracing::info!(
                    pid,
                    attempt,
                    "procpool task lost with its worker; running it again"
                )
            });
            shared.requeue(std::iter::once(job))
        }
        // Cancelled while its worker was dying: it is not run again.
        Err(ticket) if ticket.call.is_cancelled() => ticket.complete(ChunkOutcome::Failed(Error::Cancelled)),
        Err(ticket) => {
            let attempts = ticket.attempt;
            ticket.complete(ChunkOutcome::Failed(Error::WorkerDied {
                index: None,
                pid,
                cause,
                attempts,
            }));
        }
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
    let mut started = worker.handshake(&shared.start, || shared.worker_gone(seat));
    if let (Ok(()), Some(init)) = (&started, &shared.init) {
        started = worker.initialize(init, shared.start.start_timeout, || shared.worker_gone(seat));
    }
    if let (Ok(()), Some(policy)) = (&started, &shared.start.sandbox) {
        started = worker.lock_down(policy, shared.start.start_timeout, || shared.worker_gone(seat));
    }
    if let Err(e) = started {
        return match shared.lifecycle().replaces_workers() {
            true => BringUp::Failed(e),
            false => BringUp::Stopped,
        };
    }
    match shared.worker_ready(seat) {
        Ok(next) => {
            next.send(shared);
            BringUp::Up(worker)
        }
        Err(lifecycle) => {
            shared.worker_gone(seat);
            let pid = worker.pid();
            let cause = worker.kill_and_reap();
            shielded(
                || tracing::debug!(pid, seat, ?lifecycle, %cause, "procpool worker stopped: the pool no longer wanted it"),
            );
            BringUp::Stopped
        }
    }
}

/// Starts a worker for `seat` and lets it join the pool.
fn bring_up(shared: &Shared, seat: usize) -> BringUp {
    admit(shared, seat, spawn_registered(shared, seat))
}

/// Replaces a dead worker, starting from the process `first_try` already
/// spawned; tries again, pausing longer each time, until a worker starts
/// or the pool stops (see the module's docs). `None` when the pool stopped
/// or the seat gave up.
fn restart(shared: &Shared, seat: usize, first_try: BringUp) -> Option<WorkerProcess> {
    let mut attempt = first_try;
    let mut failures = 0u32;
    let mut initializer_failures = 0u32;
    let mut pause = RESTART_PAUSE;
    loop {
        match admit(shared, seat, attempt) {
            BringUp::Up(worker) => {
                shared.stats.respawned();
                let pid = worker.pid();
                shielded(|| tracing::info!(pid, seat, "procpool replacement worker started"));
                return Some(worker);
            }
            BringUp::Stopped => return None,
            BringUp::Failed(e) => {
                failures = failures.saturating_add(1);
                initializer_failures = match e {
                    Error::Initializer { .. } => initializer_failures + 1,
                    _ => 0,
                };
                let pid = start_pid(&e);
                shielded(
                    || tracing::warn!(pid, seat, error = %e, failures, "procpool replacement worker failed to start"),
                );
                if initializer_failures == RESTART_ATTEMPTS {
                    shielded(
                        || tracing::error!(pid, seat, error = %e, "procpool gave up refilling a worker seat"),
                    );
                    shared.seat_down(seat, e);
                    return None;
                }
                if failures == RESTART_ATTEMPTS {
                    shielded(
                        || tracing::error!(pid, seat, error = %e, "procpool cannot refill a worker seat; trying on"),
                    );
                    shared.seat_down(seat, e);
                }
                if !shared.pause_restart(pause) {
                    return None;
                }
                pause = (pause * 2).min(RESTART_PAUSE_MAX);
            }
        }
        attempt = spawn_registered(shared, seat);
    }
}

/// The pid of a worker that failed to start (0 if none was started).
fn start_pid(error: &Error) -> u32 {
    match error {
        Error::WorkerStart { pid, .. } | Error::Initializer { pid, .. } => *pid,
        _ => 0,
    }
}

/// Why a worker stopped being served.
enum Stop {
    /// Its channel closed: it died, or exited when told to.
    Closed,
    /// It broke the protocol (or gave up with a fault).
    Broken(String),
    /// It ran its last task (`max_tasks_per_child`); its replacement was
    /// started before that task's result was delivered.
    Retire(Box<BringUp>),
}

/// Reads the worker's results until it stops.
fn serve(shared: &Shared, seat: usize, worker: &mut WorkerProcess) -> Stop {
    let output = worker.output();
    loop {
        let Received { message, fresh, more } = match worker.recv() {
            Ok(received) => received,
            Err(RecvError::Closed) => return Stop::Closed,
            Err(RecvError::Broken(e)) => return Stop::Broken(e.0),
        };
        match message {
            FromWorker::Done {
                job,
                count,
                timing,
                results,
            } => {
                let ok = match validate(results, count) {
                    Ok(ok) => ok,
                    Err(e) => return Stop::Broken(e.0),
                };
                let Finished {
                    ticket,
                    retire,
                    busy,
                    killed,
                } = match shared.finished(seat, job, count) {
                    Ok(done) => done,
                    Err(message) => return Stop::Broken(message),
                };
                if let Some(killed) = killed {
                    killed.log();
                }
                // What the task printed comes before its result. A worker
                // that runs no job sent ahead printed nothing since: its
                // unfinished last line is this task's.
                if fresh || !busy {
                    output.drain(!busy);
                }
                // A failed allocation reported so far was not fatal; if the
                // worker runs a job sent ahead, it may be that job's.
                if !busy {
                    output.forget_alloc_failure();
                }
                // Keep the worker busy while this thread decodes; once the
                // results it sent together are all in, send what waits in
                // one write.
                if !more {
                    shared.worker_free(seat).send(shared);
                }
                // Whoever gets this result finds the pool whole: a spent
                // worker's replacement is already starting.
                let replacement = retire.then(|| spawn_registered(shared, seat));
                let cancelled = ticket.call.is_cancelled();
                // A dropped result counts as failed, when its ticket fails.
                let (ok, failed) = if cancelled { (0, 0) } else { (ok, count - ok) };
                shared.stats.chunk_done(seat, ok, failed, count, timing);
                shared
                    .stats
                    .parent_decoding(count, results.len(), || match cancelled {
                        // Cancelled while it ran (sent ahead, or done just as
                        // its worker was being killed): its result is dropped.
                        true => ticket.complete(ChunkOutcome::Failed(Error::Cancelled)),
                        false => ticket.complete(ChunkOutcome::Results(results)),
                    });
                if let Some(replacement) = replacement {
                    return Stop::Retire(Box::new(replacement));
                }
            }
            FromWorker::Part { job, count, results } => {
                let ok = match validate(results, count) {
                    Ok(ok) => ok,
                    Err(e) => return Stop::Broken(e.0),
                };
                let ticket = match shared.part_done(seat, job, count) {
                    Ok(ticket) => ticket,
                    Err(message) => return Stop::Broken(message),
                };
                // What these items printed comes before their results.
                if fresh {
                    output.drain(false);
                }
                if ticket.call.is_cancelled() {
                    shared.stats.part_done(seat, 0, 0, count);
                    ticket.complete(ChunkOutcome::Failed(Error::Cancelled));
                } else {
                    shared.stats.part_done(seat, ok, count - ok, count);
                    ticket.complete(ChunkOutcome::Results(results));
                }
            }
            FromWorker::Fault(reason) => return Stop::Broken(format!("the worker gave up: {reason}")),
            other => return Stop::Broken(format!("unexpected message {other:?}")),
        }
    }
}
