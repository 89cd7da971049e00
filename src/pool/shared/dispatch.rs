//! Dispatch: handing queued jobs to workers, and getting them back when
//! they could not run.
//!
//! A worker runs its jobs one at a time, in order. For short tasks the pool
//! sends a worker a few jobs ahead, so that it never waits for the parent
//! between them, and so that one `send` (and one `read` on each side)
//! carries many jobs: how many depends on how long jobs have been taking
//! ([`Stats::depth`](crate::pool::stats::Stats::depth)), at most
//! [`AHEAD_BYTES`] of frames ahead. A job with a timeout is always sent
//! alone, so that its deadline starts when it does. A worker sends each
//! result before it starts the next job, so when it dies, the first job it
//! holds is the one that was running and the others never started: they
//! go back to the queue without counting as an attempt.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::kill::Killed;
use super::plan;
use super::{Admission, Refused, Shared, State};
use crate::error::Error;
use crate::pool::job::{Job, Ticket};
use crate::pool::policy::Doom;
use crate::protocol::attach::{self, TaskFrame};
use crate::protocol::message;
use crate::result::pending::Pending;
use crate::worker::handle::Channel;

/// The most bytes of task frames a worker is sent ahead of the job it
/// runs: well under a socket's buffer, so that sending never blocks on a
/// worker busy writing a large result.
const AHEAD_BYTES: usize = 64 * 1024;

/// The bytes of a task frame on its way to a worker, shared with the
/// seat that holds the job (to send it again if need be).
type Frame = Arc<TaskFrame>;

/// Jobs to send to the worker of one seat, in one write.
#[derive(Debug)]
struct Dispatch {
    seat: usize,
    channel: Arc<Channel>,
    jobs: Vec<u64>,
    frames: Vec<Frame>,
}

/// Jobs to send once the state lock is released, and the earliest
/// deadline that started (armed under the lock by `Shared`).
#[derive(Debug, Default)]
#[must_use = "jobs assigned to workers must be sent"]
pub(crate) struct Sends {
    dispatches: Vec<Dispatch>,
    deadline: Option<Instant>,
}

impl Sends {
    fn merge(&mut self, other: Sends) {
        self.dispatches.extend(other.dispatches);
        if let Some(d) = other.deadline {
            self.deadline = Some(self.deadline.map_or(d, |e| e.min(d)));
        }
    }

    /// Sends every job. Jobs whose worker turned out to be dead (it died
    /// while idle, before its supervisor noticed) never reached it: they go
    /// back to the queue, without counting as an attempt.
    pub(crate) fn send(self, shared: &Shared) {
        for d in self.dispatches {
            let frames: Vec<&TaskFrame> = d.frames.iter().map(|f| &**f).collect();
            let sent = d.channel.send_tasks(&frames);
            if sent.is_err() {
                drop(d.frames);
                shared.undelivered(d.seat, &d.channel, &d.jobs);
            }
        }
    }
}

/// A job a worker holds.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) ticket: Ticket,
    /// The frame, kept for a retry, or to send it again if the job never
    /// started.
    frame: Frame,
    /// Its size, counted against [`AHEAD_BYTES`].
    len: usize,
}

impl From<Job> for Running {
    /// A job that ran (part of a chunk split after its worker died), as
    /// [`Running::retry`] and the supervisor's death handling take it.
    fn from(job: Job) -> Running {
        Running {
            len: job.frame.len(),
            frame: Arc::new(job.frame),
            ticket: job.ticket,
        }
    }
}

impl Running {
    /// The job again, for another attempt, if it may have one.
    pub(crate) fn retry(self) -> Result<Job, Ticket> {
        if !self.ticket.may_retry() {
            return Err(self.ticket);
        }
        let mut job = self.unstarted();
        job.ticket.attempt += 1;
        Ok(job)
    }

    /// The job as it was: to run again without counting an attempt (it
    /// never started, or the pool killed it by mistake), or to split (see
    /// `supervisor::fail_one_item`).
    pub(crate) fn unstarted(self) -> Job {
        Job {
            frame: Arc::try_unwrap(self.frame).unwrap_or_else(|shared| (*shared).clone()),
            ticket: self.ticket,
            unsendable: None,
        }
    }
}

