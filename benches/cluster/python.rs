//! Celery and Dramatiq as peers of workload (h), on the run's private
//! `redis-server`.
//!
//! They are installed by the bench with pip into a virtual environment
//! beside the build (`<target>/cluster-bench-venv`), once, and reused while
//! it imports them; a smoke test only uses one that is already there. When
//! the installation fails (no network, no `python3 -m venv`), the peer is
//! reported unavailable and its rows carry no number.
//!
//! Each peer runs as its worker (started here, in the background, with
//! [`WORKERS`] processes) and its client (`benches/cluster/<peer>_peer.py`,
//! which waits for the worker's first answer, times its bursts, checks
//! every value and prints JSON like `benches/peers/pool_bench.py`). Both
//! are bounded by timeouts; the worker is stopped (SIGTERM, then SIGKILL
//! with its children) when the client is done or fails.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde::Deserialize;

use crate::harness::{Fallible, Sample, WORKERS, timed, wait_for_exit};
use crate::server::{Redis, kill_tree, terminate};

/// Where the peers' scripts are, found from the crate root so that the
/// run works from any directory.
const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/cluster");

/// What pip installs, pinned: the versions these numbers were taken with.
const REQUIREMENTS: [&str; 2] = ["celery[redis]==5.7.0", "dramatiq[redis]==2.2.1"];

/// The longest an installation may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);

/// A Python task queue compared in (h).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Peer {
    /// Celery, prefork pool, Redis broker and Redis result backend.
    Celery,
    /// Dramatiq, Redis broker, Results middleware on a Redis backend.
    Dramatiq,
}

impl Peer {
    /// Both, in the order they run.
    pub(crate) const ALL: [Peer; 2] = [Peer::Celery, Peer::Dramatiq];

    /// The name in the report.
    pub(crate) fn name(self) -> String {
        match self {
            Peer::Celery => format!("Celery {WORKERS}-process prefork worker (Redis broker + results)"),
            Peer::Dramatiq => {
                format!("Dramatiq worker, {WORKERS} processes × 1 thread (Redis broker + results)")
            }
        }
    }

    /// The module the worker loads and the client script (`<module>.py`).
    fn module(self) -> &'static str {
        match self {
            Peer::Celery => "celery_peer",
            Peer::Dramatiq => "dramatiq_peer",
        }
    }

    /// What `python -c` must import for this peer to run.
    fn imports(self) -> &'static str {
        match self {
            Peer::Celery => "import celery, kombu.transport.redis, celery.backends.redis",
            Peer::Dramatiq => "import dramatiq.brokers.redis, dramatiq.results.backends.redis",
        }
    }

    /// The worker's command line, in the virtual environment `venv`.
    fn worker(self, venv: &Path) -> Command {
        let processes = WORKERS.to_string();
        match self {
            Peer::Celery => {
                let mut cmd = Command::new(venv.join("bin/celery"));
                cmd.args([
                    "-A",
                    self.module(),
                    "worker",
                    "--pool",
                    "prefork",
                    "--concurrency",
                ])
                .arg(processes)
                // Startup options: no cluster chatter between workers
                // (there is one), no effect on the tasks' path.
                .args(["--without-gossip", "--without-mingle", "--without-heartbeat"])
                .args(["--loglevel", "WARNING"]);
                cmd
            }
            Peer::Dramatiq => {
                let mut cmd = Command::new(venv.join("bin/dramatiq"));
                cmd.arg(self.module())
                    .arg("--processes")
                    .arg(processes)
                    .args(["--threads", "1"]);
                cmd
            }
        }
    }
}

/// The virtual environment with the peers, as far as it could be made.
#[derive(Debug)]
pub(crate) struct Venv {
    dir: PathBuf,
    /// Per peer: ready, or why not.
    ready: Vec<Result<(), String>>,
}

