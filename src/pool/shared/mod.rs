//! The state every thread of a pool shares: its lifecycle, the queue of
//! waiting jobs, and its seats (one per worker) with the job each holds.
//!
//! # Dispatch
//!
//! A seat holds the jobs its worker runs, in order: the running one, then
//! (for short tasks) a few sent ahead. The parent always knows which worker
//! holds which job. A submitted job goes straight to an idle seat (the
//! submitting thread writes the frame) or waits in the FIFO queue; when a
//! seat's job finishes, its supervisor sends the next jobs *before*
//! decoding the finished one, so the worker computes while the parent
//! decodes. The decisions (what a seat may take, cuts for a task budget,
//! retirement, retries) are pure functions in [`plan`], tested on their
//! own; `dispatch` applies them under the lock and returns the sends to
//! make after it.
//!
//! # Lifecycle
//!
//! `Running` → `close()` → `Closed` → `join()` → `Joining` → `Joined`;
//! `terminate()` (or dropping the pool) goes to `Terminated` from any state.
//! While `Running` or `Closed`, a dead worker is replaced.
//!
//! A seat that keeps failing to start a worker is *down* (it goes on
//! trying, see [`supervisor`](crate::pool::supervisor)); while every seat
//! is down, the pool is *broken*: queued jobs fail, and so do new calls,
//! with the seats' error, until a seat has a worker again.
//!
//! # Killing on purpose
//!
//! A task with a timeout gets a deadline when it is handed to its worker; a
//! timer thread (started with the first deadline) kills the worker of a
//! task that is still running at its deadline. [`Shared::cancel`] kills the
//! workers running a cancelled call. Both mark the seat with a [`Doom`]
//! before the kill, so that the supervisor reports the task as timed out or
//! cancelled rather than as a crash. A seat's pid is only cleared (under
//! the lock) before its worker is reaped, so a pid found in a seat is
//! always a live or unreaped child: the kill cannot hit another process.
//!
//! # Splitting and recycling
//!
//! With `max_tasks_per_child`, a worker takes at most as many items as it
//! has left: a longer chunk is split, and the rest goes back to the front
//! of the queue. A worker whose budget is spent finishes its last chunk and
//! is then replaced ([`Shared::finished`] says so).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::pool::job::Job;
use crate::pool::policy::{Doom, TaskPolicy, WorkerLimits};
use crate::pool::stats::{PoolStats, Stats};
use crate::result::callbacks::{self, CallbackSender, CallbackThread};
use crate::result::pending::Pending;
use crate::worker::handle::{Channel, StartConfig};

mod dispatch;
mod kill;
pub(crate) mod plan;

pub(crate) use dispatch::{Finished, Running, Sends};

/// Where a pool is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    Running,
    Closed,
    Joining,
    Joined,
    Terminated,
}

impl Lifecycle {
    /// Whether a dead worker should be replaced.
    pub(crate) fn replaces_workers(self) -> bool {
        matches!(self, Lifecycle::Running | Lifecycle::Closed)
    }
}

/// Whether a submission opens new work or continues a call already made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A new call: refused once the pool is closed.
    New,
    /// More chunks of a call accepted before `close()`: accepted until the
    /// pool starts joining.
    Continuation,
}

/// A job the pool would not take, and why.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) error: Error,
    pub(crate) job: Job,
}

impl Refused {
    /// Fails the job's chunk with the reason it was refused.
    pub(crate) fn fail(self) {
        self.job.fail(self.error);
    }

    /// The reason, for a caller that reports it itself; the job is dropped
    /// without running its callbacks.
    pub(crate) fn into_error(self) -> Error {
        self.job.ticket.abandon();
        self.error
    }
}

/// What a supervisor learns when its worker is gone.
#[derive(Debug)]
pub(crate) struct Lost {
    /// The jobs it held, in the order it runs them: the one it last
    /// started (see its marker) was running; those before it ran, their
    /// results held back; those after it were sent ahead and never
    /// started.
    pub(crate) held: VecDeque<Running>,
    pub(crate) lifecycle: Lifecycle,
    /// Why the pool killed the worker running the first held job.
    pub(crate) doom: Option<Doom>,
    /// The pool killed the worker for a job that finished in time: the
    /// first held job was killed by mistake and runs again.
    pub(crate) stray_kill: bool,
}

