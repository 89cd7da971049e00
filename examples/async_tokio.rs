//! `AsyncResult` is a `Future` and `imap` results are a `Stream`: use a
//! pool from async code (here tokio) without blocking the executor.
//!
//! Run with: `cargo run --example async_tokio`

use futures::StreamExt;
use procpool::Pool;

/// A CPU-heavy function: runs in a worker process, not on the executor.
fn collatz_steps(mut n: u64) -> u32 {
    let mut steps = 0;
    while n != 1 {
        n = if n.is_multiple_of(2) { n / 2 } else { 3 * n + 1 };
        steps += 1;
    }
    steps
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), procpool::Error> {
    let pool = Pool::new(2)?;

    // One result, awaited.
    let steps = pool.apply_async(collatz_steps, 27)?.await?;
    println!("27 takes {steps} steps");

    // A whole map, awaited while another task keeps running on the same
    // (single) executor thread.
    let ticker = tokio::spawn(async {
        for i in 0..3 {
            println!("the executor is free (tick {i})");
            tokio::task::yield_now().await;
        }
    });
    let all = pool.map_async(collatz_steps, 1..100_000)?.await?;
    // Had the await blocked this (only) thread, the ticker could not have
    // run to its end meanwhile.
    assert!(ticker.is_finished(), "the executor was blocked during the await");
    ticker.await.expect("the ticker ran");
    println!("longest below 100000: {} steps", all.iter().max().unwrap_or(&0));

    // Results as a stream, as they come.
    let mut stream = pool.imap_unordered(collatz_steps, 1..20)?.into_stream();
    let mut seen = 0;
    while let Some(steps) = stream.next().await {
        steps?;
        seen += 1;
    }
    println!("streamed {seen} results");
    Ok(())
}
