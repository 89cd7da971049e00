//! A task that overflows its stack: the worker dies, and the task's error
//! says it was a stack overflow (not just "SIGSEGV"), is not retried (it
//! would overflow again), and the pool replaces the worker and goes on.
//!
//! The worker loop runs from a constructor before `main`, so the standard
//! library's own stack-overflow handler is not installed in workers;
//! procpool installs its own.

use std::collections::BTreeSet;
use std::hint::black_box;

use procpool::{Error, ExitCause, Pool};

/// Recurses until the stack runs out; `black_box` keeps the compiler from
/// turning it into a loop or proving it never returns.
#[inline(never)]
fn deeper(depth: u64) -> u64 {
    let frame = black_box([depth; 32]);
    if black_box(depth) == u64::MAX {
        return 0;
    }
    black_box(deeper(black_box(depth + 1))).wrapping_add(frame[(depth % 32) as usize])
}

fn overflow(start: u64) -> u64 {
    deeper(start)
}

/// Gives the workers (which inherit it) a stack limit, if this process has
/// none: an unlimited stack grows until memory runs out, which is not a
/// stack overflow, and would take the machine's memory with it.
fn bounded_stack() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes into the struct we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut limit) }, 0);
    if limit.rlim_cur == libc::RLIM_INFINITY {
        limit.rlim_cur = 8 << 20;
        // SAFETY: `setrlimit` reads the struct we own; lowering the soft
        // limit is always allowed.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_STACK, &limit) }, 0);
    }
}

/// A fault that is not a stack overflow: a write to an address that is
/// never mapped.
fn wild_write(address: usize) -> u8 {
    // SAFETY: none, on purpose: the write faults (the first pages of the
    // address space are never mapped), which is what this task is for.
    unsafe { std::ptr::without_provenance_mut::<u8>(address).write_volatile(1) };
    0
}

#[test]
fn a_stack_overflow_is_reported_as_one_and_not_retried() {
    bounded_stack();
    let pool = Pool::builder().processes(1).retries(2).build().unwrap();
    let before: BTreeSet<u32> = pool.worker_pids().into_iter().collect();
    let err = pool.apply(overflow, 0).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("stack overflow"), "{message}");
    match &err {
        Error::WorkerDied {
            index: None,
            pid,
            cause,
            attempts,
        } => {
            assert!(before.contains(pid), "pid {pid} was not a worker");
            assert!(
                matches!(cause, ExitCause::StackOverflow { signal } if *signal == libc::SIGSEGV),
                "{cause:?}"
            );
            assert!(cause.is_stack_overflow(), "{cause:?}");
            assert_eq!(cause.signal(), Some(libc::SIGSEGV), "{cause:?}");
            // It would overflow again: run once, even with retries.
            assert_eq!(*attempts, 1, "{message}");
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    // The pool replaced the worker and keeps working.
    assert_eq!(pool.apply(|x: u32| x + 1, 41).unwrap(), 42);
    let after: BTreeSet<u32> = pool.worker_pids().into_iter().collect();
    assert_eq!(after.len(), 1);
    assert!(after.is_disjoint(&before), "{before:?} -> {after:?}");
}

#[test]
fn overflow_in_a_map_fails_its_item_and_the_rest_succeed() {
    bounded_stack();
    let pool = Pool::new(2).unwrap();
    let results = pool
        .with_chunksize(1)
        .imap(|x: u64| if x == 5 { overflow(x) } else { x }, 0..10)
        .unwrap();
    for (i, result) in results.enumerate() {
        match result {
            Ok(value) => assert_eq!(value, i as u64),
            Err(e) => {
                assert_eq!(i, 5, "{e}");
                assert!(e.to_string().contains("stack overflow"), "{e}");
            }
        }
    }
    assert_eq!(pool.map(|x: u8| x * 2, 0..4).unwrap(), vec![0, 2, 4, 6]);
}

#[test]
fn another_fault_is_still_a_plain_sigsegv() {
    let pool = Pool::new(1).unwrap();
    let err = pool.apply(wild_write, 16).unwrap_err();
    match &err {
        Error::WorkerDied { cause, .. } => {
            assert_eq!(cause.signal(), Some(libc::SIGSEGV), "{err}");
            assert!(!cause.is_stack_overflow(), "{err}");
            assert!(!err.to_string().contains("stack overflow"), "{err}");
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    assert_eq!(pool.apply(|x: u32| x + 1, 1).unwrap(), 2);
}

/// An overflow in the middle of a chunk fails that item alone: the items
/// after it run elsewhere; those before it ran but their results died with
/// the worker (a death: run again with retries).
#[test]
fn an_overflow_in_the_middle_of_a_chunk_fails_only_its_item() {
    bounded_stack();
    let pool = Pool::new(1).unwrap();
    fn item(i: u64) -> u64 {
        if i == 2 { overflow(i) } else { i * 10 }
    }
    let outcomes: Vec<_> = pool.with_chunksize(5).imap(item, 0..6).unwrap().collect();
    for (i, outcome) in outcomes.iter().enumerate() {
        match (i, outcome) {
            (0 | 1, Err(e)) => assert!(e.is_worker_died() && e.index() == Some(i), "{i}: {e:?}"),
            (2, Err(Error::WorkerDied { cause, index, .. })) => {
                assert!(cause.is_stack_overflow(), "{cause:?}");
                assert_eq!(*index, Some(2));
            }
            (3.., Ok(v)) => assert_eq!(*v, i as u64 * 10),
            _ => panic!("item {i}: {outcome:?}"),
        }
    }
    let again: Vec<_> = pool
        .with_chunksize(5)
        .with_retries(1)
        .imap(item, 0..6)
        .unwrap()
        .collect();
    for (i, outcome) in again.iter().enumerate() {
        match i {
            2 => assert!(outcome.as_ref().is_err_and(|e| e.is_worker_died())),
            _ => assert_eq!(outcome.as_ref().unwrap(), &(i as u64 * 10), "{i}"),
        }
    }
}

/// Short tasks sent ahead to one worker: it holds some results back to
/// send them together (result coalescing). A stack overflow sends them
/// first, so every task before it gives its value, and the ones after it
/// run on the replacement.
#[test]
fn results_held_back_reach_the_parent_before_an_overflow() {
    bounded_stack();
    let pool = Pool::new(1).unwrap();
    fn item(i: u64) -> u64 {
        if i == 150 { overflow(i) } else { i * 10 }
    }
    // Warm up the pool's estimate of the task time, so that it sends ahead.
    pool.with_chunksize(1).map(item, 0..100).unwrap();
    let handles: Vec<_> = (0..300).map(|i| pool.apply_async(item, i).unwrap()).collect();
    for (i, handle) in handles.iter().enumerate() {
        match (i, handle.get()) {
            (150, Err(Error::WorkerDied { cause, .. })) => assert!(cause.is_stack_overflow(), "{cause:?}"),
            (_, Ok(v)) if i != 150 => assert_eq!(v, i as u64 * 10),
            (_, other) => panic!("task {i}: {other:?}"),
        }
    }
}
