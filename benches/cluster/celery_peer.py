"""Celery as a peer of procpool's Redis-fed pool (benches/cluster.rs, workload h).

The same file is the Celery app the worker loads and the client the bench
runs. benches/cluster/python.rs starts the worker on the bench's private
redis-server (its unix socket is in CLUSTER_BENCH_REDIS_SOCKET), with the
Redis broker and the Redis result backend:

    celery -A celery_peer worker --pool prefork --concurrency 2 \
        --without-gossip --without-mingle --without-heartbeat -l WARNING

then runs the client, which submits COUNT tasks with `delay`, gets every
result in order, checks each value, and prints on stdout:

    {"metrics": {"tasks_per_s": [one value per repetition, ...]}}

    python3 celery_peer.py --reps 3 --count 10000

A wrong result or a timeout exits non-zero with a message on stderr.
"""

import argparse
import json
import os
import sys
import time

from celery import Celery

SOCKET = os.environ["CLUSTER_BENCH_REDIS_SOCKET"]
URL = f"redis+socket://{SOCKET}"

app = Celery("cluster_bench", broker=URL, backend=URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="cluster_bench.inc")
def inc(x):
    """The trivial task: procpool's side computes the same."""
    return x + 1


def fail(what):
    sys.exit(f"celery_peer.py: {what}")


def burst(count, timeout):
    """Seconds for `count` delay() calls, then every get() in order, checked."""
    start = time.perf_counter()
    pending = [inc.delay(i) for i in range(count)]
    for i, result in enumerate(pending):
        got = result.get(timeout=timeout)
        if got != i + 1:
            fail(f"wrong result for task {i}: got {got!r}, expected {i + 1}")
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--startup-timeout", type=float, default=60.0)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    # The worker is ready once a task comes back.
    if inc.delay(41).get(timeout=args.startup_timeout) != 42:
        fail("wrong warm-up result")
    burst(args.warmup, args.timeout)
    rates = [args.count / burst(args.count, args.timeout) for _ in range(args.reps)]
    json.dump({"metrics": {"tasks_per_s": rates}}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
