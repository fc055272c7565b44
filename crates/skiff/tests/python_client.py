"""The Python `kubernetes` client against skiff: list, create, watch (run by tests/kubectl.rs)."""
import sys
import threading

from kubernetes import client, config, watch

config.load_kube_config(config_file=sys.argv[1])
core = client.CoreV1Api()
names = [ns.metadata.name for ns in core.list_namespace().items]
assert "default" in names and "kube-system" in names, names

seen = []
ready = threading.Event()


def watcher():
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_config_map, "default", timeout_seconds=10):
        seen.append((event["type"], event["object"].metadata.name))
        if event["object"].metadata.name == "from-python" and event["type"] == "ADDED":
            w.stop()


t = threading.Thread(target=watcher)
t.start()
body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="from-python", labels={"lang": "py"}),
                          data={"k": "v"})
created = core.create_namespaced_config_map("default", body)
assert created.metadata.resource_version, created
t.join(15)
assert ("ADDED", "from-python") in seen, seen
listed = core.list_namespaced_config_map("default", label_selector="lang=py")
assert [c.metadata.name for c in listed.items] == ["from-python"], listed
print("python client ok")
