//! Worker start, exit, death (with cause), replacement, timeout, cancel and
//! recycling are `tracing` events carrying the worker's pid; without a
//! subscriber, procpool prints nothing.

use crate::common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use procpool::Pool;

/// Everything the subscriber writes, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The lines that contain `message`.
    fn lines_with(&self, message: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.contains(message))
            .map(str::to_owned)
            .collect()
    }
}

fn die(_: ()) -> u8 {
    std::process::exit(4)
}

fn held(path: String) -> u32 {
    common::hold(&path)
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

#[test]
fn the_life_of_workers_is_traced_with_their_pids() {
    // In a program of its own: the subscriber is global, and other tests'
    // pools would add their events.
    let out = common::run_child_test(
        "tracing_events::child_program_tracing_the_life_of_workers",
        &[("PROCPOOL_TEST_TRACED", "1")],
    );
    common::assert_child_passed(&out);
}

#[test]
#[ignore = "run by the_life_of_workers_is_traced_with_their_pids as a child program"]
fn child_program_tracing_the_life_of_workers() {
    if std::env::var_os("PROCPOOL_TEST_TRACED").is_none() {
        return;
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // Events come from the pool's own threads: the subscriber is global.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let pool = Pool::builder()
        .processes(1)
        .max_tasks_per_child(3)
        .build()
        .unwrap();
    let first = pool.worker_pids()[0];
    assert!(pool.apply(die, ()).unwrap_err().is_worker_died());
    let second = pool.worker_pids()[0];
    let timed_out = pool
        .with_timeout(Duration::from_millis(100))
        .apply(sleep_ms, 60_000);
    assert!(timed_out.unwrap_err().is_timed_out());
    let gate = common::Gate::new();
    let slow = pool.apply_async(held, gate.path()).unwrap();
    let running = gate.wait_for(1).pop().unwrap();
    let third = running.pid;
    assert!(slow.cancel());
    assert!(slow.get().unwrap_err().is_cancelled());
    let fourth = pool.worker_pids()[0];
    pool.with_chunksize(1).map(sleep_ms, [1, 1, 1, 1]).unwrap();
    let last = pool.worker_pids();
    pool.close();
    pool.join().unwrap();

    let has = |message: &str, pid: u32| {
        let lines = captured.lines_with(message);
        assert!(
            lines.iter().any(|l| l.contains(&format!("pid={pid}"))),
            "no {message:?} event for pid {pid}:\n{}",
            captured.text()
        );
    };
    has("procpool worker started", first);
    has("procpool worker died", first);
    assert!(captured.lines_with("procpool worker died")[0].contains("exited with code 4"));
    has("procpool replacement worker started", second);
    has("procpool task timed out; killing its worker", second);
    has("procpool task cancelled; killing its worker", third);
    has("procpool worker recycled after max_tasks_per_child", fourth);
    // At join, each last worker exits (or, a replacement not yet up, is
    // stopped), with its pid.
    for pid in last {
        let ended = captured
            .text()
            .lines()
            .filter(|l| l.contains("procpool worker exited") || l.contains("no longer wanted"))
            .any(|l| l.contains(&format!("pid={pid}")));
        assert!(ended, "no exit event for pid {pid}:\n{}", captured.text());
    }
}

/// A program that kills a worker, with no subscriber installed.
#[test]
#[ignore = "run by the test below as a child program"]
fn child_program_without_a_subscriber() {
    if std::env::var_os("PROCPOOL_TEST_QUIET").is_none() {
        return;
    }
    let pool = Pool::new(1).unwrap();
    assert!(pool.apply(die, ()).unwrap_err().is_worker_died());
    assert!(
        pool.with_timeout(Duration::from_millis(50))
            .apply(sleep_ms, 60_000)
            .is_err()
    );
    println!("CHILD DONE");
}

#[test]
fn without_a_subscriber_nothing_is_printed() {
    let out = common::run_child_test(
        "tracing_events::child_program_without_a_subscriber",
        &[("PROCPOOL_TEST_QUIET", "1")],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(stdout.contains("CHILD DONE"), "{stdout}\n{stderr}");
    assert!(
        !stdout.contains("procpool") && !stderr.contains("procpool"),
        "{stdout}\n{stderr}"
    );
}
