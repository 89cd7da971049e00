//! Worker mode: workers start with no user code, refuse to serve a parent
//! that runs another executable, and a program that is not a procpool
//! worker gives a clear start error, never a hang or a chain of processes.

mod common;

use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use procpool::{Error, Pool};

/// Starts this test binary as a worker by hand, with the given value of
/// `PROCPOOL_WORKER` (`{fd}` is replaced by the channel's descriptor), and
/// returns what it sent on the channel, its exit code, and its stderr.
fn start_worker_by_hand(value: &str) -> (Option<(u8, String)>, Option<i32>, String) {
    let (ours, theirs): (OwnedFd, OwnedFd) =
        socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::empty()).unwrap();
    // Only the child's end is inherited.
    fcntl(&ours, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).unwrap();
    let value = value.replace("{fd}", &theirs.as_raw_fd().to_string());
    let child = Command::new(std::env::current_exe().unwrap())
        .env("PROCPOOL_WORKER", value)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(theirs);
    let mut channel = UnixStream::from(ours);
    channel.set_read_timeout(Some(common::HANG)).unwrap();
    let mut frame = Vec::new();
    let _ = channel.read_to_end(&mut frame);
    let message = (frame.len() >= 8).then(|| (frame[4], String::from_utf8_lossy(&frame[8..]).into_owned()));
    let output = child.wait_with_output().unwrap();
    (
        message,
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn this_executable() -> (u64, u64) {
    let meta = std::fs::metadata(std::env::current_exe().unwrap()).unwrap();
    (meta.dev(), meta.ino())
}

const REJECT: u8 = 0x82;

#[test]
fn a_worker_refuses_a_parent_running_another_executable() {
    let (dev, ino) = this_executable();
    let value = format!("v3;fd={{fd}};dev={dev};ino={};layout=0", ino + 1);
    let (message, code, _) = start_worker_by_hand(&value);
    let (kind, reason) = message.expect("the worker said nothing");
    assert_eq!(kind, REJECT);
    assert!(reason.contains("another executable file"), "{reason}");
    assert_eq!(code, Some(122));
}

#[test]
fn a_worker_refuses_a_parent_running_another_build() {
    let (dev, ino) = this_executable();
    let value = format!("v3;fd={{fd}};dev={dev};ino={ino};layout=deadbeef");
    let (message, code, _) = start_worker_by_hand(&value);
    let (kind, reason) = message.expect("the worker said nothing");
    assert_eq!(kind, REJECT);
    assert!(reason.contains("another build"), "{reason}");
    assert_eq!(code, Some(122));
}

#[test]
fn a_worker_refuses_another_protocol_version() {
    let (dev, ino) = this_executable();
    let value = format!("v99;fd={{fd}};dev={dev};ino={ino};layout=0");
    let (message, code, _) = start_worker_by_hand(&value);
    let (kind, reason) = message.expect("the worker said nothing");
    assert_eq!(kind, REJECT);
    assert!(reason.contains("protocol 99"), "{reason}");
    assert_eq!(code, Some(122));
}

#[test]
fn a_malformed_worker_variable_ends_the_process_with_a_message() {
    let (message, code, stderr) = start_worker_by_hand("garbage");
    assert!(message.is_none());
    assert_eq!(code, Some(121));
    assert!(stderr.contains("malformed PROCPOOL_WORKER"), "{stderr}");
    // And it never ran the test harness (which would print "running").
    assert!(!stderr.contains("running"), "{stderr}");
}

#[test]
fn a_program_that_is_not_a_worker_is_a_clear_start_error() {
    let started = Instant::now();
    let err = Pool::builder()
        .processes(2)
        .worker_program_for_tests("/bin/true")
        .build()
        .unwrap_err();
    assert!(started.elapsed() < common::HANG);
    let Error::WorkerStart { reason, .. } = &err else {
        panic!("expected WorkerStart, got {err:?}");
    };
    assert!(reason.contains("ended before the handshake"), "{reason}");
    assert!(reason.contains("exited with code 0"), "{reason}");
}

#[test]
fn a_worker_that_never_answers_is_killed_after_the_start_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("silent-worker");
    let pid_file = dir.path().join("pid");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho $$ > {}\nexec sleep 600\n", pid_file.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = Pool::builder()
        .processes(1)
        .start_timeout(Duration::from_millis(500))
        .worker_program_for_tests(&script)
        .build()
        .unwrap_err();
    let Error::WorkerStart { pid, reason } = &err else {
        panic!("expected WorkerStart, got {err:?}");
    };
    assert!(
        reason.contains("did not answer the handshake within 500ms"),
        "{reason}"
    );
    assert!(reason.contains("SIGKILL"), "{reason}");
    let recorded: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(recorded, *pid);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the silent worker was left behind"
    );
}

#[test]
fn workers_run_no_main_and_leave_no_marker_for_their_children() {
    fn marker(_: ()) -> (Option<String>, Vec<String>) {
        (std::env::var("PROCPOOL_WORKER").ok(), std::env::args().collect())
    }
    let pool = Pool::new(1).unwrap();
    let (marker, args) = pool.apply(marker, ()).unwrap();
    assert_eq!(marker, None, "a task's children would become workers");
    assert_eq!(args.last().map(String::as_str), Some("--procpool-worker"));
}

#[test]
fn a_task_can_use_a_pool_of_its_own() {
    fn nested(n: u64) -> (u32, Vec<u64>) {
        let inner = Pool::new(2).unwrap();
        let squares = inner.map(|x: u64| x * x, 0..n).unwrap();
        (std::process::id(), squares)
    }
    let pool = Pool::new(1).unwrap();
    let (pid, squares) = pool.apply(nested, 5).unwrap();
    assert_eq!(squares, [0, 1, 4, 9, 16]);
    assert_eq!(pool.worker_pids(), [pid]);
}

static CONSTRUCTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A plain, unprioritised `.init_array` entry: what C++ static
/// initialisers and crates like `inventory` emit.
#[used]
// SAFETY: the function only stores to an atomic; it is safe to run before
// `main`.
#[unsafe(link_section = ".init_array")]
static PROGRAM_CONSTRUCTOR: extern "C" fn() = {
    extern "C" fn construct() {
        CONSTRUCTED.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    construct
};

#[test]
fn the_programs_own_constructors_run_in_workers_before_tasks() {
    // Static constructors of the program (C++ statics, `inventory`
    // registrations, `#[ctor]`s) run before a worker takes over.
    fn constructed(_: ()) -> bool {
        CONSTRUCTED.load(std::sync::atomic::Ordering::SeqCst)
    }
    assert!(constructed(()), "the constructor did not run in the parent");
    let pool = Pool::new(1).unwrap();
    assert!(
        pool.apply(constructed, ()).unwrap(),
        "the constructor did not run in the worker"
    );
}

#[test]
fn any_start_timeout_is_accepted() {
    for timeout in [Duration::from_nanos(1), Duration::MAX] {
        let result = Pool::builder().processes(1).start_timeout(timeout).build();
        match result {
            Ok(pool) => assert_eq!(pool.apply(|x: u8| x + 1, 1).unwrap(), 2),
            // A nanosecond is too short for any worker: a clean start error.
            Err(e) => assert!(matches!(e, Error::WorkerStart { .. }), "{timeout:?}: {e:?}"),
        }
    }
    assert!(Pool::builder().start_timeout(Duration::ZERO).build().is_err());
}
