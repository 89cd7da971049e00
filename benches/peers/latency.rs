//! Per-task costs: (a) a sequential `apply` round trip, and (b) a burst of
//! `apply_async` followed by every `get`. The task is the trivial
//! [`inc`], so what is measured is the pool's own work: dispatch, framing,
//! serde, the two context switches, result delivery.

use procpool::Pool;

use crate::harness::{Fallible, Opts, Sample, WORKERS, call_us, check_eq, median, median_call_us, timed};
use crate::python;
use crate::raw::RawPeer;
use crate::report::{Better, Section, Target};
use crate::sandboxed;
use crate::tasks::inc;

/// One checked `pool.apply(inc, i)` on the unsandboxed pool and one on
/// the sandboxed pool (if any), in turn; their latencies in µs.
fn apply_us(pools: (&Pool, Option<&Pool>), i: u64) -> Fallible<(f64, Option<f64>)> {
    sandboxed::in_turn(i, pools.0, pools.1, |pool, what| {
        call_us(|| check_eq(what, pool.apply(inc, i)?, inc(i)))
    })
}

/// (a) median µs per sequential call, each repetition's median of its
/// calls; peers: the raw socketpair ping-pong (the limit), Python's
/// `Pool.apply`, procspawn's `Pool::spawn(..).join()`. The sides in this
/// process take turns call by call, so that a busy moment of the machine
/// falls on all of them alike. The sandboxed pool takes its turn too, and
/// is compared with the unsandboxed one in a section of its own.
pub(crate) fn apply_round_trip(opts: &Opts) -> Fallible<Vec<Section>> {
    let reps = opts.pick(1, 5, 11);
    let calls: u64 = opts.pick(20, 1_000, 5_000);
    let spawn_calls: u64 = opts.pick(5, 200, 1_000);

    let pool = Pool::new(WORKERS)?;
    let sb_pool = sandboxed::pool()?;
    let spawn_pool = procspawn::Pool::new(WORKERS)?;
    let mut echo = RawPeer::echo()?;
    let pools = (&pool, sb_pool.as_ref());
    // Warm-up: workers started, pages touched, caches filled.
    median_call_us(100, |i| apply_us(pools, i).map(drop))?;
    median_call_us(20, |i| {
        check_eq("procspawn", spawn_pool.spawn(i, inc).join()?, inc(i))
    })?;
    median_call_us(100, |i| echo.round_trip(i))?;

    let every = (calls / spawn_calls).max(1);
    let (mut pp, mut raw, mut ps, mut sb) = (Sample::new(), Sample::new(), Sample::new(), Sample::new());
    for _ in 0..reps {
        let (mut pp_us, mut raw_us, mut ps_us, mut sb_us) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..calls {
            let (plain, sandboxed) = apply_us(pools, i)?;
            pp_us.push(plain);
            sb_us.extend(sandboxed);
            raw_us.push(call_us(|| echo.round_trip(i))?);
            if i % every == 0 {
                ps_us.push(call_us(|| {
                    check_eq("procspawn spawn+join", spawn_pool.spawn(i, inc).join()?, inc(i))
                })?);
            }
        }
        pp.push(median(&pp_us));
        raw.push(median(&raw_us));
        ps.push(median(&ps_us));
        if !sb_us.is_empty() {
            sb.push(median(&sb_us));
        }
    }
    echo.finish()?;
    drop(spawn_pool);
    sandboxed::finish(sb_pool)?;
    pool.close();
    pool.join()?;

    let mut py = python::run('a', &[("--reps", reps), ("--count", calls as usize)])?;
    let title = "(a) apply round trip";
    let sandbox = sandboxed::section(
        title,
        "µs/call",
        Better::Lower,
        sb,
        &pp,
        sandboxed::ROUND_TRIP,
        format!(
            "{reps} reps of {calls} sequential calls, taking turns call by call with the other sides \
             (the two pools in alternating order)"
        ),
    );
    let section = Section::new(title, "µs/call", Better::Lower, pp)
        .peer("raw socketpair ping-pong", raw, Some(Target::AtMost(1.5)))
        .peer("Python Pool.apply (fork)", py.take("apply_us")?, None)
        .peer("procspawn Pool spawn+join", ps, None)
        .note(format!(
            "{reps} reps of {calls} sequential calls (procspawn {spawn_calls}), the sides in this process \
             taking turns call by call; each rep's value is the median call; {WORKERS} workers (raw: one \
             echo process)"
        ));
    Ok(std::iter::once(section).chain(sandbox).collect())
}

/// (b) tasks/s for `n` `apply_async` then every `get`, in order; peers:
/// Python's `apply_async` and procspawn's pool (fewer tasks: each of its
/// pending tasks holds several descriptors).
pub(crate) fn apply_async_rate(opts: &Opts) -> Fallible<Vec<Section>> {
    let reps = opts.pick(1, 3, 5);
    let n: u64 = opts.pick(1_000, 100_000, 100_000);
    let py_n = opts.pick(200, 10_000, 100_000);
    let spawn_n: u64 = opts.pick(50, 500, 2_000);

    let pool = Pool::new(WORKERS)?;
    let spawn_pool = procspawn::Pool::new(WORKERS)?;
    burst(&pool, 1_000)?;
    spawn_burst(&spawn_pool, 50)?;

    let (mut pp, mut ps) = (Sample::new(), Sample::new());
    for _ in 0..reps {
        let (done, secs) = timed(|| burst(&pool, n));
        done?;
        pp.push(n as f64 / secs);
        let (done, secs) = timed(|| spawn_burst(&spawn_pool, spawn_n));
        done?;
        ps.push(spawn_n as f64 / secs);
    }
    drop(spawn_pool);
    pool.close();
    pool.join()?;

    let mut py = python::run('b', &[("--reps", reps), ("--count", py_n)])?;
    let section = Section::new("(b) apply_async burst", "tasks/s", Better::Higher, pp)
        .peer(
            "Python apply_async (fork)",
            py.take("apply_async_per_s")?,
            Some(Target::AtLeast(30.0)),
        )
        .peer("procspawn Pool spawn, then join", ps, Some(Target::AtLeast(30.0)))
        .note(format!(
            "{reps} reps of {n} tasks submitted then got in order (Python {py_n}, procspawn {spawn_n}); \
             {WORKERS} workers"
        ));
    Ok(vec![section])
}

fn burst(pool: &Pool, n: u64) -> Fallible {
    let handles = (0..n)
        .map(|i| pool.apply_async(inc, i))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, h) in (0..).zip(handles) {
        check_eq("procpool apply_async", h.get()?, inc(i))?;
    }
    Ok(())
}

fn spawn_burst(pool: &procspawn::Pool, n: u64) -> Fallible {
    let handles: Vec<_> = (0..n).map(|i| pool.spawn(i, inc)).collect();
    for (i, h) in (0..).zip(handles) {
        check_eq("procspawn spawn", h.join()?, inc(i))?;
    }
    Ok(())
}
