"""The Python `kubernetes` client against skiff: list, create, watch, and the wire behaviours
its upstream e2e suite checks (Status bytes in errors, ReplicationControllers, create_from_yaml,
field selectors, deletecollection). Run by tests/kubectl.rs."""
import json
import os
import sys
import tempfile
import threading

from kubernetes import client, config, utils, watch
from kubernetes.client.rest import ApiException

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

# create_from_yaml of the same Deployment twice: the error text embeds the server's Status
# bytes, which must be upstream's (field order, trailing newline) byte for byte.
api_client = client.ApiClient()
dep = {"apiVersion": "apps/v1", "kind": "Deployment",
       "metadata": {"name": "twice", "labels": {"app": "twice"}},
       "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "twice"}},
                "template": {"metadata": {"labels": {"app": "twice"}},
                             "spec": {"containers": [{"name": "c", "image": "none.invalid/x"}]}}}}
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "triple.yaml")
    with open(path, "w") as f:
        f.write("\n---\n".join(json.dumps(dep) for _ in range(3)))
    try:
        utils.create_from_yaml(api_client, path)
        raise AssertionError("expected FailToCreateError")
    except utils.FailToCreateError as e:
        one = ('Error from server (Conflict): {"kind":"Status","apiVersion":"v1","metadata":{},'
               '"status":"Failure","message":"deployments.apps \\"twice\\" already exists",'
               '"reason":"AlreadyExists","details":{"name":"twice","group":"apps",'
               '"kind":"deployments"},"code":409}\n')
        assert str(e) == one + one, repr(str(e))
client.AppsV1Api().delete_namespaced_deployment("twice", "default")

# ReplicationControllers: created from YAML with a Service, read back, deleted.
rc = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "mock"},
      "spec": {"replicas": 2, "selector": {"app": "mock"},
               "template": {"metadata": {"labels": {"app": "mock"}},
                            "spec": {"containers": [{"name": "c", "image": "none.invalid/x"}]}}}}
svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mock"},
       "spec": {"selector": {"app": "mock"}, "ports": [{"port": 99}]}}
utils.create_from_dict(api_client, {"apiVersion": "v1", "kind": "List", "items": [svc, rc]})
got = core.read_namespaced_replication_controller("mock", "default")
assert got.spec.replicas == 2 and got.spec.selector == {"app": "mock"}, got
assert got.status.replicas == 0, got.status
core.delete_namespaced_replication_controller("mock", "default", propagation_policy="Background")
core.delete_namespaced_service("mock", "default", body={})

# Field selectors: upstream's labels per kind, booleans as "false" when unset, 400 otherwise.
nodes = core.list_node(field_selector="spec.unschedulable=false").items
assert nodes, "a schedulable node must match spec.unschedulable=false"
assert not core.list_node(field_selector="spec.unschedulable=true").items
try:
    core.list_node(field_selector="spec.podCIDR=x")
    raise AssertionError("expected 400")
except ApiException as e:
    assert e.status == 400, e
    assert json.loads(e.body)["message"] == "field label not supported: spec.podCIDR", e.body
pods = core.list_pod_for_all_namespaces(field_selector="spec.hostNetwork=false,status.phase!=Failed")
assert all(not p.spec.host_network for p in pods.items), pods

# deletecollection on Leases (and any kind that lists the verb), by label.
coord = client.CoordinationV1Api()
for name, labels in [("keep", {}), ("drop", {"deletecollection": "true"})]:
    coord.create_namespaced_lease("default", {"metadata": {"name": name, "labels": labels},
                                              "spec": {"holderIdentity": "py"}})
coord.delete_collection_namespaced_lease("default", label_selector="deletecollection=true")
left = [l.metadata.name for l in coord.list_namespaced_lease("default").items]
assert left == ["keep"], left
coord.delete_namespaced_lease("keep", "default")
print("python client ok")
