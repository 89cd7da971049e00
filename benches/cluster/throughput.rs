//! Bulk work through Redis: (i) `map` of a million trivial items against
//! a local pool of as many workers, and (j) how the rate of short sleeping
//! tasks grows with the number of hosts, against linear growth.

use procpool::Pool;

use crate::harness::{Fallible, Opts, Sample, WORKERS, check_all, timed};
use crate::report::{Better, Section, Target};
use crate::server::{Hosts, Redis};
use crate::tasks::{NAP, nap, triple};

/// (i) items/s of `pool.map(triple, items)` (default chunksize) through
/// Redis, one host of [`WORKERS`] worker processes; peer: a local
/// `Pool::new(WORKERS)`, the two taking turns (in alternating order) in
/// each repetition.
pub(crate) fn map_rate(opts: &Opts, redis: &Redis) -> Fallible<Vec<Section>> {
    let reps = opts.pick(1, 5, 11);
    let n: u64 = opts.pick(10_000, 1_000_000, 1_000_000);
    let items: Vec<u64> = (0..n).collect();
    let want: Vec<u64> = items.iter().map(|&x| triple(x)).collect();

    let hosts = redis.hosts("i", 1, WORKERS)?;
    let remote = redis.pool("i", WORKERS)?;
    let local = Pool::new(WORKERS)?;
    let warm = n.min(10_000);
    for (pool, what) in [
        (&remote, "procpool map via Redis"),
        (&local, "local procpool map"),
    ] {
        check_all(what, &pool.map(triple, 0..warm)?, &want[..warm as usize])?;
    }
    let run = |pool: &Pool, what: &str| -> Fallible<f64> {
        let (got, secs) = timed(|| pool.map(triple, items.iter().copied()));
        check_all(what, &got?, &want)?;
        Ok(n as f64 / secs)
    };
    let memory_before = used_memory(redis)?;
    let (mut pp, mut lo) = (Sample::new(), Sample::new());
    for rep in 0..reps {
        if rep % 2 == 0 {
            pp.push(run(&remote, "procpool map via Redis")?);
            lo.push(run(&local, "local procpool map")?);
        } else {
            lo.push(run(&local, "local procpool map")?);
            pp.push(run(&remote, "procpool map via Redis")?);
        }
    }
    local.close();
    local.join()?;
    remote.close();
    remote.join()?;
    hosts.stop()?;
    // Bounded Redis: what the items left behind.
    let left = left_in_streams(redis, "i")?;
    let memory_after = used_memory(redis)?;
    if left != (0, 0) {
        return Err(format!(
            "(i) left {} entries and {} pending in the task stream",
            left.0, left.1
        )
        .into());
    }

    let section = Section::new(
        "(i) map of trivial items via Redis",
        "items/s",
        Better::Higher,
        pp,
    )
    .peer(
        &format!("local Pool::new({WORKERS}) map"),
        lo,
        Some(Target::AtLeast(0.5)),
    )
    .note(format!(
        "{reps} reps of map(|x| x.wrapping_mul(3), {n} items), default chunksize (ceil(n / (4 × \
             {WORKERS})) on both sides), the two pools in alternating order; procpool: 1 host of \
             {WORKERS} worker processes; after the {} items through Redis: task stream empty, \
             nothing pending, Redis used_memory {memory_before} → {memory_after} bytes",
        reps as u64 * n
    ));
    Ok(vec![section])
}

/// Redis's `used_memory`, in bytes.
fn used_memory(redis: &Redis) -> Fallible<u64> {
    let info: String = redis::cmd("INFO").arg("memory").query(&mut redis.con()?)?;
    let line = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .ok_or("INFO memory has no used_memory")?;
    Ok(line.trim().parse()?)
}