/// What [`Shared::finished`] tells the supervisor.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) ticket: Ticket,
    /// The worker's task budget is spent: replace it.
    pub(crate) retire: bool,
    /// The worker holds more jobs (it has started the next).
    pub(crate) busy: bool,
    /// The job it runs now was cancelled and is being killed: log it.
    pub(crate) killed: Option<Killed>,
}

impl Shared {
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
        #[cfg(feature = "redis")]
        if let Some(remote) = &self.remote {
            drop(state);
            remote.submit(job);
            return Ok(());
        }
        state.queue.push_back(job);
        let sends = self.dispatch_idle(&mut state);
        drop(state);
        sends.send(self);
        Ok(())
    }

    /// Puts jobs back at the front of the queue, in their order: one whose
    /// worker died, for another attempt, or ones that never started. Fails
    /// them if the pool stopped taking work or their call was cancelled.
    pub(crate) fn requeue(&self, jobs: impl DoubleEndedIterator<Item = Job>) {
        let mut refused = Vec::new();
        let sends = {
            let mut state = self.lock();
            for job in jobs.rev() {
                match state.admit(Admission::Continuation) {
                    Err(error) => refused.push((job, error)),
                    Ok(()) if job.ticket.call.is_cancelled() => refused.push((job, Error::Cancelled)),
                    Ok(()) => state.queue.push_front(job),
                }
            }
            self.dispatch_idle(&mut state)
        };
        sends.send(self);
        for (job, error) in refused {
            job.fail(error);
        }
    }

    /// Requeues the jobs a lost worker held but never started (or that the
    /// pool killed by mistake).
    pub(crate) fn requeue_unstarted(&self, held: VecDeque<Running>) {
        let again: Vec<Job> = held.into_iter().map(Running::unstarted).collect();
        self.requeue(again.into_iter());
    }

    /// The jobs `jobs` sent to `seat` did not reach
    /// its worker (its channel is closed: it is dead). Those the seat still
    /// holds go back to the front of the queue.
    fn undelivered(&self, seat: usize, channel: &Arc<Channel>, jobs: &[u64]) {
        let mut taken = Vec::new();
        {
            let mut state = self.lock();
            let s = &mut state.seats[seat];
            // They are the last jobs the seat holds, unless its supervisor
            // has already taken them (and reports them itself), and the seat
            // has a new worker since.
            if s.channel.as_ref().is_some_and(|c| Arc::ptr_eq(c, channel)) {
                while s.inflight.back().is_some_and(|r| jobs.contains(&r.ticket.id)) {
                    taken.push(s.inflight.pop_back().expect("checked above"));
                }
                if s.inflight.is_empty() {
                    s.deadline = None;
                }
            }
        }
        // A worker that cannot be written to is dead or broken: make sure
        // its supervisor replaces it.
        channel.cut();
        // The jobs keep their frames; no worker ran them (pid 0: none).
        self.requeue_unstarted(taken.into_iter().rev().collect());
    }

    /// Hands queued jobs to idle workers while there are both (see
    /// [`State::dispatch_idle`]), arming the timer for a deadline that
    /// starts.
    pub(super) fn dispatch_idle(&self, state: &mut State) -> Sends {
        let sends = state.dispatch_idle(&self.rules());
        self.arm(state, &sends);
        sends
    }

    /// Gives `seat` what it should hold (see [`State::refill`]), arming the
    /// timer for a deadline that starts.
    pub(super) fn refill(&self, state: &mut State, seat: usize) -> Sends {
        let sends = state.refill(&self.rules(), seat);
        self.arm(state, &sends);
        sends
    }

    fn arm(&self, state: &mut State, sends: &Sends) {
        if let Some(deadline) = sends.deadline {
            self.arm_timer(state, deadline);
        }
    }

    /// What the dispatch transitions need besides the state.
    fn rules(&self) -> Rules<'_> {
        Rules {
            processes: self.processes,
            depth: self.stats.depth(),
            job_ids: &self.next_job,
            pending: &self.pending,
        }
    }

    /// The worker of `seat` finished job `job` of `count` items, the first
    /// it holds: returns its ticket, whether the worker must now be
    /// replaced (its task budget is spent), and whether it holds more jobs
    /// (it has started the next). `Err` if that is not the job it runs (the
    /// seat keeps its jobs).
    pub(crate) fn finished(&self, seat: usize, job: u64, count: u32) -> Result<Finished, String> {
        let mut state = self.lock();
        let s = &mut state.seats[seat];
        match s.inflight.front() {
            Some(r) if r.ticket.id == job && r.ticket.meta.count == count => {}
            Some(r) => {
                return Err(format!(
                    "it answered job {job} ({count} items) while running job {} ({} items)",
                    r.ticket.id, r.ticket.meta.count
                ));
            }
            None => return Err(format!("it answered job {job} while holding none")),
        }
        let running = s.inflight.pop_front().expect("checked above");
        // Jobs sent ahead never have a deadline; the next one has none.
        s.deadline = None;
        // The job it runs now was cancelled while it waited: kill it as a
        // running job is killed.
        let killed = match s.inflight.front().is_some_and(|r| r.ticket.call.is_cancelled()) {
            true => s.doom(Doom::Cancelled),
            false => None,
        };
        // A spent worker is replaced once its last job is done; one being
        // killed (its job was done just in time) is not.
        let finished = Finished {
            ticket: running.ticket,
            retire: s.retiring && s.inflight.is_empty() && s.doom.is_none(),
            busy: !s.inflight.is_empty(),
            killed,
        };
        drop(state);
        // Freeing a large frame or its regions takes a while: not under
        // the lock, and not before the worker has its next job and the
        // caller its result.
        attach::drop_later(running.frame);
        Ok(finished)
    }

    /// The worker of `seat` sent the results of the first `count` items of
    /// job `job`, the one it runs, in a part: returns a ticket for those
    /// items, and keeps the rest running under the same id (with a frame
    /// of only the rest, should it be retried). `Err` if that is not the
    /// job it runs, or not a part of it.
    pub(crate) fn part_done(&self, seat: usize, job: u64, count: u32) -> Result<Ticket, String> {
        let head_id = self.next_job_id();
        let token = self.pending.token();
        let mut state = self.lock();
        let running = match state.seats[seat].inflight.front_mut() {
            Some(r) if r.ticket.id == job && count > 0 && count < r.ticket.meta.count => r,
            Some(r) => {
                return Err(format!(
                    "it sent a part of {count} results of job {job} while running job {} ({} items)",
                    r.ticket.id, r.ticket.meta.count
                ));
            }
            None => return Err(format!("it sent a part of job {job} while holding none")),
        };
        let (_, rest) = message::split_task(&running.frame, count, head_id, job)
            .ok_or_else(|| format!("job {job} cannot be split after {count} items"))?;
        running.len = rest.len();
        running.frame = Arc::new(running.frame.with_bytes(rest));
        Ok(running.ticket.split_head(count, head_id, token))
    }

    /// After the worker of `seat` finished jobs: sends it more, if some
    /// wait, or marks it idle.
    pub(crate) fn worker_free(&self, seat: usize) -> Sends {
        let mut state = self.lock();
        self.refill(&mut state, seat)
    }
}

