//! Point 6 of failure isolation: nothing outlives the parent. A parent
//! killed with SIGKILL takes every worker, idle or busy, with it within
//! 1 s; `join`, `terminate` and drop leave no zombie; Ctrl-C (SIGINT to the
//! foreground process group) ends the program and its workers promptly.

use crate::common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Proc;
use procpool::Pool;

fn held(path: String) -> u32 {
    common::hold(&path)
}

/// Tells the gate it runs, then stays busy without reading anything.
fn busy(path: String) -> u32 {
    use std::io::Write;
    let mut gate = std::os::unix::net::UnixStream::connect(path).unwrap();
    gate.write_all(&std::process::id().to_le_bytes()).unwrap();
    std::thread::sleep(common::HANG);
    0
}

/// How long after its parent dies a worker may live.
const ORPHAN_LIMIT: Duration = Duration::from_secs(1);

/// The program the tests kill: a pool of 3 with 2 workers busy and 1 idle;
/// it prints the worker pids, then waits to be killed.
#[test]
#[ignore = "run by the tests below as a child program"]
fn child_program_with_busy_and_idle_workers() {
    if std::env::var_os("PROCPOOL_TEST_ORPHANS").is_none() {
        return;
    }
    let pool = Pool::new(3).unwrap();
    let gate = common::Gate::new();
    let _busy: Vec<_> = (0..2)
        .map(|_| pool.apply_async(busy, gate.path()).unwrap())
        .collect();
    let held_tasks = gate.wait_for(2);
    let pids: Vec<String> = pool.worker_pids().iter().map(u32::to_string).collect();
    println!("PIDS {}", pids.join(" "));
    std::thread::sleep(common::HANG);
    drop(held_tasks);
}

/// Starts the child program (in its own process group) and reads its
/// workers' pids.
fn start_child() -> (Child, Vec<Proc>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "orphans::child_program_with_busy_and_idle_workers",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PROCPOOL_TEST_ORPHANS", "1")
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        let line = line.unwrap();
        // libtest may print the test's name on the same line first.
        if let Some(at) = line.find("PIDS ") {
            let pids = &line[at + "PIDS ".len()..];
            let workers: Vec<Proc> = pids.split(' ').map(|p| Proc::new(p.parse().unwrap())).collect();
            assert_eq!(workers.len(), 3);
            return (child, workers);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the child program ended without printing its workers");
}

/// Waits (bounded) until no worker runs: exited, whether or not whoever
/// adopted it has reaped it yet. Returns how long that took.
fn wait_until_gone(workers: &[Proc], limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let alive: Vec<u32> = workers
            .iter()
            .filter(|w| !w.is_gone() && !w.is_zombie())
            .map(|w| w.pid)
            .collect();
        if alive.is_empty() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "workers {alive:?} still run {:?} after their parent died",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn wait_for_exit(child: &mut Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < common::HANG, "the child program did not exit");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_parent_killed_with_sigkill_takes_busy_and_idle_workers_along_within_a_second() {
    let (mut child, workers) = start_child();
    child.kill().unwrap();
    let status = wait_for_exit(&mut child);
    assert_eq!(status.signal(), Some(9));
    let took = wait_until_gone(&workers, ORPHAN_LIMIT);
    eprintln!("workers gone {took:?} after the parent's death");
}

#[test]
fn ctrl_c_stops_the_program_and_its_workers_promptly() {
    let (mut child, workers) = start_child();
    // What a terminal does on Ctrl-C: SIGINT to the foreground group.
    let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
    nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = wait_for_exit(&mut child);
    assert_eq!(status.signal(), Some(2), "{status:?}");
    wait_until_gone(&workers, ORPHAN_LIMIT);
}

fn workers_of(pool: &Pool) -> Vec<Proc> {
    pool.worker_pids().into_iter().map(Proc::new).collect()
}

fn assert_reaped(workers: &[Proc], after: &str) {
    for w in workers {
        assert!(
            w.is_gone(),
            "worker {} left after {after} (zombie: {})",
            w.pid,
            w.is_zombie()
        );
    }
}

fn die(_: ()) -> u8 {
    std::process::exit(1)
}

#[test]
fn join_terminate_and_drop_leave_no_zombie() {
    let pool = Pool::new(2).unwrap();
    let mut workers = workers_of(&pool);
    // A worker that died and was replaced is reaped too.
    assert!(pool.apply(die, ()).unwrap_err().is_worker_died());
    workers.extend(workers_of(&pool));
    pool.close();
    pool.join().unwrap();
    assert_reaped(&workers, "join");

    let pool = Pool::new(2).unwrap();
    let workers = workers_of(&pool);
    pool.terminate();
    assert_reaped(&workers, "terminate");

    let pool = Pool::new(2).unwrap();
    let gate = common::Gate::new();
    let busy = pool.apply_async(held, gate.path()).unwrap();
    let _held = gate.wait_for(1);
    let workers = workers_of(&pool);
    drop(pool);
    assert_reaped(&workers, "drop");
    assert!(busy.get().unwrap_err().is_terminated());
}
