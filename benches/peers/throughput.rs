//! Bulk work: (c) `map` of a million trivial items with the default
//! chunksize (the per-item cost once chunking amortises the round trips),
//! and (d) a CPU-bound `map` whose speedup over a serial run shows how much
//! of two cores the pool delivers.

use procpool::Pool;
use rayon::prelude::*;

use crate::harness::{
    Fallible, Opts, Sample, WORKERS, check_all, check_eq, peak_resident_mib, reset_peak_resident,
    resident_mib, timed,
};
use crate::python;
use crate::report::{Better, Section, Target};
use crate::sandboxed;
use crate::tasks::{calibrate_spin, inc, spin};

/// (c) items/s of `pool.map(inc, 0..n)`; peers: Python's `Pool.map`
/// (default chunksize) and rayon's `par_iter().map().collect()` (threads,
/// no copying: a reference, not a target). The sandboxed pool runs the
/// same `map` in each repetition, compared with the unsandboxed one in a
/// section of its own.
pub(crate) fn map_rate(opts: &Opts) -> Fallible<Vec<Section>> {
    let reps = opts.pick(1, 5, 11);
    let n: u64 = opts.pick(10_000, 1_000_000, 1_000_000);
    let items: Vec<u64> = (0..n).collect();
    let want: Vec<u64> = items.iter().map(|&x| inc(x)).collect();

    let pool = Pool::new(WORKERS)?;
    let sb_pool = sandboxed::pool()?;
    sandboxed::in_turn(0, &pool, sb_pool.as_ref(), |pool, what| {
        check_all(what, &pool.map(inc, 0..1_000)?, &want[..1_000])
    })?;
    let (mut pp, mut ry, mut sb) = (Sample::new(), Sample::new(), Sample::new());
    for rep in 0..reps {
        let (plain, sandboxed) = sandboxed::in_turn(rep as u64, &pool, sb_pool.as_ref(), |pool, what| {
            let (got, secs) = timed(|| pool.map(inc, items.iter().copied()));
            check_all(what, &got?, &want)?;
            Ok(n as f64 / secs)
        })?;
        pp.push(plain);
        sb.extend(sandboxed);
        let (got, secs) = timed(|| items.par_iter().map(|&x| inc(x)).collect::<Vec<u64>>());
        check_all("rayon map", &got, &want)?;
        ry.push(n as f64 / secs);
    }
    sandboxed::finish(sb_pool)?;
    pool.close();
    pool.join()?;

    let mut py = python::run('c', &[("--reps", reps), ("--count", n as usize)])?;
    let title = "(c) map of trivial items";
    let sandbox = sandboxed::section(
        title,
        "items/s",
        Better::Higher,
        sb,
        &pp,
        sandboxed::MAP,
        format!("{reps} reps of {n} items, default chunksize, the two pools in alternating order"),
    );
    let section = Section::new(title, "items/s", Better::Higher, pp)
        .peer(
            "Python Pool.map (fork)",
            py.take("map_per_s")?,
            Some(Target::AtLeast(15.0)),
        )
        .peer("rayon par_iter (reference)", ry, None)
        .note(format!(
            "{reps} reps of {n} items, default chunksize (ceil(n / (4 × {WORKERS})) for procpool and \
             Python); rayon on its global pool ({} threads)",
            rayon::current_num_threads()
        ));
    let large = large_map(opts)?;
    Ok(std::iter::once(section).chain(sandbox).chain(large).collect())
}

