//! Insights: counters every pool keeps (atomics, updated once per chunk),
//! and the [`PoolStats`] snapshot that [`Pool::stats`](crate::Pool::stats)
//! returns.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::protocol::message::Timing;

/// The live counters of one pool.
#[derive(Debug)]
pub(crate) struct Stats {
    completed: AtomicU64,
    failed: AtomicU64,
    respawns: AtomicU64,
    task_ns: AtomicU64,
    worker_codec_ns: AtomicU64,
    parent_codec_ns: AtomicU64,
    /// A moving average of a worker's time per job (0: none finished yet).
    job_ns: AtomicU64,
    seats: Vec<SeatStats>,
    /// Items run per worker host (pools fed through Redis).
    hosts: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

/// How much work the pool sends a worker ahead of the job it runs, in
/// worker time: enough to cover the trip back to the parent for the next
/// job, not so much that one worker holds work another could do.
const AHEAD_NS: u64 = 200_000;

/// The most jobs a worker holds at once.
const MAX_DEPTH: u64 = 64;

/// Jobs at least this long are never sent ahead.
const LONG_NS: u64 = 5_000_000;

#[derive(Debug, Default)]
struct SeatStats {
    tasks: AtomicU64,
    busy_ns: AtomicU64,
}

impl Stats {
    pub(crate) fn new(seats: usize) -> Self {
        Stats {
            completed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            respawns: AtomicU64::new(0),
            task_ns: AtomicU64::new(0),
            worker_codec_ns: AtomicU64::new(0),
            parent_codec_ns: AtomicU64::new(0),
            job_ns: AtomicU64::new(0),
            seats: (0..seats).map(|_| SeatStats::default()).collect(),
            hosts: std::sync::Mutex::default(),
        }
    }

    /// A worker ran a chunk of `count` items: `ok` of them gave a value and
    /// `failed` an error of their own (the rest, if any, are counted by
    /// their ticket).
    /// Counts the results of a part of a job (its time is counted when
    /// the job is done).
    pub(crate) fn part_done(&self, seat: usize, ok: u32, failed: u32, count: u32) {
        self.completed.fetch_add(u64::from(ok), Relaxed);
        self.failed.fetch_add(u64::from(failed), Relaxed);
        self.seats[seat].tasks.fetch_add(u64::from(count), Relaxed);
    }

    /// Items of a chunk that worker host `host` ran (a pool fed through
    /// Redis).
    #[cfg(feature = "redis")]
    pub(crate) fn host_done(&self, host: &str, ok: u32, failed: u32, count: u32) {
        self.completed.fetch_add(u64::from(ok), Relaxed);
        self.failed.fetch_add(u64::from(failed), Relaxed);
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        *hosts.entry(host.to_owned()).or_default() += u64::from(count);
    }

    pub(crate) fn chunk_done(&self, seat: usize, ok: u32, failed: u32, count: u32, timing: Timing) {
        self.completed.fetch_add(u64::from(ok), Relaxed);
        self.failed.fetch_add(u64::from(failed), Relaxed);
        let codec = timing.decode_ns.saturating_add(timing.encode_ns);
        self.task_ns.fetch_add(timing.run_ns, Relaxed);
        self.worker_codec_ns.fetch_add(codec, Relaxed);
        let busy = codec.saturating_add(timing.run_ns);
        let s = &self.seats[seat];
        s.tasks.fetch_add(u64::from(count), Relaxed);
        s.busy_ns.fetch_add(busy, Relaxed);
        // Racy read-modify-write: a lost update only delays the average.
        // It rises at once with a longer job (sending ahead stops before
        // long jobs pile up behind each other) and falls slowly.
        let old = self.job_ns.load(Relaxed);
        let new = if busy >= old {
            busy.max(1)
        } else {
            (old * 7 + busy) / 8
        };
        self.job_ns.store(new.max(1), Relaxed);
    }

