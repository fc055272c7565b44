#!/usr/bin/env python3
"""Pod benchmark (root): starts `skiff server` (API server, controllers, scheduler and the
embedded node agent) on a private data dir, loopback port and its own pod subnet, with a small
busybox image imported beforehand, and measures

  1. pod startup latency: 50 pods created one after another (each waits for the previous one),
     each timed from sending its create to the first watch event in which every container is
     running (the scheduler binds them, as for a user). p50 / p99 / max, and where the time
     goes (create response, bound, running);
  2. a Deployment scaled 0 -> 100 replicas through the scale subresource, timed until all 100
     pods are Ready (watch), with the times at which all were created, bound and running;
  3. for context, in the same run: `crun run` of an equivalent busybox bundle running
     /bin/true (median), and `skiff run --rm` of the same image.

Targets (issue): p50 <= 150 ms, p99 <= 400 ms; 100 replicas Ready <= 10 s on a 2-core machine.
Also prints the server's RSS and what is left (containers, mounts, bridge) after cleanup.

Everything it creates is removed at the end, also on failure: pods and the Deployment are
deleted, the server is stopped with SIGTERM (by PID), `skiff reset` wipes containers, sandboxes
and the bridge of the data dir, and the temp dir goes.

Usage: bench/pods.py [--skiff target/release/skiff] [--pods 50] [--replicas 100]
                     [--cluster-cidr 100.64.77.0/24] [--crun-runs 10] [--keep-log]
"""
import argparse
import hashlib
import http.client
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # importing the sibling scripts must not leave __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import apiserver  # noqa: E402  (free_port, load_kubeconfig, rss_kib)
import start  # noqa: E402  (make_rootfs, crun_bundle, hybrid_workaround, timed)

NS = "default"
IMAGE = "bench:1"
SCALE_LABEL = "bench-scale"


