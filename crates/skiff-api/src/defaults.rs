//! Upstream defaulting (the values the real API server fills in) for the served kinds.
//!
//! Mirrors `k8s.io/kubernetes/pkg/apis/*/v1/defaults.go` (`SetDefaults_*`) plus the few
//! values the real server adds at create time that clients read back as if they were defaults
//! (Namespace finalizer and phase, Pod phase/QoS class/priority, Service IP families). Works on
//! the JSON form; fields already set are never changed.

use serde_json::{json, Map, Value};

use crate::ResourceInfo;
use skiff_semantics::wellknown::labels as wellknown;

/// Fills defaults in place (e.g. Deployment replicas 1, strategy RollingUpdate 25%/25%,
/// revisionHistoryLimit 10, progressDeadlineSeconds 600; container imagePullPolicy,
/// terminationMessagePath; pod restartPolicy Always, dnsPolicy ClusterFirst, schedulerName,
/// terminationGracePeriodSeconds 30; service type ClusterIP, sessionAffinity None, port protocol
/// TCP and targetPort = port; ...).
pub fn apply_defaults(info: &ResourceInfo, object: &mut Value) {
    let Some(obj) = object.as_object_mut() else {
        return;
    };
    match (info.group, info.kind) {
        ("apps", "Deployment") => deployment(obj),
        ("apps", "ReplicaSet") => {
            let spec = child(obj, "spec");
            default(spec, "replicas", json!(1));
            pod_template(spec);
        }
        ("apps", "StatefulSet") => stateful_set(obj),
        ("apps", "DaemonSet") => {
            let spec = child(obj, "spec");
            let strategy = child(spec, "updateStrategy");
            default(strategy, "type", json!("RollingUpdate"));
            if strategy.get("type") == Some(&json!("RollingUpdate")) {
                let ru = child(strategy, "rollingUpdate");
                default(ru, "maxUnavailable", json!(1));
                default(ru, "maxSurge", json!(0));
            }
            default(spec, "revisionHistoryLimit", json!(10));
            pod_template(spec);
            // Go always writes these four counters (no omitempty), so clients see zeros.
            let status = child(obj, "status");
            for key in [
                "currentNumberScheduled",
                "numberMisscheduled",
                "desiredNumberScheduled",
                "numberReady",
            ] {
                default(status, key, json!(0));
            }
        }
        ("batch", "Job") => job(obj),
        ("batch", "CronJob") => cron_job(obj),
        ("", "Pod") => pod(obj),
        ("", "PodTemplate") => {
            if let Some(t) = obj.get_mut("template").and_then(Value::as_object_mut) {
                pod_spec(child(t, "spec"));
            }
        }
        ("", "ReplicationController") => {
            let spec = child(obj, "spec");
            default(spec, "replicas", json!(1));
            // The selector and the object's labels default to the template labels.
            let labels = spec
                .get("template")
                .and_then(|t| t.pointer("/metadata/labels"))
                .cloned();
            if let Some(labels) = labels {
                if spec.get("selector").is_none_or(is_empty) {
                    spec.insert("selector".into(), labels.clone());
                }
                let meta = child(obj, "metadata");
                if meta.get("labels").is_none_or(is_empty) {
                    meta.insert("labels".into(), labels);
                }
            }
            pod_template(child(obj, "spec"));
        }
        ("", "Service") => service(obj),
        ("", "Namespace") => namespace(obj),
        ("", "Secret") => {
            default(obj, "type", json!("Opaque"));
            merge_string_data(obj);
        }
        ("", "Node") => node(obj),
        ("", "Endpoints") => {
            for subset in array(obj, "subsets") {
                for port in array(subset, "ports") {
                    default(port, "protocol", json!("TCP"));
                }
            }
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            for port in array(obj, "ports") {
                default(port, "protocol", json!("TCP"));
                default(port, "name", json!(""));
            }
        }
        ("", "PersistentVolumeClaim") => {
            let spec = child(obj, "spec");
            default(spec, "volumeMode", json!("Filesystem"));
            default(child(obj, "status"), "phase", json!("Pending"));
        }
        ("", "PersistentVolume") => {
            let spec = child(obj, "spec");
            default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
            default(spec, "volumeMode", json!("Filesystem"));
            default(child(obj, "status"), "phase", json!("Pending"));
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            for s in array(obj, "subjects") {
                if s.get("apiGroup").is_none() {
                    let group = match s.get("kind").and_then(Value::as_str) {
                        Some("User" | "Group") => "rbac.authorization.k8s.io",
                        _ => "",
                    };
                    s.insert("apiGroup".into(), json!(group));
                }
            }
        }
        ("networking.k8s.io", "NetworkPolicy") => network_policy(obj),
        ("autoscaling", "HorizontalPodAutoscaler") => {
            default(child(obj, "spec"), "minReplicas", json!(1));
        }
        _ => {}
    }
}

