//! Worker mode: how a copy of the program knows it is a worker, and whom it
//! may serve.
//!
//! The parent starts a worker by re-running its own program (the *spawn*
//! start method) with its own arguments and the variable [`ENV_VAR`] set
//! (a [`WorkerEnv`]). A constructor that runs before `main`
//! (`worker::boot`) calls [`on_load`]: in a process without the variable it
//! returns at once; in a worker it removes the variable (so the worker's
//! own children are normal programs) and the worker loop runs instead of
//! `main`. That is why it also works in `cargo test` and `cargo nextest`
//! test binaries and in doc tests: whatever the `main`, the worker never
//! reaches it.
//!
//! The constructor is an ordinary (unprioritised) `.init_array` entry, so
//! the loader runs it in link order: after prioritised constructors (the
//! Rust runtime's own) and the program crate's constructors (C++ statics,
//! `inventory` registrations, `#[ctor]`s), which are linked first. A
//! dependency linked after procpool would have its constructors run after
//! the worker took over, that is, never. The worker then closes every
//! descriptor it inherited above stderr (but its channel), as CPython's
//! spawn does; a descriptor a constructor opened before procpool's ran is
//! closed with them.
//!
//! # Whom a worker serves
//!
//! Worker mode runs code the channel names, so a worker checks who is at
//! the other end before it serves ([`check_channel`]): the socket's peer
//! must be its parent process, running as its own user. And it refuses
//! worker mode outright in a program the kernel started in secure-execution
//! mode (setuid, setgid, file capabilities): there whoever set the
//! environment and descriptors is less privileged than the program.
//!
//! # A constructor that did not run
//!
//! Workers get the parent's own arguments, so a copy whose constructor did
//! not run would run the whole program again. A parent whose own
//! constructor did not run (a link setup or platform that drops
//! constructors) therefore refuses to start workers ([`check_parent`]): the
//! copies would be the same build and drop theirs too. As a second guard,
//! [`refuse_pool_in_unbooted_worker`] makes `Pool::new` in such a copy fail
//! instead of starting workers of its own, and tells the parent why.

mod env;

use std::ffi::OsString;
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) use env::WorkerEnv;

use crate::error::Error;
use crate::protocol::message;
use crate::sys;

/// The environment variable that marks a process as a worker; its value is
/// a [`WorkerEnv`].
pub(crate) const ENV_VAR: &str = "PROCPOOL_WORKER";

/// Exit code of a worker that could not take over its channel or whose
/// environment is malformed.
pub(crate) const EXIT_BAD_SETUP: i32 = 121;
/// Exit code of a worker that refused to serve (another executable, or a
/// channel that is not its parent's, or a setuid program).
pub(crate) const EXIT_REJECTED: i32 = 122;
/// Exit code of a worker that received something it cannot obey.
pub(crate) const EXIT_PROTOCOL: i32 = 123;

/// Set by [`on_load`]: the constructor ran in this process.
static BOOTSTRAPPED: AtomicBool = AtomicBool::new(false);

/// Called before `main` in every process that links procpool: the value of
/// [`ENV_VAR`] if this process was started as a worker (the variable is
/// then removed).
pub(crate) fn on_load() -> Option<OsString> {
    BOOTSTRAPPED.store(true, Ordering::Relaxed);
    let value = std::env::var_os(ENV_VAR)?;
    sys::process::remove_env(ENV_VAR);
    Some(value)
}

/// Whether this process may start workers: its own bootstrap ran, and it is
/// not a setuid (or setgid, or capability) program.
///
/// # Errors
///
/// [`Error::Bootstrap`] saying which.
pub(crate) fn check_parent() -> Result<(), Error> {
    if !BOOTSTRAPPED.load(Ordering::Relaxed) {
        return Err(Error::Bootstrap(
            "procpool's constructor did not run in this program (this build or platform drops \
             constructors that run before `main`), so its workers would run `main` instead of \
             serving tasks; no worker was started"
                .into(),
        ));
    }
    if sys::process::secure_execution() {
        return Err(Error::Bootstrap(SECURE_EXECUTION.into()));
    }
    Ok(())
}

const SECURE_EXECUTION: &str = "this program runs in secure-execution mode (setuid, setgid or file \
                                capabilities), where procpool refuses worker mode: whoever starts \
                                it chooses its environment and descriptors";