/// What the dispatch transitions need besides the state: the pool's size,
/// how many jobs a worker should hold now, and where new job ids and work
/// counts come from.
pub(super) struct Rules<'a> {
    pub(super) processes: usize,
    pub(super) depth: usize,
    pub(super) job_ids: &'a AtomicU64,
    pub(super) pending: &'a Arc<Pending>,
}

/// The dispatch transitions: each changes the state and returns what to do
/// once the lock is released (the sends, and a deadline to arm). They do no
/// I/O, so they are tested step by step (`dispatch_tests.rs`).
impl State {
    /// Hands queued jobs to idle workers while there are both.
    pub(super) fn dispatch_idle(&mut self, rules: &Rules<'_>) -> Sends {
        let mut sends = Sends::default();
        while !self.queue.is_empty() {
            let Some(seat) = self.idle.pop_front() else { break };
            self.seats[seat].idle = false;
            self.fill(rules, seat, &mut sends);
        }
        sends
    }

    /// Gives `seat` queued jobs up to what it should hold, or marks it idle
    /// if it holds none.
    pub(super) fn refill(&mut self, rules: &Rules<'_>, seat: usize) -> Sends {
        let mut sends = Sends::default();
        self.fill(rules, seat, &mut sends);
        // A tail split off for this seat's budget goes to idle workers.
        let more = self.dispatch_idle(rules);
        sends.merge(more);
        let s = &mut self.seats[seat];
        if s.inflight.is_empty() && !s.idle && !s.retiring && s.doom.is_none() && s.channel.is_some() {
            s.idle = true;
            self.idle.push_back(seat);
        }
        sends
    }