def pct(values, p):
    """Nearest-rank percentile (p99 of 50 values is the 50th, i.e. the max)."""
    values = sorted(values)
    if not values:
        return float("nan")
    k = max(0, min(len(values) - 1, -(-len(values) * p // 100) - 1))
    return values[int(k)]


def now():
    return time.perf_counter()


class Api:
    """One keep-alive HTTPS connection with the kubeconfig's bearer token (reconnects once)."""

    def __init__(self, port, token, ctx):
        self.port, self.token, self.ctx = port, token, ctx
        self.conn = None

    def request(self, method, path, body=None, content_type="application/json"):
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = content_type
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx,
                                                        timeout=30)
            try:
                self.conn.request(method, path, body=data, headers=headers)
                resp = self.conn.getresponse()
                raw = resp.read()
                try:
                    obj = json.loads(raw) if raw else {}
                except ValueError:
                    obj = {"raw": raw[:500].decode(errors="replace")}
                return resp.status, obj
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise RuntimeError("unreachable")

    def ok(self, method, path, body=None, content_type="application/json", expect=(200, 201, 202)):
        status, obj = self.request(method, path, body, content_type)
        if status not in expect:
            raise RuntimeError(f"{method} {path}: HTTP {status}: {json.dumps(obj)[:500]}")
        return obj


def all_running(pod):
    spec = pod.get("spec", {}).get("containers", [])
    statuses = pod.get("status", {}).get("containerStatuses") or []
    if not spec or len(statuses) < len(spec):
        return False
    return all("running" in (s.get("state") or {}) for s in statuses)


def is_ready(pod):
    for c in pod.get("status", {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


class PodWatch(threading.Thread):
    """Watches pods in `default` and records, per pod name, when it was first seen, bound (has
    spec.nodeName), with all containers running, Ready, and deleted. Reconnects from the last
    resourceVersion if the stream ends; relists on an ERROR event (e.g. 410 Gone)."""

    def __init__(self, port, token, ctx):
        super().__init__(daemon=True)
        self.port, self.token, self.ctx = port, token, ctx
        self.cond = threading.Condition()
        self.seen, self.bound, self.running, self.ready, self.gone = {}, {}, {}, {}, {}
        self.labels = {}
        self.live = set()
        self.stopping = False
        self.conn = None
        self.error = None
        self.reconnects = 0
        self.ready_event = threading.Event()

    def _headers(self):
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}

    def _list(self):
        api = Api(self.port, self.token, self.ctx)
        obj = api.ok("GET", f"/api/v1/namespaces/{NS}/pods")
        t = now()
        with self.cond:
            names = set()
            for pod in obj.get("items", []):
                names.add(pod["metadata"]["name"])
                self._observe("MODIFIED", pod, t)
            for name in list(self.live - names):
                self._observe("DELETED", {"metadata": {"name": name}}, t)
            self.cond.notify_all()
        api.conn and api.conn.close()
        return obj["metadata"]["resourceVersion"]

    def _observe(self, kind, pod, t):
        name = pod.get("metadata", {}).get("name")
        if not name:
            return
        if kind == "DELETED":
            self.live.discard(name)
            self.gone.setdefault(name, t)
            return
        if name not in self.live:
            # A re-created name starts over (uid change is not needed: we never reuse names
            # within a phase, but the warm-up pod may share a prefix).
            self.live.add(name)
            self.gone.pop(name, None)
        self.seen.setdefault(name, t)
        self.labels[name] = (pod.get("metadata", {}).get("labels") or {}).get("app")
        if pod.get("spec", {}).get("nodeName"):
            self.bound.setdefault(name, t)
        if all_running(pod):
            self.running.setdefault(name, t)
        if is_ready(pod):
            self.ready.setdefault(name, t)

    def run(self):
        try:
            rv = self._list()
            self.ready_event.set()
            while not self.stopping:
                self.conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx)
                self.conn.request("GET", f"/api/v1/namespaces/{NS}/pods?watch=true"
                                  f"&allowWatchBookmarks=true&resourceVersion={rv}",
                                  headers=self._headers())
                resp = self.conn.getresponse()
                if resp.status != 200:
                    raise RuntimeError(f"watch: HTTP {resp.status}: {resp.read()[:300]!r}")
                while True:
                    line = resp.readline()
                    t = now()
                    if not line:
                        break
                    if not line.strip():
                        continue
                    try:
                        ev = json.loads(line)
                    except ValueError:
                        continue
                    kind, obj = ev.get("type"), ev.get("object") or {}
                    if kind == "ERROR":
                        rv = self._list()
                        break
                    new_rv = obj.get("metadata", {}).get("resourceVersion")
                    if new_rv:
                        rv = new_rv
                    if kind == "BOOKMARK":
                        continue
                    with self.cond:
                        self._observe(kind, obj, t)
                        self.cond.notify_all()
                self.conn.close()
                if not self.stopping:
                    self.reconnects += 1
        except Exception as e:  # surfaced to the main thread through wait()
            if not self.stopping:
                self.error = e
                with self.cond:
                    self.cond.notify_all()
                self.ready_event.set()

    def wait(self, predicate, timeout):
        deadline = now() + timeout
        with self.cond:
            while True:
                if self.error:
                    raise RuntimeError(f"watch failed: {self.error!r}")
                if predicate():
                    return True
                left = deadline - now()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.5))

    def stop(self):
        self.stopping = True
        if self.conn is not None:
            try:
                self.conn.sock and self.conn.sock.shutdown(2)
            except OSError:
                pass


def pod_manifest(name):
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench-serial"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": IMAGE, "imagePullPolicy": "Never",
                            "command": ["/bin/sleep", "3600"]}],
        },
    }


def deployment_manifest(name, replicas):
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": SCALE_LABEL}},
            "template": {
                "metadata": {"labels": {"app": SCALE_LABEL}},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "main", "image": IMAGE, "imagePullPolicy": "Never",
                                    "command": ["/bin/sleep", "3600"]}],
                },
            },
        },
    }


