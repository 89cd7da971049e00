//! Point 8 of failure isolation: a worker that dies (SIGKILL, abort,
//! segfault, exit, running out of memory) fails exactly the task it ran,
//! with an error naming the signal, exit code or memory limit, whether it
//! died idle or busy, during `apply`, `apply_async`, `map`, `imap` or
//! while returning results; the pool replaces the worker at once; nothing
//! hangs.

use crate::common;

use std::collections::BTreeSet;

use nix::sys::signal::{Signal, raise};
use procpool::{Error, ExitCause, Pool};

fn die(how: String) -> u32 {
    match how.as_str() {
        "sigkill" => {
            let _ = raise(Signal::SIGKILL);
        }
        "segfault" => {
            let _ = raise(Signal::SIGSEGV);
        }
        "abort" => std::process::abort(),
        "exit" => std::process::exit(7),
        _ => {}
    }
    std::process::id()
}

fn assert_pool_whole(pool: &Pool) {
    // Full worker count, and every worker answers.
    let pids: BTreeSet<u32> = pool.worker_pids().into_iter().collect();
    assert_eq!(pids.len(), pool.processes(), "workers missing: {pids:?}");
    let answered: BTreeSet<u32> = pool
        .with_chunksize(1)
        .map(die, (0..pool.processes() * 8).map(|_| "live".to_string()))
        .unwrap()
        .into_iter()
        .collect();
    assert!(answered.is_subset(&pids), "{answered:?} vs {pids:?}");
}

#[test]
fn each_kind_of_death_fails_its_task_with_its_cause() {
    let pool = Pool::new(2).unwrap();
    let cases = [
        (
            "sigkill",
            ExitCause::Signaled {
                signal: 9,
                core_dumped: false,
            },
        ),
        (
            "segfault",
            ExitCause::Signaled {
                signal: 11,
                core_dumped: false,
            },
        ),
        (
            "abort",
            ExitCause::Signaled {
                signal: 6,
                core_dumped: false,
            },
        ),
        ("exit", ExitCause::Exited(7)),
    ];
    for (how, expected) in cases {
        let before: BTreeSet<u32> = pool.worker_pids().into_iter().collect();
        let err = pool.apply(die, how.to_string()).unwrap_err();
        match &err {
            Error::WorkerDied {
                index: None,
                pid,
                cause,
                attempts: 1,
            } => {
                assert!(before.contains(pid), "{how}: pid {pid} was not a worker");
                assert_eq!(cause.signal(), expected.signal(), "{how}: {err}");
                assert_eq!(cause.code(), expected.code(), "{how}: {err}");
                assert!(
                    !pool.worker_pids().contains(pid),
                    "{how}: the dead worker is still listed"
                );
            }
            other => panic!("{how}: expected WorkerDied, got {other:?}"),
        }
        let message = err.to_string();
        let name = match expected {
            ExitCause::Exited(_) => "exited with code 7",
            ExitCause::Signaled { signal: 9, .. } => "SIGKILL",
            ExitCause::Signaled { signal: 11, .. } => "SIGSEGV",
            _ => "SIGABRT",
        };
        assert!(message.contains(name), "{how}: {message}");
        assert_pool_whole(&pool);
    }
}

#[test]
fn a_worker_killed_from_outside_fails_only_its_task() {
    fn held(path: String) -> u32 {
        common::hold(&path)
    }
    let pool = Pool::new(2).unwrap();
    let gate = common::Gate::new();
    let first = pool.apply_async(held, gate.path()).unwrap();
    let second = pool.apply_async(held, gate.path()).unwrap();
    let mut running = gate.wait_for(2);
    let survivor = running.pop().unwrap();
    let victim = running.pop().unwrap();
    let victim_proc = common::Proc::new(victim.pid);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim.pid as i32), Signal::SIGKILL).unwrap();
    let survivor_pid = survivor.pid;
    survivor.release();
    let (victim_result, survivor_result) = match first.get() {
        Ok(pid) => (second.get(), Ok(pid)),
        Err(e) => (Err(e), second.get()),
    };
    assert!(
        matches!(&victim_result, Err(Error::WorkerDied { pid, cause, .. }) if *pid == victim.pid && cause.signal() == Some(9)),
        "{victim_result:?}"
    );
    assert_eq!(
        survivor_result.unwrap(),
        survivor_pid,
        "the other task was disturbed"
    );
    assert!(victim_proc.is_gone(), "the killed worker was not reaped");
    assert_pool_whole(&pool);
}

