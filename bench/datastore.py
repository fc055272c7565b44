#!/usr/bin/env python3
"""Datastore benchmark: API writes through `skiff server` on SQLite and on etcd against bare
etcd in the same run, and a 10,000-object churn on SQLite against its size bound.

1. `skiff server` on SQLite (its own data dir, loopback port): ConfigMap creates (~2 KB) from N
   concurrent HTTPS clients: writes/s and p50/p99 latency.
2. An etcd cluster started here (Debian's `etcd`, 1 member by default or --etcd-members 3, on
   free loopback ports, private data dirs, removed at the end):
   - bare etcd: the same number of ~2 KB puts from N concurrent clients through etcd's own
     HTTP/JSON gateway (`/v3/kv/put`, what `etcdctl put` does over gRPC): the peer;
   - `skiff server --datastore-endpoint` on that cluster: the same creates as in 1. Skipped with
     a clear line when the server cannot start on etcd (a skiff without the etcd backend).
3. Churn on SQLite (server with --datastore-compaction-interval 5s): 10,000 ConfigMaps each
   created, updated and deleted, at most 1,000 alive at once, N clients; the database file +
   WAL size is sampled all along: peak and end against CHURN_BOUND_MIB.

Usage: bench/datastore.py [--skiff target/release/skiff] [--count 4000] [--clients 8]
                          [--etcd-members 1] [--churn 10000]
"""
import argparse
import base64
import collections
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from apiserver import Client, configmap, free_port, pct, ready_client  # noqa: E402

# The stated bound for the churn (file + WAL): see docs/datastore.md.
# The file holds live objects plus up to two compaction intervals of history, so the bound grows
# with the write rate: 160 MiB for this churn at the ~1,200 writes/s a release build reaches here.
CHURN_BOUND_MIB = 160


