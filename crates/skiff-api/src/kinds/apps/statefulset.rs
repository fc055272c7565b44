//! apps/v1 StatefulSet: pods with stable identities and per-pod storage, started and updated in order.
//! Defaults (`SetDefaults_StatefulSet`), validation (`ValidateStatefulSet`, `...Update`,
//! `...StatusUpdate`) with upstream's messages, the printer and selectable fields.

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
        list_kind: "StatefulSetList",
        plural: "statefulsets",
        singular: "statefulset",
        namespaced: true,
        short_names: &["sts"],
        categories: ALL,
        verbs: FULL,
        subresources: &["status", "scale"],
    },
    defaults,
    // Pod names append `-<ordinal>` and become hostnames, so the set's name is a DNS label.
    name_rule: NameRule::Label,
    validate,
    table: Table {
        columns: COLUMNS,
        cells,
        ..Table::BASE
    },
    patch_root: Ty::Workload,
    ..Kind::BASE
};

fn defaults(obj: &mut Map<String, Value>) {
    let spec = child(obj, "spec");
    default(spec, "podManagementPolicy", json!("OrderedReady"));
    let strategy = child(spec, "updateStrategy");
    default(strategy, "type", json!("RollingUpdate"));
    if strategy.get("type") == Some(&json!("RollingUpdate")) {
        default(child(strategy, "rollingUpdate"), "partition", json!(0));
    }
    let retention = child(spec, "persistentVolumeClaimRetentionPolicy");
    default(retention, "whenDeleted", json!("Retain"));
    default(retention, "whenScaled", json!("Retain"));
    default(spec, "replicas", json!(1));
    default(spec, "revisionHistoryLimit", json!(10));
    pod_template(spec);
    for claim in array(spec, "volumeClaimTemplates") {
        // The v1 type embeds TypeMeta, which upstream prints for each template.
        default(claim, "apiVersion", json!("v1"));
        default(claim, "kind", json!("PersistentVolumeClaim"));
        default(child(claim, "spec"), "volumeMode", json!("Filesystem"));
        default(child(claim, "status"), "phase", json!("Pending"));
    }
    // `status.replicas` has no omitempty upstream.
    default(child(obj, "status"), "replicas", json!(0));
}

const SPEC_FORBIDDEN: &str = "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";

