//! The pool fed through Redis Streams, against a real `redis-server` that
//! each test starts on a unix socket in its own temporary directory, with
//! worker hosts that are copies of this test binary started with
//! `PROCPOOL_REDIS` (they become hosts before `main`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use procpool::{Error, ExitCause, Pool};

const SECRET: &str = "a test secret of 32 bytes, ok...";

/// A private `redis-server`, stopped when dropped.
struct Redis {
    dir: tempfile::TempDir,
    server: Option<Child>,
    /// The URL clients use (the fixture's own client may differ: see
    /// `acl_users_and_passwords_in_the_url_are_used_and_never_shown`).
    url: Option<String>,
    /// More arguments for `redis-server`.
    extra: Vec<String>,
}

impl Redis {
    fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// A server started with `extra` arguments too.
    fn start_with(extra: &[String]) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let mut redis = Redis {
            dir,
            server: None,
            url: None,
            extra: extra.to_vec(),
        };
        redis.launch();
        redis
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    fn url(&self) -> String {
        self.url
            .clone()
            .unwrap_or_else(|| format!("unix://{}", self.socket().display()))
    }

    /// The fixture's own client: the default user, on the socket.
    fn admin_url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn launch(&mut self) {
        let server = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--dir",
            ])
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/run installs it with apt-get)");
        self.server = Some(server);
        // Ready once it answers; bounded.
        let deadline = Instant::now() + Duration::from_secs(20);
        while self
            .client()
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_err()
        {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn client(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.admin_url())?.get_connection()
    }

    fn con(&self) -> redis::Connection {
        self.client().unwrap()
    }

    /// Stops the server as `SHUTDOWN` does (its append-only file kept).
    fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = redis::cmd("SHUTDOWN").query::<()>(&mut self.con());
            let _ = server.wait();
        }
    }

    fn host(&self, queue: &str, processes: usize, lease_ms: u64) -> Host {
        let log = self.dir.path().join(format!("host-{}.log", rand_suffix()));
        let child = Command::new(std::env::current_exe().unwrap())
            .env("PROCPOOL_REDIS", self.url())
            .env("PROCPOOL_SECRET", SECRET)
            .env("PROCPOOL_QUEUE", queue)
            .env("PROCPOOL_PROCESSES", processes.to_string())
            .env("PROCPOOL_LEASE_MS", lease_ms.to_string())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Host { child, log }
    }

    fn pool(&self, queue: &str) -> Pool {
        Pool::builder()
            .redis(self.url())
            .queue(queue)
            .secret(SECRET)
            .start_timeout(Duration::from_secs(20))
            .build()
            .unwrap()
    }

    fn query<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> T {
        cmd.query(&mut self.con()).unwrap()
    }

    fn build(&self, queue: &str) -> String {
        // The task stream's name holds the build.
        let keys: Vec<String> = self.query(redis::cmd("KEYS").arg(format!("procpool:{queue}:*:tasks")));
        keys.first().expect("a task stream").clone()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

/// A worker host process, killed when dropped.
struct Host {
    child: Child,
    log: PathBuf,
}

impl Host {
    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> String {
    format!(
        "{:x}",
        Instant::now().elapsed().as_nanos()
            ^ u128::from(std::process::id())
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
    )
}

fn mul(a: u32, b: u32) -> u32 {
    a * b
}

fn square(x: u64) -> u64 {
    x * x
}

/// Polls `done` until it holds, for at most `limit`.
fn eventually(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_verb_works_against_two_hosts() {
    let redis = Redis::start();
    let (_a, _b) = (redis.host("verbs", 2, 2000), redis.host("verbs", 2, 2000));
    let pool = redis.pool("verbs");
    assert!(pool.processes() >= 2, "{}", pool.processes());
    assert!(pool.worker_pids().is_empty());
    assert_eq!(pool.apply(square, 7).unwrap(), 49);
    assert_eq!(pool.apply_async(square, 8).unwrap().get().unwrap(), 64);
    let n = 2000u64;
    assert_eq!(
        pool.map(square, 0..n).unwrap(),
        (0..n).map(square).collect::<Vec<_>>()
    );
    assert_eq!(pool.map_async(square, 0..10).unwrap().get().unwrap()[9], 81);
    assert_eq!(
        pool.imap(square, 0..100u64)
            .unwrap()
            .map(Result::unwrap)
            .sum::<u64>(),
        (0..100).map(square).sum::<u64>()
    );
    let mut unordered: Vec<u64> = pool
        .imap_unordered(square, 0..100u64)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    unordered.sort_unstable();
    assert_eq!(unordered, (0..100).map(square).collect::<Vec<_>>());
    assert_eq!(pool.starmap(mul, vec![(2, 3), (4, 5)]).unwrap(), vec![6, 20]);
    assert_eq!(pool.with_chunksize(7).map(square, 0..50).unwrap().len(), 50);
    // A panic on a host is a panic, with its message.
    let err = pool
        .apply(|_: u8| -> u8 { panic!("boom on a host") }, 0)
        .unwrap_err();
    match &err {
        Error::Panicked { panic, .. } => assert_eq!(panic.message(), "boom on a host"),
        other => panic!("expected a panic, got {other}"),
    }
    let results = pool.map(|x: u32| if x == 3 { panic!("three") } else { x }, 0..6);
    assert!(
        matches!(results, Err(Error::Panicked { index: Some(3), .. })),
        "{results:?}"
    );
    // A timeout kills the task on its host; the host goes on.
    let err = pool
        .with_timeout(Duration::from_millis(300))
        .apply(|s: u64| std::thread::sleep(Duration::from_secs(s)), 60)
        .unwrap_err();
    assert!(err.is_timed_out(), "{err}");
    // A crash fails its task only.
    let err = pool
        .apply(|_: u8| -> u8 { std::process::abort() }, 0)
        .unwrap_err();
    assert!(matches!(err, Error::WorkerDied { .. }), "{err}");
    assert_eq!(pool.with_retries(1).apply(square, 3).unwrap(), 9);
    // Cancel: a long task stops.
    let slow = pool
        .apply_async(|s: u64| std::thread::sleep(Duration::from_secs(s)), 60)
        .unwrap();
    let started = Instant::now();
    slow.cancel();
    assert!(matches!(slow.get(), Err(Error::Cancelled)));
    assert!(started.elapsed() < Duration::from_secs(10));
    // Callbacks run in the caller.
    let (tx, rx) = std::sync::mpsc::channel();
    let _r = pool
        .with_callback(move |r: &u64| tx.send(*r).unwrap())
        .apply_async(square, 9)
        .unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), 81);
    // Stats count items per host.
    let stats = pool.stats();
    assert!(!stats.hosts.is_empty());
    assert!(stats.hosts.iter().map(|h| h.tasks).sum::<u64>() >= n);
    pool.close();
    pool.join().unwrap();
    assert!(matches!(pool.apply(square, 1), Err(Error::Closed)));
}

#[test]
fn no_host_for_the_build_is_a_clear_error_within_the_start_timeout() {
    let redis = Redis::start();
    let started = Instant::now();
    let err = Pool::builder()
        .redis(redis.url())
        .queue("empty")
        .secret(SECRET)
        .start_timeout(Duration::from_millis(500))
        .build()
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    match &err {
        Error::NoHost { queue, seen, .. } => assert_eq!((queue.as_str(), seen.as_str()), ("empty", "none")),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("PROCPOOL_REDIS"), "{err}");
    // No secret, a short one, an unreachable server: refused at once.
    let err = Pool::builder().redis(redis.url()).build().unwrap_err();
    assert!(err.to_string().contains("secret"), "{err}");
    let err = Pool::builder()
        .redis(redis.url())
        .secret("short")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("at least 16"), "{err}");
    let gone = format!("unix://{}", redis.dir.path().join("nothing.sock").display());
    let err = Pool::builder().redis(gone).secret(SECRET).build().unwrap_err();
    assert!(matches!(err, Error::Redis { .. }), "{err}");
    let err = Pool::builder().queue("q").build().unwrap_err();
    assert!(err.to_string().contains("redis(url)"), "{err}");
}