    /// Assigns queued jobs to `seat` while it has room (see
    /// [`plan::takes`]), adding them to `sends` as one write.
    fn fill(&mut self, rules: &Rules<'_>, seat: usize, sends: &mut Sends) {
        let mut dispatch: Option<Dispatch> = None;
        loop {
            let s = &self.seats[seat];
            if s.channel.is_none() || s.retiring || s.doom.is_some() {
                break;
            }
            let Some(next) = self.queue.front() else { break };
            let view = plan::SeatView {
                serving: true,
                holds: s.inflight.len(),
                ahead_bytes: s.inflight.iter().skip(1).map(|r| r.len).sum(),
                running_timed: s
                    .inflight
                    .front()
                    .is_some_and(|r| r.ticket.policy.timeout.is_some()),
            };
            let next = plan::NextJob {
                frame_len: next.frame.len(),
                timed: next.ticket.policy.timeout.is_some(),
            };
            let ahead = plan::AheadRules {
                processes: rules.processes,
                depth: rules.depth,
                max_bytes: AHEAD_BYTES,
            };
            if !plan::takes(view, next, self.queue.len(), ahead) {
                break;
            }
            let job = self.queue.pop_front().expect("checked above");
            let (id, frame) = self.assign(rules, seat, job, sends);
            let d = dispatch.get_or_insert_with(|| Dispatch {
                seat,
                channel: Arc::clone(self.seats[seat].channel.as_ref().expect("checked above")),
                jobs: Vec::new(),
                frames: Vec::new(),
            });
            d.jobs.push(id);
            d.frames.push(frame);
        }
        sends.dispatches.extend(dispatch);
    }

    /// Adds `job` to the jobs of `seat` (which is serving): splits it to the
    /// worker's task budget, sets its deadline if it runs at once (to arm
    /// in `sends`), and keeps its frame to send it again if need be.
    fn assign(&mut self, rules: &Rules<'_>, seat: usize, mut job: Job, sends: &mut Sends) -> (u64, Frame) {
        if let Some(at) = plan::budget_cut(self.seats[seat].tasks_left, job.ticket.meta.count) {
            let tail_id = rules.job_ids.fetch_add(1, Ordering::Relaxed);
            let (head, tail) = job.split(at, tail_id, rules.pending.token());
            self.queue.push_front(tail);
            job = head;
        }
        let s = &mut self.seats[seat];
        debug_assert!(!s.retiring, "a spent worker takes no more jobs");
        (s.tasks_left, s.retiring) = plan::spend(s.tasks_left, job.ticket.meta.count);
        let runs_now = s.inflight.is_empty();
        let len = job.frame.len();
        // Kept, shared with the send: a job whose worker dies before it
        // starts it is sent again (and one that may be retried, too).
        let frame = Arc::new(job.frame);
        let kept = Arc::clone(&frame);
        let deadline = match runs_now {
            true => job.ticket.policy.timeout.map(|t| Instant::now() + t),
            false => None,
        };
        if runs_now {
            s.deadline = deadline;
        }
        let id = job.ticket.id;
        s.inflight.push_back(Running {
            ticket: job.ticket,
            frame: kept,
            len,
        });
        if let Some(deadline) = deadline {
            sends.deadline = Some(sends.deadline.map_or(deadline, |d| d.min(deadline)));
        }
        (id, frame)
    }
}

#[cfg(test)]
#[path = "dispatch_tests.rs"]
mod tests;
