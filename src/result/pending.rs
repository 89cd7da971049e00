//! Counting the work `join` waits for: every queued or running chunk and
//! every result whose callbacks have not run yet holds a [`PendingToken`].

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// The count of outstanding work. Taking and dropping a token is an atomic
/// operation; the lock and condition variable are only for `join`, which
/// waits for zero.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    count: AtomicUsize,
    /// Threads waiting for zero (changed under `lock`).
    waiters: AtomicUsize,
    lock: Mutex<()>,
    zero: Condvar,
}

impl Pending {
    /// One more piece of outstanding work, until the token is dropped.
    pub(crate) fn token(self: &Arc<Self>) -> PendingToken {
        self.count.fetch_add(1, Ordering::SeqCst);
        PendingToken(Arc::clone(self))
    }

    /// Whether nothing is outstanding now.
    pub(crate) fn is_zero(&self) -> bool {
        self.count.load(Ordering::SeqCst) == 0
    }

    /// Blocks until nothing is outstanding.
    pub(crate) fn wait_zero(&self) {
        let mut guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.waiters.fetch_add(1, Ordering::SeqCst);
        while !self.is_zero() {
            guard = self.zero.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
        self.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A unit of outstanding work; dropping it marks the work done.
pub(crate) struct PendingToken(Arc<Pending>);

impl Drop for PendingToken {
    fn drop(&mut self) {
        let pending = &self.0;
        // SeqCst on both sides: either a waiter sees the count at zero
        // before it sleeps, or this drop sees the waiter and wakes it
        // (taking the lock, so the wake cannot fall between the waiter's
        // check and its sleep).
        if pending.count.fetch_sub(1, Ordering::SeqCst) == 1 && pending.waiters.load(Ordering::SeqCst) > 0 {
            let _guard = pending.lock.lock().unwrap_or_else(|e| e.into_inner());
            pending.zero.notify_all();
        }
    }
}

impl fmt::Debug for PendingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PendingToken")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_zero_returns_once_every_token_is_gone() {
        let pending = Arc::new(Pending::default());
        pending.wait_zero();
        let a = pending.token();
        let b = pending.token();
        let waiter = {
            let pending = Arc::clone(&pending);
            std::thread::spawn(move || pending.wait_zero())
        };
        drop(a);
        assert!(!waiter.is_finished() || pending.is_zero());
        drop(b);
        waiter.join().unwrap();
        assert!(pending.is_zero());
    }
}
