//! The sandboxed pool as a side of (a), (c) and (e): the same workload on
//! a pool built with `PoolBuilder::sandbox(Sandbox::strict())`, measured
//! in the same run as the unsandboxed pool (the two take turns, in
//! alternating order), and reported in a section of its own whose ratio is
//! sandboxed ÷ unsandboxed.
//!
//! Where the kernel cannot enforce the strict sandbox (no seccomp, or a
//! Landlock ABI below 6), the sandboxed side is skipped with a note on
//! stderr rather than failing the run: its rows are then missing.

use procpool::{Error, Pool, Sandbox};

use crate::harness::{Fallible, Sample, WORKERS};
use crate::report::{Better, Section, Target};

/// The targets on sandboxed ÷ unsandboxed: an `apply` round trip
/// within 1.1× the time.
pub(crate) const ROUND_TRIP: Target = Target::AtMost(1.1);
/// `map` within 1.1× the time: at least 1 / 1.1 of the items/s.
pub(crate) const MAP: Target = Target::AtLeast(1.0 / 1.1);
/// Start-up (until `build` returns) within 1.5× the time.
pub(crate) const START: Target = Target::AtMost(1.5);

/// A sandboxed pool of [`WORKERS`] workers, as `Pool::new(WORKERS)` but
/// for the sandbox.
pub(crate) fn build() -> Fallible<Pool> {
    Ok(Pool::builder()
        .processes(WORKERS)
        .sandbox(Sandbox::strict())
        .build()?)
}

/// Whether this kernel can enforce the strict sandbox; when it cannot,
/// says so on stderr, and the sandboxed side is skipped.
pub(crate) fn available() -> Fallible<bool> {
    match Sandbox::strict().check() {
        Ok(_) => Ok(true),
        Err(e @ Error::SandboxUnavailable { .. }) => {
            eprint!("(sandboxed side skipped: {e}) ");
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// The sandboxed pool for a workload, or `None` where this kernel cannot
/// enforce the strict sandbox.
pub(crate) fn pool() -> Fallible<Option<Pool>> {
    Ok(if available()? { Some(build()?) } else { None })
}

/// Runs `measure` on the unsandboxed side `plain` and on the `sandboxed`
/// one (where there is one), in turn: the sandboxed side first on odd
/// `turn`s, so that neither always runs right after the same side.
/// `measure` gets the side and its name for error messages. Returns the
/// two values.
pub(crate) fn in_turn<S, T>(
    turn: u64,
    plain: S,
    sandboxed: Option<S>,
    mut measure: impl FnMut(S, &str) -> Fallible<T>,
) -> Fallible<(T, Option<T>)> {
    const PLAIN: &str = "procpool";
    const SANDBOXED: &str = "sandboxed procpool";
    match sandboxed {
        Some(sandboxed) if turn % 2 == 1 => {
            let s = measure(sandboxed, SANDBOXED)?;
            Ok((measure(plain, PLAIN)?, Some(s)))
        }
        Some(sandboxed) => {
            let p = measure(plain, PLAIN)?;
            Ok((p, Some(measure(sandboxed, SANDBOXED)?)))
        }
        None => Ok((measure(plain, PLAIN)?, None)),
    }
}

/// Closes and joins the sandboxed pool, if there is one.
pub(crate) fn finish(pool: Option<Pool>) -> Fallible {
    if let Some(pool) = pool {
        pool.close();
        pool.join()?;
    }
    Ok(())
}

/// The section `<title>, sandboxed pool`: the sandboxed sample against
/// the unsandboxed pool's of the same run, with `target`; `None` when the
/// sandboxed side was skipped.
pub(crate) fn section(
    title: &str,
    unit: &'static str,
    better: Better,
    sandboxed: Sample,
    unsandboxed: &Sample,
    target: Target,
    note: String,
) -> Option<Section> {
    (sandboxed.len() > 0).then(|| {
        Section::new(&format!("{title}, sandboxed pool"), unit, better, sandboxed)
            .subject("sandboxed")
            .peer("procpool, not sandboxed", unsandboxed.clone(), Some(target))
            .note(format!("{note}; Sandbox::strict(), both pools in the same run"))
    })
}
