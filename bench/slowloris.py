#!/usr/bin/env python3
"""Connection-exhaustion check (issue 10, item 4): starts `skiff server` on a private data dir
and loopback port, measures `kubectl get ns` latency (p50/p99) before and during a slowloris
flood of 20,000 idle connections that never finish a handshake or a header (silent TCP, half
a TLS ClientHello, TLS with half a request head), and the server's descriptors and RSS during
it. The attackers re-open whatever the server closes, so the pressure stays on for the whole
measurement. Target: kubectl keeps answering within 1 s.

Usage: bench/slowloris.py [--skiff target/release/skiff] [--connections 20000] [--runs 30]
"""
import argparse
import multiprocessing
import os
import resource
import select
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from summary import record  # noqa: E402

HELLO = b"\x16\x03\x01\x02\x00\x01\x00"  # a record header promising 512 bytes that never come
HEAD = b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\n"  # never finished


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def attacker(port, kind, count, ca, stop, ready):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ctx = ssl.create_default_context(cadata=ca) if kind == "headers" else None

    def open_one():
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if kind == "hello":
                s.sendall(HELLO)
            elif kind == "headers":
                s = ctx.wrap_socket(s, server_hostname="127.0.0.1")
                s.sendall(HEAD)
            s.setblocking(False)
            return s
        except (OSError, ssl.SSLError):
            return None

    socks = {}
    poller = select.poll()
    failed = 0
    for _ in range(count):
        s = open_one()
        if s is None:
            failed += 1
            continue
        socks[s.fileno()] = s
        poller.register(s, select.POLLIN | select.POLLHUP | select.POLLERR)
    ready.put((kind, len(socks), failed))
    reopened = 0
    while not stop.is_set():
        # Whatever the server closed (timeouts, evictions) is opened again.
        for fd, _ in poller.poll(200):
            s = socks.pop(fd, None)
            if s is None:
                continue
            poller.unregister(fd)
            s.close()
            n = open_one()
            if n is not None:
                socks[n.fileno()] = n
                poller.register(n, select.POLLIN | select.POLLHUP | select.POLLERR)
                reopened += 1
    ready.put((kind + "-reopened", reopened, 0))
    for s in socks.values():
        s.close()


def kubectl_latencies(env, runs):
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run(["kubectl", "get", "ns", "--request-timeout=10s"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
        ms = (time.perf_counter() - t0) * 1000
        if r.returncode != 0:
            print("  kubectl failed:", r.stderr.decode(errors="replace").strip()[:200])
            ms = float("inf")
        out.append(ms)
    return out


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skiff", default="target/release/skiff")
    ap.add_argument("--connections", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=30)
    opts = ap.parse_args()
    if not shutil.which("kubectl"):
        print("bench/slowloris.py skipped: kubectl not found")
        return
    work = tempfile.mkdtemp(prefix="skiff-bench-slowloris-")
    data = os.path.join(work, "data")
    home = os.path.join(work, "home")
    os.makedirs(home)
    port = free_port()
    server = subprocess.Popen([os.path.realpath(opts.skiff), "--data-dir", data, "server", "--listen",
                               f"127.0.0.1:{port}", "--no-agent"],
                              stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "server.log"), "w"))
    procs = []
    stop = multiprocessing.Event()
    try:
        kubeconfig = os.path.join(data, "kubeconfig.yaml")
        env = dict(os.environ, KUBECONFIG=kubeconfig, HOME=home,
                   CLOUDSDK_CONFIG=os.path.join(home, "gcloud"))
        deadline = time.time() + 30
        while time.time() < deadline:
            if os.path.exists(kubeconfig) and subprocess.run(
                    ["kubectl", "get", "--raw", "/readyz"], env=env, capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        ca = None
        with open(kubeconfig) as f:
            import base64
            for line in f:
                if "certificate-authority-data:" in line:
                    ca = base64.b64decode(line.split(":", 1)[1].strip()).decode()
        kubectl_latencies(env, 2)  # warm the discovery cache
        before = kubectl_latencies(env, opts.runs)
        fds_idle = len(os.listdir(f"/proc/{server.pid}/fd"))

        # 20k attackers in processes of at most 5k (each has its own descriptor limit).
        n = opts.connections
        plan = [("raw", n // 2), ("hello", n // 4), ("headers", n - n // 2 - n // 4)]
        ready = multiprocessing.Queue()
        for kind, count in plan:
            while count > 0:
                part = min(count, 5000)
                p = multiprocessing.Process(target=attacker, args=(port, kind, part, ca, stop, ready))
                p.start()
                procs.append(p)
                count -= part
        opened = {}
        t0 = time.time()
        for _ in procs:
            kind, ok, failed = ready.get(timeout=600)
            opened[kind] = opened.get(kind, 0) + ok
        print(f"  attackers opened {opened} in {time.time() - t0:.1f}s")
        during = kubectl_latencies(env, opts.runs)
        fds = len(os.listdir(f"/proc/{server.pid}/fd"))
        rss = rss_kib(server.pid) / 1024
        stop.set()
        reopened = {}
        for _ in procs:
            kind, count, _ = ready.get(timeout=120)
            reopened[kind] = count
        alive = server.poll() is None
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)

    b50, b99 = pct(before, 50), pct(before, 99)
    d50, d99 = pct(during, 50), pct(during, 99)
    ok = alive and d99 <= 1000
    print(f"slowloris: kubectl get ns before p50 {b50:.0f} ms p99 {b99:.0f} ms; during "
          f"{opts.connections} idle connections p50 {d50:.0f} ms p99 {d99:.0f} ms "
          f"(target <= 1000 ms: {'ok' if ok else 'MISSED'})")
    print(f"  server descriptors {fds_idle} idle -> {fds} under attack, RSS {rss:.0f} MiB; "
          f"connections re-opened by attackers: {reopened}")
    record("slowloris", "kubectl get ns p50 (idle)", round(b50, 1), "ms")
    record("slowloris", f"kubectl get ns p50 ({opts.connections} idle conns)", round(d50, 1), "ms")
    record("slowloris", f"kubectl get ns p99 ({opts.connections} idle conns)", round(d99, 1), "ms",
           target="<= 1000 ms")
    record("slowloris", "server RSS under attack", round(rss, 1), "MiB")


if __name__ == "__main__":
    main()
