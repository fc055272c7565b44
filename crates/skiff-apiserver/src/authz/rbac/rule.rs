//! Policy rules: upstream's `RuleAllows` (does a rule allow a request), `Covers` (does one set of
//! rules hold every permission of another, for escalation checks and reconciliation), and the
//! compact form escalation errors print.

use serde_json::{json, Value};

use crate::authz::Attributes;

/// `*`: every verb, group, resource or URL.
pub const ALL: &str = "*";

/// One `rules[]` entry of a Role or ClusterRole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

fn strings(v: &Value, field: &str) -> Vec<String> {
    v.get(field)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn has(set: &[String], item: &str) -> bool {
    set.iter().any(|s| s == item)
}

fn has_all(set: &[String], items: &[String]) -> bool {
    items.iter().all(|i| has(set, i))
}

impl Rule {
    pub fn from_json(v: &Value) -> Rule {
        Rule {
            verbs: strings(v, "verbs"),
            api_groups: strings(v, "apiGroups"),
            resources: strings(v, "resources"),
            resource_names: strings(v, "resourceNames"),
            non_resource_urls: strings(v, "nonResourceURLs"),
        }
    }

    /// The rules of a role object (`rules`, absent = none).
    pub fn list_from(obj: &Value) -> Vec<Rule> {
        obj.get("rules")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(Rule::from_json).collect())
            .unwrap_or_default()
    }

    /// The API form (empty lists omitted, as upstream serializes them).
    pub fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert("verbs".into(), json!(self.verbs));
        for (k, v) in [
            ("apiGroups", &self.api_groups),
            ("resources", &self.resources),
            ("resourceNames", &self.resource_names),
            ("nonResourceURLs", &self.non_resource_urls),
        ] {
            if !v.is_empty() {
                m.insert(k.into(), json!(v));
            }
        }
        Value::Object(m)
    }

    /// Upstream's `RuleAllows`.
    pub fn allows(&self, a: &Attributes) -> bool {
        if !self.verb_matches(&a.verb) {
            return false;
        }
        if a.resource_request {
            self.group_matches(&a.api_group)
                && self.resource_matches(&a.resource, &a.subresource)
                && self.name_matches(&a.name)
        } else {
            self.url_matches(&a.path)
        }
    }

    fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == ALL || v == verb)
    }

    fn group_matches(&self, group: &str) -> bool {
        self.api_groups.iter().any(|g| g == ALL || g == group)
    }

    /// `*`, the exact `resource[/subresource]`, or `*/subresource`.
    fn resource_matches(&self, resource: &str, sub: &str) -> bool {
        self.resources.iter().any(|r| {
            if r == ALL {
                return true;
            }
            if sub.is_empty() {
                return r == resource;
            }
            if let Some(rsub) = r.strip_prefix("*/") {
                if rsub == sub {
                    return true;
                }
            }
            r.len() == resource.len() + 1 + sub.len()
                && r.starts_with(resource)
                && r.as_bytes()[resource.len()] == b'/'
                && r.ends_with(sub)
        })
    }

    fn name_matches(&self, name: &str) -> bool {
        self.resource_names.is_empty() || has(&self.resource_names, name)
    }

    /// `*`, the exact path, or a prefix ending in `*`.
    fn url_matches(&self, path: &str) -> bool {
        self.non_resource_urls.iter().any(|u| url_covers(u, path))
    }
}

/// Upstream's `NonResourceURLMatches`/`nonResourceURLCovers`: exact, or a prefix ending in `*`
/// (so `*` alone is everything).
fn url_covers(owner: &str, path: &str) -> bool {
    owner == path || (owner.ends_with('*') && path.starts_with(owner.trim_end_matches('*')))
}

/// Upstream's `BreakdownRule`: one rule per group × resource × (name) × verb, and per URL × verb.
pub fn breakdown(rule: &Rule) -> Vec<Rule> {
    let mut out = Vec::new();
    for group in &rule.api_groups {
        for resource in &rule.resources {
            for verb in &rule.verbs {
                if rule.resource_names.is_empty() {
                    out.push(Rule {
                        verbs: vec![verb.clone()],
                        api_groups: vec![group.clone()],
                        resources: vec![resource.clone()],
                        ..Default::default()
                    });
                } else {
                    for name in &rule.resource_names {
                        out.push(Rule {
                            verbs: vec![verb.clone()],
                            api_groups: vec![group.clone()],
                            resources: vec![resource.clone()],
                            resource_names: vec![name.clone()],
                            ..Default::default()
                        });
                    }
                }
            }
        }
    }
    for url in &rule.non_resource_urls {
        for verb in &rule.verbs {
            out.push(Rule {
                verbs: vec![verb.clone()],
                non_resource_urls: vec![url.clone()],
                ..Default::default()
            });
        }
    }
    out
}

