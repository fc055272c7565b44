//! NodeRestriction (upstream's admission plugin of that name): what the Node authorizer allows
//! a node to write in general, this limits to the node's own objects — its Node (without
//! steering labels, taints or a config source), its Lease, the status of pods bound to it,
//! deleting and evicting those pods, mirror pods bound to itself, and tokens for its pods.
//! Messages are upstream's.

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde_json::Value;
use skiff_api::ApiError;

use super::{Operation, Plugin, Request};
use crate::auth::user::{groups, NODE_PREFIX};
use crate::authz::node::NODE_LEASE_NAMESPACE;
use crate::respond::ApiResult;

pub(crate) struct NodeRestriction;

const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";
const NODE_RESTRICTION_LABELS: &str = "node-restriction.kubernetes.io";

/// The node name of a node identity: `Some("")` for `system:node:` (which is refused).
fn node_identity(req: &Request<'_>) -> Option<String> {
    let user = req.user();
    let name = user.name.strip_prefix(NODE_PREFIX)?;
    user.in_group(groups::NODES).then(|| name.to_string())
}

fn op_name(op: Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// Upstream's `admission.NewForbidden`: the resource (without subresource) and the name of
/// the request, or of the object when the request has none.
pub(crate) fn forbidden(
    req: &Request<'_>,
    obj: Option<&Value>,
    msg: impl std::fmt::Display,
) -> ApiError {
    let info = req.ctx.info;
    let name = if req.name.is_empty() {
        obj.and_then(|o| o.pointer("/metadata/name"))
            .and_then(Value::as_str)
            .unwrap_or("")
    } else {
        req.name
    };
    let resource = if info.group.is_empty() {
        info.plural.to_string()
    } else {
        format!("{}.{}", info.plural, info.group)
    };
    let message = if name.is_empty() {
        format!("{resource} is forbidden: {msg}")
    } else {
        format!("{resource} {name:?} is forbidden: {msg}")
    };
    let mut details = serde_json::Map::new();
    if !name.is_empty() {
        details.insert("name".into(), name.into());
    }
    if !info.group.is_empty() {
        details.insert("group".into(), info.group.into());
    }
    details.insert("kind".into(), info.plural.into());
    let mut e = ApiError::forbidden(message);
    e.details = Some(Value::Object(details));
    e
}

fn str_at<'a>(v: Option<&'a Value>, ptr: &str) -> &'a str {
    v.and_then(|v| v.pointer(ptr))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// A list field where null, missing and `[]` are all "none" (upstream's semantic equality).
