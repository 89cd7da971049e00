//! What still works in a sandboxed worker, and the state it is locked in.

use std::io::Read;
use std::time::Duration;

use procpool::{Error, Pool, Sandbox};

use super::{assert_all_serve, assert_refused, sandboxed};
use crate::common::{assert_child_passed, run_child_test};

#[test]
fn threads_panics_and_output_work_inside() {
    let pool = sandboxed(2, Sandbox::strict());
    fn threads(n: u64) -> u64 {
        let scoped: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4).map(|i| s.spawn(move || i * n)).collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        let rayon = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        let par: u64 = rayon.install(|| {
            use rayon::prelude::*;
            (0..1000u64).into_par_iter().map(|x| x * n).sum()
        });
        println!("threads done for {n}");
        eprintln!("and on stderr");
        scoped + par
    }
    assert_eq!(pool.map(threads, [1u64, 2]).unwrap(), [6 + 499_500, 12 + 999_000]);
    fn boom(x: u32) -> u32 {
        assert!(x != 7, "seven is not allowed");
        x
    }
    let err = pool.apply(boom, 7).unwrap_err();
    let Error::Panicked { panic, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(panic.message(), "seven is not allowed");
    assert!(
        panic.location().unwrap().file().ends_with("sandbox/works.rs"),
        "{panic:?}"
    );
    // Allocation well past a few pages works.
    assert_eq!(
        pool.apply(
            |n: usize| vec![3u8; n].iter().map(|&b| b as usize).sum::<usize>(),
            64 << 20
        )
        .unwrap(),
        3 * (64 << 20)
    );
    assert_all_serve(&pool, 2);
}

#[test]
fn panics_carry_a_backtrace_inside_the_sandbox() {
    let out = run_child_test("sandbox::works::child_backtrace", &[("RUST_BACKTRACE", "1")]);
    assert_child_passed(&out);
}

#[test]
#[ignore = "run by panics_carry_a_backtrace_inside_the_sandbox"]
fn child_backtrace() {
    let pool = sandboxed(1, Sandbox::strict());
    fn deep_inside_the_parser(_: ()) {
        panic!("malformed input");
    }
    let err = pool.apply(deep_inside_the_parser, ()).unwrap_err();
    let Error::Panicked { panic, .. } = &err else {
        panic!("{err:?}")
    };
    let backtrace = panic.backtrace().expect("a backtrace with RUST_BACKTRACE=1");
    assert!(backtrace.contains("deep_inside_the_parser"), "{backtrace}");
}

#[test]
fn timeouts_the_memory_cap_recycling_and_stats_work_inside() {
    let pool = Pool::builder()
        .processes(1)
        .max_memory_per_worker(256 << 20)
        .max_tasks_per_child(3)
        .sandbox(Sandbox::strict())
        .build()
        .unwrap();
    let err = pool.apply(|n: usize| vec![1u8; n].len(), 1 << 30).unwrap_err();
    assert!(err.is_memory_limit(), "{err:?}");
    fn sleep(ms: u64) -> u64 {
        std::thread::sleep(Duration::from_millis(ms));
        ms
    }
    let err = pool
        .with_timeout(Duration::from_millis(200))
        .apply(sleep, 60_000)
        .unwrap_err();
    assert!(err.is_timed_out(), "{err:?}");
    let first = pool.worker_pids()[0];
    for i in 0..4 {
        assert_eq!(pool.apply(sleep, i).unwrap(), i);
    }
    assert_ne!(pool.worker_pids()[0], first, "recycled after 3 tasks");
    let stats = pool.stats();
    assert!(stats.tasks_completed >= 4 && stats.respawns >= 3, "{stats:?}");
}

