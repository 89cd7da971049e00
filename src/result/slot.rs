//! A one-shot slot for one result, the [`Resolver`] that fills it (running
//! callbacks first), and [`AsyncResult`], the user's handle on it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::result::callbacks::{self, CallToken, CallbackSender, Callbacks};
use crate::result::pending::PendingToken;
use crate::task::panics::{drop_shielded, shielded};

/// Whether waiting threads may spin: not on a single CPU, where spinning
/// only delays the worker and the supervisor that produce the result.
static SPIN_ALLOWED: LazyLock<bool> =
    LazyLock::new(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1));

enum State<T> {
    Pending,
    Done(Result<T, Error>),
    Taken,
}

/// Where one result lands.
pub(crate) struct Slot<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    /// The task awaiting the result, if it is awaited as a `Future`.
    waker: Mutex<Option<Waker>>,
    /// Threads blocked in `wait_until` (changed under the `state` lock).
    waiters: AtomicUsize,
    /// Set once the result is in, for waiters that spin before they sleep.
    filled: AtomicBool,
    /// Whether the result runs callbacks before it becomes ready (and so
    /// needs the callback thread).
    has_callbacks: bool,
    /// Cleared for results that come from far (a pool fed through Redis):
    /// waiting for them awake only takes a CPU from the rest.
    spin: AtomicBool,
}

impl<T> Slot<T> {
    /// Waiters of this result sleep at once instead of spinning first: it
    /// comes from another machine, hundreds of microseconds away.
    pub(crate) fn comes_from_far(&self) {
        self.spin.store(false, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts the result in, unless one is in already; wakes whoever waits.
    /// Runs on pool threads: the waker, and the `Drop` of a result that
    /// comes too late, are shielded user code.
    fn fill(&self, result: Result<T, Error>) {
        let mut state = self.lock();
        if !matches!(*state, State::Pending) {
            drop(state);
            drop_shielded(result);
            return;
        }
        *state = State::Done(result);
        self.filled.store(true, Ordering::Release);
        // Waiters register under the lock: the count is exact here.
        let waiting = self.waiters.load(Ordering::Relaxed) > 0;
        drop(state);
        // Notified after unlocking, so a woken waiter does not block on
        // the lock; and only if someone waits (a notify is a syscall).
        if waiting {
            self.ready.notify_all();
        }
        let waker = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(waker) = waker {
            shielded(|| waker.wake());
        }
    }

    /// Whether the result is not in yet, or is in as cancelled.
    fn open_or_cancelled(&self) -> bool {
        matches!(&*self.lock(), State::Pending | State::Done(Err(Error::Cancelled)))
    }

    fn is_ready(state: &State<T>) -> bool {
        !matches!(state, State::Pending)
    }
}

/// Fills a [`Slot`] exactly once, after running its callbacks on the
/// pool's callback thread. Dropped unfilled (the task was lost without a
/// verdict), it fills the slot with [`Error::Terminated`] so that nobody
/// waits forever.
pub(crate) struct Resolver<T: Send + 'static> {
    /// `None` once resolved.
    slot: Option<Arc<Slot<T>>>,
    callbacks: Option<(Callbacks<T>, CallbackSender, PendingToken)>,
}

impl<T: Send + 'static> Resolver<T> {
    /// A new slot and its resolver. With callbacks, `pending` keeps the
    /// pool's `join` waiting until they have run.
    pub(crate) fn new(
        callbacks: Option<Callbacks<T>>,
        runner: &CallbackSender,
        pending: impl FnOnce() -> PendingToken,
    ) -> (Arc<Slot<T>>, Resolver<T>) {
        let callbacks = callbacks.filter(|c| !c.is_empty());
        let slot = Arc::new(Slot {
            state: Mutex::new(State::Pending),
            ready: Condvar::new(),
            waker: Mutex::new(None),
            waiters: AtomicUsize::new(0),
            filled: AtomicBool::new(false),
            has_callbacks: callbacks.is_some(),
            spin: AtomicBool::new(true),
        });
        let callbacks = callbacks.map(|c| (c, runner.clone(), pending()));
        (
            Arc::clone(&slot),
            Resolver {
                slot: Some(slot),
                callbacks,
            },
        )
    }

