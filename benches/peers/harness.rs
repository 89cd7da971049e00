//! The measuring kit: command-line options and the quick/full sizes,
//! samples and their medians, timing, and the result checks that make a
//! wrong answer fail the run.

use std::fmt::Debug;
use std::time::Instant;

/// Every workload's error type: a failed check, a pool error, an I/O error.
pub(crate) type Fallible<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// The number of workers (or threads) on every side: this machine has 2
/// cores.
pub(crate) const WORKERS: usize = 2;

/// The workload letters, in the order they run.
pub(crate) const LETTERS: &str = "abcdef";

/// How big a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Size {
    /// Tiny sizes, one repetition: checks that every side runs and answers
    /// right, measures nothing worth reading. What the binary does when
    /// `cargo bench` did not start it (`cargo test --all-targets`, which
    /// builds it unoptimised).
    Smoke,
    /// `--quick`: fewer repetitions and smaller inputs (under a minute).
    Quick,
    /// The sizes for published numbers: `cargo bench` without `--quick`,
    /// or `--full`.
    Full,
}

/// What to run: which sizes, and which workloads.
#[derive(Debug, Clone)]
pub(crate) struct Opts {
    size: Size,
    /// `--only <letters>`: the workloads to run; all when `None`.
    only: Option<String>,
}

/// The usage line printed for `--help` and after a bad argument.
pub(crate) const USAGE: &str =
    "usage: cargo bench --bench peers -- [--quick | --full] [--only <letters from abcdef>]";

impl Opts {
    /// Parses the arguments after the program name. `cargo bench` adds
    /// `--bench`, which makes the default size full; without it (or
    /// `--quick` / `--full`), the run is a smoke test. `Ok(None)` means
    /// `--help`.
    pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Opts>, String> {
        let (mut chosen, mut bench) = (None, false);
        let mut only = None;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => chosen = Some(Size::Quick),
                "--full" => chosen = Some(Size::Full),
                "--bench" => bench = true,
                "--help" | "-h" => return Ok(None),
                "--only" => {
                    let letters = args
                        .next()
                        .ok_or("--only needs workload letters, e.g. --only ace")?;
                    only = Some(Self::letters(&letters)?);
                }
                other => match other.strip_prefix("--only=") {
                    Some(letters) => only = Some(Self::letters(letters)?),
                    None => return Err(format!("unknown argument {other:?}")),
                },
            }
        }
        let size = chosen.unwrap_or(if bench { Size::Full } else { Size::Smoke });
        Ok(Some(Opts { size, only }))
    }

    fn letters(s: &str) -> Result<String, String> {
        let s = s.to_ascii_lowercase();
        match s.chars().find(|c| !LETTERS.contains(*c)) {
            _ if s.is_empty() => Err("--only needs at least one workload letter".to_owned()),
            Some(c) => Err(format!("--only: no workload {c:?} (the workloads are {LETTERS})")),
            None => Ok(s),
        }
    }

    /// Whether workload `letter` runs.
    pub(crate) fn runs(&self, letter: char) -> bool {
        self.only.as_ref().is_none_or(|only| only.contains(letter))
    }

    /// The value for this run's [`Size`].
    pub(crate) fn pick<T>(&self, smoke: T, quick: T, full: T) -> T {
        match self.size {
            Size::Smoke => smoke,
            Size::Quick => quick,
            Size::Full => full,
        }
    }

    /// Whether this is a smoke test rather than a benchmark.
    pub(crate) fn is_smoke(&self) -> bool {
        self.size == Size::Smoke
    }

    /// The mode's name, for the report.
    pub(crate) fn mode(&self) -> &'static str {
        self.pick("smoke-test (not a benchmark)", "quick", "full")
    }
}

/// The values of one measure, one per repetition.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    values: Vec<f64>,
}

impl Sample {
    /// An empty sample.
    pub(crate) fn new() -> Sample {
        Sample::default()
    }

    /// Adds one repetition's value.
    pub(crate) fn push(&mut self, value: f64) {
        self.values.push(value);
    }

    /// The number of repetitions.
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The median (the mean of the two middle values for an even count);
    /// NaN when empty.
    pub(crate) fn median(&self) -> f64 {
        median(&self.values)
    }

    /// The smallest value; NaN when empty.
    pub(crate) fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    /// The largest value; NaN when empty.
    pub(crate) fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }
}

impl Extend<f64> for Sample {
    fn extend<I: IntoIterator<Item = f64>>(&mut self, values: I) {
        self.values.extend(values);
    }
}

impl From<Vec<f64>> for Sample {
    fn from(values: Vec<f64>) -> Sample {
        Sample { values }
    }
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`), to tell a
/// quiet machine from a busy one in the report.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// This process's resident memory in MiB (`VmRSS`); NaN when unknown.
pub(crate) fn resident_mib() -> f64 {
    status_mib("VmRSS:")
}

/// This process's peak resident memory in MiB (`VmHWM`) since the last
/// [`reset_peak_resident`]; NaN when unknown.
pub(crate) fn peak_resident_mib() -> f64 {
    status_mib("VmHWM:")
}

/// Starts the peak resident memory over from the current one (Linux 4.0
/// and later: `5` to `/proc/self/clear_refs`).
pub(crate) fn reset_peak_resident() -> Fallible {
    std::fs::write("/proc/self/clear_refs", "5")?;
    Ok(())
}

/// A field of `/proc/self/status` given in kB, in MiB; NaN when unknown.
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// The median of `values`; NaN when empty.
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Runs `f` and returns its value and the seconds it took.
pub(crate) fn timed<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let start = Instant::now();
    let value = f();
    (value, start.elapsed().as_secs_f64())
}

/// Runs one call and returns its latency in microseconds.
pub(crate) fn call_us(f: impl FnOnce() -> Fallible) -> Fallible<f64> {
    let (done, secs) = timed(f);
    done?;
    Ok(secs * 1e6)
}

/// Runs `f(0..calls)` one call at a time and returns the median latency of
/// a call, in microseconds.
pub(crate) fn median_call_us(calls: u64, mut f: impl FnMut(u64) -> Fallible) -> Fallible<f64> {
    let mut lat = Vec::with_capacity(calls as usize);
    for i in 0..calls {
        lat.push(call_us(|| f(i))?);
    }
    Ok(median(&lat))
}

/// Fails the run when `got != want`, naming `what`.
pub(crate) fn check_eq<T: PartialEq + Debug>(what: &str, got: T, want: T) -> Fallible {
    if got == want {
        Ok(())
    } else {
        Err(format!("wrong result from {what}: got {got:?}, expected {want:?}").into())
    }
}

/// Fails the run when two result lists differ, naming `what` and the first
/// difference (not the whole lists, which may be a million long).
pub(crate) fn check_all<T: PartialEq + Debug>(what: &str, got: &[T], want: &[T]) -> Fallible {
    if got.len() != want.len() {
        return Err(format!(
            "wrong result from {what}: {} results, expected {}",
            got.len(),
            want.len()
        )
        .into());
    }
    match got.iter().zip(want).position(|(g, w)| g != w) {
        None => Ok(()),
        Some(i) => Err(format!(
            "wrong result from {what} at index {i}: got {:?}, expected {:?}",
            got[i], want[i]
        )
        .into()),
    }
}