def skiff_ps(skiff, data):
    out = subprocess.run([skiff, "--data-dir", data, "ps", "-aq"], capture_output=True, text=True)
    return out.stdout.split()


def mounts_under(path):
    """Mount points under `path` (from our own mount namespace), deepest first."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == path or mp.startswith(path + "/"):
                found.append(mp)
    return sorted(found, key=len, reverse=True)


def bridge_name(data):
    """skiff-net names the bridge sk + sha256(canonical data dir)[:8]."""
    return "sk" + hashlib.sha256(os.path.realpath(data).encode()).hexdigest()[:8]


def link_exists(name):
    return os.path.exists(f"/sys/class/net/{name}")


def tree_rss_kib(server_pid, data):
    """PSS of the server, every process of this data dir (shims: `skiff shim --data-dir D`,
    which detach from the server) and all their descendants (the containers)."""
    children, roots = {}, {server_pid}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
        if data.encode() in argv:
            roots.add(int(entry))
    total, seen, stack = 0, set(), list(roots)
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            total += pss_kib(pid)
        except OSError:
            pass
        stack.extend(children.get(pid, []))
    return total, len(seen), pss_kib(server_pid)


def pss_kib(pid):
    """Proportional set size: shared pages (the one skiff binary every shim maps) split fairly."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def cpu_times():
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    idle = vals[3] + vals[4]
    return sum(vals) - idle, sum(vals)


def proc_cpu(pid):
    """utime + stime of a process (all threads), in jiffies."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def steady_cpu(pid, seconds=3.0):
    """The server's CPU use (cores) while nothing changes, e.g. with N idle pods."""
    c0, t0 = proc_cpu(pid), now()
    time.sleep(seconds)
    return (proc_cpu(pid) - c0) / os.sysconf("SC_CLK_TCK") / (now() - t0)


def hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def context_runs(skiff, data, work, runs):
    """crun run of an equivalent bundle (/bin/true, same rootfs) and skiff run --rm, medians."""
    crun_ms, skiff_ms = [], []
    v1_mount = None
    cwork = os.path.join(work, "crun")
    os.makedirs(cwork)
    try:
        if os.path.exists("/sys/fs/cgroup/unified/cgroup.controllers"):
            v1_mount = start.hybrid_workaround(cwork)
        bundle = start.crun_bundle(cwork, os.path.join(work, "rootfs"))
        state = os.path.join(cwork, "state")
        start.timed(["crun", "--root", state, "run", "--bundle", bundle, "warm"])
        for i in range(runs):
            crun_ms.append(start.timed(["crun", "--root", state, "run", "--bundle", bundle, f"b{i}"]))
    finally:
        if v1_mount:
            subprocess.run(["umount", v1_mount])
    try:
        base = [skiff, "--data-dir", data, "run", "--rm", IMAGE, "/bin/true"]
        start.timed(base)
        for _ in range(runs):
            skiff_ms.append(start.timed(base))
    except subprocess.CalledProcessError as e:
        print(f"  (skiff run --rm failed: {e})", file=sys.stderr)
    return crun_ms, skiff_ms


def wait_gone(watch, skiff, data, names, timeout):
    """Waits until the API no longer has `names` and the node has no container left; returns
    (seconds until gone from the API, seconds until the node had no container)."""
    t0 = now()
    api_ok = watch.wait(lambda: not (watch.live & set(names)), timeout)
    t_api = now() - t0
    deadline = t0 + timeout
    while skiff_ps(skiff, data) and now() < deadline:
        time.sleep(0.1)
    t_node = now() - t0
    if not api_ok:
        left = sorted(watch.live & set(names))
        raise RuntimeError(f"{len(left)} pods not gone after {timeout}s: {left[:5]}")
    return t_api, t_node


