//! The run's private `redis-server` and procpool's worker hosts.
//!
//! One server per run, on a unix socket in a temporary directory, with no
//! persistence (`--save "" --appendonly no`); stopped at the end of the run
//! (and killed if the run fails). Worker hosts are copies of this very
//! executable started with `PROCPOOL_REDIS` (procpool's constructor turns
//! them into hosts before `main`), their logs in the same directory;
//! SIGTERM drains one, and whatever is left after a timeout is SIGKILLed
//! with its descendants. Every child stays in this process's process
//! group, so that Ctrl-C reaches them too.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use procpool::Pool;

use crate::harness::{Fallible, wait_for_exit, wait_until};

/// The secret the hosts and the pools share (at least 16 bytes).
pub(crate) const SECRET: &str = "procpool cluster bench secret 32";

/// How long a host has to drain after SIGTERM before it is killed.
const DRAIN: Duration = Duration::from_secs(10);

/// A private `redis-server`, killed when dropped.
#[derive(Debug)]
pub(crate) struct Redis {
    dir: tempfile::TempDir,
    server: Option<Child>,
}

impl Redis {
    /// Starts the server and waits (bounded) until it answers `PING`.
    pub(crate) fn start() -> Fallible<Redis> {
        let dir = tempfile::Builder::new()
            .prefix("procpool-cluster-bench-")
            .tempdir()?;
        let socket = dir.path().join("redis.sock");
        let log = File::create(dir.path().join("redis-server.log"))?;
        let server = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--unixsocketperm", "700", "--save", "", "--appendonly", "no"])
            .args(["--maxclients", "1000", "--dir"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                format!("cannot start redis-server ({e}): install it (apt-get install redis-server)")
            })?;
        let mut redis = Redis {
            dir,
            server: Some(server),
        };
        wait_until(Duration::from_secs(20), "redis-server to answer PING", || {
            if let Some(server) = redis.server.as_mut()
                && let Some(status) = server.try_wait()?
            {
                return Err(format!("redis-server exited at start with {status}").into());
            }
            Ok(redis
                .con()
                .and_then(|mut c| Ok(redis::cmd("PING").query::<String>(&mut c)?))
                .is_ok())
        })?;
        Ok(redis)
    }

    /// The server's directory: its socket, its log and the hosts' logs.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's unix socket.
    pub(crate) fn socket(&self) -> PathBuf {
        self.dir().join("redis.sock")
    }

    /// The URL procpool and the `redis` crate take: `unix:///…/redis.sock`.
    pub(crate) fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// A new connection.
    pub(crate) fn con(&self) -> Fallible<redis::Connection> {
        Ok(redis::Client::open(self.url())?.get_connection()?)
    }