fn resources_cover_all(set: &[String], wanted: &[String]) -> bool {
    if has(set, ALL) || has_all(set, wanted) {
        return true;
    }
    wanted.iter().all(|path| {
        if has(set, path) {
            return true;
        }
        match path.split_once('/') {
            Some((_, sub)) => has(set, &format!("*/{sub}")),
            None => false,
        }
    })
}

fn rule_covers(owner: &Rule, sub: &Rule) -> bool {
    let verbs = has(&owner.verbs, ALL) || has_all(&owner.verbs, &sub.verbs);
    let groups = has(&owner.api_groups, ALL) || has_all(&owner.api_groups, &sub.api_groups);
    let resources = resources_cover_all(&owner.resources, &sub.resources);
    let urls = sub
        .non_resource_urls
        .iter()
        .all(|p| owner.non_resource_urls.iter().any(|o| url_covers(o, p)));
    let names = if sub.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || has_all(&owner.resource_names, &sub.resource_names)
    };
    verbs && groups && resources && names && urls
}

/// Upstream's `Covers`: whether `owner` holds every permission in `wanted`, and the broken-down
/// rules it lacks.
pub fn covers(owner: &[Rule], wanted: &[Rule]) -> (bool, Vec<Rule>) {
    let mut missing = Vec::new();
    for rule in wanted {
        for sub in breakdown(rule) {
            if !owner.iter().any(|o| rule_covers(o, &sub)) {
                missing.push(sub);
            }
        }
    }
    (missing.is_empty(), missing)
}

/// Upstream's `CompactRules`: merges the verbs of single group/resource(/name) rules.
pub fn compact(rules: Vec<Rule>) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::new();
    let mut simple: Vec<Rule> = Vec::new();
    for rule in rules {
        let is_simple = rule.resource_names.len() <= 1
            && rule.non_resource_urls.is_empty()
            && rule.api_groups.len() == 1
            && rule.resources.len() == 1;
        if !is_simple {
            out.push(rule);
            continue;
        }
        let same = simple.iter_mut().find(|s| {
            s.api_groups == rule.api_groups
                && s.resources == rule.resources
                && s.resource_names.first() == rule.resource_names.first()
        });
        match same {
            Some(s) => s.verbs.extend(rule.verbs),
            None => simple.push(rule),
        }
    }
    out.extend(simple);
    out
}

/// Go's `%q` of a string slice: `["a" "b"]`.
pub fn go_quoted_list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", inner.join(" "))
}

