//! S4: `apply_async` returns at once and the tasks run in parallel across
//! processes; `close()` stops new submissions and `join()` waits for all
//! that were submitted.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

use procpool::{Error, Pool};

fn wait_for_all(path: String) -> bool {
    common::arrive(&path)
}

#[test]
fn five_tasks_on_five_workers_run_at_the_same_time() {
    // Each task waits until all five are running: only a pool that runs
    // them in parallel can finish them (a serial one times every task out).
    let pool = Pool::new(5).unwrap();
    let barrier = common::Barrier::new(5);
    let handles: Vec<_> = (0..5)
        .map(|_| pool.apply_async(wait_for_all, barrier.path()).unwrap())
        .collect();
    pool.close();
    pool.join().unwrap();
    for h in handles {
        assert!(
            h.get().unwrap(),
            "a task gave up waiting for the others: no parallelism"
        );
    }
}

#[test]
fn apply_async_returns_before_the_task_finishes() {
    let pool = Pool::new(1).unwrap();
    let barrier = common::Barrier::new(2);
    // The task cannot finish until this thread also arrives, so
    // apply_async must return first.
    let h = pool.apply_async(wait_for_all, barrier.path()).unwrap();
    assert!(!h.ready());
    assert!(common::arrive(&barrier.path()));
    assert!(h.get().unwrap());
}

#[test]
fn close_then_join_drains_everything_submitted() {
    fn count(i: u32) -> u32 {
        i
    }
    let pool = Pool::new(2).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..200)
        .map(|i| {
            let done = Arc::clone(&done);
            pool.with_callback(move |_: &u32| {
                done.fetch_add(1, Ordering::SeqCst);
            })
            .apply_async(count, i)
            .unwrap()
        })
        .collect();
    pool.close();
    pool.join().unwrap();
    assert_eq!(
        done.load(Ordering::SeqCst),
        200,
        "join returned before every task and callback ran"
    );
    for (i, h) in handles.iter().enumerate() {
        assert!(h.ready());
        assert_eq!(h.get().unwrap(), i as u32);
    }
    assert!(pool.worker_pids().is_empty(), "workers left after join");
}

#[test]
fn submitting_after_close_is_a_clear_error() {
    let pool = Pool::new(1).unwrap();
    pool.close();
    let err = pool.apply_async(|x: u8| x, 1).unwrap_err();
    assert!(err.is_closed(), "{err:?}");
    assert!(err.to_string().contains("closed"), "{err}");
    assert!(pool.map(|x: u8| x, 0..3).unwrap_err().is_closed());
    assert!(pool.imap(|x: u8| x, 0..3).unwrap_err().is_closed());
    assert!(pool.starmap(u8::wrapping_add, [(1, 2)]).unwrap_err().is_closed());
    assert!(matches!(pool.apply(|x: u8| x, 1), Err(Error::Closed)));
    pool.join().unwrap();
}

#[test]
fn join_before_close_is_an_error_not_a_hang() {
    let pool = Pool::new(1).unwrap();
    assert!(matches!(pool.join(), Err(Error::NotClosed)));
    // The pool is unharmed.
    assert_eq!(pool.apply(|x: u8| x + 1, 1).unwrap(), 2);
}

#[test]
fn apply_async_from_many_threads_at_once() {
    let pool = Pool::new(3).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let pool = &pool;
            let tx = tx.clone();
            s.spawn(move || {
                let handles: Vec<_> = (0..50u64)
                    .map(|i| pool.apply_async(|x: u64| x * 2, t * 1000 + i).unwrap())
                    .collect();
                for (i, h) in handles.into_iter().enumerate() {
                    tx.send((t * 1000 + i as u64, h.get().unwrap())).unwrap();
                }
            });
        }
    });
    drop(tx);
    let results: Vec<(u64, u64)> = rx.iter().collect();
    assert_eq!(results.len(), 200);
    assert!(results.iter().all(|(x, y)| *y == x * 2));
}