#[test]
fn the_initializer_runs_before_the_lockdown() {
    use std::sync::OnceLock;
    static MODEL: OnceLock<String> = OnceLock::new();
    fn load(path: String) -> Result<(), String> {
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map_err(|e| e.to_string())?;
        MODEL.set(text).map_err(|_| "twice".to_owned())
    }
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model.txt");
    std::fs::write(&model, "weights").unwrap();
    let pool = Pool::builder()
        .processes(1)
        .initializer(load, model.display().to_string())
        .sandbox(Sandbox::strict())
        .build()
        .unwrap();
    fn infer(_: ()) -> (Option<String>, bool) {
        (
            MODEL.get().cloned(),
            std::fs::read_to_string(std::env::temp_dir()).is_ok(),
        )
    }
    assert_eq!(
        pool.apply(infer, ()).unwrap(),
        (Some("weights".to_owned()), false)
    );
    fn environment(_: ()) -> Vec<String> {
        std::env::vars().map(|(k, _)| k).collect()
    }
    assert_eq!(
        pool.apply(environment, ()).unwrap(),
        kept_environment(),
        "the environment was not cleared"
    );
}

/// The variables a cleared environment keeps (those of this process's
/// RUST_BACKTRACE and RUST_LIB_BACKTRACE that are set).
fn kept_environment() -> Vec<String> {
    ["RUST_BACKTRACE", "RUST_LIB_BACKTRACE"]
        .into_iter()
        .filter(|k| std::env::var_os(k).is_some())
        .map(str::to_owned)
        .collect()
}

#[test]
fn bad_knobs_are_clear_errors() {
    let err = Pool::builder()
        .sandbox(Sandbox::strict().allow_syscalls(["sokcet"]))
        .build()
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument(_)) && err.to_string().contains("sokcet"),
        "{err}"
    );
    let err = Pool::builder()
        .sandbox(Sandbox::strict().allow_read("/no/such/dir"))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("/no/such/dir"), "{err}");
    // A call allowed by name is allowed.
    let pool = sandboxed(1, Sandbox::strict().allow_syscalls(["socket"]));
    fn udp(_: ()) -> bool {
        std::net::UdpSocket::bind("127.0.0.1:0").is_ok()
    }
    // `bind` is still refused: only `socket` was allowed.
    assert_refused(&pool.apply(udp, ()).unwrap_err(), "bind");
    let open = sandboxed(1, Sandbox::strict().allow_network());
    assert!(open.apply(udp, ()).unwrap());
    // Log-only mode refuses nothing (the kernel logs what it would have).
    let audit = sandboxed(1, Sandbox::strict().log_only());
    assert!(audit.apply(udp, ()).unwrap());
}

#[test]
fn the_worker_is_locked_down_as_documented() {
    let pool = sandboxed(1, Sandbox::strict().max_file_size(1 << 20).max_open_files(32));
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct State {
        fds: Vec<i32>,
        dumpable: i32,
        no_new_privs: i32,
        seccomp: i32,
        limits: [u64; 3],
        environment: Vec<String>,
    }
    fn state(_: ()) -> State {
        let limit = |resource| {
            // SAFETY: `getrlimit` writes one `rlimit` into ours.
            unsafe {
                let mut l: libc::rlimit = std::mem::zeroed();
                libc::getrlimit(resource, &mut l);
                l.rlim_cur
            }
        };
        // SAFETY: `fcntl(F_GETFD)` and `prctl` reads, integer arguments.
        unsafe {
            State {
                fds: (0..1024)
                    .filter(|&fd| libc::fcntl(fd, libc::F_GETFD) >= 0)
                    .collect(),
                dumpable: libc::prctl(libc::PR_GET_DUMPABLE),
                no_new_privs: libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0),
                seccomp: libc::prctl(libc::PR_GET_SECCOMP),
                limits: [
                    limit(libc::RLIMIT_CORE),
                    limit(libc::RLIMIT_FSIZE),
                    limit(libc::RLIMIT_NOFILE),
                ],
                environment: std::env::vars().map(|(k, _)| k).collect(),
            }
        }
    }
    let expected = State {
        // /dev/null, the two output pipes, the channel: nothing else.
        fds: vec![0, 1, 2, 3],
        dumpable: 0,
        no_new_privs: 1,
        seccomp: 2,
        limits: [0, 1 << 20, 32],
        environment: kept_environment(),
    };
    assert_eq!(pool.apply(state, ()).unwrap(), expected);
}