class Server:
    """`skiff server` without an agent on a private data dir and loopback port."""

    def __init__(self, skiff, work, name, extra_args):
        self.data = os.path.join(work, name)
        self.port = free_port()
        self.log_path = os.path.join(work, f"{name}.log")
        self.proc = subprocess.Popen(
            [os.path.realpath(skiff), "--data-dir", self.data, "server", "--listen",
             f"127.0.0.1:{self.port}", "--no-agent"] + extra_args,
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "w"))

    def ready(self, timeout=60):
        """(client, token, ctx) once /readyz answers, or None if the server died or hung."""
        deadline = time.time() + timeout
        kubeconfig = os.path.join(self.data, "kubeconfig.yaml")
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return None
            if os.path.exists(kubeconfig):
                try:
                    return ready_client(self.data, self.port, max(1, deadline - time.time()))
                except (OSError, ValueError):
                    pass
            time.sleep(0.2)
        return None

    def last_log_line(self):
        try:
            with open(self.log_path) as f:
                lines = [line.strip() for line in f if line.strip()]
            return lines[-1][:300] if lines else "(no output)"
        except OSError:
            return "(no log)"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Etcd:
    """An etcd cluster of `size` members on free loopback ports (like etcd_testing.rs)."""

    def __init__(self, work, size):
        self.dir = os.path.join(work, "etcd")
        os.makedirs(self.dir)
        self.members = [{"name": f"bench-{i}", "client": free_port(), "peer": free_port()}
                        for i in range(size)]
        cluster = ",".join(f"{m['name']}=http://127.0.0.1:{m['peer']}" for m in self.members)
        self.procs = []
        for m in self.members:
            self.procs.append(subprocess.Popen(
                ["etcd", "--name", m["name"], "--data-dir", os.path.join(self.dir, m["name"]),
                 "--listen-client-urls", f"http://127.0.0.1:{m['client']}",
                 "--advertise-client-urls", f"http://127.0.0.1:{m['client']}",
                 "--listen-peer-urls", f"http://127.0.0.1:{m['peer']}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{m['peer']}",
                 "--initial-cluster", cluster, "--initial-cluster-state", "new",
                 "--initial-cluster-token", f"skiff-bench-{os.getpid()}"],
                stdout=subprocess.DEVNULL,
                stderr=open(os.path.join(self.dir, f"{m['name']}.log"), "w")))

    def endpoints(self):
        return ",".join(f"http://127.0.0.1:{m['client']}" for m in self.members)

    def wait_healthy(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = subprocess.run(["etcdctl", "--endpoints", self.endpoints(), "--command-timeout=2s",
                                "endpoint", "health"], capture_output=True,
                               env=dict(os.environ, ETCDCTL_API="3"))
            if r.returncode == 0:
                return True
            time.sleep(0.3)
        return False

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def run_threads(clients, target):
    threads = [threading.Thread(target=target, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def api_creates(server, token, ctx, count, clients, prefix):
    """ConfigMap creates from `clients` HTTPS clients: (writes/s, latencies ms, errors)."""
    latencies, errors = [], []
    per_client = count // clients

    def creator(idx):
        c = Client(server.port, token, ctx)
        for i in range(per_client):
            t0 = time.perf_counter()
            status, body = c.request("POST", "/api/v1/namespaces/default/configmaps",
                                     configmap(f"{prefix}-{idx}-{i}"))
            latencies.append((time.perf_counter() - t0) * 1000)
            if status != 201:
                errors.append((status, body[:200]))

    elapsed = run_threads(clients, creator)
    return len(latencies) / elapsed, latencies, errors


def bare_etcd_puts(etcd, count, clients):
    """~2 KB puts through etcd's JSON gateway: (puts/s, latencies ms, errors)."""
    value = base64.b64encode(json.dumps(configmap("x")).encode()).decode()
    members = etcd.members
    latencies, errors = [], []
    per_client = count // clients

    def putter(idx):
        m = members[idx % len(members)]
        conn = http.client.HTTPConnection("127.0.0.1", m["client"])
        for i in range(per_client):
            key = base64.b64encode(f"/bench/bare/{idx}/{i}".encode()).decode()
            body = json.dumps({"key": key, "value": value})
            t0 = time.perf_counter()
            conn.request("POST", "/v3/kv/put", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            latencies.append((time.perf_counter() - t0) * 1000)
            if resp.status != 200:
                errors.append((resp.status, data[:200]))

    elapsed = run_threads(clients, putter)
    return len(latencies) / elapsed, latencies, errors


def db_sizes(data):
    """(file, WAL) bytes of the server's SQLite database."""
    db = os.path.join(data, "server", "state.db")
    out = []
    for p in (db, db + "-wal"):
        try:
            out.append(os.path.getsize(p))
        except OSError:
            out.append(0)
    return tuple(out)


def db_bytes(data):
    return sum(db_sizes(data))


def churn(server, token, ctx, objects, clients, window=1000):
    """Each object created, updated, deleted; at most `window` alive. Returns (ops, errors,
    peak bytes, samples)."""
    errors = []
    ops = [0] * clients
    per_client_window = max(1, window // clients)
    per_client = objects // clients
    done = threading.Event()
    peak = [0]
    peak_parts = [0, 0]

    def sampler():
        while not done.is_set():
            f, w = db_sizes(server.data)
            if f + w > peak[0]:
                peak[0] = f + w
                peak_parts[:] = [f, w]
            time.sleep(0.1)

    def worker(idx):
        c = Client(server.port, token, ctx)
        alive = collections.deque()

        def delete_oldest():
            name = alive.popleft()
            status, body = c.request("DELETE", f"/api/v1/namespaces/default/configmaps/{name}")
            ops[idx] += 1
            if status != 200:
                errors.append(("delete", status, body[:200]))

        for i in range(per_client):
            name = f"churn-{idx}-{i}"
            status, body = c.request("POST", "/api/v1/namespaces/default/configmaps", configmap(name))
            ops[idx] += 1
            if status != 201:
                errors.append(("create", status, body[:200]))
                continue
            obj = json.loads(body)
            obj["data"]["payload"] = "y" * 2000
            status, body = c.request("PUT", f"/api/v1/namespaces/default/configmaps/{name}", obj)
            ops[idx] += 1
            if status != 200:
                errors.append(("update", status, body[:200]))
            alive.append(name)
            while len(alive) > per_client_window:
                delete_oldest()
        while alive:
            delete_oldest()

    t = threading.Thread(target=sampler)
    t.start()
    elapsed = run_threads(clients, worker)
    done.set()
    t.join()
    peak[0] = max(peak[0], db_bytes(server.data))
    return sum(ops), elapsed, errors, peak[0], peak_parts


def commit_stats(client):
    """From the server's /metrics: (commits, mean commit ms, bucket bound holding the p99 in ms)."""
    status, body = client.request("GET", "/metrics")
    if status != 200:
        return None
    buckets, count, total = [], 0, 0.0
    for line in body.decode().splitlines():
        if line.startswith("skiff_datastore_commit_duration_seconds_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
        elif line.startswith("skiff_datastore_commit_duration_seconds_count"):
            count = float(line.rsplit(" ", 1)[1])
        elif line.startswith("skiff_datastore_commit_duration_seconds_sum"):
            total = float(line.rsplit(" ", 1)[1])
    if not count:
        return None
    p99 = next((le for le, c in buckets if c >= 0.99 * count), float("inf"))
    return int(count), total / count * 1000, p99 * 1000


def report(label, rate, lat, errors):
    print(f"  {label:<34}: {rate:8.0f} writes/s   p50 {statistics.median(lat):6.2f} ms   "
          f"p99 {pct(lat, 99):7.2f} ms   (errors: {len(errors)})")
    if errors:
        print("    first error:", errors[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skiff", default="target/release/skiff")
    ap.add_argument("--count", type=int, default=4000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--etcd-members", type=int, default=1)
    ap.add_argument("--churn", type=int, default=10000)
    opts = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from summary import record

    work = tempfile.mkdtemp(prefix="skiff-bench-datastore-")
    servers, etcd = [], None
    try:
        print(f"datastore bench: {opts.count} writes (~2 KB) from {opts.clients} clients")
        # 1. SQLite.
        sq = Server(opts.skiff, work, "sqlite", [])
        servers.append(sq)
        ready = sq.ready()
        if ready is None:
            print(f"skiff server on SQLite did not start: {sq.last_log_line()}")
            return 1
        probe, token, ctx = ready
        before = commit_stats(probe)
        sq_rate, sq_lat, sq_err = api_creates(sq, token, ctx, opts.count, opts.clients, "sq")
        # The status refreshes at most every 5 s.
        time.sleep(5.5)
        after = commit_stats(Client(sq.port, token, ctx))
        sq.stop()

        # 2. etcd: bare, then skiff on it.
        etcd_rate = bare_rate = None
        if shutil.which("etcd") is None or shutil.which("etcdctl") is None:
            print("  etcd parts skipped: `etcd`/`etcdctl` not installed (apt-get install etcd-server etcd-client)")
        else:
            etcd = Etcd(work, opts.etcd_members)
            if not etcd.wait_healthy():
                print("  etcd parts skipped: the etcd cluster did not become healthy")
            else:
                bare_rate, bare_lat, bare_err = bare_etcd_puts(etcd, opts.count, opts.clients)
                es = Server(opts.skiff, work, "etcd", ["--datastore-endpoint", etcd.endpoints()])
                servers.append(es)
                ready = es.ready()
                if ready is None:
                    print(f"  skiff on etcd skipped: `skiff server --datastore-endpoint` failed: {es.last_log_line()}")
                else:
                    _, etoken, ectx = ready
                    etcd_rate, etcd_lat, etcd_err = api_creates(es, etoken, ectx, opts.count,
                                                                opts.clients, "etcd")
                es.stop()

        report("skiff server on SQLite", sq_rate, sq_lat, sq_err)
        if after:
            commits = after[0] - (before[0] if before else 0)
            print(f"    SQLite commits (from /metrics): {after[0]} in all, mean {after[1]:.2f} ms, p99 <= "
                  f"{after[2]:.0f} ms; {len(sq_lat)} writes in {commits} commits = "
                  f"~{len(sq_lat) / max(commits, 1):.1f} writes per fsync (group commit; the server's own writes count too)")
        if etcd_rate is not None:
            report(f"skiff server on etcd ({opts.etcd_members} member)", etcd_rate, etcd_lat, etcd_err)
        if bare_rate is not None:
            report(f"bare etcd puts ({opts.etcd_members} member, gateway)", bare_rate, bare_lat, bare_err)
            print(f"  ratios: skiff/SQLite vs bare etcd = {sq_rate / bare_rate:.2f}x"
                  + (f", skiff/etcd vs bare etcd = {etcd_rate / bare_rate:.2f}x"
                     f", skiff/etcd vs skiff/SQLite = {etcd_rate / sq_rate:.2f}x"
                     if etcd_rate is not None else ""))
        record("Datastore", f"API creates on SQLite, {opts.clients} clients", round(sq_rate), "/s",
               "bare etcd puts" if bare_rate else None, round(bare_rate) if bare_rate else None)
        record("Datastore", "API create p99 on SQLite", round(pct(sq_lat, 99), 2), "ms")
        if etcd_rate is not None:
            record("Datastore", f"API creates on etcd, {opts.clients} clients", round(etcd_rate), "/s",
                   "bare etcd puts", round(bare_rate))
            record("Datastore", "API create p99 on etcd", round(pct(etcd_lat, 99), 2), "ms",
                   "bare etcd put p99", round(pct(bare_lat, 99), 2))

        # 3. Churn on SQLite with compaction every 5 s.
        if opts.churn > 0:
            ch = Server(opts.skiff, work, "churn", ["--datastore-compaction-interval", "5s"])
            servers.append(ch)
            ready = ch.ready()
            if ready is None:
                print(f"  churn skipped: the server did not start: {ch.last_log_line()}")
            else:
                _, ctoken, cctx = ready
                ops, elapsed, errors, peak, parts = churn(ch, ctoken, cctx, opts.churn, opts.clients)
                # Two compaction intervals: the last deletes' history goes, vacuum shrinks.
                time.sleep(12)
                end = db_bytes(ch.data)
                bound = CHURN_BOUND_MIB * 1024 * 1024
                verdict = "within" if peak <= bound else "OVER"
                print(f"  churn: {opts.churn} ConfigMaps created/updated/deleted (<= 1000 alive), "
                      f"{ops} writes in {elapsed:.1f} s (errors: {len(errors)})")
                print(f"    SQLite file + WAL: peak {peak / 2**20:.1f} MiB (file {parts[0] / 2**20:.1f} + WAL "
                      f"{parts[1] / 2**20:.1f}), at the end {end / 2**20:.1f} MiB; "
                      f"bound {CHURN_BOUND_MIB} MiB -> {verdict}")
                if errors:
                    print("    first error:", errors[0])
                record("Datastore", f"{opts.churn}-object churn: SQLite file+WAL peak",
                       round(peak / 2**20, 1), "MiB", target=f"<= {CHURN_BOUND_MIB} MiB")
            ch.stop()
        return 0
    finally:
        for s in servers:
            s.stop()
        if etcd is not None:
            etcd.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