fn list_at<'a>(v: Option<&'a Value>, ptr: &str) -> &'a [Value] {
    v.and_then(|v| v.pointer(ptr))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn labels(v: Option<&Value>) -> serde_json::Map<String, Value> {
    v.and_then(|v| v.pointer("/metadata/labels"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// Label keys whose values differ between the two sets (added, removed or changed).
fn modified_labels(
    a: &serde_json::Map<String, Value>,
    b: &serde_json::Map<String, Value>,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (k, v) in a {
        if b.get(k) != Some(v) {
            out.insert(k.clone());
        }
    }
    for (k, v) in b {
        if a.get(k) != Some(v) {
            out.insert(k.clone());
        }
    }
    out
}

fn label_namespace(key: &str) -> &str {
    key.split_once('/').map_or("", |(ns, _)| ns)
}

fn in_domain(ns: &str, domain: &str) -> bool {
    ns == domain || ns.strip_suffix(domain).is_some_and(|p| p.ends_with('.'))
}

/// Upstream's `kubeletapis.IsKubeletLabel`: the labels a kubelet may set on its Node.
fn is_kubelet_label(key: &str) -> bool {
    const LABELS: &[&str] = &[
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
    ];
    if LABELS.contains(&key) {
        return true;
    }
    let ns = label_namespace(key);
    in_domain(ns, "kubelet.kubernetes.io") || in_domain(ns, "node.kubernetes.io")
}

/// Labels a node may not add, remove or change on its own Node.
fn forbidden_labels(modified: &BTreeSet<String>) -> Vec<String> {
    modified
        .iter()
        .filter(|k| {
            let ns = label_namespace(k);
            let kubernetes = in_domain(ns, "kubernetes.io") || in_domain(ns, "k8s.io");
            in_domain(ns, NODE_RESTRICTION_LABELS) || (kubernetes && !is_kubelet_label(k))
        })
        .cloned()
        .collect()
}

#[async_trait]
impl Plugin for NodeRestriction {
    fn name(&self) -> &'static str {
        "NodeRestriction"
    }

    fn handles(&self, req: &Request<'_>) -> bool {
        req.op != Operation::Connect
            && node_identity(req).is_some()
            && matches!(
                (req.ctx.info.group, req.ctx.info.plural),
                (
                    "",
                    "pods"
                        | "nodes"
                        | "persistentvolumeclaims"
                        | "persistentvolumes"
                        | "serviceaccounts"
                ) | ("coordination.k8s.io", "leases")
                    | ("storage.k8s.io", "csinodes")
            )
    }

    async fn validate(&self, req: &Request<'_>, obj: Option<&Value>) -> ApiResult<Vec<String>> {
        let Some(node) = node_identity(req) else {
            return Ok(Vec::new());
        };
        if node.is_empty() {
            return Err(forbidden(
                req,
                obj,
                format!("could not determine node from user {:?}", req.user().name),
            ));
        }
        let node = node.as_str();
        match (req.ctx.info.group, req.ctx.info.plural) {
            ("", "pods") => match req.subresource {
                "" => admit_pod(req, node, obj).await,
                "status" => admit_pod_status(req, node, obj),
                "eviction" => admit_eviction(req, node, obj),
                other => Err(forbidden(
                    req,
                    obj,
                    format!(
                        "unexpected pod subresource {other:?}, only 'status' and 'eviction' are allowed"
                    ),
                )),
            },
            ("", "nodes") => admit_node(req, node, obj),
            ("", "persistentvolumes") => admit_volume(req, node, obj),
            ("", "persistentvolumeclaims") => match req.subresource {
                "status" => admit_pvc_status(req, node, obj),
                _ => Err(forbidden(req, obj, "may only update PVC status")),
            },
            ("", "serviceaccounts") => admit_token(req, node, obj).await,
            ("coordination.k8s.io", "leases") => {
                if req.ctx.ns.as_deref() != Some(NODE_LEASE_NAMESPACE) {
                    return Err(forbidden(
                        req,
                        obj,
                        format!(
                            "can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"
                        ),
                    ));
                }
                own_name(req, node, obj, "can only access node lease with the same name as the requesting node")
            }
            ("storage.k8s.io", "csinodes") => own_name(
                req,
                node,
                obj,
                "can only access CSINode with the same name as the requesting node",
            ),
            _ => Ok(Vec::new()),
        }
    }
}

/// The object (on create) or the request must carry the node's own name.
fn own_name(
    req: &Request<'_>,
    node: &str,
    obj: Option<&Value>,
    msg: &str,
) -> ApiResult<Vec<String>> {
    let name = if req.op == Operation::Create {
        str_at(obj, "/metadata/name")
    } else {
        req.name
    };
    if name != node {
        return Err(forbidden(req, obj, msg));
    }
    Ok(Vec::new())
}

async fn admit_pod(req: &Request<'_>, node: &str, obj: Option<&Value>) -> ApiResult<Vec<String>> {
    match req.op {
        Operation::Create => admit_mirror_pod(req, node, obj).await,
        Operation::Delete => {
            if str_at(req.old, "/spec/nodeName") != node {
                return Err(forbidden(
                    req,
                    obj,
                    format!("node {node:?} can only delete pods with spec.nodeName set to itself"),
                ));
            }
            Ok(Vec::new())
        }
        op => Err(forbidden(
            req,
            obj,
            format!(
                "unexpected operation {:?}, node {node:?} can only create and delete mirror pods",
                op_name(op)
            ),
        )),
    }
}

async fn admit_mirror_pod(
    req: &Request<'_>,
    node: &str,
    obj: Option<&Value>,
) -> ApiResult<Vec<String>> {
    let Some(pod) = obj else {
        return Err(forbidden(req, obj, "unexpected type <nil>"));
    };
    let deny = |msg: String| Err(forbidden(req, obj, msg));
    if pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(MIRROR_POD_ANNOTATION))
        .is_none()
    {
        return deny(format!(
            "pod does not have {MIRROR_POD_ANNOTATION:?} annotation, node {node:?} can only create mirror pods"
        ));
    }
    if str_at(obj, "/spec/nodeName") != node {
        return deny(format!(
            "node {node:?} can only create pods with spec.nodeName set to itself"
        ));
    }
    let owners = list_at(obj, "/metadata/ownerReferences");
    match owners {
        [] => {
            return deny(format!(
                "node {node:?} can only create pods with an owner reference set to itself"
            ))
        }
        [owner] => {
            let s = |f: &str| owner.get(f).and_then(Value::as_str).unwrap_or("");
            if s("apiVersion") != "v1" || s("kind") != "Node" || s("name") != node {
                return deny(format!(
                    "node {node:?} can only create pods with an owner reference set to itself"
                ));
            }
            if owner.get("controller").and_then(Value::as_bool) != Some(true) {
                return deny(format!(
                    "node {node:?} can only create pods with a controller owner reference set to itself"
                ));
            }
            if owner.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true) {
                return deny(format!(
                    "node {node:?} must not set blockOwnerDeletion on an owner reference"
                ));
            }
            let key = format!("/registry/core/nodes/{node}");
            let stored = req
                .ctx
                .st
                .store
                .get(&key)
                .await
                .map_err(|e| {
                    forbidden(
                        req,
                        obj,
                        format!("error looking up node {node} to verify uid: {e}"),
                    )
                })?
                .ok_or_else(|| ApiError::not_found("", "nodes", node))?;
            let stored: Value = serde_json::from_slice(&stored.value).unwrap_or(Value::Null);
            let uid = str_at(Some(&stored), "/metadata/uid");
            if s("uid") != uid {
                return deny(format!(
                    "node {node} UID mismatch: expected {} got {uid}",
                    s("uid")
                ));
            }
        }
        _ => {
            return deny(format!(
                "node {node:?} can only create pods with a single owner reference set to itself"
            ))
        }
    }
    if !str_at(obj, "/spec/serviceAccountName").is_empty() {
        return deny(format!(
            "node {node:?} can not create pods that reference a service account"
        ));
    }
    // What the pod references, as the Node authorizer's graph sees it.
    let mut bound = pod.clone();
    if let Some(spec) = bound.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("serviceAccountName");
        spec.remove("serviceAccount");
    }
    if let Some(meta) = bound.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.entry("namespace").or_insert_with(|| "default".into());
        meta.entry("name").or_insert_with(|| "pod".into());
    }
    let refs = crate::authz::node::pod_refs(&bound).unwrap_or_default();
    use crate::authz::node::Kind;
    let has = |k: Kind| refs.refs.iter().any(|(kind, _, _)| *kind == k);
    if has(Kind::Secret) {
        return deny(format!(
            "node {node:?} can not create pods that reference secrets"
        ));
    }
    if has(Kind::ConfigMap) {
        return deny(format!(
            "node {node:?} can not create pods that reference configmaps"
        ));
    }
    let volumes = list_at(obj, "/spec/volumes");
    if volumes.iter().any(|v| {
        list_at(Some(v), "/projected/sources")
            .iter()
            .any(|s| s.get("clusterTrustBundle").is_some())
    }) {
        return deny(format!(
            "node {node:?} can not create pods that reference clustertrustbundles"
        ));
    }
    if volumes
        .iter()
        .any(|v| v.get("persistentVolumeClaim").is_some())
    {
        return deny(format!(
            "node {node:?} can not create pods that reference persistentvolumeclaims"
        ));
    }
    Ok(Vec::new())
}