#[test]
fn a_host_killed_mid_map_loses_nothing_and_duplicates_nothing() {
    let redis = Redis::start();
    let a = redis.host("kill", 2, 1000);
    let _b = redis.host("kill", 2, 1000);
    let pool = redis.pool("kill");
    let n = 10_000u64;
    let mut seen = vec![0u32; n as usize];
    let mut got = 0;
    let mut killed = false;
    for r in pool
        .with_chunksize(20)
        .imap_unordered(
            |x: u64| {
                std::thread::sleep(Duration::from_micros(200));
                x
            },
            0..n,
        )
        .unwrap()
    {
        seen[r.unwrap() as usize] += 1;
        got += 1;
        if got == 2000 && !killed {
            a.signal(nix::sys::signal::Signal::SIGKILL);
            killed = true;
        }
    }
    assert!(killed);
    assert!(seen.iter().all(|c| *c == 1), "every result exactly once");
}

#[test]
fn a_host_stopped_past_its_lease_is_taken_over_and_its_late_results_dropped() {
    let redis = Redis::start();
    let a = redis.host("stop", 1, 500);
    let pool = redis.pool("stop");
    let marks = tempfile::tempdir().unwrap();
    let dir = marks.path().to_str().unwrap().to_owned();
    // Each task notes each run of it.
    let run = |(dir, i): (String, u32)| -> u32 {
        let path = format!("{dir}/{i}-{}", std::process::id());
        std::fs::write(path, b"").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        i
    };
    let results = pool.map_async(run, (0..4).map(|i| (dir.clone(), i))).unwrap();
    eventually(Duration::from_secs(20), "a task started on host a", || {
        std::fs::read_dir(marks.path()).unwrap().count() > 0
    });
    a.signal(nix::sys::signal::Signal::SIGSTOP);
    let _b = redis.host("stop", 2, 500);
    let values = results.get().unwrap();
    assert_eq!(values, vec![0, 1, 2, 3]);
    a.signal(nix::sys::signal::Signal::SIGCONT);
    // Host a's late results reach the caller and are dropped: the pool
    // still has exactly its own results, and goes on.
    assert_eq!(pool.map(square, 0..100).unwrap().len(), 100);
    assert!(pool.stats().tasks_completed >= 104);
}

