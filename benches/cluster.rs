//! procpool across machines (the `redis` feature: a pool fed through Redis
//! Streams to worker hosts) against the floor of its transport and its
//! peers, in one run, all on this machine and one private `redis-server`.
//!
//! ```sh
//! cargo bench --bench cluster --features redis -- --quick      # under a minute
//! cargo bench --bench cluster --features redis                 # full sizes, for published numbers
//! cargo bench --bench cluster --features redis -- --only gj    # some workloads (letters g to j)
//! cargo bench --bench cluster --features redis -- --setup      # only install the Python peers
//! ```
//!
//! Started any other way (`cargo test --all-targets --all-features` runs
//! it unoptimised, without the `--bench` argument that `cargo bench`
//! adds), it makes a smoke test of it: every workload once at tiny sizes,
//! results checked, timings not worth reading, and nothing installed.
//! `--quick` and `--full` choose the sizes explicitly. The letters follow
//! those of `benches/peers.rs` (a to f).
//!
//! The workloads:
//!
//! * (g) sequential `apply` round trip of a trivial task through Redis
//!   (one host of one worker process), against two bare processes
//!   ping-ponging one entry with `XADD` + `XREADGROUP … BLOCK` on the same
//!   server (the floor, [`raw`]); target ≤ 2× the floor ([`latency`]);
//! * (h) 10k `apply_async` then every `get`, hosts totalling 2 worker
//!   processes, against Celery (prefork, Redis broker and result backend)
//!   and Dramatiq (Redis broker, Results middleware), 2 processes each;
//!   targets ≥ 20× Celery, ≥ 5× Dramatiq ([`latency`], [`python`]);
//! * (i) `map` of 1M trivial items through Redis (hosts totalling 2
//!   processes) against a local `Pool::new(2)`; target ≥ 0.5× local
//!   ([`throughput`]);
//! * (j) 1, 2, 4 and 8 hosts of 2 worker processes each, tasks that sleep
//!   10 ms, `with_chunksize(1)`: tasks/s against linear growth from the
//!   1-host rate; target ≥ 0.9× linear ([`throughput`]).
//!
//! Every side's results are checked against the expected values; a wrong
//! one stops the run with an error (and the tails of the server's and the
//! hosts' logs) and a non-zero exit status. Each workload runs every side
//! in the same run, repetitions interleaved where the side is in this
//! process, and reports medians; ratios are taken between medians of the
//! same run, because this machine is shared and absolute times are noisy.
//!
//! The run starts one `redis-server` on a unix socket in a temporary
//! directory (no persistence), and stops it at the end ([`server`]). The
//! worker hosts are copies of this program started with `PROCPOOL_REDIS`,
//! taken over by procpool's constructor before `main` (so that they run
//! the very same task functions, [`tasks`]); each workload starts its own
//! and drains them (SIGTERM) when it is done. The raw echo is a copy too,
//! started with `--raw-redis-echo <url>` and served before anything else.
//! Celery and Dramatiq are installed with pip into
//! `<target>/cluster-bench-venv` the first time ([`python`]); without a
//! network their rows say "unavailable" and carry no number.
//!
//! The modules live in `benches/cluster/` (a bench target's root file
//! looks for them beside itself, hence the `#[path]`s), with the Python
//! peers, `celery_peer.py` and `dramatiq_peer.py`; the report and most of
//! the harness are shared with `benches/peers.rs`, in `benches/common/`.

#[path = "cluster/harness.rs"]
mod harness;
#[path = "cluster/latency.rs"]
mod latency;
#[path = "cluster/python.rs"]
mod python;
#[path = "cluster/raw.rs"]
mod raw;
#[path = "common/report.rs"]
mod report;
#[path = "cluster/server.rs"]
mod server;
#[path = "cluster/tasks.rs"]
mod tasks;
#[path = "cluster/throughput.rs"]
mod throughput;

use std::process::ExitCode;
use std::time::Instant;

