//! Jobs sent to a worker ahead of the one it runs (for short tasks, when
//! enough work waits): a cancel still kills the job once it runs and is
//! charged to the right job, a job never waits behind a slow one while
//! another worker is idle, and a memory-limit death of such a job is named
//! as one. (Found in review; each test failed on the first version.)
use std::time::{Duration, Instant};

use procpool::{Error, Pool};

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn nap_us(us: u64) -> u64 {
    std::thread::sleep(Duration::from_micros(us));
    us
}

fn warm(pool: &Pool) {
    // Short tasks: the pool learns to send several jobs at a time.
    pool.with_chunksize(1).map(nap_us, vec![1; 300]).unwrap();
}

/// (1) A job sent ahead and then cancelled is neither removed nor killed
/// once it starts: a task that never ends keeps its result (and join)
/// waiting forever.
#[test]
fn a_cancelled_job_sent_ahead_is_killed_once_it_runs() {
    let pool = Pool::new(1).unwrap();
    warm(&pool);
    let x = pool.apply_async(sleep_ms, 300).unwrap(); // runs now
    let y = pool.apply_async(sleep_ms, 300).unwrap(); // queued
    let f = pool.apply_async(sleep_ms, 3_600_000).unwrap(); // queued
    assert_eq!(x.get().unwrap(), 300); // at DONE x: [y, f] sent together
    assert!(f.cancel());
    let r = f.get_timeout(Duration::from_secs(5));
    let _ = y.get();
    pool.terminate();
    assert!(
        matches!(r, Err(Error::Cancelled)),
        "cancelled job still pending after 5 s: {r:?}"
    );
}

/// (2) A job stuck behind a long job on one worker while the other worker
/// is idle (before the change it ran on the idle worker at once).
#[test]
fn no_job_waits_behind_a_slow_one_while_another_worker_is_idle() {
    let pool = Pool::new(2).unwrap();
    warm(&pool);
    let x1 = pool.apply_async(sleep_ms, 300).unwrap();
    let x2 = pool.apply_async(sleep_ms, 320).unwrap();
    let slow = pool.apply_async(sleep_ms, 3000).unwrap();
    let start = Instant::now();
    let quick = pool.apply_async(sleep_ms, 0).unwrap();
    quick.get().unwrap();
    let waited = start.elapsed();
    let _ = (x1.get(), x2.get(), slow.get());
    assert!(
        waited < Duration::from_millis(1500),
        "quick task waited {waited:?} with a worker idle"
    );
}

fn big(n: usize) -> Vec<String> {
    std::thread::sleep(Duration::from_millis(200));
    (0..n).map(|i| i.to_string()).collect()
}

fn touch(path: String) -> u32 {
    std::fs::write(&path, b"x").unwrap();
    1
}

/// (3) Cancel lands while the parent still shows the cancelled job A as
/// running, but the worker has finished A and started B (sent ahead):
/// the kill's doom is charged to B, which fails as Cancelled although its
/// call was never cancelled.
#[test]
fn a_cancel_that_lands_late_is_not_charged_to_the_next_job() {
    let pool = Pool::new(1).unwrap();
    warm(&pool);
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("a-ran");
    let x = pool.apply_async(big, 3_000_000).unwrap(); // slow to decode in the parent
    let a = pool
        .apply_async(touch, marker.to_str().unwrap().to_owned())
        .unwrap();
    let b = pool.apply_async(sleep_ms, 1000).unwrap();
    let waiting = Instant::now();
    while !marker.exists() {
        assert!(waiting.elapsed() < Duration::from_secs(60), "task a never ran");
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(30)); // A done, B running
    let decoding = !x.ready();
    a.cancel();
    let rb = b.get();
    let _ = x.get();
    assert!(decoding, "setup: the parent had finished decoding x already");
    assert!(
        matches!(rb, Ok(1000)),
        "b's call was never cancelled, yet: {rb:?}"
    );
}

fn hog(bytes: usize) -> usize {
    vec![1u8; bytes].len()
}

/// (4) The out-of-memory task was sent ahead: its report on stderr is read
/// while the previous job's DONE is handled, and forgotten there.
#[test]
fn the_memory_limit_of_a_job_sent_ahead_is_reported_as_such() {
    let pool = Pool::builder()
        .processes(1)
        .max_memory_per_worker(128 << 20)
        .build()
        .unwrap();
    let mut wrong = Vec::new();
    for _ in 0..20 {
        warm(&pool);
        let x = pool.apply_async(sleep_ms, 100).unwrap();
        let y = pool.apply_async(sleep_ms, 0).unwrap();
        let h = pool.apply_async(hog, 1 << 30).unwrap();
        let _ = (x.get(), y.get());
        match h.get() {
            Err(Error::MemoryLimit { .. }) => {}
            other => wrong.push(format!("{other:?}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of 20 misreported, e.g. {:?}",
        wrong.len(),
        wrong.first()
    );
}