#[test]
fn a_task_that_kills_every_host_it_reaches_is_given_up_and_dead_lettered() {
    let redis = Redis::start();
    let hosts: Vec<Host> = (0..4).map(|_| redis.host("poison", 1, 300)).collect();
    let pool = Pool::builder()
        .redis(redis.url())
        .queue("poison")
        .secret(SECRET)
        .max_deliveries(3)
        .start_timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    // Kills its worker's parent: the host.
    let poison = |_: u8| -> u8 {
        let _ = nix::sys::signal::kill(nix::unistd::getppid(), nix::sys::signal::Signal::SIGKILL);
        std::thread::sleep(Duration::from_secs(5));
        0
    };
    let err = pool.apply(poison, 0).unwrap_err();
    match err {
        Error::WorkerDied { cause, attempts, .. } => {
            assert_eq!(cause, ExitCause::HostLost);
            assert_eq!(attempts, 3);
        }
        other => panic!("{other}"),
    }
    let dead: usize = redis.query(redis::cmd("XLEN").arg("procpool:poison:dead"));
    assert_eq!(dead, 1);
    let alive = hosts
        .into_iter()
        .filter_map(|mut h| h.child.try_wait().unwrap().is_none().then_some(h))
        .count();
    assert_eq!(alive, 1, "three hosts died, the fourth gave the task up");
}

#[test]
fn a_redis_restart_mid_map_loses_nothing() {
    let mut redis = Redis::start();
    let _a = redis.host("restart", 2, 1000);
    let pool = redis.pool("restart");
    let results = pool
        .with_chunksize(10)
        .map_async(
            |x: u64| {
                std::thread::sleep(Duration::from_millis(2));
                x * 3
            },
            0..3000u64,
        )
        .unwrap();
    eventually(Duration::from_secs(20), "some results", || {
        pool.stats().tasks_completed > 300
    });
    redis.stop();
    redis.launch();
    assert_eq!(
        results.get().unwrap(),
        (0..3000u64).map(|x| x * 3).collect::<Vec<_>>()
    );
}

/// A stream entry as read raw: its id and its fields.
type RawEntry = (String, Vec<(Vec<u8>, Vec<u8>)>);

fn touch(path: String) -> bool {
    std::fs::write(path, b"ran").is_ok()
}

