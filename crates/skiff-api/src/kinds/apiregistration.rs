//! apiregistration.k8s.io/v1 APIService: a group/version served by this server ("Local") or
//! by an extension API server behind a Service. Defaults, validation and the Table follow
//! kube-aggregator (`SetDefaults_ServiceReference`, `ValidateAPIService`, the APIService
//! REST storage's `ConvertToTable`).

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;

pub(crate) const API_SERVICE: Kind = Kind {
    info: ResourceInfo {
        group: "apiregistration.k8s.io",
        version: "v1",
        kind: "APIService",
        list_kind: "APIServiceList",
        plural: "apiservices",
        singular: "apiservice",
        namespaced: false,
        short_names: &[],
        categories: &["api-extensions"],
        verbs: FULL,
        subresources: &["status"],
    },
    defaults,
    // Upstream checks the name with `path.IsValidPathSegmentName` plus the version.group rule
    // in `validate`.
    name_rule: NameRule::PathSegment,
    validate,
    table: Table {
        columns: COLUMNS,
        cells,
        ..Table::BASE
    },
    ..Kind::BASE
};

/// `SetDefaults_ServiceReference`: the port of a service reference defaults to 443.
fn defaults(obj: &mut Map<String, Value>) {
    if let Some(svc) = obj
        .get_mut("spec")
        .and_then(|s| s.get_mut("service"))
        .and_then(Value::as_object_mut)
    {
        svc.entry("port").or_insert(json!(443));
    }
}

fn validate(e: &mut Errs, obj: &Map<String, Value>, _old: Option<&Value>) {
    let null = Value::Null;
    let spec = obj.get("spec").unwrap_or(&null);
    let group = spec.get("group").and_then(Value::as_str).unwrap_or("");
    let version = spec.get("version").and_then(Value::as_str).unwrap_or("");
    let required = format!("{version}.{group}");
    let name = obj
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    // Path-segment failures are reported by the ObjectMeta checks already.
    if !name.is_empty() && path_segment(name).is_empty() && name != required {
        e.invalid_str(
            "metadata.name",
            name,
            &format!("must be `spec.version+\".\"+spec.group`: {required:?}"),
        );
    }
    if group.is_empty() && version != "v1" {
        e.required(
            "spec.group",
            "only v1 may have an empty group and it better be legacy kube",
        );
    }
    if !group.is_empty() {
        for m in dns1123_subdomain(group) {
            e.invalid_str("spec.group", group, &m);
        }
    }
    for m in dns1035_label(version) {
        e.invalid_str("spec.version", version, &m);
    }
    let group_min = spec
        .get("groupPriorityMinimum")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if group_min <= 0 || group_min > 20000 {
        e.invalid(
            "spec.groupPriorityMinimum",
            &json!(group_min),
            "must be positive and less than 20000",
        );
    }
    let version_prio = spec
        .get("versionPriority")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if version_prio <= 0 || version_prio > 1000 {
        e.invalid(
            "spec.versionPriority",
            &json!(version_prio),
            "must be positive and less than 1000",
        );
    }
    let ca_len = ca_bundle_len(spec);
    let insecure = spec
        .get("insecureSkipTLSVerify")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    match spec.get("service").filter(|s| !s.is_null()) {
        None => {
            if ca_len > 0 {
                e.invalid_str(
                    "spec.caBundle",
                    &format!("{ca_len} bytes"),
                    "local APIServices may not have a caBundle",
                );
            }
            if insecure {
                e.invalid(
                    "spec.insecureSkipTLSVerify",
                    &json!(true),
                    "local APIServices may not have insecureSkipTLSVerify",
                );
            }
        }
        Some(svc) => {
            if svc
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                e.required("spec.service.namespace", "");
            }
            if svc
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                e.required("spec.service.name", "");
            }
            let port = svc.get("port").and_then(Value::as_i64).unwrap_or(0);
            if !(1..=65535).contains(&port) {
                e.invalid(
                    "spec.service.port",
                    &json!(port),
                    "port is not valid: must be between 1 and 65535, inclusive",
                );
            }
            if insecure && ca_len > 0 {
                e.invalid(
                    "spec.insecureSkipTLSVerify",
                    &json!(true),
                    "may not be true if caBundle is present",
                );
            }
        }
    }
    // `ValidateAPIServiceStatus`.
    let conditions = obj
        .get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array);
    for (i, c) in conditions.into_iter().flatten().enumerate() {
        let status = c.get("status").and_then(Value::as_str).unwrap_or("");
        if !matches!(status, "True" | "False" | "Unknown") {
            e.not_supported(
                &format!("status.conditions[{i}].status"),
                status,
                &["False", "True", "Unknown"],
            );
        }
        if c.get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            e.required(&format!("status.conditions[{i}].type"), "");
        }
    }
}

