//! The dispatch decisions as pure functions of plain numbers: what a seat
//! may take, where a chunk is cut for a worker's task budget, when a worker
//! retires, whether a failed job runs again. `dispatch` applies them to the
//! pool's state under its lock and turns them into sends; here they are
//! tested on their own, deterministically, with no process and no thread.

/// What dispatch knows of one seat when it considers giving it the job at
/// the head of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeatView {
    /// It has a worker that takes jobs (started, not retiring, not being
    /// killed).
    pub(crate) serving: bool,
    /// Jobs it holds: the running one first, then those sent ahead.
    pub(crate) holds: usize,
    /// Bytes of the frames sent ahead (not counting the running job).
    pub(crate) ahead_bytes: usize,
    /// The running job has a timeout.
    pub(crate) running_timed: bool,
}

/// What dispatch knows of the job at the head of the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NextJob {
    pub(crate) frame_len: usize,
    pub(crate) timed: bool,
}

/// The limits of sending ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AheadRules {
    /// Workers in the pool.
    pub(crate) processes: usize,
    /// How many jobs a worker should hold, from how long jobs take
    /// (`Stats::depth`).
    pub(crate) depth: usize,
    /// The most bytes of frames ahead of the running job.
    pub(crate) max_bytes: usize,
}

/// Whether the seat takes the job at the head of a queue of `queued` jobs.
///
/// An idle seat takes any job. A busy one takes it as a job *sent ahead*
/// only if: it holds fewer than `depth` jobs; the queue keeps every other
/// worker busy too, and this seat holds no more than a fair share of it (a
/// job sent ahead cannot move to a worker that frees up); neither job has a
/// timeout (a deadline starts when its job does); and the frames ahead stay
/// under `max_bytes`.
pub(crate) fn takes(seat: SeatView, next: NextJob, queued: usize, rules: AheadRules) -> bool {
    if !seat.serving || queued == 0 {
        return false;
    }
    if seat.holds == 0 {
        return true;
    }
    seat.holds < rules.depth
        && queued > rules.processes
        && seat.holds <= queued / rules.processes
        && !seat.running_timed
        && !next.timed
        && seat.ahead_bytes + next.frame_len <= rules.max_bytes
}

/// Where a chunk of `count` items is cut for a worker that may run only
/// `tasks_left` more tasks (`max_tasks_per_child`): `Some(at)`, the worker
/// taking the first `at` items and the rest going back to the queue, or
/// `None` when the whole chunk fits.
pub(crate) fn budget_cut(tasks_left: Option<u64>, count: u32) -> Option<u32> {
    let left = tasks_left?;
    (u64::from(count) > left).then(|| u32::try_from(left).expect("less than a chunk's count"))
}

/// A worker's task budget after it takes `count` tasks, and whether it is
/// then spent (the worker retires once its jobs are done).
pub(crate) fn spend(tasks_left: Option<u64>, count: u32) -> (Option<u64>, bool) {
    match tasks_left {
        None => (None, false),
        Some(left) => {
            let left = left.saturating_sub(u64::from(count));
            (Some(left), left == 0)
        }
    }
}

/// Whether a job whose worker died during its `attempt`-th run goes again:
/// while attempts stay within `retries + 1` and its call is not cancelled.
pub(crate) fn runs_again(attempt: u32, retries: u32, cancelled: bool) -> bool {
    attempt <= retries && !cancelled
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: AheadRules = AheadRules {
        processes: 2,
        depth: 3,
        max_bytes: 1000,
    };
    const IDLE: SeatView = SeatView {
        serving: true,
        holds: 0,
        ahead_bytes: 0,
        running_timed: false,
    };
    const SMALL: NextJob = NextJob {
        frame_len: 100,
        timed: false,
    };

    #[test]
    fn an_idle_seat_takes_any_job_and_a_seat_without_a_worker_none() {
        assert!(takes(
            IDLE,
            NextJob {
                frame_len: 1 << 30,
                timed: true
            },
            1,
            RULES
        ));
        assert!(!takes(
            SeatView {
                serving: false,
                ..IDLE
            },
            SMALL,
            10,
            RULES
        ));
        assert!(!takes(IDLE, SMALL, 0, RULES), "nothing queued");
    }

    #[test]
    fn a_busy_seat_is_sent_ahead_only_its_fair_share_of_a_long_queue() {
        let busy = SeatView { holds: 1, ..IDLE };
        // Two workers: a queue of 2 would leave the other worker idle.
        assert!(!takes(busy, SMALL, 2, RULES));
        assert!(takes(busy, SMALL, 3, RULES));
        // Holding 2 of a queue of 3 is more than half.
        assert!(!takes(SeatView { holds: 2, ..busy }, SMALL, 3, RULES));
        assert!(takes(SeatView { holds: 2, ..busy }, SMALL, 4, RULES));
        // Never deeper than `depth`.
        assert!(!takes(SeatView { holds: 3, ..busy }, SMALL, 100, RULES));
    }

    #[test]
    fn timed_jobs_are_never_sent_ahead_or_queued_behind() {
        let busy = SeatView { holds: 1, ..IDLE };
        assert!(!takes(busy, NextJob { timed: true, ..SMALL }, 10, RULES));
        assert!(!takes(
            SeatView {
                running_timed: true,
                ..busy
            },
            SMALL,
            10,
            RULES
        ));
    }

    #[test]
    fn frames_ahead_stay_under_the_byte_limit() {
        let busy = SeatView {
            holds: 1,
            ahead_bytes: 900,
            ..IDLE
        };
        assert!(takes(busy, SMALL, 10, RULES));
        assert!(!takes(
            busy,
            NextJob {
                frame_len: 101,
                ..SMALL
            },
            10,
            RULES
        ));
    }

    #[test]
    fn chunks_are_cut_to_the_task_budget_and_the_worker_retires_when_it_is_spent() {
        assert_eq!(budget_cut(None, 50), None);
        assert_eq!(budget_cut(Some(50), 50), None);
        assert_eq!(budget_cut(Some(3), 50), Some(3));
        assert_eq!(spend(None, 7), (None, false));
        assert_eq!(spend(Some(10), 7), (Some(3), false));
        assert_eq!(spend(Some(3), 3), (Some(0), true));
    }

    #[test]
    fn a_job_runs_again_within_its_retries_unless_cancelled() {
        assert!(!runs_again(1, 0, false), "no retries: the first death is final");
        assert!(runs_again(1, 2, false));
        assert!(runs_again(2, 2, false));
        assert!(!runs_again(3, 2, false));
        assert!(!runs_again(1, 2, true));
    }
}
