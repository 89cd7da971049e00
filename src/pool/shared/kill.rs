//! Killing workers on purpose: the timer thread that enforces task
//! deadlines, and cancelling a call. Both mark the seat with a [`Doom`]
//! before they kill, so that its supervisor reports what happened.
//!
//! The timer thread is the only one that enforces deadlines: the user code
//! it runs (the `tracing` subscriber) is shielded, and should anything
//! still panic, it starts its loop over rather than end.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::{Running, Seat, Shared, State};
use crate::error::Error;
use crate::pool::job::Job;
use crate::pool::policy::Doom;
use crate::result::callbacks::CallToken;
use crate::sys;
use crate::task::panics::shielded;

impl Seat {
    /// Kills the worker on purpose, for the job it is running (if any).
    /// Returns what to log once the state lock is released (a subscriber
    /// may call into the pool).
    pub(super) fn doom(&mut self, doom: Doom) -> Option<Killed> {
        match (self.pid, self.inflight.front(), self.doom) {
            (Some(pid), Some(running), None) => {
                let target = running.ticket.id;
                self.doom = Some((doom, target));
                self.deadline = None;
                sys::process::kill(pid);
                Some(Killed { pid, doom })
            }
            _ => None,
        }
    }
}

/// A worker the pool killed on purpose, to be logged.
#[derive(Debug)]
pub(crate) struct Killed {
    pid: u32,
    doom: Doom,
}

impl Killed {
    /// Emits the `tracing` event (never under the state lock; the
    /// subscriber is shielded user code).
    pub(crate) fn log(&self) {
        let pid = self.pid;
        shielded(|| match self.doom {
            Doom::TimedOut(after) => {
                tracing::warn!(pid, ?after, "procpool task timed out; killing its worker")
            }
            Doom::Cancelled => tracing::info!(pid, "procpool task cancelled; killing its worker"),
        });
    }
}

impl Shared {
    /// Makes sure the timer thread wakes by `deadline`.
    pub(super) fn arm_timer(&self, state: &mut State, deadline: Instant) {
        if !state.timer_started {
            let Some(me) = self.me.upgrade() else { return };
            let spawned = std::thread::Builder::new()
                .name("procpool-timer".into())
                .spawn(move || me.keep_timer());
            match spawned {
                Ok(handle) => {
                    state.timer_started = true;
                    self.add_thread(handle);
                }
                // Without a timer the deadline cannot be kept; the next
                // task with a timeout tries again.
                Err(_) => return,
            }
        }
        if state.timer_wakes_at.is_none_or(|at| deadline < at) {
            self.timer_wake.notify_one();
        }
    }

    /// The timer thread: runs the timer until the pool stops, starting it
    /// over if it panics.
    fn keep_timer(&self) {
        while shielded(|| self.run_timer()).is_none() {}
    }

