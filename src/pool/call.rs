//! Per-call options ([`Call`]: chunk size, callbacks) and the code that
//! turns a call into jobs.

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::func::fn_item::is_fn_item;
use crate::pool::Pool;
use crate::pool::engine::{apply, map, stream};
use crate::pool::policy::TaskPolicy;
use crate::progress::Progress;
use crate::result::callbacks::{Callbacks, IntoCallbacks, NoCallbacks};
use crate::result::imap::{IMap, IMapUnordered, Stream};
use crate::result::slot::AsyncResult;
use crate::task::{Star, StarFn, Unary, assert_stateless};

/// A call with options, made by [`Pool::with_chunksize`],
/// [`Pool::with_callback`] or [`Pool::with_error_callback`]: Python's
/// keyword arguments (`chunksize=`, `callback=`, `error_callback=`).
///
/// Its methods are those of [`Pool`] and behave the same, with the options
/// applied. Callbacks are only for the calls that return an
/// [`AsyncResult`] (`apply_async`, `map_async`, `starmap_async`): the
/// blocking calls are not available once a callback is set. The chunk size
/// applies to the `map`-like calls; `apply` and `apply_async` refuse it.
///
/// # Examples
///
/// ```
/// fn square(x: u64) -> u64 { x * x }
///
/// let pool = procpool::Pool::new(2)?;
/// assert_eq!(pool.with_chunksize(3).map(square, 0..10)?, pool.map(square, 0..10)?);
///
/// let total = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
/// let seen = total.clone();
/// let all = pool
///     .with_chunksize(5)
///     .with_callback(move |v: &Vec<u64>| seen.store(v.iter().sum(), std::sync::atomic::Ordering::SeqCst))
///     .map_async(square, 0..10)?;
/// assert_eq!(all.get()?.len(), 10);
/// assert_eq!(total.load(std::sync::atomic::Ordering::SeqCst), 285);
/// # Ok::<(), procpool::Error>(())
/// ```
#[must_use = "a Call does nothing until one of its methods runs the tasks"]
pub struct Call<'p, C = NoCallbacks> {
    pool: &'p Pool,
    chunksize: Option<usize>,
    timeout: Option<Duration>,
    retries: Option<u32>,
    progress: Option<Progress>,
    callbacks: C,
}

impl<'p> Call<'p, NoCallbacks> {
    pub(crate) fn new(pool: &'p Pool) -> Self {
        Call {
            pool,
            chunksize: None,
            timeout: None,
            retries: None,
            progress: None,
            callbacks: NoCallbacks,
        }
    }

    /// Sets the callback; see [`Pool::with_callback`].
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(1)?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let h = pool.with_chunksize(2).with_callback(move |v: &Vec<u8>| tx.send(v.len()).unwrap()).map_async(|x: u8| x, 0..5)?;
    /// h.wait();
    /// assert_eq!(rx.recv().unwrap(), 5);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn with_callback<T, F>(self, callback: F) -> Call<'p, Callbacks<T>>
    where
        F: FnOnce(&T) + Send + 'static,
    {
        let mut callbacks = Callbacks::none();
        callbacks.on_success = Some(Box::new(callback));
        Call {
            pool: self.pool,
            chunksize: self.chunksize,
            timeout: self.timeout,
            retries: self.retries,
            progress: self.progress,
            callbacks,
        }
    }

    /// Sets the error callback; see [`Pool::with_error_callback`].
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(1)?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let h = pool
    ///     .with_chunksize(1)
    ///     .with_error_callback(move |e: &procpool::Error| tx.send(e.index()).unwrap())
    ///     .map_async(|x: u8| 10 / x, 0..3)?;
    /// assert!(h.get().is_err());
    /// assert_eq!(rx.recv().unwrap(), Some(0)); // 10 / 0 panicked
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn with_error_callback<T, F>(self, callback: F) -> Call<'p, Callbacks<T>>
    where
        F: FnOnce(&Error) + Send + 'static,
    {
        let mut callbacks = Callbacks::none();
        callbacks.on_error = Some(Box::new(callback));
        Call {
            pool: self.pool,
            chunksize: self.chunksize,
            timeout: self.timeout,
            retries: self.retries,
            progress: self.progress,
            callbacks,
        }
    }

