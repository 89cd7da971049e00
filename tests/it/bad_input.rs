//! Point 7 of failure isolation: bad input never hangs or crashes the
//! parent. A worker that writes garbage, an oversized, truncated or
//! corrupt frame, or a worker program that is not this build: each ends in
//! a clear error and (for a running pool) a replaced worker.
//!
//! The tasks here play a buggy library that writes to a descriptor it
//! does not own: the worker's channel to the parent. The decoders are also
//! fuzzed (`fuzz/`), and checked against random input in a unit test.

use std::io::Write;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use procpool::{Error, Pool};

/// The worker's channel to the parent: its one socket.
fn channel() -> UnixStream {
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let entry = entry.unwrap();
        let target = std::fs::read_link(entry.path()).unwrap_or_default();
        if target.to_string_lossy().starts_with("socket:") {
            let fd: i32 = entry.file_name().to_str().unwrap().parse().unwrap();
            // SAFETY: the descriptor is open (just listed), and this task
            // takes it over for the rest of the worker's life, which the
            // test is about to end or disturb on purpose.
            return unsafe { UnixStream::from_raw_fd(fd) };
        }
    }
    panic!("the worker has no socket")
}

/// Writes `bytes` onto the channel, then behaves as `then` says.
fn scribble((bytes, then): (Vec<u8>, String)) -> u8 {
    let mut channel = channel();
    channel.write_all(&bytes).unwrap();
    match then.as_str() {
        "exit" => std::process::exit(0),
        "hang" => std::thread::sleep(Duration::from_secs(600)),
        _ => {}
    }
    std::mem::forget(channel);
    1
}

fn header(len: u32, kind: u8) -> Vec<u8> {
    let mut h = len.to_le_bytes().to_vec();
    h.extend([kind, 0, 0, 0]);
    h
}

const DONE: u8 = 0x83;
/// Job id, item count, three timings.
const DONE_HEADER: u32 = 8 + 4 + 24;

fn assert_replaced_and_working(pool: &Pool, before: &[u32]) {
    let now = pool.worker_pids();
    assert_eq!(now.len(), before.len());
    assert_ne!(now, before, "the bad worker was replaced");
    assert_eq!(pool.map(|x: u8| x + 1, 0..5).unwrap(), [1, 2, 3, 4, 5]);
}

fn protocol_error(pool: &Pool, bytes: Vec<u8>) -> String {
    let before = pool.worker_pids();
    let err = pool.apply(scribble, (bytes, "return".into())).unwrap_err();
    let Error::Protocol { pid, message } = err else {
        panic!("expected a protocol error, got {err:?}");
    };
    assert!(before.contains(&pid));
    assert_replaced_and_working(pool, &before);
    message
}

#[test]
fn garbage_is_a_protocol_error_and_the_worker_is_replaced() {
    let pool = Pool::new(1).unwrap();
    let message = protocol_error(&pool, b"hello, this is not a frame\n".to_vec());
    assert!(message.contains("bad frame header"), "{message}");
}

#[test]
fn an_oversized_frame_is_refused_before_anything_is_allocated() {
    let pool = Pool::new(1).unwrap();
    let message = protocol_error(&pool, header(u32::MAX, DONE));
    assert!(message.contains("exceeds the limit"), "{message}");
}

#[test]
fn a_corrupt_message_is_a_protocol_error() {
    let pool = Pool::new(1).unwrap();
    // A done message shorter than its own header.
    let mut short = header(5, DONE);
    short.extend([1, 2, 3, 4, 5]);
    assert!(protocol_error(&pool, short).contains("shorter"));
    // An unknown kind.
    assert!(protocol_error(&pool, header(0, 0x99)).contains("unknown message kind"));
    // A well-formed answer to a job the worker does not hold.
    let mut wrong = header(DONE_HEADER, DONE);
    wrong.extend(u64::MAX.to_le_bytes());
    wrong.extend(0u32.to_le_bytes());
    wrong.extend([0; 24]);
    assert!(protocol_error(&pool, wrong).contains("answered job"));
    // Results that do not match the count.
    let mut count = header(DONE_HEADER + 5, DONE);
    count.extend(u64::MAX.to_le_bytes());
    count.extend(7u32.to_le_bytes());
    count.extend([0; 24]);
    count.extend([0, 0, 0, 0, 0]);
    assert!(protocol_error(&pool, count).contains("1 results for 7 items"));
}

#[test]
fn a_frame_cut_short_by_the_workers_death_is_a_death() {
    let pool = Pool::new(1).unwrap();
    let before = pool.worker_pids();
    let mut cut = header(100, DONE);
    cut.extend([0; 10]);
    let err = pool.apply(scribble, (cut, "exit".into())).unwrap_err();
    assert!(err.is_worker_died(), "{err:?}");
    assert_replaced_and_working(&pool, &before);
}

#[test]
fn a_frame_cut_short_by_a_hanging_worker_ends_at_the_task_timeout() {
    let pool = Pool::new(1).unwrap();
    let before = pool.worker_pids();
    let mut cut = header(100, DONE);
    cut.extend([0; 10]);
    let err = pool
        .with_timeout(Duration::from_millis(300))
        .apply(scribble, (cut, "hang".into()))
        .unwrap_err();
    assert!(err.is_timed_out(), "{err:?}");
    assert_replaced_and_working(&pool, &before);
}

#[test]
fn a_worker_program_that_is_not_this_build_is_a_start_error() {
    // Another program altogether.
    let err = Pool::builder()
        .processes(1)
        .worker_program_for_tests("/bin/true")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::WorkerStart { .. }), "{err:?}");
    // A copy of this very executable is another file: it refuses to serve.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy");
    std::fs::copy(std::env::current_exe().unwrap(), &copy).unwrap();
    let err = Pool::builder()
        .processes(1)
        .worker_program_for_tests(&copy)
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, Error::WorkerStart { reason, .. } if reason.contains("refused")),
        "{err:?}"
    );
}
