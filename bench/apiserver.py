#!/usr/bin/env python3
"""API server benchmark: starts `skiff server` on a private data dir and loopback port, then
measures ConfigMap creates (throughput, p50/p99 latency) from N concurrent HTTPS clients, the
p99 at a paced 200 writes/s (the target: <= 25 ms) as the admin and again as a user RBAC
authorizes (target: <= 5 % more), watch delivery latency, and the server's
idle RSS (target: <= 30 MB). The peer in the same run is SQLite itself: a bare
one-row-per-transaction insert loop with synchronous=FULL on the same disk, i.e. the floor a
durable write can reach here.

Usage: bench/apiserver.py [--skiff target/release/skiff] [--count 10000] [--clients 8]
"""
import argparse
import base64
import http.client
import json
import os
import signal
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_kubeconfig(path):
    """Our kubeconfig is YAML we write ourselves; pick server, token and CA without a YAML lib."""
    server = token = ca = None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("server:"):
                server = line.split(":", 1)[1].strip()
            elif line.startswith("token:"):
                token = line.split(":", 1)[1].strip()
            elif line.startswith("certificate-authority-data:"):
                ca = base64.b64decode(line.split(":", 1)[1].strip()).decode()
    if token is None:
        # The admin kubeconfig holds a client certificate; the bench uses the data dir's static
        # admin token (same user, system:admin in system:masters) over plain http.client.
        with open(os.path.join(os.path.dirname(path), "server", "admin-token")) as f:
            token = f.read().strip()
    return server, token, ca


class Client:
    def __init__(self, port, token, ctx, extra_headers=None):
        self.conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                        "Accept": "application/json"}
        self.headers.update(extra_headers or {})

    def request(self, method, path, body=None):
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None,
                          headers=self.headers)
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, data


def ready_client(data, port, timeout=30):
    """Waits for the server's kubeconfig and /readyz; returns (client, token, ssl context)."""
    kubeconfig = os.path.join(data, "kubeconfig.yaml")
    deadline = time.time() + timeout
    while not os.path.exists(kubeconfig) and time.time() < deadline:
        time.sleep(0.1)
    _, token, ca = load_kubeconfig(kubeconfig)
    ctx = ssl.create_default_context(cadata=ca)
    c = Client(port, token, ctx)
    while time.time() < deadline:
        try:
            if c.request("GET", "/readyz")[0] == 200:
                break
        except OSError:
            c = Client(port, token, ctx)
        time.sleep(0.1)
    return c, token, ctx


