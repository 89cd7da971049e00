//! Worker mode: workers start with no user code, refuse to serve a parent
//! that runs another executable, and a program that is not a procpool
//! worker gives a clear start error, never a hang or a chain of processes.

use crate::common;

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use procpool::{Error, Pool};

/// How a worker is started by hand: the program, arguments run before it
/// (a wrapper such as `setpriv` or `sh -c`), and the value of
/// `PROCPOOL_WORKER`.
struct ByHand<'a> {
    program: std::path::PathBuf,
    wrapper: &'a [&'a str],
    value: String,
}

impl ByHand<'_> {
    fn new(value: String) -> Self {
        ByHand {
            program: std::env::current_exe().unwrap(),
            wrapper: &[],
            value,
        }
    }

    /// Starts the worker with a socket this test made as its stdin, and
    /// returns what it sent on the channel, its exit code, and its stderr.
    fn run(&self) -> (Option<(u8, String)>, Option<i32>, String) {
        let (ours, theirs): (OwnedFd, OwnedFd) =
            socketpair(AddressFamily::Unix, SockType::Stream, None, SockFlag::empty()).unwrap();
        // Only the child's end is inherited.
        fcntl(&ours, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).unwrap();
        let mut command = match self.wrapper {
            [] => Command::new(&self.program),
            [first, rest @ ..] => {
                let mut c = Command::new(first);
                c.args(rest).arg(&self.program);
                c
            }
        };
        let child = command
            .env("PROCPOOL_WORKER", &self.value)
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(command);
        let mut channel = UnixStream::from(ours);
        channel.set_read_timeout(Some(common::HANG)).unwrap();
        // One frame (a worker that answers waits for more), then hang up.
        let mut header = [0u8; 8];
        let message = channel.read_exact(&mut header).ok().map(|()| {
            let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
            let mut body = vec![0u8; len];
            channel.read_exact(&mut body).unwrap();
            (header[4], String::from_utf8_lossy(&body).into_owned())
        });
        drop(channel);
        let output = child.wait_with_output().unwrap();
        (
            message,
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

/// The `PROCPOOL_WORKER` value for the build of `program`, with its fields
/// changed by `edit` (device and inode as `/proc/<pid>/maps` shows them).
fn worker_value(program: &std::path::Path, edit: impl FnOnce(&mut (String, u64, u64, String))) -> String {
    let meta = std::fs::metadata(program).unwrap();
    let dev = (nix::sys::stat::major(meta.dev()) << 32) | nix::sys::stat::minor(meta.dev());
    let mut fields = ("v7".to_owned(), dev, meta.ino(), build_id(program));
    edit(&mut fields);
    let (version, dev, ino, build) = fields;
    format!("{version};fd=0;dev={dev:x};ino={ino};build={build}")
}

/// The hash of `program`'s build id, as the worker computes it, read with
/// `readelf`.
fn build_id(program: &std::path::Path) -> String {
    let out = Command::new("readelf").arg("-n").arg(program).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Build ID: "))
        .expect("the test binary has a build id");
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap());
    let hash = bytes.fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:x}")
}

const REJECT: u8 = 0x82;
const READY: u8 = 0x81;

#[test]
fn a_worker_started_by_hand_with_the_right_value_serves() {
    // The control for the refusals below: the same start, unchanged, works.
    let me = std::env::current_exe().unwrap();
    let (message, code, stderr) = ByHand::new(worker_value(&me, |_| {})).run();
    let (kind, _) = message.unwrap_or_else(|| panic!("the worker said nothing: {stderr}"));
    assert_eq!(kind, READY, "{stderr}");
    // Hung up on before its marker page came: a protocol fault, not a
    // refusal.
    assert_eq!(code, Some(123), "{stderr}");
}

#[test]
fn a_worker_refuses_a_parent_running_another_executable() {
    let me = std::env::current_exe().unwrap();
    let (message, code, _) = ByHand::new(worker_value(&me, |f| f.2 += 1)).run();
    let (kind, reason) = message.expect("the worker said nothing");
    assert_eq!(kind, REJECT);
    assert!(reason.contains("another executable file"), "{reason}");
    assert_eq!(code, Some(122));
}

