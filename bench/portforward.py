#!/usr/bin/env python3
"""Port-forward throughput benchmark (root): starts `skiff server` (with its embedded node
agent) on a private data dir and loopback port, runs one busybox pod that streams N bytes from
/dev/zero to whoever connects to its port 9000, and measures the download throughput

  1. directly from the host to the pod IP (the ceiling), and
  2. through `kubectl port-forward` (every byte crosses kubectl, the API server and the agent),
     over kubectl's default (a WebSocket tunnelling SPDY) and over plain SPDY
     (KUBECTL_PORT_FORWARD_WEBSOCKETS=false),

and prints each against the direct number (target: >= 0.5x). Everything it creates is removed
at the end, also on failure (server stopped with SIGTERM by PID, `skiff reset`, temp dir gone).

Usage: bench/portforward.py [--skiff target/release/skiff] [--bytes 268435456]
                            [--cluster-cidr 100.64.79.0/24]
"""
import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import apiserver  # noqa: E402  (free_port)
import pods  # noqa: E402  (mounts_under)
import start  # noqa: E402  (import_busybox_image, start_server)
import summary  # noqa: E402

IMAGE = "bench-pf:1"
POD = "source"
MIB = 1 << 20


def now():
    return time.perf_counter()


def download(host, port, total, timeout=60):
    """Reads `total` bytes from host:port; MiB/s. Retries refused connects (the listener may
    not be up yet)."""
    deadline = now() + timeout
    while True:
        try:
            s = socket.create_connection((host, port), timeout=10)
            break
        except OSError:
            if now() > deadline:
                raise
            time.sleep(0.1)
    with s:
        s.settimeout(timeout)
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        got = 0
        t0 = now()
        while got < total:
            n = s.recv_into(view)
            if n == 0:
                break
            got += n
        secs = now() - t0
    if got < total:
        raise RuntimeError(f"only {got} of {total} bytes from {host}:{port}")
    return total / MIB / secs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skiff", default="target/release/skiff")
    ap.add_argument("--bytes", type=int, default=256 * MIB, help="a multiple of 1 MiB")
    ap.add_argument("--cluster-cidr", default="100.64.79.0/24")
    ap.add_argument("--runs", type=int, default=3)
    opts = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/portforward.py must run as root (the embedded agent runs containers)")
    for tool in ["busybox", "kubectl"]:
        if shutil.which(tool) is None:
            sys.exit(f"{tool} missing")
    skiff = os.path.realpath(opts.skiff)
    work = tempfile.mkdtemp(prefix="skiff-bench-pf-")
    data = os.path.join(work, "data")
    kubeconfig = os.path.join(data, "kubeconfig.yaml")
    env = dict(os.environ, KUBECONFIG=kubeconfig, HOME=work)
    server = None
    forwards = []
    r = {}

    def kubectl(*args, **kw):
        return subprocess.run(["kubectl", *args], env=kw.pop("env", env), check=True,
                              capture_output=True, text=True, **kw).stdout

    try:
        start.import_busybox_image(skiff, data, work, IMAGE, ["nc", "dd"])
        port = apiserver.free_port()
        server = start.start_server(skiff, data, work, port, opts.cluster_cidr)
        deadline = now() + 60
        while True:
            if os.path.exists(kubeconfig):
                try:
                    kubectl("get", "--raw", "/readyz")
                    break
                except subprocess.CalledProcessError:
                    pass
            if server.poll() is not None or now() > deadline:
                raise RuntimeError("server not ready")
            time.sleep(0.2)
        # A persistent listener: every connection gets its own `dd` (-e takes the rest), which
        # writes 1 MiB per syscall (`head` writes 4 KiB ones and caps the direct number).
        kubectl("run", POD, f"--image={IMAGE}", "--image-pull-policy=Never", "--command", "--",
                "nc", "-ll", "-p", "9000", "-e", "dd", "if=/dev/zero", f"bs={MIB}",
                f"count={opts.bytes // MIB}")
        kubectl("wait", "--for=condition=Ready", f"pod/{POD}", "--timeout=120s")
        ip = kubectl("get", "pod", POD, "-o", "jsonpath={.status.podIP}").strip()

        r["direct"] = max(download(ip, 9000, opts.bytes) for _ in range(opts.runs))
        for name, ws in [("websocket", "true"), ("spdy", "false")]:
            lp = apiserver.free_port()
            fenv = dict(env, KUBECTL_PORT_FORWARD_WEBSOCKETS=ws)
            fwd = subprocess.Popen(["kubectl", "port-forward", f"pod/{POD}", f"{lp}:9000"],
                                   env=fenv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   text=True)
            forwards.append(fwd)
            line = fwd.stdout.readline()
            if "Forwarding from" not in line:
                raise RuntimeError(f"kubectl port-forward: {line!r}")
            r[name] = max(download("127.0.0.1", lp, opts.bytes) for _ in range(opts.runs))
            fwd.send_signal(signal.SIGTERM)
            fwd.wait(10)
    finally:
        for f in forwards:
            if f.poll() is None:
                f.kill()
                f.wait()
        if server is not None and server.poll() is None:
            try:
                kubectl("delete", "pod", POD, "--grace-period=0", "--wait=true", timeout=60)
            except Exception as e:  # cleanup goes on regardless
                print(f"deleting the pod failed: {e!r}", file=sys.stderr)
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

    print(f"== port-forward: {opts.bytes / MIB:.0f} MiB downloads from a pod "
          f"(best of {opts.runs}; skiff binary {opts.skiff}) ==")
    print(f"  direct to the pod IP:           {r['direct']:8.1f} MiB/s")
    for name in ["websocket", "spdy"]:
        ratio = r[name] / r["direct"]
        print(f"  kubectl port-forward ({name:9}): {r[name]:8.1f} MiB/s  "
              f"{ratio:.2f}x direct (target >= 0.5x)")
        summary.record("portforward", f"kubectl port-forward over {name} vs direct",
                       round(ratio, 2), "x", target=">= 0.5x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
