//! Callbacks run in the parent, on one pool-owned thread, before their
//! result reports ready (Python runs them on its result-handler thread).
//!
//! One thread keeps callbacks in completion order and never lets a slow
//! callback hold up the threads that read from workers. A panicking
//! callback is caught (the panic is printed by the panic hook as usual) and
//! the result still becomes ready with its value.
//!
//! # Other user code on pool threads
//!
//! Callbacks are not the only user code the pool's threads run: a
//! `tracing` subscriber sees their events, a waker is woken, a progress bar
//! draws on its target, a decoded value nobody takes is dropped. Each such
//! call goes through [`shielded`] (or [`drop_shielded`]), so that a panic
//! in it costs the pool neither a thread nor what that thread looks after
//! (a worker seat, the task deadlines).

use std::cell::Cell;
use std::fmt;

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::error::Error;
use crate::task::panics::shielded;

type Callback = Box<dyn FnOnce() + Send>;

thread_local! {
    static ON_CALLBACK_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current thread is a pool's callback thread.
pub(crate) fn on_callback_thread() -> bool {
    ON_CALLBACK_THREAD.get()
}

/// The callbacks of one `apply_async` or `map_async` call, set with
/// [`Pool::with_callback`](crate::Pool::with_callback) and
/// [`Pool::with_error_callback`](crate::Pool::with_error_callback).
///
/// `T` is what the success callback receives a reference to: the task's
/// value for `apply_async`, the whole `Vec` for `map_async`.
///
/// # Examples
///
/// ```
/// use std::sync::mpsc;
///
/// let pool = procpool::Pool::new(1)?;
/// let (tx, rx) = mpsc::channel();
/// let h = pool
///     .with_callback(move |v: &u32| tx.send(*v).unwrap())
///     .apply_async(|x: u32| x * 2, 21)?;
/// assert_eq!(h.get()?, 42); // the callback saw a reference; get still has the value
/// assert_eq!(rx.recv().unwrap(), 42);
/// # Ok::<(), procpool::Error>(())
/// ```
pub struct Callbacks<T> {
    pub(crate) on_success: Option<OnSuccess<T>>,
    pub(crate) on_error: Option<OnError>,
}

type OnSuccess<T> = Box<dyn FnOnce(&T) + Send>;
type OnError = Box<dyn FnOnce(&Error) + Send>;

impl<T> Callbacks<T> {
    pub(crate) fn none() -> Self {
        Callbacks {
            on_success: None,
            on_error: None,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.on_success.is_none() && self.on_error.is_none()
    }

    /// Runs the callback that matches `result`, catching a panic.
    pub(crate) fn invoke(self, result: &Result<T, Error>) {
        shielded(|| match result {
            Ok(value) => {
                if let Some(f) = self.on_success {
                    f(value);
                }
            }
            Err(error) => {
                if let Some(f) = self.on_error {
                    f(error);
                }
            }
        });
    }
}

impl<T> fmt::Debug for Callbacks<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Callbacks")
            .field("callback", &self.on_success.is_some())
            .field("error_callback", &self.on_error.is_some())
            .finish()
    }
}

/// Hands jobs to the callback thread.
#[derive(Clone)]
pub(crate) struct CallbackSender(Sender<Callback>);

impl CallbackSender {
    /// Queues `job` for the callback thread (or runs it here if that thread
    /// is gone, which only happens while the pool shuts down).
    pub(crate) fn run(&self, job: Callback) {
        if let Err(crossbeam_channel::SendError(job)) = self.0.send(job) {
            run_guarded(job);
        }
    }
}

impl fmt::Debug for CallbackSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CallbackSender")
    }
}

/// The callback thread. It ends by itself once every sender is gone.
#[derive(Debug)]
pub(crate) struct CallbackThread {
    sender: CallbackSender,
}

impl CallbackThread {
    pub(crate) fn start() -> std::io::Result<CallbackThread> {
        let (tx, rx) = unbounded::<Callback>();
        std::thread::Builder::new()
            .name("procpool-callbacks".into())
            .spawn(move || serve(rx))?;
        Ok(CallbackThread {
            sender: CallbackSender(tx),
        })
    }

    pub(crate) fn sender(&self) -> CallbackSender {
        self.sender.clone()
    }
}

fn serve(jobs: Receiver<Callback>) {
    ON_CALLBACK_THREAD.set(true);
    for job in jobs {
        run_guarded(job);
    }
}

fn run_guarded(job: Callback) {
    shielded(job);
}

/// The callback state of a [`Call`](crate::Call) without callbacks.
///
/// # Examples
///
/// ```
/// let pool = procpool::Pool::new(1)?;
/// let call: procpool::Call<'_, procpool::NoCallbacks> = pool.with_chunksize(2);
/// assert_eq!(call.map(|x: u8| x, 0..3)?, [0, 1, 2]);
/// # Ok::<(), procpool::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCallbacks;

mod sealed {
    pub trait SealedCallbacks {}
    impl SealedCallbacks for super::NoCallbacks {}
    impl<T> SealedCallbacks for super::Callbacks<T> {}
}

/// The callback states of a [`Call`](crate::Call) that can deliver to a result of type
/// `T`. Sealed: implemented by [`NoCallbacks`] and [`Callbacks<T>`]; it only
/// appears in bounds.
///
/// # Examples
///
/// ```
/// use procpool::{AsyncResult, Call, IntoCallbacks};
///
/// // A helper that accepts a call with or without callbacks.
/// fn double_later<C: IntoCallbacks<u32>>(call: Call<'_, C>, x: u32) -> procpool::Result<AsyncResult<u32>> {
///     call.apply_async(|x: u32| x * 2, x)
/// }
/// let pool = procpool::Pool::new(1)?;
/// assert_eq!(double_later(pool.with_callback(|_: &u32| {}), 4)?.get()?, 8);
/// # Ok::<(), procpool::Error>(())
/// ```
pub trait IntoCallbacks<T>: sealed::SealedCallbacks {
    #[doc(hidden)]
    fn into_callbacks(self) -> Option<Callbacks<T>>;
}

impl<T> IntoCallbacks<T> for NoCallbacks {
    fn into_callbacks(self) -> Option<Callbacks<T>> {
        None
    }
}

impl<T> IntoCallbacks<T> for Callbacks<T> {
    fn into_callbacks(self) -> Option<Callbacks<T>> {
        Some(self)
    }
}

/// Shared by every chunk of one call: set when the call is cancelled.
#[derive(Debug, Default)]
pub(crate) struct CallToken {
    cancelled: std::sync::atomic::AtomicBool,
}

impl CallToken {
    pub(crate) fn cancel(&self) {
        self.cancelled.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(std::sync::atomic::Ordering::SeqCst)
    }
}