fn admit_pod_status(req: &Request<'_>, node: &str, obj: Option<&Value>) -> ApiResult<Vec<String>> {
    if req.op != Operation::Update {
        return Err(forbidden(
            req,
            obj,
            format!("unexpected operation {:?}", op_name(req.op)),
        ));
    }
    if str_at(req.old, "/spec/nodeName") != node {
        return Err(forbidden(
            req,
            obj,
            format!("node {node:?} can only update pod status for pods with spec.nodeName set to itself"),
        ));
    }
    if labels(req.old) != labels(obj) {
        return Err(forbidden(
            req,
            obj,
            format!("node {node:?} cannot update labels through pod status"),
        ));
    }
    let claims = |v: Option<&Value>| list_at(v, "/status/resourceClaimStatuses").to_vec();
    if claims(req.old) != claims(obj) {
        return Err(forbidden(
            req,
            obj,
            format!("node {node:?} cannot update resource claim statues"),
        ));
    }
    Ok(Vec::new())
}

/// Evictions come with the pod as `old` (see `rest/subresources.rs`).
fn admit_eviction(req: &Request<'_>, node: &str, obj: Option<&Value>) -> ApiResult<Vec<String>> {
    if req.op != Operation::Create {
        return Err(forbidden(
            req,
            obj,
            format!("unexpected operation {}", op_name(req.op)),
        ));
    }
    if str_at(req.old, "/spec/nodeName") != node {
        return Err(forbidden(
            req,
            obj,
            format!("node {node} can only evict pods with spec.nodeName set to itself"),
        ));
    }
    Ok(Vec::new())
}

