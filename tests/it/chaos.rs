//! Chaos: thousands of short tasks while another thread SIGKILLs random
//! workers. Every task ends exactly once (a value, or a worker-died error;
//! with retries, a value or an error after every attempt), nothing hangs,
//! and the pool has its full worker count at the end.
//!
//! `PROCPOOL_CHAOS_TASKS` (default 3000) and `PROCPOOL_CHAOS_KILL_MS`
//! (default 10) size the run; CI runs the default.

use crate::common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use procpool::{Error, Pool};

/// About 100 µs of work; returns the square and the worker's pid.
fn work(i: u64) -> (u64, u32) {
    let start = Instant::now();
    let mut x = i;
    while start.elapsed() < Duration::from_micros(100) {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
    std::hint::black_box(x);
    (i * i, std::process::id())
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Outcome {
    values: usize,
    deaths: usize,
    /// The workers killed.
    killed: Vec<u32>,
}

/// Runs the chaos on `pool`; `check` judges each item's result.
fn chaos(pool: &Pool, check: impl Fn(u64, &Result<(u64, u32), Error>)) -> Outcome {
    let tasks = env_or("PROCPOOL_CHAOS_TASKS", 3000);
    let every = Duration::from_millis(env_or("PROCPOOL_CHAOS_KILL_MS", 10));
    let done = AtomicBool::new(false);
    let (seen_tx, seen_rx) = mpsc::channel::<u32>();
    std::thread::scope(|scope| {
        // The killer: every few ms, SIGKILL a worker that has served (so
        // it is past its start), chosen at random among recent ones.
        let done = &done;
        let killer = scope.spawn(move || {
            let mut recent: Vec<u32> = Vec::new();
            let mut rng = 0x2545_f491_4f6c_dd1du64;
            let mut kills = Vec::new();
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(every);
                recent.extend(seen_rx.try_iter());
                recent.dedup();
                let keep = recent.len().saturating_sub(16);
                recent.drain(..keep);
                if recent.is_empty() {
                    continue;
                }
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let pid = recent[(rng % recent.len() as u64) as usize];
                if pool.worker_pids().contains(&pid)
                    && kill(Pid::from_raw(pid as i32), Signal::SIGKILL).is_ok()
                {
                    kills.push(pid);
                }
            }
            kills
        });
        let mut outcome = Outcome {
            values: 0,
            deaths: 0,
            killed: Vec::new(),
        };
        let mut position = 0;
        for result in pool.with_chunksize(4).imap(work, 0..tasks).unwrap() {
            check(position, &result);
            match &result {
                Ok((_, pid)) => {
                    outcome.values += 1;
                    let _ = seen_tx.send(*pid);
                }
                Err(_) => outcome.deaths += 1,
            }
            position += 1;
        }
        done.store(true, Ordering::SeqCst);
        outcome.killed = killer.join().unwrap();
        assert_eq!(position, tasks, "every task ends exactly once");
        outcome
    })
}

/// After the chaos: once the pool has seen the last kills, it has all its
/// workers, and each answers.
fn assert_whole(pool: &Pool, killed: &[u32]) {
    let start = Instant::now();
    while pool.worker_pids().len() < pool.processes()
        || pool.worker_pids().iter().any(|pid| killed.contains(pid))
    {
        assert!(start.elapsed() < common::HANG, "the pool lost workers");
        std::thread::sleep(Duration::from_millis(2));
    }
    let out = pool.with_chunksize(1).map(work, 0..200).unwrap();
    let pids: BTreeSet<u32> = out.iter().map(|(_, pid)| *pid).collect();
    assert!(pids.len() <= pool.processes());
    assert!(out.iter().enumerate().all(|(i, (v, _))| *v == (i * i) as u64));
    assert_eq!(pool.worker_pids().len(), pool.processes());
}

#[test]
fn random_kills_fail_only_the_tasks_they_hit() {
    let pool = Pool::new(4).unwrap();
    let outcome = chaos(&pool, |i, result| match result {
        Ok((v, _)) => assert_eq!(*v, i * i, "item {i}"),
        Err(Error::WorkerDied {
            index: Some(at),
            attempts: 1,
            ..
        }) => assert_eq!(*at as u64, i),
        Err(other) => panic!("item {i}: unexpected {other:?}"),
    });
    eprintln!(
        "chaos without retries: {} kills, {} values, {} tasks lost with their worker",
        outcome.killed.len(),
        outcome.values,
        outcome.deaths
    );
    assert!(!outcome.killed.is_empty(), "the killer never struck");
    assert_whole(&pool, &outcome.killed);
}

#[test]
fn with_retries_killed_tasks_run_again() {
    let pool = Pool::builder().processes(4).retries(3).build().unwrap();
    let outcome = chaos(&pool, |i, result| match result {
        Ok((v, _)) => assert_eq!(*v, i * i, "item {i}"),
        Err(Error::WorkerDied {
            index: Some(at),
            attempts: 4,
            ..
        }) => assert_eq!(*at as u64, i),
        Err(other) => panic!("item {i}: unexpected {other:?}"),
    });
    eprintln!(
        "chaos with 3 retries: {} kills, {} values, {} tasks failed 4 times",
        outcome.killed.len(),
        outcome.values,
        outcome.deaths
    );
    assert!(!outcome.killed.is_empty(), "the killer never struck");
    assert_whole(&pool, &outcome.killed);
}