def configmap(name):
    # ~2 KB of data, like the store baselines.
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"payload": "x" * 2000}}


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def sqlite_floor(path, count):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE kv (id INTEGER PRIMARY KEY, k TEXT, v BLOB)")
    value = json.dumps(configmap("x")).encode()
    start = time.perf_counter()
    for i in range(count):
        db.execute("BEGIN")
        db.execute("INSERT INTO kv (k, v) VALUES (?, ?)", (f"k{i}", value))
        db.execute("COMMIT")
    return count / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skiff", default="target/release/skiff")
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--clients", type=int, default=8)
    opts = ap.parse_args()
    work = tempfile.mkdtemp(prefix="skiff-bench-api-")
    data = os.path.join(work, "data")
    port = free_port()
    server = subprocess.Popen([os.path.realpath(opts.skiff), "--data-dir", data, "server", "--listen",
                               f"127.0.0.1:{port}", "--no-agent"],
                              stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "server.log"), "w"))
    try:
        probe, token, ctx = ready_client(data, port)
        time.sleep(2)
        idle_rss = rss_kib(server.pid)

        # 1. Throughput with N clients.
        latencies, errors = [], []
        per_client = opts.count // opts.clients

        def creator(idx):
            c = Client(port, token, ctx)
            for i in range(per_client):
                t0 = time.perf_counter()
                status, body = c.request("POST", "/api/v1/namespaces/default/configmaps",
                                         configmap(f"cm-{idx}-{i}"))
                latencies.append((time.perf_counter() - t0) * 1000)
                if status != 201:
                    errors.append((status, body[:200]))

        start = time.perf_counter()
        threads = [threading.Thread(target=creator, args=(i,)) for i in range(opts.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        throughput = len(latencies) / elapsed

        # 2. Paced 200 writes/s for 2 x 5 s from 4 clients: as the admin (system:masters, never
        # authorized), then as a user RBAC authorizes (bound to `edit` in default; the admin
        # impersonates it, which for system:masters costs no authorization), the peer of item 4.
        def paced_run(prefix, extra_headers=None):
            out = []

            def paced_writer(idx):
                c = Client(port, token, ctx, extra_headers)
                interval = 4 / 200.0
                next_at = time.perf_counter()
                for i in range(250):
                    now = time.perf_counter()
                    if next_at > now:
                        time.sleep(next_at - now)
                    next_at += interval
                    t0 = time.perf_counter()
                    status, _ = c.request("POST", "/api/v1/namespaces/default/configmaps",
                                          configmap(f"{prefix}-{idx}-{i}"))
                    if status != 201:
                        errors.append((status, prefix))
                    out.append((time.perf_counter() - t0) * 1000)

            threads = [threading.Thread(target=paced_writer, args=(i,)) for i in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return out

        probe.request("POST", "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "bench-writer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bench-writer"}]})
        # Alternated (A B A B) so drift over the run (a growing database, checkpoints) falls on
        # both sides alike.
        paced, paced_rbac = [], []
        for rnd in range(2):
            paced += paced_run(f"paced{rnd}")
            paced_rbac += paced_run(f"rbac{rnd}", {"Impersonate-User": "bench-writer"})

        # 3. Watch delivery latency: time from a create's response to its event on a watch.
        status, body = probe.request("GET", "/api/v1/namespaces/default/configmaps?limit=1")
        rv = json.loads(body)["metadata"]["resourceVersion"]
        wconn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
        wconn.request("GET", f"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv}",
                      headers={"Authorization": f"Bearer {token}"})
        wresp = wconn.getresponse()
        delivery = []
        writer = Client(port, token, ctx)
        for i in range(50):
            t0 = time.perf_counter()
            writer.request("POST", "/api/v1/namespaces/default/configmaps", configmap(f"w-{i}"))
            while True:
                line = wresp.readline()
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if isinstance(obj, dict) and obj.get("object", {}).get("metadata", {}).get("name") == f"w-{i}":
                    delivery.append((time.perf_counter() - t0) * 1000)
                    break
        wconn.close()
        busy_rss = rss_kib(server.pid)

        floor = sqlite_floor(os.path.join(work, "floor.db"), 2000)
        print(f"skiff server, {len(latencies)} ConfigMap creates (~2 KB) from {opts.clients} HTTPS clients")
        print(f"  throughput          : {throughput:8.0f} creates/s   (errors: {len(errors)})")
        print(f"  latency p50 / p99   : {statistics.median(latencies):6.2f} / {pct(latencies, 99):6.2f} ms")
        print(f"  paced 200 writes/s  : p50 {statistics.median(paced):.2f} ms, p99 {pct(paced, 99):.2f} ms (target p99 <= 25 ms)")
        rbac_cost = (pct(paced_rbac, 99) / pct(paced, 99) - 1) * 100
        print(f"    through RBAC      : p50 {statistics.median(paced_rbac):.2f} ms, p99 {pct(paced_rbac, 99):.2f} ms "
              f"({rbac_cost:+.1f} % p99; target <= +5 %)")
        print(f"  watch delivery      : p50 {statistics.median(delivery):.2f} ms, p99 {pct(delivery, 99):.2f} ms (create response -> event)")
        print(f"  idle RSS            : {idle_rss / 1024:6.1f} MiB (target <= 30 MB); after load {busy_rss / 1024:.1f} MiB")
        print(f"  peer: bare SQLite durable inserts, 1 writer: {floor:8.0f} /s -> skiff/sqlite = {throughput / floor:.2f}x")
        if errors:
            print("  first error:", errors[0])
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from summary import record
        record("API server", "ConfigMap creates, 8 clients", round(throughput), "/s",
               "bare SQLite durable inserts", round(floor))
        record("API server", "p99 at 200 writes/s", round(pct(paced, 99), 2), "ms", target="<= 25 ms")
        record("API server", "p99 at 200 writes/s through RBAC", round(pct(paced_rbac, 99), 2), "ms",
               "as system:masters (not authorized)", round(pct(paced, 99), 2), target="<= 1.05x")
        record("API server", "watch delivery p50", round(statistics.median(delivery), 2), "ms")
        record("API server", "idle RSS", round(idle_rss / 1024, 1), "MiB", target="<= 30 MB")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    sys.exit(main())
