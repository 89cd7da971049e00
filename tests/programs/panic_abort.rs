//! The program `tests/it/nested_builds.rs` builds with `panic = "abort"` and runs.
//! It checks what a pool reports for a task that panics when panics abort,
//! prints each check, and exits 0 only if every check held.
//!
//! Not a test target of its own: cargo only discovers `tests/*.rs` and
//! `tests/*/main.rs`.

use procpool::{Error, Pool};

/// The line of the `panic!` in [`boom`], for the location check.
const BOOM_LINE: u32 = line!() + 4;

fn boom(x: u32) -> u32 {
    if x == 3 {
        panic!("boom {x}");
    }
    x
}

fn refuse_to_start(_: ()) {
    panic!("no database");
}

/// Checks one panic error: message, location, and that the task ran once.
fn check_panic(what: &str, err: &Error, index: Option<usize>) -> Result<(), String> {
    let Error::Panicked { index: got, panic } = err else {
        return Err(format!("{what}: expected Error::Panicked, got {err:?} ({err})"));
    };
    if *got != index {
        return Err(format!("{what}: index {got:?}, expected {index:?}"));
    }
    if panic.message() != "boom 3" {
        return Err(format!("{what}: message {:?}", panic.message()));
    }
    match panic.location() {
        Some(l) if l.file().ends_with("panic_abort.rs") && l.line() == BOOM_LINE => Ok(()),
        other => Err(format!("{what}: location {other:?}, expected panic_abort.rs:{BOOM_LINE}")),
    }
}

fn run() -> Result<(), String> {
    if !cfg!(panic = "abort") {
        return Err("this program must be built with panic = \"abort\"".into());
    }
    let e = |e: Error| e.to_string();
    // With retries: a panic is the task's outcome, not a death to retry.
    let pool = Pool::builder().processes(1).retries(2).build().map_err(e)?;
    let err = pool.apply(boom, 3).expect_err("boom(3) must fail");
    println!("apply: {err}");
    check_panic("apply", &err, None)?;
    // The pool replaced the worker and goes on.
    if pool.apply(boom, 4).map_err(e)? != 4 {
        return Err("apply after the panic gave a wrong value".into());
    }
    let err = pool.with_chunksize(1).map(boom, 0..6).expect_err("map must fail");
    println!("map: {err}");
    check_panic("map", &err, Some(3))?;
    if pool.map(boom, [0, 1, 2]).map_err(e)? != [0, 1, 2] {
        return Err("map after the panic gave wrong values".into());
    }
    // A panicking initializer is reported as the initializer's panic.
    let init = Pool::builder().processes(1).initializer(refuse_to_start, ()).build();
    match init {
        Err(Error::Initializer { message, .. }) if message.contains("no database") => {
            println!("initializer: {message}");
            Ok(())
        }
        Err(other) => Err(format!("initializer: expected its panic, got {other:?} ({other})")),
        Ok(_) => Err("initializer: the pool started".into()),
    }
}

fn main() {
    match run() {
        Ok(()) => println!("all checks passed"),
        Err(message) => {
            println!("FAILED: {message}");
            std::process::exit(1);
        }
    }
}