    /// How many jobs a worker should hold: 1 until a job has finished,
    /// then, for jobs shorter than [`LONG_NS`], the running job and enough
    /// jobs ahead to cover [`AHEAD_NS`] (at least one), at most
    /// [`MAX_DEPTH`]. Longer jobs are sent one at a time: a job waiting
    /// behind a long one could have run on a worker that frees up.
    pub(crate) fn depth(&self) -> usize {
        match self.job_ns.load(Relaxed) {
            0 => 1,
            ns if ns >= LONG_NS => 1,
            ns => (1 + AHEAD_NS.div_ceil(ns)).min(MAX_DEPTH) as usize,
        }
    }

    /// `count` items failed without a result from a worker (it died, was
    /// killed, the pool was terminated, the call was cancelled).
    pub(crate) fn chunk_failed(&self, count: u32) {
        self.failed.fetch_add(u64::from(count), Relaxed);
    }

    pub(crate) fn respawned(&self) {
        self.respawns.fetch_add(1, Relaxed);
    }

    /// Runs `f`, the parent's encoding of a chunk, which returns its value
    /// with the chunk's item count and size in bytes, adding the time it
    /// took to the parent's codec time (see [`timed`] for what is not).
    pub(crate) fn parent_encoding<T>(&self, f: impl FnOnce() -> (T, u32, usize)) -> T {
        let started = Instant::now();
        let (value, count, bytes) = f();
        if timed(count, bytes) {
            self.parent_codec_ns.fetch_add(nanos(started.elapsed()), Relaxed);
        }
        value
    }

    /// Runs `f`, the parent's decoding (and delivering) of the results of a
    /// chunk of `count` items and `bytes` bytes, adding the time it took to
    /// the parent's codec time (see [`timed`] for what is not).
    pub(crate) fn parent_decoding<T>(&self, count: u32, bytes: usize, f: impl FnOnce() -> T) -> T {
        if !timed(count, bytes) {
            return f();
        }
        let started = Instant::now();
        let value = f();
        self.parent_codec_ns.fetch_add(nanos(started.elapsed()), Relaxed);
        value
    }

    pub(crate) fn snapshot(&self, pids: Vec<Option<u32>>) -> PoolStats {
        let d = |a: &AtomicU64| Duration::from_nanos(a.load(Relaxed));
        PoolStats {
            tasks_completed: self.completed.load(Relaxed),
            tasks_failed: self.failed.load(Relaxed),
            respawns: self.respawns.load(Relaxed),
            task_time: d(&self.task_ns),
            worker_codec_time: d(&self.worker_codec_ns),
            parent_codec_time: d(&self.parent_codec_ns),
            workers: self
                .seats
                .iter()
                .zip(pids)
                .map(|(s, pid)| WorkerStats {
                    pid,
                    tasks: s.tasks.load(Relaxed),
                    busy: d(&s.busy_ns),
                })
                .collect(),
            hosts: self
                .hosts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(name, tasks)| HostStats {
                    name: name.clone(),
                    tasks: *tasks,
                })
                .collect(),
        }
    }
}

/// Whether the parent times the encoding or decoding of a chunk of `count`
/// items and `bytes` bytes: not for one small item (every `apply`), where
/// reading the clock (about 40 ns here) would cost about as much as the
/// work it measures.
fn timed(count: u32, bytes: usize) -> bool {
    count > 1 || bytes > SMALL_ITEM
}

