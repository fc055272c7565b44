//! Upstream defaulting (the values the real API server fills in): the entry points, which
//! dispatch to each kind's module in `kinds`, and the shared building blocks (pod spec,
//! containers, probes, volumes) the workload kinds default their templates with.
//!
//! Mirrors `k8s.io/kubernetes/pkg/apis/*/v1/defaults.go` (`SetDefaults_*`) plus the few
//! values the real server adds at create time that clients read back as if they were defaults
//! (Namespace finalizer and phase, Pod phase/QoS class/priority, Service IP families). Works on
//! the JSON form; fields already set are never changed.

use serde_json::{json, Map, Value};

use crate::ResourceInfo;

/// Fills defaults in place (e.g. Deployment replicas 1, strategy RollingUpdate 25%/25%,
/// revisionHistoryLimit 10, progressDeadlineSeconds 600; container imagePullPolicy,
/// terminationMessagePath; pod restartPolicy Always, dnsPolicy ClusterFirst, schedulerName,
/// terminationGracePeriodSeconds 30; service type ClusterIP, sessionAffinity None, port protocol
/// TCP and targetPort = port; ...).
pub fn apply_defaults(info: &ResourceInfo, object: &mut Value) {
    if crate::kinds::is_alt_version(info) {
        let mut stored = crate::kinds::to_stored(info, object.take());
        if let Some(obj) = stored.as_object_mut() {
            (crate::kinds::of(info).defaults)(obj);
        }
        *object = crate::kinds::from_stored(info, stored);
        return;
    }
    if let Some(obj) = object.as_object_mut() {
        (crate::kinds::of(info).defaults)(obj);
    }
}

/// The object at `key`, created as `{}` when missing or not an object.
pub(crate) fn child<'a>(obj: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = obj.entry(key.to_string()).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    match slot {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// Sets `key` when it is missing or null (a Null default only removes an explicit null).
pub(crate) fn default(obj: &mut Map<String, Value>, key: &str, value: Value) {
    if obj.get(key).is_none_or(Value::is_null) {
        if value.is_null() {
            obj.remove(key);
        } else {
            obj.insert(key.to_string(), value);
        }
    }
}

pub(crate) fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// The objects in the array at `key` (nothing if absent).
pub(crate) fn array<'a>(
    obj: &'a mut Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    obj.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// `SetDefaults_PodFailurePolicyOnPodConditionsPattern`: a pattern's `status` is "True".
pub(crate) fn pod_condition_patterns(spec: &mut Map<String, Value>) {
    if let Some(pfp) = spec
        .get_mut("podFailurePolicy")
        .and_then(Value::as_object_mut)
    {
        for rule in array(pfp, "rules") {
            for pattern in array(rule, "onPodConditions") {
                if pattern.get("status").is_none_or(is_empty) {
                    pattern.insert("status".into(), json!("True"));
                }
            }
        }
    }
}

/// Create-only strategy steps that need the server-assigned `metadata.uid` (call after it is
/// set and before [`apply_defaults`]), e.g. a Job's generated selector, a DaemonSet's first
/// template generation.
pub fn prepare_create(info: &ResourceInfo, object: &mut Value) {
    (crate::kinds::of(info).prepare_create)(object);
}

/// Update-only strategy steps (call after [`apply_defaults`], for main and status writes), e.g.
/// a DaemonSet's template generation bump.
pub fn prepare_update(info: &ResourceInfo, old: &Value, new: &mut Value) {
    (crate::kinds::of(info).prepare_update)(old, new);
}

/// Defaults `spec.template.spec` of a workload spec.
pub(crate) fn pod_template(spec: &mut Map<String, Value>) {
    if let Some(t) = spec.get_mut("template").and_then(Value::as_object_mut) {
        pod_spec(child(t, "spec"));
    }
}

/// `SetDefaults_PodSpec` and everything nested in it.
pub(crate) fn pod_spec(spec: &mut Map<String, Value>) {
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "securityContext", json!({}));
    default(spec, "schedulerName", json!("default-scheduler"));
    if spec.get("hostNetwork") == Some(&json!(true)) {
        // Host-network pods expose container ports on the host.
        for key in ["containers", "initContainers"] {
            for c in array(spec, key) {
                for p in array(c, "ports") {
                    if p.get("hostPort").is_none_or(Value::is_null) {
                        if let Some(cp) = p.get("containerPort").cloned() {
                            p.insert("hostPort".into(), cp);
                        }
                    }
                }
            }
        }
    }
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        for c in array(spec, key) {
            container(c);
        }
    }
    for v in array(spec, "volumes") {
        volume(v);
    }
}

