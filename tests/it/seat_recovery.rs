//! A seat that cannot start a replacement worker (the system refuses a
//! process for a while) keeps trying, with a growing pause between tries,
//! and the pool gets back to full strength once starting works again.
//! While every seat fails, tasks get the reason instead of waiting.
//!
//! The failure is injected: workers start from a symlink to this test
//! program, which the test removes (or points at a program that exits at
//! once) and puts back.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use procpool::{Error, Pool};

/// How long a seat may take to start a worker again once it can: far more
/// than the longest pause between two tries.
const RECOVERY: Duration = Duration::from_secs(30);

fn pid_of(_: u8) -> u32 {
    std::process::id()
}

fn die(_: ()) -> u8 {
    std::process::exit(3)
}

/// A symlink to this test program to start workers from.
struct Program {
    link: PathBuf,
    dir: tempfile::TempDir,
}

impl Program {
    fn new() -> Program {
        let dir = tempfile::tempdir().unwrap();
        let program = Program {
            link: dir.path().join("worker"),
            dir,
        };
        program.restore();
        program
    }

    fn path(&self) -> &Path {
        &self.link
    }

    /// Starting a worker fails from now on.
    fn remove(&self) {
        std::fs::remove_file(&self.link).unwrap();
    }

    /// Starting a worker works again.
    fn restore(&self) {
        std::os::unix::fs::symlink(std::env::current_exe().unwrap(), &self.link).unwrap();
    }

    /// From now on a worker starts, but exits before its handshake, each
    /// time adding a line to [`starts`](Self::starts).
    fn exit_at_start(&self) {
        let script = self.dir.path().join("exit-at-start.sh");
        let log = self.dir.path().join("starts.log");
        let text = format!("#!/bin/sh\necho started >> '{}'\nexit 1\n", log.display());
        std::fs::write(&script, text).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::remove_file(&self.link).unwrap();
        std::os::unix::fs::symlink(&script, &self.link).unwrap();
    }

    /// How many workers started and exited since
    /// [`exit_at_start`](Self::exit_at_start).
    fn starts(&self) -> usize {
        let log = self.dir.path().join("starts.log");
        std::fs::read_to_string(log).map_or(0, |text| text.lines().count())
    }

    /// Starting a worker works again, after it failed.
    fn repair(&self) {
        std::fs::remove_file(&self.link).unwrap();
        self.restore();
    }
}

/// Waits until the pool has `n` workers and takes tasks again; fails after
/// [`RECOVERY`].
fn wait_for_recovery(pool: &Pool, n: usize) {
    let deadline = Instant::now() + RECOVERY;
    loop {
        let pids = pool.worker_pids();
        if pids.len() == n && pool.apply(pid_of, 0).is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the pool did not get its {n} workers back within {RECOVERY:?}: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_pool_whose_seats_all_failed_to_restart_recovers() {
    let program = Program::new();
    let pool = Pool::builder()
        .processes(2)
        .worker_program_for_tests(program.path())
        .build()
        .unwrap();
    program.remove();
    // Both workers die (the second task goes to the seat that still has
    // one); neither can be replaced.
    for _ in 0..2 {
        assert!(pool.apply(die, ()).unwrap_err().is_worker_died());
    }
    // Once every seat has failed a few times, tasks get the reason instead
    // of waiting.
    let err = pool.apply(pid_of, 0).unwrap_err();
    assert!(matches!(err, Error::Spawn { .. }), "{err:?}");
    program.restore();
    wait_for_recovery(&pool, 2);
    common::assert_all_serve(&pool, 2);
    pool.close();
    pool.join().unwrap();
}

#[test]
fn a_seat_that_keeps_failing_to_restart_keeps_trying_while_the_others_serve() {
    let program = Program::new();
    let pool = Pool::builder()
        .processes(2)
        .worker_program_for_tests(program.path())
        .build()
        .unwrap();
    program.exit_at_start();
    assert!(pool.apply(die, ()).unwrap_err().is_worker_died());
    // The other worker serves meanwhile; nobody is told of the failure.
    let survivor = pool.apply(pid_of, 0).unwrap();
    assert_eq!(pool.map(pid_of, 0..8).unwrap(), [survivor; 8]);
    // More tries than the few it once made before giving up for good.
    let deadline = Instant::now() + RECOVERY;
    while program.starts() < 6 {
        assert!(
            Instant::now() < deadline,
            "the seat stopped trying after {} starts",
            program.starts()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    program.repair();
    wait_for_recovery(&pool, 2);
    common::assert_all_serve(&pool, 2);
}
