//! Lifecycle: `close`, `join`, `terminate` and drop. Nothing hangs, no
//! result is left waiting forever, no worker is left running or unreaped.

use crate::common;

use std::time::{Duration, Instant};

use common::Proc;
use procpool::{Error, Pool};

fn held(path: String) -> u32 {
    common::hold(&path)
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn workers(pool: &Pool) -> Vec<Proc> {
    pool.worker_pids().into_iter().map(Proc::new).collect()
}

fn assert_reaped(procs: &[Proc]) {
    for p in procs {
        assert!(
            p.is_gone(),
            "worker {} left behind (zombie: {})",
            p.pid,
            p.is_zombie()
        );
    }
}

#[test]
fn terminate_is_prompt_with_thousands_of_long_tasks_pending() {
    let pool = Pool::new(3).unwrap();
    let procs = workers(&pool);
    let gate = common::Gate::new();
    // Three tasks running (held), thousands queued behind them.
    let running: Vec<_> = (0..3)
        .map(|_| pool.apply_async(held, gate.path()).unwrap())
        .collect();
    let _held = gate.wait_for(3);
    let queued = pool
        .with_chunksize(1)
        .map_async(sleep_ms, vec![60_000; 10_000])
        .unwrap();
    let started = Instant::now();
    pool.terminate();
    let took = started.elapsed();
    assert!(took < common::HANG, "terminate took {took:?}");
    for h in &running {
        assert!(h.get().unwrap_err().is_terminated());
    }
    assert!(queued.get().unwrap_err().is_terminated());
    for p in &procs {
        assert!(p.is_gone(), "worker {} survived terminate", p.pid);
    }
    assert!(pool.worker_pids().is_empty());
    // join after terminate is fine; new work is refused.
    pool.join().unwrap();
    assert!(pool.apply(|x: u8| x, 1).unwrap_err().is_terminated());
}

#[test]
fn terminate_resolves_every_outstanding_result_and_error_callback() {
    let pool = Pool::new(1).unwrap();
    let gate = common::Gate::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let first = pool.apply_async(held, gate.path()).unwrap();
    let _held = gate.wait_for(1);
    let queued: Vec<_> = (0..50)
        .map(|_| {
            let tx = tx.clone();
            pool.with_error_callback(move |e: &Error| tx.send(e.is_terminated()).unwrap())
                .apply_async(sleep_ms, 1)
                .unwrap()
        })
        .collect();
    pool.terminate();
    assert!(first.get().unwrap_err().is_terminated());
    for h in &queued {
        assert!(h.get_timeout(common::HANG).unwrap_err().is_terminated());
    }
    drop(tx);
    let calls: Vec<bool> = rx.iter().collect();
    assert_eq!(calls.len(), 50, "every queued task's error callback runs once");
    assert!(calls.iter().all(|t| *t));
}

#[test]
fn dropping_a_pool_kills_and_reaps_its_workers() {
    let gate = common::Gate::new();
    let (procs, pending, _still_held) = {
        let pool = Pool::new(3).unwrap();
        let h = pool.apply_async(held, gate.path()).unwrap();
        let still_held = gate.wait_for(1);
        (workers(&pool), h, still_held)
        // The pool is dropped here, its task still held at the gate.
    };
    assert_reaped(&procs);
    assert!(pending.get().unwrap_err().is_terminated());
}

#[test]
fn join_reaps_every_worker() {
    let pool = Pool::new(3).unwrap();
    let procs = workers(&pool);
    assert_eq!(pool.map(|x: u32| x, 0..100).unwrap().len(), 100);
    pool.close();
    pool.join().unwrap();
    assert_reaped(&procs);
    assert!(pool.worker_pids().is_empty());
    // Joining twice is harmless.
    pool.join().unwrap();
}

#[test]
fn replaced_workers_are_reaped_too() {
    let pool = Pool::new(2).unwrap();
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.extend(workers(&pool));
        let err = pool
            .apply(|_: ()| -> u8 { std::process::exit(3) }, ())
            .unwrap_err();
        assert!(err.is_worker_died());
    }
    seen.extend(workers(&pool));
    drop(pool);
    assert_reaped(&seen);
}

#[test]
fn close_lets_calls_in_progress_finish() {
    let pool = Pool::new(2).unwrap();
    let gate = common::Gate::new();
    let blocker = pool.apply_async(held, gate.path()).unwrap();
    let mut held_tasks = gate.wait_for(1);
    // A map whose chunks are still being queued when close() comes.
    let all = pool.with_chunksize(1).map_async(|x: u32| x + 1, 0..500).unwrap();
    let lazy = pool.imap(|x: u32| x * 2, 0..50).unwrap();
    pool.close();
    held_tasks.pop().unwrap().release();
    assert!(blocker.get().unwrap() > 0);
    assert_eq!(all.get().unwrap(), (1..=500).collect::<Vec<_>>());
    let doubled: Vec<u32> = lazy.map(Result::unwrap).collect();
    assert_eq!(doubled, (0..50).map(|x| x * 2).collect::<Vec<_>>());
    pool.join().unwrap();
}

