//! User code that the pool calls on its own threads — a `tracing`
//! subscriber, a waker, a progress bar's draw target, the `Drop` of a
//! result value — may panic. A panic there costs the pool nothing: every
//! worker keeps serving and timeouts are still enforced.

use crate::common;

use std::future::Future;
use std::pin::Pin;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use procpool::Pool;
use serde::{Deserialize, Serialize};

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn held(path: String) -> u32 {
    common::hold(&path)
}

fn pid_of(_: u8) -> u32 {
    std::process::id()
}

fn die(_: ()) -> u8 {
    std::process::exit(4)
}

/// Asserts that all `n` workers of `pool` serve (at once: a barrier that
/// only `n` tasks running together pass) and that a task timeout is still
/// enforced.
fn assert_whole(pool: &Pool, n: usize) {
    assert_eq!(pool.worker_pids().len(), n, "a worker seat was lost");
    common::assert_all_serve(pool, n);
    let slow = pool
        .with_timeout(Duration::from_millis(100))
        .apply_async(sleep_ms, 600_000)
        .unwrap();
    let outcome = slow.get_timeout(common::HANG);
    assert!(
        outcome.as_ref().is_err_and(procpool::Error::is_timed_out),
        "the task timeout was not enforced: {outcome:?}"
    );
    assert_eq!(pool.worker_pids().len(), n, "a worker seat was lost");
}

