//! rbac.authorization.k8s.io/v1: Role, ClusterRole, RoleBinding, ClusterRoleBinding — served,
//! defaulted, validated and printed as upstream (the authorizer that reads them is separate).

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;

const GROUP: &str = "rbac.authorization.k8s.io";

const fn info(
    kind: &'static str,
    list_kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
) -> ResourceInfo {
    ResourceInfo {
        group: GROUP,
        version: "v1",
        kind,
        list_kind,
        plural,
        singular,
        namespaced,
        short_names: &[],
        categories: &[],
        verbs: FULL,
        subresources: &[],
    }
}

pub(crate) const ROLE: Kind = Kind {
    info: info("Role", "RoleList", "roles", "role", true),
    name_rule: NameRule::PathSegment,
    validate: |e, obj, _| rules(e, obj, true),
    table: ROLE_TABLE,
    ..Kind::BASE
};

pub(crate) const CLUSTER_ROLE: Kind = Kind {
    info: info(
        "ClusterRole",
        "ClusterRoleList",
        "clusterroles",
        "clusterrole",
        false,
    ),
    name_rule: NameRule::PathSegment,
    validate: cluster_role,
    table: ROLE_TABLE,
    ..Kind::BASE
};

pub(crate) const ROLE_BINDING: Kind = Kind {
    info: info(
        "RoleBinding",
        "RoleBindingList",
        "rolebindings",
        "rolebinding",
        true,
    ),
    defaults: binding_defaults,
    name_rule: NameRule::PathSegment,
    validate: |e, obj, old| binding(e, obj, old, true),
    table: BINDING_TABLE,
    ..Kind::BASE
};

pub(crate) const CLUSTER_ROLE_BINDING: Kind = Kind {
    info: info(
        "ClusterRoleBinding",
        "ClusterRoleBindingList",
        "clusterrolebindings",
        "clusterrolebinding",
        false,
    ),
    defaults: binding_defaults,
    name_rule: NameRule::PathSegment,
    validate: |e, obj, old| binding(e, obj, old, false),
    table: BINDING_TABLE,
    ..Kind::BASE
};

/// `SetDefaults_Subject` and the roleRef group: users and groups are RBAC subjects, service
/// accounts are core.
fn binding_defaults(obj: &mut Map<String, Value>) {
    if let Some(r) = obj.get_mut("roleRef").and_then(Value::as_object_mut) {
        if r.get("apiGroup")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            r.insert("apiGroup".into(), json!(GROUP));
        }
    }
    let subjects = obj.get_mut("subjects").and_then(Value::as_array_mut);
    for s in subjects
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
    {
        if !s
            .get("apiGroup")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            continue;
        }
        let group = match s.get("kind").and_then(Value::as_str) {
            Some("User" | "Group") => GROUP,
            Some("ServiceAccount") => "",
            _ => continue,
        };
        s.insert("apiGroup".into(), json!(group));
    }
}

fn len(v: Option<&Value>) -> usize {
    v.and_then(Value::as_array).map_or(0, Vec::len)
}

/// `ValidatePolicyRule` for every rule.
fn rules(e: &mut Errs, obj: &Map<String, Value>, namespaced: bool) {
    let list = obj.get("rules").and_then(Value::as_array);
    for (i, rule) in list.into_iter().flatten().enumerate() {
        let f = format!("rules[{i}]");
        if len(rule.get("verbs")) == 0 {
            e.required(
                &format!("{f}.verbs"),
                "verbs must contain at least one value",
            );
        }
        let urls = rule.get("nonResourceURLs").filter(|v| len(Some(v)) > 0);
        if let Some(urls) = urls {
            let uf = format!("{f}.nonResourceURLs");
            // Upstream prints the Go slice (`[]string{"/healthz"}`).
            let shown: Vec<String> = urls
                .as_array()
                .into_iter()
                .flatten()
                .map(|u| format!("{:?}", u.as_str().unwrap_or("")))
                .collect();
            let shown = format!("[]string{{{}}}", shown.join(", "));
            let mut invalid = |detail: &str| {
                e.push(
                    "FieldValueInvalid",
                    &uf,
                    format!("Invalid value: {shown}: {detail}"),
                );
            };
            if namespaced {
                invalid("namespaced rules cannot apply to non-resource URLs");
            }
            if ["apiGroups", "resources", "resourceNames"]
                .iter()
                .any(|k| len(rule.get(*k)) > 0)
            {
                invalid("rules cannot apply to both regular resources and non-resource URLs");
            }
            continue;
        }
        if len(rule.get("apiGroups")) == 0 {
            e.required(
                &format!("{f}.apiGroups"),
                "resource rules must supply at least one api group",
            );
        }
        if len(rule.get("resources")) == 0 {
            e.required(
                &format!("{f}.resources"),
                "resource rules must supply at least one resource",
            );
        }
    }
}

