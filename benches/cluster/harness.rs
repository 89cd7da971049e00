//! The measuring kit: the one shared with `benches/peers.rs`
//! (`benches/common/harness.rs`: options and sizes, samples and their
//! medians, timing, result checks), re-exported, with this bench's worker
//! count and waiting with a deadline.

#[path = "../common/harness.rs"]
mod common;

use std::process::Child;
use std::time::{Duration, Instant};

pub(crate) use common::*;

/// The number of worker processes on every side of (h) and (i): this
/// machine has 2 cores.
pub(crate) const WORKERS: usize = 2;

/// Polls `done` every 20 ms until it holds; an error naming `what` after
/// `limit`.
pub(crate) fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> Fallible<bool>) -> Fallible {
    let deadline = Instant::now() + limit;
    loop {
        if done()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {limit:?} waiting for {what}").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits up to `limit` for `child` to exit: its status, or `None` if it
/// is still running.
pub(crate) fn wait_for_exit(
    child: &mut Child,
    limit: Duration,
) -> Fallible<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
