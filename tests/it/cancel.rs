//! Point 2 of failure isolation: `AsyncResult::cancel`. A queued task is
//! removed and resolves as cancelled; a running one is killed with its
//! worker, which is replaced.

use crate::common;

use std::sync::mpsc;
use std::time::Duration;

use procpool::{Error, Pool};

fn held(path: String) -> u32 {
    common::hold(&path)
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn a_queued_task_is_removed_without_touching_the_worker() {
    let pool = Pool::new(1).unwrap();
    let gate = common::Gate::new();
    let running = pool.apply_async(held, gate.path()).unwrap();
    let holder = gate.wait_for(1).pop().unwrap();
    let queued = pool.apply_async(sleep_ms, 1).unwrap();
    assert!(queued.cancel());
    // Resolved at once, while the worker is still busy.
    assert!(queued.get().unwrap_err().is_cancelled());
    assert!(!queued.cancel(), "a second cancel finds nothing");
    let pid = holder.pid;
    holder.release();
    assert_eq!(running.get().unwrap(), pid);
    assert_eq!(pool.worker_pids(), [pid]);
}

#[test]
fn a_running_task_is_killed_with_its_worker_which_is_replaced() {
    let pool = Pool::new(2).unwrap();
    let gate = common::Gate::new();
    let victim = pool.apply_async(held, gate.path()).unwrap();
    let bystander = pool.apply_async(held, gate.path()).unwrap();
    let mut holders = gate.wait_for(2);
    assert!(victim.cancel());
    assert!(matches!(victim.get(), Err(Error::Cancelled)));
    // One of the two held workers is gone; the other one still holds the
    // bystander, which completes normally.
    let pids = pool.worker_pids();
    assert_eq!(pids.len(), 2);
    let survivors: Vec<_> = holders
        .iter()
        .filter(|h| pids.contains(&h.pid))
        .map(|h| h.pid)
        .collect();
    assert_eq!(survivors.len(), 1, "exactly one held worker was killed");
    let survivor = holders.iter().position(|h| h.pid == survivors[0]).unwrap();
    holders.swap_remove(survivor).release();
    assert_eq!(bystander.get().unwrap(), survivors[0]);
    assert_eq!(pool.apply(sleep_ms, 2).unwrap(), 2);
}

#[test]
fn cancelling_a_finished_task_changes_nothing() {
    let pool = Pool::new(1).unwrap();
    let h = pool.apply_async(sleep_ms, 3).unwrap();
    h.wait();
    assert!(!h.cancel());
    assert_eq!(h.get().unwrap(), 3);
}

#[test]
fn cancelling_a_map_stops_every_chunk_and_calls_the_error_callback() {
    let pool = Pool::new(2).unwrap();
    let (tx, rx) = mpsc::channel();
    let all = pool
        .with_chunksize(1)
        .with_error_callback(move |e: &Error| tx.send(e.clone()).unwrap())
        .map_async(sleep_ms, vec![600_000; 50])
        .unwrap();
    assert!(all.cancel());
    assert!(all.get().unwrap_err().is_cancelled());
    let reported = rx.recv_timeout(common::HANG).unwrap();
    assert!(reported.is_cancelled(), "{reported:?}");
    // Both busy workers were replaced; the pool serves at once.
    assert_eq!(pool.worker_pids().len(), 2);
    assert_eq!(pool.map(sleep_ms, [1, 2, 3]).unwrap(), [1, 2, 3]);
    pool.close();
    pool.join().unwrap();
}

#[test]
fn cancelling_after_the_pool_is_gone_does_nothing() {
    let pool = Pool::new(1).unwrap();
    let h = pool.apply_async(sleep_ms, 600_000).unwrap();
    drop(pool);
    assert!(!h.cancel());
    assert!(h.get().unwrap_err().is_terminated());
}

fn always_die(_: u8) -> u8 {
    std::process::exit(7)
}

#[test]
fn a_task_cancelled_between_retries_is_not_run_again() {
    let pool = Pool::new(2).unwrap();
    for i in 0..30 {
        // Its worker dies again and again; the cancel lands in any phase:
        // running, waiting for a replacement, or queued again.
        let h = pool.with_retries(1_000_000).apply_async(always_die, 0).unwrap();
        std::thread::sleep(Duration::from_millis(5 + i % 7));
        assert!(h.cancel(), "round {i}");
        let r = h.get();
        assert!(matches!(r, Err(Error::Cancelled)), "round {i}: {r:?}");
    }
    assert_eq!(pool.apply(sleep_ms, 1).unwrap(), 1);
}

fn nap_us(us: u64) -> u64 {
    std::thread::sleep(Duration::from_micros(us));
    us
}

#[test]
fn tasks_sent_ahead_to_a_busy_worker_resolve_cancelled() {
    let pool = Pool::new(1).unwrap();
    // Short tasks: the worker gets several at a time.
    pool.with_chunksize(1).map(nap_us, vec![1; 300]).unwrap();
    let handles: Vec<_> = (0..50).map(|_| pool.apply_async(nap_us, 200).unwrap()).collect();
    let cancelled: Vec<bool> = handles.iter().map(procpool::AsyncResult::cancel).collect();
    for (h, was) in handles.iter().zip(cancelled) {
        match h.get() {
            Err(Error::Cancelled) => assert!(was),
            Ok(v) => assert_eq!(v, 200, "a task that finished before its cancel keeps its value"),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(pool.apply(sleep_ms, 1).unwrap(), 1);
}