use harness::{Cli, Fallible, Opts};
use python::Venv;
use report::{Framing, Section};
use server::Redis;

/// A workload: runs every side on the run's server and returns its
/// measures.
type Workload = fn(&Opts, &Redis, &Venv) -> Fallible<Vec<Section>>;

/// The workloads by letter, in the order they run.
const WORKLOADS: [(char, &str, Workload); 4] = [
    ('g', "apply round trip via Redis", |o, r, _| {
        latency::apply_round_trip(o, r)
    }),
    ('h', "apply_async burst via Redis", latency::apply_async_rate),
    ('i', "map of trivial items via Redis", |o, r, _| {
        throughput::map_rate(o, r)
    }),
    ('j', "scaling with hosts", |o, r, _| {
        throughput::host_scaling(o, r)
    }),
];

/// The workload letters, in the order they run (they follow `peers`'
/// a to f).
const LETTERS: &str = "ghij";

/// The command line: `--only` takes [`LETTERS`], and `--setup` installs
/// the Python peers.
const CLI: Cli = Cli {
    letters: LETTERS,
    only_example: "gh",
    setup: true,
};

/// The usage line printed for `--help` and after a bad argument.
const USAGE: &str = "usage: cargo bench --bench cluster --features redis -- \
     [--quick | --full] [--only <letters from ghij>] [--setup]";

/// The report's heading and notes.
const REPORT: Framing = Framing {
    heading: |mode| {
        format!(
            "procpool across machines (through Redis) vs its floor and peers: {mode} mode, medians of the \
             repetitions"
        )
    },
    command: "cargo bench --bench cluster --features redis",
    note: Some(
        "Every Redis-fed pool, host, raw echo and Python worker of the run shares one private \
         redis-server on a unix socket; every worker process runs on this machine.",
    ),
    subject_note: None,
};

fn main() -> ExitCode {
    // The raw echo serves and exits before anything else runs. (A worker
    // host never gets here: procpool's constructor took it over.)
    if let Some(code) = raw::child_mode() {
        return code;
    }
    let opts = match Opts::parse(&CLI, std::env::args().skip(1)) {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("cluster: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let done = if opts.setup_only() { setup() } else { run(&opts) };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cluster: benchmark failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--setup`: installs the Python peers (unless they are there) and says
/// which are ready.
fn setup() -> Fallible {
    let venv = Venv::prepare(true);
    let mut failed = false;
    for peer in python::Peer::ALL {
        match venv.ready(peer) {
            Ok(()) => println!("{}: ready", peer.name()),
            Err(why) => {
                failed = true;
                println!("{}: unavailable: {why}", peer.name());
            }
        }
    }
    if failed {
        Err("some Python peers are unavailable".into())
    } else {
        Ok(())
    }
}

fn run(opts: &Opts) -> Fallible {
    debug_assert!(LETTERS.chars().all(|l| WORKLOADS.iter().any(|w| w.0 == l)));
    let load_before = harness::load_average();
    let start = Instant::now();
    let venv = if opts.runs('h') {
        Venv::prepare(!opts.is_smoke())
    } else {
        Venv::none()
    };
    let redis = Redis::start()?;
    let mut sections = Vec::new();
    for (letter, name, workload) in WORKLOADS {
        if !opts.runs(letter) {
            continue;
        }
        eprint!("cluster: ({letter}) {name} ... ");
        let began = Instant::now();
        match workload(opts, &redis, &venv) {
            Ok(measured) => sections.extend(measured),
            Err(e) => {
                eprintln!("failed");
                return Err(format!("({letter}) {name}: {e}\n{}", redis.log_tails()).into());
            }
        }
        eprintln!("{:.1} s", began.elapsed().as_secs_f64());
    }
    redis.stop()?;
    report::print(
        &REPORT,
        &sections,
        opts,
        start.elapsed().as_secs_f64(),
        &load_before,
    );
    Ok(())
}
