//! Point 4 of failure isolation: `max_memory_per_worker`. A task over the
//! cap fails with `Error::MemoryLimit` (not a generic crash) and its
//! worker is replaced.

use procpool::{Error, Pool};

const CAP: u64 = 256 << 20;

fn allocate(bytes: usize) -> usize {
    let v = vec![1u8; bytes];
    v.iter().step_by(4096).map(|b| *b as usize).sum()
}

/// Grows a vector of 1 MiB blocks until `total` bytes.
fn grow(total: usize) -> usize {
    let mut blocks = Vec::new();
    while blocks.len() * (1 << 20) < total {
        blocks.push(vec![1u8; 1 << 20]);
    }
    blocks.len()
}

fn capped(processes: usize) -> Pool {
    Pool::builder()
        .processes(processes)
        .max_memory_per_worker(CAP)
        .build()
        .unwrap()
}

#[test]
fn one_allocation_over_the_cap_is_a_memory_error_and_the_worker_is_replaced() {
    let pool = capped(1);
    let pid = pool.worker_pids()[0];
    let err = pool.apply(allocate, 1 << 30).unwrap_err();
    match &err {
        Error::MemoryLimit {
            index: None,
            pid: dead,
            limit,
            requested,
        } => {
            assert_eq!((*dead, *limit, *requested), (pid, CAP, Some(1 << 30)));
        }
        other => panic!("expected MemoryLimit, got {other:?}"),
    }
    assert!(err.to_string().contains("memory limit"), "{err}");
    assert_ne!(pool.worker_pids(), [pid]);
    // Under the cap, the pool works as before.
    assert_eq!(pool.apply(allocate, 64 << 20).unwrap(), (64 << 20) / 4096);
}

#[test]
fn growing_past_the_cap_is_a_memory_error_too() {
    let pool = capped(1);
    let err = pool.apply(grow, 4 << 30).unwrap_err();
    assert!(err.is_memory_limit(), "{err:?}");
    assert_eq!(pool.apply(grow, 8 << 20).unwrap(), 8);
}

#[test]
fn in_a_map_the_item_over_the_cap_is_named_and_the_others_are_fine() {
    let pool = capped(2);
    let sizes = [1 << 20, 2 << 20, 1 << 30, 3 << 20];
    let err = pool.with_chunksize(1).map(allocate, sizes).unwrap_err();
    assert!(
        matches!(err, Error::MemoryLimit { index: Some(2), .. }),
        "{err:?}"
    );
    let each: Vec<_> = pool.imap(allocate, sizes).unwrap().collect();
    assert!(each[2].as_ref().unwrap_err().is_memory_limit());
    assert_eq!(each.iter().filter(|r| r.is_ok()).count(), 3);
}

#[test]
fn without_a_cap_the_same_abort_is_a_worker_death() {
    // A task that aborts (as a failed allocation does) is not called a
    // memory error when the pool has no cap to blame.
    let pool = Pool::new(1).unwrap();
    let err = pool
        .apply(|_: ()| -> u8 { std::process::abort() }, ())
        .unwrap_err();
    assert!(err.is_worker_died(), "{err:?}");
}