/// The entries and pending entries left in `queue`'s task streams.
fn left_in_streams(redis: &Redis, queue: &str) -> Fallible<(u64, u64)> {
    let mut con = redis.con()?;
    let streams: Vec<String> = redis::cmd("KEYS")
        .arg(format!("procpool:{queue}:*:tasks"))
        .query(&mut con)?;
    let (mut entries, mut pending) = (0, 0);
    for stream in streams {
        entries += redis::cmd("XLEN").arg(&stream).query::<u64>(&mut con)?;
        let summary: (u64, redis::Value, redis::Value, redis::Value) =
            redis::cmd("XPENDING").arg(&stream).arg("hosts").query(&mut con)?;
        pending += summary.0;
    }
    Ok((entries, pending))
}

/// The host counts of (j).
const HOSTS: [usize; 4] = [1, 2, 4, 8];

/// Worker processes per host in (j).
const PER_HOST: usize = 2;

/// (j) tasks/s of `with_chunksize(1).map(nap, ..)` (tasks that sleep
/// [`NAP`]) with 1, 2, 4 and 8 hosts of [`PER_HOST`] worker processes,
/// against linear growth from the 1-host rate of the same repetitions.
/// Every configuration has its own queue and pool, all started at once,
/// and the repetitions go round the configurations, so that a busy moment
/// of the machine falls on all alike.
pub(crate) fn host_scaling(opts: &Opts, redis: &Redis) -> Fallible<Vec<Section>> {
    let reps = opts.pick(1, 3, 5);
    let per_worker: u64 = opts.pick(2, 40, 200);
    let queue = |hosts: usize| format!("j{hosts}");

    let fleets: Vec<Hosts> = HOSTS
        .iter()
        .map(|&h| redis.hosts(&queue(h), h, PER_HOST))
        .collect::<Fallible<_>>()?;
    let pools: Vec<Pool> = HOSTS
        .iter()
        .map(|&h| redis.pool(&queue(h), h * PER_HOST))
        .collect::<Fallible<_>>()?;
    let tasks = |hosts: usize| per_worker * (hosts * PER_HOST) as u64;
    let run = |pool: &Pool, hosts: usize| -> Fallible<f64> {
        let n = tasks(hosts);
        let want: Vec<u64> = (0..n).map(crate::tasks::inc).collect();
        let (got, secs) = timed(|| pool.with_chunksize(1).map(nap, 0..n));
        check_all(&format!("procpool map(nap) on {hosts} hosts"), &got?, &want)?;
        Ok(n as f64 / secs)
    };
    for (pool, &h) in pools.iter().zip(&HOSTS) {
        run(pool, h)?;
    }
    let mut rates = vec![Sample::new(); HOSTS.len()];
    for _ in 0..reps {
        for ((pool, &h), rate) in pools.iter().zip(&HOSTS).zip(&mut rates) {
            rate.push(run(pool, h)?);
        }
    }
    for pool in &pools {
        pool.close();
        pool.join()?;
    }
    drop(pools);
    for fleet in fleets {
        fleet.stop()?;
    }

    let ideal_per_worker = 1.0 / NAP.as_secs_f64();
    let one = rates[0].clone();
    let mut sections = Vec::new();
    for (&h, rate) in HOSTS.iter().zip(rates) {
        let workers = h * PER_HOST;
        let ideal = Sample::from(vec![ideal_per_worker * workers as f64]);
        let title = format!(
            "(j) {h} host{} × {PER_HOST} processes",
            if h == 1 { "" } else { "s" }
        );
        let section = Section::new(&title, "tasks/s", Better::Higher, rate);
        let section = if h == 1 {
            section
        } else {
            section.peer(
                &format!("linear: {h} × the 1-host rate"),
                one.scaled(h as f64),
                Some(Target::AtLeast(0.9)),
            )
        };
        sections.push(
            section
                .peer(
                    &format!(
                        "ideal: {workers} workers × 1 task / {} ms (reference)",
                        NAP.as_millis()
                    ),
                    ideal,
                    None,
                )
                .note(format!(
                    "{reps} reps of {} tasks of {} ms sleep, with_chunksize(1).map; its own queue, \
                     pool and hosts, the configurations taking turns in each rep",
                    tasks(h),
                    NAP.as_millis()
                )),
        );
    }
    Ok(sections)
}