#[test]
fn a_worker_refuses_a_parent_running_another_build() {
    let me = std::env::current_exe().unwrap();
    let (message, code, _) = ByHand::new(worker_value(&me, |f| f.3 = "deadbeef".into())).run();
    let (kind, reason) = message.expect("the worker said nothing");
    assert_eq!(kind, REJECT);
    assert!(reason.contains("another build"), "{reason}");
    assert_eq!(code, Some(122));
}

#[test]
fn a_worker_refuses_another_protocol_version() {
    let me = std::env::current_exe().unwrap();
    let (message, code, _) = ByHand::new(worker_value(&me, |f| f.0 = "v99".into())).run();
    let (kind, reason) = message.expect("the worker said nothing");
    assert_eq!(kind, REJECT);
    assert!(reason.contains("protocol 99"), "{reason}");
    assert_eq!(code, Some(122));
}

#[test]
fn a_worker_refuses_a_channel_its_parent_did_not_make() {
    // The worker's parent is a shell; the channel comes from this test.
    let me = std::env::current_exe().unwrap();
    let mut by_hand = ByHand::new(worker_value(&me, |_| {}));
    // (A background job's stdin is /dev/null unless redirected from a copy.)
    by_hand.wrapper = &["/bin/sh", "-c", "exec 3<&0; \"$0\" <&3 3<&- & wait $!"];
    let (message, code, stderr) = by_hand.run();
    assert_eq!(message, None, "it must not answer a stranger");
    assert_eq!(code, Some(122), "{stderr}");
    assert!(stderr.contains("refusing worker mode"), "{stderr}");
    assert!(stderr.contains("not by this worker's parent"), "{stderr}");
}

/// The attack: a user runs a setuid copy of a program that links procpool
/// with the worker variable set and a socket of their own as stdin, to make
/// it run code of their choosing with the owner's rights.
#[test]
fn a_setuid_program_refuses_worker_mode() {
    if std::fs::metadata("/proc/self").unwrap().uid() != 0
        || Command::new("setpriv").arg("--version").output().is_err()
    {
        panic!("this test needs root and setpriv (CI runs as root)");
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.path().join("setuid-copy");
    std::fs::copy(std::env::current_exe().unwrap(), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let mut by_hand = ByHand::new(worker_value(&copy, |_| {}));
    by_hand.program = copy;
    by_hand.wrapper = &["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];
    let (message, code, stderr) = by_hand.run();
    assert_eq!(message, None, "it must not answer: {stderr}");
    assert_eq!(code, Some(122), "{stderr}");
    assert!(
        stderr.contains("refusing worker mode: secure-execution mode"),
        "{stderr}"
    );
}

#[test]
fn a_malformed_worker_variable_ends_the_process_with_a_message() {
    let (message, code, stderr) = ByHand::new("garbage".into()).run();
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
fn workers_leave_no_marker_for_their_children_and_keep_the_programs_arguments_and_name() {
    fn seen(_: ()) -> (Option<String>, Vec<u8>, String) {
        (
            std::env::var("PROCPOOL_WORKER").ok(),
            std::fs::read("/proc/self/cmdline").unwrap(),
            std::fs::read_to_string("/proc/self/comm").unwrap(),
        )
    }
    let pool = Pool::new(1).unwrap();
    let (marker, cmdline, comm) = pool.apply(seen, ()).unwrap();
    assert_eq!(marker, None, "a task's children would become workers");
    assert_eq!(
        String::from_utf8_lossy(&cmdline),
        String::from_utf8_lossy(&std::fs::read("/proc/self/cmdline").unwrap()),
        "a worker's argv is the parent's"
    );
    assert_eq!(
        comm,
        std::fs::read_to_string("/proc/self/comm").unwrap(),
        "ps shows the program's name"
    );
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