/// Decoded length of `spec.caBundle` (base64 in JSON); an undecodable value counts by its text.
fn ca_bundle_len(spec: &Value) -> usize {
    let Some(b) = spec.get("caBundle").and_then(Value::as_str) else {
        return 0;
    };
    base64::engine::general_purpose::STANDARD
        .decode(b)
        .map(|v| v.len())
        .unwrap_or(b.len())
}

const COLUMNS: &[Col] = &[
    NAME,
    (
        "Service",
        "string",
        0,
        "The reference to the service that hosts this API endpoint.",
    ),
    (
        "Available",
        "string",
        0,
        "Whether this service is available.",
    ),
    AGE,
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    let service = match obj.pointer("/spec/service").filter(|s| !s.is_null()) {
        Some(svc) => format!("{}/{}", s(svc, "/namespace"), s(svc, "/name")),
        None => "Local".to_string(),
    };
    vec![
        json!(name),
        json!(service),
        json!(available(obj)),
        json!(age),
    ]
}

/// `True`, `False (Reason)` or `Unknown`, as upstream prints the Available condition.
fn available(obj: &Value) -> String {
    let Some(c) = arr(obj, "/status/conditions")
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Available"))
    else {
        return "Unknown".to_string();
    };
    let status = c.get("status").and_then(Value::as_str).unwrap_or("");
    let reason = c.get("reason").and_then(Value::as_str).unwrap_or("");
    if status == "True" || reason.is_empty() {
        status.to_string()
    } else {
        format!("{status} ({reason})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(obj: Value) -> Vec<String> {
        let mut e = Errs::default();
        validate(&mut e, obj.as_object().expect("object"), None);
        e.0.iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn service_backed_apiservice_rules() {
        let mut obj = json!({
            "metadata": {"name": "v1.example.com"},
            "spec": {"group": "example.com", "version": "v1", "groupPriorityMinimum": 100,
                "versionPriority": 100, "service": {"namespace": "ns", "name": "api"}},
        });
        defaults(obj.as_object_mut().expect("object"));
        assert_eq!(obj["spec"]["service"]["port"], 443);
        assert!(errs(obj.clone()).is_empty(), "{:?}", errs(obj));

        let bad = json!({
            "metadata": {"name": "v2.example.com"},
            "spec": {"group": "example.com", "version": "v1", "groupPriorityMinimum": 0,
                "versionPriority": 1001, "caBundle": "AAAA", "insecureSkipTLSVerify": true,
                "service": {"namespace": "", "name": "api", "port": 70000}},
        });
        assert_eq!(
            errs(bad),
            vec![
                "metadata.name: Invalid value: \"v2.example.com\": must be `spec.version+\".\"+spec.group`: \"v1.example.com\"",
                "spec.groupPriorityMinimum: Invalid value: 0: must be positive and less than 20000",
                "spec.versionPriority: Invalid value: 1001: must be positive and less than 1000",
                "spec.service.namespace: Required value",
                "spec.service.port: Invalid value: 70000: port is not valid: must be between 1 and 65535, inclusive",
                "spec.insecureSkipTLSVerify: Invalid value: true: may not be true if caBundle is present",
            ]
        );
    }

    #[test]
    fn local_apiservice_rules() {
        let ok = json!({
            "metadata": {"name": "v1."},
            "spec": {"version": "v1", "groupPriorityMinimum": 18000, "versionPriority": 1},
        });
        assert!(errs(ok).is_empty());
        let bad = json!({
            "metadata": {"name": "v2."},
            "spec": {"version": "v2", "groupPriorityMinimum": 1, "versionPriority": 1,
                "caBundle": "AAAA", "insecureSkipTLSVerify": true},
        });
        assert_eq!(
            errs(bad),
            vec![
                "spec.group: Required value: only v1 may have an empty group and it better be legacy kube",
                "spec.caBundle: Invalid value: \"3 bytes\": local APIServices may not have a caBundle",
                "spec.insecureSkipTLSVerify: Invalid value: true: local APIServices may not have insecureSkipTLSVerify",
            ]
        );
    }

    #[test]
    fn table_cells() {
        let now = jiff::Timestamp::now();
        let local = json!({"metadata": {"name": "v1."},
            "status": {"conditions": [{"type": "Available", "status": "True", "reason": "Local"}]}});
        assert_eq!(cells(&local, now)[1..3], [json!("Local"), json!("True")]);
        let remote = json!({"metadata": {"name": "v1beta1.metrics.k8s.io"},
            "spec": {"service": {"namespace": "kube-system", "name": "metrics-server"}},
            "status": {"conditions": [{"type": "Available", "status": "False",
                "reason": "MissingEndpoints"}]}});
        assert_eq!(
            cells(&remote, now)[1..3],
            [
                json!("kube-system/metrics-server"),
                json!("False (MissingEndpoints)")
            ]
        );
        let unknown = json!({"metadata": {"name": "v1.x"}});
        assert_eq!(cells(&unknown, now)[2], json!("Unknown"));
    }
}
