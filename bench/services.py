#!/usr/bin/env python3
"""Service data path and rule programming benchmark (root).

Starts `skiff server` on a private data dir, loopback port and its own pod subnet, builds the
web example image (busybox httpd) plus a small keep-alive HTTP server (a static C program
compiled here with gcc; busybox httpd closes the connection after every response) into the
server's data dir, and runs a Deployment of 1 replica whose pod has both containers, behind one
NodePort Service (port 80 -> httpd, port 8080 -> the keep-alive server). Then:

  1. Data path: wrk (Debian package) `-t2 -c50` through the NodePort on 127.0.0.1, through the
     NodePort on the node address (the bridge gateway), through the ClusterIP from the host and
     straight to the pod IP, interleaved in one run (each round runs every path once, the start
     rotating). All paths hit the same single pod, so TIME_WAIT is disabled in the pod's netns
     (`net.ipv4.tcp_max_tw_buckets=0`; see the measurement trap in baselines.md). Medians of
     requests/s and ratios to direct; the issue's target is >= 0.95x.
       - httpd (port 80): a new connection per request (baseline: DNAT 0.70-0.76x).
       - keep-alive server (port 8080): connections reused (baseline: DNAT 0.96-0.98x).
  2. Rule programming: 1,000 ClusterIP Services (selecting the pod, so each gets endpoints and
     lands in the `service-ips` map; a service without endpoints goes to `no-endpoint-services`
     instead) created through the API from several clients as fast as possible; the time until
     the proxy's table `skiff_<sha256(data dir)[:8]>` has all of them (polling `nft list map`),
     then the time for one more Service to appear (3 samples), then deleting them all.

Everything is removed at the end, also on failure: the Services and the Deployment, the server
(SIGTERM by PID), `skiff reset` (containers, sandboxes, bridge, nft table), a /32 route if one
was added, the temp dir; then `nft list tables`, `ip -br link` and the mounts are checked.

Usage: bench/services.py [--skiff target/release/skiff] [--rounds 5] [--duration 10]
                         [--services 1000] [--cluster-cidr 100.64.88.0/24] [--no-keepalive]
"""
import argparse
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # importing the sibling scripts must not leave __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import apiserver  # noqa: E402  (free_port, load_kubeconfig, rss_kib)
import pods  # noqa: E402  (Api, is_ready, skiff_ps, mounts_under, bridge_name, proc_cpu)

NS = "default"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KA_PORT = 8080

# A minimal HTTP/1.1 keep-alive server: epoll, N processes sharing the listening socket, one
# fixed response per request head. Static, so the image needs nothing else.
KA_SOURCE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

struct conn { int fd; int have; char buf[8192]; };
static char resp[256];
static int resp_len;