impl Venv {
    /// Finds the environment, installing the peers if `install` (not in a
    /// smoke test); never fails: what is missing is noted per peer.
    pub(crate) fn prepare(install: bool) -> Venv {
        let dir = venv_dir();
        let mut venv = Venv {
            ready: Peer::ALL.iter().map(|&p| importable(&dir, p)).collect(),
            dir,
        };
        if venv.ready.iter().all(Result::is_ok) {
            return venv;
        }
        if !install {
            let why = format!(
                "not installed in {} (a smoke test installs nothing; `cargo bench --bench cluster --features \
                 redis -- --setup` does)",
                venv.dir.display()
            );
            for ready in venv.ready.iter_mut().filter(|r| r.is_err()) {
                *ready = Err(why.clone());
            }
            return venv;
        }
        eprintln!(
            "cluster: installing {} into {} with pip (once; reused by later runs) ...",
            REQUIREMENTS.join(" "),
            venv.dir.display()
        );
        let (installed, secs) = timed(|| pip_install(&venv.dir));
        let failure = installed.err().map(|e| e.to_string());
        match &failure {
            None => eprintln!("cluster: installed in {secs:.1} s"),
            Some(e) => eprintln!("cluster: could not install the Python peers: {e}"),
        }
        venv.ready = Peer::ALL
            .iter()
            .map(|&p| {
                importable(&venv.dir, p).map_err(|e| match &failure {
                    Some(why) => format!("pip install failed: {why}"),
                    None => e,
                })
            })
            .collect();
        venv
    }

    /// No environment looked for: (h) does not run.
    pub(crate) fn none() -> Venv {
        Venv {
            dir: venv_dir(),
            ready: Peer::ALL
                .iter()
                .map(|_| Err("not looked for".to_owned()))
                .collect(),
        }
    }

    /// Whether `peer` can run; why not otherwise.
    pub(crate) fn ready(&self, peer: Peer) -> Result<(), String> {
        self.ready[peer as usize].clone()
    }

    fn python(&self) -> PathBuf {
        self.dir.join("bin/python")
    }
}

/// `<target>/cluster-bench-venv`, the target directory found from this
/// executable (`<target>/<profile>/deps/cluster-<hash>`).
fn venv_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let deps = exe.parent();
    let target = deps
        .filter(|d| d.file_name().is_some_and(|n| n == "deps"))
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("cluster-bench-venv")
}

/// Whether the environment `dir` imports `peer`.
fn importable(dir: &Path, peer: Peer) -> Result<(), String> {
    let python = dir.join("bin/python");
    if !python.exists() {
        return Err(format!("no virtual environment at {}", dir.display()));
    }
    let out = Command::new(&python)
        .args(["-c", peer.imports()])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} cannot {:?}: {}",
            python.display(),
            peer.imports(),
            last_line(&String::from_utf8_lossy(&out.stderr))
        ))
    }
}

/// The last non-empty line of `text`.
fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

/// `python3 -m venv <dir>` (unless it exists), then pip install.
fn pip_install(dir: &Path) -> Fallible {
    if !dir.join("bin/python").exists() {
        run_bounded(
            Command::new("python3").arg("-m").arg("venv").arg(dir),
            Duration::from_secs(120),
            "python3 -m venv",
        )?;
    }
    run_bounded(
        Command::new(dir.join("bin/python"))
            .args(["-m", "pip", "install", "--disable-pip-version-check", "--quiet"])
            // Fail fast without a network.
            .args(["--timeout", "15", "--retries", "1"])
            .args(REQUIREMENTS),
        INSTALL_TIMEOUT,
        "pip install",
    )
}