/// Why this worker must not serve the channel `stream`, if it must not: a
/// secure-execution program, or a peer that is not `parent` running as our
/// own user.
pub(crate) fn check_channel(stream: &std::os::unix::net::UnixStream, parent: u32) -> Result<(), String> {
    if sys::process::secure_execution() {
        return Err(SECURE_EXECUTION.into());
    }
    let (pid, uid) =
        sys::fd::peer_of(stream).map_err(|e| format!("cannot tell who holds the channel: {e}"))?;
    peer_may_command(pid, uid, parent, sys::process::user_ids())
}

/// The rule of [`check_channel`], on plain numbers.
fn peer_may_command(pid: u32, uid: u32, parent: u32, (real, effective): (u32, u32)) -> Result<(), String> {
    if pid != parent {
        return Err(format!(
            "the channel was made by process {pid}, not by this worker's parent {parent}"
        ));
    }
    if uid != real || uid != effective {
        return Err(format!(
            "the channel was made by user {uid}, this worker runs as user {real} (effective {effective})"
        ));
    }
    Ok(())
}

/// Fails when this process was started as a worker but is running normal
/// code (its bootstrap did not run), and tells the parent so.
pub(crate) fn refuse_pool_in_unbooted_worker() -> Result<(), Error> {
    refuse_if_worker(std::env::var_os(ENV_VAR), sys::process::parent_pid())
}

fn refuse_if_worker(marker: Option<OsString>, parent: u32) -> Result<(), Error> {
    let Some(value) = marker else {
        return Ok(());
    };
    let reason = "the worker bootstrap did not run in this process, so it ran `main` instead of \
                  serving tasks; procpool relies on a constructor that runs before `main` \
                  (the `ctor` crate), which this build or platform dropped";
    notify_parent(&value, parent, reason);
    Err(Error::Bootstrap(reason.to_owned()))
}

/// Tells the parent, over the channel the variable names, why this process
/// does not serve. The descriptor is only borrowed (it may be the stdin of
/// a program that was never a worker), and only a channel the parent made
/// is written to.
fn notify_parent(value: &OsString, parent: u32, reason: &str) {
    static NOTIFIED: AtomicBool = AtomicBool::new(false);
    if NOTIFIED.swap(true, Ordering::SeqCst) {
        return;
    }
    let Some(env) = value.to_str().and_then(|v| WorkerEnv::parse(v).ok()) else {
        return;
    };
    let _ = sys::fd::with_socket(env.fd, |stream| {
        let (pid, uid) = sys::fd::peer_of(stream).ok()?;
        peer_may_command(pid, uid, parent, sys::process::user_ids()).ok()?;
        sys::fd::send_all(stream, &message::text_frame(message::REJECT, reason)).ok()
    });
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::func::Image;
    use crate::protocol::frame::{self, DEFAULT_MAX_BODY};
    use crate::protocol::message::FromWorker;

    #[test]
    fn a_normal_process_may_make_pools() {
        assert!(refuse_if_worker(None, 1).is_ok());
        check_parent().expect("the test binary's constructor ran");
    }

    #[test]
    fn an_unbooted_worker_refuses_to_make_a_pool_and_tells_its_parent() {
        let (mut parent, child) = UnixStream::pair().unwrap();
        let raw = child.as_raw_fd();
        let env = WorkerEnv::new(raw, Image::current().unwrap().identity, None);
        // The pair was made by this process: it plays the parent.
        let err = refuse_if_worker(Some(env.to_value().into()), std::process::id()).unwrap_err();
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
        // The descriptor was only borrowed: still open, still the channel.
        assert!(sys::fd::with_socket(raw, |_| ()).is_ok());
        drop(child);
    }

    #[test]
    fn only_the_parent_as_the_same_user_may_command_a_worker() {
        assert!(peer_may_command(10, 1000, 10, (1000, 1000)).is_ok());
        let stranger = peer_may_command(11, 1000, 10, (1000, 1000)).unwrap_err();
        assert!(stranger.contains("not by this worker's parent 10"), "{stranger}");
        let other_user = peer_may_command(10, 0, 10, (1000, 1000)).unwrap_err();
        assert!(other_user.contains("made by user 0"), "{other_user}");
        assert!(
            peer_may_command(10, 0, 10, (1000, 0)).is_err(),
            "setuid: real user differs"
        );
    }

    #[test]
    fn a_channel_from_this_process_is_refused_to_a_child_of_another() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        assert!(check_channel(&ours, std::process::id()).is_ok());
        let err = check_channel(&ours, std::process::id() + 1).unwrap_err();
        assert!(err.contains("not by this worker's parent"), "{err}");
    }
}