def serial_pods(api, watch, skiff, data, count, timeout):
    rows = []  # (name, total ms, create response ms, bound ms, running ms)
    names = []
    for i in range(count):
        name = f"bench-{i:03d}"
        names.append(name)
        t0 = now()
        api.ok("POST", f"/api/v1/namespaces/{NS}/pods", pod_manifest(name))
        t_resp = now()
        if not watch.wait(lambda: name in watch.running, timeout):
            raise RuntimeError(f"pod {name} not running after {timeout}s "
                               f"(seen={name in watch.seen}, bound={name in watch.bound})")
        with watch.cond:
            t_bound = watch.bound.get(name, watch.running[name])
            t_run = watch.running[name]
        rows.append((name, (t_run - t0) * 1000, (t_resp - t0) * 1000, (t_bound - t0) * 1000,
                     (t_run - t_bound) * 1000))
    return rows, names


def delete_pods(api, names):
    for name in names:
        api.request("DELETE", f"/api/v1/namespaces/{NS}/pods/{name}?gracePeriodSeconds=0",
                    {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})


def patch_scale(api, name, replicas, conflicts):
    """Merge-patches the scale subresource. The patch carries no resourceVersion, so a 409 is
    the server's doing (upstream retries such patches internally); retry and count them."""
    path = f"/apis/apps/v1/namespaces/{NS}/deployments/{name}/scale"
    for _ in range(20):
        status, obj = api.request("PATCH", path, {"spec": {"replicas": replicas}},
                                  content_type="application/merge-patch+json")
        if status == 200:
            return obj
        if status != 409:
            raise RuntimeError(f"PATCH {path}: HTTP {status}: {json.dumps(obj)[:300]}")
        conflicts.append(replicas)
        time.sleep(0.01)
    raise RuntimeError(f"PATCH {path}: still 409 after 20 tries")