/// Go's `%q` of a string (printable ASCII as is, `"` and `\` escaped).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Upstream's `CompactString`: `{APIGroups:[""], Resources:["pods"], Verbs:["get"]}`.
pub fn compact_string(r: &Rule) -> String {
    let mut parts = Vec::new();
    for (label, v) in [
        ("APIGroups", &r.api_groups),
        ("Resources", &r.resources),
        ("NonResourceURLs", &r.non_resource_urls),
        ("ResourceNames", &r.resource_names),
        ("Verbs", &r.verbs),
    ] {
        if !v.is_empty() {
            parts.push(format!("{label}:{}", go_quoted_list(v)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::auth::UserInfo;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> Rule {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        Rule {
            verbs: v(verbs),
            api_groups: v(groups),
            resources: v(resources),
            resource_names: v(names),
            non_resource_urls: vec![],
        }
    }

    fn req(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes {
            user: Arc::new(UserInfo::new("u", &[])),
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    fn path(verb: &str, p: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            path: p.into(),
            ..Default::default()
        }
    }

    #[test]
    fn verbs_groups_and_resources() {
        let r = rule(&["get", "list"], &[""], &["pods"], &[]);
        assert!(r.allows(&req("get", "", "pods", "", "x")));
        assert!(r.allows(&req("list", "", "pods", "", "")));
        assert!(!r.allows(&req("delete", "", "pods", "", "x")));
        assert!(!r.allows(&req("get", "apps", "pods", "", "x")));
        // A subresource is its own resource.
        assert!(!r.allows(&req("get", "", "pods", "log", "x")));
        let w = rule(&["*"], &["*"], &["*"], &[]);
        assert!(w.allows(&req(
            "escalate",
            "rbac.authorization.k8s.io",
            "roles",
            "",
            ""
        )));
        assert!(w.allows(&req("get", "", "pods", "log", "x")));
        // Resource rules never match non-resource requests.
        assert!(!w.allows(&path("get", "/healthz")));
    }

    #[test]
    fn subresources_and_star_slash() {
        let r = rule(&["get"], &["apps"], &["deployments/scale"], &[]);
        assert!(r.allows(&req("get", "apps", "deployments", "scale", "")));
        assert!(!r.allows(&req("get", "apps", "deployments", "", "")));
        assert!(!r.allows(&req("get", "apps", "replicasets", "scale", "")));
        let s = rule(&["get"], &["apps"], &["*/scale"], &[]);
        assert!(s.allows(&req("get", "apps", "deployments", "scale", "")));
        assert!(s.allows(&req("get", "apps", "replicasets", "scale", "")));
        assert!(!s.allows(&req("get", "apps", "replicasets", "", "")));
        assert!(!s.allows(&req("get", "apps", "replicasets", "status", "")));
        // "pods/*" is not a wildcard upstream: it names a literal subresource "*".
        let p = rule(&["get"], &[""], &["pods/*"], &[]);
        assert!(!p.allows(&req("get", "", "pods", "log", "")));
    }

    #[test]
    fn resource_names() {
        let r = rule(&["get", "update"], &[""], &["configmaps"], &["a", "b"]);
        assert!(r.allows(&req("get", "", "configmaps", "", "a")));
        assert!(!r.allows(&req("get", "", "configmaps", "", "c")));
        // A list has no name: a named rule cannot allow it.
        assert!(!r.allows(&req("get", "", "configmaps", "", "")));
    }

    #[test]
    fn non_resource_urls() {
        let r = Rule {
            verbs: vec!["get".into()],
            non_resource_urls: vec!["/healthz".into(), "/apis/*".into()],
            ..Default::default()
        };
        assert!(r.allows(&path("get", "/healthz")));
        assert!(!r.allows(&path("get", "/healthz/etcd")));
        assert!(r.allows(&path("get", "/apis/apps/v1")));
        assert!(!r.allows(&path("get", "/apis")));
        assert!(!r.allows(&path("post", "/healthz")));
        assert!(!r.allows(&req("get", "", "pods", "", "")));
        let all = Rule {
            verbs: vec!["*".into()],
            non_resource_urls: vec!["*".into()],
            ..Default::default()
        };
        assert!(all.allows(&path("delete", "/anything")));
    }

    #[test]
    fn covers_and_compact_messages() {
        let owner = vec![
            rule(&["get", "list"], &[""], &["pods", "pods/log"], &[]),
            rule(&["get"], &["apps"], &["*/scale"], &[]),
        ];
        assert!(covers(&owner, &[rule(&["get"], &[""], &["pods/log"], &[])]).0);
        assert!(covers(&owner, &[rule(&["get"], &[""], &["pods"], &["x"])]).0);
        assert!(
            covers(
                &owner,
                &[rule(&["get"], &["apps"], &["deployments/scale"], &[])]
            )
            .0
        );
        let (ok, missing) = covers(
            &owner,
            &[rule(
                &["get", "delete", "watch"],
                &[""],
                &["pods", "secrets"],
                &[],
            )],
        );
        assert!(!ok);
        let lines: Vec<String> = compact(missing).iter().map(compact_string).collect();
        assert_eq!(
            lines,
            vec![
                r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete" "watch"]}"#,
                r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get" "delete" "watch"]}"#,
            ]
        );
        // A named owner rule does not cover an unnamed one.
        let named = vec![rule(&["get"], &[""], &["pods"], &["a"])];
        assert!(!covers(&named, &[rule(&["get"], &[""], &["pods"], &[])]).0);
    }
}
