#!/usr/bin/env python3
"""Sort the samples of a dps-server perf profile into where-the-CPU-goes
categories (BENCHMARKING.md, issue 19: "Where a registration's server CPU goes").

usage: perf script -i perf.data -F comm,ip,sym --no-inline | perf-categories.py

The first category whose keys appear anywhere in a sample's stack (or its
thread name) takes the sample, in the order listed."""
import sys, collections
CATS = [
    ("TLS handshake (rustls accept)", ["MidHandshake"]),
    ("X.509 chain verification", ["dps_attestation::x509"]),
    ("store writer (SQLite commit)", ["sqlite::writer", "dps-sqlite-writ", "sqlx_sqlite"]),
    ("store point reads", ["PointReaders", "point_reads"]),
    ("hub calls (bulk registry, HTTP/2 client)", ["hub_batch", "HubClient", "reqwest", "h2::", "hyper_util::client", "hyper::proto::h2"]),
    ("pipeline (auth, allocation, answer JSON, metrics)", ["dps_service::pipeline", "dps_attestation::sas"]),
    ("device protocol (HTTP parse/route, MQTT, AMQP)", ["hyper::", "axum", "device::mqtt", "device::amqp", "fe2o3", "tungstenite"]),
    ("TLS records after the handshake + socket I/O", ["tokio_rustls", "rustls::", "mio::", "tcp_"]),
    ("connection accept/close, timers", ["listener::", "accept", "tcp_close", "tokio::time"]),
    ("scheduling (tokio wake-ups, futex, context switches)", ["tokio::runtime", "futex", "schedule", "finish_task_switch", "try_to_wake_up"]),
]
counts = collections.Counter(); total = 0
stack = []; comm = None
def flush():
    global total
    if comm is None: return
    total += 1
    text = comm + " " + " ".join(stack)
    for name, keys in CATS:
        if any(k in text for k in keys):
            counts[name] += 1; return
    counts["other"] += 1
for line in sys.stdin:
    if not line.strip():
        flush(); stack = []; comm = None; continue
    if not line.startswith((" ", "\t")):
        comm = line.split()[0]; continue
    stack.append(line.strip())
flush()
for name, _ in CATS + [("other", [])]:
    print(f"{counts[name]*100.0/max(total,1):6.1f}%  {name}")
print(f"{total} samples")