#[test]
fn a_write_past_the_file_size_limit_fails_with_efbig() {
    let dir = tempfile::tempdir().unwrap();
    let pool = sandboxed(1, Sandbox::strict().allow_write(dir.path()).max_file_size(1000));
    fn write(path: String) -> Option<i32> {
        std::fs::write(path, vec![7u8; 2000]).err()?.raw_os_error()
    }
    let big = dir.path().join("big").display().to_string();
    assert_eq!(pool.apply(write, big).unwrap(), Some(libc::EFBIG));
    assert_all_serve(&pool, 1);
}

#[test]
fn each_worker_gets_a_private_scratch_directory_removed_when_it_ends() {
    let pool = sandboxed(2, Sandbox::strict().scratch());
    fn use_scratch(i: u32) -> (String, bool, Option<i32>) {
        let dir = procpool::sandbox::scratch_dir().expect("a scratch directory");
        std::fs::write(dir.join(format!("page-{i}")), "x").unwrap();
        // Next to it, in the shared temporary directory: refused.
        let beside = dir.parent().unwrap().join(format!("procpool-escape-{i}"));
        let escape = std::fs::write(&beside, "x").err().and_then(|e| e.raw_os_error());
        (dir.display().to_string(), std::env::temp_dir() == dir, escape)
    }
    let used = pool.with_chunksize(1).map(use_scratch, 0..8).unwrap();
    let mut dirs: Vec<_> = used.iter().map(|(dir, _, _)| dir.clone()).collect();
    dirs.sort();
    dirs.dedup();
    for (dir, is_temp_dir, escape) in &used {
        assert!(is_temp_dir, "{dir}");
        assert_eq!(*escape, Some(libc::EACCES));
        assert!(std::path::Path::new(dir).is_dir(), "{dir}");
    }
    drop(pool);
    for dir in dirs {
        assert!(!std::path::Path::new(&dir).exists(), "{dir} outlived its worker");
    }
}

#[test]
fn a_cancelled_task_ends_alone_in_a_sandboxed_pool() {
    // Queued or running when cancelled, it ends as `Cancelled` either way.
    let pool = sandboxed(1, Sandbox::strict());
    let slow = pool
        .apply_async(|ms: u64| std::thread::sleep(Duration::from_millis(ms)), 60_000)
        .unwrap();
    slow.cancel();
    assert!(matches!(slow.get(), Err(Error::Cancelled)));
    assert_all_serve(&pool, 1);
}

#[test]
fn what_a_sandboxed_task_prints_reaches_the_parents_output() {
    let out = run_child_test("sandbox::works::child_prints", &[]);
    assert_child_passed(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("printed inside the sandbox: 41"), "{stdout}");
    assert!(stderr.contains("and on stderr: 41"), "{stderr}");
}

#[test]
#[ignore = "run by what_a_sandboxed_task_prints_reaches_the_parents_output"]
fn child_prints() {
    let pool = sandboxed(1, Sandbox::strict());
    fn shout(x: u32) -> u32 {
        println!("printed inside the sandbox: {x}");
        eprintln!("and on stderr: {x}");
        x + 1
    }
    assert_eq!(pool.apply(shout, 41).unwrap(), 42);
}

/// A scratch directory nested 20,000 deep (what a hostile task can build;
/// built here by the test, because under Landlock every level costs the
/// task a walk to the root) is removed when its worker ends, without
/// recursing: a recursive removal overflowed the stack of the parent's
/// thread, or ran it out of descriptors.
#[test]
fn a_deep_scratch_tree_is_removed_without_harm_to_the_parent() {
    let pool = sandboxed(1, Sandbox::strict().scratch());
    fn scratch(_: ()) -> String {
        procpool::sandbox::scratch_dir().unwrap().display().to_string()
    }
    let dir = pool.apply(scratch, ()).unwrap();
    let path = std::ffi::CString::new(dir.as_bytes()).unwrap();
    // SAFETY: calls on descriptors this test holds, with NUL-terminated
    // names; one or two open at a time.
    unsafe {
        let mut fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
        assert!(fd >= 0);
        for _ in 0..20_000 {
            assert_eq!(libc::mkdirat(fd, c"d".as_ptr(), 0o700), 0);
            let next = libc::openat(fd, c"d".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY);
            libc::close(fd);
            fd = next;
        }
        libc::close(fd);
    }
    drop(pool);
    assert!(!std::path::Path::new(&dir).exists(), "{dir} was left behind");
}