/// Runs `cmd` to its end, its output captured, for at most `limit`; an
/// error with the last line of its stderr when it fails.
fn run_bounded(cmd: &mut Command, limit: Duration, what: &str) -> Fallible {
    let log = tempfile::NamedTempFile::new()?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen()?)
        .spawn()
        .map_err(|e| format!("{what}: {e}"))?;
    let status = wait_for_exit(&mut child, limit)?;
    let stderr = std::fs::read_to_string(log.path()).unwrap_or_default();
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(format!("{what} exited with {s}: {}", last_line(&stderr)).into()),
        None => {
            kill_tree(&mut child);
            Err(format!("{what} took longer than {limit:?}; killed").into())
        }
    }
}

/// What a client prints: each metric's value per repetition.
#[derive(Debug, Deserialize)]
struct PyMetrics {
    metrics: BTreeMap<String, Vec<f64>>,
}

/// A worker that is stopped (and its children killed) when dropped.
#[derive(Debug)]
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        kill_tree(&mut self.0);
    }
}

/// Runs `peer`'s worker and client on `redis`: `reps` bursts of `count`
/// tasks (after a warm-up); the tasks/s of each. Any failure (a wrong
/// value, a timeout, a worker that died) fails the run, with the worker's
/// log.
pub(crate) fn burst_rates(
    venv: &Venv,
    redis: &Redis,
    peer: Peer,
    reps: usize,
    count: usize,
) -> Fallible<Sample> {
    let module = peer.module();
    let log_path = redis.dir().join(format!("{module}-worker.log"));
    let log = File::create(&log_path)?;
    let env = |cmd: &mut Command| {
        cmd.env("CLUSTER_BENCH_REDIS_SOCKET", redis.socket())
            .env("PYTHONPATH", DIR)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .current_dir(redis.dir())
            .stdin(Stdio::null());
    };
    let mut worker_cmd = peer.worker(&venv.dir);
    env(&mut worker_cmd);
    let mut worker = Worker(
        worker_cmd
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start the {module} worker: {e}"))?,
    );
    let out_path = redis.dir().join(format!("{module}-client.out"));
    let err_path = redis.dir().join(format!("{module}-client.log"));
    let mut client_cmd = Command::new(venv.python());
    client_cmd
        .arg(Path::new(DIR).join(format!("{module}.py")))
        .args(["--reps", &reps.to_string(), "--count", &count.to_string()])
        .args(["--warmup", &(count / 10).clamp(10, 200).to_string()]);
    env(&mut client_cmd);
    let mut client = client_cmd
        .stdout(File::create(&out_path)?)
        .stderr(File::create(&err_path)?)
        .spawn()
        .map_err(|e| format!("cannot start the {module} client: {e}"))?;
    // A minute to start, then at least 20 tasks/s.
    let limit = Duration::from_secs(60 + (reps * (count + 200) / 20) as u64);
    let status = wait_for_exit(&mut client, limit)?;
    let worker_log = || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    };
    let client_err = || std::fs::read_to_string(&err_path).unwrap_or_default();
    match status {
        Some(s) if s.success() => {}
        Some(s) => {
            return Err(format!(
                "the {module} client exited with {s}:\n{}\nthe worker's log:\n{}",
                client_err(),
                worker_log()
            )
            .into());
        }
        None => {
            kill_tree(&mut client);
            return Err(format!(
                "the {module} client took longer than {limit:?}; killed\n{}\nthe worker's log:\n{}",
                client_err(),
                worker_log()
            )
            .into());
        }
    }
    if !terminate(&mut worker.0, Duration::from_secs(10))? {
        eprintln!("cluster: the {module} worker did not stop on SIGTERM within 10 s; killed");
    }
    let out = std::fs::read(&out_path)?;
    let mut parsed: PyMetrics = serde_json::from_slice(&out).map_err(|e| {
        format!(
            "the {module} client printed no valid JSON ({e}): {:?}",
            String::from_utf8_lossy(&out)
        )
    })?;
    match parsed.metrics.remove("tasks_per_s") {
        Some(values) if values.len() == reps => Ok(values.into()),
        other => Err(format!("the {module} client reported {other:?}, not {reps} rates").into()),
    }
}
