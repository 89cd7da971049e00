//! Dispatch, step by step and deterministically: a pool's shared state with
//! seats whose "workers" are the far ends of socket pairs, so each test
//! sees exactly which frames each worker was sent, with no process and no
//! timing involved.

use std::io::ErrorKind;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use super::super::{Options, Shared};
use crate::error::Error;
use crate::pool::job::{Encoder, Job};
use crate::pool::policy::{TaskPolicy, WorkerLimits};
use crate::protocol::frame::{self, DEFAULT_MAX_BODY, ReadError};
use crate::protocol::message::{Timing, ToWorker};
use crate::result::sink::{Collect, OneShot, Sink};
use crate::result::slot::{AsyncResult, Canceller, Resolver};
use crate::task::Unary;
use crate::worker::handle::{Channel, StartConfig};

fn echo(x: u32) -> u32 {
    x
}

/// A pool of `processes` seats, each with a "worker" at the far end of a
/// socket pair, up and idle in seat order.
struct Rig {
    shared: Arc<Shared>,
    workers: Vec<UnixStream>,
}

impl Rig {
    fn new(processes: usize, limits: WorkerLimits) -> Rig {
        let options = Options {
            start: StartConfig::new(Duration::from_secs(1)).unwrap(),
            policy: TaskPolicy::default(),
            limits,
            init: None,
            #[cfg(feature = "redis")]
            remote: None,
        };
        let shared = Shared::new(processes, options).unwrap();
        let mut workers = Vec::new();
        for seat in 0..processes {
            let (ours, theirs) = UnixStream::pair().unwrap();
            theirs.set_nonblocking(true).unwrap();
            // No pid: nothing here is a process the pool could kill.
            shared.lock().seats[seat].channel = Some(Arc::new(Channel::new(ours)));
            shared.worker_ready(seat).unwrap().send(&shared);
            workers.push(theirs);
        }
        Rig { shared, workers }
    }

    /// A call's encoder, with `policy`.
    fn call(&self, policy: TaskPolicy) -> Encoder {
        Encoder::new::<Unary<u32, u32>>(&self.shared, echo, policy).unwrap()
    }

    /// A job of `count` items of the call `encoder`, whose results go
    /// nowhere.
    fn job(&self, encoder: &Encoder, count: usize) -> Job {
        let (_slot, resolver) = Resolver::<Vec<u32>>::new(None, &self.shared.callback_sender(), || {
            self.shared.pending.token()
        });
        let sink: Arc<dyn Sink> = Collect::new(resolver, None);
        encoder
            .chunk(&self.shared, &mut (0..count as u32), count, 0, &sink)
            .unwrap()
    }

    /// Submits a job and returns its id.
    fn submit(&self, job: Job) -> u64 {
        let id = job.ticket.id;
        self.shared
            .submit(job, super::super::Admission::New)
            .map_err(|r| r.error)
            .unwrap();
        id
    }

    /// The jobs (id, item count) sent to the worker of `seat` since the
    /// last look.
    fn sent_to(&mut self, seat: usize) -> Vec<(u64, u32)> {
        let mut sent = Vec::new();
        let mut body = Vec::new();
        loop {
            match frame::read_frame(&mut self.workers[seat], &mut body, DEFAULT_MAX_BODY) {
                Ok(kind) => match ToWorker::decode(kind, &body).unwrap() {
                    ToWorker::Task { job, count, .. } => sent.push((job, count)),
                    other => panic!("expected a task, got {other:?}"),
                },
                Err(ReadError::Io(e)) if e.kind() == ErrorKind::WouldBlock => return sent,
                Err(e) => panic!("reading what seat {seat} was sent: {e:?}"),
            }
        }
    }

    /// The worker of `seat` finished `job` of `count` items; the pool
    /// gives it what it should hold next.
    fn finish(&self, seat: usize, job: u64, count: u32) -> super::Finished {
        let finished = self.shared.finished(seat, job, count).unwrap();
        self.shared.worker_free(seat).send(&self.shared);
        finished
    }

