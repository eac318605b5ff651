"""The table of `scripts/bench-peers`: reads the `ROW system=... submit=... key=value ...`
lines every measuring program printed into the run's log, and renders one markdown
table — throughput one at a time and batched, submit -> start latency at rest, the
ratio to the fastest comparable peer, the physical limits, shell jobs against a
raw spawn loop, and issue 17's targets next to the figures. Standard library only.

    python3 table.py RUN.LOG TABLE.MD

A measurement missing from the log (it failed, or was skipped) shows as "—".
"""

import sys

# Archon's rows and its peers, in table order: (system, label, class). The class
# says which peers an Archon row is compared with: in memory, or over the network
# to a server that keeps the jobs.
SYSTEMS = [
    ("archon-inproc", "Archon embedded in process (MemStore)", "memory"),
    ("archon-dev-grpc", "`archon dev`, gRPC, TLS 1.3 + token, Raft store (durable)", "network"),
    ("archon-dev-grpc-plain", "`archon dev`, gRPC, plaintext, no token, Raft store", "network"),
    ("archon-dev-rest", "`archon dev`, REST (HTTP/1.1 + JSON), TLS 1.3 + token, Raft store", "network"),
    ("archon-cluster", "3 `archon-manager`s (Raft) + 2 `archon-worker`s, TLS 1.3 + token", "network"),
    ("archon-dev-pg", "`archon dev` on PostgreSQL 15 (PgStore), gRPC, TLS 1.3 + token", "network"),
    ("celery", "Celery 5.7 + Redis 7 (no persistence), 2 prefork processes", None),
    ("apalis-memory", "apalis 1.0 in memory", None),
    ("apalis-postgres", "apalis-postgres 1.0 (PostgreSQL 15), polling every 1 s, fetching 100", None),
    ("apalis-postgres-notify", "apalis-postgres 1.0 (PostgreSQL 15), woken by LISTEN/NOTIFY", None),
]
# What the script measures of each (all three unless listed).
MEASURED = {"archon-dev-grpc-plain": ("one",)}
PEERS = {"memory": ["apalis-memory"], "network": ["celery", "apalis-postgres", "apalis-postgres-notify"]}
LABEL = {s: label for s, label, _ in SYSTEMS}
SHORT = {
    "celery": "Celery",
    "apalis-memory": "apalis in memory",
    "apalis-postgres": "apalis-postgres",
    "apalis-postgres-notify": "apalis-postgres (notify)",
}