    /// Delivers the result: through the callbacks if there are any, then
    /// into the slot.
    pub(crate) fn resolve(mut self, result: Result<T, Error>) {
        let slot = self.slot.take().expect("a resolver resolves once");
        match self.callbacks.take() {
            None => {
                slot.fill(result);
                // The last handle on a result nobody holds drops its value.
                drop_shielded(slot);
            }
            Some((callbacks, runner, token)) => runner.run(Box::new(move || {
                callbacks.invoke(&result);
                slot.fill(result);
                drop_shielded(slot);
                drop(token);
            })),
        }
    }
}

impl<T: Send + 'static> Drop for Resolver<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            // Lost without a verdict: never leave a waiter hanging. The
            // callbacks do not run (nothing happened to report).
            slot.fill(Err(Error::Terminated));
            drop_shielded(slot);
        }
    }
}

impl<T: Send + 'static> fmt::Debug for Resolver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

/// The result of a task submitted with
/// [`apply_async`](crate::Pool::apply_async) or
/// [`map_async`](crate::Pool::map_async): Python's `AsyncResult`.
///
/// The value is handed out once: the first successful [`get`](Self::get)
/// (or [`get_timeout`](Self::get_timeout)) takes it, later calls return
/// [`Error::ResultTaken`]. A failed task returns its error every time.
/// An `AsyncResult` stays valid after its pool is gone; a task that the pool
/// did not finish resolves to [`Error::Terminated`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// fn square(x: u64) -> u64 { x * x }
///
/// let pool = procpool::Pool::new(2)?;
/// let handles: Vec<_> = (0..5).map(|i| pool.apply_async(square, i)).collect::<Result<_, _>>()?;
/// pool.close();
/// pool.join()?;
/// for (i, h) in handles.iter().enumerate() {
///     assert!(h.ready());
///     assert_eq!(h.successful(), Some(true));
///     assert_eq!(h.get_timeout(Duration::from_secs(5))?, (i * i) as u64);
/// }
/// # Ok::<(), procpool::Error>(())
/// ```
pub struct AsyncResult<T> {
    slot: Arc<Slot<T>>,
    canceller: Option<Canceller>,
}

/// What can cancel a call's tasks: the pool, seen from its results.
pub(crate) trait CancelCall: Send + Sync {
    /// Drops the call's queued tasks and kills its running ones; whether
    /// there was any.
    fn cancel(&self, token: &Arc<CallToken>) -> bool;
}

/// What [`AsyncResult::cancel`] needs: the pool (if it still exists) and
/// the call's token.
pub(crate) struct Canceller {
    pool: Weak<dyn CancelCall>,
    token: Arc<CallToken>,
}

impl Canceller {
    pub(crate) fn new<P: CancelCall + 'static>(pool: &Arc<P>, token: &Arc<CallToken>) -> Self {
        let pool: Weak<dyn CancelCall> = Arc::downgrade(pool) as Weak<dyn CancelCall>;
        Canceller {
            pool,
            token: Arc::clone(token),
        }
    }
}

impl<T> AsyncResult<T> {
    pub(crate) fn new(slot: Arc<Slot<T>>, canceller: Option<Canceller>) -> Self {
        AsyncResult { slot, canceller }
    }

