//! Point 3 of failure isolation: worker recycling (`max_tasks_per_child`
//! counts tasks, not chunks) and the initializer (once per worker,
//! replacements included; a failure fails the pool's creation, or, later,
//! ends in an error for the waiting tasks after a few tries: never an
//! endless respawn loop).

use crate::common;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};

use procpool::{Error, Pool};

fn pid_of(_: u32) -> u32 {
    std::process::id()
}

/// Counts each pid's tasks, in the order the pids first appear.
fn tasks_per_pid(pids: &[u32]) -> BTreeMap<u32, usize> {
    let mut counts = BTreeMap::new();
    for pid in pids {
        *counts.entry(*pid).or_default() += 1;
    }
    counts
}

#[test]
fn a_worker_runs_at_most_its_budget_of_tasks_even_in_long_chunks() {
    let pool = Pool::builder()
        .processes(1)
        .max_tasks_per_child(3)
        .build()
        .unwrap();
    let first = pool.worker_pids()[0];
    // Chunks of 5 on a budget of 3: each chunk is split.
    let pids = pool.with_chunksize(5).map(pid_of, 0..10).unwrap();
    let runs: Vec<usize> = pids.chunk_by(|a, b| a == b).map(<[u32]>::len).collect();
    assert_eq!(runs, [3, 3, 3, 1], "{pids:?}");
    assert_eq!(pids[0], first);
    assert_eq!(tasks_per_pid(&pids).len(), 4, "every run is a new worker");
    // The spent workers were reaped; one worker serves.
    for pid in tasks_per_pid(&pids).keys().filter(|p| **p != pids[9]) {
        assert!(!pool.worker_pids().contains(pid));
    }
    assert_eq!(pool.worker_pids().len(), 1);
}

#[test]
fn budgets_hold_with_several_workers_and_every_call_kind() {
    let pool = Pool::builder()
        .processes(2)
        .max_tasks_per_child(7)
        .build()
        .unwrap();
    let mut pids = pool.map(pid_of, 0..100).unwrap();
    pids.extend(pool.imap(pid_of, 0..50).unwrap().map(Result::unwrap));
    pids.extend(pool.imap_unordered(pid_of, 0..50).unwrap().map(Result::unwrap));
    for i in 0..20 {
        pids.push(pool.apply(pid_of, i).unwrap());
    }
    let counts = tasks_per_pid(&pids);
    assert!(counts.values().all(|n| *n <= 7), "{counts:?}");
    assert!(counts.len() >= 220 / 7, "{} workers for 220 tasks", counts.len());
    assert_eq!(pool.worker_pids().len(), 2);
}

#[test]
fn recycled_workers_leave_no_process_behind() {
    let pool = Pool::builder()
        .processes(2)
        .max_tasks_per_child(1)
        .build()
        .unwrap();
    let pids = pool.with_chunksize(1).map(pid_of, 0..20).unwrap();
    assert_eq!(tasks_per_pid(&pids).len(), 20, "one worker per task");
    pool.close();
    pool.join().unwrap();
    // Every worker, spent or last, was reaped: none is still our child
    // (running or zombie).
    for pid in pids {
        assert!(!is_our_child(pid), "worker {pid} left behind");
    }
}

fn is_our_child(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let fields: Vec<&str> = stat.rsplit(") ").next().unwrap_or("").split(' ').collect();
    fields.get(1).and_then(|ppid| ppid.parse::<u32>().ok()) == Some(std::process::id())
}

static INIT_RUNS: AtomicU32 = AtomicU32::new(0);
static INIT_ARG: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn init(arg: String) {
    INIT_RUNS.fetch_add(1, Ordering::SeqCst);
    INIT_ARG.set(arg).unwrap();
}

fn init_state(_: ()) -> (u32, u32, String) {
    (
        std::process::id(),
        INIT_RUNS.load(Ordering::SeqCst),
        INIT_ARG.get().cloned().unwrap_or_default(),
    )
}

fn die(_: ()) -> u8 {
    std::process::exit(3)
}

