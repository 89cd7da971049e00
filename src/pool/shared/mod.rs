//! The state every thread of a pool shares: its lifecycle, the queue of
//! waiting jobs, and its seats (one per worker) with the job each holds.
//!
//! # Dispatch
//!
//! A seat holds at most one job, its *current* one, from the moment the job
//! is handed to the worker until its `DONE` is read, so the parent always
//! knows which worker holds which job. A submitted job goes straight to an
//! idle seat (the submitting thread writes the frame) or waits in the FIFO
//! queue; when a seat's job finishes, its supervisor takes the next job from
//! the queue and sends it *before* decoding the finished one, so the worker
//! computes while the parent decodes.
//!
//! # Lifecycle
//!
//! `Running` → `close()` → `Closed` → `join()` → `Joining` → `Joined`;
//! `terminate()` (or dropping the pool) goes to `Terminated` from any state.
//! While `Running` or `Closed`, a dead worker is replaced.
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
use std::time::Instant;

use crate::error::Error;
use crate::pool::callbacks::{self, CallbackSender, CallbackThread};
use crate::pool::job::{Job, Ticket};
use crate::pool::pending::Pending;
use crate::pool::policy::{Doom, TaskPolicy, WorkerLimits};
use crate::pool::stats::{PoolStats, Stats};
use crate::worker::handle::{Channel, StartConfig};

mod kill;

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

/// The bytes of a task frame on its way to a worker: kept (shared) when
/// the task may have to be sent again.
#[derive(Debug)]
pub(crate) enum Frame {
    Owned(Vec<u8>),
    Kept(Arc<Vec<u8>>),
}

impl Frame {
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Frame::Owned(bytes) => bytes,
            Frame::Kept(bytes) => bytes,
        }
    }
}

/// A job to send now, to the worker of a seat.
#[derive(Debug)]
struct Dispatch {
    seat: usize,
    job: u64,
    channel: Arc<Channel>,
    frame: Frame,
}

/// Jobs to send once the state lock is released (usually none or one; a
/// split chunk can make more).
#[derive(Debug, Default)]
#[must_use = "jobs assigned to workers must be sent"]
pub(crate) struct Sends {
    first: Option<Dispatch>,
    more: Vec<Dispatch>,
}

impl Sends {
    fn push(&mut self, dispatch: Dispatch) {
        match self.first {
            None => self.first = Some(dispatch),
            Some(_) => self.more.push(dispatch),
        }
    }

    /// Sends every job. A job whose worker turned out to be dead (it died
    /// while idle, before its supervisor noticed) never reached it: it goes
    /// back to the queue, without counting as an attempt.
    pub(crate) fn send(self, shared: &Shared) {
        let mut pending: Vec<Dispatch> = self.first.into_iter().chain(self.more).collect();
        while let Some(d) = pending.pop() {
            if d.channel.send(d.frame.bytes()).is_err() {
                let again = shared.undelivered(d.seat, d.job, d.frame);
                pending.extend(again.first.into_iter().chain(again.more));
            }
        }
    }
}

/// The job a worker holds.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) ticket: Ticket,
    /// The frame, kept for a retry.
    frame: Option<Arc<Vec<u8>>>,
}

impl Running {
    /// The job again, for another attempt, if it may have one.
    pub(crate) fn retry(self) -> Result<Job, Ticket> {
        match self.frame {
            Some(frame) if self.ticket.may_retry() => {
                let mut ticket = self.ticket;
                ticket.attempt += 1;
                Ok(Job {
                    frame: Arc::try_unwrap(frame).unwrap_or_else(|shared| (*shared).clone()),
                    ticket,
                    unsendable: None,
                })
            }
            _ => Err(self.ticket),
        }
    }
}

/// What a supervisor learns when its worker is gone.
#[derive(Debug)]
pub(crate) struct Lost {
    pub(crate) running: Option<Running>,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) doom: Option<Doom>,
}

#[derive(Debug, Default)]
struct Seat {
    pid: Option<u32>,
    channel: Option<Arc<Channel>>,
    current: Option<Running>,
    /// When the current job must be done, if it has a timeout.
    deadline: Option<Instant>,
    /// Why the pool is killing this seat's worker, if it is.
    doom: Option<Doom>,
    /// Items the worker may still take (with `max_tasks_per_child`).
    tasks_left: Option<u64>,
    /// The worker has its last job: replace it once that is done.
    retiring: bool,
    gave_up: bool,
}

#[derive(Debug)]
struct State {
    lifecycle: Lifecycle,
    queue: VecDeque<Job>,
    seats: Vec<Seat>,
    /// Idle seats, longest idle first: work is spread over every worker.
    idle: VecDeque<usize>,
    /// Set when every seat gave up restarting its worker.
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
    callbacks: CallbackThread,
    threads: Mutex<Vec<JoinHandle<()>>>,
    next_job: AtomicU64,
    me: Weak<Shared>,
}

