//! The foundation's promises about the processes around a pool: workers
//! hold no descriptor of the parent's but their own, a program started
//! through the dynamic loader gets working workers, a program that reaps
//! children itself gets a hint instead of a mystery, and a pool too large
//! for the machine is an error, not an abort.

use crate::common;

use std::io::Read;
use std::os::fd::AsRawFd;

use procpool::{Error, Pool};

#[test]
fn workers_do_not_hold_the_parents_descriptors() {
    // A pipe without close-on-exec, as `libc::pipe` makes it.
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.map(|x: u32| x + 1, 0..4).unwrap(), [1, 2, 3, 4]);
    let pipe = std::fs::read_link(format!("/proc/self/fd/{}", write_end.as_raw_fd())).unwrap();
    for pid in pool.worker_pids() {
        let held: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .collect();
        assert!(
            !held.contains(&pipe),
            "worker {pid} holds the parent's pipe: {held:?}"
        );
        // stdin, stdout, stderr and the channel: nothing else.
        assert!(held.len() <= 4, "worker {pid} holds {held:?}");
    }
    // So the reader sees the end as soon as the parent closes its end.
    drop(write_end);
    let mut reader = std::fs::File::from(read_end);
    let mut rest = Vec::new();
    assert_eq!(reader.read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn a_program_started_through_the_dynamic_loader_gets_working_workers() {
    let loader = "/lib64/ld-linux-x86-64.so.2";
    assert!(
        std::path::Path::new(loader).exists(),
        "no {loader} on this machine"
    );
    let out = common::run_child_test_through(&[loader], "foundation::child_pool_through_the_loader", &[]);
    common::assert_child_passed(&out);
}

#[test]
#[ignore = "run by a_program_started_through_the_dynamic_loader_gets_working_workers"]
fn child_pool_through_the_loader() {
    assert!(
        std::fs::read_link("/proc/self/exe")
            .unwrap()
            .to_string_lossy()
            .contains("ld-linux"),
        "not started through the loader"
    );
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.map(|x: u64| x * x, 0..5).unwrap(), [0, 1, 4, 9, 16]);
}

#[test]
fn a_program_that_ignores_sigchld_gets_a_hint_when_a_worker_dies() {
    let out = common::run_child_test("foundation::child_sigchld_ignored", &[]);
    common::assert_child_passed(&out);
}

#[test]
#[ignore = "run by a_program_that_ignores_sigchld_gets_a_hint_when_a_worker_dies"]
fn child_sigchld_ignored() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: `SigIgn` installs no handler code.
    unsafe { signal(Signal::SIGCHLD, SigHandler::SigIgn) }.unwrap();
    let pool = Pool::new(1).unwrap();
    let err = pool
        .apply(|_: ()| -> () { std::process::abort() }, ())
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::WorkerDied { .. }), "{err:?}");
    assert!(text.contains("SIGCHLD"), "no hint: {text}");
    // The pool goes on.
    assert_eq!(pool.apply(|x: u8| x + 1, 1).unwrap(), 2);
}

#[test]
fn a_pool_too_large_for_the_machine_is_an_error() {
    // A hundred thousand workers: descriptors, threads or processes run
    // out long before; the program must get an error and go on.
    // With 1024 descriptors, this used to start some 30 000 supervisor
    // threads, until one could not map its guard page and the standard
    // library aborted the program.
    let out = common::run_child_test_through(
        &["prlimit", "--nofile=1024:1024"],
        "foundation::child_huge_pool",
        &[],
    );
    common::assert_child_passed(&out);
}

#[test]
#[ignore = "run by a_pool_too_large_for_the_machine_is_an_error"]
fn child_huge_pool() {
    let err = Pool::new(100_000).unwrap_err();
    println!("Pool::new(100000): {err}");
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("1024 open descriptors")),
        "{err:?}"
    );
    // The program goes on, and a sensible pool still works.
    let pool = Pool::new(2).unwrap();
    assert_eq!(pool.apply(|x: u8| x + 1, 1).unwrap(), 2);
}
