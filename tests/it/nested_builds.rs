//! Behaviours that need procpool built differently from `cargo test`'s own
//! build, checked by building a small program (`tests/programs/`) in a
//! crate of its own with cargo:
//!
//! * tasks that panic in a program built with `panic = "abort"`: the panic
//!   cannot unwind to the worker's `catch_unwind`, so the worker aborts; the
//!   task must still fail with [`procpool::Error::Panicked`] (message and
//!   location), not be retried as a death;
//! * `starmap` fails closed at compile time when procpool's build script
//!   could not check how the compiler names closures.
//!
//! The crates share a target directory beside the outer build's (so the
//! cargo runs do not wait on the outer one's lock). The first run compiles
//! procpool's dependencies once more (about a minute on one core); later
//! runs reuse them.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The longest the build and the run may take together; reaching it means
/// something hangs, and the test fails saying so.
const LIMIT: Duration = Duration::from_secs(15 * 60);

/// Writes the crate of the program `tests/programs/{program}.rs` under
/// `nested/{program}`: a manifest naming procpool by path, with
/// `panic = "abort"` (for every program, so that they share their
/// dependencies' builds), and the root's lock file so that the same
/// dependency versions are used (and nothing is fetched).
fn write_crate(program: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = nested().join(program);
    let source = root.join(format!("tests/programs/{program}.rs"));
    let manifest = format!(
        r#"[package]
name = "procpool-{program}"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
procpool = {{ path = {root:?} }}

[[bin]]
name = "{program}"
path = {source:?}

[profile.dev]
panic = "abort"

# A workspace of its own.
[workspace]
"#
    );
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    // Only the first time: later runs keep the lock cargo completed.
    if !dir.join("Cargo.lock").exists() {
        std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    }
    dir.join("Cargo.toml")
}

fn nested() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("nested")
}

/// Runs `cargo {command}` on the crate of `program` with `env` set, within
/// [`LIMIT`]; returns its status, stdout and stderr.
fn cargo(command: &str, program: &str, env: &[(&str, &str)]) -> (std::process::ExitStatus, String, String) {
    let manifest = write_crate(program);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = Command::new(cargo);
    child
        .args([command, "--quiet", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", nested().join("target"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a hang can be ended with every
        // compiler it started.
        .process_group(0);
    for (k, v) in env {
        child.env(k, v);
    }
    let mut child = child.spawn().expect("cargo must start");
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
        panic!("cargo {command} of {program} took over {LIMIT:?}");
    }
    let (status, output) = waiter.join().unwrap();
    (status.unwrap(), output, errors.join().unwrap())
}

#[test]
fn a_panic_under_panic_abort_is_reported_as_a_panic() {
    let (status, output, errors) = cargo("run", "panic_abort", &[]);
    println!("{output}");
    assert!(
        status.success() && output.contains("all checks passed"),
        "the panic = \"abort\" program failed ({status}):\n--- stdout\n{output}\n--- stderr\n{errors}"
    );
}

#[test]
fn starmap_does_not_compile_when_the_compilers_type_names_are_unchecked() {
    let (status, _, errors) = cargo("build", "starmap", &[("PROCPOOL_NO_FN_ITEM_PROBE", "1")]);
    assert!(!status.success(), "it compiled:\n{errors}");
    assert!(
        errors.contains("starmap is unavailable with this compiler"),
        "another failure:\n{errors}"
    );
}
