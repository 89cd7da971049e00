//! (e) Start-up: `Pool::new(2)` to the first `apply` result, and on to
//! `join` after `close` (both workers started, used, stopped and reaped).
//! Peers: Python's `Pool(2)` with the fork and the spawn start methods, and
//! the floor, one raw fork+exec of this program that answers on a pipe.
//!
//! Start-up time depends on the parent's resident memory (procpool starts
//! a worker with `fork`, whose cost grows with the page tables; a plain
//! `Command` uses `posix_spawn`): the main measure runs first in the run,
//! from a small parent, and a third section repeats it with the parent
//! holding [`BALLAST`] bytes of touched memory, next to the raw peer in
//! the same state.

use procpool::Pool;

use crate::harness::{Fallible, Opts, Sample, WORKERS, check_eq, resident_mib, timed};
use crate::python;
use crate::raw;
use crate::report::{Better, Section, Target};
use crate::tasks::inc;

/// The touched memory the parent holds for the third section.
const BALLAST: usize = 256 << 20;

/// One cold pool: milliseconds to the first result and to `join`.
fn pool_once() -> Fallible<(f64, f64)> {
    let (first, first_s) = timed(|| -> Fallible<(Pool, u64)> {
        let pool = Pool::new(WORKERS)?;
        let r = pool.apply(inc, 1)?;
        Ok((pool, r))
    });
    let (pool, r) = first?;
    let (joined, join_s) = timed(|| {
        pool.close();
        pool.join()
    });
    joined?;
    check_eq("procpool apply on a new pool", r, inc(1))?;
    Ok((first_s * 1e3, (first_s + join_s) * 1e3))
}

/// (e) three sections: to the first result (with the targets), to
/// `join`, and to the first result again from a parent with [`BALLAST`].
pub(crate) fn startup(opts: &Opts) -> Fallible<Vec<Section>> {
    let reps = opts.pick(2, 10, 30);
    let spawn_reps = opts.pick(1, 3, 10);
    let rss = resident_mib();
    pool_once()?;
    raw::fork_exec_reply()?;

    let (mut pp_first, mut pp_join) = (Sample::new(), Sample::new());
    let (mut raw_first, mut raw_exit) = (Sample::new(), Sample::new());
    for _ in 0..reps {
        let (first, join) = pool_once()?;
        pp_first.push(first);
        pp_join.push(join);
        let (first, exit) = raw::fork_exec_reply()?;
        raw_first.push(first);
        raw_exit.push(exit);
    }

    let heavy = with_ballast(opts.pick(1, 5, 10))?;

    let mut py = python::run('e', &[("--reps", reps), ("--spawn-reps", spawn_reps)])?;
    let note = format!(
        "{reps} reps (Python spawn {spawn_reps}), each a new pool of {WORKERS} workers, from a parent \
         of {rss:.0} MiB resident; raw: one process of this executable started with \
         std::process::Command"
    );
    let first = Section::new("(e) Pool(2) to first result", "ms", Better::Lower, pp_first)
        .peer(
            "Python Pool(2), fork",
            py.take("fork_first_ms")?,
            Some(Target::AtMost(0.5)),
        )
        .peer("raw fork+exec reply", raw_first, Some(Target::AtMost(2.5)))
        .peer("Python Pool(2), spawn", py.take("spawn_first_ms")?, None)
        .note(note.clone());
    let join = Section::new("(e) Pool(2) to join", "ms", Better::Lower, pp_join)
        .peer("Python Pool(2), fork", py.take("fork_join_ms")?, None)
        .peer("raw fork+exec, to exit", raw_exit, None)
        .peer("Python Pool(2), spawn", py.take("spawn_join_ms")?, None)
        .note(note);
    Ok(vec![first, join, heavy])
}

/// The first-result time again, with the parent holding [`BALLAST`]
/// bytes of touched memory; the raw peer in the same state.
fn with_ballast(reps: usize) -> Fallible<Section> {
    let mut ballast = vec![1u8; BALLAST];
    for (i, page) in ballast.chunks_mut(4096).enumerate() {
        page[0] = i as u8;
    }
    let ballast = std::hint::black_box(ballast);
    let rss = resident_mib();
    let (mut pp, mut raw) = (Sample::new(), Sample::new());
    for _ in 0..reps {
        pp.push(pool_once()?.0);
        raw.push(raw::fork_exec_reply()?.0);
    }
    drop(ballast);
    Ok(Section::new(
        "(e) Pool(2) to first result, parent with 256 MiB resident",
        "ms",
        Better::Lower,
        pp,
    )
    .peer("raw fork+exec reply", raw, None)
    .note(format!(
        "{reps} reps from a parent of {rss:.0} MiB resident (an extra measure: no target)"
    )))
}