fn admit_pvc_status(req: &Request<'_>, node: &str, obj: Option<&Value>) -> ApiResult<Vec<String>> {
    if req.op != Operation::Update {
        return Err(forbidden(
            req,
            obj,
            format!("unexpected operation {:?}", op_name(req.op)),
        ));
    }
    // Everything but these may not change.
    let strip = |v: Option<&Value>| {
        let mut v = v.cloned().unwrap_or(Value::Null);
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
            meta.remove("managedFields");
        }
        if let Some(status) = v.get_mut("status").and_then(Value::as_object_mut) {
            for f in [
                "capacity",
                "conditions",
                "allocatedResources",
                "allocatedResourceStatuses",
            ] {
                status.remove(f);
            }
        }
        v
    };
    let (old, new) = (strip(req.old), strip(obj));
    if old != new {
        let changed: Vec<&str> = ["metadata", "spec", "status"]
            .into_iter()
            .filter(|f| old.get(*f) != new.get(*f))
            .collect();
        return Err(forbidden(
            req,
            obj,
            format!(
                "node {node:?} is not allowed to update fields other than status.capacity and status.conditions: {} changed",
                changed.join(", ")
            ),
        ));
    }
    Ok(Vec::new())
}

fn admit_node(req: &Request<'_>, node: &str, obj: Option<&Value>) -> ApiResult<Vec<String>> {
    let requested = if req.name.is_empty() {
        str_at(obj, "/metadata/name")
    } else {
        req.name
    };
    if requested != node {
        return Err(forbidden(
            req,
            obj,
            format!("node {node:?} is not allowed to modify node {requested:?}"),
        ));
    }
    let config_source = |v: Option<&Value>| {
        v.and_then(|v| v.pointer("/spec/configSource"))
            .filter(|c| !c.is_null())
            .cloned()
    };
    match req.op {
        Operation::Create => {
            if config_source(obj).is_some() {
                return Err(forbidden(
                    req,
                    obj,
                    format!(
                        "node {node:?} is not allowed to create pods with a non-nil configSource"
                    ),
                ));
            }
            let bad = forbidden_labels(&modified_labels(&labels(obj), &Default::default()));
            if !bad.is_empty() {
                return Err(forbidden(
                    req,
                    obj,
                    format!(
                        "node {node:?} is not allowed to set the following labels: {}",
                        bad.join(", ")
                    ),
                ));
            }
        }
        Operation::Update => {
            if let Some(c) = config_source(obj) {
                if Some(&c) != config_source(req.old).as_ref() {
                    return Err(forbidden(
                        req,
                        obj,
                        format!("node {node:?} is not allowed to update configSource to a new non-nil configSource"),
                    ));
                }
            }
            if list_at(obj, "/spec/taints") != list_at(req.old, "/spec/taints") {
                return Err(forbidden(
                    req,
                    obj,
                    format!("node {node:?} is not allowed to modify taints"),
                ));
            }
            let bad = forbidden_labels(&modified_labels(&labels(obj), &labels(req.old)));
            if !bad.is_empty() {
                // Upstream's message has no subject here.
                return Err(forbidden(
                    req,
                    obj,
                    format!("is not allowed to modify labels: {}", bad.join(", ")),
                ));
            }
        }
        _ => {}
    }
    Ok(Vec::new())
}

