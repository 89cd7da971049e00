//! procpool against its peers, in one run: Python's `multiprocessing.Pool`,
//! procspawn's pool, rayon, and the machine's limits (a raw socketpair
//! ping-pong and stream, a raw fork+exec, `memcpy`).
//!
//! ```sh
//! cargo bench --bench peers -- --quick      # under a minute
//! cargo bench --bench peers                 # full sizes, for published numbers
//! cargo bench --bench peers -- --only ae    # some workloads (letters a to f)
//! ```
//!
//! Started any other way (`cargo test --all-targets` runs it unoptimised,
//! without the `--bench` argument that `cargo bench` adds), it makes a
//! smoke test of it: every workload once at tiny sizes, results checked,
//! timings not worth reading. `--quick` and `--full` choose the sizes
//! explicitly.
//!
//! The workloads (see `BENCHMARKS.md` for what each ratio means):
//!
//! * (a) sequential `apply` round trip of a trivial task ([`latency`]);
//! * (b) 100k `apply_async`, then every `get` ([`latency`]);
//! * (c) `map` of 1M trivial items, default chunksize ([`throughput`]);
//! * (d) CPU-bound `map` on 2 workers, speedup over serial ([`throughput`]);
//! * (e) `Pool::new(2)` to the first result and to `join` ([`startup`]; it
//!   runs first, while this process is small);
//! * (f) `map` over 16 MiB buffers, GB/s ([`payload`]).
//!
//! (a), (c) and (e) also run a sandboxed pool (`Sandbox::strict()`) beside
//! the unsandboxed one, and report sandboxed ÷ unsandboxed in sections of
//! their own ([`sandboxed`]); (e) times it until `build` returns.
//!
//! Every side's results are checked against the expected values; a wrong
//! one stops the run with an error and a non-zero exit status. Each
//! workload runs every side in the same run, repetitions interleaved where
//! the side is in this process, and reports medians; ratios are taken
//! between medians of the same run, because this machine is shared and
//! absolute times are noisy.
//!
//! This program is also its own raw peer ([`raw`]): started with a
//! `--raw-…` argument it serves that instead of benchmarking. procpool's
//! workers are copies of it too, taken over by procpool's constructor
//! before `main`; procspawn's are taken over by `procspawn::init`.
//!
//! The modules live in `benches/peers/` (a bench target's root file looks
//! for them beside itself, hence the `#[path]`s), with the Python peer,
//! `pool_bench.py`; the report and most of the harness are shared with
//! `benches/cluster.rs`, in `benches/common/`.

#[path = "peers/harness.rs"]
mod harness;
#[path = "peers/latency.rs"]
mod latency;
#[path = "peers/payload.rs"]
mod payload;
#[path = "peers/python.rs"]
mod python;
#[path = "peers/raw.rs"]
mod raw;
#[path = "common/report.rs"]
mod report;
#[path = "peers/sandboxed.rs"]
mod sandboxed;
#[path = "peers/startup.rs"]
mod startup;
#[path = "peers/tasks.rs"]
mod tasks;
#[path = "peers/throughput.rs"]
mod throughput;

use std::process::ExitCode;
use std::time::Instant;

use harness::{Cli, Fallible, Opts, WORKERS};
use report::{Framing, Section};

/// A workload: runs every side and returns its measures.
type Workload = fn(&Opts) -> Fallible<Vec<Section>>;

/// The workloads by letter, in the order they run: start-up first, while
/// this process is small (a pool's start-up time grows with the parent's
/// resident memory, which the other workloads leave larger). The report
/// lists them in letter order.
const WORKLOADS: [(char, &str, Workload); 6] = [
    ('e', "pool start-up", startup::startup),
    ('a', "apply round trip", latency::apply_round_trip),
    ('b', "apply_async burst", latency::apply_async_rate),
    ('c', "map of trivial items", throughput::map_rate),
    ('d', "CPU-bound map speedup", throughput::cpu_speedup),
    ('f', "16 MiB payloads", payload::large_payloads),
];

/// The workload letters, in the order they run.
const LETTERS: &str = "abcdef";

/// The command line: `--only` takes [`LETTERS`].
const CLI: Cli = Cli {
    letters: LETTERS,
    only_example: "ace",
    setup: false,
};

/// The usage line printed for `--help` and after a bad argument.
const USAGE: &str = "usage: cargo bench --bench peers -- [--quick | --full] [--only <letters from abcdef>]";

/// The report's heading and notes.
const REPORT: Framing = Framing {
    heading: |mode| {
        format!(
            "procpool vs peers: {mode} mode, {WORKERS} workers (threads for rayon), medians of the repetitions"
        )
    },
    command: "cargo bench --bench peers",
    note: None,
    subject_note: Some(
        "In the sandboxed-pool rows, the measured side (the procpool column) is a pool built with \
         `Sandbox::strict()` and the peer is the unsandboxed pool of the same run: the ratio is \
         sandboxed ÷ unsandboxed.",
    ),
};

fn main() -> ExitCode {
    // A raw peer serves and exits before anything else runs.
    if let Some(code) = raw::child_mode() {
        return code;
    }
    // A procspawn worker is taken over here (and never returns).
    procspawn::init();
    let opts = match Opts::parse(&CLI, std::env::args().skip(1)) {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("peers: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peers: benchmark failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: &Opts) -> Fallible {
    debug_assert!(LETTERS.chars().all(|l| WORKLOADS.iter().any(|w| w.0 == l)));
    let load_before = harness::load_average();
    let start = Instant::now();
    let mut measured_by_letter = Vec::new();
    for (letter, name, workload) in WORKLOADS {
        if !opts.runs(letter) {
            continue;
        }
        eprint!("peers: ({letter}) {name} ... ");
        let began = Instant::now();
        let measured = workload(opts).map_err(|e| format!("({letter}) {name}: {e}"))?;
        eprintln!("{:.1} s", began.elapsed().as_secs_f64());
        measured_by_letter.push((letter, measured));
    }
    measured_by_letter.sort_by_key(|(letter, _)| *letter);
    let sections: Vec<Section> = measured_by_letter.into_iter().flat_map(|(_, s)| s).collect();
    report::print(
        &REPORT,
        &sections,
        opts,
        start.elapsed().as_secs_f64(),
        &load_before,
    );
    Ok(())
}
