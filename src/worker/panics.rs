//! Turning a panic in a task into a [`RemotePanic`] (message, location,
//! backtrace) for the parent, without printing it in the worker.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe, PanicHookInfo};

use crate::error::{PanicLocation, RemotePanic};
use crate::protocol::codec::panic_text;

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
    static CAUGHT: RefCell<Option<RemotePanic>> = const { RefCell::new(None) };
}

/// Installs the worker's panic hook: panics inside [`catching`] are recorded
/// for the parent; any other panic (say, in a thread a task started) goes to
/// the previous hook and is printed as usual.
pub(crate) fn install_hook() {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if QUIET.get() {
            CAUGHT.set(Some(describe(info)));
        } else {
            previous(info);
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
pub(crate) fn catching<T>(f: impl FnOnce() -> T) -> Result<T, RemotePanic> {
    CAUGHT.set(None);
    let was_quiet = QUIET.replace(true);
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.set(was_quiet);
    result.map_err(|payload| {
        let described = CAUGHT
            .take()
            .unwrap_or_else(|| RemotePanic::new(panic_text(&*payload), None, None));
        // A payload whose drop panics must not take the worker down.
        let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
        described
    })
}