#[derive(Debug, Default)]
struct Seat {
    pid: Option<u32>,
    channel: Option<Arc<Channel>>,
    /// The jobs the worker holds, in the order it runs them: the first is
    /// running, the others were sent ahead (only for short tasks).
    inflight: VecDeque<Running>,
    /// Whether the seat is in the idle list.
    idle: bool,
    /// When the running job must be done, if it has a timeout.
    deadline: Option<Instant>,
    /// Why the pool is killing this seat's worker, if it is, and for which
    /// job.
    doom: Option<(Doom, u64)>,
    /// Items the worker may still take (with `max_tasks_per_child`).
    tasks_left: Option<u64>,
    /// The worker has its last job: replace it once that is done.
    retiring: bool,
    /// The seat keeps failing to start a worker (it goes on trying, unless
    /// its initializer is what fails).
    down: bool,
}

#[derive(Debug)]
struct State {
    lifecycle: Lifecycle,
    queue: VecDeque<Job>,
    seats: Vec<Seat>,
    /// Idle seats, longest idle first: work is spread over every worker.
    idle: VecDeque<usize>,
    /// Set while every seat is down or gave up: why.
    broken: Option<Error>,
    /// Whether the timer thread runs, and when it next wakes.
    timer_started: bool,
    timer_wakes_at: Option<Instant>,
}

impl State {
    fn admit(&self, admission: Admission) -> Result<(), Error> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        match (self.lifecycle, admission) {
            (Lifecycle::Running, _) | (Lifecycle::Closed, Admission::Continuation) => Ok(()),
            (Lifecycle::Terminated, _) => Err(Error::Terminated),
            _ => Err(Error::Closed),
        }
    }
}

/// Everything the threads of one pool share.
pub(crate) struct Shared {
    pub(crate) processes: usize,
    pub(crate) start: StartConfig,
    pub(crate) pending: Arc<Pending>,
    /// The pool's default task policy (a call may override it).
    pub(crate) policy: TaskPolicy,
    pub(crate) limits: WorkerLimits,
    /// The `TASK` frame of the initializer, run in every new worker.
    pub(crate) init: Option<Vec<u8>>,
    pub(crate) stats: Arc<Stats>,
    state: Mutex<State>,
    /// Wakes the timer thread (waits on `state`).
    timer_wake: Condvar,
    /// Wakes supervisors pausing between tries to start a worker when the
    /// pool stops (waits on `state`).
    stopping: Condvar,
    callbacks: CallbackThread,
    threads: Mutex<Vec<JoinHandle<()>>>,
    next_job: AtomicU64,
    me: Weak<Shared>,
    /// Where jobs go instead of the seats, in a pool fed through Redis
    /// (which has no seats).
    #[cfg(feature = "redis")]
    pub(crate) remote: Option<Arc<crate::pool::remote::Remote>>,
}

/// What a pool is made with, besides its size.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) start: StartConfig,
    pub(crate) policy: TaskPolicy,
    pub(crate) limits: WorkerLimits,
    pub(crate) init: Option<Vec<u8>>,
    #[cfg(feature = "redis")]
    pub(crate) remote: Option<Arc<crate::pool::remote::Remote>>,
}

impl Options {
    fn is_remote(&self) -> bool {
        #[cfg(feature = "redis")]
        return self.remote.is_some();
        #[cfg(not(feature = "redis"))]
        false
    }
}

impl Shared {
    /// Whether jobs go to worker hosts through Redis (no local seats).
    pub(crate) fn is_remote(&self) -> bool {
        #[cfg(feature = "redis")]
        return self.remote.is_some();
        #[cfg(not(feature = "redis"))]
        false
    }

    pub(crate) fn new(processes: usize, options: Options) -> std::io::Result<Arc<Shared>> {
        Self::with_stats(
            processes,
            options,
            Arc::new(Stats::new(processes)),
            Arc::default(),
        )
    }

