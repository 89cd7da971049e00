//! Counting the work `join` waits for: every queued or running chunk and
//! every result whose callbacks have not run yet holds a [`PendingToken`].

use std::fmt;
use std::sync::{Arc, Condvar, Mutex};

/// The count of outstanding work.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    count: Mutex<usize>,
    zero: Condvar,
}

impl Pending {
    /// One more piece of outstanding work, until the token is dropped.
    pub(crate) fn token(self: &Arc<Self>) -> PendingToken {
        *self.count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        PendingToken(Arc::clone(self))
    }

    /// Whether nothing is outstanding now.
    pub(crate) fn is_zero(&self) -> bool {
        *self.count.lock().unwrap_or_else(|e| e.into_inner()) == 0
    }

    /// Blocks until nothing is outstanding.
    pub(crate) fn wait_zero(&self) {
        let mut count = self.count.lock().unwrap_or_else(|e| e.into_inner());
        while *count > 0 {
            count = self.zero.wait(count).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A unit of outstanding work; dropping it marks the work done.
pub(crate) struct PendingToken(Arc<Pending>);

impl Drop for PendingToken {
    fn drop(&mut self) {
        let mut count = self.0.count.lock().unwrap_or_else(|e| e.into_inner());
        *count -= 1;
        if *count == 0 {
            self.0.zero.notify_all();
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
        assert!(!waiter.is_finished() || *pending.count.lock().unwrap() == 0);
        drop(b);
        waiter.join().unwrap();
        assert_eq!(*pending.count.lock().unwrap(), 0);
    }
}