/// Runs the ignored test `name` of this binary in a child process with
/// `env` set; kills it if it runs past [`common::HANG`].
fn run_child_bounded(name: &str, env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", name, "--ignored", "--nocapture", "--test-threads=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command.spawn().unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(common::HANG) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let pid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let output = rx.recv().unwrap().unwrap();
            panic!(
                "the child program hung:\n{}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// A `tracing` subscriber that panics on every event procpool emits.
struct PanickingSubscriber;

impl tracing::Subscriber for PanickingSubscriber {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        if event.metadata().target().starts_with("procpool") {
            panic!("the subscriber exploded");
        }
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// A program whose global subscriber panics on every event, while its pool
/// starts, loses a worker, times a task out and cancels one.
#[test]
#[ignore = "run by the test below as a child program"]
fn child_program_with_a_panicking_subscriber() {
    if std::env::var_os("PROCPOOL_TEST_PANICKING_SUBSCRIBER").is_none() {
        return;
    }
    tracing::subscriber::set_global_default(PanickingSubscriber).unwrap();
    let pool = Pool::new(2).unwrap();
    assert!(pool.apply(die, ()).unwrap_err().is_worker_died());
    let slow = pool
        .with_timeout(Duration::from_millis(100))
        .apply(sleep_ms, 600_000);
    assert!(slow.unwrap_err().is_timed_out());
    let gate = common::Gate::new();
    let running = pool.apply_async(held, gate.path()).unwrap();
    let _holder = gate.wait_for(1);
    assert!(running.cancel());
    assert!(running.get().unwrap_err().is_cancelled());
    assert_whole(&pool, 2);
    pool.close();
    pool.join().unwrap();
    println!("CHILD DONE");
}

#[test]
fn a_panicking_tracing_subscriber_costs_no_worker_and_no_timeout() {
    let out = run_child_bounded(
        "user_code_panics::child_program_with_a_panicking_subscriber",
        &[("PROCPOOL_TEST_PANICKING_SUBSCRIBER", "1")],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success() && stdout.contains("CHILD DONE"),
        "{}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains("the subscriber exploded"),
        "the subscriber never ran:\n{stderr}"
    );
}

/// A waker whose `wake` reports that it ran, then panics.
struct PanickingWaker(std::sync::Mutex<std::sync::mpsc::Sender<()>>);

impl Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        let _ = self.0.lock().unwrap().send(());
        panic!("the waker exploded");
    }
}

#[test]
fn a_panicking_waker_costs_no_worker_and_no_timeout() {
    let pool = Pool::new(2).unwrap();
    let gate = common::Gate::new();
    let mut result = pool.apply_async(held, gate.path()).unwrap();
    let holder = gate.wait_for(1).pop().unwrap();
    let (woken, wakes) = std::sync::mpsc::channel();
    let waker = Waker::from(Arc::new(PanickingWaker(std::sync::Mutex::new(woken))));
    let mut cx = Context::from_waker(&waker);
    assert!(Pin::new(&mut result).poll(&mut cx).is_pending());
    let pid = holder.pid;
    holder.release();
    wakes
        .recv_timeout(common::HANG)
        .expect("the task was never woken");
    assert_eq!(result.get_timeout(common::HANG).unwrap(), pid);
    assert_whole(&pool, 2);
}

/// A result whose `Drop` panics in the parent (where it is decoded, not
/// where it was made).
#[derive(Debug, Serialize, Deserialize)]
struct Bomb {
    value: u32,
    #[serde(skip_serializing, default = "armed")]
    armed: bool,
}

fn armed() -> bool {
    true
}

impl Bomb {
    fn disarm(mut self) -> u32 {
        self.armed = false;
        self.value
    }
}

impl Drop for Bomb {
    fn drop(&mut self) {
        if self.armed {
            panic!("a result's drop exploded");
        }
    }
}

fn bomb_unless_zero(value: u32) -> Bomb {
    assert!(value != 0, "no bomb for zero");
    Bomb { value, armed: false }
}

fn bomb_when_released(path: String) -> Bomb {
    Bomb {
        value: common::hold(&path),
        armed: false,
    }
}

#[test]
fn results_whose_drop_panics_cost_no_worker_and_no_timeout() {
    // One worker: what it runs next is decoded on the same supervisor
    // thread, after each bomb has gone off.
    let pool = Pool::new(1).unwrap();
    let next = |what: &str| {
        let r = pool.apply(pid_of, 0);
        assert!(r.is_ok(), "after {what}: {r:?}");
    };
    // A chunk that fails after a value: the value is dropped.
    let err = pool.with_chunksize(2).map(bomb_unless_zero, [1, 0]).unwrap_err();
    assert!(err.is_panic(), "{err:?}");
    next("a chunk that failed after a value");
    // A chunk that fails after another chunk's values came in.
    let err = pool
        .with_chunksize(1)
        .map(bomb_unless_zero, [1, 2, 0])
        .unwrap_err();
    assert!(err.is_panic(), "{err:?}");
    next("a map that failed after values came in");
    // A result nobody holds any more.
    let gate = common::Gate::new();
    let dropped = pool.apply_async(bomb_when_released, gate.path()).unwrap();
    let holder = gate.wait_for(1).pop().unwrap();
    drop(dropped);
    holder.release();
    next("a result whose handle was dropped");
    // An `imap` dropped while its chunk ran.
    let results = pool.imap(bomb_when_released, vec![gate.path()]).unwrap();
    let holder = gate.wait_for(1).pop().unwrap();
    drop(results);
    holder.release();
    next("an imap dropped while its task ran");
    // A value the caller takes is the caller's to drop.
    let gate_path = gate.path();
    let taken = pool.apply_async(bomb_when_released, gate_path).unwrap();
    gate.wait_for(1).pop().unwrap().release();
    assert!(taken.get().unwrap().disarm() > 0);
    assert_whole(&pool, 1);
}

#[cfg(feature = "progress")]
mod progress {
    use super::*;
    use indicatif::{ProgressDrawTarget, TermLike};

    /// A terminal that panics when drawn on from any thread but the
    /// caller's.
    #[derive(Debug)]
    struct PanicsOffThread(std::thread::ThreadId);

    impl PanicsOffThread {
        fn draw(&self) -> std::io::Result<()> {
            if std::thread::current().id() != self.0 {
                panic!("the progress bar's terminal exploded");
            }
            Ok(())
        }
    }

    impl TermLike for PanicsOffThread {
        fn width(&self) -> u16 {
            80
        }

        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            self.draw()
        }

        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            self.draw()
        }

        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            self.draw()
        }

        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            self.draw()
        }

        fn write_line(&self, _: &str) -> std::io::Result<()> {
            self.draw()
        }

        fn write_str(&self, _: &str) -> std::io::Result<()> {
            self.draw()
        }

        fn clear_line(&self) -> std::io::Result<()> {
            self.draw()
        }

        fn flush(&self) -> std::io::Result<()> {
            self.draw()
        }
    }

    fn square(x: u64) -> u64 {
        x * x
    }

    #[test]
    fn a_progress_bar_that_panics_costs_no_worker_and_no_timeout() {
        let pool = Pool::new(2).unwrap();
        let term = PanicsOffThread(std::thread::current().id());
        let target = ProgressDrawTarget::term_like(Box::new(term));
        let squares = pool
            .with_chunksize(1)
            .with_progress_to(target)
            .map_async(square, 0..20)
            .unwrap();
        let squares = squares.get_timeout(common::HANG);
        assert_eq!(
            squares.unwrap(),
            (0..20).map(square).collect::<Vec<_>>(),
            "the map did not finish"
        );
        let term = PanicsOffThread(std::thread::current().id());
        let target = ProgressDrawTarget::term_like(Box::new(term));
        let streamed: Vec<u64> = pool
            .with_progress_to(target)
            .imap(square, 0..20)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(streamed, (0..20).map(square).collect::<Vec<_>>());
        assert_whole(&pool, 2);
    }
}
