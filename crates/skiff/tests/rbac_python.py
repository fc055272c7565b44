"""The Python `kubernetes` client's RBAC objects against skiff (run by tests/rbac.rs): Roles and
RoleBindings from YAML with utils.create_from_yaml, read back and deleted, as the client's own
e2e test_utils does; then the bound user's access as the API server reports it."""
import os
import sys
import tempfile

from kubernetes import client, config, utils

config.load_kube_config(config_file=sys.argv[1])
api = client.ApiClient()
rbac = client.RbacAuthorizationV1Api(api)

docs = """
kind: Role
apiVersion: rbac.authorization.k8s.io/v1
metadata:
  namespace: default
  name: pod-reader
rules:
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "watch", "list"]
---
kind: RoleBinding
apiVersion: rbac.authorization.k8s.io/v1
metadata:
  namespace: default
  name: read-pods
subjects:
- kind: User
  name: jane
  apiGroup: rbac.authorization.k8s.io
roleRef:
  kind: Role
  name: pod-reader
  apiGroup: rbac.authorization.k8s.io
"""
with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
    f.write(docs)
try:
    utils.create_from_yaml(api, f.name, verbose=True)
finally:
    os.unlink(f.name)

role = rbac.read_namespaced_role(name="pod-reader", namespace="default")
assert role.metadata.name == "pod-reader", role
assert role.rules[0].resources[0] == "pods", role
binding = rbac.read_namespaced_role_binding(name="read-pods", namespace="default")
assert binding.role_ref.name == "pod-reader", binding
assert binding.subjects[0].name == "jane", binding

authz = client.AuthorizationV1Api(api)
review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
    user="jane",
    resource_attributes=client.V1ResourceAttributes(namespace="default", verb="list", resource="pods")))
status = authz.create_subject_access_review(review).status
assert status.allowed, status
review.spec.resource_attributes.verb = "delete"
assert not authz.create_subject_access_review(review).status.allowed

rbac.delete_namespaced_role_binding(name="read-pods", namespace="default")
rbac.delete_namespaced_role(name="pod-reader", namespace="default")
names = [r.metadata.name for r in rbac.list_namespaced_role("default").items]
assert "pod-reader" not in names, names
print("python rbac ok")
