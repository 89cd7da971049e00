//! Insights: where a pool's time went (tasks versus serialisation), per
//! worker, with failures and respawns.
//!
//! Run with: `cargo run --release --example stats`

use procpool::Pool;

fn work(n: u64) -> Vec<u64> {
    (0..n).map(|i| i * i % 7).collect()
}

fn main() -> Result<(), procpool::Error> {
    let pool = Pool::new(4)?;
    pool.map(work, (0..2000).map(|i| i % 500))?;
    let _ = pool.apply(|_: ()| -> u8 { panic!("one failure") }, ());
    let stats = pool.stats();
    print!("{stats}");
    let codec = stats.worker_codec_time + stats.parent_codec_time;
    println!(
        "serialisation took {codec:?} for {:?} of task time",
        stats.task_time
    );
    Ok(())
}