    /// Kills the worker of every job still running at its deadline, until
    /// the pool stops.
    fn run_timer(&self) {
        let mut state = self.lock();
        while state.lifecycle.replaces_workers() {
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            let mut killed = Vec::new();
            for seat in &mut state.seats {
                match seat.deadline {
                    Some(at) if at <= now => {
                        let after = seat.inflight.front().and_then(|r| r.ticket.policy.timeout);
                        seat.deadline = None;
                        if let Some(after) = after {
                            killed.extend(seat.doom(Doom::TimedOut(after)));
                        }
                    }
                    Some(at) => next = Some(next.map_or(at, |n| n.min(at))),
                    None => {}
                }
            }
            state.timer_wakes_at = next;
            if !killed.is_empty() {
                drop(state);
                killed.iter().for_each(Killed::log);
                state = self.lock();
                continue;
            }
            state = match next {
                None => self.timer_wake.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(at) => {
                    let left = at.saturating_duration_since(now);
                    let woken = self.timer_wake.wait_timeout(state, left);
                    woken.unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
    }

    /// Cancels every job of the call `token` belongs to: queued ones fail
    /// with [`Error::Cancelled`], running ones are killed with their
    /// workers, and ones sent ahead to a worker running another call's job
    /// are killed when they start (see `finished`). Returns whether there
    /// was anything to cancel.
    pub(crate) fn cancel(&self, token: &Arc<CallToken>) -> bool {
        token.cancel();
        #[cfg(feature = "redis")]
        if let Some(remote) = &self.remote {
            return remote.cancel(token);
        }
        let (dropped, killed) = {
            let mut state = self.lock();
            let (dropped, kept): (VecDeque<Job>, VecDeque<Job>) = std::mem::take(&mut state.queue)
                .into_iter()
                .partition(|job| Arc::ptr_eq(&job.ticket.call, token));
            state.queue = kept;
            let mut killed = Vec::new();
            let mut waiting = false;
            for seat in &mut state.seats {
                let ours = |r: &Running| Arc::ptr_eq(&r.ticket.call, token);
                if seat.inflight.front().is_some_and(ours) {
                    killed.extend(seat.doom(Doom::Cancelled));
                } else if seat.inflight.iter().any(ours) {
                    waiting = true;
                }
            }
            (dropped, (killed, waiting))
        };
        let (killed, waiting) = killed;
        killed.iter().for_each(Killed::log);
        let found = waiting || !killed.is_empty() || !dropped.is_empty();
        for job in dropped {
            job.fail(Error::Cancelled);
        }
        found
    }
}

impl crate::result::slot::CancelCall for Shared {
    fn cancel(&self, token: &Arc<CallToken>) -> bool {
        Shared::cancel(self, token)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::super::{Options, Shared};
    use crate::error::Error;
    use crate::pool::job::Encoder;
    use crate::pool::policy::{TaskPolicy, WorkerLimits};
    use crate::result::sink::{OneShot, Sink};
    use crate::result::slot::{AsyncResult, Canceller, Resolver};
    use crate::task::Unary;
    use crate::worker::handle::StartConfig;

    fn echo(x: u8) -> u8 {
        x
    }

    /// A task between two attempts (its worker just died) is in no queue
    /// and no seat, so a cancel finds nothing to do; the supervisor holding
    /// the task sees the call cancelled and fails it, and may do so before
    /// the cancel looks at the result. The cancel still cancelled it.
    #[test]
    fn a_cancel_that_races_the_supervisor_between_attempts_reports_the_cancel() {
        let options = Options {
            start: StartConfig::new(Duration::from_secs(1)).unwrap(),
            policy: TaskPolicy::default(),
            limits: WorkerLimits::default(),
            init: None,
            #[cfg(feature = "redis")]
            remote: None,
        };
        let shared = Shared::new(1, options).unwrap();
        let encoder = Encoder::new::<Unary<u8, u8>>(&shared, echo, TaskPolicy::default()).unwrap();
        let (slot, resolver) =
            Resolver::<u8>::new(None, &shared.callback_sender(), || shared.pending.token());
        let sink: Arc<dyn Sink> = OneShot::new(resolver);
        // The task, in the hands of a supervisor between attempts.
        let job = encoder
            .chunk(&shared, &mut std::iter::once(1), 1, 0, &sink)
            .unwrap();
        let result = AsyncResult::new(slot, Some(Canceller::new(&shared, encoder.token())));
        let state = shared.lock();
        std::thread::scope(|s| {
            let cancelling = s.spawn(|| result.cancel());
            // The cancel has marked the call and waits for the pool's lock.
            let deadline = Instant::now() + Duration::from_secs(60);
            while !encoder.token().is_cancelled() {
                assert!(Instant::now() < deadline, "the cancel never marked the call");
                std::thread::yield_now();
            }
            // The supervisor sees the mark: the task is not run again.
            job.fail(Error::Cancelled);
            drop(state);
            assert!(
                cancelling.join().unwrap(),
                "the cancel reported nothing cancelled"
            );
        });
        assert!(result.get().unwrap_err().is_cancelled());
    }
}