    /// [`Pool::apply`] with these options.
    ///
    /// # Errors
    ///
    /// As [`Pool::apply`]; [`Error::InvalidArgument`] if a chunk size is set.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(1)?;
    /// assert!(pool.with_chunksize(4).apply(|x: u8| x, 1).is_err()); // chunks are for maps
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn apply<A, R>(self, f: fn(A) -> R, arg: A) -> Result<R, Error>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.apply_async(f, arg)?.get()
    }

    /// [`Pool::map`] with these options.
    ///
    /// # Errors
    ///
    /// As [`Pool::map`].
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(2)?;
    /// assert_eq!(pool.with_chunksize(3).map(|x: u32| x + 1, 0..5)?, [1, 2, 3, 4, 5]);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn map<A, R, I>(self, f: fn(A) -> R, items: I) -> Result<Vec<R>, Error>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
    {
        self.map_async(f, items)?.get()
    }

    /// [`Pool::starmap`] with these options.
    ///
    /// # Errors
    ///
    /// As [`Pool::starmap`].
    ///
    /// # Examples
    ///
    /// ```
    /// fn add(a: u32, b: u32) -> u32 { a + b }
    /// let pool = procpool::Pool::new(2)?;
    /// assert_eq!(pool.with_chunksize(1).starmap(add, [(1, 2), (3, 4)])?, [3, 7]);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn starmap<F, Args, I>(self, f: F, items: I) -> Result<Vec<F::Output>, Error>
    where
        F: StarFn<Args> + Copy + 'static,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        Args: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = Args>,
    {
        self.starmap_async(f, items)?.get()
    }

    /// [`Pool::imap`] with these options.
    ///
    /// # Errors
    ///
    /// As [`Pool::imap`].
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(2)?;
    /// let firsts: Vec<u64> = pool.with_chunksize(8).imap(|x: u64| x * 3, 0..)?.take(3).collect::<Result<_, _>>()?;
    /// assert_eq!(firsts, [0, 3, 6]);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn imap<'a, A, R, I>(self, f: fn(A) -> R, items: I) -> Result<IMap<'a, R>, Error>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        self.stream(f, items, true).map(IMap)
    }

    /// [`Pool::imap_unordered`] with these options.
    ///
    /// # Errors
    ///
    /// As [`Pool::imap_unordered`].
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(2)?;
    /// let n = pool.with_chunksize(10).imap_unordered(|x: u64| x, 0..100)?.filter(Result::is_ok).count();
    /// assert_eq!(n, 100);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn imap_unordered<'a, A, R, I>(self, f: fn(A) -> R, items: I) -> Result<IMapUnordered<'a, R>, Error>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        self.stream(f, items, false).map(IMapUnordered)
    }

    /// The lazy results of `imap` (`ordered`) or `imap_unordered`.
    fn stream<'a, A, R, I>(self, f: fn(A) -> R, items: I, ordered: bool) -> Result<Stream<'a, R>, Error>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        I::IntoIter: Send + 'a,
    {
        let policy = self.policy()?;
        let (shared, chunksize) = (&self.pool.shared, self.chunksize);
        stream::<Unary<A, R>, _>(shared, f, items, chunksize, policy, ordered, self.progress)
    }
}

impl<'p, T> Call<'p, Callbacks<T>> {
    /// Sets (or replaces) the callback; see [`Pool::with_callback`].
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(1)?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let err_tx = tx.clone();
    /// pool.with_error_callback(move |_: &procpool::Error| err_tx.send("error").unwrap())
    ///     .with_callback(move |_: &u8| tx.send("value").unwrap())
    ///     .apply_async(|x: u8| x, 1)?
    ///     .wait();
    /// assert_eq!(rx.recv().unwrap(), "value");
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn with_callback<F>(mut self, callback: F) -> Self
    where
        F: FnOnce(&T) + Send + 'static,
    {
        self.callbacks.on_success = Some(Box::new(callback));
        self
    }