fn cluster_role(e: &mut Errs, obj: &Map<String, Value>, _old: Option<&Value>) {
    rules(e, obj, false);
    let Some(agg) = obj.get("aggregationRule").filter(|v| !v.is_null()) else {
        return;
    };
    let selectors = agg.get("clusterRoleSelectors").and_then(Value::as_array);
    if selectors.is_none_or(Vec::is_empty) {
        e.required(
            "aggregationRule.clusterRoleSelectors",
            "at least one clusterRoleSelector required if aggregationRule is non-nil",
        );
    }
    for (i, sel) in selectors.into_iter().flatten().enumerate() {
        label_selector(
            e,
            sel,
            &format!("aggregationRule.clusterRoleSelectors[{i}]"),
        );
    }
}

/// `ValidateRoleBinding` / `ValidateClusterRoleBinding` (+ the immutable roleRef on update).
fn binding(e: &mut Errs, obj: &Map<String, Value>, old: Option<&Value>, namespaced: bool) {
    let role_ref = obj.get("roleRef").unwrap_or(&Value::Null);
    let get = |k: &str| role_ref.get(k).and_then(Value::as_str).unwrap_or("");
    if get("apiGroup") != GROUP {
        e.not_supported("roleRef.apiGroup", get("apiGroup"), &[GROUP]);
    }
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&get("kind")) {
        e.not_supported("roleRef.kind", get("kind"), kinds);
    }
    let name = get("name");
    if name.is_empty() {
        e.required("roleRef.name", "");
    }
    for msg in path_segment(name) {
        e.invalid_str("roleRef.name", name, &msg);
    }
    let subjects = obj.get("subjects").and_then(Value::as_array);
    for (i, s) in subjects.into_iter().flatten().enumerate() {
        subject(e, s, namespaced, &format!("subjects[{i}]"));
    }
    if let Some(old_ref) = old.and_then(|o| o.get("roleRef")) {
        if old_ref != role_ref {
            e.invalid("roleRef", role_ref, "cannot change roleRef");
        }
    }
}

fn subject(e: &mut Errs, s: &Value, namespaced: bool, f: &str) {
    let get = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("");
    let name = get("name");
    if name.is_empty() {
        e.required(&format!("{f}.name"), "");
    }
    let group = get("apiGroup");
    match get("kind") {
        "ServiceAccount" => {
            if !name.is_empty() {
                for msg in dns1123_subdomain(name) {
                    e.invalid_str(&format!("{f}.name"), name, &msg);
                }
            }
            if !group.is_empty() {
                e.not_supported(&format!("{f}.apiGroup"), group, &[""]);
            }
            if !namespaced && get("namespace").is_empty() {
                e.required(&format!("{f}.namespace"), "");
            }
        }
        "User" | "Group" => {
            if group != GROUP {
                e.not_supported(&format!("{f}.apiGroup"), group, &[GROUP]);
            }
        }
        other => e.not_supported(
            &format!("{f}.kind"),
            other,
            &["ServiceAccount", "User", "Group"],
        ),
    }
}

const ROLE_TABLE: Table = Table {
    columns: &[NAME, ("Created At", "date", 0, AGE_DOC)],
    cells: role_cells,
    ..Table::BASE
};

/// Roles print their creation time as RFC 3339 in UTC, not an age.
fn role_cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, _) = name_age(obj, now);
    vec![json!(name), json!(s(obj, "/metadata/creationTimestamp"))]
}

#[rustfmt::skip]
const BINDING_TABLE: Table = Table {
    columns: &[
        NAME,
        ("Role", "string", 0, "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable."),
        AGE,
        ("Users", "string", 1, "Users in the roleBinding"),
        ("Groups", "string", 1, "Groups in the roleBinding"),
        ("ServiceAccounts", "string", 1, "ServiceAccounts in the roleBinding"),
    ],
    cells: binding_cells,
    ..Table::BASE
};

