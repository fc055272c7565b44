//! The RBAC authorizer with upstream's semantics: ClusterRoleBindings (cluster-wide) and then
//! the RoleBindings of the request's namespace are visited; a binding whose subjects include the
//! user contributes the rules of its Role (same namespace) or ClusterRole; the first rule that
//! allows the request allows it. Otherwise RBAC has no opinion, with upstream's reason (empty, or
//! `RBAC: role.rbac.authorization.k8s.io "x" not found` for bindings whose role is missing).
//!
//! Requests never read the store: [`Rbac`] keeps an in-memory [`Policy`] current from one store
//! watch over the whole keyspace (so its revision follows the store's and a request denied
//! right after a grant can wait for the grant to arrive; see [`Rbac::catch_up`]).

pub mod bootstrap;
pub mod rule;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Once, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use skiff_store::{EventKind, ListOptions, Store};

use super::{Attributes, Authorizer, Decision};
use crate::auth::user::SERVICE_ACCOUNT_PREFIX;
use crate::auth::UserInfo;
use crate::AppState;
pub use rule::Rule;

pub const GROUP: &str = "rbac.authorization.k8s.io";
const PREFIX: &str = "/registry/rbac.authorization.k8s.io/";
/// How long a request denied right after a policy change waits for the change to reach the
/// index (it normally takes well under a millisecond).
const CATCH_UP: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleKind {
    Role,
    ClusterRole,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRef {
    pub kind: RoleKind,
    pub name: String,
}

impl RoleRef {
    pub fn from_json(v: &Value) -> Option<RoleRef> {
        let kind = match v.get("kind")?.as_str()? {
            "Role" => RoleKind::Role,
            "ClusterRole" => RoleKind::ClusterRole,
            _ => return None,
        };
        Some(RoleRef {
            kind,
            name: v.get("name")?.as_str()?.to_string(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

impl Subject {
    /// Upstream's `appliesToUser`; `binding_ns` is a RoleBinding's namespace ("" for a
    /// ClusterRoleBinding), the default namespace of a ServiceAccount subject.
    pub fn applies_to(&self, user: &UserInfo, binding_ns: &str) -> bool {
        match self.kind.as_str() {
            "User" => user.name == self.name,
            "Group" => user.in_group(&self.name),
            "ServiceAccount" => {
                let ns = if self.namespace.is_empty() {
                    binding_ns
                } else {
                    &self.namespace
                };
                !ns.is_empty()
                    && user
                        .name
                        .strip_prefix(SERVICE_ACCOUNT_PREFIX)
                        .and_then(|rest| rest.split_once(':'))
                        .is_some_and(|(n, name)| n == ns && name == self.name)
            }
            _ => false,
        }
    }
}

/// A RoleBinding or ClusterRoleBinding.
#[derive(Debug, Clone)]
pub struct Binding {
    pub name: String,
    pub namespace: String,
    pub role_ref: Option<RoleRef>,
    pub subjects: Vec<Subject>,
}

impl Binding {
    pub fn from_json(obj: &Value) -> Binding {
        let meta = obj.get("metadata");
        let s = |v: Option<&Value>, f: &str| {
            v.and_then(|m| m.get(f))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        Binding {
            name: s(meta, "name"),
            namespace: s(meta, "namespace"),
            role_ref: obj.get("roleRef").and_then(RoleRef::from_json),
            subjects: obj
                .get("subjects")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|v| Subject {
                            kind: s(Some(v), "kind"),
                            name: s(Some(v), "name"),
                            namespace: s(Some(v), "namespace"),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    fn applies_to(&self, user: &UserInfo) -> bool {
        self.subjects
            .iter()
            .any(|s| s.applies_to(user, &self.namespace))
    }
}

/// Who granted a rule (for `--list` and diagnostics).
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    ClusterRoleBinding(&'a Binding),
    RoleBinding(&'a Binding),
}

impl Source<'_> {
    /// Upstream's binding describers.
    pub fn describe(&self, user: &UserInfo) -> String {
        let (label, b) = match self {
            Source::ClusterRoleBinding(b) => ("ClusterRoleBinding", *b),
            Source::RoleBinding(b) => ("RoleBinding", *b),
        };
        let name = match self {
            Source::ClusterRoleBinding(_) => b.name.clone(),
            Source::RoleBinding(_) => format!("{}/{}", b.name, b.namespace),
        };
        let (kind, role) = match &b.role_ref {
            Some(RoleRef {
                kind: RoleKind::Role,
                name,
            }) => ("Role", name.as_str()),
            Some(RoleRef {
                kind: RoleKind::ClusterRole,
                name,
            }) => ("ClusterRole", name.as_str()),
            None => ("", ""),
        };
        let subject = b
            .subjects
            .iter()
            .find(|s| s.applies_to(user, &b.namespace))
            .map(|s| {
                if s.kind == "ServiceAccount" {
                    let ns = if s.namespace.is_empty() {
                        &b.namespace
                    } else {
                        &s.namespace
                    };
                    format!("{} {:?}", s.kind, format!("{}/{}", s.name, ns))
                } else {
                    format!("{} {:?}", s.kind, s.name)
                }
            })
            .unwrap_or_default();
        format!("{label} {name:?} of {kind} {role:?} to {subject}")
    }
}

/// The RBAC objects, as the authorizer reads them.
#[derive(Debug, Default, Clone)]
pub struct Policy {
    roles: HashMap<String, HashMap<String, Arc<Vec<Rule>>>>,
    cluster_roles: HashMap<String, Arc<Vec<Rule>>>,
    role_bindings: HashMap<String, BTreeMap<String, Binding>>,
    cluster_role_bindings: BTreeMap<String, Binding>,
}

/// What a store key under `/registry/rbac.authorization.k8s.io/` names.
enum Key<'a> {
    Role(&'a str, &'a str),
    ClusterRole(&'a str),
    RoleBinding(&'a str, &'a str),
    ClusterRoleBinding(&'a str),
}

fn parse_key(key: &str) -> Option<Key<'_>> {
    let rest = key.strip_prefix(PREFIX)?;
    let mut it = rest.splitn(3, '/');
    let plural = it.next()?;
    let a = it.next()?;
    let b = it.next();
    Some(match (plural, b) {
        ("roles", Some(name)) => Key::Role(a, name),
        ("rolebindings", Some(name)) => Key::RoleBinding(a, name),
        ("clusterroles", None) => Key::ClusterRole(a),
        ("clusterrolebindings", None) => Key::ClusterRoleBinding(a),
        _ => return None,
    })
}

impl Policy {
    /// Applies a stored value (Some) or a deletion (None) of `key`.
    pub fn apply(&mut self, key: &str, value: Option<&[u8]>) {
        let Some(k) = parse_key(key) else { return };
        let obj: Option<Value> = value.and_then(|v| serde_json::from_slice(v).ok());
        match (k, obj) {
            (Key::Role(ns, name), Some(o)) => {
                self.roles
                    .entry(ns.to_string())
                    .or_default()
                    .insert(name.to_string(), Arc::new(Rule::list_from(&o)));
            }
            (Key::Role(ns, name), None) => {
                if let Some(m) = self.roles.get_mut(ns) {
                    m.remove(name);
                    if m.is_empty() {
                        self.roles.remove(ns);
                    }
                }
            }
            (Key::ClusterRole(name), Some(o)) => {
                self.cluster_roles
                    .insert(name.to_string(), Arc::new(Rule::list_from(&o)));
            }
            (Key::ClusterRole(name), None) => {
                self.cluster_roles.remove(name);
            }
            (Key::RoleBinding(ns, name), Some(o)) => {
                let mut b = Binding::from_json(&o);
                b.namespace = ns.to_string();
                self.role_bindings
                    .entry(ns.to_string())
                    .or_default()
                    .insert(name.to_string(), b);
            }
            (Key::RoleBinding(ns, name), None) => {
                if let Some(m) = self.role_bindings.get_mut(ns) {
                    m.remove(name);
                    if m.is_empty() {
                        self.role_bindings.remove(ns);
                    }
                }
            }
            (Key::ClusterRoleBinding(name), Some(o)) => {
                let mut b = Binding::from_json(&o);
                b.namespace.clear();
                self.cluster_role_bindings.insert(name.to_string(), b);
            }
            (Key::ClusterRoleBinding(name), None) => {
                self.cluster_role_bindings.remove(name);
            }
        }
    }

    pub fn cluster_role(&self, name: &str) -> Option<&Arc<Vec<Rule>>> {
        self.cluster_roles.get(name)
    }

    /// Upstream's `GetRoleReferenceRules`: the rules a binding in `ns` refers to, or the lister's
    /// NotFound message.
    pub fn role_ref_rules(&self, r: &RoleRef, ns: &str) -> Result<&Arc<Vec<Rule>>, String> {
        match r.kind {
            RoleKind::Role => self
                .roles
                .get(ns)
                .and_then(|m| m.get(&r.name))
                .ok_or_else(|| format!("role.{GROUP} {:?} not found", r.name)),
            RoleKind::ClusterRole => self
                .cluster_roles
                .get(&r.name)
                .ok_or_else(|| format!("clusterrole.{GROUP} {:?} not found", r.name)),
        }
    }

    /// Upstream's `VisitRulesFor`: every rule that applies to `user` in `ns` ("" = cluster
    /// scope), ClusterRoleBindings first; `visit` returns false to stop. Missing roles are
    /// reported as `Err` items.
    pub fn visit<'a>(
        &'a self,
        user: &UserInfo,
        ns: &str,
        visit: &mut dyn FnMut(Source<'a>, Result<&'a Rule, String>) -> bool,
    ) {
        for b in self.cluster_role_bindings.values() {
            if !b.applies_to(user) {
                continue;
            }
            let Some(r) = &b.role_ref else { continue };
            match self.role_ref_rules(r, "") {
                Ok(rules) => {
                    for rule in rules.iter() {
                        if !visit(Source::ClusterRoleBinding(b), Ok(rule)) {
                            return;
                        }
                    }
                }
                Err(e) => {
                    if !visit(Source::ClusterRoleBinding(b), Err(e)) {
                        return;
                    }
                }
            }
        }
        if ns.is_empty() {
            return;
        }
        let Some(bindings) = self.role_bindings.get(ns) else {
            return;
        };
        for b in bindings.values() {
            if !b.applies_to(user) {
                continue;
            }
            let Some(r) = &b.role_ref else { continue };
            match self.role_ref_rules(r, ns) {
                Ok(rules) => {
                    for rule in rules.iter() {
                        if !visit(Source::RoleBinding(b), Ok(rule)) {
                            return;
                        }
                    }
                }
                Err(e) => {
                    if !visit(Source::RoleBinding(b), Err(e)) {
                        return;
                    }
                }
            }
        }
    }

    /// Upstream's `RulesFor`: every rule of `user` in `ns`, and the resolution errors.
    pub fn rules_for(&self, user: &UserInfo, ns: &str) -> (Vec<Rule>, Vec<String>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        self.visit(user, ns, &mut |_, r| {
            match r {
                Ok(r) => rules.push(r.clone()),
                Err(e) => errors.push(e),
            }
            true
        });
        (rules, errors)
    }

    /// The authorizer's decision.
    pub fn decide(&self, attrs: &Attributes) -> Decision {
        match self.decide_with_reason(attrs) {
            (true, _) => Decision::Allow,
            (false, reason) => Decision::NoOpinion(reason),
        }
    }

    /// Whether RBAC allows, with upstream's reason either way (`RBAC: allowed by
    /// ClusterRoleBinding "x" of ClusterRole "y" to Group "z"` when it does).
    pub fn decide_with_reason(&self, attrs: &Attributes) -> (bool, String) {
        let mut allowed_by: Option<Source<'_>> = None;
        let mut errors: Vec<String> = Vec::new();
        self.visit(&attrs.user, &attrs.namespace, &mut |src, r| match r {
            Ok(rule) => {
                if rule.allows(attrs) {
                    allowed_by = Some(src);
                    return false;
                }
                true
            }
            Err(e) => {
                errors.push(e);
                true
            }
        });
        if let Some(src) = allowed_by {
            return (
                true,
                format!("RBAC: allowed by {}", src.describe(&attrs.user)),
            );
        }
        let reason = if errors.is_empty() {
            String::new()
        } else {
            format!("RBAC: {}", aggregate(errors))
        };
        (false, reason)
    }
}

/// Upstream's `utilerrors.NewAggregate(..).Error()`: one message as is, several as `[a, b]`
/// without repeats.
pub fn aggregate(errors: Vec<String>) -> String {
    let mut seen = std::collections::HashSet::new();
    let unique: Vec<String> = errors
        .into_iter()
        .filter(|e| seen.insert(e.clone()))
        .collect();
    if unique.len() == 1 {
        return unique.into_iter().next().unwrap_or_default();
    }
    format!("[{}]", unique.join(", "))
}

/// The index: the policy and the store revision it reflects, kept current by a watch task
/// started on first use.
pub struct Rbac {
    policy: RwLock<Arc<Policy>>,
    /// The last store revision applied (-1 until the first list).
    rev: tokio::sync::watch::Sender<i64>,
    start: Once,
}

impl Default for Rbac {
    fn default() -> Self {
        Self {
            policy: RwLock::new(Arc::new(Policy::default())),
            rev: tokio::sync::watch::channel(-1).0,
            start: Once::new(),
        }
    }
}

impl Rbac {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The current policy (cheap: an Arc clone under a read lock).
    pub fn policy(&self) -> Arc<Policy> {
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_policy(&self, p: Policy) {
        match self.policy.write() {
            Ok(mut g) => *g = Arc::new(p),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(p),
        }
    }

    fn update(&self, f: impl FnOnce(&mut Policy)) {
        let mut g = match self.policy.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(Arc::make_mut(&mut g));
    }

    /// Starts the watch task once (needs a Tokio runtime).
    pub fn ensure_started(self: &Arc<Self>, st: &AppState) {
        self.start.call_once(|| {
            let me = self.clone();
            let store = st.store.clone();
            let shutdown = st.shutdown.clone();
            tokio::spawn(async move { me.run(store, shutdown).await });
        });
    }

    /// Waits until the index reflects at least store revision `rev` (bounded by `limit`).
    pub async fn wait_for(&self, rev: i64, limit: Duration) -> bool {
        let mut rx = self.rev.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|r| *r >= rev))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits until the index has caught up with the store's current revision.
    pub async fn catch_up(&self, store: &dyn Store) {
        let Ok(current) = store.current_revision().await else {
            return;
        };
        if *self.rev.borrow() >= current {
            return;
        }
        if !self.wait_for(current, CATCH_UP).await {
            tracing::warn!(
                revision = current,
                "the RBAC index did not catch up with the store in time"
            );
        }
    }

    /// The policy once the first list is in.
    pub async fn ready_policy(self: &Arc<Self>, st: &AppState) -> Arc<Policy> {
        self.ensure_started(st);
        if *self.rev.borrow() < 0 {
            self.wait_for(0, Duration::from_secs(30)).await;
        }
        self.policy()
    }

    /// List, then follow every store change; on a dropped watch, list again.
    async fn run(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.sync(store.as_ref(), &mut shutdown).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, "RBAC index watch ended; listing again"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn sync(
        &self,
        store: &dyn Store,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), skiff_store::StoreError> {
        let list = store.list(PREFIX, &ListOptions::default()).await?;
        let mut p = Policy::default();
        for kv in &list.items {
            p.apply(&kv.key, Some(&kv.value));
        }
        // Every key, so the revision follows the store's.
        let mut w = store.watch("/", list.revision).await?;
        self.set_policy(p);
        self.rev.send_replace(list.revision);
        loop {
            tokio::select! {
                ev = w.events.recv() => {
                    let Some(ev) = ev else {
                        return Err(skiff_store::StoreError::Backend("watch closed".into()));
                    };
                    let ev = ev?;
                    let rev = ev.kv.mod_revision;
                    if ev.kv.key.starts_with(PREFIX) {
                        self.update(|p| match ev.kind {
                            EventKind::Put => p.apply(&ev.kv.key, Some(&ev.kv.value)),
                            EventKind::Delete => p.apply(&ev.kv.key, None),
                        });
                    }
                    self.rev.send_replace(rev);
                }
                _ = shutdown.changed() => return Ok(()),
            }
        }
    }
}

/// The RBAC authorizer of the chain.
pub struct RbacAuthorizer(pub Arc<Rbac>);

#[async_trait]
impl Authorizer for RbacAuthorizer {
    async fn authorize(&self, st: &AppState, attrs: &Attributes) -> Decision {
        let d = self.0.ready_policy(st).await.decide(attrs);
        if d == Decision::Allow {
            return d;
        }
        // A grant written just before this request may still be on its way to the index.
        self.0.catch_up(st.store.as_ref()).await;
        self.0.policy().decide(attrs)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn put(p: &mut Policy, key: &str, v: Value) {
        p.apply(key, Some(&serde_json::to_vec(&v).unwrap()));
    }

    fn attrs(user: UserInfo, verb: &str, resource: &str, ns: &str) -> Attributes {
        Attributes {
            user: Arc::new(user),
            verb: verb.into(),
            resource_request: true,
            resource: resource.into(),
            namespace: ns.into(),
            ..Default::default()
        }
    }

    fn policy() -> Policy {
        let mut p = Policy::default();
        put(
            &mut p,
            "/registry/rbac.authorization.k8s.io/clusterroles/view",
            json!({"rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]}),
        );
        put(
            &mut p,
            "/registry/rbac.authorization.k8s.io/roles/dev/secrets",
            json!({"rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}]}),
        );
        put(
            &mut p,
            "/registry/rbac.authorization.k8s.io/rolebindings/dev/alice-view",
            json!({"metadata": {"name": "alice-view", "namespace": "dev"},
                "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "User", "name": "alice"},
                    {"kind": "ServiceAccount", "name": "build"}]}),
        );
        put(
            &mut p,
            "/registry/rbac.authorization.k8s.io/rolebindings/dev/ops-secrets",
            json!({"metadata": {"name": "ops-secrets", "namespace": "dev"},
                "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "secrets"},
                "subjects": [{"kind": "Group", "name": "ops"}]}),
        );
        p
    }

    #[test]
    fn bindings_grant_in_their_namespace_only() {
        let p = policy();
        let alice = UserInfo::new("alice", &[]);
        assert_eq!(
            p.decide(&attrs(alice.clone(), "list", "pods", "dev")),
            Decision::Allow
        );
        assert_eq!(
            p.decide(&attrs(alice.clone(), "list", "pods", "prod")),
            Decision::NoOpinion(String::new())
        );
        assert_eq!(
            p.decide(&attrs(alice.clone(), "list", "pods", "")),
            Decision::NoOpinion(String::new())
        );
        assert_eq!(
            p.decide(&attrs(alice, "get", "secrets", "dev")),
            Decision::NoOpinion(String::new())
        );
        let ops = UserInfo::new("bob", &["ops"]);
        assert_eq!(
            p.decide(&attrs(ops, "get", "secrets", "dev")),
            Decision::Allow
        );
        // The ServiceAccount subject defaults to the binding's namespace.
        let sa = UserInfo::for_service_account("dev", "build", "");
        assert_eq!(p.decide(&attrs(sa, "get", "pods", "dev")), Decision::Allow);
        let other = UserInfo::for_service_account("prod", "build", "");
        assert_ne!(
            p.decide(&attrs(other, "get", "pods", "dev")),
            Decision::Allow
        );
    }

    #[test]
    fn missing_roles_are_reported_and_deletes_revoke() {
        let mut p = policy();
        p.apply(
            "/registry/rbac.authorization.k8s.io/roles/dev/secrets",
            None,
        );
        let ops = UserInfo::new("bob", &["ops"]);
        assert_eq!(
            p.decide(&attrs(ops, "get", "secrets", "dev")),
            Decision::NoOpinion(
                r#"RBAC: role.rbac.authorization.k8s.io "secrets" not found"#.into()
            )
        );
        p.apply(
            "/registry/rbac.authorization.k8s.io/rolebindings/dev/alice-view",
            None,
        );
        let alice = UserInfo::new("alice", &[]);
        assert_eq!(
            p.decide(&attrs(alice, "list", "pods", "dev")),
            Decision::NoOpinion(String::new())
        );
        assert_eq!(
            aggregate(vec!["a".into(), "b".into(), "a".into()]),
            "[a, b]"
        );
    }

    #[test]
    fn cluster_role_bindings_apply_everywhere() {
        let mut p = policy();
        put(
            &mut p,
            "/registry/rbac.authorization.k8s.io/clusterrolebindings/sa-view",
            json!({"metadata": {"name": "sa-view"},
                "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "view"},
                // No namespace: a ClusterRoleBinding's ServiceAccount subject matches nobody.
                "subjects": [{"kind": "ServiceAccount", "name": "build"},
                    {"kind": "Group", "name": "system:serviceaccounts:ci"}]}),
        );
        let ci = UserInfo::for_service_account("ci", "x", "");
        assert_eq!(p.decide(&attrs(ci, "list", "pods", "")), Decision::Allow);
        let build = UserInfo::for_service_account("other", "build", "");
        assert_ne!(
            p.decide(&attrs(build, "list", "pods", "other")),
            Decision::Allow
        );
    }

    /// The cost of one decision over the bootstrap policy plus 1,500 RoleBindings (run with
    /// `--ignored --nocapture`; figures in docs/apiserver.md).
    #[test]
    #[ignore]
    fn decision_cost() {
        let mut p = Policy::default();
        for spec in bootstrap::cluster_roles() {
            let o = bootstrap::role_object(&spec, "");
            put(&mut p, &format!("{PREFIX}clusterroles/{}", spec.name), o);
        }
        for spec in bootstrap::cluster_role_bindings() {
            let o = bootstrap::binding_object(&spec);
            put(
                &mut p,
                &format!("{PREFIX}clusterrolebindings/{}", spec.name),
                o,
            );
        }
        for i in 0..500 {
            // The aggregated roles are empty until reconciled: bind their inputs.
            let roles = [
                "system:aggregate-to-view",
                "system:aggregate-to-edit",
                "system:aggregate-to-admin",
            ];
            for (j, role) in roles.iter().enumerate() {
                put(
                    &mut p,
                    &format!("{PREFIX}rolebindings/ns{i}/b{j}"),
                    json!({"roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
                        "subjects": [{"kind": "User", "name": format!("user{i}-{j}")}]}),
                );
            }
        }
        let controller = UserInfo::new(crate::auth::user::users::CONTROLLER_MANAGER, &[]);
        let mut write = attrs(controller, "create", "pods", "ns7");
        write.api_group = String::new();
        let reader = attrs(UserInfo::new("user7-0", &[]), "get", "pods", "ns7");
        let denied = attrs(UserInfo::new("user7-0", &[]), "get", "secrets", "ns7");
        for (label, a) in [
            ("controller create pods", &write),
            ("view get pods", &reader),
            ("view get secrets (denied)", &denied),
        ] {
            let n = 20_000;
            let start = std::time::Instant::now();
            let mut allowed = 0;
            for _ in 0..n {
                if p.decide(std::hint::black_box(a)) == Decision::Allow {
                    allowed += 1;
                }
            }
            let per = start.elapsed() / n;
            println!("{label}: {per:?} per decision ({allowed}/{n} allowed)");
        }
    }
}
