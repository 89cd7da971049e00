//! Ported from CPython's `multiprocessing.Pool` test suite:
//! `Lib/test/_test_multiprocessing.py`, class `_TestPool` (the tests that
//! apply to Rust). Each test keeps CPython's name and says what it checks;
//! where Python's notion has no Rust twin (pickling, weak references,
//! keyword arguments), the closest Rust behaviour is checked instead.

use crate::common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use procpool::{Error, Pool};

fn sqr(x: i64) -> i64 {
    x * x
}

fn sqr_wait((x, wait_ms): (i64, u64)) -> i64 {
    std::thread::sleep(Duration::from_millis(wait_ms));
    x * x
}

fn mul(x: i64, y: i64) -> i64 {
    x * y
}

fn pool() -> Pool {
    Pool::new(4).unwrap()
}

#[test]
fn test_apply() {
    let pool = pool();
    assert_eq!(pool.apply(sqr, 5).unwrap(), sqr(5));
    // Python's keyword arguments: a tuple is the Rust way to pass several.
    assert_eq!(pool.apply(sqr_wait, (3, 0)).unwrap(), 9);
}

#[test]
fn test_map() {
    let pool = pool();
    let expected: Vec<i64> = (0..10).map(sqr).collect();
    assert_eq!(pool.map(sqr, 0..10).unwrap(), expected);
    let expected: Vec<i64> = (0..100).map(sqr).collect();
    assert_eq!(pool.with_chunksize(20).map(sqr, 0..100).unwrap(), expected);
}

#[test]
fn test_starmap() {
    let pool = pool();
    let tuples: Vec<(i64, i64)> = (0..10).zip((0..10).rev()).collect();
    let expected: Vec<i64> = tuples.iter().map(|&(a, b)| mul(a, b)).collect();
    assert_eq!(pool.starmap(mul, tuples).unwrap(), expected);
    let tuples: Vec<(i64, i64)> = (0..100).zip((0..100).rev()).collect();
    let expected: Vec<i64> = tuples.iter().map(|&(a, b)| mul(a, b)).collect();
    assert_eq!(pool.with_chunksize(20).starmap(mul, tuples).unwrap(), expected);
}

#[test]
fn starmap_takes_named_functions_not_closures() {
    // A closure's captures cannot be seen from generic code, so starmap
    // refuses closures (map takes them, as a tuple-argument function).
    let pool = pool();
    let err = pool.starmap(|a: i64, b: i64| a * b, [(1, 2)]).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("named function") && m.contains("closure")),
        "{err:?}"
    );
    assert_eq!(pool.map(|(a, b): (i64, i64)| a * b, [(3, 4)]).unwrap(), [12]);
    // Arities 3 and 4, and a method path.
    fn add3(a: i64, b: i64, c: i64) -> i64 {
        a + b + c
    }
    fn add4(a: i64, b: i64, c: i64, d: i64) -> i64 {
        a + b + c + d
    }
    assert_eq!(pool.starmap(add3, [(1, 2, 3)]).unwrap(), [6]);
    assert_eq!(pool.starmap(add4, [(1, 2, 3, 4)]).unwrap(), [10]);
    assert_eq!(pool.starmap(i64::pow, [(2, 10u32)]).unwrap(), [1024]);
}

#[test]
fn test_starmap_async() {
    let pool = pool();
    let tuples: Vec<(i64, i64)> = (0..100).zip((0..100).rev()).collect();
    let expected: Vec<i64> = tuples.iter().map(|&(a, b)| mul(a, b)).collect();
    assert_eq!(pool.starmap_async(mul, tuples).unwrap().get().unwrap(), expected);
}

#[test]
fn test_map_async() {
    let pool = pool();
    let expected: Vec<i64> = (0..10).map(sqr).collect();
    assert_eq!(pool.map_async(sqr, 0..10).unwrap().get().unwrap(), expected);
}

