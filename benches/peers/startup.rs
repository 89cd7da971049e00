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
//!
//! The sandboxed pool is started in every repetition too; its section
//! compares the time until `build` returns (both workers started, and
//! locked down) with the unsandboxed `Pool::new(2)`'s.

use procpool::Pool;

use crate::harness::{Fallible, Opts, Sample, WORKERS, check_eq, resident_mib, timed};
use crate::python;
use crate::raw;
use crate::report::{Better, Section, Target};
use crate::sandboxed;
use crate::tasks::inc;

/// The touched memory the parent holds for the third section.
const BALLAST: usize = 256 << 20;

/// The milliseconds one cold pool took from the start of its building.
#[derive(Debug, Clone, Copy)]
struct Started {
    /// Until `build` (or `Pool::new`) returned.
    built: f64,
    /// To the first `apply` result.
    first: f64,
    /// To `join` after `close`.
    joined: f64,
}

/// A way to build a pool: `Pool::new` or [`sandboxed::build`].
type Build = fn() -> Fallible<Pool>;

/// `Pool::new(WORKERS)`.
fn unsandboxed() -> Fallible<Pool> {
    Ok(Pool::new(WORKERS)?)
}

/// One cold pool from `build`, used once and joined.
fn pool_once(build: Build) -> Fallible<Started> {
    let (pool, built_s) = timed(build);
    let pool = pool?;
    let (r, apply_s) = timed(|| pool.apply(inc, 1));
    let (joined, join_s) = timed(|| {
        pool.close();
        pool.join()
    });
    check_eq("procpool apply on a new pool", r?, inc(1))?;
    joined?;
    let ms = |s: f64| s * 1e3;
    Ok(Started {
        built: ms(built_s),
        first: ms(built_s + apply_s),
        joined: ms(built_s + apply_s + join_s),
    })
}

/// (e) three sections: to the first result (with the targets), to
/// `join`, and to the first result again from a parent with [`BALLAST`].
pub(crate) fn startup(opts: &Opts) -> Fallible<Vec<Section>> {
    let reps = opts.pick(2, 10, 30);
    let spawn_reps = opts.pick(1, 3, 10);
    let rss = resident_mib();
    // The sandboxed side runs where this kernel can enforce it.
    let sandbox = sandboxed::available()?.then_some(sandboxed::build as Build);
    sandboxed::in_turn(0, unsandboxed as Build, sandbox, |build, _| pool_once(build))?;
    raw::fork_exec_reply()?;

    let (mut pp_first, mut pp_join) = (Sample::new(), Sample::new());
    let (mut pp_built, mut sb_built) = (Sample::new(), Sample::new());
    let (mut raw_first, mut raw_exit) = (Sample::new(), Sample::new());
    for rep in 0..reps {
        let (plain, sandboxed) =
            sandboxed::in_turn(rep as u64, unsandboxed as Build, sandbox, |build, _| {
                pool_once(build)
            })?;
        pp_first.push(plain.first);
        pp_join.push(plain.joined);
        pp_built.push(plain.built);
        sb_built.extend(sandboxed.map(|s| s.built));
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
    let sandboxed = sandboxed::section(
        "(e) Pool(2) until build returns",
        "ms",
        Better::Lower,
        sb_built,
        &pp_built,
        sandboxed::START,
        format!(
            "{reps} reps, each a new pool of {WORKERS} workers (Pool::builder().processes({WORKERS})\
             .sandbox(..).build() against Pool::new({WORKERS})), the two in alternating order"
        ),
    );
    Ok([first, join, heavy].into_iter().chain(sandboxed).collect())
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
        pp.push(pool_once(unsandboxed)?.first);
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
