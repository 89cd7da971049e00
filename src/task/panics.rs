//! Turning a panic in a task into a [`RemotePanic`] (message, location,
//! backtrace) for the parent, without printing it in the worker.
//!
//! When panics abort (`panic = "abort"`), nothing unwinds to
//! [`catching`]: the process aborts as soon as the panic hook returns. The
//! hook is then the only code that sees the panic, so it hands it to the
//! reporter the worker loop set with [`report_aborting_panics`], which
//! sends it to the parent before the abort.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe, PanicHookInfo};
use std::sync::OnceLock;

use crate::error::{PanicLocation, RemotePanic};
use crate::protocol::codec::panic_text;

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
    /// Bumped by the hook for every panic it records in [`CAUGHT`].
    static RECORDED: Cell<u64> = const { Cell::new(0) };
    static CAUGHT: RefCell<Option<RemotePanic>> = const { RefCell::new(None) };
}

/// What receives a task's panic when the panic aborts the process.
type Reporter = Box<dyn Fn(&RemotePanic) + Send + Sync>;

static ABORT_REPORTER: OnceLock<Reporter> = OnceLock::new();

/// Sets what the panic hook calls with a task's panic when panics abort
/// (`panic = "abort"`), just before the process aborts. Only the first
/// call counts. Without it, such a panic is only printed.
pub(crate) fn report_aborting_panics(report: impl Fn(&RemotePanic) + Send + Sync + 'static) {
    let _ = ABORT_REPORTER.set(Box::new(report));
}

/// Installs the worker's panic hook: panics inside [`catching`] are recorded
/// for the parent (or, when panics abort, reported at once); any other
/// panic (say, in a thread a task started) goes to the previous hook and is
/// printed as usual.
pub(crate) fn install_hook() {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        let quiet = QUIET.get();
        let aborting = cfg!(panic = "abort");
        match ABORT_REPORTER.get() {
            // The process aborts when this returns: now or never.
            Some(report) if quiet && aborting => report(&describe(info)),
            _ if quiet && !aborting => {
                CAUGHT.with_borrow_mut(|caught| *caught = Some(describe(info)));
                RECORDED.set(RECORDED.get().wrapping_add(1));
            }
            // Nobody to tell: at least print it.
            _ => previous(info),
        }
    }));
}

fn describe(info: &PanicHookInfo<'_>) -> RemotePanic {
    let location = info
        .location()
        .map(|l| PanicLocation::new(l.file().to_owned(), l.line(), l.column()));
    let backtrace = Backtrace::capture();
    let backtrace = (backtrace.status() == BacktraceStatus::Captured).then(|| backtrace.to_string());
    RemotePanic::new(panic_text(info.payload()), location, backtrace)
}

/// Runs `f`, turning a panic into the [`RemotePanic`] that describes it.
///
/// This runs for every task, so it costs two thread-local reads and a
/// write when nothing panics.
pub(crate) fn catching<T>(f: impl FnOnce() -> T) -> Result<T, RemotePanic> {
    let recorded = RECORDED.get();
    let was_quiet = QUIET.replace(true);
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.set(was_quiet);
    result.map_err(|payload| {
        // Only a record made for this panic describes it (a payload passed
        // to `resume_unwind` does not go through the hook).
        let described = match RECORDED.get() != recorded {
            true => CAUGHT.with_borrow_mut(Option::take),
            false => None,
        }
        .unwrap_or_else(|| RemotePanic::new(panic_text(&*payload), None, None));
        // A payload whose drop panics must not take the worker down.
        let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
        described
    })
}

/// Runs user code on a pool thread: a panic is caught (the panic hook has
/// printed it as usual) and gives `None`.
pub(crate) fn shielded<R>(user_code: impl FnOnce() -> R) -> Option<R> {
    match panic::catch_unwind(AssertUnwindSafe(user_code)) {
        Ok(value) => Some(value),
        Err(payload) => {
            // A payload's own `Drop` may panic too: then it is leaked.
            if let Err(again) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
                std::mem::forget(again);
            }
            None
        }
    }
}

/// Drops a value whose `Drop` is user code, on a pool thread (see
/// [`shielded`]).
pub(crate) fn drop_shielded<T>(value: T) {
    shielded(move || drop(value));
}
