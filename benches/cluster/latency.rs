//! Per-task costs through Redis: (g) a sequential `apply` round trip
//! against two bare processes ping-ponging an entry on the same server,
//! and (h) a burst of `apply_async` followed by every `get`, against
//! Celery and Dramatiq on the same server.

use procpool::Pool;

use crate::harness::{Fallible, Opts, Sample, WORKERS, call_us, check_eq, median, timed};
use crate::python::{self, Peer, Venv};
use crate::raw::RawEcho;
use crate::report::{Better, Section, Target};
use crate::server::Redis;
use crate::tasks::inc;

/// (g) median µs per sequential `pool.apply(inc, i)` through Redis, one
/// host of one worker process; peers: the raw `XADD` + `XREADGROUP BLOCK`
/// ping-pong on the same server (the floor), and a local `Pool::new(1)`
/// (a reference: what the pool costs without Redis). The three take turns
/// call by call, so that a busy moment of the machine falls on all alike.
pub(crate) fn apply_round_trip(opts: &Opts, redis: &Redis) -> Fallible<Vec<Section>> {
    let reps = opts.pick(1, 5, 11);
    let calls: u64 = opts.pick(20, 500, 2_000);
    let warm_up = opts.pick(5, 100, 200);

    let hosts = redis.hosts("g", 1, 1)?;
    let pool = redis.pool("g", 1)?;
    let local = Pool::new(1)?;
    let mut echo = RawEcho::start(redis)?;
    for i in 0..warm_up {
        check_eq("procpool apply via Redis", pool.apply(inc, i)?, inc(i))?;
        check_eq("local procpool apply", local.apply(inc, i)?, inc(i))?;
        echo.round_trip(i)?;
    }

    let (mut pp, mut raw, mut lo) = (Sample::new(), Sample::new(), Sample::new());
    for _ in 0..reps {
        let (mut pp_us, mut raw_us, mut lo_us) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..calls {
            pp_us.push(call_us(|| {
                check_eq("procpool apply via Redis", pool.apply(inc, i)?, inc(i))
            })?);
            raw_us.push(call_us(|| echo.round_trip(i))?);
            lo_us.push(call_us(|| {
                check_eq("local procpool apply", local.apply(inc, i)?, inc(i))
            })?);
        }
        pp.push(median(&pp_us));
        raw.push(median(&raw_us));
        lo.push(median(&lo_us));
    }
    echo.finish()?;
    local.close();
    local.join()?;
    pool.close();
    pool.join()?;
    hosts.stop()?;

    let section = Section::new("(g) apply round trip via Redis", "µs/call", Better::Lower, pp)
        .peer(
            "raw XADD + XREADGROUP BLOCK ping-pong (floor)",
            raw,
            Some(Target::AtMost(2.0)),
        )
        .peer("local Pool::new(1) apply (reference)", lo, None)
        .note(format!(
            "{reps} reps of {calls} sequential calls, the three sides taking turns call by call; each \
             rep's value is its median call; procpool: 1 host of 1 worker process; raw: this program \
             re-run as --raw-redis-echo"
        ));
    Ok(vec![section])
}

/// (h) tasks/s for `n` `apply_async(inc, i)` then every `get` in order,
/// through Redis to one host of [`WORKERS`] worker processes; peers:
/// Celery and Dramatiq with [`WORKERS`] worker processes on the same
/// server (fewer tasks in quick mode: rates, not totals, are compared).
pub(crate) fn apply_async_rate(opts: &Opts, redis: &Redis, venv: &Venv) -> Fallible<Vec<Section>> {
    let reps = opts.pick(1, 3, 5);
    let n: u64 = opts.pick(200, 10_000, 10_000);
    let py_reps = opts.pick(1, 2, 3);
    let py_n = opts.pick(50, 1_000, 10_000);

    let hosts = redis.hosts("h", 1, WORKERS)?;
    let pool = redis.pool("h", WORKERS)?;
    burst(&pool, n / 10)?;
    let mut pp = Sample::new();
    for _ in 0..reps {
        let (done, secs) = timed(|| burst(&pool, n));
        done?;
        pp.push(n as f64 / secs);
    }
    pool.close();
    pool.join()?;
    hosts.stop()?;

    let mut section = Section::new("(h) apply_async burst via Redis", "tasks/s", Better::Higher, pp);
    for (peer, target) in Peer::ALL.into_iter().zip([20.0, 5.0]) {
        let target = Some(Target::AtLeast(target));
        section = match venv.ready(peer) {
            Ok(()) => {
                eprint!("[{}] ", peer.name().split(' ').next().unwrap_or(""));
                let rates = python::burst_rates(venv, redis, peer, py_reps, py_n)?;
                section.peer(&peer.name(), rates, target)
            }
            Err(why) => section.missing(&peer.name(), &why, target),
        };
    }
    Ok(vec![section.note(format!(
        "{reps} reps of {n} tasks submitted then got in order, every value checked (Celery and \
         Dramatiq: {py_reps} reps of {py_n}, after a warm-up); procpool: 1 host of {WORKERS} worker \
         processes; Celery: prefork, concurrency {WORKERS}, Redis broker and result backend, \
         AsyncResult.get; Dramatiq: {WORKERS} processes × 1 thread, Redis broker, Results middleware \
         on Redis, get_result(block=True)"
    ))])
}

/// `n` `apply_async(inc, i)`, then every `get` in order, checked.
fn burst(pool: &Pool, n: u64) -> Fallible {
    let handles = (0..n)
        .map(|i| pool.apply_async(inc, i))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, h) in (0..).zip(handles) {
        check_eq("procpool apply_async via Redis", h.get()?, inc(i))?;
    }
    Ok(())
}
