#!/usr/bin/env python3
"""Container log benchmark (root): starts `skiff server` (with its embedded node agent) on a
private data dir and loopback port, runs one pod that floods 1 GB to stdout (`yes | head -c`),
and measures while it runs and after:

  1. the pod's log files on disk (container.log and its rotated files): the largest total seen
     during the flood and the total at the end (target <= 50 MiB: --container-log-max-size
     10Mi x --container-log-max-files 5);
  2. `kubectl logs --tail=1` latency (GET .../pods/NAME/log?tailLines=1 through the API server
     and the agent): median and max during the flood, median after it (target <= 50 ms);
  3. the server's RSS (API server + controllers + agent: one process) before the flood and
     its peak during it (target: growth <= 10 MiB).

Everything it creates is removed at the end, also on failure (pod deleted, server stopped
with SIGTERM by PID, `skiff reset`, temp dir removed).

Usage: bench/logs.py [--skiff target/release/skiff] [--bytes 1073741824]
                     [--cluster-cidr 100.64.78.0/24] [--timeout 300]
"""
import argparse
import glob
import http.client
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import apiserver  # noqa: E402  (free_port, load_kubeconfig, rss_kib)
import pods  # noqa: E402  (Api, is_ready, skiff_ps, mounts_under)
import start  # noqa: E402  (import_busybox_image, start_server)
import summary  # noqa: E402

NS = "default"
IMAGE = "bench-logs:1"
POD = "flood"
MARK = "FLOOD-DONE"
MIB = 1 << 20


def now():
    return time.perf_counter()


def log_bytes(data):
    total = 0
    for f in glob.glob(os.path.join(data, "containers", "*", "container.log*")):
        try:
            total += os.path.getsize(f)
        except OSError:
            pass
    return total


def tail1(api):
    """One `logs --tail=1`: (milliseconds, body)."""
    t0 = now()
    status, obj = api.request_raw("GET", f"/api/v1/namespaces/{NS}/pods/{POD}/log?tailLines=1")
    ms = (now() - t0) * 1000
    if status != 200:
        raise RuntimeError(f"logs: HTTP {status}: {obj[:300]!r}")
    return ms, obj


