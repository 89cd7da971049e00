//! The optional progress bar of `map`-like calls (cargo feature
//! `progress`, drawn with [indicatif]). Without the feature, calls carry no
//! bar and this is an empty shell that is never made.
//!
//! The bar draws on a target that may be the caller's own code (a
//! `TermLike`), from the supervisor threads: every call into it is
//! shielded, so that a panic there costs the pool nothing (the bar just
//! stops moving).
//!
//! [indicatif]: https://docs.rs/indicatif

#[cfg(feature = "progress")]
use std::sync::Arc;
#[cfg(feature = "progress")]
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::Error;
#[cfg(feature = "progress")]
use crate::task::panics::{drop_shielded, shielded};

/// A call's progress bar: advanced as tasks finish, on the supervisor
/// threads.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    #[cfg(feature = "progress")]
    bar: Arc<Bar>,
    /// The caller brought the bar: keep its style.
    #[cfg(feature = "progress")]
    theirs: bool,
    /// Set when the call is given up (cancelled, terminated, its iterator
    /// dropped): the bar stays where it was.
    #[cfg(feature = "progress")]
    stopped: Arc<AtomicBool>,
}

impl Progress {
    /// Advances `bar`, keeping its style.
    #[cfg(feature = "progress")]
    pub(crate) fn new(bar: indicatif::ProgressBar) -> Self {
        Progress {
            bar: Arc::new(Bar(Some(bar))),
            theirs: true,
            stopped: Arc::default(),
        }
    }

    /// procpool's bar (done/total, rate and ETA) drawn on `target`;
    /// indicatif draws nothing on a terminal target that is not a
    /// terminal.
    #[cfg(feature = "progress")]
    pub(crate) fn on(target: indicatif::ProgressDrawTarget) -> Self {
        let bar = indicatif::ProgressBar::with_draw_target(None, target);
        Progress {
            bar: Arc::new(Bar(Some(bar))),
            theirs: false,
            stopped: Arc::default(),
        }
    }

    /// Sets the number of tasks, when known, and (for procpool's own bar)
    /// the style that goes with it: a bar with an ETA, or a count with a
    /// rate.
    pub(crate) fn start(&self, total: Option<usize>) {
        #[cfg(feature = "progress")]
        {
            use indicatif::ProgressStyle;
            let template = match total {
                Some(_) => "{bar:40} {pos}/{len} tasks  {per_sec}  ETA {eta}",
                None => "{spinner} {pos} tasks  {per_sec}  {elapsed}",
            };
            self.bar.draw(|bar| {
                if !self.theirs
                    && let Ok(style) = ProgressStyle::with_template(template)
                {
                    bar.set_style(style);
                }
                if let Some(n) = total {
                    bar.set_length(n as u64);
                }
            });
        }
        #[cfg(not(feature = "progress"))]
        let _ = total;
    }

    /// `n` more tasks are done, as `failure` says: tasks that ended in an
    /// error of their own count; tasks given up with their call (cancelled,
    /// terminated) do not.
    pub(crate) fn advance(&self, n: u32, failure: Option<&Error>) {
        if matches!(failure, Some(Error::Cancelled | Error::Terminated)) {
            return self.stop();
        }
        #[cfg(feature = "progress")]
        if !self.stopped.load(Ordering::Relaxed) {
            self.bar.draw(|bar| bar.inc(u64::from(n)));
        }
        #[cfg(not(feature = "progress"))]
        let _ = n;
    }

    /// The call is over: the bar shows its final state (as it was, if the
    /// call was given up).
    pub(crate) fn finish(&self, outcome: Option<&Error>) {
        if matches!(outcome, Some(Error::Cancelled | Error::Terminated)) {
            self.stop();
        } else {
            #[cfg(feature = "progress")]
            if !self.stopped.load(Ordering::Relaxed) {
                self.bar.draw(indicatif::ProgressBar::finish);
            }
        }
    }

    /// The call was given up: the bar stops where it is.
    pub(crate) fn stop(&self) {
        #[cfg(feature = "progress")]
        if !self.stopped.swap(true, Ordering::Relaxed) {
            self.bar.draw(indicatif::ProgressBar::abandon);
        }
    }
}

/// The indicatif bar, whose every update (and last drop: a bar dropped
/// unfinished draws itself finished) may run the target's code.
#[cfg(feature = "progress")]
#[derive(Debug)]
struct Bar(Option<indicatif::ProgressBar>);

#[cfg(feature = "progress")]
impl Bar {
    /// Updates the bar, shielded.
    fn draw(&self, update: impl FnOnce(&indicatif::ProgressBar)) {
        if let Some(bar) = &self.0 {
            shielded(|| update(bar));
        }
    }
}

#[cfg(feature = "progress")]
impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(bar) = self.0.take() {
            drop_shielded(bar);
        }
    }
}