#[test]
fn an_imap_after_join_reports_its_unread_input() {
    let pool = Pool::new(1).unwrap();
    let lazy = pool.imap(|x: u64| x, 0u64..).unwrap(); // endless input
    pool.close();
    pool.join().unwrap();
    // What was submitted before join finished; then the rest is refused,
    // item by item, never a hang.
    let mut ok = 0;
    let mut first_error = None;
    for r in lazy.take(100) {
        match r {
            Ok(_) => ok += 1,
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    assert!(ok <= 4, "{ok} items ran after join");
    assert!(matches!(first_error, Some(Error::Closed)), "{first_error:?}");
}

#[test]
fn a_pool_is_usable_from_many_threads_and_terminable_from_another() {
    let pool = std::sync::Arc::new(Pool::new(2).unwrap());
    let gate = common::Gate::new();
    let path = gate.path();
    let users: Vec<_> = (0..3)
        .map(|_| {
            let pool = std::sync::Arc::clone(&pool);
            let path = path.clone();
            std::thread::spawn(move || pool.apply(held, path))
        })
        .collect();
    let _running = gate.wait_for(2);
    pool.terminate();
    for user in users {
        let result = user.join().unwrap();
        assert!(result.unwrap_err().is_terminated());
    }
}

#[test]
fn terminate_right_after_a_death_leaves_no_stale_pid() {
    for _ in 0..10 {
        let pool = Pool::new(2).unwrap();
        let err = pool
            .apply(|_: ()| -> u8 { std::process::exit(9) }, ())
            .unwrap_err();
        assert!(err.is_worker_died());
        // A replacement is starting now; terminate cuts its handshake.
        pool.terminate();
        assert_eq!(pool.worker_pids(), Vec::<u32>::new());
    }
}

#[test]
fn join_while_an_imap_is_consumed_never_strands_work() {
    for round in 0..30 {
        let pool = std::sync::Arc::new(Pool::new(2).unwrap());
        let lazy = pool.with_chunksize(1).imap(|x: u32| x, 0..200).unwrap();
        pool.close();
        let joiner = {
            let pool = std::sync::Arc::clone(&pool);
            std::thread::spawn(move || pool.join())
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let outcomes: Vec<_> = lazy.collect();
            let _ = tx.send(outcomes);
        });
        let outcomes = rx
            .recv_timeout(common::HANG)
            .unwrap_or_else(|_| panic!("round {round}: imap hung"));
        assert_eq!(outcomes.len(), 200);
        for r in &outcomes {
            // Items run, or are refused once the pool joins; never lost.
            assert!(matches!(r, Ok(_) | Err(Error::Closed)), "round {round}: {r:?}");
        }
        joiner.join().unwrap().unwrap();
    }
}

#[test]
fn a_map_accepted_before_close_runs_to_the_end_even_during_join() {
    // map_async reads its input in the calling thread; close() and join()
    // come while it is still reading. Everything it accepted must run.
    let pool = std::sync::Arc::new(Pool::new(2).unwrap());
    let (items, source) = std::sync::mpsc::channel::<u32>();
    let (read_tx, read) = std::sync::mpsc::channel::<u32>();
    let mapper = {
        let pool = std::sync::Arc::clone(&pool);
        let input = source.into_iter().inspect(move |x| read_tx.send(*x).unwrap());
        std::thread::spawn(move || {
            pool.with_chunksize(1)
                .map_async(|x: u32| x * 2, input)
                .map(|h| h.get())
        })
    };
    items.send(0).unwrap();
    // The call has been accepted once it reads its input.
    assert_eq!(read.recv_timeout(common::HANG).unwrap(), 0);
    pool.close();
    let (joined_tx, joined) = std::sync::mpsc::channel();
    {
        let pool = std::sync::Arc::clone(&pool);
        std::thread::spawn(move || joined_tx.send(pool.join()).unwrap());
    }
    // join must wait for the map still being fed; give a wrong one the
    // chance to finish early (the test passes either way if it is right).
    assert!(
        joined
            .recv_timeout(std::time::Duration::from_millis(300))
            .is_err(),
        "join returned while a call accepted before close was still feeding"
    );
    for x in 1..10 {
        items.send(x).unwrap();
    }
    drop(items);
    let doubled = mapper.join().unwrap().unwrap().unwrap();
    assert_eq!(doubled, (0..10).map(|x| x * 2).collect::<Vec<_>>());
    joined.recv_timeout(common::HANG).unwrap().unwrap();
}
