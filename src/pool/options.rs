//! The entry points of per-call options on [`Pool`]: each starts a
//! [`Call`] (Python's keyword arguments: `chunksize=`, `callback=`,
//! `error_callback=`) with one option set.

use crate::error::Error;
use crate::pool::{Call, Pool};
use crate::result::callbacks::Callbacks;

impl Pool {
    /// A call that sends `chunksize` items to a worker at a time (Python's
    /// `chunksize=`). Larger chunks cost less per item; smaller ones balance
    /// uneven tasks better. A worker that dies fails its whole chunk.
    /// Without it, `map` uses CPython's default (see [`Pool::map`]) and
    /// `imap` starts at one item and adapts to the tasks' pace (see
    /// [`Pool::imap`]).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(2)?;
    /// assert_eq!(pool.with_chunksize(1).map(|x: u8| x * 2, 0..4)?, [0, 2, 4, 6]);
    /// assert!(pool.with_chunksize(0).map(|x: u8| x, 0..4).is_err());
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn with_chunksize(&self, chunksize: usize) -> Call<'_> {
        Call::new(self).with_chunksize(chunksize)
    }

    /// A `map`-like call with a progress bar on stderr: tasks done out of
    /// the total, the rate and the time left (cargo feature `progress`,
    /// drawn with `indicatif`). Off unless asked for, and nothing is drawn
    /// when stderr is not a terminal. For a bar of your own (style, target,
    /// `MultiProgress`), see [`Call::with_progress_bar`].
    ///
    /// # Examples
    ///
    /// ```
    /// fn square(x: u64) -> u64 { x * x }
    /// let pool = procpool::Pool::new(2)?;
    /// let squares = pool.with_progress().map(square, 0..1000)?;
    /// assert_eq!(squares.len(), 1000);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    #[cfg(feature = "progress")]
    pub fn with_progress(&self) -> Call<'_> {
        Call::new(self).with_progress()
    }

    /// A `map`-like call that advances `bar` as tasks finish; see
    /// [`Call::with_progress_bar`].
    ///
    /// # Examples
    ///
    /// ```
    /// let bar = indicatif::ProgressBar::hidden();
    /// let pool = procpool::Pool::new(2)?;
    /// pool.with_progress_bar(bar.clone()).imap(|x: u8| x, 0..10)?.for_each(drop);
    /// assert_eq!(bar.position(), 10);
    /// # Ok::<(), procpool::Error>(())
    /// ```
    #[cfg(feature = "progress")]
    pub fn with_progress_bar(&self, bar: indicatif::ProgressBar) -> Call<'_> {
        Call::new(self).with_progress_bar(bar)
    }

    /// A `map`-like call with procpool's progress bar drawn on `target`;
    /// see [`Call::with_progress_to`].
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(2)?;
    /// pool.with_progress_to(indicatif::ProgressDrawTarget::stdout()).map(|x: u8| x, 0..10)?;
    /// # Ok::<(), procpool::Error>(())
    /// ```
    #[cfg(feature = "progress")]
    pub fn with_progress_to(&self, target: indicatif::ProgressDrawTarget) -> Call<'_> {
        Call::new(self).with_progress_to(target)
    }

    /// A call whose tasks each have a hard timeout: a task still running
    /// after `timeout` is **killed together with its worker process**, its
    /// result is [`Error::TimedOut`], and the pool starts a replacement
    /// worker; other tasks are not touched. The clock starts when the task
    /// is handed to a worker, not while it waits in the queue. Overrides the
    /// pool's [`task_timeout`](crate::PoolBuilder::task_timeout).
    ///
    /// Tasks with a timeout are sent to workers one at a time (chunk size 1),
    /// so each has its own deadline; a chunk size above 1 is refused.
    /// ([`AsyncResult::get_timeout`](crate::AsyncResult::get_timeout) is different: it only stops waiting.)
    ///
    /// # Errors
    ///
    /// The call's methods return [`Error::InvalidArgument`] for a zero
    /// timeout or a chunk size above 1.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms }
    ///
    /// let pool = procpool::Pool::new(2)?;
    /// let results: Vec<_> = pool.with_timeout(Duration::from_millis(500)).imap(nap, [1, 60_000, 2])?.collect();
    /// assert_eq!(results[0].as_ref().ok(), Some(&1));
    /// assert!(results[1].as_ref().unwrap_err().is_timed_out());
    /// assert_eq!(results[2].as_ref().ok(), Some(&2));
    /// assert_eq!(pool.worker_pids().len(), 2); // the killed worker was replaced
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn with_timeout(&self, timeout: std::time::Duration) -> Call<'_> {
        Call::new(self).with_timeout(timeout)
    }

    /// A call whose tasks are run again, up to `retries` more times, when
    /// their worker process dies under them (a crash, a kill from outside,
    /// running out of memory without a pool limit). Only for idempotent
    /// tasks: a task may have done part of its work before its worker died.
    /// A task that panicked (also under `panic = "abort"`), overflowed its
    /// stack, timed out, went over the memory limit or was cancelled is not
    /// retried: it would fail again. When every attempt fails, the error is
    /// [`Error::WorkerDied`] with the number of attempts. Overrides the
    /// pool's [`retries`](crate::PoolBuilder::retries).
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = procpool::Pool::new(1)?;
    /// let err = pool.with_retries(2).apply(|code: i32| -> u8 { std::process::exit(code) }, 3).unwrap_err();
    /// assert!(matches!(err, procpool::Error::WorkerDied { attempts: 3, .. }));
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn with_retries(&self, retries: u32) -> Call<'_> {
        Call::new(self).with_retries(retries)
    }

    /// A call whose result, when it succeeds, is first passed (by
    /// reference) to `callback` (Python's `callback=`). Available on
    /// `apply_async`, `map_async` and `starmap_async`.
    ///
    /// Callbacks run in the parent process, one at a time on a thread the
    /// pool owns, before the result reports ready; [`join`](Self::join)
    /// waits for them. A panicking callback is caught: the result still
    /// becomes ready with its value.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::mpsc;
    /// let pool = procpool::Pool::new(1)?;
    /// let (tx, rx) = mpsc::channel();
    /// pool.with_callback(move |v: &u32| tx.send((*v, std::process::id())).unwrap())
    ///     .apply_async(|x: u32| x + 1, 1)?;
    /// pool.close();
    /// pool.join()?;
    /// assert_eq!(rx.recv().unwrap(), (2, std::process::id())); // ran in the parent
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn with_callback<T, C>(&self, callback: C) -> Call<'_, Callbacks<T>>
    where
        C: FnOnce(&T) + Send + 'static,
    {
        Call::new(self).with_callback(callback)
    }

    /// A call whose error, when it fails, is first passed to `callback`
    /// (Python's `error_callback=`); it runs like
    /// [`with_callback`](Self::with_callback)'s.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::mpsc;
    /// let pool = procpool::Pool::new(1)?;
    /// let (tx, rx) = mpsc::channel();
    /// let h = pool
    ///     .with_error_callback(move |e: &procpool::Error| tx.send(e.is_panic()).unwrap())
    ///     .apply_async(|_: ()| -> u8 { panic!("no") }, ())?;
    /// assert!(h.get().is_err());
    /// assert!(rx.recv().unwrap());
    /// # Ok::<(), procpool::Error>(())
    /// ```
    pub fn with_error_callback<T, C>(&self, callback: C) -> Call<'_, Callbacks<T>>
    where
        C: FnOnce(&Error) + Send + 'static,
    {
        Call::new(self).with_error_callback(callback)
    }
}
