//! The task functions: fn items, so that a worker host (a copy of this
//! executable) runs the very same code. Each result is checked against the
//! same function run in the parent.

use std::time::Duration;

/// The trivial task of (g) and (h) (Celery's and Dramatiq's are `x + 1`
/// too), and the raw echo's answer.
pub(crate) fn inc(x: u64) -> u64 {
    x.wrapping_add(1)
}

/// The trivial item of (i)'s `map`.
pub(crate) fn triple(x: u64) -> u64 {
    x.wrapping_mul(3)
}

/// How long a task of (j) sleeps.
pub(crate) const NAP: Duration = Duration::from_millis(10);

/// The task of (j): sleeps [`NAP`] (no CPU: the hosts scale past the
/// machine's cores), then answers [`inc`].
pub(crate) fn nap(x: u64) -> u64 {
    std::thread::sleep(NAP);
    inc(x)
}