#[test]
fn death_during_map_fails_its_chunk_and_map_reports_the_lowest_index() {
    let pool = Pool::new(3).unwrap();
    let items: Vec<String> = (0..30)
        .map(|i| if i == 17 { "abort".into() } else { "live".into() })
        .collect();
    let err = pool.with_chunksize(4).map(die, items).unwrap_err();
    // Item 17 is in the chunk 16..20.
    assert!(
        matches!(err, Error::WorkerDied { index: Some(16), .. }),
        "{err:?}"
    );
    assert_pool_whole(&pool);
}

#[test]
fn death_during_imap_fails_those_items_and_the_rest_arrive() {
    let pool = Pool::new(2).unwrap();
    let items: Vec<String> = (0..20)
        .map(|i| if i == 5 { "sigkill".into() } else { "live".into() })
        .collect();
    let results: Vec<_> = pool.with_chunksize(1).imap(die, items).unwrap().collect();
    assert_eq!(results.len(), 20);
    let Err(Error::WorkerDied {
        index: Some(5),
        pid: dead,
        ..
    }) = &results[5]
    else {
        panic!("item 5: {:?}", results[5]);
    };
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(_) => {}
            // Items of one task whose results the dying worker held back
            // (result coalescing) died with it; only ones it ran before.
            Err(Error::WorkerDied { index, pid, .. }) if pid == dead && *index == Some(i) && i <= 5 => {}
            other => panic!("item {i}: {other:?}"),
        }
    }
    // With bigger chunks, the dead worker's whole chunk fails.
    let items: Vec<String> = (0..20)
        .map(|i| if i == 5 { "sigkill".into() } else { "live".into() })
        .collect();
    let failed: Vec<usize> = pool
        .with_chunksize(4)
        .imap(die, items)
        .unwrap()
        .enumerate()
        .filter(|(_, r)| r.is_err())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(failed, [4, 5, 6, 7]);
    assert_pool_whole(&pool);
}

#[test]
fn deaths_in_a_row_never_shrink_the_pool() {
    let pool = Pool::new(2).unwrap();
    let handles: Vec<_> = (0..20)
        .map(|_| pool.apply_async(die, "exit".to_string()).unwrap())
        .collect();
    for h in handles {
        assert!(matches!(
            h.get(),
            Err(Error::WorkerDied {
                cause: ExitCause::Exited(7),
                ..
            })
        ));
    }
    assert_pool_whole(&pool);
}

#[test]
fn death_while_sending_a_result_is_a_death_not_a_protocol_error() {
    fn big_then_die((bytes, delay_us): (usize, u64)) -> serde_bytes::ByteBuf {
        // Another thread kills the worker while this one returns (and the
        // worker writes) a large result; the delays sweep across the write.
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_micros(delay_us));
            let _ = raise(Signal::SIGKILL);
        });
        serde_bytes::ByteBuf::from(vec![7; bytes])
    }
    let pool = Pool::new(2).unwrap();
    let mut deaths = 0;
    for delay_us in (0..40).map(|i| i * 2_500) {
        match pool.apply(big_then_die, (64 << 20, delay_us)) {
            Ok(v) => assert_eq!(v.len(), 64 << 20),
            Err(Error::WorkerDied { cause, .. }) => {
                assert_eq!(cause.signal(), Some(9));
                deaths += 1;
            }
            Err(other) => panic!("a death while writing reported as {other:?}"),
        }
    }
    assert!(deaths > 0, "no worker died: the test did not test anything");
    // A kill armed by a task that succeeded may still come, while its
    // worker is idle; join waits for the pool to settle and reaps everyone.
    pool.close();
    pool.join().unwrap();
    assert!(pool.worker_pids().is_empty());
}

