//! Tasks that panic in a program built with `panic = "abort"`: the panic
//! cannot unwind to the worker's `catch_unwind`, so the worker aborts. The
//! task must still fail with [`procpool::Error::Panicked`] (message and
//! location), not be retried as a death.
//!
//! `cargo test` always builds tests to unwind, so this test builds a small
//! program (`tests/abort/program.rs`) with `panic = "abort"` in a crate of
//! its own (beside the outer build's target directory, so the two cargo
//! runs do not wait on each other's lock), runs it, and checks that it
//! passed its own checks. The first run compiles procpool's dependencies
//! once more (about a minute on one core); later runs reuse them.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The longest the build and the run may take together; reaching it means
/// something hangs, and the test fails saying so.
const LIMIT: Duration = Duration::from_secs(15 * 60);

/// Writes the program's crate under `dir`: a manifest naming procpool by
/// path, with `panic = "abort"`, and the root's lock file so that the
/// same dependency versions are used (and nothing is fetched).
fn write_crate(dir: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let program = root.join("tests/abort/program.rs");
    let manifest = format!(
        r#"[package]
name = "procpool-panic-abort"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
procpool = {{ path = {root:?} }}

[[bin]]
name = "panic-abort"
path = {program:?}

[profile.dev]
panic = "abort"

# A workspace of its own.
[workspace]
"#
    );
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    // Only the first time: later runs keep the lock cargo completed.
    if !dir.join("Cargo.lock").exists() {
        std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    }
    dir.join("Cargo.toml")
}

#[test]
fn a_panic_under_panic_abort_is_reported_as_a_panic() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("panic-abort");
    let manifest = write_crate(&dir);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = Command::new(cargo)
        .args(["run", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a hang can be ended with every
        // compiler it started.
        .process_group(0)
        .spawn()
        .expect("cargo must start");
    let pid = child.id();
    let (mut stdout, mut stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let (done, finished) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        let status = child.wait();
        let _ = done.send(());
        (status, text)
    });
    if finished.recv_timeout(LIMIT).is_err() {
        // The child is not reaped before the waiter returns: the group id
        // is still its own.
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::SIGKILL);
        let _ = waiter.join();
        panic!("building and running the panic = \"abort\" program took over {LIMIT:?}");
    }
    let (status, output) = waiter.join().unwrap();
    let status = status.unwrap();
    let errors = errors.join().unwrap();
    println!("{output}");
    assert!(
        status.success() && output.contains("all checks passed"),
        "the panic = \"abort\" program failed ({status}):\n--- stdout\n{output}\n--- stderr\n{errors}"
    );
}