    /// A pool whose counters and pending work are `stats` and `pending`
    /// (made before it, for a remote end).
    pub(crate) fn with_stats(
        processes: usize,
        options: Options,
        stats: Arc<Stats>,
        pending: Arc<Pending>,
    ) -> std::io::Result<Arc<Shared>> {
        let callbacks = CallbackThread::start()?;
        // A pool fed through Redis has no seats.
        let seats = if cfg!(feature = "redis") && options.is_remote() {
            0
        } else {
            processes
        };
        Ok(Arc::new_cyclic(|me| Shared {
            processes,
            start: options.start,
            pending,
            policy: options.policy,
            limits: options.limits,
            init: options.init,
            stats,
            state: Mutex::new(State {
                lifecycle: Lifecycle::Running,
                queue: VecDeque::new(),
                seats: (0..seats).map(|_| Seat::default()).collect(),
                idle: VecDeque::with_capacity(seats),
                broken: None,
                timer_started: false,
                timer_wakes_at: None,
            }),
            timer_wake: Condvar::new(),
            stopping: Condvar::new(),
            callbacks,
            threads: Mutex::new(Vec::with_capacity(processes + 1)),
            next_job: AtomicU64::new(1),
            me: me.clone(),
            #[cfg(feature = "redis")]
            remote: options.remote,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn next_job_id(&self) -> u64 {
        self.next_job.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn callback_sender(&self) -> CallbackSender {
        self.callbacks.sender()
    }

    pub(crate) fn lifecycle(&self) -> Lifecycle {
        self.lock().lifecycle
    }

    /// Fails fast when a new call would be refused.
    pub(crate) fn check_open(&self) -> Result<(), Error> {
        self.lock().admit(Admission::New)
    }

    pub(crate) fn add_thread(&self, handle: JoinHandle<()>) {
        self.threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(handle);
    }

    /// A worker process exists for `seat` (not yet through its handshake):
    /// record it so that `terminate` can cut it short. `false` if the pool
    /// no longer wants workers.
    pub(crate) fn worker_spawned(&self, seat: usize, pid: u32, channel: Arc<Channel>) -> bool {
        let mut state = self.lock();
        if !state.lifecycle.replaces_workers() {
            return false;
        }
        let s = &mut state.seats[seat];
        s.pid = Some(pid);
        s.channel = Some(channel);
        true
    }

    /// The worker started for `seat` did not join the pool (its handshake
    /// failed, or the pool stopped): forget it.
    pub(crate) fn worker_gone(&self, seat: usize) {
        let mut state = self.lock();
        state.idle.retain(|&i| i != seat);
        let s = &mut state.seats[seat];
        debug_assert!(s.inflight.is_empty(), "a worker that never joined holds no job");
        s.idle = false;
        s.pid = None;
        s.channel = None;
    }

    /// The worker of `seat` passed its handshake: it joins the pool and
    /// gets a job if one waits. `Err` if the pool no longer wants workers.
    pub(crate) fn worker_ready(&self, seat: usize) -> Result<Sends, Lifecycle> {
        let mut state = self.lock();
        if !state.lifecycle.replaces_workers() {
            return Err(state.lifecycle);
        }
        let s = &mut state.seats[seat];
        s.tasks_left = self.limits.max_tasks;
        s.retiring = false;
        s.doom = None;
        s.deadline = None;
        s.down = false;
        // A seat is up: the pool takes work again.
        state.broken = None;
        Ok(self.refill(&mut state, seat))
    }

    /// Forgets the pid of `seat`'s worker, which is about to be reaped.
    pub(crate) fn forget_pid(&self, seat: usize) {
        let mut state = self.lock();
        state.idle.retain(|&i| i != seat);
        state.seats[seat].idle = false;
        state.seats[seat].pid = None;
    }

    /// The worker of `seat` is gone: returns the job it held, what the pool
    /// is doing now, and whether the pool killed it on purpose.
    pub(crate) fn seat_lost(&self, seat: usize) -> Lost {
        let mut state = self.lock();
        state.idle.retain(|&i| i != seat);
        let s = &mut state.seats[seat];
        s.idle = false;
        s.pid = None;
        s.channel = None;
        s.deadline = None;
        s.retiring = false;
        let held = std::mem::take(&mut s.inflight);
        // The job the pool killed the worker for may have finished just in
        // time; then the job it ran next was killed by mistake.
        let (doom, stray_kill) = match (s.doom.take(), held.front()) {
            (Some((doom, target)), Some(running)) if running.ticket.id == target => (Some(doom), false),
            (Some(_), Some(_)) => (None, true),
            _ => (None, false),
        };
        Lost {
            held,
            lifecycle: state.lifecycle,
            doom,
            stray_kill,
        }
    }

    /// `seat` keeps failing to start a worker, with `error` (it may go on
    /// trying, or have given up). When every seat is down, the pool is
    /// broken (see the module's docs).
    pub(crate) fn seat_down(&self, seat: usize, error: Error) {
        let drained = {
            let mut state = self.lock();
            state.seats[seat].down = true;
            if !state.seats.iter().all(|s| s.down) {
                return;
            }
            state.broken = Some(error.clone());
            std::mem::take(&mut state.queue)
        };
        for job in drained {
            job.fail(error.clone());
        }
    }

    /// Pauses a supervisor between two tries to start a worker for `pause`,
    /// cut short when the pool stops. Returns whether the pool still wants
    /// workers.
    pub(crate) fn pause_restart(&self, pause: Duration) -> bool {
        let until = Instant::now() + pause;
        let mut state = self.lock();
        while state.lifecycle.replaces_workers() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            state = self
                .stopping
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        false
    }

    /// A snapshot of the pool's counters.
    pub(crate) fn stats(&self) -> PoolStats {
        let pids = self.lock().seats.iter().map(|s| s.pid).collect();
        self.stats.snapshot(pids)
    }

    /// The pids of the workers: serving, or started and not yet through
    /// their handshake.
    pub(crate) fn worker_pids(&self) -> Vec<u32> {
        self.lock().seats.iter().filter_map(|s| s.pid).collect()
    }

    pub(crate) fn close(&self) {
        let mut state = self.lock();
        if state.lifecycle == Lifecycle::Running {
            state.lifecycle = Lifecycle::Closed;
        }
    }

    /// Stops at once: queued jobs fail, workers are killed and reaped.
    pub(crate) fn terminate(&self) {
        let (drained, channels) = {
            let mut state = self.lock();
            if state.lifecycle == Lifecycle::Joined {
                return;
            }
            state.lifecycle = Lifecycle::Terminated;
            self.timer_wake.notify_all();
            self.stopping.notify_all();
            let channels: Vec<_> = state.seats.iter().filter_map(|s| s.channel.clone()).collect();
            (std::mem::take(&mut state.queue), channels)
        };
        for job in drained {
            job.fail(Error::Terminated);
        }
        #[cfg(feature = "redis")]
        if let Some(remote) = &self.remote {
            remote.terminate();
        }
        // Cutting a channel wakes its supervisor, which kills and reaps the
        // worker and fails the job it held.
        for channel in channels {
            channel.cut();
        }
        self.join_threads();
    }

    /// Waits for all work (and callbacks) to finish, then lets the workers
    /// exit and reaps them.
    pub(crate) fn join(&self) -> Result<(), Error> {
        match self.lifecycle() {
            Lifecycle::Running => return Err(Error::NotClosed),
            Lifecycle::Closed | Lifecycle::Joining => {}
            Lifecycle::Joined | Lifecycle::Terminated => {
                self.join_threads();
                return Ok(());
            }
        }
        if callbacks::on_callback_thread() {
            // The pending work includes the callback we are running in.
            return Err(Error::WaitInCallback);
        }
        let channels: Vec<_> = loop {
            self.pending.wait_zero();
            let mut state = self.lock();
            if state.lifecycle == Lifecycle::Terminated {
                drop(state);
                self.join_threads();
                return Ok(());
            }
            // Every job holds a pending token from before it is submitted,
            // and submitting takes this lock: checking again here, under
            // it, leaves no window for a continuation (a later chunk of an
            // `imap`) to slip in after the wait and be stranded.
            if !self.pending.is_zero() {
                continue;
            }
            debug_assert!(state.queue.is_empty(), "queued jobs hold pending tokens");
            state.lifecycle = Lifecycle::Joining;
            self.timer_wake.notify_all();
            self.stopping.notify_all();
            break state.seats.iter().filter_map(|s| s.channel.clone()).collect();
        };
        for channel in channels {
            channel.finish();
        }
        #[cfg(feature = "redis")]
        if let Some(remote) = &self.remote {
            remote.finish();
        }
        self.join_threads();
        let mut state = self.lock();
        if state.lifecycle == Lifecycle::Joining {
            state.lifecycle = Lifecycle::Joined;
        }
        Ok(())
    }

    /// Joins every supervisor thread (but the caller's own). Holding the
    /// list while joining makes a concurrent caller wait for the same end.
    fn join_threads(&self) {
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        let me = std::thread::current().id();
        for handle in threads.drain(..) {
            if handle.thread().id() != me {
                let _ = handle.join();
            }
        }
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("Pool")
            .field("processes", &self.processes)
            .field("state", &state.lifecycle)
            .field("queued", &state.queue.len())
            .field(
                "workers",
                &state.seats.iter().filter_map(|s| s.pid).collect::<Vec<_>>(),
            )
            .finish()
    }
}
