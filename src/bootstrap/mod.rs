//! Worker mode: how a copy of the program becomes a worker, with no line of
//! user code.
//!
//! The parent starts a worker by re-running its own executable
//! (`/proc/self/exe`, the *spawn* start method) with the variable
//! [`ENV_VAR`] set and the argument [`WORKER_ARG`]. A constructor that runs
//! before `main` (`sys::ctor`) calls [`on_load`]: in a process without the
//! variable it returns at once; in a worker it removes the variable (so the
//! worker's own children are normal programs), checks it runs the same
//! executable as the parent, and runs the worker loop instead of `main`.
//! That is why it also works in `cargo test` and `cargo nextest` test
//! binaries and in doc tests: whatever the `main`, the worker never reaches
//! it.
//!
//! The constructor is an ordinary (unprioritised) `.init_array` entry, so
//! the loader runs it in link order: after prioritised constructors (the
//! Rust runtime's own) and the program crate's constructors (C++ statics,
//! `inventory` registrations, `#[ctor]`s), which are linked first. A
//! dependency linked after procpool would have its constructors run after
//! the worker took over, that is, never.
//!
//! If the constructor did not run (a platform or link setup that drops
//! constructors), the copy would run `main`. Two guards keep that from
//! turning into a hang or a chain of processes: `main` sees an unknown
//! argument ([`WORKER_ARG`]), which makes most argument parsers (and the test
//! harness) exit at once; and [`refuse_pool_in_unbooted_worker`] makes
//! `Pool::new` in such a process fail instead of starting workers of its
//! own, and tells the parent why. The parent gives up on a worker that does
//! not answer within its start timeout.

mod identity;

use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) use identity::{Identity, WorkerEnv};

use crate::error::Error;
use crate::protocol::message;
use crate::sys;

/// The environment variable that marks a process as a worker; its value is
/// a [`WorkerEnv`].
pub(crate) const ENV_VAR: &str = "PROCPOOL_WORKER";

/// The argument a worker is started with: harmless when the bootstrap
/// runs, a loud "unknown option" for a `main` that runs by mistake.
pub(crate) const WORKER_ARG: &str = "--procpool-worker";

/// Exit code of a worker that could not take over its channel or whose
/// environment is malformed.
pub(crate) const EXIT_BAD_SETUP: i32 = 121;
/// Exit code of a worker that refused to serve (another executable).
pub(crate) const EXIT_REJECTED: i32 = 122;
/// Exit code of a worker that received something it cannot obey.
pub(crate) const EXIT_PROTOCOL: i32 = 123;

/// Called before `main` in every process that links procpool.
pub(crate) fn on_load() {
    let Some(value) = std::env::var_os(ENV_VAR) else {
        return;
    };
    sys::process::remove_env(ENV_VAR);
    crate::worker::child::run(value)
}

/// Fails when this process was started as a worker but is running normal
/// code (its bootstrap did not run), and tells the parent so.
pub(crate) fn refuse_pool_in_unbooted_worker() -> Result<(), Error> {
    refuse_if_worker(std::env::var_os(ENV_VAR))
}

fn refuse_if_worker(marker: Option<OsString>) -> Result<(), Error> {
    let Some(value) = marker else {
        return Ok(());
    };
    let reason = "the worker bootstrap did not run in this process, so it ran `main` instead of \
                  serving tasks; procpool relies on a constructor that runs before `main` \
                  (the `ctor` crate), which this build or platform dropped";
    notify_parent(&value, reason);
    Err(Error::Bootstrap(reason.to_owned()))
}

fn notify_parent(value: &OsString, reason: &str) {
    // The descriptor is taken over (and closed) once: a second `Pool::new`
    // must not close whatever has reused its number since.
    static NOTIFIED: AtomicBool = AtomicBool::new(false);
    if NOTIFIED.swap(true, Ordering::SeqCst) {
        return;
    }
    let Some(env) = value.to_str().and_then(|v| WorkerEnv::parse(v).ok()) else {
        return;
    };
    if let Ok(channel) = sys::fd::adopt_channel(env.fd) {
        let _ = sys::fd::send_all(&channel, &message::text_frame(message::REJECT, reason));
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::fd::IntoRawFd;
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::protocol::frame::{self, DEFAULT_MAX_BODY};
    use crate::protocol::message::FromWorker;

    #[test]
    fn a_normal_process_may_make_pools() {
        assert!(refuse_if_worker(None).is_ok());
    }

    #[test]
    fn an_unbooted_worker_refuses_to_make_a_pool_and_tells_its_parent() {
        let (mut parent, child) = UnixStream::pair().unwrap();
        let env = WorkerEnv::new(child.into_raw_fd(), Identity::current().unwrap(), None);
        let err = refuse_if_worker(Some(env.to_value().into())).unwrap_err();
        assert!(
            matches!(&err, Error::Bootstrap(m) if m.contains("constructor")),
            "{err:?}"
        );
        let mut body = Vec::new();
        let kind = frame::read_frame(&mut parent, &mut body, DEFAULT_MAX_BODY).unwrap();
        let FromWorker::Reject(reason) = FromWorker::decode(kind, &body).unwrap() else {
            panic!("expected a rejection");
        };
        assert!(reason.contains("did not run"), "{reason}");
        // The channel was closed after the message.
        assert_eq!(parent.read(&mut [0u8; 1]).unwrap(), 0);
    }
}
