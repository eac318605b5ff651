"""Celery + Redis, the peer: no-op tasks end to end, as `scripts/bench-peers` runs it.

Two parts. As a Celery app (`celery -A celery_peer worker ...`) it defines the
no-op task, which returns how long after its submit it started (the client and
the worker share the host's clock). As a script it is the client:

    python celery_peer.py one   --jobs 5000 --clients 8   # one task per call, 8 threads
    python celery_peer.py batch --jobs 20000 --batch 1000 # groups of 1,000 per call
    python celery_peer.py latency --samples 250           # one task at a time, each waited for

and prints a human line — mode, jobs, seconds from the first submit to the last
result, jobs/s, and submit -> start p50/p99 in ms (under that load; at rest for
`latency`, with 5 ms between a result and the next submit) — and a `ROW` line
for scripts/bench-peers (the form of benches/src/row.rs). Submitting stops after
120 s, latency sampling after 60 s. The broker and result backend are the Redis
at $PEER_REDIS (default redis://127.0.0.1:6399/0).
"""

import argparse
import os
import statistics
import sys
import threading
import time

from celery import Celery, group

REDIS = os.environ.get("PEER_REDIS", "redis://127.0.0.1:6399/0")
PUSH_FOR = 120.0
SAMPLE_FOR = 60.0

app = Celery("celery_peer", broker=REDIS, backend=REDIS)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=3600,
    worker_prefetch_multiplier=64,
    broker_connection_retry_on_startup=True,
)


@app.task(name="noop")
def noop(submitted):
    """Does nothing; says how long after its submit it started, in seconds."""
    return time.time() - submitted


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def one_at_a_time(jobs, clients):
    """`clients` threads, each submitting its share one task per call."""
    results = [None] * jobs
    per = jobs // clients

    def client(k):
        for i in range(k * per, (k + 1) * per):
            if time.time() - start > PUSH_FOR:
                break
            results[i] = noop.apply_async((time.time(),))

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    start = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent = [r for r in results[: per * clients] if r is not None]
    if time.time() - start <= PUSH_FOR and len(sent) < per * clients:
        raise SystemExit("a client thread failed (see above); nothing measured")
    latencies = [r.get(timeout=600) for r in sent]
    return time.time() - start, latencies


def batched(jobs, batch):
    """Groups of `batch` tasks, one call each."""
    start = time.time()
    pending = []
    for first in range(0, jobs, batch):
        if time.time() - start > PUSH_FOR:
            break
        count = min(batch, jobs - first)
        pending.append(group(noop.s(time.time()) for _ in range(count)).apply_async())
    latencies = [value for g in pending for value in g.get(timeout=600)]
    return time.time() - start, latencies


def at_rest(samples, pause=0.005, warmup=20):
    """One task at a time, each waited for, `pause` s apart; the first `warmup` not counted."""
    latencies = []
    began = time.time()
    for i in range(samples + warmup):
        if time.time() - began > SAMPLE_FOR:
            break
        waited = noop.apply_async((time.time(),)).get(timeout=10)
        if i >= warmup:
            latencies.append(waited)
        time.sleep(pause)
    return latencies


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["one", "batch", "latency"])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=250)
    args = parser.parse_args()
    if args.mode == "latency":
        latencies = at_rest(args.samples)
        if not latencies:
            raise SystemExit("no latency sample")
        p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
        print(
            f"celery+redis latency: {len(latencies)} tasks one at a time, "
            f"submit->start p50 {p50:.2f} ms, p99 {p99:.2f} ms (the task's clock)"
        )
        print(f"ROW system=celery submit=latency samples={len(latencies)} p50_ms={p50:.3f} p99_ms={p99:.3f} clock=job-clock")
        return 0
    if args.mode == "one":
        elapsed, latencies = one_at_a_time(args.jobs, args.clients)
    else:
        elapsed, latencies = batched(args.jobs, args.batch)
    done = len(latencies)
    print(
        f"celery+redis {args.mode}: {done} jobs in {elapsed:.2f} s = {done / elapsed:.0f} jobs/s; "
        f"submit->start p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms (mean {statistics.mean(latencies) * 1000:.1f} ms)"
    )
    clients, batch = (args.clients, 1) if args.mode == "one" else (1, args.batch)
    print(
        f"ROW system=celery submit={args.mode} jobs={done} clients={clients} batch={batch} secs={elapsed:.2f} "
        f"rate={done / elapsed:.0f} load_p50_ms={percentile(latencies, 0.5) * 1000:.3f} "
        f"load_p99_ms={percentile(latencies, 0.99) * 1000:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