#[test]
fn test_map_async_callbacks() {
    // Python: map_async(int, ['1'], callback=..., error_callback=...) calls
    // the callback once with [1]; with ['a'] the error callback gets the
    // ValueError.
    fn parse(s: String) -> i64 {
        s.parse().expect("not a number")
    }
    let pool = pool();
    let (tx, rx) = mpsc::channel();
    let ok_tx = tx.clone();
    pool.with_callback(move |v: &Vec<i64>| ok_tx.send(Ok(v.clone())).unwrap())
        .with_error_callback({
            let tx = tx.clone();
            move |e: &Error| tx.send(Err(e.to_string())).unwrap()
        })
        .map_async(parse, ["1".to_string()])
        .unwrap()
        .wait();
    assert_eq!(rx.try_recv().unwrap(), Ok(vec![1]));
    assert!(rx.try_recv().is_err(), "called more than once");
    let ok_tx = tx.clone();
    pool.with_callback(move |v: &Vec<i64>| ok_tx.send(Ok(v.clone())).unwrap())
        .with_error_callback(move |e: &Error| tx.send(Err(e.to_string())).unwrap())
        .map_async(parse, ["a".to_string()])
        .unwrap()
        .wait();
    let err = rx.try_recv().unwrap().unwrap_err();
    assert!(err.contains("not a number"), "{err}");
    assert!(rx.try_recv().is_err(), "called more than once");
}

#[test]
fn test_map_chunksize() {
    // An empty map with a chunk size must not stall.
    let pool = pool();
    let empty: Vec<i64> = Vec::new();
    let h = pool.with_chunksize(1).map_async(sqr, empty).unwrap();
    assert_eq!(h.get_timeout(common::HANG).unwrap(), Vec::<i64>::new());
}