    /// Starts `count` worker hosts of `processes` worker processes each,
    /// on `queue`. They register in Redis on their own; see [`Redis::pool`]
    /// for waiting until they have.
    pub(crate) fn hosts(&self, queue: &str, count: usize, processes: usize) -> Fallible<Hosts> {
        let mut hosts = Hosts { hosts: Vec::new() };
        for i in 0..count {
            let log = self.dir().join(format!("host-{queue}-{i}.log"));
            let child = Command::new(std::env::current_exe()?)
                .env("PROCPOOL_REDIS", self.url())
                .env("PROCPOOL_SECRET", SECRET)
                .env("PROCPOOL_QUEUE", queue)
                .env("PROCPOOL_PROCESSES", processes.to_string())
                .env("PROCPOOL_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(File::create(&log)?)
                .spawn()?;
            hosts.hosts.push(Host { child, log });
        }
        Ok(hosts)
    }

    /// A pool on `queue` that sees at least `processes` worker processes
    /// on its hosts: `build` returns once one host is live, so a pool that
    /// sees fewer is closed and built again, for up to 60 s.
    pub(crate) fn pool(&self, queue: &str, processes: usize) -> Fallible<Pool> {
        let mut found = None;
        let mut seen = 0;
        wait_until(
            Duration::from_secs(60),
            &format!("{processes} worker processes on queue {queue:?}"),
            || {
                let pool = Pool::builder()
                    .redis(self.url())
                    .queue(queue)
                    .secret(SECRET)
                    .start_timeout(Duration::from_secs(30))
                    .build()?;
                seen = pool.processes();
                if seen >= processes {
                    found = Some(pool);
                    return Ok(true);
                }
                pool.close();
                pool.join()?;
                Ok(false)
            },
        )
        .map_err(|e| format!("{e} (the last pool saw {seen})"))?;
        Ok(found.expect("set when the wait succeeded"))
    }

    /// The last lines of every log in the server's directory, for an
    /// error report.
    pub(crate) fn log_tails(&self) -> String {
        let mut out = String::new();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.dir())
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        paths.sort();
        for path in paths.iter().filter(|p| p.extension().is_some_and(|e| e == "log")) {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            if lines.is_empty() {
                continue;
            }
            out.push_str(&format!("--- {} (last lines)\n", path.display()));
            for line in &lines[lines.len().saturating_sub(10)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// Stops the server (`SHUTDOWN NOSAVE`, then SIGKILL after 10 s).
    pub(crate) fn stop(mut self) -> Fallible {
        if let Some(mut server) = self.server.take() {
            if let Ok(mut con) = self.con() {
                // The connection closes under the command: its error is
                // expected.
                let _ = redis::cmd("SHUTDOWN").arg("NOSAVE").query::<()>(&mut con);
            }
            if wait_for_exit(&mut server, Duration::from_secs(10))?.is_none() {
                kill_tree(&mut server);
                return Err("redis-server did not stop on SHUTDOWN; killed".into());
            }
        }
        Ok(())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            kill_tree(&mut server);
        }
    }
}

/// One worker host process and its log.
#[derive(Debug)]
struct Host {
    child: Child,
    log: PathBuf,
}

/// A set of worker hosts; killed (with their workers) when dropped.
#[derive(Debug)]
pub(crate) struct Hosts {
    hosts: Vec<Host>,
}

impl Hosts {
    /// Drains every host (SIGTERM to all, then waits for each); one still
    /// running after [`DRAIN`] is killed, and that is an error, as is a
    /// host that exited on its own before (its log is in the error).
    pub(crate) fn stop(mut self) -> Fallible {
        let mut problems = Vec::new();
        for host in &mut self.hosts {
            match host.child.try_wait()? {
                Some(status) => problems.push(format!(
                    "a worker host exited before it was stopped ({status}); its log:\n{}",
                    std::fs::read_to_string(&host.log).unwrap_or_default()
                )),
                None => {
                    let _ = kill(Pid::from_raw(host.child.id() as i32), Signal::SIGTERM);
                }
            }
        }
        for host in &mut self.hosts {
            if wait_for_exit(&mut host.child, DRAIN)?.is_none() {
                kill_tree(&mut host.child);
                problems.push(format!("a worker host did not drain within {DRAIN:?}; killed"));
            }
        }
        self.hosts.clear();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n").into())
        }
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for host in &mut self.hosts {
            kill_tree(&mut host.child);
        }
    }
}

/// A process seen in `/proc`: its pid and its start time, so that a pid
/// reused by another process since is never signalled.
#[derive(Debug, Clone, Copy)]
struct Seen {
    pid: u32,
    start: u64,
}

impl Seen {
    /// `pid` as it is now; `None` when it is gone.
    fn now(pid: u32) -> Option<Seen> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The fields after the command name (which may hold spaces): the
        // start time is the 22nd field of the line, the 20th after it.
        let after = &stat[stat.rfind(')')? + 1..];
        let start = after.split_whitespace().nth(19)?.parse().ok()?;
        Some(Seen { pid, start })
    }

    /// SIGKILLs the process if it is still the one seen.
    fn kill(self) {
        if Seen::now(self.pid).is_some_and(|now| now.start == self.start) {
            let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
        }
    }
}

/// `pid`'s descendants, children first (from
/// `/proc/<pid>/task/<tid>/children`).
fn descendants(pid: u32) -> Vec<Seen> {
    let mut found = Vec::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect::<Vec<_>>())
        .unwrap_or_default();
    for task in tasks {
        let children = std::fs::read_to_string(task.join("children")).unwrap_or_default();
        for child in children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()) {
            if let Some(seen) = Seen::now(child) {
                found.push(seen);
                found.extend(descendants(child));
            }
        }
    }
    found
}

/// SIGKILLs `child` and every descendant of it (found first, so that none
/// is reparented out of reach), then reaps `child`.
pub(crate) fn kill_tree(child: &mut Child) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    let tree = descendants(child.id());
    let _ = child.kill();
    tree.into_iter().for_each(Seen::kill);
    let _ = child.wait();
}

/// SIGTERMs `child`, waits up to `limit` for it to exit, then kills it
/// and its descendants; whether it exited on its own.
pub(crate) fn terminate(child: &mut Child, limit: Duration) -> Fallible<bool> {
    if child.try_wait()?.is_some() {
        return Ok(true);
    }
    // Its descendants, found while it still holds them.
    let tree = descendants(child.id());
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
    let exited = wait_for_exit(child, limit)?.is_some();
    if !exited {
        kill_tree(child);
    }
    // Whatever it left behind (a pool child that outlived its parent).
    tree.into_iter().for_each(Seen::kill);
    Ok(exited)
}
