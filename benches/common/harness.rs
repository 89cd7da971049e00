//! The measuring kit shared by the `peers` and `cluster` benches:
//! command-line options and the quick/full sizes, samples and their
//! medians, timing, and the result checks that make a wrong answer fail
//! the run. Each bench's own `harness.rs` re-exports it beside what only
//! that bench measures; each bench's root file gives its workload letters
//! ([`Cli`]).

use std::fmt::Debug;
use std::time::Instant;

/// Every workload's error type: a failed check, a pool error, an I/O error.
pub(crate) type Fallible<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// How big a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Size {
    /// Tiny sizes, one repetition: checks that every side runs and answers
    /// right, measures nothing worth reading. What the binary does when
    /// `cargo bench` did not start it (`cargo test --all-targets`, with
    /// `--all-features` for `cluster`, which builds it unoptimised).
    /// Installs nothing.
    Smoke,
    /// `--quick`: fewer repetitions and smaller inputs (under a minute once
    /// `cluster`'s Python peers are installed).
    Quick,
    /// The sizes for published numbers: `cargo bench` without `--quick`,
    /// or `--full`.
    Full,
}

/// A bench's command line: what [`Opts::parse`] accepts beyond the
/// options every bench has.
#[derive(Debug)]
pub(crate) struct Cli {
    /// The workload letters, in the order they run.
    pub(crate) letters: &'static str,
    /// The letters shown in the error for an `--only` without any, e.g.
    /// `ace`.
    pub(crate) only_example: &'static str,
    /// Whether `--setup` (install the Python peers and stop) is an option.
    pub(crate) setup: bool,
}

/// What to run: which sizes, and which workloads.
#[derive(Debug, Clone)]
pub(crate) struct Opts {
    size: Size,
    /// `--only <letters>`: the workloads to run; all when `None`.
    only: Option<String>,
    /// `--setup`: install the Python peers and stop.
    setup: bool,
}

impl Opts {
    /// Parses the arguments after the program name, as `cli` says. `cargo
    /// bench` adds `--bench`, which makes the default size full; without
    /// it (or `--quick` / `--full`), the run is a smoke test. `Ok(None)`
    /// means `--help`.
    pub(crate) fn parse(cli: &Cli, args: impl IntoIterator<Item = String>) -> Result<Option<Opts>, String> {
        let (mut chosen, mut bench, mut setup) = (None, false, false);
        let mut only = None;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => chosen = Some(Size::Quick),
                "--full" => chosen = Some(Size::Full),
                "--bench" => bench = true,
                "--setup" if cli.setup => setup = true,
                "--help" | "-h" => return Ok(None),
                "--only" => {
                    let letters = args.next().ok_or_else(|| {
                        format!("--only needs workload letters, e.g. --only {}", cli.only_example)
                    })?;
                    only = Some(Self::letters(cli, &letters)?);
                }
                other => match other.strip_prefix("--only=") {
                    Some(letters) => only = Some(Self::letters(cli, letters)?),
                    None => return Err(format!("unknown argument {other:?}")),
                },
            }
        }
        let size = chosen.unwrap_or(if bench { Size::Full } else { Size::Smoke });
        Ok(Some(Opts { size, only, setup }))
    }

    fn letters(cli: &Cli, s: &str) -> Result<String, String> {
        let s = s.to_ascii_lowercase();
        match s.chars().find(|c| !cli.letters.contains(*c)) {
            _ if s.is_empty() => Err("--only needs at least one workload letter".to_owned()),
            Some(c) => Err(format!(
                "--only: no workload {c:?} (the workloads are {})",
                cli.letters
            )),
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

    /// Whether `--setup` asked only for the Python peers' installation.
    #[allow(dead_code)] // Only `cluster` takes `--setup`.
    pub(crate) fn setup_only(&self) -> bool {
        self.setup
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

    /// Every value times `factor` (a linear extrapolation of a rate).
    #[allow(dead_code)] // Only `cluster`'s (j) extrapolates.
    pub(crate) fn scaled(&self, factor: f64) -> Sample {
        Sample {
            values: self.values.iter().map(|v| v * factor).collect(),
        }
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
