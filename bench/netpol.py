#!/usr/bin/env python3
"""NetworkPolicy data path benchmark (root).

Starts `skiff server` on a private data dir, loopback port and its own pod subnet, runs the
services benchmark's pod (busybox httpd on 80, a new connection per request; the keep-alive
server on 8080) and a client network namespace joined to the node by a veth pair, so wrk's
traffic crosses the node's forward hook like traffic from another machine or pod (traffic from
the node itself is never subject to policies, so wrk on the host would measure nothing). Then,
interleaved per round:

  - 0 policies: wrk -t2 -c50 from the client namespace straight to the pod IP;
  - 100 policies selecting the pod: 99 that allow other sources and ports (ipBlocks, port
    ranges), and, sorted last, one allowing the client's subnet on ports 80 and 8080, so every
    new connection is matched against all of them. The policies are created through the API and
    the run starts once the node's table `skiff_np_<sha256(data dir)[:8]>` holds all 100 rules;
    they are deleted again after the run.

Medians of requests/s and the ratio 100/0 (target: >= 0.95, i.e. at most 5 % loss) for both
servers. Everything is removed at the end, also on failure: policies, the Deployment, the
server (SIGTERM by PID), `skiff reset`, the client netns and its veth.

Usage: bench/netpol.py [--skiff target/release/skiff] [--rounds 3] [--duration 6]
                       [--policies 100] [--cluster-cidr 100.64.89.0/24]
"""
import argparse
import hashlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pods  # noqa: E402
import services  # noqa: E402  (build_images, deployment, start_server, wrk, run, wait_for)
import summary  # noqa: E402

NS = "default"
NETNS = f"skiffnp{os.getpid()}"
VETH = f"snp{os.getpid() % 100000}"
HOST_IP, CLIENT_IP = "10.250.77.1", "10.250.77.2"


def np_table(data):
    return "skiff_np_" + hashlib.sha256(os.path.realpath(data).encode()).hexdigest()[:8]


def run(cmd):
    return services.run(cmd)


def must(cmd):
    r = run(cmd)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip()}")
    return r.stdout


def client_netns():
    must(["ip", "netns", "add", NETNS])
    must(["ip", "link", "add", VETH, "type", "veth", "peer", "name", VETH + "c"])
    must(["ip", "link", "set", VETH + "c", "netns", NETNS])
    must(["ip", "addr", "add", f"{HOST_IP}/30", "dev", VETH])
    must(["ip", "link", "set", VETH, "up"])
    ns = ["ip", "netns", "exec", NETNS]
    must(ns + ["ip", "addr", "add", f"{CLIENT_IP}/30", "dev", VETH + "c"])
    must(ns + ["ip", "link", "set", VETH + "c", "up"])
    must(ns + ["ip", "link", "set", "lo", "up"])
    must(ns + ["ip", "route", "add", "default", "via", HOST_IP])


def remove_netns():
    run(["ip", "link", "del", VETH])
    run(["ip", "netns", "del", NETNS])


def policy(i, allow_client):
    if allow_client:
        rule = {"from": [{"ipBlock": {"cidr": "10.250.0.0/16", "except": ["10.250.99.0/24"]}}],
                "ports": [{"port": "http"}, {"protocol": "TCP", "port": 8080}]}
    else:
        rule = {"from": [{"ipBlock": {"cidr": f"10.{100 + i % 100}.{i % 250}.0/24"}},
                         {"namespaceSelector": {"matchLabels": {"bench": f"other-{i}"}}}],
                "ports": [{"protocol": "TCP", "port": 9000 + i, "endPort": 9100 + i},
                          {"protocol": "UDP", "port": 53}]}
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": f"np-{i:03d}", "labels": {"bench": "netpol"}},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [rule]}}


def rules_in_table(table):
    r = run(["nft", "list", "chain", "ip", table, "ingress"])
    return r.stdout.count(" return ") if r.returncode == 0 else -1