def parse(log):
    """{(system, submit): {key: value}}; a later row replaces an earlier one, except
    the physical limits, measured at the start and at the end of a run: the one
    with the highest limit (the best the machine showed) is kept, the others are
    listed under `all_limits`."""
    rows = {}
    limits = []
    with open(log, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line.startswith("ROW "):
                continue
            fields = dict(part.split("=", 1) for part in line.split()[1:] if "=" in part)
            if fields.get("system") == "limits":
                limits.append(fields)
                continue
            rows[(fields.get("system"), fields.get("submit"))] = fields
    if limits:
        rows[("limits", "limits")] = max(limits, key=lambda r: float(r.get("limit", "0")))
        rows[("limits", "all")] = limits
    return rows


def num(rows, system, submit, key):
    try:
        return float(rows[(system, submit)][key])
    except (KeyError, ValueError):
        return None


def jobs(x):
    return "—" if x is None else f"{x:,.0f}"


def ratio(a, b):
    return None if a is None or not b else a / b


def times(x):
    if x is None:
        return "—"
    return f"{x:.2f}×" if x < 10 else f"{x:.1f}×"


def shape(rows, system, submit):
    r = rows.get((system, submit))
    if not r:
        return ""
    batch, clients = r.get("batch", "?"), r.get("clients", "?")
    if submit == "one":
        return f"{clients} clients"
    return f"{int(batch):,} per call, {clients} client{'s' if clients != '1' else ''}"


def fastest_peer(rows, cls, submit):
    best = None
    for peer in PEERS.get(cls, []):
        rate = num(rows, peer, submit, "rate")
        if rate is not None and (best is None or rate > best[1]):
            best = (peer, rate)
    return best


def render(rows):
    out = []
    info = rows.get(("machine", "info"), {})
    if info:
        out.append(
            f"Machine: {info.get('cores', '?')} cores, Linux {info.get('kernel', '?')}, data dirs on "
            f"{info.get('fs', '?')}; run started {info.get('date', '?').replace('_', ' ')}."
        )
        out.append("")
    out.append(
        "| system | one at a time (jobs/s) | batched (jobs/s) | submit → start at rest, p50 / p99 "
        "| vs fastest comparable peer, one / batched |"
    )
    out.append("|---|---|---|---|---|")
    for system, label, cls in SYSTEMS:
        one, batch = num(rows, system, "one", "rate"), num(rows, system, "batch", "rate")
        p50, p99 = num(rows, system, "latency", "p50_ms"), num(rows, system, "latency", "p99_ms")
        lat = "—" if p50 is None else f"{p50:.2f} / {p99:.2f} ms"
        cells = []
        for submit, rate in (("one", one), ("batch", batch)):
            best = fastest_peer(rows, cls, submit) if cls else None
            cells.append(f"{times(ratio(rate, best[1]))} {SHORT[best[0]]}" if best and rate else "—")
        vs = " / ".join(cells) if cls else ""
        one_cell = f"{jobs(one)} ({shape(rows, system, 'one')})" if one is not None else "—"
        batch_cell = f"{jobs(batch)} ({shape(rows, system, 'batch')})" if batch is not None else "—"
        out.append(f"| {label} | {one_cell} | {batch_cell} | {lat} | {vs} |")
    out.append("")
    out.append(
        "End to end: from the first submit until every run (task) has ended, no-op jobs, after a warm-up. "
        "Latency at rest: one job at a time, each waited for, 5 ms apart, the first 20 not counted; Celery, apalis "
        "and Archon in process read the start on the job's own clock; Archon over the network reads the manager's "
        "record of the start (its clock in whole ms, +0.5 ms) against the client's submit instant (same host). "
        "Comparable peers: apalis in memory for Archon in process; Celery and apalis-postgres (either set-up) for "
        "the rest."
    )

    out.append("")
    fsync = num(rows, "limits", "limits", "fsync_ms")
    fsync_mean = num(rows, "limits", "limits", "fsync_mean_ms")
    rtt = num(rows, "limits", "limits", "rtt_ms")
    limit = num(rows, "limits", "limits", "limit")
    clients = rows.get(("limits", "limits"), {}).get("clients", "8")
    out.append("| physical limit, same run | measured |")
    out.append("|---|---|")
    mean = f" (mean {fsync_mean:.3f} ms)" if fsync_mean is not None else ""
    out.append(
        f"| fsync: append 512 bytes + fdatasync, on the data dirs' file system | "
        f"{'—' if fsync is None else f'p50 {fsync:.3f} ms{mean}'} |"
    )
    out.append(
        "| loopback gRPC round trip (`status`, TLS 1.3 + token, `archon dev`) | "
        f"{'—' if rtt is None else f'p50 {rtt:.3f} ms'} |"
    )
    out.append(
        f"| best one-at-a-time rate for {clients} clients with group commit = {clients} ÷ (fsync + round trip) "
        f"| {jobs(limit)} jobs/s |"
    )
    ceiling = num(rows, "limits", "limits", "calls_ceiling")
    if ceiling is not None:
        server_us = num(rows, "limits", "limits", "call_server_us")
        client_us = num(rows, "limits", "limits", "call_client_us")
        out.append(
            f"| the same `status` call from {clients} clients at once, each waiting for its answer (no job work): "
            f"calls served, CPU per call | {jobs(ceiling)} calls/s, {server_us:.0f} µs server + {client_us:.0f} µs "
            f"clients |"
        )
    every = rows.get(("limits", "all"), [])
    if len(every) > 1:
        each = "; ".join(
            f"fsync {float(r['fsync_ms']):.3f} ms, round trip {float(r['rtt_ms']):.3f} ms, "
            f"limit {float(r['limit']):,.0f} jobs/s"
            for r in every
        )
        out.append("")
        out.append(
            f"Measured at the start and at the end of the run ({each}); the table shows the higher limit."
        )

    shells = sorted((r for (s, _), r in rows.items() if s == "shell"), key=lambda r: int(r.get("concurrency", "0")))
    if shells:
        out.append("")
        out.append(
            "| shell `true` jobs (median of runs) | raw spawn loop (/s) | Archon in process (/s) "
            "| Archon ÷ loop | each run (%) | target |"
        )
        out.append("|---|---|---|---|---|---|")
        for r in shells:
            out.append(
                f"| concurrency {r.get('concurrency')}, {int(r.get('jobs', '0')):,} jobs, {r.get('runs', '1')} runs "
                f"| {jobs(float(r['loop']))} | {jobs(float(r['archon']))} | {float(r['pct']):.0f} % "
                f"| {r.get('pcts', '—')} | ≥ 80 % |"
            )

    dev_one = num(rows, "archon-dev-grpc", "one", "rate")
    dev_batch = num(rows, "archon-dev-grpc", "batch", "rate")
    celery = num(rows, "celery", "one", "rate")
    apg_rates = [num(rows, s, "one", "rate") for s in ("apalis-postgres", "apalis-postgres-notify")]
    apg = max((r for r in apg_rates if r is not None), default=None)
    inproc_b, amem_b = num(rows, "archon-inproc", "batch", "rate"), num(rows, "apalis-memory", "batch", "rate")
    inproc_o, amem_o = num(rows, "archon-inproc", "one", "rate"), num(rows, "apalis-memory", "one", "rate")

    def check(value, goal):
        return "—" if value is None else ("yes" if value >= goal else "no")

    targets = [
        ("`archon dev` (TLS + token, durable) one at a time, 8 clients", dev_one, jobs(dev_one) + " jobs/s",
         12000, "≥ 12,000 jobs/s"),
        ("… ÷ Celery + Redis, one task per call, 8 clients", ratio(dev_one, celery), times(ratio(dev_one, celery)),
         20, "≥ 20×"),
        ("… ÷ apalis-postgres (the faster of its two set-ups), one push per job, 8 clients", ratio(dev_one, apg),
         times(ratio(dev_one, apg)), 15, "≥ 15×"),
        ("… ÷ the limit above", ratio(dev_one, limit),
         "—" if ratio(dev_one, limit) is None else f"{100 * dev_one / limit:.1f} %", 0.6, "≥ 60 %"),
        ("`archon dev` (TLS + token, durable) batched", dev_batch, jobs(dev_batch) + " jobs/s", 100000,
         "≥ 100,000 jobs/s"),
        ("Archon in process ÷ apalis in memory, batched", ratio(inproc_b, amem_b), times(ratio(inproc_b, amem_b)),
         0.75, "≥ 0.75×"),
    ]
    out.append("")
    out.append("| issue 17 target | this run | target | met |")
    out.append("|---|---|---|---|")
    for what, value, shown, goal, goal_text in targets:
        out.append(f"| {what} | {shown if value is not None else '—'} | {goal_text} | {check(value, goal)} |")
    if ratio(inproc_o, amem_o) is not None:
        out.append(
            f"| (for the record) Archon in process ÷ apalis in memory, one at a time | {times(ratio(inproc_o, amem_o))} "
            f"| | |"
        )
    missing = []
    for system, label, _ in SYSTEMS:
        expected = MEASURED.get(system, ("one", "batch", "latency"))
        absent = [m for m in expected if (system, m) not in rows]
        if len(absent) == len(expected):
            missing.append(f"{label}: nothing")
        elif absent:
            missing.append(f"{label}: {', '.join(absent)}")
    if missing:
        out.append("")
        out.append("Not measured in this run (see the log): " + "; ".join(missing) + ".")
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) != 3:
        raise SystemExit("usage: python3 table.py RUN.LOG TABLE.MD")
    table = render(parse(sys.argv[1]))
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        f.write(table)
    sys.stdout.write(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