/// TokenRequests from a node must be bound to a pod on that node.
async fn admit_token(req: &Request<'_>, node: &str, obj: Option<&Value>) -> ApiResult<Vec<String>> {
    if req.op != Operation::Create || req.subresource != "token" {
        return Ok(Vec::new());
    }
    let r = |f: &str| str_at(obj, &format!("/spec/boundObjectRef/{f}"));
    if r("apiVersion") != "v1" || r("kind") != "Pod" || r("name").is_empty() {
        return Err(forbidden(
            req,
            obj,
            "node requested token not bound to a pod",
        ));
    }
    if r("uid").is_empty() {
        return Err(forbidden(
            req,
            obj,
            "node requested token with a pod binding without a uid",
        ));
    }
    let ns = req.ctx.ns.as_deref().unwrap_or("");
    let key = format!("/registry/core/pods/{ns}/{}", r("name"));
    let stored = req
        .ctx
        .st
        .store
        .get(&key)
        .await
        .map_err(|e| forbidden(req, obj, e))?
        .ok_or_else(|| ApiError::not_found("", "pods", r("name")))?;
    let pod: Value = serde_json::from_slice(&stored.value).unwrap_or(Value::Null);
    if str_at(Some(&pod), "/metadata/uid") != r("uid") {
        return Err(forbidden(
            req,
            obj,
            format!(
                "the UID in the bound object reference ({}) does not match the UID in record. The object might have been deleted and then recreated",
                r("uid")
            ),
        ));
    }
    if str_at(Some(&pod), "/spec/nodeName") != node {
        return Err(forbidden(
            req,
            obj,
            "node requested token bound to a pod scheduled on a different node",
        ));
    }
    Ok(Vec::new())
}

/// skiff's local-path cleanup finalizer (see skiff-controllers' persistentvolume controller).
const CLEANUP_FINALIZER: &str = "skiff.dev/local-path-cleanup";

/// A node may only remove the local-path cleanup finalizer of a volume pinned to itself (after
/// deleting the volume's directory); nothing else about volumes.
fn admit_volume(req: &Request<'_>, node: &str, obj: Option<&Value>) -> ApiResult<Vec<String>> {
    let (Operation::Update, Some(new), Some(old)) = (req.op, obj, req.old) else {
        return Err(forbidden(
            req,
            obj,
            format!("node {node:?} may only remove the {CLEANUP_FINALIZER} finalizer"),
        ));
    };
    if volume_change_allowed(node, old, new) {
        Ok(Vec::new())
    } else {
        Err(forbidden(
            req,
            obj,
            format!("node {node:?} may only remove the {CLEANUP_FINALIZER} finalizer of its own volumes"),
        ))
    }
}