#[test]
fn a_death_is_seen_even_when_a_forked_child_keeps_the_channel_open() {
    // The task forks (without exec): the grandchild inherits the worker's
    // channel and output pipes and outlives the worker. The worker's death
    // must still be reported at once.
    fn fork_then_die(pid_file: String) -> u8 {
        // SAFETY: the child only calls async-signal-safe functions (sleep
        // via nanosleep, _exit) before it ends.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                std::thread::sleep(std::time::Duration::from_secs(600));
                // SAFETY: `_exit` is always safe to call.
                unsafe { libc::_exit(0) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                std::fs::write(pid_file, child.as_raw().to_string()).unwrap();
                std::process::abort()
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild").to_str().unwrap().to_owned();
    let pool = Pool::new(1).unwrap();
    let h = pool.apply_async(fork_then_die, pid_file.clone()).unwrap();
    let outcome = h.get_timeout(common::HANG);
    let grandchild: i32 = std::fs::read_to_string(&pid_file).unwrap().parse().unwrap();
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(grandchild), Signal::SIGKILL);
    let err = outcome.unwrap_err();
    assert!(
        matches!(&err, Error::WorkerDied { cause, .. } if cause.signal() == Some(6)),
        "{err:?}"
    );
    assert_pool_whole(&pool);
}

#[test]
fn each_kind_of_death_during_apply_async_reaches_the_error_callback() {
    let pool = Pool::new(2).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let handles: Vec<_> = ["sigkill", "segfault", "abort", "exit"]
        .into_iter()
        .map(|how| {
            let tx = tx.clone();
            pool.with_error_callback(move |e: &Error| tx.send(e.clone()).unwrap())
                .apply_async(die, how.to_string())
                .unwrap()
        })
        .collect();
    let mut signals = Vec::new();
    for h in &handles {
        match h.get() {
            Err(Error::WorkerDied { cause, .. }) => signals.push((cause.signal(), cause.code())),
            other => panic!("expected WorkerDied, got {other:?}"),
        }
    }
    signals.sort();
    assert_eq!(
        signals,
        [
            (None, Some(7)),
            (Some(6), None),
            (Some(9), None),
            (Some(11), None)
        ]
    );
    for _ in 0..4 {
        assert!(rx.recv_timeout(common::HANG).unwrap().is_worker_died());
    }
    assert_pool_whole(&pool);
}

#[test]
fn an_idle_worker_that_dies_is_replaced_and_fails_nothing() {
    let pool = Pool::new(2).unwrap();
    let victim = common::Proc::new(pool.worker_pids()[0]);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim.pid as i32), Signal::SIGKILL).unwrap();
    // Bounded wait for the supervisor to notice and replace it.
    let start = std::time::Instant::now();
    while pool.worker_pids().contains(&victim.pid) || pool.worker_pids().len() < 2 {
        assert!(start.elapsed() < common::HANG, "the idle worker was not replaced");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert!(victim.is_gone(), "the dead idle worker was reaped");
    assert_pool_whole(&pool);
}

fn hog(bytes: usize) -> usize {
    vec![1u8; bytes].len()
}

#[test]
fn running_out_of_memory_under_the_pool_limit_is_reported_as_such() {
    let pool = Pool::builder()
        .processes(1)
        .max_memory_per_worker(128 << 20)
        .build()
        .unwrap();
    let err = pool.apply(hog, 1 << 30).unwrap_err();
    assert!(
        matches!(err, Error::MemoryLimit { limit, .. } if limit == 128 << 20),
        "{err:?}"
    );
    assert_eq!(pool.apply(hog, 1 << 20).unwrap(), 1 << 20);
}

fn exit_at(x: u32) -> u32 {
    if x == 100 {
        std::process::exit(3);
    }
    x
}

