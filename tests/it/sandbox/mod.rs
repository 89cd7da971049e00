//! Sandboxed workers (`PoolBuilder::sandbox`): each forbidden action is
//! refused, the task fails alone with an error naming it, and the pool
//! goes on; what a task needs still works inside. The tests run as root in
//! CI: only the sandbox can stop them.

mod refused;
mod works;

use procpool::{Error, Pool, Sandbox};

pub(super) fn sandboxed(processes: usize, sandbox: Sandbox) -> Pool {
    Pool::builder()
        .processes(processes)
        .sandbox(sandbox)
        .build()
        .unwrap()
}

/// Asserts that `err` is the sandbox refusing `syscall`.
#[track_caller]
pub(super) fn assert_refused(err: &Error, syscall: &str) {
    match err {
        Error::SandboxViolation { syscall: s, pid, .. } => {
            assert_eq!(s, syscall, "{err}");
            assert!(*pid > 0);
            assert!(err.to_string().contains(syscall), "{err}");
        }
        other => panic!("expected the sandbox to refuse {syscall}, got {other:?}"),
    }
}

/// Asserts that all `n` workers of `pool` are up and serve (the common
/// check meets at a unix socket, which a sandboxed task may not open).
#[track_caller]
pub(super) fn assert_all_serve(pool: &Pool, n: usize) {
    assert_eq!(pool.worker_pids().len(), n);
    let doubled = pool
        .with_chunksize(1)
        .map(|x: u32| x * 2, 0..4 * n as u32)
        .unwrap();
    assert_eq!(doubled, (0..4 * n as u32).map(|x| x * 2).collect::<Vec<_>>());
}

pub(super) fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}
