#!/usr/bin/env python3
"""Containers vs virtual machines, measured in one run on one machine.

VM: qemu-system-x86_64 boots Debian's kernel (/boot/vmlinuz-*) with a minimal initramfs
(busybox static + an /init that prints SKIFF-VM-READY, idles 2 s and powers off), no network.
Containers: `skiff run --rm` and `crun run` of the same busybox printing SKIFF-CT-READY.
Reports start -> marker on stdout (median), the VM's peak RSS and its RSS/PSS once booted,
and an idle container's footprint (container process + its supervisor).

/dev/kvm on these machines only runs PVM guests, so the VM runs under TCG (software emulation)
by default: its start time is an upper bound, far slower than under KVM. Memory is the ratio
likely to hold under KVM (the guest RAM that the kernel and initramfs touch, plus qemu itself).

Usage (root): bench/vm.py [--skiff target/release/skiff] [--vm-runs 3] [--runs 10]
              [--machine microvm,pc] [--accel tcg] [--kernel /boot/vmlinuz-...]
Needs: qemu-system-x86 linux-image-amd64 busybox-static crun.
"""
import argparse
import glob
import gzip
import io
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import start  # noqa: E402  (make_rootfs, crun_bundle, hybrid_workaround)

VM_MARKER = b"SKIFF-VM-READY"
CT_MARKER = b"SKIFF-CT-READY"
INIT = b"""#!/bin/busybox sh
/bin/busybox echo SKIFF-VM-READY
/bin/busybox sleep 2
/bin/busybox poweroff -f
"""


# ---------------------------------------------------------------- initramfs (cpio newc + gzip)

def _cpio_entry(out, ino, name, mode, data=b"", rdev=(0, 0)):
    hdr = "070701" + "".join(f"{v:08x}" for v in [
        ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0])
    out.write(hdr.encode() + name.encode() + b"\0")
    out.write(b"\0" * (-(110 + len(name) + 1) % 4))
    out.write(data)
    out.write(b"\0" * (-len(data) % 4))


def make_initramfs(path):
    with open("/bin/busybox", "rb") as f:
        busybox = f.read()
    buf = io.BytesIO()
    entries = [
        (".", 0o040755, b"", (0, 0)),
        ("bin", 0o040755, b"", (0, 0)),
        ("dev", 0o040755, b"", (0, 0)),
        ("proc", 0o040755, b"", (0, 0)),
        ("sys", 0o040755, b"", (0, 0)),
        ("dev/console", 0o020600, b"", (5, 1)),  # init's stdio is /dev/console = ttyS0
        ("bin/busybox", 0o100755, busybox, (0, 0)),
        ("bin/sh", 0o120777, b"busybox", (0, 0)),
        ("init", 0o100755, INIT, (0, 0)),
    ]
    for ino, (name, mode, data, rdev) in enumerate(entries, 1):
        _cpio_entry(buf, ino, name, mode, data, rdev)
    _cpio_entry(buf, 0, "TRAILER!!!", 0)
    with gzip.open(path, "wb", compresslevel=6) as f:
        f.write(buf.getvalue())


# ---------------------------------------------------------------- process measurements

def proc_mem_kib(pid):
    """(VmRSS, Pss, VmHWM) of a live process in KiB; zeros once it is gone. VmHWM is per address
    space, so unlike a child's ru_maxrss it does not include the forking Python's RSS."""
    rss = pss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return rss, pss, hwm