static void on_term(int s) { (void)s; _exit(0); }

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 8080;
    int workers = argc > 2 ? atoi(argv[2]) : 2;
    signal(SIGTERM, on_term);  /* PID 1 has no default handlers */
    signal(SIGINT, on_term);
    signal(SIGPIPE, SIG_IGN);
    char host[64] = "?";
    gethostname(host, sizeof host - 1);
    char body[128];
    int bl = snprintf(body, sizeof body, "keepalive on %s\n", host);
    resp_len = snprintf(resp, sizeof resp,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", bl, body);
    int one = 1;
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1024)) { perror("listen"); return 1; }
    fprintf(stderr, "keep-alive server on :%d, %d processes\n", port, workers);
    for (int i = 1; i < workers; i++)
        if (fork() == 0) break;
    int ep = epoll_create1(0);
    struct epoll_event lev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev);
    struct epoll_event evs[256];
    char out[8192];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                for (;;) {
                    int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
                    if (fd < 0) break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = calloc(1, sizeof *c);
                    c->fd = fd;
                    struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
                }
                continue;
            }
            for (;;) {
                int r = read(c->fd, c->buf + c->have, sizeof c->buf - c->have);
                if (r < 0 && (errno == EAGAIN || errno == EINTR)) break;
                if (r <= 0) { close(c->fd); free(c); break; }
                c->have += r;
                int start = 0, olen = 0;
                char *p;
                while ((p = memmem(c->buf + start, c->have - start, "\r\n\r\n", 4))) {
                    if (olen + resp_len > (int)sizeof out) {
                        if (write(c->fd, out, olen) < 0) break;
                        olen = 0;
                    }
                    memcpy(out + olen, resp, resp_len);
                    olen += resp_len;
                    start = (int)(p - c->buf) + 4;
                }
                if (olen && write(c->fd, out, olen) < 0) { close(c->fd); free(c); break; }
                memmove(c->buf, c->buf + start, c->have - start);
                c->have -= start;
                if (c->have == (int)sizeof c->buf) { close(c->fd); free(c); break; }
            }
        }
    }
}
"""


def now():
    return time.perf_counter()


def table_name(data):
    return "skiff_" + hashlib.sha256(os.path.realpath(data).encode()).hexdigest()[:8]


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


ELEM_RE = re.compile(r"(\d+\.\d+\.\d+\.\d+) \. (\w+) \. (\d+) :")
NP_RE = re.compile(r"(\w+) \. (\d+) :")


def map_ips(table, name):
    """{(ip, port)} in a `ipv4_addr . inet_proto . inet_service` map; None if not listable."""
    r = run(["nft", "list", "map", "ip", table, name])
    if r.returncode != 0:
        return None
    return {(m.group(1), int(m.group(3))) for m in ELEM_RE.finditer(r.stdout)}


def map_nodeports(table):
    r = run(["nft", "list", "map", "ip", table, "service-nodeports"])
    if r.returncode != 0:
        return None
    return {int(m.group(2)) for m in NP_RE.finditer(r.stdout)}


def netstat(netns=None):
    """TcpExt/Tcp counters of the host or of a netns (path)."""
    cmd = ["cat", "/proc/net/netstat", "/proc/net/snmp"]
    if netns:
        cmd = ["nsenter", f"--net={netns}"] + cmd
    r = run(cmd)
    out, lines = {}, r.stdout.splitlines()
    for i in range(0, len(lines) - 1, 2):
        keys, vals = lines[i].split(), lines[i + 1].split()
        if keys and vals and keys[0] == vals[0]:
            for k, v in zip(keys[1:], vals[1:]):
                try:
                    out[keys[0].rstrip(":") + k] = int(v)
                except ValueError:
                    pass
    return out


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")


def wrk(url, duration, threads=2, conns=50):
    r = run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--latency", url],
            timeout=duration + 60)
    out = r.stdout
    res = {"rps": float("nan"), "errors": 0, "non2xx": 0, "p50": float("nan"),
           "p99": float("nan"), "max": float("nan"), "raw": out + r.stderr}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        res["rps"] = float(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["errors"] = sum(int(x) for x in m.groups())
        res["connect_err"], res["timeouts"] = int(m.group(1)), int(m.group(4))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        res["non2xx"] = int(m.group(1))
    m = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if m:
        res["max"] = ms(m.group(3))
    for pct in ("50", "99"):
        m = re.search(rf"\s{pct}%\s+(\S+)", out)
        if m:
            res["p" + pct] = ms(m.group(1))
    if r.returncode != 0:
        res["errors"] += 1
    return res


def http_get(host, port, timeout=1.0):
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
            data = b""
            while True:
                try:
                    chunk = s.recv(4096)
                except socket.timeout:
                    # The keep-alive server ignores HTTP/1.0 and keeps the connection open.
                    break
                if not chunk:
                    break
                data += chunk
            return data.decode(errors="replace") or None
    except OSError:
        return None


def build_images(skiff, data, work, keepalive):
    ctx = os.path.join(work, "web")
    src = os.path.join(REPO, "examples", "web")
    os.makedirs(os.path.join(ctx, "app"))
    shutil.copy(os.path.join(src, "Containerfile"), ctx)
    shutil.copy(os.path.join(src, "app", "start.sh"), os.path.join(ctx, "app"))
    shutil.copy("/bin/busybox", os.path.join(ctx, "busybox"))
    subprocess.run([skiff, "--data-dir", data, "image", "build", "-t", "web:v1", "--build-arg",
                    "VERSION=v1", ctx], check=True, capture_output=True)
    if not keepalive:
        return
    kctx = os.path.join(work, "ka")
    os.makedirs(kctx)
    with open(os.path.join(kctx, "ka.c"), "w") as f:
        f.write(KA_SOURCE)
    subprocess.run(["gcc", "-O2", "-static", "-o", os.path.join(kctx, "kaserver"),
                    os.path.join(kctx, "ka.c")], check=True)
    with open(os.path.join(kctx, "Containerfile"), "w") as f:
        f.write(f'FROM scratch\nCOPY kaserver /kaserver\nEXPOSE {KA_PORT}\n'
                f'CMD ["/kaserver", "{KA_PORT}", "2"]\n')
    subprocess.run([skiff, "--data-dir", data, "image", "build", "-t", "ka:1", kctx], check=True,
                   capture_output=True)


def deployment(keepalive):
    containers = [{
        "name": "web", "image": "web:v1", "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": 80}],
        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
    }]
    if keepalive:
        containers.append({"name": "ka", "image": "ka:1", "imagePullPolicy": "IfNotPresent",
                           "ports": [{"name": "ka", "containerPort": KA_PORT}]})
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"terminationGracePeriodSeconds": 0,
                                       "containers": containers}}},
    }


def web_service(np_http, np_ka, keepalive):
    ports = [{"name": "http", "port": 80, "targetPort": "http", "nodePort": np_http}]
    if keepalive:
        ports.append({"name": "ka", "port": KA_PORT, "targetPort": "ka", "nodePort": np_ka})
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": ports}}


def bulk_service(name):
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": {"bench": "bulk"}},
            "spec": {"type": "ClusterIP", "selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}


def pick_node_ports(n):
    """Free NodePorts: not listened on and not in any nft ruleset (other clusters' tables match
    every local address too)."""
    ruleset = run(["nft", "list", "ruleset"]).stdout
    listening = run(["ss", "-Hltn"]).stdout
    picked = []
    while len(picked) < n:
        p = random.randint(30000, 32767)
        if p in picked or re.search(rf"\b{p}\b", ruleset) or f":{p} " in listening:
            continue
        picked.append(p)
    return picked


def start_server(skiff, data, work, cidr):
    port = apiserver.free_port()
    log = open(os.path.join(work, "server.log"), "w")
    server = subprocess.Popen([skiff, "--data-dir", data, "server", "--listen",
                               f"127.0.0.1:{port}", "--cluster-cidr", cidr],
                              stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    kubeconfig = os.path.join(data, "kubeconfig.yaml")
    deadline = now() + 30
    while not os.path.exists(kubeconfig):
        if server.poll() is not None or now() > deadline:
            raise RuntimeError("server did not write its kubeconfig")
        time.sleep(0.05)
    time.sleep(0.1)
    _, token, ca = apiserver.load_kubeconfig(kubeconfig)
    ctx = ssl.create_default_context(cadata=ca)
    api = pods.Api(port, token, ctx)
    while True:
        try:
            if api.request("GET", "/readyz")[0] == 200:
                break
        except (OSError, http.client.HTTPException):
            pass
        if server.poll() is not None or now() > deadline:
            raise RuntimeError("server not ready")
        time.sleep(0.05)
    while True:
        nodes = api.ok("GET", "/api/v1/nodes").get("items", [])
        if any(pods.is_ready(n) for n in nodes):
            return server, api, (port, token, ctx), nodes[0]
        if server.poll() is not None or now() > deadline:
            raise RuntimeError("no Ready node")
        time.sleep(0.1)


def wait_for(what, pred, timeout, interval=0.1):
    deadline = now() + timeout
    while True:
        v = pred()
        if v:
            return v
        if now() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------- 1. data path

def data_path(opts, st, api, table, node):
    keepalive = not opts.no_keepalive
    api.ok("POST", f"/apis/apps/v1/namespaces/{NS}/deployments", deployment(keepalive))
    st["deployment"] = True
    np_http, np_ka = pick_node_ports(2)
    svc = api.ok("POST", f"/api/v1/namespaces/{NS}/services",
                 web_service(np_http, np_ka, keepalive))
    st["services"].append("web")
    cip = svc["spec"]["clusterIP"]

    def ready_pod():
        items = api.ok("GET", f"/api/v1/namespaces/{NS}/pods?labelSelector=app%3Dweb")["items"]
        ok = [p for p in items if pods.is_ready(p) and p["status"].get("podIP")
              and not p["metadata"].get("deletionTimestamp")]
        return ok[0] if len(ok) == 1 and len(items) == 1 else None

    pod = wait_for("the web pod Ready", ready_pod, 120, 0.25)
    pod_ip, uid, pod_name = pod["status"]["podIP"], pod["metadata"]["uid"], pod["metadata"]["name"]
    netns = os.path.join(st["data"], "net", "sandboxes", uid, "net")
    if not os.path.exists(netns):
        raise RuntimeError(f"pod netns not at {netns}")
    run(["nsenter", f"--net={netns}", "sysctl", "-w", "net.ipv4.tcp_max_tw_buckets=0"],
        check=True)
    tw = run(["nsenter", f"--net={netns}", "sysctl", "-n", "net.ipv4.tcp_max_tw_buckets"]).stdout
    gw = node["spec"]["podCIDR"].rsplit(".", 1)[0] + ".1"

    want_ips = {(cip, 80)} | ({(cip, KA_PORT)} if keepalive else set())
    want_nps = {np_http} | ({np_ka} if keepalive else set())
    wait_for("the web service in the nft maps",
             lambda: (want_ips <= (map_ips(table, "service-ips") or set())
                      and want_nps <= (map_nodeports(table) or set())), 30)

    # Another cluster on this machine with the same ClusterIP would also DNAT it (all tables
    # hook output); say so rather than measure someone else's pod.
    clash = [t for t in re.findall(r"table ip (skiff_\w+)", run(["nft", "list", "tables"]).stdout)
             if t != table and cip in run(["nft", "list", "table", "ip", t]).stdout]

    # ClusterIP from the host: the output-hook DNAT + masquerade should do without a route to
    # the service CIDR (the default route only picks the first source address). Probe once with
    # the rule known present; add a /32 via the bridge only if that fails.
    cip_note = ""
    if clash:
        cip_note = f"skipped: ClusterIP {cip} is also in {clash}"
    else:
        route = run(["ip", "route", "get", cip]).stdout.strip().splitlines()[0]
        if not (http_get(cip, 80) or "").count("web v1"):
            bridge = pods.bridge_name(st["data"])
            run(["ip", "route", "add", f"{cip}/32", "dev", bridge], check=True)
            st["route"] = f"{cip}/32"
            cip_note = f"needed a /32 route via {bridge} (without it: {route})"
        else:
            cip_note = f"no route added (host route: {route})"

    paths = [("direct", pod_ip, 80), ("nodeport-lo", "127.0.0.1", np_http),
             ("nodeport-node", gw, np_http)]
    if not clash:
        paths.append(("clusterip", cip, 80))
    if keepalive:
        paths += [("ka-direct", pod_ip, KA_PORT), ("ka-nodeport-lo", "127.0.0.1", np_ka),
                  ("ka-nodeport-node", gw, np_ka)]
        if not clash:
            paths.append(("ka-clusterip", cip, KA_PORT))
    for name, host, port in paths:
        body = wait_for(f"{name} ({host}:{port}) to answer", lambda: http_get(host, port), 20, 0.2)
        expect = f"on {pod_name}"
        if expect not in body:
            raise RuntimeError(f"{name}: unexpected answer {body[-200:]!r}")
    # Warm-up (ARP, conntrack, page cache, httpd binary), not counted.
    for name, host, port in paths if opts.rounds else []:
        wrk(f"http://{host}:{port}/", 2)

    results = {p[0]: [] for p in paths}
    h0, p0 = netstat(), netstat(netns)
    order = [p[0] for p in paths]
    by_name = {p[0]: p for p in paths}
    for rnd in range(opts.rounds):
        k = rnd % len(order)
        for name in order[k:] + order[:k]:
            _, host, port = by_name[name]
            hs, ps = netstat(), netstat(netns)
            res = wrk(f"http://{host}:{port}/", opts.duration)
            he, pe = netstat(), netstat(netns)
            res["synretrans"] = he.get("TcpExtTCPSynRetrans", 0) - hs.get("TcpExtTCPSynRetrans", 0)
            res["listen_drops"] = pe.get("TcpExtListenDrops", 0) - ps.get("TcpExtListenDrops", 0)
            results[name].append(res)
            print(f"  round {rnd + 1} {name:17} {res['rps']:9.0f} req/s  p99 {res['p99']:7.2f} ms"
                  f"  max {res['max']:8.2f} ms  errors {res['errors']}  non-2xx {res['non2xx']}"
                  f"  host SYN retrans {res['synretrans']}  pod listen drops {res['listen_drops']}", flush=True)
    h1, p1 = netstat(), netstat(netns)
    return {
        "paths": paths, "results": results, "pod_ip": pod_ip, "cip": cip, "gw": gw,
        "np_http": np_http, "np_ka": np_ka, "tw_buckets": tw.strip(), "cip_note": cip_note,
        "host_synretrans": h1.get("TcpExtTCPSynRetrans", 0) - h0.get("TcpExtTCPSynRetrans", 0),
        "pod_tw_overflow": p1.get("TcpExtTCPTimeWaitOverflow", 0)
        - p0.get("TcpExtTCPTimeWaitOverflow", 0),
        "pod_tw_recycled": p1.get("TcpExtTWRecycled", 0) - p0.get("TcpExtTWRecycled", 0),
    }


# ---------------------------------------------------------------- 2. rule programming

class MapPoller(threading.Thread):
    """Polls the two ClusterIP maps; records when each wanted ClusterIP was first seen in
    `service-ips` and in either map."""

    def __init__(self, table, interval):
        super().__init__(daemon=True)
        self.table, self.interval = table, interval
        self.lock = threading.Lock()
        self.first_any, self.first_ips = {}, {}
        self.last_ips, self.last_noep = set(), set()
        self.polls, self.poll_time = 0, 0.0
        self.stopping = False

    def run(self):
        while not self.stopping:
            t0 = now()
            ips = map_ips(self.table, "service-ips") or set()
            noep = map_ips(self.table, "no-endpoint-services") or set()
            t = now()
            with self.lock:
                self.polls += 1
                self.poll_time += t - t0
                self.last_ips, self.last_noep = ips, noep
                for ip, _ in ips:
                    self.first_ips.setdefault(ip, t)
                    self.first_any.setdefault(ip, t)
                for ip, _ in noep:
                    self.first_any.setdefault(ip, t)
            time.sleep(self.interval)


def parallel(fn, items, clients):
    """Runs fn(api_index, item) over items from `clients` threads; returns the errors."""
    errors, lock = [], threading.Lock()
    chunks = [items[i::clients] for i in range(clients)]

    def worker(i):
        for item in chunks[i]:
            try:
                fn(i, item)
            except Exception as e:  # noqa: BLE001 (collected and reported)
                with lock:
                    errors.append(f"{item}: {e}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def rule_programming(opts, st, conn_args, table, server_pid):
    apis = [pods.Api(*conn_args) for _ in range(opts.clients)]
    names = [f"bulk-{i:04d}" for i in range(opts.services)]
    cips, lock = {}, threading.Lock()
    poller = MapPoller(table, opts.poll)
    poller.start()
    time.sleep(0.5)
    with poller.lock:
        base_ips = len(poller.last_ips)
    cpu0 = pods.proc_cpu(server_pid) + children_cpu(server_pid)

    def create(i, name):
        obj = apis[i].ok("POST", f"/api/v1/namespaces/{NS}/services", bulk_service(name))
        with lock:
            cips[name] = (obj["spec"]["clusterIP"], now())
            st["services"].append(name)

    t0 = now()
    errors = parallel(create, names, opts.clients)
    t_created = now()
    if errors:
        raise RuntimeError(f"{len(errors)} creates failed, e.g. {errors[:3]}")
    want = {ip for ip, _ in cips.values()}

    def all_in(table_attr):
        with poller.lock:
            return want <= set(getattr(poller, table_attr))

    try:
        wait_for("all services in either ClusterIP map", lambda: all_in("first_any"),
                 opts.timeout, 0.01)
        wait_for("all services in service-ips", lambda: all_in("first_ips"), opts.timeout, 0.01)
    finally:
        with poller.lock:
            seen_any = len(want & set(poller.first_any))
            seen_ips = len(want & set(poller.first_ips))
        if seen_ips < len(want):
            print(f"  only {seen_ips}/{len(want)} in service-ips, {seen_any} in either map",
                  file=sys.stderr)
    with poller.lock:
        t_any = max(poller.first_any[ip] for ip in want)
        t_ips = max(poller.first_ips[ip] for ip in want)
        half_ips = sorted(poller.first_ips[ip] for ip in want)[len(want) // 2]
        polls, poll_time = poller.polls, poller.poll_time
    cpu1 = pods.proc_cpu(server_pid) + children_cpu(server_pid)
    hz = os.sysconf("SC_CLK_TCK")
    # Must be all of them; nothing else in the map but the web service (and `kubernetes`,
    # which has no endpoints here).
    with poller.lock:
        in_map = len(poller.last_ips)
    res = {"create_s": t_created - t0, "all_any_s": t_any - t0, "all_ips_s": t_ips - t0,
           "half_ips_s": half_ips - t0, "after_last_create_s": t_ips - t_created,
           "server_cpu_s": (cpu1 - cpu0) / hz, "in_map": in_map, "base": base_ips,
           "poll_ms": poll_time / max(1, polls) * 1000}

    # One more change, with 1,000 in place: create 1 Service, time until its ClusterIP is in
    # the map (in either map first: the Service alone; service-ips needs its EndpointSlice).
    poller.interval = 0.005
    singles, extra_ips = [], set()
    for i in range(opts.singles):
        name = f"extra-{i}"
        t0 = now()
        obj = apis[0].ok("POST", f"/api/v1/namespaces/{NS}/services", bulk_service(name))
        t_resp = now()
        st["services"].append(name)
        ip = obj["spec"]["clusterIP"]
        extra_ips.add(ip)
        wait_for(f"{name} in service-ips", lambda: ip in poller.first_ips, 30, 0.002)
        with poller.lock:
            singles.append({"resp": t_resp - t0, "any": poller.first_any[ip] - t0,
                            "ips": poller.first_ips[ip] - t0})
        time.sleep(0.3)
    res["singles"] = singles
    res["single_poll_ms"] = poller.poll_time / max(1, poller.polls) * 1000

    # Delete them all (same clients), time until the map is back to the web service only.
    gone = names + [f"extra-{i}" for i in range(opts.singles)]
    all_ips = want | extra_ips
    poller.interval = opts.poll
    t0 = now()
    errors = parallel(lambda i, n: apis[i].ok(
        "DELETE", f"/api/v1/namespaces/{NS}/services/{n}"), gone, opts.clients)
    t_deleted = now()
    for n in gone:
        if n in st["services"]:
            st["services"].remove(n)
    if errors:
        print(f"  {len(errors)} deletes failed, e.g. {errors[:3]}", file=sys.stderr)

    def emptied():
        with poller.lock:
            return not ({ip for ip, _ in poller.last_ips | poller.last_noep} & all_ips)

    wait_for("the bulk services gone from the maps", emptied, opts.timeout, 0.02)
    res["delete_s"], res["delete_rules_s"] = t_deleted - t0, now() - t0
    poller.stopping = True
    poller.join(5)
    for a in apis:
        a.conn and a.conn.close()
    return res


def children_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[13]) + int(fields[14])


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skiff", default="target/release/skiff")
    ap.add_argument("--cluster-cidr", default="100.64.88.0/24")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=8, help="API clients creating services")
    ap.add_argument("--singles", type=int, default=3, help="single-service changes timed")
    ap.add_argument("--poll", type=float, default=0.05, help="nft poll interval, seconds")
    ap.add_argument("--timeout", type=float, default=180.0)
    ap.add_argument("--no-keepalive", action="store_true", help="skip the keep-alive server")
    ap.add_argument("--skip-datapath", action="store_true")
    ap.add_argument("--skip-rules", action="store_true")
    ap.add_argument("--keep-log", action="store_true")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/services.py must run as root")
    for tool in ["wrk", "nft", "nsenter", "busybox"] + ([] if opts.no_keepalive else ["gcc"]):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} missing")
    skiff = os.path.realpath(opts.skiff)
    work = tempfile.mkdtemp(prefix="skiff-bench-svc-")
    data = os.path.join(work, "data")
    st = {"data": data, "services": [], "deployment": False, "route": None}
    server = api = None
    table = None
    dp = rp = None
    failure = None
    leftover = {}
    try:
        build_images(skiff, data, work, not opts.no_keepalive)
        server, api, conn_args, node = start_server(skiff, data, work, opts.cluster_cidr)
        os.makedirs(data, exist_ok=True)
        table = table_name(data)
        print(f"skiff services: data dir {data}, table {table}, {os.cpu_count()} CPUs, "
              f"node podCIDR {node['spec'].get('podCIDR')}", flush=True)
        if not opts.skip_datapath or not opts.skip_rules:
            # The rules phase needs the pod (its services select it) even without traffic.
            if opts.skip_datapath:
                opts.rounds = 0
            dp = data_path(opts, st, api, table, node)
        if not opts.skip_rules:
            rp = rule_programming(opts, st, conn_args, table, server.pid)
    except BaseException as e:
        failure = e
        raise
    finally:
        if server is not None and server.poll() is None and api is not None:
            try:
                for name in list(st["services"]):
                    api.request("DELETE", f"/api/v1/namespaces/{NS}/services/{name}")
                if st["deployment"]:
                    api.request("DELETE", f"/apis/apps/v1/namespaces/{NS}/deployments/web")
                deadline = now() + 60
                while now() < deadline:
                    status, obj = api.request("GET", f"/api/v1/namespaces/{NS}/pods")
                    if status == 200 and not obj.get("items") and not pods.skiff_ps(skiff, data):
                        break
                    time.sleep(0.2)
            except Exception as e:  # noqa: BLE001 (cleanup goes on regardless)
                print(f"cleanup through the API failed: {e!r}", file=sys.stderr)
        if st["route"]:
            r = run(["ip", "route", "del", st["route"]])
            leftover["route_removed"] = r.returncode == 0
        if server is not None:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(15)
                except subprocess.TimeoutExpired:
                    print("server ignored SIGTERM for 15 s; killing it", file=sys.stderr)
                    server.kill()
                    server.wait()
            leftover["server_exit"] = server.returncode
        if os.path.isdir(data):
            r = run([skiff, "--data-dir", data, "reset"])
            if r.returncode != 0:
                print(f"skiff reset failed ({r.returncode}): {r.stderr.strip()}", file=sys.stderr)
            leftover["containers"] = len(pods.skiff_ps(skiff, data))
            table = table or table_name(data)
            bridge = pods.bridge_name(data)
            leftover["table"] = table in run(["nft", "list", "tables"]).stdout
            links = run(["ip", "-br", "link"]).stdout
            leftover["bridge"] = bridge in links
            leftover["links"] = [l.split()[0] for l in links.splitlines() if bridge in l]
        leftover["mounts"] = pods.mounts_under(os.path.realpath(work))
        mount_out = run(["mount"]).stdout
        leftover["mount_lines"] = [l for l in mount_out.splitlines()
                                   if os.path.realpath(work) in l]
        if st["route"]:
            leftover["route_left"] = st["route"].split("/")[0] in run(["ip", "route"]).stdout
        if failure is not None or opts.keep_log:
            logpath = os.path.join(work, "server.log")
            if os.path.exists(logpath):
                dest = os.path.join(tempfile.gettempdir(), "skiff-bench-services-server.log")
                shutil.copy(logpath, dest)
                print(f"server log copied to {dest}", file=sys.stderr)
        for mp in leftover["mounts"]:
            run(["umount", "-l", mp])
        if not pods.mounts_under(os.path.realpath(work)):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"mounts remain under {work}; not removing it", file=sys.stderr)
        if failure is not None:
            print(f"after cleanup: {leftover}", file=sys.stderr)

    report(opts, dp, rp, leftover)
    return 0


def med(rs, key="rps"):
    vals = [r[key] for r in rs if r[key] == r[key]]
    return statistics.median(vals) if vals else float("nan")


def report(opts, dp, rp, leftover):
    print()
    if dp and opts.rounds:
        r = dp["results"]
        print(f"Service data path: wrk -t2 -c50, {opts.rounds} interleaved rounds x "
              f"{opts.duration} s per path, one pod (IP {dp['pod_ip']}), ClusterIP {dp['cip']}, "
              f"NodePorts {dp['np_http']}/{dp['np_ka']}, node address {dp['gw']}")
        print(f"  pod netns net.ipv4.tcp_max_tw_buckets = {dp['tw_buckets']} (TIME_WAIT off: "
              f"{dp['pod_tw_overflow']} TCPTimeWaitOverflow in the pod); host SYN retransmits "
              f"during the rounds: {dp['host_synretrans']}")
        print(f"  ClusterIP from the host: {dp['cip_note']}")
        groups = [("httpd (busybox, new connection per request)", "", "direct"),
                  ("keep-alive server (connections reused)", "ka-", "ka-direct")]
        print(f"  {'path':38} {'req/s med':>10} {'min':>8} {'max':>8} {'ratio':>6} "
              f"{'target':>7} {'p99 ms':>7} {'max ms':>8} {'err':>5}")
        for title, prefix, base in groups:
            if base not in r:
                if prefix:
                    print(f"  {title}: skipped (--no-keepalive)")
                continue
            print(f"  {title}")
            b = med(r[base])
            for name, _, _ in dp["paths"]:
                if not name.startswith(prefix) or (not prefix and name.startswith("ka-")):
                    continue
                m = med(r[name])
                ratio = m / b if b else float("nan")
                tgt = "-" if name == base else ("ok" if ratio >= 0.95 else "MISS")
                rps = [x["rps"] for x in r[name]]
                print(f"    {name:36} {m:10.0f} {min(rps):8.0f} {max(rps):8.0f} "
                      f"{ratio:5.2f}x {tgt:>7} {med(r[name], 'p99'):7.2f} "
                      f"{max(x['max'] for x in r[name]):8.1f} "
                      f"{sum(x['errors'] + x['non2xx'] for x in r[name]):5d}")
        print("  per-round ratios NodePort(127.0.0.1)/direct: " + ", ".join(
            f"{a['rps'] / b['rps']:.2f}" for a, b in zip(r["nodeport-lo"], r["direct"])))
        if "ka-direct" in r:
            print("  per-round ratios keep-alive NodePort(127.0.0.1)/direct: " + ", ".join(
                f"{a['rps'] / b['rps']:.2f}" for a, b in zip(r["ka-nodeport-lo"], r["ka-direct"])))
        print("  baselines.md (nginx, other machine): DNAT 0.96-0.98x with keep-alive, "
              "0.70-0.76x with a new connection per request")
    if rp:
        n = opts.services
        print(f"Rule programming: {n} ClusterIP Services (selecting the pod) from {opts.clients} "
              f"API clients; nft polled every {opts.poll * 1000:.0f} ms "
              f"(one poll of both maps takes {rp['poll_ms']:.1f} ms)")
        print(f"  creates done (API)                         {rp['create_s']:7.2f} s "
              f"({n / rp['create_s']:.0f}/s)")
        print(f"  all {n} in a ClusterIP map (any)          {rp['all_any_s']:7.2f} s after the first create")
        print(f"  half in service-ips                        {rp['half_ips_s']:7.2f} s")
        print(f"  all {n} in service-ips (with endpoints)   {rp['all_ips_s']:7.2f} s after the first create, "
              f"{rp['after_last_create_s']:.2f} s after the last create response")
        print(f"  service-ips entries then: {rp['in_map']} (before: {rp['base']}); server CPU "
              f"(incl. reaped nft children) {rp['server_cpu_s']:.2f} CPU-s")
        for i, s in enumerate(rp["singles"]):
            print(f"  one more Service #{i + 1} (with {n} present): create response "
                  f"{s['resp'] * 1000:6.1f} ms, in a map {s['any'] * 1000:6.1f} ms, in service-ips "
                  f"{s['ips'] * 1000:6.1f} ms (poll {rp['single_poll_ms']:.1f} ms)")
        if rp["singles"]:
            print(f"  one more Service, median: {statistics.median(s['ips'] for s in rp['singles']) * 1000:.0f} ms "
                  f"to service-ips")
        print(f"  delete {n + opts.singles}: API {rp['delete_s']:.2f} s, gone from the maps "
              f"{rp['delete_rules_s']:.2f} s")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from summary import record
    if dp and opts.rounds:
        r = dp["results"]
        for name, base, label in [("nodeport-lo", "direct", "NodePort 127.0.0.1, new conn/req"),
                                  ("ka-nodeport-lo", "ka-direct", "NodePort 127.0.0.1, keep-alive"),
                                  ("ka-clusterip", "ka-direct", "ClusterIP, keep-alive")]:
            if name in r and base in r:
                record("services", label, round(med(r[name])), "req/s", "direct to the pod IP",
                       round(med(r[base])), target=">= 0.95x")
    if rp:
        record("services", f"program {opts.services} services", round(rp["all_ips_s"], 2), "s")
        if rp["singles"]:
            record("services", f"one more service with {opts.services} present",
                   round(statistics.median(x["ips"] for x in rp["singles"]) * 1000), "ms")
    print(f"after cleanup: server exit {leftover.get('server_exit')}, containers "
          f"{leftover.get('containers')}, nft table present {leftover.get('table')}, bridge "
          f"present {leftover.get('bridge')} {leftover.get('links') or ''}, mounts under the temp "
          f"dir {len(leftover.get('mounts', []))} ({len(leftover.get('mount_lines', []))} in "
          f"`mount`), route {'removed' if leftover.get('route_removed') else 'none added'}"
          + (" (STILL PRESENT)" if leftover.get("route_left") else ""))


if __name__ == "__main__":
    sys.exit(main())
