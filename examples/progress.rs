//! A progress bar on a long `map` (cargo feature `progress`).
//!
//! Run with: `cargo run --release --features progress --example progress`
//! (in a terminal: nothing is drawn when stderr is not one).

use std::time::Duration;

use procpool::Pool;

fn slow_square(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(2));
    x * x
}

fn main() -> Result<(), procpool::Error> {
    let pool = Pool::new(4)?;
    let squares = pool
        .with_chunksize(10)
        .with_progress()
        .map(slow_square, 0..2000)?;
    println!("sum of squares: {}", squares.iter().sum::<u64>());

    // A bar of your own: any style, or one line of a MultiProgress.
    let bar = indicatif::ProgressBar::new(0).with_message("imap");
    let n = pool.with_progress_bar(bar).imap(slow_square, 0..500)?.count();
    println!("imap gave {n} results");
    Ok(())
}
