//! `procpool::Bytes`: large payloads through shared memory regions, both
//! ways; what a worker can do to them (nothing); and that the parent's
//! regions are released when a worker dies holding one.

use std::time::{Duration, Instant};

use procpool::{Bytes, Error, Pool, Sandbox};

use crate::common::{assert_child_passed, run_child_test};

/// A distinct payload of `len` bytes for `seed`.
fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn sum(data: &[u8]) -> u64 {
    data.iter().map(|&b| u64::from(b)).sum()
}

/// The task's view of its argument: whether it is shared, and its sum.
fn inspect(data: Bytes) -> (bool, u64) {
    (data.is_shared(), sum(&data))
}

/// A new payload made in the worker: the argument reversed.
fn reversed(data: Bytes) -> Bytes {
    Bytes::from_fn(data.len(), |out| {
        for (o, b) in out.iter_mut().zip(data.iter().rev()) {
            *o = *b;
        }
    })
}

#[test]
fn apply_and_map_carry_bytes_both_ways() {
    let pool = Pool::new(2).unwrap();
    let data = payload(1 << 20, 1);
    let arg = Bytes::from(data.clone());
    assert!(arg.is_shared());
    assert_eq!(pool.apply(inspect, arg.clone()).unwrap(), (true, sum(&data)));
    let back = pool.apply(reversed, arg.clone()).unwrap();
    assert!(back.is_shared(), "a worker's result comes back as a region");
    let want: Vec<u8> = data.iter().rev().copied().collect();
    assert_eq!(&back[..], &want[..]);
    assert_eq!(&arg[..], &data[..], "the argument is unchanged");

    let inputs: Vec<Vec<u8>> = (0..9).map(|i| payload(100_000 + i * 1000, i as u8)).collect();
    let args: Vec<Bytes> = inputs.iter().map(|d| Bytes::from(&d[..])).collect();
    let got = pool.with_chunksize(2).map(reversed, args.clone()).unwrap();
    for (got, data) in got.iter().zip(&inputs) {
        let want: Vec<u8> = data.iter().rev().copied().collect();
        assert_eq!(&got[..], &want[..]);
    }
    // The same region twice in one chunk, and small (inline) payloads.
    let mixed = vec![args[0].clone(), Bytes::from(vec![5u8; 10]), args[0].clone()];
    let got = pool.with_chunksize(3).map(inspect, mixed).unwrap();
    assert_eq!(
        got,
        [(true, sum(&inputs[0])), (false, 50), (true, sum(&inputs[0]))]
    );
}

#[test]
fn large_and_empty_bytes_cross() {
    let pool = Pool::new(1).unwrap();
    assert_eq!(pool.apply(inspect, Bytes::new()).unwrap(), (false, 0));
    assert!(pool.apply(reversed, Bytes::new()).unwrap().is_empty());
    let len = 64 << 20;
    let big = Bytes::from_fn(len, |out| {
        for (i, chunk) in out.chunks_mut(4096).enumerate() {
            chunk[0] = i as u8;
        }
    });
    fn firsts(data: Bytes) -> (usize, u64) {
        (data.len(), data.chunks(4096).map(|c| u64::from(c[0])).sum())
    }
    let want: u64 = (0..len / 4096).map(|i| u64::from(i as u8)).sum();
    assert_eq!(pool.apply(firsts, big.clone()).unwrap(), (len, want));
    fn make(len: usize) -> Bytes {
        Bytes::from_fn(len, |out| out[len - 1] = 9)
    }
    let made = pool.apply(make, len).unwrap();
    assert_eq!((made.len(), made[len - 1], made[0]), (len, 9, 0));
}

#[test]
fn bytes_round_trip_through_serde_json() {
    for bytes in [Bytes::new(), Bytes::from(payload(300_000, 3))] {
        let json = serde_json::to_vec(&bytes).unwrap();
        assert!(json.starts_with(b"["), "a plain array of numbers");
        let back: Bytes = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, bytes);
    }
}

/// Tries to change the region behind `data` from the worker: through a
/// descriptor of it reopened for writing, and through a writable shared
/// mapping. Returns how many regions it found and how many attempts
/// failed.
fn vandal(data: Bytes) -> (usize, usize) {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let _keep = &data;
    let mut found = 0;
    let mut refused = 0;
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if !target.to_string_lossy().starts_with("/memfd:procpool-bytes") {
            continue;
        }
        found += 1;
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(entry.path())
        {
            Ok(file) => {
                refused += usize::from(file.write_at(b"vandal", 0).is_err());
                // SAFETY: a new mapping at an address the kernel picks; it
                // is unmapped right away if it was made.
                let addr = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        4096,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_SHARED,
                        file.as_raw_fd(),
                        0,
                    )
                };
                if addr == libc::MAP_FAILED {
                    refused += 1;
                } else {
                    // SAFETY: the page just mapped.
                    unsafe {
                        *addr.cast::<u8>() = 0xee;
                        libc::munmap(addr, 4096);
                    }
                }
            }
            // Not even opened for writing: both ways refused.
            Err(_) => refused += 2,
        }
    }
    (found, refused)
}

#[test]
fn a_worker_cannot_change_its_argument() {
    let pool = Pool::new(1).unwrap();
    let data = payload(200_000, 7);
    let arg = Bytes::from(&data[..]);
    let (found, refused) = pool.apply(vandal, arg.clone()).unwrap();
    assert_eq!(found, 1, "the worker holds the region's descriptor");
    assert_eq!(refused, 2, "both writes were refused");
    assert_eq!(&arg[..], &data[..]);
    assert_eq!(pool.apply(inspect, arg).unwrap(), (true, sum(&data)));
}