#[test]
fn test_async() {
    let pool = pool();
    let res = pool.apply_async(sqr_wait, (7, 100)).unwrap();
    let started = Instant::now();
    assert_eq!(res.get().unwrap(), 49);
    // get() waited for the task (Python checks the time is about TIMEOUT1).
    assert!(
        started.elapsed() > Duration::from_millis(50),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn test_async_timeout() {
    let pool = Pool::new(3).unwrap();
    let gate = common::Gate::new();
    let res = pool
        .apply_async(|path: String| common::hold(&path), gate.path())
        .unwrap();
    let held = gate.wait_for(1);
    let err = res.get_timeout(Duration::from_millis(50)).unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err:?}");
    held.into_iter().for_each(common::Held::release);
    assert!(res.get().unwrap() > 0);
}

#[test]
fn test_imap() {
    let pool = pool();
    let it = pool.imap(sqr, 0..10).unwrap();
    assert_eq!(
        it.map(Result::unwrap).collect::<Vec<_>>(),
        (0..10).map(sqr).collect::<Vec<_>>()
    );

    let mut it = pool.imap(sqr, 0..10).unwrap();
    for i in 0..10 {
        assert_eq!(it.next().unwrap().unwrap(), i * i);
    }
    assert!(it.next().is_none());

    let mut it = pool.with_chunksize(100).imap(sqr, 0..1000).unwrap();
    for i in 0..1000 {
        assert_eq!(it.next().unwrap().unwrap(), i * i);
    }
    assert!(it.next().is_none());
}

#[test]
fn test_imap_unordered() {
    let pool = pool();
    let mut got: Vec<i64> = pool
        .imap_unordered(sqr, 0..10)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    got.sort();
    assert_eq!(got, (0..10).map(sqr).collect::<Vec<_>>());
    let mut got: Vec<i64> = pool
        .with_chunksize(100)
        .imap_unordered(sqr, 0..1000)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    got.sort();
    assert_eq!(got, (0..1000).map(sqr).collect::<Vec<_>>());
}

#[test]
fn test_make_pool() {
    // Python: Pool(-1) and Pool(0) raise ValueError (no negative usize here).
    assert!(matches!(Pool::new(0), Err(Error::InvalidArgument(_))));
    let p = Pool::new(3).unwrap();
    assert_eq!(p.worker_pids().len(), 3);
    p.close();
    p.join().unwrap();
}

#[test]
fn test_terminate() {
    // Slow tasks that take "forever"; terminate must not wait for them.
    let p = Pool::new(3).unwrap();
    let result = p
        .with_chunksize(1)
        .map_async(
            |s: u64| std::thread::sleep(Duration::from_secs(s)),
            vec![600; 10_000],
        )
        .unwrap();
    p.terminate();
    p.join().unwrap();
    assert!(result.get().unwrap_err().is_terminated());
}

#[test]
fn test_empty_iterable() {
    let p = Pool::new(1).unwrap();
    let empty = || Vec::<i64>::new();
    assert_eq!(p.map(sqr, empty()).unwrap(), Vec::<i64>::new());
    assert_eq!(p.imap(sqr, empty()).unwrap().count(), 0);
    assert_eq!(p.imap_unordered(sqr, empty()).unwrap().count(), 0);
    assert_eq!(
        p.map_async(sqr, empty()).unwrap().get().unwrap(),
        Vec::<i64>::new()
    );
    assert_eq!(p.starmap(mul, Vec::new()).unwrap(), Vec::<i64>::new());
    p.close();
    p.join().unwrap();
}

fn test_traceback_task(_: ()) -> u8 {
    panic!("RuntimeError(123)") // some comment
}

#[test]
fn test_traceback() {
    // The child's panic, with where it happened, reaches the parent.
    let p = Pool::new(1).unwrap();
    let err = p.apply(test_traceback_task, ()).unwrap_err();
    let Error::Panicked { index: None, panic } = &err else {
        panic!("expected a panic, got {err:?}");
    };
    assert_eq!(panic.message(), "RuntimeError(123)");
    let location = panic.location().unwrap();
    assert!(location.file().ends_with("cpython_pool.rs"), "{location}");
    let source = include_str!("cpython_pool.rs");
    let line = source.lines().nth(location.line() as usize - 1).unwrap();
    assert!(
        line.contains("panic!(\"RuntimeError(123)\") // some comment"),
        "{line}"
    );
    assert!(err.to_string().contains("cpython_pool.rs"), "{err}");
    p.close();
    p.join().unwrap();
}

#[test]
fn test_map_no_failfast() {
    // Issue #23992: a failing item must not make close()/join() deadlock,
    // and map waits for the other items before it reports the failure.
    fn raise_large_valueerror(wait_ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(wait_ms));
        panic!("{}", "x".repeat(1024 * 1024))
    }
    fn finish_late(i: u64) -> u64 {
        if i == 0 {
            raise_large_valueerror(0)
        } else {
            std::thread::sleep(Duration::from_millis(300));
            i
        }
    }
    let p = Pool::new(2).unwrap();
    let started = Instant::now();
    let err = p.with_chunksize(1).map(finish_late, [0, 1]).unwrap_err();
    // Checks that we indeed waited for all jobs.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(&err, Error::Panicked { index: Some(0), panic } if panic.message().len() == 1024 * 1024)
    );
    p.close();
    p.join().unwrap();
}

#[test]
fn test_release_task_refs() {
    // Issue #29861: the pool must not keep what belongs to a finished task.
    // Arguments and results are copied across processes; what a Rust pool
    // could hold on to is the call's callbacks and what they capture.
    let p = pool();
    let payload = std::sync::Arc::new(vec![0u8; 1024]);
    let handles: Vec<_> = (0..10)
        .map(|i| {
            let captured = std::sync::Arc::clone(&payload);
            p.with_callback(move |_: &i64| drop(captured))
                .apply_async(sqr, i)
                .unwrap()
        })
        .collect();
    let failing = {
        let captured = std::sync::Arc::clone(&payload);
        p.with_error_callback(move |_: &Error| drop(captured))
            .apply_async(|_: ()| -> i64 { panic!("no") }, ())
            .unwrap()
    };
    let unused = {
        let captured = std::sync::Arc::clone(&payload);
        p.with_error_callback(move |_: &Error| drop(captured))
            .map_async(sqr, 0..100)
            .unwrap()
    };
    for h in &handles {
        h.wait();
    }
    failing.wait();
    unused.wait();
    assert_eq!(
        std::sync::Arc::strong_count(&payload),
        1,
        "the pool kept a finished task's callbacks"
    );
}
