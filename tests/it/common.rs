//! Helpers shared by the behaviour tests. Each test file includes this
//! module; not every file uses every helper.
#![allow(dead_code, unreachable_pub, missing_debug_implementations)]

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

/// The longest any test waits for something that should take milliseconds.
/// Reaching it means a hang, and the test fails saying so.
pub const HANG: Duration = Duration::from_secs(60);

/// A barrier across processes: `parties` tasks each call [`arrive`] with
/// the barrier's path; none returns before all have arrived. A pool that
/// does not run them all at once leaves the early ones waiting until
/// [`HANG`], and `arrive` then returns `false`.
pub struct Barrier {
    path: PathBuf,
    server: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Barrier {
    pub fn new(parties: usize) -> Barrier {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("barrier.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let mut waiting = Vec::new();
            for stream in listener.incoming().take(parties) {
                waiting.push(stream.unwrap());
            }
            for mut stream in waiting {
                let _ = stream.write_all(b"go");
            }
        });
        Barrier {
            path,
            server: Some(server),
            _dir: dir,
        }
    }

    pub fn path(&self) -> String {
        self.path.to_str().unwrap().to_owned()
    }
}

impl Drop for Barrier {
    fn drop(&mut self) {
        // Release a server still waiting for parties that will not come.
        if let Some(server) = self.server.take() {
            if !server.is_finished() {
                return;
            }
            let _ = server.join();
        }
    }
}

/// Task side of [`Barrier`]: returns whether everyone arrived in time.
pub fn arrive(path: &str) -> bool {
    let Ok(mut stream) = UnixStream::connect(path) else {
        return false;
    };
    stream.set_read_timeout(Some(HANG)).unwrap();
    let mut go = [0u8; 2];
    stream.read_exact(&mut go).is_ok() && &go == b"go"
}

/// Asserts that all `n` workers of `pool` serve at once: `n` tasks, one
/// per chunk, pass a [`Barrier`] that only `n` tasks running together pass.
pub fn assert_all_serve(pool: &procpool::Pool, n: usize) {
    fn all_arrive(path: String) -> bool {
        arrive(&path)
    }
    let barrier = Barrier::new(n);
    let arrived = pool
        .with_chunksize(1)
        .map(all_arrive, vec![barrier.path(); n])
        .unwrap();
    assert_eq!(arrived, vec![true; n], "not all {n} workers serve");
}

/// A process seen at one moment, to check later whether it is gone
/// (exited *and* reaped: a zombie still counts as present). The start time
/// tells a reused pid from the same process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    start: u64,
}

impl Proc {
    pub fn new(pid: u32) -> Proc {
        Proc {
            pid,
            start: start_time(pid).unwrap_or_else(|| panic!("process {pid} is not running")),
        }
    }

    /// Whether the process has exited and been reaped.
    pub fn is_gone(&self) -> bool {
        start_time(self.pid) != Some(self.start)
    }

    /// Whether the process exists as a zombie (exited, not reaped).
    pub fn is_zombie(&self) -> bool {
        stat(self.pid).is_some_and(|s| s.0 == 'Z' && s.1 == self.start)
    }
}

fn stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // Fields after the name start at field 3 (state); starttime is field 22.
    Some((fields[0].chars().next()?, fields[19].parse().ok()?))
}

fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|s| s.1)
}

/// Runs the ignored test `name` (its path: `module::test`) of the current
/// test binary in a child process with `env` set, and returns its output.
/// Lets a test observe a whole program: its terminal output, its exit.
pub fn run_child_test(name: &str, env: &[(&str, &str)]) -> Output {
    run_child_test_through(&[], name, env)
}

/// [`run_child_test`], with the test binary started by the program and
/// arguments `through` (a loader, `prlimit ...`) when there are some.
pub fn run_child_test_through(through: &[&str], name: &str, env: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().unwrap();
    let mut command = match through {
        [] => Command::new(exe),
        [program, args @ ..] => {
            let mut command = Command::new(program);
            command.args(args).arg(exe);
            command
        }
    };
    command.args(["--exact", name, "--ignored", "--nocapture", "--test-threads=1"]);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

/// Fails, showing its output, unless the child test run in `out` passed.
pub fn assert_child_passed(out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A gate that tasks wait at until the test lets them through. Tasks call
/// [`hold`] with the gate's path; the test sees each one arrive (with the
/// worker's pid) and releases them one by one.
pub struct Gate {
    arrivals: std::sync::mpsc::Receiver<Held>,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

/// A task held at a [`Gate`].
pub struct Held {
    pub pid: u32,
    stream: UnixStream,
}

impl Held {
    pub fn release(mut self) {
        let _ = self.stream.write_all(b"go");
    }
}

impl Gate {
    pub fn new() -> Gate {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gate.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let (tx, arrivals) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut pid = [0u8; 4];
                if stream.read_exact(&mut pid).is_err() {
                    continue;
                }
                let held = Held {
                    pid: u32::from_le_bytes(pid),
                    stream,
                };
                if tx.send(held).is_err() {
                    return;
                }
            }
        });
        Gate {
            arrivals,
            path,
            _dir: dir,
        }
    }

    pub fn path(&self) -> String {
        self.path.to_str().unwrap().to_owned()
    }

    /// The next task that arrived, if one has (does not wait).
    pub fn try_next(&self) -> Option<Held> {
        self.arrivals.try_recv().ok()
    }

    /// Waits for the next `n` tasks to arrive.
    pub fn wait_for(&self, n: usize) -> Vec<Held> {
        (0..n)
            .map(|i| {
                self.arrivals
                    .recv_timeout(HANG)
                    .unwrap_or_else(|_| panic!("only {i} of {n} tasks reached the gate"))
            })
            .collect()
    }
}

/// Task side of [`Gate`]: waits to be released; returns this process's pid,
/// or 0 if never released.
pub fn hold(path: &str) -> u32 {
    let pid = std::process::id();
    let Ok(mut stream) = UnixStream::connect(path) else {
        return 0;
    };
    if stream.write_all(&pid.to_le_bytes()).is_err() {
        return 0;
    }
    stream.set_read_timeout(Some(HANG)).unwrap();
    let mut go = [0u8; 2];
    match stream.read_exact(&mut go) {
        Ok(()) if &go == b"go" => pid,
        _ => 0,
    }
}