class RawApi(pods.Api):
    def request_raw(self, method, path):
        headers = {"Authorization": f"Bearer {self.token}"}
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx,
                                                        timeout=30)
            try:
                self.conn.request(method, path, headers=headers)
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise RuntimeError("unreachable")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skiff", default="target/release/skiff")
    ap.add_argument("--bytes", type=int, default=1 << 30)
    ap.add_argument("--cluster-cidr", default="100.64.78.0/24")
    ap.add_argument("--timeout", type=float, default=300.0)
    opts = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/logs.py must run as root (the embedded agent runs containers)")
    if shutil.which("busybox") is None:
        sys.exit("busybox missing: apt-get install busybox-static")
    skiff = os.path.realpath(opts.skiff)
    work = tempfile.mkdtemp(prefix="skiff-bench-logs-")
    data = os.path.join(work, "data")
    server = api = None
    r = {}
    try:
        start.import_busybox_image(skiff, data, work, IMAGE, ["yes", "head"])
        port = apiserver.free_port()
        server = start.start_server(skiff, data, work, port, opts.cluster_cidr)
        kubeconfig = os.path.join(data, "kubeconfig.yaml")
        deadline = now() + 30
        while not os.path.exists(kubeconfig):
            if server.poll() is not None or now() > deadline:
                raise RuntimeError("server did not write its kubeconfig")
            time.sleep(0.05)
        time.sleep(0.1)
        _, token, ca = apiserver.load_kubeconfig(kubeconfig)
        api = RawApi(port, token, ssl.create_default_context(cadata=ca))
        while True:
            try:
                nodes = api.ok("GET", "/api/v1/nodes").get("items", [])
                if any(pods.is_ready(n) for n in nodes):
                    break
            except (OSError, http.client.HTTPException, RuntimeError):
                pass
            if server.poll() is not None or now() > deadline:
                raise RuntimeError("no Ready node")
            time.sleep(0.1)
        time.sleep(1.0)
        r["rss_before"] = apiserver.rss_kib(server.pid)

        line = "x" * 99  # 100-byte lines with the newline
        script = f"yes {line} | head -c {opts.bytes}; echo; echo {MARK}; sleep 3600"
        api.ok("POST", f"/api/v1/namespaces/{NS}/pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": POD},
            "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                "name": "main", "image": IMAGE, "imagePullPolicy": "Never",
                "command": ["/bin/sh", "-c", script]}]},
        })
        # RSS sampler: the peak during the flood.
        peak = {"rss": r["rss_before"], "files": 0}
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                try:
                    peak["rss"] = max(peak["rss"], apiserver.rss_kib(server.pid))
                    peak["files"] = max(peak["files"], log_bytes(data))
                except OSError:
                    pass
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = now()
        during = []
        done = False
        last_error = None
        last_body = b""
        while now() - t0 < opts.timeout:
            try:
                ms, body = tail1(api)
            except RuntimeError as e:
                last_error = e
                time.sleep(0.2)  # the container may not run yet
                continue
            last_body = body[-200:]
            if body.strip() == MARK.encode():
                done = True
                break
            if body:
                during.append(ms)
            time.sleep(0.2)
        r["flood_s"] = now() - t0
        stop.set()
        sampler.join()
        if not done:
            raise RuntimeError(f"the flood did not finish within {opts.timeout}s "
                               f"(log files {log_bytes(data)} bytes, last error {last_error}, "
                               f"last answer {last_body!r})")
        after = [tail1(api)[0] for _ in range(20)]
        r["rss_peak"] = peak["rss"]
        r["files_peak"] = peak["files"]
        r["files_end"] = log_bytes(data)
        r["tail_during"] = during
        r["tail_after"] = after
        r["rss_after"] = apiserver.rss_kib(server.pid)
    finally:
        if server is not None and server.poll() is None and api is not None:
            try:
                api.request("DELETE", f"/api/v1/namespaces/{NS}/pods/{POD}?gracePeriodSeconds=0",
                            {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})
                deadline = now() + 30
                while pods.skiff_ps(skiff, data) and now() < deadline:
                    time.sleep(0.2)
            except Exception as e:  # cleanup goes on regardless
                print(f"cleanup through the API failed: {e!r}", file=sys.stderr)
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        if os.path.isdir(data):
            subprocess.run([skiff, "--data-dir", data, "reset"], capture_output=True)
        for mp in pods.mounts_under(os.path.realpath(work)):
            subprocess.run(["umount", "-l", mp])
        if not pods.mounts_under(os.path.realpath(work)):
            shutil.rmtree(work, ignore_errors=True)

    med_during = statistics.median(r["tail_during"]) if r["tail_during"] else float("nan")
    max_during = max(r["tail_during"]) if r["tail_during"] else float("nan")
    med_after = statistics.median(r["tail_after"])
    growth = (r["rss_peak"] - r["rss_before"]) / 1024
    print(f"== container logs: {opts.bytes / MIB:.0f} MiB flood from one pod "
          f"({r['flood_s']:.1f} s) ==")
    print(f"  log files on disk: peak {r['files_peak'] / MIB:.1f} MiB, at the end "
          f"{r['files_end'] / MIB:.1f} MiB (target <= 50 MiB)")
    print(f"  logs --tail=1: median {med_during:.1f} ms, max {max_during:.1f} ms during the "
          f"flood ({len(r['tail_during'])} requests); median {med_after:.1f} ms after "
          f"(target <= 50 ms)")
    print(f"  server RSS: {r['rss_before'] / 1024:.1f} MiB before, peak "
          f"{r['rss_peak'] / 1024:.1f} MiB, growth {growth:.1f} MiB (target <= 10 MiB)")
    summary.record("logs", "log files after a 1 GB flood (peak)", round(r["files_peak"] / MIB, 1),
                   "MiB", target="<= 50 MiB")
    summary.record("logs", "logs --tail=1 during the flood (median)", round(med_during, 1), "ms",
                   target="<= 50 ms")
    summary.record("logs", "logs --tail=1 after the flood (median)", round(med_after, 1), "ms",
                   target="<= 50 ms")
    summary.record("logs", "server RSS growth during the flood", round(growth, 1), "MiB",
                   target="<= 10 MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