#[test]
fn forged_tampered_and_replayed_entries_never_run() {
    let redis = Redis::start();
    let marks = tempfile::tempdir().unwrap();
    let first = redis.host("sealed", 1, 1000);
    let _other_queue = redis.host("sealed2", 1, 1000);
    let pool = redis.pool("sealed");
    // The function works when sent properly.
    let proof = marks.path().join("proof");
    assert!(pool.apply(touch, proof.to_str().unwrap().to_owned()).unwrap());
    assert!(proof.exists());
    // With no host reading, a genuine entry stays in the stream.
    first.signal(nix::sys::signal::Signal::SIGTERM);
    let mut first = first;
    first.child.wait().unwrap();
    let target = marks.path().join("never");
    let _pending = pool
        .apply_async(touch, target.to_str().unwrap().to_owned())
        .unwrap();
    let tasks = redis.build("sealed");
    let mut entry: Vec<RawEntry> = Vec::new();
    eventually(Duration::from_secs(10), "the entry in the stream", || {
        let range: Vec<(String, Vec<Vec<u8>>)> =
            redis.query(redis::cmd("XRANGE").arg(&tasks).arg("-").arg("+"));
        entry = range
            .into_iter()
            .map(|(id, flat)| {
                (
                    id,
                    flat.chunks(2).map(|kv| (kv[0].clone(), kv[1].clone())).collect(),
                )
            })
            .collect();
        !entry.is_empty()
    });
    let (id, fields) = entry.remove(0);
    let _: () = redis.query(redis::cmd("XDEL").arg(&tasks).arg(&id));
    let field = |name: &[u8]| fields.iter().find(|(k, _)| k == name).unwrap().1.clone();
    let add = |stream: &str, h: &[u8], b: &[u8], s: Option<&[u8]>| {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(stream).arg("*").arg("h").arg(h).arg("b").arg(b);
        if let Some(s) = s {
            cmd.arg("s").arg(s);
        }
        let _: String = redis.query(&mut cmd);
    };
    let (h, b, s) = (field(b"h"), field(b"b"), field(b"s"));
    let mut altered = b.clone();
    *altered.last_mut().unwrap() ^= 1;
    add(&tasks, &h, &altered, Some(&s));
    add(&tasks, &h, &b, Some(&[7u8; 32]));
    add(&tasks, &h, &b, None);
    let other = tasks.replace("procpool:sealed:", "procpool:sealed2:");
    add(&other, &h, &b, Some(&s));
    let _second = redis.host("sealed", 1, 1000);
    eventually(Duration::from_secs(20), "four entries dead-lettered", || {
        redis.query::<usize>(redis::cmd("XLEN").arg("procpool:sealed:dead")) == 3
            && redis.query::<usize>(redis::cmd("XLEN").arg("procpool:sealed2:dead")) == 1
    });
    assert!(!target.exists(), "a refused entry ran");
    assert!(
        _second.log().contains("rejected a task entry"),
        "{}",
        _second.log()
    );
}

#[test]
fn redis_is_left_near_empty_after_many_tasks() {
    let redis = Redis::start();
    let _hosts = (redis.host("bounded", 2, 2000), redis.host("bounded", 2, 2000));
    let memory = || -> u64 {
        let info: String = redis.query(redis::cmd("INFO").arg("memory"));
        let line = info.lines().find(|l| l.starts_with("used_memory:")).unwrap();
        line["used_memory:".len()..].trim().parse().unwrap()
    };
    let pool = redis.pool("bounded");
    let before = memory();
    let n = 100_000u64;
    assert_eq!(
        pool.with_chunksize(25).map(square, 0..n).unwrap().len(),
        n as usize
    );
    let asyncs: Vec<_> = (0..2000u64)
        .map(|i| pool.apply_async(square, i).unwrap())
        .collect();
    for (i, r) in asyncs.into_iter().enumerate() {
        assert_eq!(r.get().unwrap(), square(i as u64));
    }
    let tasks = redis.build("bounded");
    eventually(Duration::from_secs(10), "the task stream emptied", || {
        redis.query::<usize>(redis::cmd("XLEN").arg(&tasks)) == 0
    });
    let pending: (usize, redis::Value, redis::Value, redis::Value) =
        redis.query(redis::cmd("XPENDING").arg(&tasks).arg("hosts"));
    assert_eq!(pending.0, 0);
    pool.close();
    pool.join().unwrap();
    let replies: Vec<String> = redis.query(redis::cmd("KEYS").arg("procpool:bounded:reply:*"));
    assert!(replies.is_empty(), "{replies:?}");
    // Near where it started: the entries are gone, not just acknowledged.
    let after = memory();
    assert!(after < before + (1 << 20), "used_memory {before} -> {after}");
}