def wrk_in_netns(url, duration):
    cmd = ["ip", "netns", "exec", NETNS, "wrk", "-t2", "-c50", f"-d{duration}s", "--latency", url]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    m = re.search(r"Requests/sec:\s+([\d.]+)", r.stdout)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                     r.stdout)
    return {"rps": float(m.group(1)) if m else float("nan"),
            "errors": sum(int(x) for x in errs.groups()) if errs else 0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skiff", default="target/release/skiff")
    ap.add_argument("--cluster-cidr", default="100.64.89.0/24")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=6)
    ap.add_argument("--policies", type=int, default=100)
    opts = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/netpol.py must run as root")
    for tool in ["wrk", "nft", "busybox", "gcc", "ip"]:
        if shutil.which(tool) is None:
            sys.exit(f"{tool} missing")
    skiff = os.path.realpath(opts.skiff)
    work = tempfile.mkdtemp(prefix="skiff-bench-np-")
    data = os.path.join(work, "data")
    server = api = None
    results = {0: {80: [], 8080: []}, opts.policies: {80: [], 8080: []}}
    programmed = []
    try:
        services.build_images(skiff, data, work, True)
        server, api, _, _ = services.start_server(skiff, data, work, opts.cluster_cidr)
        table = np_table(data)
        api.ok("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", services.deployment(True))
        pod = services.wait_for("a ready pod", lambda: next(
            (p for p in api.ok("GET", f"/api/v1/namespaces/{NS}/pods").get("items", [])
             if pods.is_ready(p) and p["status"].get("podIP")), None), 120)
        ip = pod["status"]["podIP"]
        client_netns()
        print(f"skiff netpol: pod {ip}, client netns {NETNS} ({CLIENT_IP}), table {table}, "
              f"{os.cpu_count()} CPUs", flush=True)
        for rnd in range(opts.rounds):
            for count in (0, opts.policies):
                if count:
                    start = time.perf_counter()
                    for i in range(count):
                        api.ok("POST", f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies",
                               policy(i, i == count - 1))
                    services.wait_for("policies in the table",
                                      lambda: rules_in_table(table) >= 2 * (count - 1) + 2, 60, 0.02)
                    programmed.append(time.perf_counter() - start)
                for port in (80, 8080):
                    r = wrk_in_netns(f"http://{ip}:{port}/", opts.duration)
                    results[count][port].append(r["rps"])
                    print(f"round {rnd + 1}: {count:3d} policies, port {port}: "
                          f"{r['rps']:.0f} req/s, {r['errors']} socket errors", flush=True)
                if count:
                    api.ok("DELETE", f"/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies"
                                     "?labelSelector=bench%3Dnetpol")
                    services.wait_for("policies gone", lambda: rules_in_table(table) == 0, 60, 0.02)
    finally:
        remove_netns()
        if server is not None:
            try:
                api.request("DELETE", f"/apis/apps/v1/namespaces/{NS}/deployments/web")
            except Exception:  # noqa: BLE001 (cleanup goes on)
                pass
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(15)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
        if os.path.isdir(data):
            run([skiff, "--data-dir", data, "reset"])
        if not pods.mounts_under(os.path.realpath(work)):
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"NetworkPolicy data path (wrk -t2 -c50 from a client netns to the pod IP, "
          f"{opts.rounds} rounds x {opts.duration}s, medians):")
    for port, what in ((80, "httpd, new connection per request"), (8080, "keep-alive server")):
        base = statistics.median(results[0][port])
        loaded = statistics.median(results[opts.policies][port])
        ratio = loaded / base if base else float("nan")
        print(f"  port {port} ({what}): 0 policies {base:.0f} req/s, {opts.policies} policies "
              f"{loaded:.0f} req/s, ratio {ratio:.3f} (target >= 0.95)")
        summary.record("netpol", f"req/s with {opts.policies} policies, port {port}", loaded,
                       "req/s", peer="0 policies", peer_value=base, target=">= 0.95x")
    if programmed:
        print(f"  {opts.policies} policies created through the API and in the node's table: "
              f"median {statistics.median(programmed):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
