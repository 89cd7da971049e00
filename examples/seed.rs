//! The seed: a walk through Python's `multiprocessing.Pool`, section by
//! section, in Rust. Each section prints what the Python original prints.
//!
//! ```text
//! cargo run --release --example seed               # the tasks sleep 1 s, as in the post
//! SEED_QUICK=1 cargo run --release --example seed  # 0.1 s, for a fast check
//! ```
//!
//! (An environment variable, not an argument: workers inherit the parent's
//! environment, but they never run `main` and so never see its arguments.)
//!
//! The program checks what it shows (the pids, the order of results, where
//! the callback ran) and exits with an error if anything is off.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use procpool::{Error, Pool};

/// How long `func` sleeps: 1 s like the post, or 0.1 s with `SEED_QUICK`.
fn nap() -> Duration {
    if std::env::var_os("SEED_QUICK").is_some() {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(1)
    }
}

/// The post's first `func`: prints and returns nothing. (Ours returns the
/// worker's pid, to show which process ran it.)
fn hello(index: u32) -> u32 {
    println!("hello {index}");
    std::process::id()
}

/// The post's `func`: sleeps, prints, returns its argument.
fn func(index: u32) -> u32 {
    std::thread::sleep(nap());
    println!("hello {index}");
    index
}

/// The callback section's `func`: also prints its process id.
fn func_with_pid(index: u32) -> u32 {
    std::thread::sleep(nap());
    println!("hello {index}");
    println!("func id:{}", std::process::id());
    index
}

fn section(title: &str) {
    println!("\n=== {title} ===");
}

fn seconds(since: Instant) -> String {
    format!("{:.2} s", since.elapsed().as_secs_f64())
}

fn check(ok: bool, what: &str) -> Result<(), Error> {
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "the walkthrough went wrong: {what}"
        )))
    }
}

fn main() -> Result<(), Error> {
    let main_pid = std::process::id();
    let unit = nap().as_secs_f64();

    section("S1/S2  pool = Pool(5); pool.map(func, range(100))");
    let pool = Pool::new(5)?;
    let pids = pool.map(hello, 0..100)?;
    let distinct: BTreeSet<u32> = pids.iter().copied().collect();
    println!(
        "100 tasks ran in {} worker processes {distinct:?}; the main process is {main_pid}",
        distinct.len()
    );
    check(
        distinct.len() == 5 && !distinct.contains(&main_pid),
        "S1: expected 5 workers, none the main process",
    )?;
    // The post's `pool.apply()` with no arguments is an error in Python;
    // apply takes a function and its argument.
    pool.close();
    pool.join()?;

    section("S3  apply() in a loop: synchronous, in order");
    let pool = Pool::new(5)?;
    let started = Instant::now();
    for i in 0..5 {
        let result = pool.apply(func, i)?;
        println!("{result}");
        check(result == i, "S3: apply returns func's value")?;
    }
    println!(
        "(5 tasks one after another: {}, about {:.1} s expected)",
        seconds(started),
        5.0 * unit
    );

    section("S4  apply_async() x5, then close() and join()");
    let pool = Pool::new(5)?;
    let started = Instant::now();
    for i in 0..5 {
        pool.apply_async(func, i)?;
    }
    pool.close();
    pool.join()?;
    println!(
        "(all 5 finished after {}: they ran at the same time; about {unit:.1} s expected)",
        seconds(started)
    );
    check(
        pool.apply_async(func, 5).unwrap_err().is_closed(),
        "S4: submitting after close is an error",
    )?;

    section("S5  get() right after each apply_async(): the work is serialised");
    let pool = Pool::new(5)?;
    let started = Instant::now();
    for i in 0..5 {
        let result = pool.apply_async(func, i)?;
        println!("{}", result.get()?);
    }
    pool.close();
    pool.join()?;
    println!("(took {}, about {:.1} s expected)", seconds(started), 5.0 * unit);

    section("S5  keep the results, close(), join(), then get() each");
    let pool = Pool::new(5)?;
    let started = Instant::now();
    let results: Vec<_> = (0..5)
        .map(|i| pool.apply_async(func, i))
        .collect::<Result<_, _>>()?;
    pool.close();
    pool.join()?;
    let values: Vec<u32> = results.iter().map(|r| r.get()).collect::<Result<_, _>>()?;
    for value in &values {
        println!("{value}");
    }
    println!("(took {}, about {unit:.1} s expected)", seconds(started));
    check(
        values == [0, 1, 2, 3, 4],
        "S5: results come back in submission order",
    )?;

    section("S2  print(pool.map(func, range(5)))");
    let pool = Pool::new(5)?;
    let started = Instant::now();
    let values = pool.map(func, 0..5)?;
    println!("{values:?}");
    println!("(took {}, about {unit:.1} s expected)", seconds(started));
    check(values == [0, 1, 2, 3, 4], "S2: map keeps input order")?;

    section("S6  apply_async(func, args=(1,), callback=callback)");
    println!("main id:{main_pid}");
    let pool = Pool::new(5)?;
    let (tx, rx) = std::sync::mpsc::channel();
    pool.with_callback(move |res: &u32| {
        println!("处理{res}"); // "processing 1", as in the post
        println!("callback id:{}", std::process::id());
        let _ = tx.send(std::process::id());
    })
    .apply_async(func_with_pid, 1)?;
    pool.close();
    pool.join()?;
    let callback_pid = rx.recv().map_err(|_| Error::Terminated)?;
    check(
        callback_pid == main_pid,
        "S6: the callback runs in the main process",
    )?;
    println!("\nthe callback ran in the main process ({callback_pid}); every check passed");
    Ok(())
}
