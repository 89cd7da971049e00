//! Python's `multiprocessing.Pool` as a peer: runs
//! `benches/peers/pool_bench.py` with `python3`, one workload per run, and
//! reads the JSON it prints. The script checks its own results and exits
//! non-zero (with a message on stderr, which passes through) when one is
//! wrong; that fails this run too.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use serde::Deserialize;

use crate::harness::{Fallible, Sample};

/// The script, found from the crate root so that the run works from any
/// directory.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/peers/pool_bench.py");

/// The interpreter.
const PYTHON: &str = "python3";

/// What the script prints: each metric's value per repetition.
#[derive(Debug, Deserialize)]
pub(crate) struct PyMetrics {
    metrics: BTreeMap<String, Vec<f64>>,
}

impl PyMetrics {
    /// The sample of metric `name`; an error when the script did not report
    /// it.
    pub(crate) fn take(&mut self, name: &str) -> Fallible<Sample> {
        match self.metrics.remove(name) {
            Some(values) if !values.is_empty() => Ok(values.into()),
            _ => Err(format!("{SCRIPT} reported no {name:?}").into()),
        }
    }
}

/// Runs workload `letter` of the script with `args` (`("--reps", 5)`…).
pub(crate) fn run(letter: char, args: &[(&str, usize)]) -> Fallible<PyMetrics> {
    let mut cmd = Command::new(PYTHON);
    cmd.arg(SCRIPT).arg("--workload").arg(letter.to_string());
    for (name, value) in args {
        cmd.arg(name).arg(value.to_string());
    }
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {PYTHON} {SCRIPT}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{PYTHON} {SCRIPT} --workload {letter} failed: {}", out.status).into());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "{SCRIPT} printed no valid JSON ({e}): {:?}",
            String::from_utf8_lossy(&out.stdout)
        )
        .into()
    })
}
