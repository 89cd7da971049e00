//! A parent whose stdout nobody reads still gets its results, and can drop
//! its pool: nothing of the pool waits on the parent's output.
//!
//! The test runs a child program (this test binary, running the ignored
//! test `child_maps_with_a_stalled_stdout`) whose stdout is a pipe that the
//! test never reads. The child reports on its stderr, which the test reads,
//! and leaves with `_exit`, so that neither the test harness nor the
//! runtime's exit handlers try to write to the stalled stdout.

use crate::common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use procpool::Pool;

const CHILD: &str = "output_stall::child_maps_with_a_stalled_stdout";
const ENV: &str = "PROCPOOL_TEST_OUTPUT_STALL";
const DONE: &str = "stalled child: done";

/// Tasks in the map, each printing [`LINES`] lines of [`WIDTH`] bytes on
/// stdout: 48 × 8 KiB = 384 KiB in all, six times what a pipe holds.
const TASKS: u32 = 48;
const LINES: usize = 64;
const WIDTH: usize = 128;

fn chatty(i: u32) -> u32 {
    for line in 0..LINES {
        let text = format!("task {i} line {line} ");
        println!("{text}{}", "x".repeat(WIDTH - 1 - text.len()));
    }
    eprintln!("task {i} on stderr");
    i * 2
}

/// Ends the child at once: no exit handler may write to the stalled stdout.
fn leave(code: i32) -> ! {
    // SAFETY: `_exit` is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

#[test]
#[ignore = "run by a_stalled_stdout_does_not_stop_the_pool in a child process"]
fn child_maps_with_a_stalled_stdout() {
    if std::env::var_os(ENV).is_none() {
        return;
    }
    let outcome = std::panic::catch_unwind(|| {
        let pool = Pool::new(3).unwrap();
        let values = pool.with_chunksize(1).map(chatty, 0..TASKS).unwrap();
        assert_eq!(values, (0..TASKS).map(|i| i * 2).collect::<Vec<_>>());
        // Results still come after the map.
        assert_eq!(pool.apply(chatty, 100).unwrap(), 200);
        eprintln!("stalled child: results in, dropping the pool");
        drop(pool);
    });
    match outcome {
        Ok(()) => {
            eprintln!("{DONE}");
            leave(0)
        }
        Err(_) => leave(3),
    }
}

#[test]
fn a_stalled_stdout_does_not_stop_the_pool() {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", CHILD, "--ignored", "--nocapture", "--test-threads=1"])
        .env(ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Held open and never read: the child's stdout fills and stays full.
    let _stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    // Stderr ends when the child exits.
    let Ok(stderr) = rx.recv_timeout(common::HANG) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the child did not finish within {:?}: its pool waited on its stalled stdout",
            common::HANG
        );
    };
    let status = child.wait().unwrap();
    assert!(
        status.success() && stderr.lines().any(|l| l == DONE),
        "the child failed ({status}):\n{stderr}"
    );
    // Its stderr was read all along: the tasks' lines there all came.
    for i in (0..TASKS).chain([100]) {
        let line = format!("task {i} on stderr");
        assert!(
            stderr.lines().any(|l| l == line),
            "missing from stderr: {line:?}\n{stderr}"
        );
    }
}