def scale_deployment(api, watch, count, timeout, conflicts, server_pid):
    name = "bench-scale"
    dpath = f"/apis/apps/v1/namespaces/{NS}/deployments"
    api.ok("POST", dpath, deployment_manifest(name, 0))
    time.sleep(1.0)  # let the controller create the (empty) ReplicaSet first
    with watch.cond:
        before = {n for n in watch.live if watch.labels.get(n) == SCALE_LABEL}
    if before:
        raise RuntimeError(f"pods exist before scaling: {sorted(before)[:5]}")
    cpu0, srv0 = cpu_times(), proc_cpu(server_pid)
    t0 = now()
    patch_scale(api, name, count, conflicts)

    def ours(table):
        return [table[n] for n in watch.live if watch.labels.get(n) == SCALE_LABEL and n in table]

    ok = watch.wait(lambda: len(ours(watch.ready)) >= count, timeout)
    t_end = now()
    cpu1, srv1 = cpu_times(), proc_cpu(server_pid)
    hz = os.sysconf("SC_CLK_TCK")
    with watch.cond:
        created, bound = sorted(ours(watch.seen)), sorted(ours(watch.bound))
        running, ready = sorted(ours(watch.running)), sorted(ours(watch.ready))
        pod_names = [n for n in watch.live if watch.labels.get(n) == SCALE_LABEL]

    def at(ts):
        return (ts[count - 1] - t0) if len(ts) >= count else float("nan")

    result = {
        "ok": ok, "elapsed": t_end - t0, "ready_count": len(ready),
        "all_created": at(created), "all_bound": at(bound), "all_running": at(running),
        "all_ready": at(ready),
        "first_ready": (ready[0] - t0) if ready else float("nan"),
        "half_ready": (ready[count // 2 - 1] - t0) if len(ready) >= count // 2 else float("nan"),
        "names": pod_names,
        # Machine CPU use over the phase (1.0 = every core busy) and the server's own share.
        "machine_busy": (cpu1[0] - cpu0[0]) / max(1, cpu1[1] - cpu0[1]),
        "server_cpu_s": (srv1 - srv0) / hz,
        "timeline": [],
    }
    step = 0.5
    t = step
    while t < (t_end - t0) + step:
        cut = t0 + t
        result["timeline"].append((t, sum(x <= cut for x in created), sum(x <= cut for x in bound),
                                   sum(x <= cut for x in running), sum(x <= cut for x in ready)))
        t += step
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skiff", default="target/release/skiff")
    ap.add_argument("--pods", type=int, default=50)
    ap.add_argument("--replicas", type=int, default=100)
    ap.add_argument("--cluster-cidr", default="100.64.77.0/24")
    ap.add_argument("--crun-runs", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=120.0, help="per phase, seconds")
    ap.add_argument("--keep-log", action="store_true", help="copy server.log to the cwd")
    ap.add_argument("--verbose", action="store_true", help="print every serial pod's breakdown")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/pods.py must run as root (the embedded agent runs containers)")
    for tool in ["crun", "busybox"]:
        if shutil.which(tool) is None:
            sys.exit(f"{tool} missing: apt-get install {'crun' if tool == 'crun' else 'busybox-static'}")
    skiff = os.path.realpath(opts.skiff)

    work = tempfile.mkdtemp(prefix="skiff-bench-pods-")
    data = os.path.join(work, "data")
    server = watch = api = None
    created_pods, deployment = [], False
    results = {}
    leftover = {}
    failure = None
    try:
        # The image: a busybox rootfs with sh, true and sleep, imported before the server starts.
        rootfs = os.path.join(work, "rootfs")
        start.make_rootfs(rootfs)
        tarball = os.path.join(work, "rootfs.tar")
        with tarfile.open(tarball, "w") as t:
            t.add(rootfs, arcname=".")
        subprocess.run([skiff, "--data-dir", data, "image", "import", tarball, "-t", IMAGE],
                       check=True, stdout=subprocess.DEVNULL)

        # Context first, on a quiet machine: crun run and skiff run --rm of /bin/true.
        crun_ms, skiff_run_ms = context_runs(skiff, data, work, opts.crun_runs)

        port = apiserver.free_port()
        log = open(os.path.join(work, "server.log"), "w")
        t_spawn = now()
        server = subprocess.Popen([skiff, "--data-dir", data, "server", "--listen",
                                   f"127.0.0.1:{port}", "--cluster-cidr", opts.cluster_cidr],
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        kubeconfig = os.path.join(data, "kubeconfig.yaml")
        deadline = now() + 30
        while not os.path.exists(kubeconfig):
            if server.poll() is not None or now() > deadline:
                raise RuntimeError("server did not write its kubeconfig")
            time.sleep(0.05)
        time.sleep(0.1)  # written atomically? give it a moment either way
        _, token, ca = apiserver.load_kubeconfig(kubeconfig)
        ctx = ssl.create_default_context(cadata=ca)
        api = Api(port, token, ctx)
        while True:
            try:
                if api.request("GET", "/readyz")[0] == 200:
                    break
            except (OSError, http.client.HTTPException):
                pass
            if server.poll() is not None or now() > deadline:
                raise RuntimeError("server not ready")
            time.sleep(0.05)
        # The node must be registered and Ready before pods can be scheduled.
        while True:
            nodes = api.ok("GET", "/api/v1/nodes").get("items", [])
            if any(is_ready(n) for n in nodes):
                break
            if server.poll() is not None or now() > deadline:
                raise RuntimeError(f"no Ready node: {json.dumps(nodes)[:300]}")
            time.sleep(0.1)
        results["node_ready_s"] = now() - t_spawn
        time.sleep(1.0)
        results["idle_rss"] = apiserver.rss_kib(server.pid)

        watch = PodWatch(port, token, ctx)
        watch.start()
        watch.ready_event.wait(30)
        if watch.error:
            raise RuntimeError(f"watch: {watch.error!r}")

        # Warm-up pod: the first pod on a node also creates the bridge; reported separately.
        created_pods.append("bench-warmup")
        t0 = now()
        api.ok("POST", f"/api/v1/namespaces/{NS}/pods", pod_manifest("bench-warmup"))
        if not watch.wait(lambda: "bench-warmup" in watch.running, opts.timeout):
            raise RuntimeError("warm-up pod never ran")
        results["warmup_ms"] = (watch.running["bench-warmup"] - t0) * 1000
        delete_pods(api, ["bench-warmup"])
        wait_gone(watch, skiff, data, ["bench-warmup"], opts.timeout)
        created_pods.remove("bench-warmup")

        # 1. Serial pod startup latency.
        rows, names = [], []
        try:
            rows, names = serial_pods(api, watch, skiff, data, opts.pods, opts.timeout)
        finally:
            created_pods.extend(f"bench-{i:03d}" for i in range(opts.pods))
        results["serial"] = rows
        results["rss_with_pods"] = apiserver.rss_kib(server.pid)
        results["idle_cpu_pods"] = steady_cpu(server.pid)
        results["tree_rss_with_pods"] = tree_rss_kib(server.pid, data)
        delete_pods(api, names)
        results["serial_delete"] = wait_gone(watch, skiff, data, names, opts.timeout)
        created_pods.clear()

        # 2. Deployment 0 -> N replicas, until all Ready.
        deployment = True
        conflicts = results["scale_conflicts"] = []
        sc = scale_deployment(api, watch, opts.replicas, opts.timeout, conflicts, server.pid)
        results["scale"] = sc
        results["rss_at_scale"] = apiserver.rss_kib(server.pid)
        results["idle_cpu_scale"] = steady_cpu(server.pid) if sc["ok"] else float("nan")
        results["tree_rss_at_scale"] = tree_rss_kib(server.pid, data)
        if not sc["ok"]:
            raise RuntimeError(f"only {sc['ready_count']}/{opts.replicas} pods Ready after "
                               f"{opts.timeout}s")
        patch_scale(api, "bench-scale", 0, conflicts)
        results["scale_down"] = wait_gone(watch, skiff, data, sc["names"], opts.timeout)
        api.ok("DELETE", f"/apis/apps/v1/namespaces/{NS}/deployments/bench-scale")
        deployment = False
        results["server_hwm"] = hwm_kib(server.pid)
        results["rss_after"] = apiserver.rss_kib(server.pid)
        results["watch_reconnects"] = watch.reconnects
        results["crun_ms"], results["skiff_run_ms"] = crun_ms, skiff_run_ms
    except BaseException as e:
        failure = e
        raise
    finally:
        # Delete what we created, stop the server (SIGTERM, by PID), reset the data dir.
        if server is not None and server.poll() is None and api is not None:
            try:
                if deployment:
                    api.request("DELETE", f"/apis/apps/v1/namespaces/{NS}/deployments/bench-scale")
                status, obj = api.request("GET", f"/api/v1/namespaces/{NS}/pods")
                left = [p["metadata"]["name"] for p in obj.get("items", [])] if status == 200 else []
                delete_pods(api, left)
                deadline = now() + 30
                while now() < deadline:
                    status, obj = api.request("GET", f"/api/v1/namespaces/{NS}/pods")
                    if status == 200 and not obj.get("items") and not skiff_ps(skiff, data):
                        break
                    time.sleep(0.2)
            except Exception as e:  # cleanup goes on regardless
                print(f"cleanup through the API failed: {e!r}", file=sys.stderr)
        if watch is not None:
            watch.stop()
        if server is not None:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(15)
                except subprocess.TimeoutExpired:
                    print("server ignored SIGTERM for 15 s; killing it", file=sys.stderr)
                    server.kill()
                    server.wait()
            results["server_exit"] = server.returncode
        if os.path.isdir(data):
            r = subprocess.run([skiff, "--data-dir", data, "reset"], capture_output=True, text=True)
            if r.returncode != 0:
                print(f"skiff reset failed ({r.returncode}): {r.stderr.strip()}", file=sys.stderr)
            leftover["containers"] = len(skiff_ps(skiff, data))
        leftover["mounts"] = mounts_under(os.path.realpath(work))
        leftover["bridge"] = link_exists(bridge_name(data)) if os.path.isdir(data) else False
        if failure is not None or opts.keep_log:
            logpath = os.path.join(work, "server.log")
            if os.path.exists(logpath):
                dest = os.path.join(tempfile.gettempdir(), "skiff-bench-pods-server.log")
                shutil.copy(logpath, dest)
                print(f"server log copied to {dest}", file=sys.stderr)
        for mp in leftover["mounts"]:
            subprocess.run(["umount", "-l", mp])
        if failure is not None:
            print(f"after cleanup: {leftover.get('containers', '?')} containers, "
                  f"mounts {leftover['mounts']}, bridge present: {leftover['bridge']}",
                  file=sys.stderr)
        if not mounts_under(os.path.realpath(work)):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"mounts remain under {work}; not removing it", file=sys.stderr)

    report(opts, results, leftover)
    return 0


def report(opts, r, leftover):
    serial = r["serial"]
    total = [row[1] for row in serial]
    resp = [row[2] for row in serial]
    bound = [row[3] for row in serial]
    run = [row[4] for row in serial]
    p50, p99, mx = statistics.median(total), pct(total, 99), max(total)
    sc = r["scale"]
    crun = statistics.median(r["crun_ms"]) if r["crun_ms"] else float("nan")
    srun = statistics.median(r["skiff_run_ms"]) if r["skiff_run_ms"] else float("nan")

    print(f"skiff pods: {opts.pods} serial pods and a Deployment 0 -> {opts.replicas}, "
          f"image {IMAGE} present, {os.cpu_count()} CPUs")
    print(f"  server start -> node Ready        : {r['node_ready_s'] * 1000:7.0f} ms")
    print(f"  warm-up pod (creates the bridge)  : {r['warmup_ms']:7.1f} ms (not counted)")
    if opts.verbose:
        for row in serial:
            print(f"    {row[0]}: {row[1]:7.1f} ms  (create {row[2]:5.1f}, bound {row[3]:6.1f}, "
                  f"bound->running {row[4]:6.1f})")
    print(f"  serial pod startup, create -> all containers running (watch), {len(total)} pods:")
    print(f"    total           p50 {p50:7.1f}  p99 {p99:7.1f}  max {mx:7.1f} ms")
    print(f"    create response p50 {statistics.median(resp):7.1f}  p99 {pct(resp, 99):7.1f} ms")
    print(f"    create -> bound p50 {statistics.median(bound):7.1f}  p99 {pct(bound, 99):7.1f} ms")
    print(f"    bound -> running p50 {statistics.median(run):6.1f}  p99 {pct(run, 99):7.1f} ms")
    d_api, d_node = r["serial_delete"]
    print(f"    delete {len(total)} (grace 0): gone from API {d_api:.2f} s, containers gone {d_node:.2f} s")
    print(f"  Deployment scale 0 -> {opts.replicas} (PATCH scale -> all Ready, watch):")
    print(f"    all created {sc['all_created']:6.2f} s, bound {sc['all_bound']:6.2f} s, running "
          f"{sc['all_running']:6.2f} s, Ready {sc['all_ready']:6.2f} s "
          f"(first Ready {sc['first_ready']:.2f} s, half {sc['half_ready']:.2f} s)")
    print(f"    CPU over the phase: machine {sc['machine_busy'] * 100:.0f}% busy "
          f"({os.cpu_count()} cores), skiff server {sc['server_cpu_s']:.2f} CPU-s of "
          f"{sc['elapsed']:.2f} s wall")
    print("    timeline (s: created/bound/running/Ready): " + ", ".join(
        f"{t:.1f}: {c}/{b}/{ru}/{re}" for t, c, b, ru, re in sc["timeline"]))
    print(f"  server CPU with nothing changing: {r['idle_cpu_pods'] * 100:.0f}% of a core with "
          f"{len(total)} pods, {r['idle_cpu_scale'] * 100:.0f}% with {opts.replicas} pods")
    s_api, s_node = r["scale_down"]
    print(f"    scale -> 0: pods gone from API {s_api:.2f} s, containers gone {s_node:.2f} s")
    print(f"  context, median of {opts.crun_runs}: crun run /bin/true {crun:6.1f} ms, "
          f"skiff run --rm /bin/true {srun:6.1f} ms")
    tree_pods, procs_pods, _ = r["tree_rss_with_pods"]
    tree_scale, procs_scale, server_pss = r["tree_rss_at_scale"]
    print(f"  server RSS: idle {r['idle_rss'] / 1024:.1f} MiB, with {len(total)} pods "
          f"{r['rss_with_pods'] / 1024:.1f} MiB, at {opts.replicas} pods {r['rss_at_scale'] / 1024:.1f} MiB, "
          f"after {r['rss_after'] / 1024:.1f} MiB, peak {r['server_hwm'] / 1024:.1f} MiB")
    print(f"  server + shims + containers PSS: {tree_pods / 1024:.1f} MiB ({procs_pods} procs) with "
          f"{len(total)} pods, {tree_scale / 1024:.1f} MiB ({procs_scale} procs) at {opts.replicas}"
          f" = {(tree_scale - server_pss) / max(1, opts.replicas) / 1024:.2f} MiB/pod besides the server")
    print(f"  after cleanup: {leftover.get('containers', '?')} containers, "
          f"{len(leftover['mounts'])} mounts under the temp dir, bridge present: {leftover['bridge']}, "
          f"server exit code {r.get('server_exit')}, watch reconnects {r.get('watch_reconnects')}")
    if r.get("scale_conflicts"):
        print(f"  NOTE: {len(r['scale_conflicts'])} HTTP 409 on merge-PATCH of deployments/scale "
              f"without resourceVersion (retried; to replicas {r['scale_conflicts']})")
    print()
    print(f"  {'figure':34} {'value':>10} {'target':>10} {'ratio':>7}")
    rows = [
        ("pod startup p50", p50, "ms", 150),
        ("pod startup p99", p99, "ms", 400),
        ("pod startup max", mx, "ms", None),
        (f"0 -> {opts.replicas} replicas all Ready", sc["all_ready"] * 1000, "ms", 10000),
        ("crun run /bin/true (context)", crun, "ms", None),
        ("pod startup p50 / crun run", p50 / crun if crun else float("nan"), "x", None),
        ("skiff run --rm /bin/true", srun, "ms", None),
        ("server RSS idle", r["idle_rss"] / 1024, "MiB", None),
        (f"server CPU, {opts.replicas} idle pods", r["idle_cpu_scale"] * 100, "%", None),
        (f"server RSS at {opts.replicas} pods", r["rss_at_scale"] / 1024, "MiB", None),
        ("leftover containers", leftover.get("containers", -1), "", 0),
        ("leftover mounts", len(leftover["mounts"]), "", 0),
    ]
    for label, value, unit, target in rows:
        tgt = f"{target} {unit}".strip() if target is not None else "-"
        ratio = f"{value / target:.2f}x" if target else "-"
        val = f"{value:7d}" if isinstance(value, int) else f"{value:7.1f}"
        print(f"  {label:34} {val:>7} {unit:3}{tgt:>9} {ratio:>7}")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from summary import record
    record("pods", "pod startup p50", round(p50, 1), "ms", "crun run /bin/true", round(crun, 1),
           target="<= 150 ms")
    record("pods", "pod startup p99", round(p99, 1), "ms", target="<= 400 ms")
    record("pods", f"0 -> {opts.replicas} replicas all Ready", round(sc["all_ready"], 2), "s",
           target="<= 10 s")


if __name__ == "__main__":
    sys.exit(main())
