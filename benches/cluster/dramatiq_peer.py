"""Dramatiq as a peer of procpool's Redis-fed pool (benches/cluster.rs, workload h).

The same file is the module the worker loads and the client the bench runs.
benches/cluster/python.rs starts the worker on the bench's private
redis-server (its unix socket is in CLUSTER_BENCH_REDIS_SOCKET), with the
Redis broker and the Results middleware on a Redis backend, so that every
value comes back and is checked:

    dramatiq dramatiq_peer --processes 2 --threads 1

then runs the client, which submits COUNT messages with `send`, gets every
result in order (`get_result(block=True)`), checks each value, and prints on
stdout:

    {"metrics": {"tasks_per_s": [one value per repetition, ...]}}

    python3 dramatiq_peer.py --reps 3 --count 10000

A wrong result or a timeout exits non-zero with a message on stderr.
"""

import argparse
import json
import os
import sys
import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

SOCKET = os.environ["CLUSTER_BENCH_REDIS_SOCKET"]
URL = f"unix://{SOCKET}"

broker = RedisBroker(url=URL)
broker.add_middleware(Results(backend=RedisBackend(url=URL)))
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="cluster_bench_inc", store_results=True, max_retries=0)
def inc(x):
    """The trivial task: procpool's side computes the same."""
    return x + 1


def fail(what):
    sys.exit(f"dramatiq_peer.py: {what}")


def burst(count, timeout_ms):
    """Seconds for `count` send() calls, then every result in order, checked."""
    start = time.perf_counter()
    pending = [inc.send(i) for i in range(count)]
    for i, message in enumerate(pending):
        got = message.get_result(block=True, timeout=timeout_ms)
        if got != i + 1:
            fail(f"wrong result for message {i}: got {got!r}, expected {i + 1}")
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--startup-timeout", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    # The worker is ready once a message comes back.
    if inc.send(41).get_result(block=True, timeout=int(args.startup_timeout * 1000)) != 42:
        fail("wrong warm-up result")
    timeout_ms = int(args.timeout * 1000)
    burst(args.warmup, timeout_ms)
    rates = [args.count / burst(args.count, timeout_ms) for _ in range(args.reps)]
    json.dump({"metrics": {"tasks_per_s": rates}}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