/// (c) at 10 M items: `map(inc, 0..n)` from a range (no input held), with
/// the parent's peak resident memory during each `map` next to the size of
/// its output; rayon as the in-process reference.
fn large_map(opts: &Opts) -> Fallible<Option<Section>> {
    if opts.is_smoke() {
        return Ok(None);
    }
    let reps = opts.pick(1, 2, 5);
    let n: u64 = 10_000_000;
    let pool = Pool::new(WORKERS)?;
    pool.map(inc, 0..1_000u64)?;
    let (mut pp, mut ry, mut peak) = (Sample::new(), Sample::new(), Sample::new());
    for _ in 0..reps {
        let before = resident_mib();
        reset_peak_resident()?;
        let (got, secs) = timed(|| pool.map(inc, 0..n));
        let got = got?;
        peak.push(peak_resident_mib() - before);
        check_eq("procpool map of 10 M items: length", got.len() as u64, n)?;
        check_eq("procpool map of 10 M items: last", got[n as usize - 1], n)?;
        drop(got);
        pp.push(n as f64 / secs);
        let (got, secs) = timed(|| (0..n).into_par_iter().map(inc).collect::<Vec<u64>>());
        check_eq("rayon map of 10 M items: last", got[n as usize - 1], n)?;
        ry.push(n as f64 / secs);
    }
    pool.close();
    pool.join()?;
    let output_mib = (n * 8) as f64 / (1 << 20) as f64;
    Ok(Some(
        Section::new("(c) map of 10 M trivial items", "items/s", Better::Higher, pp)
            .peer("rayon par_iter (reference)", ry, None)
            .note(format!(
                "{reps} reps of map(inc, 0..{n}) from a range, default chunksize; the parent's \
                 peak resident memory during a map grew by {:.0} MiB (median; min {:.0}, max {:.0}) \
                 above its resident memory before it, for an output of {output_mib:.0} MiB",
                peak.median(),
                peak.min(),
                peak.max(),
            )),
    ))
}

/// (d) speedup = serial time ÷ parallel time for `count` spins of about
/// 1 ms, each repetition timing the serial run, procpool's `map` on 2
/// workers and rayon on a 2-thread pool back to back (the last two in
/// alternating order); Python's speedup is
/// its own serial run ÷ its `Pool(2).map`, calibrated in Python.
pub(crate) fn cpu_speedup(opts: &Opts) -> Fallible<Vec<Section>> {
    let reps = opts.pick(1, 7, 7);
    let count: u64 = opts.pick(8, 200, 2_000);
    let iters = calibrate_spin(1.0);
    let items: Vec<(u64, u64)> = (0..count).map(|i| (i, iters)).collect();

    let pool = Pool::new(WORKERS)?;
    let threads = rayon::ThreadPoolBuilder::new().num_threads(WORKERS).build()?;
    pool.map(inc, 0..WORKERS as u64 * 4)?;
    let (mut pp, mut ry, mut serial_ms) = (Sample::new(), Sample::new(), Sample::new());
    for rep in 0..reps {
        let (want, serial) = timed(|| items.iter().map(|&a| spin(a)).collect::<Vec<u64>>());
        serial_ms.push(serial / count as f64 * 1e3);
        let procpool_run = || -> Fallible<f64> {
            let (got, secs) = timed(|| pool.map(spin, items.iter().copied()));
            check_all("procpool map(spin)", &got?, &want)?;
            Ok(serial / secs)
        };
        let rayon_run = || -> Fallible<f64> {
            let (got, secs) =
                timed(|| threads.install(|| items.par_iter().map(|&a| spin(a)).collect::<Vec<u64>>()));
            check_all("rayon map(spin)", &got, &want)?;
            Ok(serial / secs)
        };
        // Alternate which side runs first, so that neither always gets the
        // moment right after the serial run.
        if rep % 2 == 0 {
            pp.push(procpool_run()?);
            ry.push(rayon_run()?);
        } else {
            ry.push(rayon_run()?);
            pp.push(procpool_run()?);
        }
    }
    pool.close();
    pool.join()?;

    let mut py = python::run('d', &[("--reps", reps), ("--count", count as usize)])?;
    let py_ms = py.take("serial_ms_per_item")?;
    let section = Section::new("(d) CPU-bound map, speedup", "×", Better::Higher, pp)
        .peer("rayon, 2-thread pool", ry, Some(Target::AtLeast(0.95)))
        .peer("Python Pool(2).map (fork)", py.take("speedup")?, None)
        .note(format!(
            "{reps} reps of {count} items; spin of {iters} LCG steps, {:.2} ms per item serially \
             (Python: its own spin, {:.2} ms per item); default chunksize; speedup = serial time ÷ \
             parallel time, the serial run in the same process and repetition",
            serial_ms.median(),
            py_ms.median()
        ));
    Ok(vec![section])
}
