//! Point 1 of failure isolation: per-task and pool-wide hard timeouts. A
//! task past its timeout is killed with its worker; its result is
//! `Error::TimedOut`; the worker is replaced; other tasks are untouched.
//! `get_timeout` only stops waiting.

use crate::common;

use std::time::Duration;

use procpool::{Error, Pool};

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn held(path: String) -> u32 {
    common::hold(&path)
}

/// Longer than any test runs: a task that would hang.
const HANGS: u64 = 600_000;

#[test]
fn a_task_past_its_timeout_is_killed_with_its_worker_and_replaced() {
    let pool = Pool::new(2).unwrap();
    let before = pool.worker_pids();
    let err = pool
        .with_timeout(Duration::from_millis(200))
        .apply(sleep_ms, HANGS)
        .unwrap_err();
    let Error::TimedOut { index, pid, after } = err else {
        panic!("expected TimedOut, got {err:?}");
    };
    assert_eq!((index, after), (None, Duration::from_millis(200)));
    assert!(before.contains(&pid), "pid {pid} was not a worker");
    // The killed worker is gone and a replacement took its seat.
    let after_pids = pool.worker_pids();
    assert!(!after_pids.contains(&pid));
    assert_eq!(after_pids.len(), 2);
    assert_eq!(pool.apply(sleep_ms, 1).unwrap(), 1);
    assert_eq!(pool.map(sleep_ms, [1, 2, 3]).unwrap(), [1, 2, 3]);
}

#[test]
fn other_tasks_are_untouched_by_a_timeout() {
    let pool = Pool::new(2).unwrap();
    let gate = common::Gate::new();
    // A task without a timeout keeps one worker busy the whole time.
    let bystander = pool.apply_async(held, gate.path()).unwrap();
    let held_task = gate.wait_for(1).pop().unwrap();
    let bystander_pid = held_task.pid;
    let results: Vec<_> = pool
        .with_timeout(Duration::from_millis(300))
        .imap(sleep_ms, [1, HANGS, 2, 3, HANGS, 4])
        .unwrap()
        .collect();
    for (i, r) in results.iter().enumerate() {
        match i {
            1 | 4 => assert!(
                matches!(r, Err(Error::TimedOut { index: Some(at), .. }) if *at == i),
                "item {i}: {r:?}"
            ),
            _ => assert!(r.is_ok(), "item {i}: {r:?}"),
        }
    }
    held_task.release();
    assert_eq!(bystander.get().unwrap(), bystander_pid);
    assert!(pool.worker_pids().contains(&bystander_pid));
}

#[test]
fn a_pool_wide_timeout_applies_to_every_call_and_a_call_can_override_it() {
    let pool = Pool::builder()
        .processes(1)
        .task_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    assert!(pool.apply(sleep_ms, HANGS).unwrap_err().is_timed_out());
    let err = pool.map(sleep_ms, [1, HANGS, 2]).unwrap_err();
    assert!(matches!(err, Error::TimedOut { index: Some(1), .. }), "{err:?}");
    // A longer timeout for one call.
    let slow = pool.with_timeout(Duration::from_secs(60)).apply(sleep_ms, 400);
    assert_eq!(slow.unwrap(), 400);
}

#[test]
fn the_clock_starts_when_the_task_reaches_a_worker_not_in_the_queue() {
    let pool = Pool::new(1).unwrap();
    // Many short tasks first: the pool then sends short jobs to a worker
    // ahead of time, but never a job with a timeout.
    pool.with_chunksize(1).map(sleep_ms, vec![0; 500]).unwrap();
    // Six tasks of 300 ms queue for one worker (1.8 s in all); each has
    // 1.5 s once it starts, five times what it needs.
    let done = pool
        .with_timeout(Duration::from_millis(1500))
        .map(sleep_ms, [300; 6])
        .unwrap();
    assert_eq!(done, [300; 6]);
}

#[test]
fn get_timeout_only_stops_waiting() {
    let pool = Pool::new(1).unwrap();
    let pid = pool.worker_pids()[0];
    let h = pool.apply_async(sleep_ms, 300).unwrap();
    assert!(h.get_timeout(Duration::from_millis(1)).unwrap_err().is_timeout());
    assert_eq!(h.get().unwrap(), 300);
    assert_eq!(pool.worker_pids(), [pid], "no worker was killed");
}

#[test]
fn timeouts_that_cannot_work_are_refused() {
    let pool = Pool::new(1).unwrap();
    let zero = pool.with_timeout(Duration::ZERO).apply(sleep_ms, 1).unwrap_err();
    assert!(matches!(zero, Error::InvalidArgument(_)), "{zero:?}");
    let chunked = pool
        .with_timeout(Duration::from_secs(1))
        .with_chunksize(4)
        .map(sleep_ms, [1, 2])
        .unwrap_err();
    assert!(matches!(chunked, Error::InvalidArgument(_)), "{chunked:?}");
    assert!(
        Pool::builder()
            .processes(1)
            .task_timeout(Duration::ZERO)
            .build()
            .is_err()
    );
    // A chunk size of 1 is what timeouts use anyway.
    let ok = pool
        .with_timeout(Duration::from_secs(30))
        .with_chunksize(1)
        .map(sleep_ms, [1, 2]);
    assert_eq!(ok.unwrap(), [1, 2]);
}