    /// Cancels the task (every task of a `map_async`) if it is not done:
    /// tasks still queued are dropped, and a task that is running is
    /// **killed together with its worker process**, which the pool replaces
    /// (a process cannot be interrupted safely in the middle of arbitrary
    /// code). The result then resolves to [`Error::Cancelled`], and its
    /// error callback runs. Other calls' tasks are not touched.
    ///
    /// Returns `true` if something was cancelled, `false` if the task had
    /// already finished (or its pool is gone). A task that finishes at the
    /// very moment it is cancelled resolves as cancelled too.
    ///
    /// A short task that the pool had already sent to a worker busy with
    /// another task (see [`Pool`](crate::Pool)'s caveats) cannot be taken
    /// back: it is killed, with its worker, as soon as it starts.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = procpool::Pool::new(1)?;
    /// let busy = pool.apply_async(|s: u64| std::thread::sleep(Duration::from_secs(s)), 60)?;
    /// let queued = pool.apply_async(|x: u8| x, 1)?;
    /// assert!(queued.cancel());
    /// assert!(busy.cancel()); // kills the worker; the pool starts another
    /// assert!(queued.get().unwrap_err().is_cancelled());
    /// assert!(busy.get().unwrap_err().is_cancelled());
    /// assert_eq!(pool.apply(|x: u8| x + 1, 1)?, 2);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn cancel(&self) -> bool {
        if self.ready() {
            return false;
        }
        let Some(canceller) = &self.canceller else {
            return false;
        };
        match canceller.pool.upgrade() {
            // A task between attempts (its worker just died) is in no queue
            // or worker, but will not run again: it ends cancelled too, and
            // may have already, failed by the supervisor that held it as
            // soon as the call was marked cancelled.
            Some(pool) => pool.cancel(&canceller.token) || self.slot.open_or_cancelled(),
            None => false,
        }
    }

    /// Blocks until the task is done and returns its value (or error).
    ///
    /// # Errors
    ///
    /// The task's error ([`Error::Panicked`], [`Error::WorkerDied`], ...);
    /// [`Error::ResultTaken`] if an earlier call took the value;
    /// [`Error::WaitInCallback`] when called inside a callback on a result
    /// that has callbacks of its own still to run.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(1)?;
    /// let h = pool.apply_async(|x: u32| x + 1, 41)?;
    /// assert_eq!(h.get()?, 42);
    /// assert!(matches!(h.get(), Err(procpool::Error::ResultTaken)));
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn get(&self) -> Result<T, Error> {
        let state = self.wait_until(None)?;
        Self::take(state)
    }

    /// Like [`get`](Self::get), but gives up after `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if the task is not done in time (it goes on
    /// running; ask again later), otherwise as [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = procpool::Pool::new(1)?;
    /// let h = pool.apply_async(|ms: u64| { std::thread::sleep(Duration::from_millis(ms)); ms }, 200)?;
    /// assert!(h.get_timeout(Duration::from_millis(1)).unwrap_err().is_timeout());
    /// assert_eq!(h.get_timeout(Duration::from_secs(30))?, 200);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, Error> {
        let state = self.wait_until(Some(Instant::now() + timeout))?;
        if Slot::is_ready(&state) {
            Self::take(state)
        } else {
            Err(Error::Timeout(timeout))
        }
    }

    /// Blocks until the task is done.
    ///
    /// Inside a callback, on a result that still has callbacks to run, it
    /// returns at once instead of deadlocking (see [`Error::WaitInCallback`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(1)?;
    /// let h = pool.apply_async(|x: u8| x, 7)?;
    /// h.wait();
    /// assert!(h.ready());
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn wait(&self) {
        drop(self.wait_until(None));
    }

    /// Blocks until the task is done or `timeout` passes; returns whether
    /// it is done.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = procpool::Pool::new(1)?;
    /// let h = pool.apply_async(|x: u8| x, 7)?;
    /// assert!(h.wait_timeout(Duration::from_secs(30)));
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        match self.wait_until(Some(Instant::now() + timeout)) {
            Ok(state) => Slot::is_ready(&state),
            Err(_) => false,
        }
    }

    /// Whether the task is done (its callbacks, if any, have run).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(1)?;
    /// let h = pool.apply_async(|x: u8| x, 7)?;
    /// h.wait();
    /// assert!(h.ready());
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn ready(&self) -> bool {
        Slot::is_ready(&self.slot.lock())
    }

    /// Whether the task succeeded: `None` while it is not done.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(1)?;
    /// let ok = pool.apply_async(|x: u8| x, 7)?;
    /// let bad = pool.apply_async(|_: u8| -> u8 { panic!("no") }, 7)?;
    /// ok.wait();
    /// bad.wait();
    /// assert_eq!(ok.successful(), Some(true));
    /// assert_eq!(bad.successful(), Some(false));
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn successful(&self) -> Option<bool> {
        match &*self.slot.lock() {
            State::Pending => None,
            State::Done(result) => Some(result.is_ok()),
            State::Taken => Some(true),
        }
    }

    /// Waits until ready or `deadline`; refuses to wait where waiting would
    /// deadlock.
    fn wait_until(&self, deadline: Option<Instant>) -> Result<MutexGuard<'_, State<T>>, Error> {
        self.spin_briefly(deadline);
        let mut state = self.slot.lock();
        if !Slot::is_ready(&state) && self.slot.has_callbacks && callbacks::on_callback_thread() {
            return Err(Error::WaitInCallback);
        }
        self.slot.waiters.fetch_add(1, Ordering::Relaxed);
        while !Slot::is_ready(&state) {
            state = match deadline {
                None => self.slot.ready.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    self.slot
                        .ready
                        .wait_timeout(state, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        self.slot.waiters.fetch_sub(1, Ordering::Relaxed);
        Ok(state)
    }

    /// A result that is microseconds away is cheaper to wait for awake:
    /// waking a sleeping thread (on a virtual machine, an idle CPU) costs
    /// more than a round trip to a worker. Spins for at most
    /// [`SPIN`](Self::SPIN), and only where another CPU can run the pool.
    fn spin_briefly(&self, deadline: Option<Instant>) {
        if !*SPIN_ALLOWED
            || !self.slot.spin.load(Ordering::Relaxed)
            || self.slot.filled.load(Ordering::Acquire)
        {
            return;
        }
        let start = Instant::now();
        let limit = deadline.map_or(start + Self::SPIN, |d| d.min(start + Self::SPIN));
        while !self.slot.filled.load(Ordering::Acquire) && Instant::now() < limit {
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        }
    }

    const SPIN: Duration = Duration::from_micros(50);

    fn take(mut state: MutexGuard<'_, State<T>>) -> Result<T, Error> {
        match std::mem::replace(&mut *state, State::Taken) {
            State::Done(Ok(value)) => Ok(value),
            State::Done(Err(e)) => {
                *state = State::Done(Err(e.clone()));
                Err(e)
            }
            State::Taken => Err(Error::ResultTaken),
            State::Pending => unreachable!("take is only called on a ready slot"),
        }
    }
}

/// Awaiting an `AsyncResult` gives what [`get`](AsyncResult::get) gives,
/// without blocking the executor's thread: the pool wakes the task when
/// the result is in. It works on any executor.
///
/// # Examples
///
/// ```
/// fn square(x: u64) -> u64 { x * x }
///
/// let pool = procpool::Pool::new(2)?;
/// let (a, b) = (pool.apply_async(square, 3)?, pool.map_async(square, 0..4)?);
/// let (a, b) = futures::executor::block_on(async { (a.await, b.await) });
/// assert_eq!((a?, b?), (9, vec![0, 1, 4, 9]));
/// # Ok::<(), procpool::Error>(())
/// ```
impl<T> Future for AsyncResult<T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        {
            let state = self.slot.lock();
            if Slot::is_ready(&state) {
                return Poll::Ready(Self::take(state));
            }
        }
        *self.slot.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        // The result may have come in before the waker was in place.
        let state = self.slot.lock();
        match Slot::is_ready(&state) {
            true => Poll::Ready(Self::take(state)),
            false => Poll::Pending,
        }
    }
}