/// Notes that it started (a file in `dir`), sleeps `secs`, notes that it
/// finished.
fn marked_sleep((dir, secs): (String, u64)) -> u64 {
    std::fs::write(format!("{dir}/started"), b"").unwrap();
    std::thread::sleep(Duration::from_secs(secs));
    std::fs::write(format!("{dir}/finished"), b"").unwrap();
    secs
}

#[test]
#[ignore = "child program of a_dead_callers_running_task_is_stopped_within_its_lease"]
fn orphaning_caller() {
    let (Ok(url), Ok(dir)) = (
        std::env::var("PROCPOOL_TEST_REDIS"),
        std::env::var("PROCPOOL_TEST_DIR"),
    ) else {
        return;
    };
    let pool = Pool::builder()
        .redis(url)
        .queue("orphan")
        .secret(SECRET)
        .lease(Duration::from_millis(500))
        .build()
        .unwrap();
    let _result = pool.apply_async(marked_sleep, (dir, 60)).unwrap();
    // Killed by the test while the task runs.
    loop {
        std::thread::park();
    }
}

#[test]
fn a_dead_callers_running_task_is_stopped_within_its_lease() {
    let redis = Redis::start();
    let _host = redis.host("orphan", 1, 1000);
    let marks = tempfile::tempdir().unwrap();
    let mut caller = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "cluster::orphaning_caller",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PROCPOOL_TEST_REDIS", redis.url())
        .env("PROCPOOL_TEST_DIR", marks.path())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(30), "the caller's task started", || {
        marks.path().join("started").exists()
    });
    caller.kill().unwrap();
    caller.wait().unwrap();
    // The host's only worker is free again long before the 60 s task
    // would have ended: the host stopped it when the caller's key expired.
    let pool = redis.pool("orphan");
    let started = Instant::now();
    assert_eq!(pool.apply(square, 3).unwrap(), 9);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(!marks.path().join("finished").exists());
}

#[test]
fn an_outage_past_its_bound_fails_outstanding_results_with_a_clear_error() {
    let mut redis = Redis::start();
    let _host = redis.host("outage", 1, 1000);
    let pool = Pool::builder()
        .redis(redis.url())
        .queue("outage")
        .secret(SECRET)
        .redis_outage(Duration::from_secs(1))
        .build()
        .unwrap();
    let marks = tempfile::tempdir().unwrap();
    let dir = marks.path().to_str().unwrap().to_owned();
    let result = pool.apply_async(marked_sleep, (dir, 3)).unwrap();
    eventually(Duration::from_secs(20), "the task started", || {
        marks.path().join("started").exists()
    });
    redis.stop();
    let started = Instant::now();
    let err = result.get().unwrap_err();
    assert!(matches!(err, Error::Redis { .. }), "{err}");
    assert!(err.to_string().contains("unreachable"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn acl_users_and_passwords_in_the_url_are_used_and_never_shown() {
    let mut redis = Redis::start();
    let _: () = redis.query(
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("worker")
            .arg("on")
            .arg(">s3cret-pw")
            .arg("~procpool:acl:*")
            .arg("&*")
            .arg("+@all"),
    );
    redis.url = Some(format!(
        "unix://{}?user=worker&pass=s3cret-pw",
        redis.socket().display()
    ));
    let _host = redis.host("acl", 1, 1000);
    let pool = redis.pool("acl");
    assert_eq!(pool.apply(square, 5).unwrap(), 25);
    // Confined to its queue's keys, the user cannot serve another queue.
    let err = Pool::builder()
        .redis(redis.url())
        .queue("other")
        .secret(SECRET)
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Redis { .. }), "{err}");
    let wrong = format!("unix://{}?user=worker&pass=wrong-pw", redis.socket().display());
    let err = Pool::builder()
        .redis(wrong)
        .queue("acl")
        .secret(SECRET)
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Redis { .. }), "{err}");
    assert!(
        !err.to_string().contains("wrong-pw") && !format!("{err:?}").contains("wrong-pw"),
        "{err}"
    );
}

