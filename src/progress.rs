//! The optional progress bar of `map`-like calls (cargo feature
//! `progress`, drawn with [indicatif]). Without the feature, calls carry no
//! bar and this is an empty shell that is never made.
//!
//! [indicatif]: https://docs.rs/indicatif

/// A call's progress bar: advanced as chunks finish, on the supervisor
/// threads.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    #[cfg(feature = "progress")]
    bar: indicatif::ProgressBar,
}

impl Progress {
    #[cfg(feature = "progress")]
    pub(crate) fn new(bar: indicatif::ProgressBar) -> Self {
        Progress { bar }
    }

    /// A bar on stderr with done/total, rate and ETA; indicatif draws
    /// nothing when stderr is not a terminal.
    #[cfg(feature = "progress")]
    pub(crate) fn on_stderr() -> Self {
        let bar = indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        Progress { bar }
    }

    /// Sets the number of tasks, when known, and the style that goes with
    /// it (a bar with an ETA, or a count with a rate).
    pub(crate) fn start(&self, total: Option<usize>) {
        #[cfg(feature = "progress")]
        {
            use indicatif::ProgressStyle;
            let template = match total {
                Some(_) => "{bar:40} {pos}/{len} tasks  {per_sec}  ETA {eta}",
                None => "{spinner} {pos} tasks  {per_sec}  {elapsed}",
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                self.bar.set_style(style);
            }
            if let Some(n) = total {
                self.bar.set_length(n as u64);
            }
        }
        #[cfg(not(feature = "progress"))]
        let _ = total;
    }

    /// `n` more tasks are done.
    pub(crate) fn advance(&self, n: u32) {
        #[cfg(feature = "progress")]
        self.bar.inc(u64::from(n));
        #[cfg(not(feature = "progress"))]
        let _ = n;
    }

    /// The call is over: the bar shows its final state.
    pub(crate) fn finish(&self) {
        #[cfg(feature = "progress")]
        self.bar.finish();
    }
}
