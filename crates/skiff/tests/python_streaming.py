"""The Python `kubernetes` client's streaming calls against skiff (run by tests/streaming.rs):
exec over v4.channel.k8s.io with stdin in TEXT frames, and port-forward over the WebSocket
channel protocol (the 2-byte port prefixes, data and error channels)."""
import sys

from kubernetes import client, config
from kubernetes.stream import portforward, stream

config.load_kube_config(config_file=sys.argv[1])
pod = sys.argv[2]
core = client.CoreV1Api()

out = stream(core.connect_get_namespaced_pod_exec, pod, "default", command=["echo", "hi"],
             stderr=True, stdin=False, stdout=True, tty=False)
assert out == "hi\n", repr(out)

# Interactive: the client writes stdin as TEXT frames (channel byte 0 + text).
ws = stream(core.connect_get_namespaced_pod_exec, pod, "default", command=["head", "-n", "1"],
            stderr=True, stdin=True, stdout=True, tty=False, _preload_content=False)
ws.write_stdin("from python\n")
got = ""
while ws.is_open() and "from python" not in got:
    ws.update(timeout=5)
    got += ws.read_stdout()
ws.close()
assert got == "from python\n", repr(got)

# port-forward: an HTTP request through the pod's httpd on 8080.
pf = portforward(core.connect_get_namespaced_pod_portforward, pod, "default", ports="8080")
sock = pf.socket(8080)
sock.setblocking(True)
sock.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
data = b""
while True:
    chunk = sock.recv(1024)
    if not chunk:
        break
    data += chunk
sock.close()
assert b"200 OK" in data and b"hello" in data, data
assert pf.error(8080) is None, pf.error(8080)
print("python streaming ok")