    /// Sets (or replaces) the error callback; see
    /// [`Pool::with_error_callback`].
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(1)?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let ok_tx = tx.clone();
    /// pool.with_callback(move |_: &u8| ok_tx.send("value").unwrap())
    ///     .with_error_callback(move |_: &procpool::Error| tx.send("error").unwrap())
    ///     .apply_async(|_: u8| -> u8 { panic!("no") }, 1)?
    ///     .wait();
    /// assert_eq!(rx.recv().unwrap(), "error");
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn with_error_callback<F>(mut self, callback: F) -> Self
    where
        F: FnOnce(&Error) + Send + 'static,
    {
        self.callbacks.on_error = Some(Box::new(callback));
        self
    }
}

impl<'p, C> Call<'p, C> {
    /// Sets the number of items sent to a worker at a time by the `map`-like
    /// calls; see [`Pool::with_chunksize`].
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(1)?;
    /// let h = pool.with_callback(|_: &Vec<u8>| {}).with_chunksize(2).map_async(|x: u8| x, 0..4)?;
    /// assert_eq!(h.get()?, [0, 1, 2, 3]);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn with_chunksize(mut self, chunksize: usize) -> Self {
        self.chunksize = Some(chunksize);
        self
    }

    /// Sets a hard timeout for each task of this call; see
    /// [`Pool::with_timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let pool = procpool::Pool::new(1)?;
    /// let h = pool.with_chunksize(1).with_timeout(Duration::from_secs(30)).map_async(|x: u8| x, 0..3)?;
    /// assert_eq!(h.get()?, [0, 1, 2]);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets how many times a task of this call is run again when its worker
    /// dies; see [`Pool::with_retries`].
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(1)?;
    /// assert_eq!(pool.with_timeout(std::time::Duration::from_secs(9)).with_retries(2).apply(|x: u8| x, 7)?, 7);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = Some(retries);
        self
    }

    /// Shows a progress bar on stderr for this `map`-like call: tasks
    /// done out of the total, the rate and the time left (cargo feature
    /// `progress`). Nothing is drawn when stderr is not a terminal. See
    /// [`Pool::with_progress`].
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(2)?;
    /// assert_eq!(pool.with_chunksize(1).with_progress().map(|x: u8| x, 0..3)?, [0, 1, 2]);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    #[cfg(feature = "progress")]
    pub fn with_progress(mut self) -> Self {
        self.progress = Some(Progress::on(indicatif::ProgressDrawTarget::stderr()));
        self
    }

    /// Like [`with_progress`](Self::with_progress), drawn on `target`
    /// instead of stderr (stdout, a `term_like` for tests, a hidden
    /// target).
    ///
    /// # Examples
    ///
    /// ```
    /// use indicatif::{InMemoryTerm, ProgressDrawTarget};
    ///
    /// let term = InMemoryTerm::new(2, 80);
    /// let pool = procpool::Pool::new(2)?;
    /// pool.with_chunksize(5).with_progress_to(ProgressDrawTarget::term_like(Box::new(term.clone()))).map(|x: u8| x, 0..20)?;
    /// assert!(term.contents().contains("20/20 tasks"));
    /// # Ok::<(), procpool::Error>(())
    /// ```
    #[cfg(feature = "progress")]
    pub fn with_progress_to(mut self, target: indicatif::ProgressDrawTarget) -> Self {
        self.progress = Some(Progress::on(target));
        self
    }

    /// Like [`with_progress`](Self::with_progress), with a bar of your
    /// own: your style, draw target, or a bar inside an
    /// `indicatif::MultiProgress`. Its length is set to the number of tasks
    /// when that is known.
    ///
    /// # Examples
    ///
    /// ```
    /// use indicatif::{ProgressBar, ProgressDrawTarget};
    ///
    /// let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
    /// let pool = procpool::Pool::new(2)?;
    /// pool.with_progress_bar(bar.clone()).map(|x: u32| x * 2, 0..100)?;
    /// assert_eq!((bar.position(), bar.length()), (100, Some(100)));
    /// # Ok::<(), procpool::Error>(())
    /// ```
    #[cfg(feature = "progress")]
    pub fn with_progress_bar(mut self, bar: indicatif::ProgressBar) -> Self {
        self.progress = Some(Progress::new(bar));
        self
    }

    /// The pool's task policy with this call's options applied.
    fn policy(&self) -> Result<TaskPolicy, Error> {
        let mut policy = self.pool.shared.policy;
        if let Some(t) = self.timeout {
            policy.timeout = Some(t);
        }
        if let Some(n) = self.retries {
            policy.retries = n;
        }
        policy.check()?;
        if policy.timeout.is_some() && self.chunksize.is_some_and(|n| n > 1) {
            return Err(Error::InvalidArgument(format!(
                "a task timeout applies to each task, so tasks with a timeout are sent one at a \
                 time: drop the chunk size ({}) or set it to 1",
                self.chunksize.unwrap_or_default()
            )));
        }
        Ok(policy)
    }

    /// [`Pool::apply_async`] with these options.
    ///
    /// # Errors
    ///
    /// As [`Pool::apply_async`]; [`Error::InvalidArgument`] if a chunk size
    /// is set.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(1)?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let h = pool.with_callback(move |v: &u8| tx.send(*v).unwrap()).apply_async(|x: u8| x + 1, 1)?;
    /// assert_eq!(h.get()?, 2);
    /// assert_eq!(rx.recv().unwrap(), 2);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn apply_async<A, R>(self, f: fn(A) -> R, arg: A) -> Result<AsyncResult<R>, Error>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        C: IntoCallbacks<R>,
    {
        if let Some(n) = self.chunksize {
            return Err(Error::InvalidArgument(format!(
                "a chunk size ({n}) applies to map-like calls, not to apply or apply_async"
            )));
        }
        if self.progress.is_some() {
            return Err(Error::InvalidArgument(
                "a progress bar applies to map-like calls, not to apply or apply_async".into(),
            ));
        }
        let policy = self.policy()?;
        apply::<Unary<A, R>>(&self.pool.shared, f, arg, policy, self.callbacks.into_callbacks())
    }

    /// [`Pool::map_async`] with these options.
    ///
    /// # Errors
    ///
    /// As [`Pool::map_async`].
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(2)?;
    /// let h = pool.with_chunksize(1).map_async(|x: u8| x * 2, 0..3)?;
    /// assert_eq!(h.get()?, [0, 2, 4]);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn map_async<A, R, I>(self, f: fn(A) -> R, items: I) -> Result<AsyncResult<Vec<R>>, Error>
    where
        A: Serialize + DeserializeOwned + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
        I: IntoIterator<Item = A>,
        C: IntoCallbacks<Vec<R>>,
    {
        let (shared, policy) = (&self.pool.shared, self.policy()?);
        let callbacks = self.callbacks.into_callbacks();
        map::<Unary<A, R>, _>(shared, f, items, self.chunksize, policy, callbacks, self.progress)
    }

    /// [`Pool::starmap_async`] with these options.
    ///
    /// # Errors
    ///
    /// As [`Pool::starmap_async`].
    ///
    /// # Examples
    ///
    /// ```
    /// fn pair(a: u8, b: char) -> String { format!("{a}{b}") }
    /// let pool = procpool::Pool::new(1)?;
    /// let h = pool.with_callback(|v: &Vec<String>| assert_eq!(v.len(), 2)).starmap_async(pair, [(1, 'a'), (2, 'b')])?;
    /// assert_eq!(h.get()?, ["1a", "2b"]);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn starmap_async<F, Args, I>(self, f: F, items: I) -> Result<AsyncResult<Vec<F::Output>>, Error>
    where
        F: StarFn<Args> + Copy + 'static,
        F::Output: Serialize + DeserializeOwned + Send + 'static,
        Args: Serialize + DeserializeOwned + 'static,
        I: IntoIterator<Item = Args>,
        C: IntoCallbacks<Vec<F::Output>>,
    {
        assert_stateless::<F>();
        if !is_fn_item::<F>() {
            return Err(Error::InvalidArgument(format!(
                "starmap takes a named function (a fn item), not {}; for a closure, use map with a \
                 tuple argument",
                std::any::type_name::<F>()
            )));
        }
        let (shared, policy) = (&self.pool.shared, self.policy()?);
        let callbacks = self.callbacks.into_callbacks();
        map::<Star<F, Args>, _>(shared, f, items, self.chunksize, policy, callbacks, self.progress)
    }
}

impl<C> fmt::Debug for Call<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("chunksize", &self.chunksize)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("callbacks", &std::any::type_name::<C>())
            .finish()
    }
}
