"""Python's multiprocessing.Pool, the reference peer of procpool's benchmarks.

benches/peers.rs runs this script once per workload, with the sizes it chose,
and parses the JSON object it prints on stdout:

    {"metrics": {"<name>": [one value per repetition, ...], ...}}

Every workload checks its results and exits with an error (a traceback on
stderr, a non-zero status) when one is wrong. All pools use the fork start
method, except the spawn-start measurement of workload e.

    python3 pool_bench.py --workload a --reps 5 --count 1000
"""

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time

MASK = (1 << 64) - 1
WORKERS = 2


def inc(x):
    """The trivial task: procpool's `inc` and the raw echo server do the same."""
    return x + 1


def spin(arg):
    """About 1 ms of CPU at the calibrated iteration count; deterministic."""
    seed, iters = arg
    x = seed
    for _ in range(iters):
        x = (x * 6364136223846793005 + 1442695040888963407) & MASK
    return x


def check(cond, what):
    if not cond:
        raise SystemExit(f"pool_bench.py: wrong result: {what}")


def fork_pool():
    return mp.get_context("fork").Pool(WORKERS)


def apply_round_trip(reps, count):
    """(a) median seconds per sequential `apply`, one value per repetition."""
    out = []
    with fork_pool() as pool:
        for i in range(50):
            check(pool.apply(inc, (i,)) == i + 1, "warm-up apply")
        for _ in range(reps):
            lat = []
            for i in range(count):
                t = time.perf_counter()
                r = pool.apply(inc, (i,))
                lat.append(time.perf_counter() - t)
                check(r == i + 1, f"apply({i}) = {r}")
            out.append(statistics.median(lat) * 1e6)
    return {"apply_us": out}


def apply_async_rate(reps, count):
    """(b) tasks per second: `count` apply_async, then every get."""
    out = []
    with fork_pool() as pool:
        for _ in range(reps):
            t = time.perf_counter()
            handles = [pool.apply_async(inc, (i,)) for i in range(count)]
            results = [h.get() for h in handles]
            dt = time.perf_counter() - t
            check(results == [i + 1 for i in range(count)], "apply_async results")
            out.append(count / dt)
    return {"apply_async_per_s": out}


def map_rate(reps, count):
    """(c) items per second of `Pool.map` with the default chunksize."""
    items = list(range(count))
    want = [x + 1 for x in items]
    out = []
    with fork_pool() as pool:
        check(pool.map(inc, range(100)) == list(range(1, 101)), "warm-up map")
        for _ in range(reps):
            t = time.perf_counter()
            got = pool.map(inc, items)
            dt = time.perf_counter() - t
            check(got == want, "map results")
            out.append(count / dt)
    return {"map_per_s": out}


def calibrate_spin(target_s=1e-3):
    """Iterations of `spin` that take about `target_s` here (best of 5)."""
    probe = 20_000
    best = min(_timed(spin, (1, probe)) for _ in range(5))
    return max(1, round(probe * target_s / best))


def _timed(f, arg):
    t = time.perf_counter()
    f(arg)
    return time.perf_counter() - t


def cpu_speedup(reps, count):
    """(d) serial time ÷ Pool(2).map time for `count` spins of ~1 ms."""
    iters = calibrate_spin()
    items = [(i, iters) for i in range(count)]
    speedups, serial_ms = [], []
    with fork_pool() as pool:
        pool.map(inc, range(WORKERS * 4))
        for _ in range(reps):
            t = time.perf_counter()
            want = [spin(a) for a in items]
            serial = time.perf_counter() - t
            t = time.perf_counter()
            got = pool.map(spin, items)
            parallel = time.perf_counter() - t
            check(got == want, "spin map results")
            speedups.append(serial / parallel)
            serial_ms.append(serial / count * 1e3)
    return {"speedup": speedups, "serial_ms_per_item": serial_ms}


def startup(reps, method):
    """(e) ms from `Pool(2)` to the first `apply` result, and to `join`."""
    ctx = mp.get_context(method)
    first, joined = [], []
    for _ in range(reps):
        t = time.perf_counter()
        pool = ctx.Pool(WORKERS)
        r = pool.apply(inc, (1,))
        t_first = time.perf_counter() - t
        pool.close()
        pool.join()
        t_join = time.perf_counter() - t
        check(r == 2, f"apply(1) = {r}")
        first.append(t_first * 1e3)
        joined.append(t_join * 1e3)
    return {f"{method}_first_ms": first, f"{method}_join_ms": joined}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", required=True, choices=list("abcde"))
    p.add_argument("--reps", type=int, required=True)
    p.add_argument("--count", type=int, default=0, help="calls, tasks or items")
    p.add_argument("--spawn-reps", type=int, default=0, help="(e) reps with spawn start")
    a = p.parse_args()
    if a.workload == "a":
        metrics = apply_round_trip(a.reps, a.count)
    elif a.workload == "b":
        metrics = apply_async_rate(a.reps, a.count)
    elif a.workload == "c":
        metrics = map_rate(a.reps, a.count)
    elif a.workload == "d":
        metrics = cpu_speedup(a.reps, a.count)
    else:
        metrics = startup(a.reps, "fork")
        metrics.update(startup(a.spawn_reps or a.reps, "spawn"))
    json.dump({"metrics": metrics}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