/// The size up to which one item counts as small, for [`timed`].
const SMALL_ITEM: usize = 4 << 10;

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Where a pool's work went, since it started: returned by
/// [`Pool::stats`](crate::Pool::stats). Counting costs a few atomic
/// additions per chunk, so it is always on.
///
/// # Examples
///
/// ```
/// fn square(x: u64) -> u64 { x * x }
///
/// let pool = procpool::Pool::new(2)?;
/// pool.map(square, 0..1000)?;
/// let _ = pool.apply(|_: ()| -> u8 { panic!("no") }, ());
/// let stats = pool.stats();
/// assert_eq!((stats.tasks_completed, stats.tasks_failed), (1000, 1));
/// assert_eq!(stats.workers.iter().map(|w| w.tasks).sum::<u64>(), 1001);
/// println!("{stats}");
/// # Ok::<(), procpool::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Tasks that returned a value, as the worker saw it: a value the
    /// parent then fails to deserialise counts here, and reaches the caller
    /// as [`Error::Decode`](crate::Error::Decode).
    pub tasks_completed: u64,
    /// Tasks that ended in an error: they panicked, their argument or
    /// result did not (de)serialise in the worker, or they lost their
    /// worker (a crash, a timeout, a cancel, the memory limit, terminate).
    pub tasks_failed: u64,
    /// Workers started to replace others (after a death, a kill, or
    /// recycling).
    pub respawns: u64,
    /// Time workers spent in task functions.
    pub task_time: Duration,
    /// Time workers spent decoding arguments and encoding results.
    pub worker_codec_time: Duration,
    /// Time the parent spent encoding arguments and decoding results
    /// (including delivering them). Chunks of a single item of at most
    /// 4 KiB (the typical `apply`) are not timed: reading the clock would
    /// cost about as much as their encoding.
    pub parent_codec_time: Duration,
    /// Per worker seat (a seat keeps its counts across replacements).
    /// Empty for a pool fed through Redis, whose workers are on its hosts.
    pub workers: Vec<WorkerStats>,
    /// Per worker host, for a pool fed through Redis
    /// (`PoolBuilder::redis` (cargo feature `redis`)); empty for a
    /// local pool.
    pub hosts: Vec<HostStats>,
}

/// One worker host's share of a [`PoolStats`] (a pool fed through Redis).
///
/// # Examples
///
/// ```
/// // A local pool has no hosts.
/// let pool = procpool::Pool::new(1)?;
/// assert!(pool.stats().hosts.is_empty());
/// # Ok::<(), procpool::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostStats {
    /// The host's name: `machine-pid-...`, as it announces itself.
    pub name: String,
    /// Items whose results it delivered to this pool (a result dropped as
    /// a second one is not counted).
    pub tasks: u64,
}

/// One worker seat's share of a [`PoolStats`].
///
/// # Examples
///
/// ```
/// let pool = procpool::Pool::new(1)?;
/// pool.apply(|x: u8| x, 1)?;
/// let seat = &pool.stats().workers[0];
/// assert_eq!(seat.pid, Some(pool.worker_pids()[0]));
/// assert_eq!(seat.tasks, 1);
/// # Ok::<(), procpool::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerStats {
    /// The pid of the seat's current worker (`None` while it is replaced).
    pub pid: Option<u32>,
    /// Tasks its workers ran.
    pub tasks: u64,
    /// Time its workers spent on tasks, including (de)serialisation.
    pub busy: Duration,
}

impl std::fmt::Display for PoolStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} tasks completed, {} failed, {} workers respawned",
            self.tasks_completed, self.tasks_failed, self.respawns
        )?;
        writeln!(
            f,
            "time in tasks {:?}; (de)serialising: workers {:?}, parent {:?}",
            self.task_time, self.worker_codec_time, self.parent_codec_time
        )?;
        for (seat, w) in self.workers.iter().enumerate() {
            let pid = w.pid.map_or_else(|| "-".to_owned(), |p| p.to_string());
            writeln!(
                f,
                "  worker {seat} (pid {pid}): {} tasks, busy {:?}",
                w.tasks, w.busy
            )?;
        }
        for h in &self.hosts {
            writeln!(f, "  host {}: {} tasks", h.name, h.tasks)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_small_item_goes_untimed() {
        assert!(!timed(1, 0));
        assert!(!timed(1, SMALL_ITEM));
        assert!(timed(1, SMALL_ITEM + 1));
        assert!(timed(2, 16));
        let stats = Stats::new(1);
        stats.parent_decoding(1, 8, || std::thread::sleep(Duration::from_millis(2)));
        assert_eq!(stats.parent_codec_ns.load(Relaxed), 0);
        stats.parent_decoding(2, 8, || std::thread::sleep(Duration::from_millis(2)));
        assert!(stats.parent_codec_ns.load(Relaxed) >= 2_000_000);
    }
}