    /// Tells the pool that jobs run quickly, so that it sends ahead.
    fn jobs_are_quick(&self) {
        let timing = Timing {
            run_ns: 1_000,
            ..Timing::default()
        };
        self.shared.stats.chunk_done(0, 1, 0, 1, timing);
    }
}

#[test]
fn jobs_go_to_idle_workers_in_turn_and_then_wait_in_the_queue() {
    let mut rig = Rig::new(2, WorkerLimits::default());
    let call = rig.call(TaskPolicy::default());
    let a = rig.submit(rig.job(&call, 1));
    let b = rig.submit(rig.job(&call, 1));
    let c = rig.submit(rig.job(&call, 1));
    assert_eq!(rig.sent_to(0), [(a, 1)]);
    assert_eq!(rig.sent_to(1), [(b, 1)]);
    // Until a job has finished, nothing is sent ahead: `c` waits.
    let finished = rig.finish(0, a, 1);
    assert!(!finished.retire && !finished.busy);
    assert_eq!(rig.sent_to(0), [(c, 1)]);
    assert_eq!(rig.sent_to(1), []);
}

#[test]
fn quick_jobs_are_sent_ahead_but_no_more_than_a_fair_share_of_the_queue() {
    let mut rig = Rig::new(2, WorkerLimits::default());
    let call = rig.call(TaskPolicy::default());
    let ids: Vec<u64> = (0..6).map(|_| rig.submit(rig.job(&call, 1))).collect();
    assert_eq!(rig.sent_to(0), [(ids[0], 1)]);
    assert_eq!(rig.sent_to(1), [(ids[1], 1)]);
    rig.jobs_are_quick();
    // Four wait. Seat 0 takes the next, then one ahead: it then holds 2,
    // and a queue of 2 left for 2 workers is no more than theirs.
    rig.finish(0, ids[0], 1);
    assert_eq!(rig.sent_to(0), [(ids[2], 1), (ids[3], 1)]);
    // Seat 1 takes one; the last waits for whichever worker frees up.
    rig.finish(1, ids[1], 1);
    assert_eq!(rig.sent_to(1), [(ids[4], 1)]);
    // Seat 0 still holds the job sent ahead: busy after the first, and it
    // takes the last job only once it is free.
    assert!(rig.finish(0, ids[2], 1).busy);
    assert_eq!(rig.sent_to(0), []);
    assert!(!rig.finish(0, ids[3], 1).busy);
    assert_eq!(rig.sent_to(0), [(ids[5], 1)]);
}

#[test]
fn jobs_with_a_timeout_are_never_sent_ahead() {
    let mut rig = Rig::new(2, WorkerLimits::default());
    let timed = TaskPolicy {
        timeout: Some(Duration::from_secs(3600)),
        ..TaskPolicy::default()
    };
    let call = rig.call(timed);
    let ids: Vec<u64> = (0..6).map(|_| rig.submit(rig.job(&call, 1))).collect();
    rig.jobs_are_quick();
    rig.sent_to(0);
    rig.sent_to(1);
    rig.finish(0, ids[0], 1);
    assert_eq!(rig.sent_to(0), [(ids[2], 1)], "one at a time");
}

#[test]
fn a_chunk_is_cut_to_the_workers_task_budget_and_the_spent_worker_retires() {
    let limits = WorkerLimits {
        max_tasks: Some(3),
        ..WorkerLimits::default()
    };
    let mut rig = Rig::new(1, limits);
    let call = rig.call(TaskPolicy::default());
    let id = rig.submit(rig.job(&call, 5));
    assert_eq!(rig.sent_to(0), [(id, 3)], "the first 3 items only");
    let finished = rig.shared.finished(0, id, 3).unwrap();
    assert!(finished.retire, "3 tasks: the worker is spent");
    // The other 2 items wait, as a job of their own, for a fresh worker.
    assert_eq!(
        rig.shared
            .lock()
            .queue
            .iter()
            .map(|j| j.ticket.meta.count)
            .collect::<Vec<_>>(),
        [2]
    );
}