impl<T> fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .field("successful", &self.successful())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::callbacks::CallbackThread;
    use crate::result::pending::Pending;

    fn resolver<T: Send + 'static>() -> (AsyncResult<T>, Resolver<T>) {
        let thread = CallbackThread::start().unwrap();
        let pending = Arc::new(Pending::default());
        let (slot, resolver) = Resolver::new(None, &thread.sender(), || pending.token());
        (AsyncResult::new(slot, None), resolver)
    }

    #[test]
    fn value_is_taken_once_errors_repeat() {
        let (h, r) = resolver::<u8>();
        assert!(!h.ready());
        assert_eq!(h.successful(), None);
        r.resolve(Ok(5));
        assert_eq!(h.get().unwrap(), 5);
        assert!(matches!(h.get(), Err(Error::ResultTaken)));
        assert_eq!(h.successful(), Some(true));

        let (h, r) = resolver::<u8>();
        r.resolve(Err(Error::Closed));
        assert!(h.get().unwrap_err().is_closed());
        assert!(h.get().unwrap_err().is_closed());
    }

    #[test]
    fn a_dropped_resolver_never_leaves_a_waiter_hanging() {
        let (h, r) = resolver::<u8>();
        drop(r);
        assert!(h.get().unwrap_err().is_terminated());
    }

    #[test]
    fn timeouts_report_and_leave_the_result_usable() {
        let (h, r) = resolver::<u8>();
        assert!(h.get_timeout(Duration::from_millis(1)).unwrap_err().is_timeout());
        assert!(!h.wait_timeout(Duration::from_millis(1)));
        r.resolve(Ok(1));
        assert!(h.wait_timeout(Duration::from_millis(1)));
        assert_eq!(h.get_timeout(Duration::ZERO).unwrap(), 1);
    }

    #[test]
    fn async_result_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<AsyncResult<Vec<u8>>>();
    }
}