/// The only volume update a node may make: dropping the cleanup finalizer of a volume pinned to
/// it (by `kubernetes.io/hostname`), nothing else changed.
fn volume_change_allowed(node: &str, old: &Value, new: &Value) -> bool {
    let pinned = list_at(Some(old), "/spec/nodeAffinity/required/nodeSelectorTerms")
        .iter()
        .flat_map(|t| list_at(Some(t), "/matchExpressions"))
        .any(|x| {
            str_at(Some(x), "/key") == "kubernetes.io/hostname"
                && list_at(Some(x), "/values")
                    .iter()
                    .any(|v| v.as_str() == Some(node))
        });
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in [
                "finalizers",
                "resourceVersion",
                "managedFields",
                "generation",
            ] {
                m.remove(k);
            }
        }
        v
    };
    let finalizers = |v: &Value| -> Vec<Value> {
        list_at(Some(v), "/metadata/finalizers")
            .iter()
            .filter(|f| f.as_str() != Some(CLEANUP_FINALIZER))
            .cloned()
            .collect()
    };
    let only_cleanup = strip(new) == strip(old)
        && finalizers(new) == finalizers(old)
        && list_at(Some(new), "/metadata/finalizers").len()
            <= list_at(Some(old), "/metadata/finalizers").len();
    pinned && only_cleanup
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_labels_are_upstreams() {
        let set = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<BTreeSet<_>>();
        assert!(forbidden_labels(&set(&[
            "kubernetes.io/hostname",
            "kubernetes.io/os",
            "beta.kubernetes.io/arch",
            "node.kubernetes.io/exclude-from-external-load-balancers",
            "foo.kubelet.kubernetes.io/x",
            "example.com/anything",
            "plain",
        ]))
        .is_empty());
        assert_eq!(
            forbidden_labels(&set(&[
                "node-restriction.kubernetes.io/pool",
                "x.node-restriction.kubernetes.io/a",
                "node-role.kubernetes.io/control-plane",
                "k8s.io/x",
                "example.com/ok",
            ])),
            [
                "k8s.io/x",
                "node-restriction.kubernetes.io/pool",
                "node-role.kubernetes.io/control-plane",
                "x.node-restriction.kubernetes.io/a",
            ]
        );
        assert!(!in_domain("evilkubernetes.io", "kubernetes.io"));
    }

    #[test]
    fn modified_labels_see_adds_removes_and_changes() {
        let m = |v: serde_json::Value| v.as_object().unwrap().clone();
        let a = m(serde_json::json!({"a": "1", "b": "2", "c": "3"}));
        let b = m(serde_json::json!({"a": "1", "b": "x", "d": "4"}));
        assert_eq!(
            modified_labels(&a, &b).into_iter().collect::<Vec<_>>(),
            ["b", "c", "d"]
        );
    }

    #[test]
    fn nodes_may_only_drop_the_cleanup_finalizer_of_their_volumes() {
        let pv = |finalizers: serde_json::Value, path: &str| {
            serde_json::json!({"metadata": {"name": "pvc-1", "finalizers": finalizers, "resourceVersion": "5"},
                "spec": {"hostPath": {"path": path}, "nodeAffinity": {"required": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}}})
        };
        let old = pv(
            serde_json::json!([CLEANUP_FINALIZER, "kubernetes.io/pv-protection"]),
            "/s/a",
        );
        let dropped = pv(serde_json::json!(["kubernetes.io/pv-protection"]), "/s/a");
        assert!(volume_change_allowed("n1", &old, &dropped));
        assert!(
            !volume_change_allowed("n2", &old, &dropped),
            "another node's volume"
        );
        let other = pv(serde_json::json!([CLEANUP_FINALIZER]), "/s/a");
        assert!(
            !volume_change_allowed("n1", &old, &other),
            "another finalizer dropped"
        );
        let moved = pv(serde_json::json!(["kubernetes.io/pv-protection"]), "/etc");
        assert!(!volume_change_allowed("n1", &old, &moved), "spec changed");
        let added = pv(
            serde_json::json!([CLEANUP_FINALIZER, "kubernetes.io/pv-protection", "x"]),
            "/s/a",
        );
        assert!(
            !volume_change_allowed("n1", &old, &added),
            "finalizer added"
        );
    }
}
