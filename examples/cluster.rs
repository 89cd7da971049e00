//! A pool across machines, on one machine: a private `redis-server` (unless
//! `PROCPOOL_REDIS` names one), three worker hosts (copies of this very
//! program, started with `PROCPOOL_REDIS`), a `map` with a progress bar
//! (indicatif, drawn when stderr is a terminal),
//! one host SIGKILLed midway, every result arriving exactly once, and what
//! each host ran.
//!
//! ```text
//! cargo run --release --example cluster --features redis
//! ```
//!
//! On real machines, start the hosts yourself (see the README's "Across
//! machines") and point the program at the same server with
//! `PROCPOOL_REDIS` in its environment... and in its code:
//! `Pool::builder().redis(url)`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use procpool::Pool;

/// The demo's shared secret: on real machines, a random key in a file.
const SECRET: &str = "demo secret: use 32 random bytes";

/// A task that takes a moment, so that the kill lands mid-map.
fn work(x: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(2));
    x * x
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The caller reads PROCPOOL_DEMO_REDIS, not PROCPOOL_REDIS: a process
    // with PROCPOOL_REDIS is a host.
    let dir = tempfile_dir()?;
    let (url, server) = match std::env::var("PROCPOOL_DEMO_REDIS") {
        Ok(url) => (url, None),
        Err(_) => {
            let socket = format!("{dir}/redis.sock");
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    "0",
                    "--unixsocket",
                    &socket,
                    "--unixsocketperm",
                    "700",
                    "--save",
                    "",
                ])
                .args(["--appendonly", "yes", "--dir", &dir])
                .stdout(Stdio::null())
                .spawn()
                .map_err(|e| {
                    format!("could not start redis-server ({e}): install it (apt-get install redis-server)")
                })?;
            wait_for(&socket)?;
            println!("started a private redis-server on {socket}");
            (format!("unix://{socket}"), Some(child))
        }
    };
    // Declared first, dropped last: the server outlives the hosts.
    let _server = Reaper(server.into_iter().collect());
    let mut hosts = Reaper(
        (0..3)
            .map(|_| {
                Command::new(std::env::current_exe()?)
                    .env("PROCPOOL_REDIS", &url)
                    .env("PROCPOOL_SECRET", SECRET)
                    .env("PROCPOOL_QUEUE", "demo")
                    .env("PROCPOOL_PROCESSES", "2")
                    .env("PROCPOOL_LEASE_MS", "1000")
                    .env("PROCPOOL_LOG", "warn")
                    .spawn()
            })
            .collect::<Result<_, _>>()?,
    );
    println!(
        "started 3 worker hosts (pids {:?}), 2 workers each",
        hosts.0.iter().map(Child::id).collect::<Vec<_>>()
    );

    let pool = Pool::builder()
        .redis(&url)
        .queue("demo")
        .secret(SECRET)
        .lease(Duration::from_secs(2))
        .build()?;
    println!("the pool sees {} worker processes on its hosts", pool.processes());

    let n = 3000u64;
    let started = Instant::now();
    let mut seen = vec![0u32; n as usize];
    let mut killed = None;
    let bar = indicatif::ProgressBar::new(n);
    let results = pool.with_chunksize(10).imap_unordered(work, 0..n)?;
    for (i, result) in results.enumerate() {
        let value = result?;
        let x = (value as f64).sqrt().round() as usize;
        seen[x] += 1;
        bar.inc(1);
        if i == n as usize / 3 && killed.is_none() {
            let victim = &mut hosts.0[0];
            victim.kill()?;
            victim.wait()?;
            let pid = victim.id();
            bar.suspend(|| println!("SIGKILLed host pid {pid} after {i} results"));
            killed = Some(victim.id());
        }
    }
    bar.finish();
    let elapsed = started.elapsed();
    let once = seen.iter().filter(|c| **c == 1).count();
    println!(
        "{n} items in {elapsed:.2?}: {once} results arrived exactly once, {} missing, {} twice or more",
        seen.iter().filter(|c| **c == 0).count(),
        seen.iter().filter(|c| **c > 1).count()
    );
    println!("{}", pool.stats());
    pool.close();
    pool.join()?;
    for host in hosts.0.iter_mut().filter(|h| Some(h.id()) != killed) {
        // SIGTERM drains a host: it finishes what it holds and exits.
        let _ = nix_kill(host.id());
        let _ = host.wait();
    }
    drop(hosts);
    drop(_server);
    let _ = std::fs::remove_dir_all(&dir);
    if once != n as usize {
        return Err("some results were lost or repeated".into());
    }
    Ok(())
}

/// Kills the processes it holds when dropped, so that an early return
/// (an error) leaves no host or server behind.
struct Reaper(Vec<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sends SIGTERM.
fn nix_kill(pid: u32) -> std::io::Result<()> {
    let status = Command::new("kill").arg("-TERM").arg(pid.to_string()).status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other("kill failed"))
    }
}

/// A fresh private directory.
fn tempfile_dir() -> std::io::Result<String> {
    let dir = std::env::temp_dir().join(format!("procpool-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir.to_string_lossy().into_owned())
}

/// Waits (bounded) until the server's socket answers.
fn wait_for(socket: &str) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("redis-server did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