#[test]
fn a_part_of_the_results_trims_the_running_job() {
    let mut rig = Rig::new(1, WorkerLimits::default());
    let call = rig.call(TaskPolicy::default());
    let id = rig.submit(rig.job(&call, 4));
    assert_eq!(rig.sent_to(0), [(id, 4)]);
    let head = rig.shared.part_done(0, id, 3).unwrap();
    assert_eq!((head.meta.first, head.meta.count), (0, 3));
    drop(head);
    // The job still runs, with its last item; a retry would send only it.
    {
        let state = rig.shared.lock();
        let running = state.seats[0].inflight.front().unwrap();
        assert_eq!(
            (
                running.ticket.id,
                running.ticket.meta.first,
                running.ticket.meta.count
            ),
            (id, 3, 1)
        );
    }
    assert!(
        rig.shared.part_done(0, id, 1).is_err(),
        "a part must leave the last result"
    );
    assert!(rig.shared.part_done(0, id + 1, 1).is_err(), "another job");
    assert!(rig.shared.finished(0, id, 1).is_ok());
}

#[test]
fn a_cancel_drops_the_calls_queued_jobs_and_leaves_other_calls_alone() {
    let rig = Rig::new(1, WorkerLimits::default());
    let busy = rig.call(TaskPolicy::default());
    rig.submit(rig.job(&busy, 1));
    let one = |encoder: &Encoder| {
        let (slot, resolver) =
            Resolver::<u32>::new(None, &rig.shared.callback_sender(), || rig.shared.pending.token());
        let sink: Arc<dyn Sink> = OneShot::new(resolver);
        let job = encoder
            .chunk(&rig.shared, &mut std::iter::once(7), 1, 0, &sink)
            .unwrap();
        rig.submit(job);
        AsyncResult::new(slot, Some(Canceller::new(&rig.shared, encoder.token())))
    };
    let doomed_call = rig.call(TaskPolicy::default());
    let doomed = one(&doomed_call);
    let kept_call = rig.call(TaskPolicy::default());
    let kept = one(&kept_call);
    assert!(doomed.cancel());
    assert!(matches!(doomed.get(), Err(Error::Cancelled)));
    assert!(!kept.ready(), "another call's job still waits");
    assert_eq!(rig.shared.lock().queue.len(), 1);
}

#[test]
fn a_job_whose_worker_died_runs_again_within_its_retries() {
    let mut rig = Rig::new(1, WorkerLimits::default());
    let once_more = TaskPolicy {
        retries: 1,
        ..TaskPolicy::default()
    };
    let call = rig.call(once_more);
    let id = rig.submit(rig.job(&call, 1));
    assert_eq!(rig.sent_to(0), [(id, 1)]);
    let lost = rig.shared.seat_lost(0);
    let running = lost.held.into_iter().next().unwrap();
    let again = running.retry().expect("a second attempt");
    assert_eq!(again.ticket.attempt, 2);
    // The second attempt dies too: no third.
    let (ours, _worker) = UnixStream::pair().unwrap();
    rig.shared.lock().seats[0].channel = Some(Arc::new(Channel::new(ours)));
    rig.shared.worker_ready(0).unwrap().send(&rig.shared);
    rig.submit(again);
    let running = rig.shared.seat_lost(0).held.into_iter().next().unwrap();
    assert!(running.retry().is_err(), "retries spent");
}

#[test]
fn a_transition_returns_the_deadline_it_started_instead_of_arming_it() {
    let mut rig = Rig::new(1, WorkerLimits::default());
    let timed = TaskPolicy {
        timeout: Some(Duration::from_secs(3600)),
        ..TaskPolicy::default()
    };
    let call = rig.call(timed);
    let job = rig.job(&call, 1);
    let id = job.ticket.id;
    let sends = {
        let mut state = rig.shared.lock();
        state.queue.push_back(job);
        let sends = state.dispatch_idle(&rig.shared.rules());
        assert!(
            sends.deadline.is_some(),
            "the job runs at once: its deadline starts"
        );
        assert!(!state.timer_started, "arming the timer is the caller's to do");
        sends
    };
    assert_eq!(rig.sent_to(0), [], "a transition sends nothing itself");
    sends.send(&rig.shared);
    assert_eq!(rig.sent_to(0), [(id, 1)]);
}