/// What a pool is made with, besides its size.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) start: StartConfig,
    pub(crate) policy: TaskPolicy,
    pub(crate) limits: WorkerLimits,
    pub(crate) init: Option<Vec<u8>>,
}

impl Shared {
    pub(crate) fn new(processes: usize, options: Options) -> std::io::Result<Arc<Shared>> {
        let callbacks = CallbackThread::start()?;
        Ok(Arc::new_cyclic(|me| Shared {
            processes,
            start: options.start,
            pending: Arc::new(Pending::default()),
            policy: options.policy,
            limits: options.limits,
            init: options.init,
            stats: Arc::new(Stats::new(processes)),
            state: Mutex::new(State {
                lifecycle: Lifecycle::Running,
                queue: VecDeque::new(),
                seats: (0..processes).map(|_| Seat::default()).collect(),
                idle: VecDeque::with_capacity(processes),
                broken: None,
                timer_started: false,
                timer_wakes_at: None,
            }),
            timer_wake: Condvar::new(),
            callbacks,
            threads: Mutex::new(Vec::with_capacity(processes + 1)),
            next_job: AtomicU64::new(1),
            me: me.clone(),
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

    /// Hands `job` to an idle worker or queues it. On refusal the job comes
    /// back with the reason.
    pub(crate) fn submit(&self, mut job: Job, admission: Admission) -> Result<(), Box<Refused>> {
        let mut state = self.lock();
        if let Err(error) = state.admit(admission) {
            return Err(Box::new(Refused { error, job }));
        }
        if let Some(error) = job.unsendable.take() {
            drop(state);
            job.fail(error);
            return Ok(());
        }
        state.queue.push_back(job);
        let sends = self.dispatch_idle(&mut state);
        drop(state);
        sends.send(self);
        Ok(())
    }

    /// Puts a job whose worker died back at the front of the queue (or
    /// hands it to an idle worker) for another attempt. Fails it if the
    /// pool stopped taking work or its call was cancelled.
    pub(crate) fn requeue(&self, job: Job) {
        let mut state = self.lock();
        let refusal = match state.admit(Admission::Continuation) {
            Err(error) => Some(error),
            Ok(()) if job.ticket.call.is_cancelled() => Some(Error::Cancelled),
            Ok(()) => None,
        };
        if let Some(error) = refusal {
            drop(state);
            job.fail(error);
            return;
        }
        state.queue.push_front(job);
        let sends = self.dispatch_idle(&mut state);
        drop(state);
        sends.send(self);
    }

    /// The job `job` sent to `seat` did not reach its worker (the channel
    /// is closed: the worker is dead). If the seat still holds it, it goes
    /// back to the front of the queue as it was.
    fn undelivered(&self, seat: usize, job: u64, frame: Frame) -> Sends {
        let mut state = self.lock();
        let s = &mut state.seats[seat];
        if s.current.as_ref().is_none_or(|r| r.ticket.id != job) {
            // Its supervisor got there first and reported it.
            return Sends::default();
        }
        let running = s.current.take().expect("checked above");
        s.deadline = None;
        let frame = match frame {
            Frame::Owned(bytes) => bytes,
            Frame::Kept(bytes) => Arc::try_unwrap(bytes).unwrap_or_else(|shared| (*shared).clone()),
        };
        drop(running.frame);
        let job = Job {
            frame,
            ticket: running.ticket,
            unsendable: None,
        };
        let refusal = match state.admit(Admission::Continuation) {
            Err(error) => Some(error),
            Ok(()) if job.ticket.call.is_cancelled() => Some(Error::Cancelled),
            Ok(()) => None,
        };
        if let Some(error) = refusal {
            drop(state);
            job.fail(error);
            return Sends::default();
        }
        state.queue.push_front(job);
        self.dispatch_idle(&mut state)
    }

    /// Hands queued jobs to idle workers while there are both.
    fn dispatch_idle(&self, state: &mut State) -> Sends {
        let mut sends = Sends::default();
        while !state.queue.is_empty() {
            let Some(seat) = state.idle.pop_front() else { break };
            let job = state.queue.pop_front().expect("checked above");
            sends.push(self.assign(state, seat, job));
        }
        sends
    }

    /// Makes `job` the current job of `seat` (which must be serving and
    /// free): splits it to the worker's task budget, arms its deadline, and
    /// keeps its frame if it may be retried.
    fn assign(&self, state: &mut State, seat: usize, mut job: Job) -> Dispatch {
        let s = &mut state.seats[seat];
        debug_assert!(
            s.current.is_none() && !s.retiring,
            "a seat takes one job at a time"
        );
        if let Some(left) = s.tasks_left {
            let count = u64::from(job.ticket.meta.count);
            if count > left {
                let at = u32::try_from(left).expect("less than a chunk's count");
                let (head, tail) = job.split(at, self.next_job_id(), self.pending.token());
                state.queue.push_front(tail);
                job = head;
            }
        }
        let s = &mut state.seats[seat];
        if let Some(left) = s.tasks_left.as_mut() {
            *left -= u64::from(job.ticket.meta.count);
            s.retiring = *left == 0;
        }
        let channel = Arc::clone(s.channel.as_ref().expect("a serving seat has a channel"));
        let (frame, kept) = if job.ticket.may_retry() {
            let frame = Arc::new(job.frame);
            (Frame::Kept(Arc::clone(&frame)), Some(frame))
        } else {
            (Frame::Owned(job.frame), None)
        };
        let deadline = job.ticket.policy.timeout.map(|t| Instant::now() + t);
        s.deadline = deadline;
        let id = job.ticket.id;
        s.current = Some(Running {
            ticket: job.ticket,
            frame: kept,
        });
        if let Some(deadline) = deadline {
            self.arm_timer(state, deadline);
        }
        Dispatch {
            seat,
            job: id,
            channel,
            frame,
        }
    }

    /// Gives `seat` the next queued job (and, if that job was split, its
    /// rest to idle workers), or marks it idle.
    fn next_for(&self, state: &mut State, seat: usize) -> Sends {
        match state.queue.pop_front() {
            Some(job) => {
                let first = self.assign(state, seat, job);
                let mut sends = self.dispatch_idle(state);
                sends.push(first);
                sends
            }
            None => {
                state.idle.push_back(seat);
                Sends::default()
            }
        }
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
        debug_assert!(s.current.is_none(), "a worker that never joined holds no job");
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
        Ok(self.next_for(&mut state, seat))
    }

    /// The worker of `seat` finished job `job` of `count` items: returns its
    /// ticket, the next job to send, and whether the worker must now be
    /// replaced (its task budget is spent). `Err` if that is not the job it
    /// holds (the ticket stays with the seat).
    pub(crate) fn finished(
        &self,
        seat: usize,
        job: u64,
        count: u32,
    ) -> Result<(Ticket, Sends, bool), String> {
        let mut state = self.lock();
        let s = &mut state.seats[seat];
        match &s.current {
            Some(r) if r.ticket.id == job && r.ticket.meta.count == count => {}
            Some(r) => {
                return Err(format!(
                    "it answered job {job} ({count} items) while holding job {} ({} items)",
                    r.ticket.id, r.ticket.meta.count
                ));
            }
            None => return Err(format!("it answered job {job} while holding none")),
        }
        let running = s.current.take().expect("checked above");
        s.deadline = None;
        // A worker being killed (its task was done just in time) or spent
        // takes nothing more; a spent one is then replaced.
        let retire = s.retiring && s.doom.is_none();
        let next = match s.retiring || s.doom.is_some() {
            true => Sends::default(),
            false => self.next_for(&mut state, seat),
        };
        Ok((running.ticket, next, retire))
    }

    /// Forgets the pid of `seat`'s worker, which is about to be reaped.
    pub(crate) fn forget_pid(&self, seat: usize) {
        let mut state = self.lock();
        state.idle.retain(|&i| i != seat);
        state.seats[seat].pid = None;
    }

    /// The worker of `seat` is gone: returns the job it held, what the pool
    /// is doing now, and whether the pool killed it on purpose.
    pub(crate) fn seat_lost(&self, seat: usize) -> Lost {
        let mut state = self.lock();
        state.idle.retain(|&i| i != seat);
        let s = &mut state.seats[seat];
        s.pid = None;
        s.channel = None;
        s.deadline = None;
        s.retiring = false;
        let running = s.current.take();
        let doom = s.doom.take();
        Lost {
            running,
            lifecycle: state.lifecycle,
            doom,
        }
    }

    /// `seat` could not restart its worker. When no seat is left, the pool
    /// is broken: queued jobs and later calls fail with `error`.
    pub(crate) fn seat_gave_up(&self, seat: usize, error: Error) {
        let drained = {
            let mut state = self.lock();
            state.seats[seat].gave_up = true;
            if !state.seats.iter().all(|s| s.gave_up) {
                return;
            }
            state.broken = Some(error.clone());
            std::mem::take(&mut state.queue)
        };
        for job in drained {
            job.fail(error.clone());
        }
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
            let channels: Vec<_> = state.seats.iter().filter_map(|s| s.channel.clone()).collect();
            (std::mem::take(&mut state.queue), channels)
        };
        for job in drained {
            job.fail(Error::Terminated);
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
            break state.seats.iter().filter_map(|s| s.channel.clone()).collect();
        };
        for channel in channels {
            channel.finish();
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
