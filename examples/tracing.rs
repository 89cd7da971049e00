//! procpool's `tracing` events: worker start, exit, death (with cause),
//! replacement, timeout, cancel and recycling, each with the worker's pid.
//! Nothing is printed unless a subscriber is installed.
//!
//! Run with: `cargo run --example tracing`

use std::time::Duration;

use procpool::Pool;

fn crash(_: ()) -> u8 {
    std::process::abort()
}

fn nap(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn main() -> Result<(), procpool::Error> {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .init();

    let pool = Pool::builder().processes(2).max_tasks_per_child(4).build()?;
    let _ = pool.apply(crash, ()); // "worker died" ... SIGABRT, then "replacement worker started"
    let _ = pool.with_timeout(Duration::from_millis(50)).apply(nap, 10_000); // "task timed out"
    let slow = pool.apply_async(nap, 10_000)?;
    std::thread::sleep(Duration::from_millis(50));
    slow.cancel(); // "task cancelled; killing its worker"
    pool.with_chunksize(1).map(nap, [1; 9])?; // "worker recycled"
    pool.close();
    pool.join()?; // "worker exited" (or, for a replacement not yet up, "stopped")
    Ok(())
}