#[test]
fn a_sandboxed_worker_reads_shared_arguments_and_returns_copies() {
    let pool = Pool::builder()
        .processes(1)
        .sandbox(Sandbox::strict())
        .build()
        .unwrap();
    let data = payload(1 << 20, 9);
    let arg = Bytes::from(&data[..]);
    assert_eq!(pool.apply(inspect, arg.clone()).unwrap(), (true, sum(&data)));
    // It cannot make a region (`memfd_create` is refused): its result is
    // plain memory, copied through the channel, and still right.
    fn reversed_here(data: Bytes) -> (bool, Bytes) {
        let out = reversed(data);
        (out.is_shared(), out)
    }
    let (shared_there, back) = pool.apply(reversed_here, arg.clone()).unwrap();
    assert!(!shared_there);
    let want: Vec<u8> = data.iter().rev().copied().collect();
    assert_eq!(&back[..], &want[..]);
    // Handing back the region it was given needs no new one.
    fn same(data: Bytes) -> Bytes {
        data
    }
    let same = pool.apply(same, arg).unwrap();
    assert!(same.is_shared());
    assert_eq!(&same[..], &data[..]);
}

/// A sandboxed worker may hold only a few descriptors (`max_open_files`,
/// 64 by default), and each shared region that comes with a task is one:
/// a chunk ends early once its items name 16 regions. (Before, a chunk of
/// 100 failed with "the worker gave up: reading from the parent: No buffer
/// space available".)
#[test]
fn a_sandboxed_worker_takes_chunks_of_many_regions() {
    let pool = Pool::builder()
        .processes(1)
        .sandbox(Sandbox::strict())
        .build()
        .unwrap();
    let items: Vec<Bytes> = (0..200u8).map(|i| Bytes::from(vec![i; 64 << 10])).collect();
    assert!(items.iter().all(Bytes::is_shared));
    let want: Vec<(bool, u64)> = items.iter().map(|b| (true, sum(b))).collect();
    assert_eq!(
        pool.with_chunksize(100).map(inspect, items.clone()).unwrap(),
        want
    );
    assert_eq!(pool.map(inspect, items).unwrap(), want);
}

/// The regions this process holds: descriptors and mappings of
/// `procpool-bytes` memfds.
fn regions_held() -> usize {
    let fds = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|t| t.to_string_lossy().starts_with("/memfd:procpool-bytes"))
        .count();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    fds + maps
        .lines()
        .filter(|l| l.contains("/memfd:procpool-bytes"))
        .count()
}

/// Waits (boundedly) until the process holds `want` regions.
#[track_caller]
fn assert_regions_return_to(want: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while regions_held() != want {
        assert!(
            Instant::now() < deadline,
            "{what}: {} regions held, {want} expected",
            regions_held()
        );
        std::thread::yield_now();
    }
}

fn abort(_: Bytes) -> u64 {
    std::process::abort()
}

/// Aborts the first time it runs for `path` (a marker file), then sums.
fn abort_once((path, data): (String, Bytes)) -> u64 {
    if std::fs::metadata(&path).is_err() {
        std::fs::write(&path, b"ran").unwrap();
        std::process::abort();
    }
    sum(&data)
}

#[test]
fn regions_are_released_when_a_worker_dies_holding_one() {
    assert_child_passed(&run_child_test("bytes::child_worker_death_releases_regions", &[]));
}

#[test]
#[ignore = "run by regions_are_released_when_a_worker_dies_holding_one"]
fn child_worker_death_releases_regions() {
    let pool = Pool::new(1).unwrap();
    let base = regions_held();
    let data = payload(1 << 20, 4);
    let arg = Bytes::from(&data[..]);
    assert!(regions_held() > base, "a region is counted while it lives");

    // Without retries: the call fails, and the job's region goes.
    let err = pool.apply(abort, arg.clone()).unwrap_err();
    assert!(matches!(err, Error::WorkerDied { .. }), "{err:?}");
    drop(arg);
    assert_regions_return_to(base, "after a death without retries");

    // With retries, all spent: the region goes after the last attempt.
    let err = pool
        .with_retries(2)
        .apply(abort, Bytes::from(&data[..]))
        .unwrap_err();
    assert!(matches!(err, Error::WorkerDied { attempts: 3, .. }), "{err:?}");
    assert_regions_return_to(base, "after every attempt died");

    // With a retry that succeeds: the region was sent again.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ran").to_string_lossy().into_owned();
    let got = pool
        .with_retries(1)
        .apply(abort_once, (path.clone(), Bytes::from(&data[..])))
        .unwrap();
    assert_eq!(got, sum(&data));
    assert!(std::fs::metadata(&path).is_ok(), "the first attempt died");
    assert_regions_return_to(base, "after a retry");

    // A map whose chunks hold several regions, one of which dies.
    let args: Vec<Bytes> = (0..6).map(|i| Bytes::from(payload(100_000, i))).collect();
    fn die_on_three(data: Bytes) -> u64 {
        if data[0] == 3 {
            std::process::abort();
        }
        sum(&data)
    }
    let err = pool.with_chunksize(2).map(die_on_three, args).unwrap_err();
    assert!(matches!(err, Error::WorkerDied { .. }), "{err:?}");
    // Results that come back as regions go when dropped.
    let back = pool.apply(reversed, Bytes::from(&data[..])).unwrap();
    assert!(back.is_shared());
    drop(back);
    assert_regions_return_to(base, "after a failed map and a dropped result");
}
