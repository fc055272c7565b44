#!/usr/bin/env python3
"""API extension benchmark (issue 14): how soon a new CRD's kind can be used, and what one
admission webhook adds to a create.

1. CRD → servable: create a CRD, then create an object of its kind as fast as the server lets
   us; the figure is the time from the CRD's 201 to the object's 201 (median and max over rounds).
2. Custom object writes: creates of a custom object (schema defaulting, pruning, validation)
   alternating with ConfigMap creates; the peer is the ConfigMap.
3. Policy cost: three ValidatingAdmissionPolicies (two CEL expressions each) bound to
   ConfigMap creates in one namespace, creates alternating with an unbound namespace.
4. Webhook cost: a local HTTPS admission webhook (Python, allows everything) registered for
   ConfigMap creates in one namespace; creates alternate between that namespace and a namespace
   the webhook does not select, so both see the same machine noise. The figure is the p50
   difference; the peer is the same create without a webhook.

Usage: bench/extend.py [--skiff target/release/skiff] [--rounds 20] [--creates 300]
"""
import argparse
import base64
import http.client
import http.server
import json
import os
import shutil
import ssl
import statistics
import subprocess
import tempfile
import threading
import time

from apiserver import Client, free_port, pct, ready_client
from summary import record


class Webhook(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle plus the client's
    # delayed ACK add ~40 ms to every review.
    disable_nagle_algorithm = True

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        review = json.loads(self.rfile.read(n))
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                           "response": {"uid": review["request"]["uid"], "allowed": True}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def start_webhook(work):
    """A CA and a serving certificate for 127.0.0.1 (webhook clients want a CA-signed leaf)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *a: subprocess.run(list(a), cwd=work, check=True,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
        "-subj", "/CN=bench-ca")
    run("openssl", "req", *ec, "-keyout", "hook.key", "-out", "hook.csr", "-subj", "/CN=hook")
    with open(os.path.join(work, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", "hook.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "hook.crt", "-days", "1", "-extfile", "san.ext")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(work, "hook.crt"), os.path.join(work, "hook.key"))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with open(os.path.join(work, "ca.crt"), "rb") as f:
        return server, base64.b64encode(f.read()).decode()


def crd(plural):
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.bench.skiff.dev"},
            "spec": {"group": "bench.skiff.dev", "scope": "Namespaced",
                     "names": {"plural": plural, "singular": plural[:-1],
                               "kind": plural[:-1].capitalize(), "listKind": plural[:-1].capitalize() + "List"},
                     "versions": [{"name": "v1", "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                                       "spec": {"type": "object", "properties": {
                                           "size": {"type": "integer", "default": 1}}}}}}}]}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skiff", default="target/release/skiff")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--creates", type=int, default=300)
    opts = ap.parse_args()
    work = tempfile.mkdtemp(prefix="skiff-bench-extend-")
    data = os.path.join(work, "data")
    port = free_port()
    server = subprocess.Popen([os.path.realpath(opts.skiff), "--data-dir", data, "server", "--listen",
                               f"127.0.0.1:{port}", "--no-agent"],
                              stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "server.log"), "w"))
    hook = None
    try:
        c, token, ctx = ready_client(data, port)

        # 1. CRD → servable.
        servable = []
        for i in range(opts.rounds):
            plural = f"widget{i}s"
            status, body = c.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd(plural))
            assert status == 201, (status, body)
            t0 = time.perf_counter()
            obj = {"apiVersion": "bench.skiff.dev/v1", "kind": plural[:-1].capitalize(),
                   "metadata": {"name": "w"}, "spec": {}}
            while True:
                try:
                    status, body = c.request("POST", f"/apis/bench.skiff.dev/v1/namespaces/default/{plural}", obj)
                except (OSError, http.client.HTTPException):
                    # A refused request body is not read, so the server closes the connection.
                    c = Client(port, token, ctx)
                    continue
                if status == 201:
                    break
                assert time.perf_counter() - t0 < 30, (status, body)
                time.sleep(0.002)
            servable.append((time.perf_counter() - t0) * 1000)
            assert json.loads(body)["spec"].get("size") == 1, body  # defaulted by the schema
        med, worst = statistics.median(servable), max(servable)
        print(f"CRD created → first object created: median {med:.1f} ms, max {worst:.1f} ms "
              f"over {opts.rounds} CRDs (target ≤ 1000 ms)")
        record("extend", "CRD servable after create (max)", round(worst, 1), "ms", target="≤ 1000 ms")

        def alternate(paths, body_of):
            """Creates alternating over `paths`; latencies (ms) per path."""
            lat = {p: [] for p in paths}
            for i in range(opts.creates * len(paths)):
                path = paths[i % len(paths)]
                t0 = time.perf_counter()
                status, body = c.request("POST", path, body_of(path, i))
                lat[path].append((time.perf_counter() - t0) * 1000)
                assert status == 201, (status, body)
            return lat

        # 2. Custom object writes against ConfigMap writes.
        cm_path = "/api/v1/namespaces/default/configmaps"
        cr_path = "/apis/bench.skiff.dev/v1/namespaces/default/widget0s"
        lat = alternate([cm_path, cr_path], lambda p, i: (
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}, "data": {"a": "b"}}
            if p == cm_path else
            {"apiVersion": "bench.skiff.dev/v1", "kind": "Widget0", "metadata": {"name": f"w{i}"},
             "spec": {}}))
        cm50, cr50 = pct(lat[cm_path], 50), pct(lat[cr_path], 50)
        print(f"create p50: ConfigMap {cm50:.2f} ms, custom object {cr50:.2f} ms ({cr50 / cm50:.2f}x)")
        record("extend", "custom object create p50", round(cr50, 2), "ms", peer="ConfigMap",
               peer_value=round(cm50, 2))

        # 3. Policy cost.
        for ns, labels in [("policed", {"bench": "policed"}), ("free", {})]:
            status, body = c.request("POST", "/api/v1/namespaces", {
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}})
            assert status == 201, (status, body)
        for n in range(3):
            policy = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
                      "metadata": {"name": f"bench{n}"},
                      "spec": {"failurePolicy": "Fail",
                               "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                                       "operations": ["CREATE"],
                                                                       "resources": ["configmaps"]}]},
                               "validations": [
                                   {"expression": "!has(object.data) || size(object.data) < 100",
                                    "message": "too many keys"},
                                   {"expression": "object.metadata.name.startsWith('c')",
                                    "message": "names start with c"}]}}
            binding = {"apiVersion": "admissionregistration.k8s.io/v1",
                       "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": f"bench{n}"},
                       "spec": {"policyName": f"bench{n}", "validationActions": ["Deny"],
                                "matchResources": {"namespaceSelector": {"matchLabels": {"bench": "policed"}}}}}
            for path, obj in [("validatingadmissionpolicies", policy),
                              ("validatingadmissionpolicybindings", binding)]:
                status, body = c.request("POST", f"/apis/admissionregistration.k8s.io/v1/{path}", obj)
                assert status == 201, (status, body)
        time.sleep(1)
        status, _ = c.request("POST", "/api/v1/namespaces/policed/configmaps", {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "denied"}})
        assert status == 422 or status == 403, status  # the policies are in force
        paths = ["/api/v1/namespaces/policed/configmaps", "/api/v1/namespaces/free/configmaps"]
        lat = alternate(paths, lambda p, i: {"apiVersion": "v1", "kind": "ConfigMap",
                                             "metadata": {"name": f"c{i}"}, "data": {"a": "b"}})
        with_p, without_p = pct(lat[paths[0]], 50), pct(lat[paths[1]], 50)
        print(f"ConfigMap create p50: {without_p:.2f} ms unbound, {with_p:.2f} ms under three policies "
              f"(+{with_p - without_p:.2f} ms)")
        record("extend", "create p50 added by three CEL policies", round(with_p - without_p, 2), "ms",
               peer="no policy", peer_value=round(without_p, 2))

        # 4. Webhook cost.
        hook, bundle = start_webhook(work)
        for ns, labels in [("hooked", {"bench": "hooked"}), ("plain", {})]:
            status, body = c.request("POST", "/api/v1/namespaces", {
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}})
            assert status == 201, (status, body)
        cfg = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
               "metadata": {"name": "bench"},
               "webhooks": [{"name": "allow.bench.skiff.dev", "sideEffects": "None",
                             "admissionReviewVersions": ["v1"], "failurePolicy": "Fail",
                             "clientConfig": {"url": f"https://127.0.0.1:{hook.server_address[1]}/validate",
                                              "caBundle": bundle},
                             "namespaceSelector": {"matchLabels": {"bench": "hooked"}},
                             "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                        "resources": ["configmaps"]}]}]}
        status, body = c.request("POST", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations", cfg)
        assert status == 201, (status, body)
        time.sleep(1)
        lat = {"hooked": [], "plain": []}
        for i in range(opts.creates * 2):
            ns = "hooked" if i % 2 == 0 else "plain"
            cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm{i}"}, "data": {"a": "b"}}
            t0 = time.perf_counter()
            status, body = c.request("POST", f"/api/v1/namespaces/{ns}/configmaps", cm)
            lat[ns].append((time.perf_counter() - t0) * 1000)
            assert status == 201, (status, body)
        with_hook, without = pct(lat["hooked"], 50), pct(lat["plain"], 50)
        added = with_hook - without
        print(f"ConfigMap create p50: {without:.2f} ms without a webhook, {with_hook:.2f} ms with one "
              f"(p99 {pct(lat['plain'], 99):.2f} / {pct(lat['hooked'], 99):.2f} ms): "
              f"+{added:.2f} ms (target ≤ 5 ms)")
        record("extend", "create p50 added by one webhook", round(added, 2), "ms",
               peer="no webhook", peer_value=round(without, 2), target="≤ 5 ms")
    finally:
        if hook:
            hook.shutdown()
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        subprocess.run([os.path.realpath(opts.skiff), "--data-dir", data, "reset"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