/// Upstream's `SubjectsStrings`: users and groups by name, service accounts as `ns:name`.
fn binding_cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    let role = format!("{}/{}", s(obj, "/roleRef/kind"), s(obj, "/roleRef/name"));
    let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
    for sub in arr(obj, "/subjects") {
        let n = sub.get("name").and_then(Value::as_str).unwrap_or("");
        match sub.get("kind").and_then(Value::as_str) {
            Some("User") => users.push(n.to_string()),
            Some("Group") => groups.push(n.to_string()),
            Some("ServiceAccount") => {
                let ns = sub.get("namespace").and_then(Value::as_str).unwrap_or("");
                sas.push(format!("{ns}:{n}"));
            }
            _ => {}
        }
    }
    vec![
        json!(name),
        json!(role),
        json!(age),
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(sas.join(", ")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn causes(kind: &Kind, obj: Value, old: Option<&Value>) -> Vec<String> {
        let mut e = Errs::default();
        (kind.validate)(&mut e, obj.as_object().unwrap(), old);
        e.0.iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn policy_rules_follow_upstream() {
        let obj = json!({"rules": [
            {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]},
            {"apiGroups": [""], "resources": ["pods"]},
            {"verbs": ["get"]},
            {"verbs": ["get"], "nonResourceURLs": ["/healthz"], "resources": ["pods"]},
        ]});
        let got = causes(&ROLE, obj.clone(), None);
        assert_eq!(
            got,
            [
                "rules[1].verbs: Required value: verbs must contain at least one value",
                "rules[2].apiGroups: Required value: resource rules must supply at least one api group",
                "rules[2].resources: Required value: resource rules must supply at least one resource",
                "rules[3].nonResourceURLs: Invalid value: []string{\"/healthz\"}: namespaced rules cannot apply to non-resource URLs",
                "rules[3].nonResourceURLs: Invalid value: []string{\"/healthz\"}: rules cannot apply to both regular resources and non-resource URLs",
            ]
        );
        // A ClusterRole may name non-resource URLs.
        let ok = json!({"rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]});
        assert!(causes(&CLUSTER_ROLE, ok, None).is_empty());
        let agg = json!({"aggregationRule": {"clusterRoleSelectors": []}});
        assert_eq!(
            causes(&CLUSTER_ROLE, agg, None),
            ["aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if aggregationRule is non-nil"]
        );
    }

    #[test]
    fn bindings_are_defaulted_and_validated() {
        let mut obj = json!({
            "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [
                {"kind": "User", "name": "alice"},
                {"kind": "ServiceAccount", "name": "default"},
                {"kind": "Robot", "name": "r2"},
            ],
        });
        binding_defaults(obj.as_object_mut().unwrap());
        assert_eq!(obj["roleRef"]["apiGroup"], GROUP);
        assert_eq!(obj["subjects"][0]["apiGroup"], GROUP);
        assert_eq!(obj["subjects"][1]["apiGroup"], "");
        assert!(obj["subjects"][2].get("apiGroup").is_none());
        assert_eq!(
            causes(&ROLE_BINDING, obj.clone(), None),
            ["subjects[2].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\""]
        );
        // Cluster bindings need the service account's namespace and a ClusterRole.
        let mut c = obj.clone();
        c["roleRef"]["kind"] = json!("Role");
        c["subjects"].as_array_mut().unwrap().pop();
        assert_eq!(
            causes(&CLUSTER_ROLE_BINDING, c, None),
            [
                "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
                "subjects[1].namespace: Required value",
            ]
        );
        // roleRef is immutable.
        let mut changed = obj.clone();
        changed["subjects"].as_array_mut().unwrap().pop();
        changed["roleRef"]["name"] = json!("edit");
        let got = causes(&ROLE_BINDING, changed, Some(&obj));
        assert_eq!(got.len(), 1);
        assert!(
            got[0].starts_with("roleRef: Invalid value: ")
                && got[0].ends_with(": cannot change roleRef"),
            "{got:?}"
        );
    }

    #[test]
    fn names_are_path_segments() {
        assert_eq!(path_segment("system:node:a"), Vec::<String>::new());
        assert_eq!(path_segment(".."), ["may not be '..'"]);
        assert_eq!(
            path_segment("a/b%"),
            ["may not contain '/'", "may not contain '%'"]
        );
    }

    #[test]
    fn tables_print_roles_and_subjects() {
        let now = jiff::Timestamp::now();
        let b = json!({"metadata": {"name": "rb"},
            "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "dev"},
                         {"kind": "ServiceAccount", "name": "sa", "namespace": "ns1"}]});
        let cells = binding_cells(&b, now);
        assert_eq!(cells[1], "ClusterRole/view");
        assert_eq!(cells[3..], [json!("alice"), json!("dev"), json!("ns1:sa")]);
        let r = json!({"metadata": {"name": "r", "creationTimestamp": "2026-12-07T03:00:00Z"}});
        assert_eq!(
            role_cells(&r, now),
            [json!("r"), json!("2026-12-07T03:00:00Z")]
        );
    }
}