/// The spec fields an update may change (upstream copies these from the old spec before
/// comparing).
const MUTABLE: &[&str] = &[
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

fn validate(e: &mut Errs, obj: &Map<String, Value>, old: Option<&Value>) {
    let null = Value::Null;
    let spec = obj.get("spec").unwrap_or(&null);
    spec_fields(e, spec);
    status(e, obj.get("status"));
    let Some(old) = old else {
        return;
    };
    let fixed = |s: &Value| -> Value {
        let mut m = s.as_object().cloned().unwrap_or_default();
        for key in MUTABLE {
            m.remove(*key);
        }
        m.retain(|_, v| !v.is_null());
        Value::Object(m)
    };
    if fixed(spec) != fixed(old.get("spec").unwrap_or(&null)) {
        e.forbidden("spec", SPEC_FORBIDDEN);
    }
    let count = |o: Option<&Value>| {
        o.and_then(|o| o.pointer("/status/collisionCount"))
            .and_then(Value::as_i64)
    };
    if let Some(before) = count(Some(old)) {
        let now = obj
            .get("status")
            .and_then(|s| s.get("collisionCount"))
            .and_then(Value::as_i64);
        if now.is_none_or(|n| n < before) {
            e.invalid(
                "status.collisionCount",
                &Value::from(now.unwrap_or(0)),
                "cannot be decremented",
            );
        }
    }
}

/// An int or an `N%` string: (value, is a percentage).
fn int_or_percent(v: &Value) -> Option<(i64, bool)> {
    match v {
        Value::Number(n) => n.as_i64().map(|n| (n, false)),
        Value::String(s) => {
            let digits = s.strip_suffix('%')?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok().map(|n| (n, true))
        }
        _ => None,
    }
}

/// `ValidateStatefulSetSpec`.
fn spec_fields(e: &mut Errs, spec: &Value) {
    match spec.get("podManagementPolicy").and_then(Value::as_str) {
        None | Some("") => e.required("spec.podManagementPolicy", ""),
        Some("OrderedReady" | "Parallel") => {}
        Some(p) => e.invalid_str(
            "spec.podManagementPolicy",
            p,
            "must be 'OrderedReady' or 'Parallel'",
        ),
    }
    update_strategy(e, spec.get("updateStrategy"));
    retention(e, spec.get("persistentVolumeClaimRetentionPolicy"));
    non_negative(e, spec, "replicas", "spec.replicas");
    if let Some(ordinals) = spec.get("ordinals") {
        non_negative(e, ordinals, "start", "spec.ordinals.start");
    }
    non_negative(e, spec, "minReadySeconds", "spec.minReadySeconds");
    non_negative(e, spec, "revisionHistoryLimit", "spec.revisionHistoryLimit");
    if let Some(name) = spec.get("serviceName").and_then(Value::as_str) {
        if !name.is_empty() {
            for m in dns1123_label(name) {
                e.invalid_str("spec.serviceName", name, &m);
            }
        }
    }
    let selector = spec.get("selector").filter(|s| !s.is_null());
    let mut parses = false;
    match selector {
        None => e.required("spec.selector", ""),
        Some(sel) => {
            let count = |key: &str| match sel.get(key) {
                Some(Value::Object(m)) => m.len(),
                Some(Value::Array(a)) => a.len(),
                _ => 0,
            };
            if count("matchLabels") + count("matchExpressions") == 0 {
                e.invalid_omit(
                    "spec.selector",
                    &format!(
                        "{}: empty selector is invalid for statefulset",
                        go_label_selector(sel)
                    ),
                );
            } else {
                let before = e.0.len();
                label_selector(e, sel, "spec.selector");
                parses = e.0.len() == before;
            }
        }
    }
    let template = spec.get("template").filter(|t| !t.is_null());
    match template {
        None => e.required("spec.template", ""),
        Some(t) => {
            let empty = Map::new();
            let tl = t
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            if let Some(sel) = selector.filter(|_| parses) {
                if !label_selector_matches(sel, tl) {
                    e.invalid(
                        "spec.template.metadata.labels",
                        &Value::Object(tl.clone()),
                        "`selector` does not match template `labels`",
                    );
                }
            }
            // Upstream validates only the template's labels here (the pod spec's volumes
            // are completed by the claim templates, so pods are validated when created).
            template_labels(e, t, "spec.template");
        }
    }
    let rp = spec
        .pointer("/template/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("");
    if rp != "Always" {
        e.not_supported("spec.template.spec.restartPolicy", rp, &["Always"]);
    }
    if spec
        .pointer("/template/spec/activeDeadlineSeconds")
        .is_some_and(|v| !v.is_null())
    {
        e.forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            "activeDeadlineSeconds in StatefulSet is not Supported",
        );
    }
    if let Some(claims) = spec.get("volumeClaimTemplates").and_then(Value::as_array) {
        for (i, c) in claims.iter().enumerate() {
            let f = format!("spec.volumeClaimTemplates[{i}]");
            let name = c
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            if name.is_empty() {
                e.required(
                    &format!("{f}.metadata.name"),
                    "name or generateName is required",
                );
            }
            let modes = c
                .pointer("/spec/accessModes")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            if modes == 0 {
                e.required(
                    &format!("{f}.spec.accessModes"),
                    "at least 1 access mode is required",
                );
            }
            if c.pointer("/spec/resources/requests/storage").is_none() {
                e.required(&format!("{f}.spec.resources[storage]"), "");
            }
        }
    }
}

/// `ValidateStatefulSetUpdateStrategy` (after defaulting, so `type` is set).
fn update_strategy(e: &mut Errs, strategy: Option<&Value>) {
    let null = Value::Null;
    let strategy = strategy.unwrap_or(&null);
    let ty = strategy.get("type").and_then(Value::as_str).unwrap_or("");
    let ru = strategy.get("rollingUpdate").filter(|v| !v.is_null());
    match ty {
        "" => e.required("spec.updateStrategy", ""),
        "OnDelete" => {
            if ru.is_some() {
                e.invalid_omit(
                    "spec.updateStrategy.rollingUpdate",
                    "only allowed for updateStrategy 'RollingUpdate'",
                );
            }
        }
        "RollingUpdate" => {
            let Some(ru) = ru else {
                return;
            };
            non_negative(
                e,
                ru,
                "partition",
                "spec.updateStrategy.rollingUpdate.partition",
            );
            if let Some(v) = ru.get("maxUnavailable").filter(|v| !v.is_null()) {
                let f = "spec.updateStrategy.rollingUpdate.maxUnavailable";
                match int_or_percent(v) {
                    None => e.invalid(f, v, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"),
                    Some((n, pct)) => {
                        if n < 1 {
                            e.invalid(f, v, "must be greater than 0");
                        }
                        if pct && n > 100 {
                            e.invalid(f, v, "must not be greater than 100%");
                        }
                    }
                }
            }
        }
        other => e.invalid_str(
            "spec.updateStrategy",
            other,
            "must be 'RollingUpdate' or 'OnDelete'",
        ),
    }
}

/// `ValidatePersistentVolumeClaimRetentionPolicy`.
fn retention(e: &mut Errs, policy: Option<&Value>) {
    let Some(policy) = policy.filter(|p| !p.is_null()) else {
        return;
    };
    for key in ["whenDeleted", "whenScaled"] {
        let v = policy.get(key).and_then(Value::as_str).unwrap_or("");
        if v != "Retain" && v != "Delete" {
            e.not_supported(
                &format!("spec.persistentVolumeClaimRetentionPolicy.{key}"),
                v,
                &["Retain", "Delete"],
            );
        }
    }
}

/// `ValidateStatefulSetStatus`: counters are non-negative.
fn status(e: &mut Errs, status: Option<&Value>) {
    let Some(status) = status else {
        return;
    };
    for key in [
        "replicas",
        "readyReplicas",
        "currentReplicas",
        "updatedReplicas",
        "availableReplicas",
        "observedGeneration",
        "collisionCount",
    ] {
        non_negative(e, status, key, &format!("status.{key}"));
    }
    let count = |key: &str| status.get(key).and_then(Value::as_i64).unwrap_or(0);
    for (key, bound) in [
        ("readyReplicas", "replicas"),
        ("currentReplicas", "replicas"),
        ("updatedReplicas", "replicas"),
        ("availableReplicas", "readyReplicas"),
    ] {
        if count(key) > count(bound) {
            e.invalid(
                &format!("status.{key}"),
                &Value::from(count(key)),
                &format!("cannot be greater than status.{bound}"),
            );
        }
    }
}

#[rustfmt::skip]
const COLUMNS: &[Col] = &[
        NAME,
        ("Ready", "string", 0, "Number of the pod with ready state"),
        AGE,
        ("Containers", "string", 1, "Names of each container in the template."),
        ("Images", "string", 1, "Images referenced by each container in the template."),
];

/// `printStatefulSet`: ready/desired, the template's containers.
fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    let (names, images) = container_cells(obj);
    let ready = format!(
        "{}/{}",
        n(obj, "/status/readyReplicas"),
        n(obj, "/spec/replicas")
    );
    vec![
        json!(name),
        json!(ready),
        json!(age),
        json!(names),
        json!(images),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts() -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "serviceName": "web",
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}
                },
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
                }]
            }
        })
    }

    fn defaulted(mut v: Value) -> Value {
        if let Some(m) = v.as_object_mut() {
            defaults(m);
        }
        v
    }

    fn errors(v: &Value, old: Option<&Value>) -> Vec<String> {
        let mut e = Errs::default();
        if let Some(m) = v.as_object() {
            validate(&mut e, m, old);
        }
        e.0.iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn defaults_match_upstream() {
        let v = defaulted(sts());
        assert_eq!(v["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(v["spec"]["updateStrategy"]["type"], "RollingUpdate");
        assert_eq!(v["spec"]["updateStrategy"]["rollingUpdate"]["partition"], 0);
        assert_eq!(v["spec"]["replicas"], 1);
        assert_eq!(v["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(
            v["spec"]["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        let claim = &v["spec"]["volumeClaimTemplates"][0];
        assert_eq!(claim["spec"]["volumeMode"], "Filesystem");
        assert_eq!(claim["status"]["phase"], "Pending");
        assert_eq!(claim["kind"], "PersistentVolumeClaim");
        assert_eq!(v["spec"]["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(v["status"]["replicas"], 0);
        assert!(errors(&v, None).is_empty(), "{:?}", errors(&v, None));
    }

    #[test]
    fn immutable_spec_fields_are_forbidden() {
        let old = defaulted(sts());
        let mut new = old.clone();
        new["spec"]["serviceName"] = json!("other");
        assert_eq!(
            errors(&new, Some(&old)),
            vec![format!("spec: Forbidden: {SPEC_FORBIDDEN}")]
        );
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(5);
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx");
        new["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
        assert!(errors(&new, Some(&old)).is_empty());
    }

    #[test]
    fn invalid_fields_use_upstream_messages() {
        let mut v = defaulted(sts());
        v["spec"]["podManagementPolicy"] = json!("Random");
        v["spec"]["replicas"] = json!(-1);
        v["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = json!(-2);
        v["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] = json!("Keep");
        v["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        let errs = errors(&v, None).join("\n");
        assert!(errs.contains("spec.podManagementPolicy: Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'"), "{errs}");
        assert!(
            errs.contains("spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
            "{errs}"
        );
        assert!(
            errs.contains("spec.updateStrategy.rollingUpdate.partition: Invalid value: -2"),
            "{errs}"
        );
        assert!(
            errs.contains(
                "spec.persistentVolumeClaimRetentionPolicy.whenScaled: Unsupported value: \"Keep\""
            ),
            "{errs}"
        );
        assert!(
            errs.contains("spec.template.spec.restartPolicy: Unsupported value: \"Never\""),
            "{errs}"
        );
        let mut v = defaulted(sts());
        v["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        let errs = errors(&v, None).join("\n");
        assert!(
            errs.contains("`selector` does not match template `labels`"),
            "{errs}"
        );
    }

    #[test]
    fn status_counters_are_bounded() {
        let mut v = defaulted(sts());
        v["status"] = json!({"replicas": 1, "readyReplicas": 2, "availableReplicas": 3});
        let errs = errors(&v, None).join("\n");
        assert!(
            errs.contains(
                "status.readyReplicas: Invalid value: 2: cannot be greater than status.replicas"
            ),
            "{errs}"
        );
        assert!(errs.contains("status.availableReplicas: Invalid value: 3: cannot be greater than status.readyReplicas"), "{errs}");
    }

    #[test]
    fn table_shows_ready_over_desired() {
        let mut v = defaulted(sts());
        v["spec"]["replicas"] = json!(3);
        v["status"]["readyReplicas"] = json!(2);
        let cells = cells(&v, jiff::Timestamp::now());
        assert_eq!(cells[1], "2/3");
        assert_eq!(cells[3], "c");
        assert_eq!(cells[4], "busybox");
    }
}
