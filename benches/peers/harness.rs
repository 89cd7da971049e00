//! The measuring kit: the one shared with `benches/cluster.rs`
//! (`benches/common/harness.rs`: options and sizes, samples and their
//! medians, timing, result checks), re-exported, with this bench's worker
//! count and what only it measures: median call latencies and this
//! process's resident memory.

#[path = "../common/harness.rs"]
mod common;

pub(crate) use common::*;

/// The number of workers (or threads) on every side: this machine has 2
/// cores.
pub(crate) const WORKERS: usize = 2;

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

/// Runs `f(0..calls)` one call at a time and returns the median latency of
/// a call, in microseconds.
pub(crate) fn median_call_us(calls: u64, mut f: impl FnMut(u64) -> Fallible) -> Fallible<f64> {
    let mut lat = Vec::with_capacity(calls as usize);
    for i in 0..calls {
        lat.push(call_us(|| f(i))?);
    }
    Ok(median(&lat))
}
