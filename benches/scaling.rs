//! Scaling of a CPU-bound `map` with the number of workers, next to rayon
//! with as many threads (issue 5, point 4): for tasks of about 1 ms
//! (default chunk size) and about 0.1 ms (chunk size 1), the speedup over
//! a serial run in this process, for each worker count.
//!
//! ```sh
//! cargo bench --bench scaling -- --workers 1,2,4,8,16   # on a 16-core machine
//! cargo bench --bench scaling -- --quick                 # fewer tasks, 1 and 2 workers
//! ```
//!
//! Every result is checked against the serial run. Nothing here runs under
//! `cargo test` but a smoke test (tiny sizes).

#![allow(dead_code)] // `tasks` is shared with the peers bench.

#[path = "peers/tasks.rs"]
mod tasks;

use std::time::Instant;

use procpool::Pool;
use rayon::prelude::*;
use tasks::{calibrate_spin, spin};

type Fallible<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// One task size: its target time, how many tasks, and the chunk size.
struct Case {
    name: &'static str,
    ms: f64,
    tasks: u64,
    chunksize: Option<usize>,
}

fn main() -> Fallible {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.iter().any(|a| a == "--bench");
    let quick = args.iter().any(|a| a == "--quick");
    let workers: Vec<usize> = match args.iter().position(|a| a == "--workers") {
        Some(at) => args
            .get(at + 1)
            .ok_or("--workers needs a list, e.g. 1,2,4")?
            .split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()?,
        None if quick || !bench => vec![1, 2],
        None => vec![1, 2, 4, 8, 16],
    };
    let scale: u64 = match (bench, quick) {
        (false, _) => 1,
        (true, true) => 10,
        (true, false) => 100,
    };
    let cases = [
        Case {
            name: "~1 ms tasks, default chunk size",
            ms: 1.0,
            tasks: 20 * scale,
            chunksize: None,
        },
        Case {
            name: "~0.1 ms tasks, chunk size 1",
            ms: 0.1,
            tasks: 200 * scale,
            chunksize: Some(1),
        },
    ];
    println!("| tasks | workers | procpool speedup | rayon speedup | procpool ÷ rayon |");
    println!("|---|---|---|---|---|");
    for case in &cases {
        let iters = calibrate_spin(case.ms);
        let items: Vec<(u64, u64)> = (0..case.tasks).map(|i| (i, iters)).collect();
        let start = Instant::now();
        let want: Vec<u64> = items.iter().map(|&a| spin(a)).collect();
        let serial = start.elapsed().as_secs_f64();
        for &n in &workers {
            let pool = Pool::new(n)?;
            // Warm up: workers started and code paged in.
            pool.map(spin, (0..n as u64 * 2).map(|i| (i, 1)))?;
            let call = match case.chunksize {
                Some(size) => pool.with_chunksize(size),
                None => pool.with_chunksize(case.tasks.div_ceil(4 * n as u64) as usize),
            };
            let start = Instant::now();
            let got = call.map(spin, items.iter().copied())?;
            let pp = serial / start.elapsed().as_secs_f64();
            if got != want {
                return Err(format!("procpool gave wrong results for {n} workers").into());
            }
            pool.close();
            pool.join()?;
            let threads = rayon::ThreadPoolBuilder::new().num_threads(n).build()?;
            let start = Instant::now();
            let got: Vec<u64> = threads.install(|| items.par_iter().map(|&a| spin(a)).collect());
            let ry = serial / start.elapsed().as_secs_f64();
            if got != want {
                return Err(format!("rayon gave wrong results for {n} threads").into());
            }
            println!("| {} | {n} | {pp:.2}× | {ry:.2}× | {:.2} |", case.name, pp / ry);
        }
    }
    Ok(())
}