fn container(c: &mut Map<String, Value>) {
    if c.get("imagePullPolicy").is_none_or(is_empty) {
        let image = c.get("image").and_then(Value::as_str).unwrap_or("");
        let policy = if image_tag(image) == "latest" {
            "Always"
        } else {
            "IfNotPresent"
        };
        c.insert("imagePullPolicy".into(), json!(policy));
    }
    default(c, "terminationMessagePath", json!("/dev/termination-log"));
    default(c, "terminationMessagePolicy", json!("File"));
    default(c, "resources", json!({}));
    for p in array(c, "ports") {
        default(p, "protocol", json!("TCP"));
    }
    for e in array(c, "env") {
        if let Some(fr) = e
            .get_mut("valueFrom")
            .and_then(|v| v.get_mut("fieldRef"))
            .and_then(Value::as_object_mut)
        {
            default(fr, "apiVersion", json!("v1"));
        }
    }
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(key).and_then(Value::as_object_mut) {
            default(p, "timeoutSeconds", json!(1));
            default(p, "periodSeconds", json!(10));
            default(p, "successThreshold", json!(1));
            default(p, "failureThreshold", json!(3));
            handler(p);
        }
    }
    if let Some(lc) = c.get_mut("lifecycle").and_then(Value::as_object_mut) {
        for key in ["postStart", "preStop"] {
            if let Some(h) = lc.get_mut(key).and_then(Value::as_object_mut) {
                handler(h);
            }
        }
    }
}

/// `SetDefaults_HTTPGetAction` (path "/", scheme HTTP) and gRPC probe service.
fn handler(h: &mut Map<String, Value>) {
    if let Some(g) = h.get_mut("httpGet").and_then(Value::as_object_mut) {
        default(g, "path", json!("/"));
        default(g, "scheme", json!("HTTP"));
    }
    if let Some(g) = h.get_mut("grpc").and_then(Value::as_object_mut) {
        default(g, "service", json!(""));
    }
}

/// The tag as `parsers.ParseImageName` sees it: "latest" when neither a tag nor a digest is given.
fn image_tag(image: &str) -> &str {
    if image.contains('@') {
        return "";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) => tag,
        None => "latest",
    }
}

const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

fn volume(v: &mut Map<String, Value>) {
    // A volume without a source is an emptyDir (SetDefaults_Volume).
    if !VOLUME_SOURCES
        .iter()
        .any(|k| v.get(*k).is_some_and(|x| !x.is_null()))
    {
        v.insert("emptyDir".into(), json!({}));
    }
    for key in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(src) = v.get_mut(key).and_then(Value::as_object_mut) {
            default(src, "defaultMode", json!(420));
            downward_items(src);
            for s in array(src, "sources") {
                if let Some(t) = s
                    .get_mut("serviceAccountToken")
                    .and_then(Value::as_object_mut)
                {
                    default(t, "expirationSeconds", json!(3600));
                }
                if let Some(d) = s.get_mut("downwardAPI").and_then(Value::as_object_mut) {
                    downward_items(d);
                }
            }
        }
    }
    if let Some(h) = v.get_mut("hostPath").and_then(Value::as_object_mut) {
        default(h, "type", json!(""));
    }
    if let Some(i) = v.get_mut("iscsi").and_then(Value::as_object_mut) {
        default(i, "iscsiInterface", json!("default"));
    }
    if let Some(r) = v.get_mut("rbd").and_then(Value::as_object_mut) {
        default(r, "pool", json!("rbd"));
        default(r, "user", json!("admin"));
        default(r, "keyring", json!("/etc/ceph/keyring"));
    }
    if let Some(d) = v.get_mut("azureDisk").and_then(Value::as_object_mut) {
        default(d, "cachingMode", json!("ReadWrite"));
        default(d, "fsType", json!("ext4"));
        default(d, "readOnly", json!(false));
        default(d, "kind", json!("Shared"));
    }
    if let Some(e) = v
        .get_mut("ephemeral")
        .and_then(|e| e.get_mut("volumeClaimTemplate"))
        .and_then(Value::as_object_mut)
    {
        default(child(e, "spec"), "volumeMode", json!("Filesystem"));
    }
}

fn downward_items(src: &mut Map<String, Value>) {
    for item in array(src, "items") {
        if let Some(fr) = item.get_mut("fieldRef").and_then(Value::as_object_mut) {
            default(fr, "apiVersion", json!("v1"));
        }
    }
}
