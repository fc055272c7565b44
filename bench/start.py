#!/usr/bin/env python3
"""Container start benchmark: `skiff run --rm IMG /bin/true` against `crun run` on an equivalent
OCI bundle (same busybox rootfs, same namespaces, no network), interleaved in one run so machine
noise hits both alike. Prints medians, the ratio, and the peak RSS of an idle container's shim.

Usage (root): bench/start.py [--skiff target/release/skiff] [--runs 40]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def make_rootfs(path):
    os.makedirs(os.path.join(path, "bin"))
    shutil.copy2("/bin/busybox", os.path.join(path, "bin", "busybox"))
    for applet in ["sh", "true", "sleep"]:
        os.symlink("busybox", os.path.join(path, "bin", applet))
    for d in ["proc", "sys", "dev", "tmp", "etc"]:
        os.makedirs(os.path.join(path, d), exist_ok=True)


def import_busybox_image(skiff, data, work, tag, applets):
    """Imports a busybox rootfs with `applets` linked in as image `tag` into `data`."""
    rootfs = os.path.join(work, "rootfs")
    make_rootfs(rootfs)
    for applet in applets:
        os.symlink("busybox", os.path.join(rootfs, "bin", applet))
    tarball = os.path.join(work, "rootfs.tar")
    with tarfile.open(tarball, "w") as t:
        t.add(rootfs, arcname=".")
    sh(skiff, "--data-dir", data, "image", "import", tarball, "-t", tag,
       stdout=subprocess.DEVNULL)


def start_server(skiff, data, work, port, cluster_cidr):
    """`skiff server` on 127.0.0.1:`port`, logging to work/server.log; returns the process."""
    log = open(os.path.join(work, "server.log"), "w")
    return subprocess.Popen([skiff, "--data-dir", data, "server", "--listen",
                             f"127.0.0.1:{port}", "--cluster-cidr", cluster_cidr],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)


def crun_bundle(work, rootfs):
    bundle = os.path.join(work, "bundle")
    os.makedirs(bundle)
    sh("crun", "spec", cwd=bundle)
    with open(os.path.join(bundle, "config.json")) as f:
        spec = json.load(f)
    spec["root"] = {"path": os.path.realpath(rootfs), "readonly": True}
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["/bin/true"]
    # The same namespaces skiff uses for --network none.
    spec["linux"]["namespaces"] = [{"type": t} for t in ["pid", "network", "ipc", "uts", "mount"]]
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f)
    return bundle


def hybrid_workaround(work):
    """crun 1.8 refuses a hybrid cgroup layout while cgroup2 owns any controller (here hugetlb).
    Moving hugetlb to a temporary v1 mount lets it run; unmounting gives it back to cgroup2."""
    with open("/sys/fs/cgroup/unified/cgroup.controllers") as f:
        owned = f.read().split() if os.path.exists("/sys/fs/cgroup/unified") else []
    if not owned:
        return None
    mnt = os.path.join(work, "v1-" + "-".join(owned))
    os.makedirs(mnt)
    sh("mount", "-t", "cgroup", "-o", ",".join(owned), "cgroup", mnt)
    return mnt


def timed(args, **kw):
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, **kw)
    return (time.perf_counter() - start) * 1000.0


def peak_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skiff", default="target/release/skiff")
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    opts = ap.parse_args()
    skiff = os.path.realpath(opts.skiff)
    if os.geteuid() != 0:
        sys.exit("bench/start.py must run as root")
    for tool in ["crun", "busybox"]:
        if shutil.which(tool) is None:
            sys.exit(f"{tool} missing: apt-get install {'crun' if tool == 'crun' else 'busybox-static'}")

    work = tempfile.mkdtemp(prefix="skiff-bench-start-")
    data = os.path.join(work, "data")
    v1_mount = None
    try:
        if os.path.exists("/sys/fs/cgroup/unified/cgroup.controllers"):
            v1_mount = hybrid_workaround(work)
        rootfs = os.path.join(work, "rootfs")
        make_rootfs(rootfs)
        tarball = os.path.join(work, "rootfs.tar")
        with tarfile.open(tarball, "w") as t:
            t.add(rootfs, arcname=".")
        base = [skiff, "--data-dir", data]
        sh(*base, "image", "import", tarball, "-t", "bench:1", stdout=subprocess.DEVNULL)
        bundle = crun_bundle(work, rootfs)
        crun_root = os.path.join(work, "crun-state")

        # Warm both paths once (page cache, image snapshot unpack).
        timed(base + ["run", "--rm", "bench:1", "/bin/true"])
        timed(["crun", "--root", crun_root, "run", "--bundle", bundle, "warm"])

        runc = shutil.which("runc")
        runc_root = os.path.join(work, "runc-state")
        skiff_ms, crun_ms, runc_ms = [], [], []
        for i in range(opts.runs):
            skiff_ms.append(timed(base + ["run", "--rm", "bench:1", "/bin/true"]))
            crun_ms.append(timed(["crun", "--root", crun_root, "run", "--bundle", bundle, f"b{i}"]))
            if runc:
                runc_ms.append(timed([runc, "--root", runc_root, "run", "--bundle", bundle, f"r{i}"]))

        # Peak RSS of the shim supervising one idle container.
        cid = subprocess.run(base + ["run", "-d", "bench:1", "/bin/sleep", "60"], check=True,
                             capture_output=True, text=True).stdout.strip()
        time.sleep(0.5)
        shim_pid = None
        with open(os.path.join(data, "containers", cid, "state.json")) as f:
            shim_pid = json.load(f).get("shim_pid")
        shim_kib = peak_rss_kib(shim_pid) if shim_pid else 0
        sh(*base, "rm", "-f", cid, stdout=subprocess.DEVNULL)

        s, c = statistics.median(skiff_ms), statistics.median(crun_ms)
        r = statistics.median(runc_ms) if runc_ms else None
        result = {
            "skiff_run_ms": round(s, 2), "crun_run_ms": round(c, 2), "ratio": round(s / c, 2),
            "runc_run_ms": round(r, 2) if r else None,
            "target_ratio": 1.0, "runs": opts.runs, "shim_peak_rss_kib": shim_kib,
        }
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from summary import record
        record("container start", "run --rm /bin/true, median", round(s, 2), "ms",
               "crun run", round(c, 2), target="<= 1.0x")
        if r:
            record("container start", "run --rm /bin/true vs runc", round(s, 2), "ms",
                   "runc run", round(r, 2))
        record("container start", "idle shim peak RSS", round(shim_kib / 1024, 1), "MiB",
               "docker shim (baselines.md)", 13.0)
        if opts.json:
            print(json.dumps(result))
        else:
            print(f"container start → exit of /bin/true, median of {opts.runs} interleaved runs")
            print(f"  skiff run --rm : {s:7.2f} ms")
            print(f"  crun run       : {c:7.2f} ms")
            if r:
                print(f"  runc run       : {r:7.2f} ms")
            print(f"  ratio          : {s / c:7.2f}x  vs crun (target <= 1.0x)")
            print(f"  idle shim peak RSS: {shim_kib} KiB")
    finally:
        # Leave no container (and so no mount or cgroup) behind, even after a failure.
        left = subprocess.run([skiff, "--data-dir", data, "ps", "-aq"], capture_output=True, text=True)
        for cid in left.stdout.split():
            subprocess.run([skiff, "--data-dir", data, "rm", "-f", cid], capture_output=True)
        if v1_mount:
            subprocess.run(["umount", v1_mount])
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