/// Tasks sent ahead to a worker that dies never started there: they run
/// elsewhere. Those it ran but whose results it held back (result
/// coalescing: at most 16) died with it: `WorkerDied` with the same pid and
/// cause, or, with retries, they run again.
#[test]
fn jobs_sent_ahead_to_a_dying_worker_run_elsewhere() {
    let pool = Pool::new(2).unwrap();
    // Trivial tasks: the pool sends workers several jobs at a time.
    pool.with_chunksize(1).map(exit_at, 0..100).unwrap();
    let handles: Vec<_> = (0..300).map(|i| pool.apply_async(exit_at, i).unwrap()).collect();
    let results: Vec<_> = handles.iter().map(|h| h.get()).collect();
    let Err(Error::WorkerDied { pid, attempts: 1, .. }) = &results[100] else {
        panic!("task 100: {:?}", results[100]);
    };
    let mut lost = 0;
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(v) => assert_eq!(*v as usize, i),
            Err(Error::WorkerDied {
                pid: died,
                cause: ExitCause::Exited(3),
                attempts: 1,
                ..
            }) if died == pid && i < 100 => lost += 1,
            _ if i == 100 => {}
            other => panic!("task {i}: {other:?}"),
        }
    }
    assert!(lost <= 16, "{lost} results held back and lost");
    assert_pool_whole(&pool);
    // With a retry, every other task gives its value.
    let handles: Vec<_> = (0..300)
        .map(|i| pool.with_retries(1).apply_async(exit_at, i).unwrap())
        .collect();
    for (i, h) in handles.iter().enumerate() {
        match (i, h.get()) {
            (100, Err(Error::WorkerDied { attempts: 2, .. })) => {}
            (_, Ok(v)) if v as usize == i && i != 100 => {}
            (_, other) => panic!("task {i}: {other:?}"),
        }
    }
    assert_pool_whole(&pool);
}

fn pid_of(_: u32) -> u32 {
    std::process::id()
}

#[test]
fn a_task_handed_to_a_worker_killed_while_idle_runs_elsewhere() {
    let pool = Pool::new(1).unwrap();
    for round in 0..20 {
        // Kill the idle worker and hand it a task at once, before its
        // supervisor can notice: the task never started there, so it runs
        // on the replacement, and nothing fails.
        let victim = pool.worker_pids()[0];
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
        let ran_on = pool
            .apply(pid_of, round)
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_ne!(ran_on, victim, "round {round}");
    }
}

/// A task that rewrites its worker's started-job marker (as a hostile
/// task can: it is a page of the worker's memory) and exits makes its job
/// look as if it never started, which sends it back to the queue without
/// counting an attempt. That happens a bounded number of times; then the
/// job counts as started and fails. (Before, it went round forever; the
/// task stops forging after 10 runs so that the old code fails instead of
/// hanging.)
#[test]
fn a_forged_marker_cannot_requeue_a_job_forever() {
    let runs = tempfile::NamedTempFile::new().unwrap();
    fn forge_and_exit(log: String) -> u32 {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        file.write_all(b"x").unwrap();
        let runs = std::fs::read(&log).unwrap().len();
        if runs <= 10 {
            let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
            let line = maps.lines().find(|l| l.contains("procpool-marker")).unwrap();
            let start = usize::from_str_radix(line.split('-').next().unwrap(), 16).unwrap();
            // SAFETY: none, on purpose: the first word of the marker page
            // is the started job's id; this says another job started.
            unsafe { std::ptr::with_exposed_provenance_mut::<u64>(start).write_volatile(u64::MAX - 7) };
        }
        std::process::exit(3)
    }
    let pool = Pool::new(1).unwrap();
    let err = pool
        .apply(forge_and_exit, runs.path().display().to_string())
        .unwrap_err();
    assert!(err.is_worker_died(), "{err:?}");
    let runs = std::fs::read(runs.path()).unwrap().len();
    assert_eq!(
        runs, 4,
        "the job ran {runs} times: 1 + 3 requeues as never started"
    );
    assert_pool_whole(&pool);
}