#[test]
fn the_initializer_runs_once_in_every_worker_replacements_included() {
    let pool = Pool::builder()
        .processes(2)
        .max_tasks_per_child(3)
        .initializer(init, "table v1".to_string())
        .build()
        .unwrap();
    let states = pool.with_chunksize(1).map(init_state, vec![(); 12]).unwrap();
    assert!(pool.apply(die, ()).unwrap_err().is_worker_died());
    let mut all = states;
    all.extend(pool.with_chunksize(1).map(init_state, vec![(); 6]).unwrap());
    let workers: BTreeMap<u32, (u32, String)> = all.into_iter().map(|(pid, n, a)| (pid, (n, a))).collect();
    assert!(workers.len() >= 6, "recycling made new workers: {workers:?}");
    for (pid, (runs, arg)) in workers {
        assert_eq!((runs, arg.as_str()), (1, "table v1"), "worker {pid}");
    }
}

fn refuse(reason: String) -> Result<(), String> {
    Err(reason)
}

fn explode(_: ()) {
    panic!("the initializer exploded")
}

#[test]
fn a_failing_initializer_fails_the_pool_creation_with_its_error() {
    let err = Pool::builder()
        .processes(2)
        .initializer(refuse, "no database".to_string())
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Initializer { message, .. } if message == "no database"),
        "{err:?}"
    );
    let err = Pool::builder()
        .processes(1)
        .initializer(explode, ())
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, Error::Initializer { message, .. } if message.contains("the initializer exploded")),
        "{err:?}"
    );
}

/// Fails once the file `path` exists, and logs every run to `path.log`.
fn fail_when_flagged(path: String) -> Result<(), String> {
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(format!("{path}.log"))
        .unwrap();
    writeln!(log, "{}", std::process::id()).unwrap();
    match std::path::Path::new(&path).exists() {
        true => Err("the flag is up".into()),
        false => Ok(()),
    }
}

#[test]
fn an_initializer_that_starts_failing_stops_the_respawns_and_reports_to_waiting_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("flag").to_str().unwrap().to_owned();
    let pool = Pool::builder()
        .processes(1)
        .initializer(fail_when_flagged, flag.clone())
        .build()
        .unwrap();
    assert_eq!(pool.apply(pid_of, 0).unwrap(), pool.worker_pids()[0]);
    std::fs::write(&flag, "up").unwrap();
    // The worker dies; every replacement's initializer fails.
    assert!(pool.apply(die, ()).unwrap_err().is_worker_died());
    let waiting = pool.apply(pid_of, 1).unwrap_err();
    assert!(
        matches!(&waiting, Error::Initializer { message, .. } if message == "the flag is up"),
        "{waiting:?}"
    );
    let later = pool.map(pid_of, 0..3).unwrap_err();
    assert!(matches!(later, Error::Initializer { .. }), "{later:?}");
    assert!(pool.worker_pids().is_empty());
    // One start that worked, then a bounded number of tries.
    let runs = std::fs::read_to_string(format!("{flag}.log"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(runs, 1 + 3, "initializer runs");
}

fn both_arrive(path: String) -> bool {
    common::arrive(&path)
}

#[test]
fn the_rest_of_a_split_chunk_goes_to_idle_workers_at_once() {
    let pool = Pool::builder()
        .processes(2)
        .max_tasks_per_child(1)
        .build()
        .unwrap();
    // One chunk of two items that can only finish together: the second
    // item must run on the other worker while the first one runs.
    let barrier = common::Barrier::new(2);
    let out = pool
        .with_chunksize(2)
        .map(both_arrive, vec![barrier.path(), barrier.path()])
        .unwrap();
    assert_eq!(out, [true, true]);
}

fn fail_when_present(path: String) -> Result<(), String> {
    match std::path::Path::new(&path).exists() {
        true => Err("the flag is up".into()),
        false => Ok(()),
    }
}

#[test]
fn split_chunks_end_in_the_initializer_error_when_no_worker_can_start() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("flag").to_str().unwrap().to_owned();
    let pool = Pool::builder()
        .processes(2)
        .max_tasks_per_child(1)
        .initializer(fail_when_present, flag.clone())
        .build()
        .unwrap();
    std::fs::write(&flag, "up").unwrap();
    // Each item spends a worker; no replacement can start.
    let err = pool.with_chunksize(3).map(pid_of, 0..3).unwrap_err();
    assert!(matches!(err, Error::Initializer { .. }), "{err:?}");
}