/// The object at `key`, created as `{}` when missing or not an object.
fn child<'a>(obj: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
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
fn default(obj: &mut Map<String, Value>, key: &str, value: Value) {
    if obj.get(key).is_none_or(Value::is_null) {
        if value.is_null() {
            obj.remove(key);
        } else {
            obj.insert(key.to_string(), value);
        }
    }
}

/// `Secret.stringData` is write-only: its values are merged into `data` (base64), winning over
/// `data` for the same key, and the field itself is never stored or returned (upstream does
/// this when converting to the internal type, on every write).
fn merge_string_data(obj: &mut Map<String, Value>) {
    use base64::Engine as _;
    let Some(Value::Object(string_data)) = obj.remove("stringData") else {
        return;
    };
    if string_data.is_empty() {
        return;
    }
    let data = child(obj, "data");
    for (k, v) in string_data {
        let plain = v.as_str().unwrap_or("");
        let encoded = base64::engine::general_purpose::STANDARD.encode(plain.as_bytes());
        data.insert(k, Value::String(encoded));
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// The objects in the array at `key` (nothing if absent).
fn array<'a>(
    obj: &'a mut Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    obj.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

fn deployment(obj: &mut Map<String, Value>) {
    let spec = child(obj, "spec");
    default(spec, "replicas", json!(1));
    let strategy = child(spec, "strategy");
    default(strategy, "type", json!("RollingUpdate"));
    if strategy.get("type") == Some(&json!("RollingUpdate")) {
        let ru = child(strategy, "rollingUpdate");
        default(ru, "maxUnavailable", json!("25%"));
        default(ru, "maxSurge", json!("25%"));
    }
    default(spec, "revisionHistoryLimit", json!(10));
    default(spec, "progressDeadlineSeconds", json!(600));
    pod_template(spec);
}

fn stateful_set(obj: &mut Map<String, Value>) {
    let spec = child(obj, "spec");
    default(spec, "replicas", json!(1));
    default(spec, "podManagementPolicy", json!("OrderedReady"));
    let strategy = child(spec, "updateStrategy");
    default(strategy, "type", json!("RollingUpdate"));
    if strategy.get("type") == Some(&json!("RollingUpdate")) {
        default(child(strategy, "rollingUpdate"), "partition", json!(0));
    }
    default(spec, "revisionHistoryLimit", json!(10));
    let retention = child(spec, "persistentVolumeClaimRetentionPolicy");
    default(retention, "whenDeleted", json!("Retain"));
    default(retention, "whenScaled", json!("Retain"));
    for pvc in array(spec, "volumeClaimTemplates") {
        default(child(pvc, "spec"), "volumeMode", json!("Filesystem"));
        default(child(pvc, "status"), "phase", json!("Pending"));
    }
    pod_template(spec);
}

/// `SetDefaults_Job`: the spec defaults, `manualSelector: false`, and the Job's own labels
/// default to its template's labels (on create they already include the generated ones, see
/// [`prepare_create`], as upstream's shared label map makes them).
fn job(obj: &mut Map<String, Value>) {
    let spec = child(obj, "spec");
    job_spec(spec);
    default(spec, "manualSelector", json!(false));
    let labels = spec
        .get("template")
        .and_then(|t| t.pointer("/metadata/labels"))
        .filter(|l| l.is_object())
        .cloned();
    if let Some(labels) = labels {
        let meta = child(obj, "metadata");
        if meta.get("labels").is_none_or(is_empty) {
            meta.insert("labels".into(), labels);
        }
    }
}

fn job_spec(spec: &mut Map<String, Value>) {
    // Both unset means a non-parallel job; a set parallelism leaves completions unset.
    if spec.get("completions").is_none_or(Value::is_null)
        && spec.get("parallelism").is_none_or(Value::is_null)
    {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    default(spec, "parallelism", json!(1));
    // With a per-index limit the global one is effectively off (math.MaxInt32).
    if spec
        .get("backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null())
    {
        default(spec, "backoffLimit", json!(i32::MAX));
    } else {
        default(spec, "backoffLimit", json!(6));
    }
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    pod_condition_patterns(spec);
    if spec.get("podFailurePolicy").is_none_or(Value::is_null) {
        default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    } else {
        default(spec, "podReplacementPolicy", json!("Failed"));
    }
    pod_template(spec);
}

/// `SetDefaults_PodFailurePolicyOnPodConditionsPattern`: a pattern's `status` is "True".
fn pod_condition_patterns(spec: &mut Map<String, Value>) {
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

/// `SetDefaults_CronJob` plus the nested-type defaulters. The job template gets only the pod
/// and pod-condition-pattern defaults: `SetDefaults_Job` is for Job objects, so the Job's own
/// defaults (completions, backoffLimit, ...) appear when the controller creates each Job.
fn cron_job(obj: &mut Map<String, Value>) {
    let spec = child(obj, "spec");
    // A non-pointer string in Go: "" (as protobuf bodies carry it) is unset too.
    if spec.get("concurrencyPolicy").is_none_or(is_empty) {
        spec.insert("concurrencyPolicy".into(), json!("Allow"));
    }
    default(spec, "suspend", json!(false));
    default(spec, "successfulJobsHistoryLimit", json!(3));
    default(spec, "failedJobsHistoryLimit", json!(1));
    if let Some(job_spec) = spec
        .get_mut("jobTemplate")
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    {
        pod_condition_patterns(job_spec);
        pod_template(job_spec);
    }
}

/// Labels the Job strategy puts on the pod template (legacy unprefixed ones too).
pub const JOB_NAME_LABELS: [&str; 2] = [wellknown::LEGACY_JOB_NAME, wellknown::JOB_NAME];
pub const JOB_UID_LABELS: [&str; 2] = [wellknown::LEGACY_CONTROLLER_UID, wellknown::CONTROLLER_UID];
/// The label a generated Job selector selects.
pub const JOB_SELECTOR_LABEL: &str = wellknown::CONTROLLER_UID;

/// Create-only strategy steps that need the server-assigned `metadata.uid` (call after it is
/// set and before [`apply_defaults`]): for a Job without `manualSelector: true`, upstream's
/// `generateSelector` adds `job-name`/`controller-uid` labels (both prefixed and legacy) to the
/// template unless present, and selects `batch.kubernetes.io/controller-uid=<uid>`. Labels the
/// user set are kept, so conflicting ones fail validation instead of being overwritten.
///
/// A DaemonSet starts at template generation 1 (or the annotation's value when higher, as
/// upstream's conversion reads it back), see [`DS_TEMPLATE_GENERATION`].
pub fn prepare_create(info: &ResourceInfo, object: &mut Value) {
    if (info.group, info.kind) == ("apps", "DaemonSet") {
        let generation = template_generation(object).max(1);
        set_template_generation(object, generation);
        return;
    }
    if (info.group, info.kind) != ("batch", "Job") {
        return;
    }
    let Some(obj) = object.as_object_mut() else {
        return;
    };
    let meta = obj.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let uid = meta
        .and_then(|m| m.get("uid"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let spec = child(obj, "spec");
    if spec.get("manualSelector") == Some(&json!(true)) {
        return;
    }
    let labels = child(child(child(spec, "template"), "metadata"), "labels");
    for key in JOB_NAME_LABELS {
        labels.entry(key).or_insert_with(|| json!(name));
    }
    for key in JOB_UID_LABELS {
        labels.entry(key).or_insert_with(|| json!(uid));
    }
    let selector = child(spec, "selector");
    child(selector, "matchLabels")
        .entry(JOB_SELECTOR_LABEL)
        .or_insert_with(|| json!(uid));
}

/// apps/v1 DaemonSets carry the internal `spec.templateGeneration` in this annotation (upstream's
/// v1 conversion writes it on every read, `kubectl get ds -o yaml` shows it).
pub const DS_TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

/// The template generation an object's annotation names (0 when missing or not a number).
fn template_generation(object: &Value) -> i64 {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(DS_TEMPLATE_GENERATION))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn set_template_generation(object: &mut Value, generation: i64) {
    let Some(obj) = object.as_object_mut() else {
        return;
    };
    child(child(obj, "metadata"), "annotations")
        .insert(DS_TEMPLATE_GENERATION.into(), json!(generation.to_string()));
}

/// Update-only strategy steps (call after [`apply_defaults`], for main and status writes):
/// a DaemonSet's template generation cannot be set by clients; it stays the stored one and
/// grows by one exactly when `spec.template` changes (upstream's `PrepareForUpdate`).
pub fn prepare_update(info: &ResourceInfo, old: &Value, new: &mut Value) {
    if (info.group, info.kind) != ("apps", "DaemonSet") {
        return;
    }
    let mut generation = template_generation(old);
    if new.pointer("/spec/template") != old.pointer("/spec/template") {
        generation += 1;
    }
    set_template_generation(new, generation);
}

/// Defaults `spec.template.spec` of a workload spec.
fn pod_template(spec: &mut Map<String, Value>) {
    if let Some(t) = spec.get_mut("template").and_then(Value::as_object_mut) {
        pod_spec(child(t, "spec"));
    }
}

fn pod(obj: &mut Map<String, Value>) {
    let spec = child(obj, "spec");
    pod_spec(spec);
    default(spec, "enableServiceLinks", json!(true));
    // Priority admission: no priorityClassName → priority 0, PreemptLowerPriority.
    if spec.get("priorityClassName").is_none_or(is_empty) {
        default(spec, "priority", json!(0));
    }
    default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    for key in ["containers", "initContainers"] {
        for c in array(spec, key) {
            // Requests default to limits (SetDefaults_Pod).
            if let Some(limits) = c
                .get("resources")
                .and_then(|r| r.get("limits"))
                .and_then(Value::as_object)
                .cloned()
            {
                let requests = child(child(c, "resources"), "requests");
                for (k, v) in limits {
                    requests.entry(k).or_insert(v);
                }
            }
        }
    }
    let qos = skiff_semantics::pod_qos_json(spec).as_str();
    let status = child(obj, "status");
    default(status, "phase", json!("Pending"));
    default(status, "qosClass", json!(qos));
}

/// `SetDefaults_PodSpec` and everything nested in it.
fn pod_spec(spec: &mut Map<String, Value>) {
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

fn service(obj: &mut Map<String, Value>) {
    let spec = child(obj, "spec");
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    if spec.get("sessionAffinity") == Some(&json!("ClientIP")) {
        let cip = child(child(spec, "sessionAffinityConfig"), "clientIP");
        default(cip, "timeoutSeconds", json!(10800));
    }
    for p in array(spec, "ports") {
        default(p, "protocol", json!("TCP"));
        if p.get("targetPort")
            .is_none_or(|t| t.is_null() || t == &json!(0) || t == &json!(""))
        {
            if let Some(port) = p.get("port").cloned() {
                p.insert("targetPort".into(), port);
            }
        }
    }
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if ty == "NodePort" || ty == "LoadBalancer" {
        default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if ty != "ExternalName" {
        default(spec, "internalTrafficPolicy", json!("Cluster"));
        // The registry picks the families; skiff is single-stack IPv4.
        default(spec, "ipFamilyPolicy", json!("SingleStack"));
        default(spec, "ipFamilies", json!(["IPv4"]));
    }
}

fn namespace(obj: &mut Map<String, Value>) {
    // SetDefaults_Namespace: the immutable kubernetes.io/metadata.name label.
    if let Some(name) = obj
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string)
    {
        let labels = child(child(obj, "metadata"), "labels");
        labels.insert(wellknown::METADATA_NAME.into(), json!(name));
    }
    let spec = child(obj, "spec");
    default(spec, "finalizers", json!(["kubernetes"]));
    default(child(obj, "status"), "phase", json!("Active"));
}

fn node(obj: &mut Map<String, Value>) {
    let status = child(obj, "status");
    if status.get("allocatable").is_none_or(Value::is_null) {
        if let Some(cap) = status.get("capacity").cloned() {
            status.insert("allocatable".into(), cap);
        }
    }
}

fn network_policy(obj: &mut Map<String, Value>) {
    let spec = child(obj, "spec");
    for key in ["ingress", "egress"] {
        for rule in array(spec, key) {
            for p in array(rule, "ports") {
                default(p, "protocol", json!("TCP"));
            }
        }
    }
    if spec.get("policyTypes").is_none_or(is_empty) {
        let mut types = vec![json!("Ingress")];
        if spec.get("egress").is_some_and(|e| !e.is_null()) {
            types.push(json!("Egress"));
        }
        spec.insert("policyTypes".into(), Value::Array(types));
    }
}