def run_to_marker(args, marker, timeout, on_marker=None):
    """Starts args, reads its stdout until marker; returns (ms to marker, ru_maxrss KiB of the
    child, on_marker's result). Kills it (by PID) on timeout. ru_maxrss also counts the forked
    Python before exec (~20 MiB), so it is only meaningful for a big child like qemu."""
    t0 = time.perf_counter()
    p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    fd, seen, ms, extra = p.stdout.fileno(), b"", None, None
    deadline = t0 + timeout
    try:
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"{args[0]}: no exit within {timeout}s (output: {seen[-300:]!r})")
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            if ms is None:
                seen += chunk
                if marker in seen:
                    ms = (time.perf_counter() - t0) * 1000.0
                    if on_marker:
                        extra = on_marker(p.pid)
    except BaseException:
        p.kill()
        p.wait()
        raise
    finally:
        p.stdout.close()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if ms is None:
        raise RuntimeError(f"{args[0]}: exited {p.returncode} without {marker!r}: {seen[-500:]!r}")
    return ms, ru.ru_maxrss, extra


def qemu_args(qemu, machine, accel, kernel, initrd):
    append = "console=ttyS0 quiet panic=-1"
    if machine == "microvm":
        # microvm has no PIT/HPET calibration path that works under TCG without these.
        append += " tsc_early_khz=2000000 lpj=8000000 no_timer_check"
    return [qemu, "-accel", accel, "-M", machine, "-m", "256", "-smp", "1", "-nographic",
            "-no-reboot", "-nic", "none", "-nodefaults", "-serial", "stdio",
            "-kernel", kernel, "-initrd", initrd, "-append", append]


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skiff", default="target/release/skiff")
    ap.add_argument("--runs", type=int, default=10, help="container runs per runtime")
    ap.add_argument("--vm-runs", type=int, default=3, help="VM boots per machine type")
    ap.add_argument("--machine", default="microvm,pc", help="comma-separated qemu machine types")
    ap.add_argument("--accel", default="tcg", help="tcg here: /dev/kvm only runs PVM guests")
    ap.add_argument("--kernel", default=None, help="default: newest /boot/vmlinuz-*")
    ap.add_argument("--json", action="store_true")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/vm.py must run as root")
    skiff = os.path.realpath(opts.skiff)
    qemu = shutil.which("qemu-system-x86_64")
    kernels = sorted(glob.glob("/boot/vmlinuz-*"))
    kernel = opts.kernel or (kernels[-1] if kernels else None)
    for what, ok, pkg in [("qemu-system-x86_64", qemu, "qemu-system-x86"),
                          ("/boot/vmlinuz-*", kernel, "linux-image-amd64"),
                          ("busybox", shutil.which("busybox"), "busybox-static"),
                          ("crun", shutil.which("crun"), "crun"),
                          ("skiff", os.path.exists(skiff), "cargo build --release -p skiff")]:
        if not ok:
            sys.exit(f"{what} missing: {pkg}")
    accel_note = ("TCG = software CPU emulation, no KVM; boot time is far slower than under KVM"
                  if opts.accel == "tcg" else f"accel={opts.accel}")

    work = tempfile.mkdtemp(prefix="skiff-bench-vm-")
    data = os.path.join(work, "data")
    v1_mount = None
    crun_root = os.path.join(work, "crun-state")
    result = {"date": time.strftime("%Y-%m-%d"), "kernel_host": os.uname().release,
              "vm_kernel": os.path.basename(kernel), "accel": opts.accel, "vm": {}}
    try:
        # ---- VM
        initrd = os.path.join(work, "initramfs.cpio.gz")
        make_initramfs(initrd)
        result["initramfs_kib"] = os.path.getsize(initrd) // 1024
        for machine in opts.machine.split(","):
            args = qemu_args(qemu, machine, opts.accel, kernel, initrd)
            ms, peak, mem = [], [], []
            for _ in range(opts.vm_runs):
                t, maxrss, booted = run_to_marker(args, VM_MARKER, 300, proc_mem_kib)
                ms.append(t)
                peak.append(maxrss)
                mem.append(booted)
            result["vm"][machine] = {
                "start_ms": round(statistics.median(ms)), "start_ms_all": [round(x) for x in ms],
                # qemu's peak: its ru_maxrss, at least its VmHWM sampled at the marker.
                "peak_rss_kib": int(statistics.median(max(p, m[2]) for p, m in zip(peak, mem))),
                "peak_rss_kib_all": [max(p, m[2]) for p, m in zip(peak, mem)],
                "booted_rss_kib": int(statistics.median(m[0] for m in mem)),
                "booted_pss_kib": int(statistics.median(m[1] for m in mem)),
            }

        # ---- containers (same busybox, same machine, same run)
        if os.path.exists("/sys/fs/cgroup/unified/cgroup.controllers"):
            v1_mount = start.hybrid_workaround(work)
        rootfs = os.path.join(work, "rootfs")
        start.make_rootfs(rootfs)
        os.symlink("busybox", os.path.join(rootfs, "bin", "echo"))
        tarball = os.path.join(work, "rootfs.tar")
        with tarfile.open(tarball, "w") as t:
            t.add(rootfs, arcname=".")
        base = [skiff, "--data-dir", data]
        start.sh(*base, "image", "import", tarball, "-t", "bench:1", stdout=subprocess.DEVNULL)
        bundle = start.crun_bundle(work, rootfs)
        cfg = os.path.join(bundle, "config.json")
        with open(cfg) as f:
            spec = json.load(f)
        spec["process"]["args"] = ["/bin/echo", CT_MARKER.decode()]
        with open(cfg, "w") as f:
            json.dump(spec, f)

        skiff_cmd = base + ["run", "--rm", "bench:1", "/bin/echo", CT_MARKER.decode()]
        run_to_marker(skiff_cmd, CT_MARKER, 60)  # warm: snapshot unpack, page cache
        run_to_marker(["crun", "--root", crun_root, "run", "--bundle", bundle, "warm"], CT_MARKER, 60)
        s_ms, c_ms = [], []
        for i in range(opts.runs):
            s_ms.append(run_to_marker(skiff_cmd, CT_MARKER, 60)[0])
            c_ms.append(run_to_marker(["crun", "--root", crun_root, "run", "--bundle", bundle,
                                       f"c{i}"], CT_MARKER, 60)[0])

        # Idle footprint: skiff container (busybox sleep) + its shim.
        cid = subprocess.run(base + ["run", "-d", "bench:1", "/bin/sleep", "60"], check=True,
                             capture_output=True, text=True).stdout.strip()
        time.sleep(0.5)
        with open(os.path.join(data, "containers", cid, "state.json")) as f:
            st = json.load(f)
        ct_mem, shim_mem = proc_mem_kib(st["pid"]), proc_mem_kib(st["shim_pid"])
        start.sh(*base, "rm", "-f", cid, stdout=subprocess.DEVNULL)

        # Idle footprint: crun container (crun run -d leaves no supervisor, only the process).
        spec["process"]["args"] = ["/bin/sleep", "60"]
        with open(cfg, "w") as f:
            json.dump(spec, f)
        start.sh("crun", "--root", crun_root, "run", "-d", "--bundle", bundle, "idle",
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        cpid = json.loads(subprocess.run(["crun", "--root", crun_root, "state", "idle"], check=True,
                                         capture_output=True, text=True).stdout)["pid"]
        crun_mem = proc_mem_kib(cpid)
        subprocess.run(["crun", "--root", crun_root, "delete", "-f", "idle"], capture_output=True)

        result["skiff"] = {"start_ms": round(statistics.median(s_ms), 1),
                           "peak_rss_kib": ct_mem[2] + shim_mem[2],
                           "idle_rss_kib": ct_mem[0] + shim_mem[0],
                           "idle_pss_kib": ct_mem[1] + shim_mem[1],
                           "idle_shim_rss_kib": shim_mem[0], "idle_shim_pss_kib": shim_mem[1]}
        result["crun"] = {"start_ms": round(statistics.median(c_ms), 1),
                          "peak_rss_kib": crun_mem[2],
                          "idle_rss_kib": crun_mem[0], "idle_pss_kib": crun_mem[1]}
        result["runs"], result["vm_runs"] = opts.runs, opts.vm_runs
    finally:
        if os.path.exists(data):
            left = subprocess.run([skiff, "--data-dir", data, "ps", "-aq"], capture_output=True,
                                  text=True)
            for cid in left.stdout.split():
                subprocess.run([skiff, "--data-dir", data, "rm", "-f", cid], capture_output=True)
        if os.path.isdir(crun_root):
            for name in os.listdir(crun_root):
                subprocess.run(["crun", "--root", crun_root, "delete", "-f", name],
                               capture_output=True)
        if v1_mount:
            subprocess.run(["umount", v1_mount])
        shutil.rmtree(work, ignore_errors=True)

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from summary import record
    for machine, vm in result["vm"].items():
        acc = opts.accel.upper()
        record("containers vs VMs", f"start -> marker vs VM -M {machine} ({acc})",
               result["skiff"]["start_ms"], "ms", f"qemu {acc}", vm["start_ms"])
        record("containers vs VMs", f"peak RSS vs VM -M {machine}",
               round(result["skiff"]["peak_rss_kib"] / 1024, 1), "MiB", f"qemu {acc}",
               round(vm["peak_rss_kib"] / 1024, 1))
    if opts.json:
        print(json.dumps(result))
        return
    sk, cr = result["skiff"], result["crun"]
    mib = lambda k: f"{k / 1024:.1f} MiB"  # noqa: E731
    print(f"containers vs VMs, {result['date']}, host kernel {result['kernel_host']}, "
          f"{os.cpu_count()} CPUs; VM: {result['vm_kernel']}, busybox initramfs "
          f"({result['initramfs_kib']} KiB), -m 256, -nic none")
    print(f"VM accel: {opts.accel.upper()} ({accel_note})")
    print(f"medians: VM of {opts.vm_runs} boots, containers of {opts.runs} interleaved runs\n")
    hdr = f"{'what':34} {'VM (' + opts.accel.upper() + ')':>22} {'skiff':>10} {'crun':>10} " \
          f"{'VM/skiff':>9} {'VM/crun':>8}"
    for machine, vm in result["vm"].items():
        print(f"-M {machine}")
        print(hdr)
        rows = [
            ("start -> marker on stdout", f"{vm['start_ms']} ms", vm["start_ms"],
             f"{sk['start_ms']} ms", sk["start_ms"], f"{cr['start_ms']} ms", cr["start_ms"]),
            ("peak RSS (qemu / ct+shim VmHWM)", mib(vm["peak_rss_kib"]), vm["peak_rss_kib"],
             mib(sk["peak_rss_kib"]), sk["peak_rss_kib"], mib(cr["peak_rss_kib"]),
             cr["peak_rss_kib"]),
            ("idle RSS (booted VM / ct+shim)", mib(vm["booted_rss_kib"]), vm["booted_rss_kib"],
             mib(sk["idle_rss_kib"]), sk["idle_rss_kib"], mib(cr["idle_rss_kib"]),
             cr["idle_rss_kib"]),
            ("idle PSS (booted VM / ct+shim)", mib(vm["booted_pss_kib"]), vm["booted_pss_kib"],
             mib(sk["idle_pss_kib"]), sk["idle_pss_kib"], mib(cr["idle_pss_kib"]),
             cr["idle_pss_kib"]),
        ]
        for what, vs, v, ss, s, cs, c in rows:
            print(f"{what:34} {vs:>22} {ss:>10} {cs:>10} {v / s:8.0f}x {v / c:7.0f}x")
        print(f"  VM start, all boots (ms): {vm['start_ms_all']}   [{opts.accel.upper()}]\n")
    print(f"caveat: the VM ran under {opts.accel.upper()} — {accel_note}. The memory ratio is "
          f"the one likely to hold under KVM; the start-time ratio is not.")
    print(f"skiff idle shim alone: RSS {mib(sk['idle_shim_rss_kib'])}, "
          f"PSS {mib(sk['idle_shim_pss_kib'])}; crun -d leaves no supervisor process.")


if __name__ == "__main__":
    main()
