//! Point 5 of failure isolation: opt-in retries for idempotent work. A
//! task whose worker died is run again up to `retries` times; one that
//! panicked, timed out or was cancelled is not; the final error says how
//! many attempts were made.

use std::io::Write;
use std::time::Duration;

use procpool::{Error, Pool};

/// Adds a line to the attempt log at `path`.
fn log_attempt(path: &str) {
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    writeln!(log, "x").unwrap();
}

/// Logs an attempt to `path`; dies (exit 9) on the first `deaths`
/// attempts, then returns the attempt number.
fn flaky((path, deaths): (String, usize)) -> usize {
    log_attempt(&path);
    let attempt = std::fs::read_to_string(&path).unwrap().lines().count();
    if attempt <= deaths {
        std::process::exit(9);
    }
    attempt
}

fn attempts(path: &str) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn log_path(dir: &tempfile::TempDir, name: &str) -> String {
    dir.path().join(name).to_str().unwrap().to_owned()
}

#[test]
fn a_task_whose_worker_dies_is_run_again_until_it_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::new(2).unwrap();
    let path = log_path(&dir, "a");
    assert_eq!(pool.with_retries(3).apply(flaky, (path.clone(), 2)).unwrap(), 3);
    assert_eq!(attempts(&path), 3);
    assert_eq!(pool.worker_pids().len(), 2);
}

#[test]
fn when_every_attempt_dies_the_error_says_how_many_there_were() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::builder().processes(1).retries(2).build().unwrap();
    let path = log_path(&dir, "b");
    let err = pool.apply(flaky, (path.clone(), 10)).unwrap_err();
    assert!(
        matches!(err, Error::WorkerDied { attempts: 3, ref cause, .. } if cause.code() == Some(9)),
        "{err:?}"
    );
    assert!(err.to_string().contains("3 attempts"), "{err}");
    assert_eq!(attempts(&path), 3);
}

#[test]
fn without_retries_a_death_is_reported_after_one_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::new(1).unwrap();
    let path = log_path(&dir, "c");
    let err = pool.apply(flaky, (path.clone(), 1)).unwrap_err();
    assert!(matches!(err, Error::WorkerDied { attempts: 1, .. }), "{err:?}");
    assert_eq!(attempts(&path), 1);
}

/// Logs an attempt, then panics.
fn panics(path: String) -> u8 {
    log_attempt(&path);
    panic!("not retried")
}

/// Logs an attempt, then hangs.
fn hangs(path: String) -> u8 {
    log_attempt(&path);
    std::thread::sleep(Duration::from_secs(600));
    0
}

#[test]
fn panics_and_timeouts_are_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::builder().processes(1).retries(3).build().unwrap();
    let path = log_path(&dir, "panic");
    assert!(pool.apply(panics, path.clone()).unwrap_err().is_panic());
    assert_eq!(attempts(&path), 1);
    let path = log_path(&dir, "hang");
    let err = pool
        .with_timeout(Duration::from_millis(200))
        .apply(hangs, path.clone())
        .unwrap_err();
    assert!(err.is_timed_out(), "{err:?}");
    assert_eq!(attempts(&path), 1);
}

#[test]
fn retried_chunks_of_a_map_deliver_every_item_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let pool = Pool::new(2).unwrap();
    // Item 3 kills its worker once; its chunk (3 items) runs again.
    let items: Vec<(String, usize)> = (0..8)
        .map(|i| (log_path(&dir, &format!("m{i}")), usize::from(i == 3)))
        .collect();
    let out = pool.with_retries(1).with_chunksize(3).map(flaky, items).unwrap();
    assert_eq!(out, [1, 1, 1, 2, 1, 1, 1, 1]);
}