#[test]
fn sigterm_drains_a_host_which_finishes_the_task_it_runs() {
    let redis = Redis::start();
    let mut host = redis.host("drain", 1, 1000);
    let pool = redis.pool("drain");
    let marks = tempfile::tempdir().unwrap();
    let dir = marks.path().to_str().unwrap().to_owned();
    let result = pool.apply_async(marked_sleep, (dir, 1)).unwrap();
    eventually(Duration::from_secs(20), "the task started", || {
        marks.path().join("started").exists()
    });
    host.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(result.get().unwrap(), 1);
    let mut status = None;
    eventually(Duration::from_secs(20), "the host exited", || {
        status = host.child.try_wait().unwrap();
        status.is_some()
    });
    assert!(status.unwrap().success(), "{status:?}\n{}", host.log());
    assert!(host.log().contains("draining"), "{}", host.log());
}

/// A free TCP port on loopback (the listener is closed before use).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private CA and a server certificate for 127.0.0.1, made with the
/// `openssl` command in `dir`; returns the CA's certificate file.
fn make_certificates(dir: &std::path::Path) -> PathBuf {
    let run = |args: &[&str]| {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl is installed (.ci/run installs it)");
        assert!(status.success(), "openssl {args:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=procpool test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "srv.key",
        "-out",
        "srv.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "srv.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "srv.crt",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
    dir.join("ca.crt")
}

#[test]
#[ignore = "child program of tls_is_used_and_its_certificate_checked"]
fn tls_caller() {
    let Ok(url) = std::env::var("PROCPOOL_TEST_REDIS") else {
        return;
    };
    let pool = Pool::builder()
        .redis(url)
        .queue("tls")
        .secret(SECRET)
        .build()
        .unwrap();
    assert_eq!(pool.map(square, 0..100).unwrap()[99], 99 * 99);
}

#[test]
fn tls_is_used_and_its_certificate_checked() {
    let certs = tempfile::tempdir().unwrap();
    let ca = make_certificates(certs.path());
    let port = free_port();
    let file = |name: &str| certs.path().join(name).to_str().unwrap().to_owned();
    let mut redis = Redis::start_with(&[
        "--tls-port".to_owned(),
        port.to_string(),
        "--tls-cert-file".to_owned(),
        file("srv.crt"),
        "--tls-key-file".to_owned(),
        file("srv.key"),
        "--tls-ca-cert-file".to_owned(),
        file("ca.crt"),
        "--tls-auth-clients".to_owned(),
        "no".to_owned(),
    ]);
    redis.url = Some(format!("rediss://127.0.0.1:{port}"));
    // Hosts and caller trust the private CA through SSL_CERT_FILE.
    let host = Command::new(std::env::current_exe().unwrap())
        .env("PROCPOOL_REDIS", redis.url())
        .env("PROCPOOL_SECRET", SECRET)
        .env("PROCPOOL_QUEUE", "tls")
        .env("PROCPOOL_PROCESSES", "1")
        .env("SSL_CERT_FILE", &ca)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _host = Host {
        child: host,
        log: certs.path().join("none.log"),
    };
    let out = crate::common::run_child_test(
        "cluster::tls_caller",
        &[
            ("PROCPOOL_TEST_REDIS", &redis.url()),
            ("SSL_CERT_FILE", ca.to_str().unwrap()),
        ],
    );
    crate::common::assert_child_passed(&out);
    // Without the CA, the server's certificate is refused.
    let err = Pool::builder()
        .redis(redis.url())
        .queue("tls")
        .secret(SECRET)
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Redis { .. }), "{err}");
}

#[test]
fn a_pool_and_a_host_stop_promptly_when_their_redis_is_gone() {
    let mut redis = Redis::start();
    let mut host = redis.host("gone", 1, 1000);
    let pool = redis.pool("gone");
    assert_eq!(pool.apply(square, 2).unwrap(), 4);
    redis.stop();
    // Without the server, stopping does not ride out the outage (60 s by
    // default): terminate returns, and a drained host exits.
    let started = Instant::now();
    pool.terminate();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "terminate took {:?}",
        started.elapsed()
    );
    host.signal(nix::sys::signal::Signal::SIGTERM);
    eventually(Duration::from_secs(20), "the host exited", || {
        host.child.try_wait().unwrap().is_some()
    });
}
