//! RBAC through a real HTTPS server: the bootstrap policy, the authorizer (bindings, namespaces,
//! missing roles, revocation), Forbidden messages, access reviews and escalation prevention.
//! Requests act as other users through impersonation by the admin (system:masters).

use http::{Method, Request};
use serde_json::{json, Value};
mod common;

use common::start;

const RBAC: &str = "/apis/rbac.authorization.k8s.io/v1";

/// One request as `user` (None = the admin itself): status and JSON body.
async fn call(
    client: &kube::Client,
    method: Method,
    path: &str,
    user: Option<(&str, &[&str])>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some((name, groups)) = user {
        b = b.header("Impersonate-User", name);
        for g in groups {
            b = b.header("Impersonate-Group", *g);
        }
    }
    let body = body
        .map(|v| serde_json::to_vec(&v).unwrap())
        .unwrap_or_default();
    let resp = client
        .send(b.body(kube::client::Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, v)
}

async fn admin(client: &kube::Client, method: Method, path: &str, body: Value) -> Value {
    let (code, v) = call(client, method, path, None, Some(body)).await;
    assert!(code < 300, "{code}: {v}");
    v
}

fn binding(name: &str, role_kind: &str, role: &str, subjects: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": subjects})
}

async fn namespace(client: &kube::Client, name: &str) {
    admin(
        client,
        Method::POST,
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
    )
    .await;
}

#[tokio::test]
async fn bootstrap_policy_is_served() {
    let t = start().await;
    let c = &t.client;
    let (code, admin_role) = call(
        c,
        Method::GET,
        &format!("{RBAC}/clusterroles/cluster-admin"),
        None,
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        admin_role["metadata"]["labels"]["kubernetes.io/bootstrapping"],
        "rbac-defaults"
    );
    assert_eq!(
        admin_role["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"],
        "true"
    );
    let (_, crb) = call(
        c,
        Method::GET,
        &format!("{RBAC}/clusterrolebindings/cluster-admin"),
        None,
        None,
    )
    .await;
    assert_eq!(crb["subjects"][0]["name"], "system:masters");
    // Aggregated roles are filled at start.
    let (_, view) = call(
        c,
        Method::GET,
        &format!("{RBAC}/clusterroles/view"),
        None,
        None,
    )
    .await;
    let rules = view["rules"].as_array().unwrap();
    assert!(rules
        .iter()
        .any(|r| r["resources"].as_array().unwrap().contains(&json!("pods"))));
    let (_, edit) = call(
        c,
        Method::GET,
        &format!("{RBAC}/clusterroles/edit"),
        None,
        None,
    )
    .await;
    assert!(edit["rules"].as_array().unwrap().len() > rules.len());
    for name in [
        "admin",
        "system:basic-user",
        "system:discovery",
        "system:public-info-viewer",
        "system:node",
        "system:kube-scheduler",
        "system:kube-controller-manager",
        "system:controller:deployment-controller",
        "skiff:kube-controller-manager",
    ] {
        let (code, _) = call(
            c,
            Method::GET,
            &format!("{RBAC}/clusterroles/{name}"),
            None,
            None,
        )
        .await;
        assert_eq!(code, 200, "{name}");
    }
}

#[tokio::test]
async fn bindings_grant_and_revoke_with_upstream_messages() {
    let t = start().await;
    let c = &t.client;
    namespace(c, "dev").await;
    let alice = Some(("alice", &["devs"][..]));
    let (code, err) = call(c, Method::GET, "/api/v1/namespaces/dev/pods", alice, None).await;
    assert_eq!(code, 403);
    assert_eq!(
        err["message"],
        r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "dev""#
    );
    admin(
        c,
        Method::POST,
        &format!("{RBAC}/namespaces/dev/rolebindings"),
        binding(
            "alice-view",
            "ClusterRole",
            "view",
            json!([{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]),
        ),
    )
    .await;
    // Allowed right after the grant.
    let (code, _) = call(c, Method::GET, "/api/v1/namespaces/dev/pods", alice, None).await;
    assert_eq!(code, 200);
    // Not in another namespace, not cluster-wide, not secrets, not writes.
    let (code, err) = call(
        c,
        Method::GET,
        "/api/v1/namespaces/default/pods",
        alice,
        None,
    )
    .await;
    assert_eq!(code, 403, "{err}");
    let (code, err) = call(c, Method::GET, "/api/v1/pods", alice, None).await;
    assert_eq!(code, 403);
    assert_eq!(
        err["message"],
        r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" at the cluster scope"#
    );
    let (code, err) = call(
        c,
        Method::GET,
        "/api/v1/namespaces/dev/secrets/s1",
        alice,
        None,
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        err["message"],
        r#"secrets "s1" is forbidden: User "alice" cannot get resource "secrets" in API group "" in the namespace "dev""#
    );
    let (code, _) = call(
        c,
        Method::POST,
        "/api/v1/namespaces/dev/configmaps",
        alice,
        Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})),
    )
    .await;
    assert_eq!(code, 403);
    // Reading one's own namespace (namespace attribute = its name, as upstream's RequestInfo).
    let (code, _) = call(c, Method::GET, "/api/v1/namespaces/dev", alice, None).await;
    assert_eq!(code, 200);
    let (code, _) = call(c, Method::GET, "/api/v1/namespaces/default", alice, None).await;
    assert_eq!(code, 403);
    // Discovery and health are open to every authenticated user.
    let (code, _) = call(c, Method::GET, "/apis", alice, None).await;
    assert_eq!(code, 200);
    // A group subject and a binding whose role is missing.
    admin(
        c,
        Method::POST,
        &format!("{RBAC}/namespaces/dev/rolebindings"),
        binding(
            "devs-ghost",
            "Role",
            "ghost",
            json!([{"kind": "Group", "name": "devs", "apiGroup": "rbac.authorization.k8s.io"}]),
        ),
    )
    .await;
    let (code, err) = call(
        c,
        Method::GET,
        "/api/v1/namespaces/dev/secrets",
        alice,
        None,
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        err["message"],
        r#"secrets is forbidden: User "alice" cannot list resource "secrets" in API group "" in the namespace "dev": RBAC: role.rbac.authorization.k8s.io "ghost" not found"#
    );
    // Revocation is immediate.
    admin(
        c,
        Method::DELETE,
        &format!("{RBAC}/namespaces/dev/rolebindings/alice-view"),
        json!({}),
    )
    .await;
    let (code, _) = call(c, Method::GET, "/api/v1/namespaces/dev/pods", alice, None).await;
    assert_eq!(code, 403);
}

#[tokio::test]
async fn service_account_subjects_and_wildcards() {
    let t = start().await;
    let c = &t.client;
    namespace(c, "ci").await;
    admin(
        c,
        Method::POST,
        &format!("{RBAC}/namespaces/ci/roles"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "scaler"},
            "rules": [{"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["get", "update"]},
                      {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["settings"], "verbs": ["get"]}]}),
    )
    .await;
    // No namespace on the subject: the binding's namespace.
    admin(
        c,
        Method::POST,
        &format!("{RBAC}/namespaces/ci/rolebindings"),
        binding(
            "builder",
            "Role",
            "scaler",
            json!([{"kind": "ServiceAccount", "name": "builder"}]),
        ),
    )
    .await;
    let sa = Some((
        "system:serviceaccount:ci:builder",
        &["system:serviceaccounts", "system:serviceaccounts:ci"][..],
    ));
    let (code, err) = call(
        c,
        Method::GET,
        "/apis/apps/v1/namespaces/ci/deployments/web/scale",
        sa,
        None,
    )
    .await;
    // Allowed by RBAC; the deployment does not exist.
    assert_eq!(code, 404, "{err}");
    let (code, _) = call(
        c,
        Method::GET,
        "/apis/apps/v1/namespaces/ci/deployments/web",
        sa,
        None,
    )
    .await;
    assert_eq!(code, 403);
    let (code, _) = call(
        c,
        Method::GET,
        "/api/v1/namespaces/ci/configmaps/settings",
        sa,
        None,
    )
    .await;
    assert_eq!(code, 404);
    let (code, _) = call(
        c,
        Method::GET,
        "/api/v1/namespaces/ci/configmaps/other",
        sa,
        None,
    )
    .await;
    assert_eq!(code, 403);
    let (code, _) = call(c, Method::GET, "/api/v1/namespaces/ci/configmaps", sa, None).await;
    assert_eq!(code, 403);
    // The same name in another namespace is another ServiceAccount.
    let other = Some((
        "system:serviceaccount:prod:builder",
        &["system:serviceaccounts"][..],
    ));
    let (code, _) = call(
        c,
        Method::GET,
        "/apis/apps/v1/namespaces/ci/deployments/web/scale",
        other,
        None,
    )
    .await;
    assert_eq!(code, 403);
}

#[tokio::test]
async fn access_reviews_answer_as_upstream() {
    let t = start().await;
    let c = &t.client;
    namespace(c, "dev").await;
    admin(
        c,
        Method::POST,
        &format!("{RBAC}/namespaces/dev/rolebindings"),
        binding(
            "alice-view",
            "ClusterRole",
            "view",
            json!([{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]),
        ),
    )
    .await;
    let alice = Some(("alice", &[][..]));
    let ssar = |verb: &str, resource: &str, ns: &str| {
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": verb, "resource": resource, "namespace": ns}}})
    };
    let path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let (code, r) = call(
        c,
        Method::POST,
        path,
        alice,
        Some(ssar("list", "pods", "dev")),
    )
    .await;
    assert_eq!(code, 201, "{r}");
    assert_eq!(r["status"]["allowed"], true);
    assert_eq!(
        r["status"]["reason"],
        r#"RBAC: allowed by RoleBinding "alice-view/dev" of ClusterRole "view" to User "alice""#
    );
    let (_, r) = call(
        c,
        Method::POST,
        path,
        alice,
        Some(ssar("get", "secrets", "dev")),
    )
    .await;
    assert_eq!(r["status"], json!({"allowed": false}));
    // SubjectAccessReview needs `create subjectaccessreviews` (the admin has it).
    let sar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "alice", "resourceAttributes": {"verb": "watch", "resource": "pods", "namespace": "dev"}}});
    let sar_path = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
    let (code, r) = call(c, Method::POST, sar_path, None, Some(sar.clone())).await;
    assert_eq!(code, 201);
    assert_eq!(r["status"]["allowed"], true);
    let (code, r) = call(c, Method::POST, sar_path, alice, Some(sar)).await;
    assert_eq!(code, 403);
    assert_eq!(
        r["message"],
        r#"subjectaccessreviews.authorization.k8s.io is forbidden: User "alice" cannot create resource "subjectaccessreviews" in API group "authorization.k8s.io" at the cluster scope"#
    );
    let (code, r) = call(
        c,
        Method::POST,
        sar_path,
        None,
        Some(
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": "get"}}}),
        ),
    )
    .await;
    assert_eq!(code, 422, "{r}");
    // Non-resource attributes.
    let (_, r) = call(
        c,
        Method::POST,
        path,
        alice,
        Some(
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"nonResourceAttributes": {"verb": "get", "path": "/healthz"}}}),
        ),
    )
    .await;
    assert_eq!(r["status"]["allowed"], true);
    // LocalSubjectAccessReview: namespaced, the namespaces must agree.
    let lsar = |ns: &str| {
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview",
            "metadata": {"namespace": "dev"},
            "spec": {"user": "alice", "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": ns}}})
    };
    let lsar_path = "/apis/authorization.k8s.io/v1/namespaces/dev/localsubjectaccessreviews";
    let (code, r) = call(c, Method::POST, lsar_path, None, Some(lsar("dev"))).await;
    assert_eq!(code, 201, "{r}");
    assert_eq!(r["status"]["allowed"], true);
    let (code, _) = call(c, Method::POST, lsar_path, None, Some(lsar("prod"))).await;
    assert_eq!(code, 422);
    // SelfSubjectRulesReview.
    let (code, r) = call(
        c,
        Method::POST,
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        alice,
        Some(
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
            "spec": {"namespace": "dev"}}),
        ),
    )
    .await;
    assert_eq!(code, 201, "{r}");
    assert_eq!(r["status"]["incomplete"], false);
    let rules = r["status"]["resourceRules"].as_array().unwrap();
    assert!(rules.iter().any(
        |r| r["resources"].as_array().unwrap().contains(&json!("pods"))
            && r["verbs"] == json!(["get", "list", "watch"])
    ));
    assert!(rules
        .iter()
        .any(|r| r["resources"] == json!(["selfsubjectaccessreviews", "selfsubjectrulesreviews"])));
    assert!(r["status"]["nonResourceRules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["nonResourceURLs"]
            .as_array()
            .unwrap()
            .contains(&json!("/healthz"))));
}

#[tokio::test]
async fn escalation_is_prevented() {
    let t = start().await;
    let c = &t.client;
    namespace(c, "dev").await;
    // bob administers dev (the `admin` role: roles and rolebindings, no escalate/bind).
    admin(
        c,
        Method::POST,
        &format!("{RBAC}/namespaces/dev/rolebindings"),
        binding(
            "bob-admin",
            "ClusterRole",
            "admin",
            json!([{"kind": "User", "name": "bob", "apiGroup": "rbac.authorization.k8s.io"}]),
        ),
    )
    .await;
    let bob = Some(("bob", &["team"][..]));
    let role = |name: &str, rules: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name}, "rules": rules})
    };
    let roles = format!("{RBAC}/namespaces/dev/roles");
    let (code, r) = call(
        c,
        Method::POST,
        &roles,
        bob,
        Some(role(
            "pod-reader",
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]),
        )),
    )
    .await;
    assert_eq!(code, 201, "{r}");
    let (code, r) = call(
        c,
        Method::POST,
        &roles,
        bob,
        Some(role("node-reader", json!([
            {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["get", "list"]},
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["escalate"]}]))),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        r["message"],
        "roles.rbac.authorization.k8s.io \"node-reader\" is forbidden: user \"bob\" (groups=[\"team\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"nodes\"], Verbs:[\"get\" \"list\"]}\n{APIGroups:[\"rbac.authorization.k8s.io\"], Resources:[\"roles\"], Verbs:[\"escalate\"]}"
    );
    // Binding a role bob holds is fine; binding cluster-admin is not.
    let rbs = format!("{RBAC}/namespaces/dev/rolebindings");
    let (code, r) = call(
        c,
        Method::POST,
        &rbs,
        bob,
        Some(binding(
            "carol-view",
            "ClusterRole",
            "view",
            json!([{"kind": "User", "name": "carol"}]),
        )),
    )
    .await;
    assert_eq!(code, 201, "{r}");
    let (code, r) = call(
        c,
        Method::POST,
        &rbs,
        bob,
        Some(binding(
            "carol-root",
            "ClusterRole",
            "cluster-admin",
            json!([{"kind": "User", "name": "carol"}]),
        )),
    )
    .await;
    assert_eq!(code, 403);
    let msg = r["message"].as_str().unwrap();
    assert!(
        msg.starts_with("rolebindings.rbac.authorization.k8s.io \"carol-root\" is forbidden: user \"bob\" (groups=[\"team\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"*\"], Resources:[\"*\"], Verbs:[\"*\"]}"),
        "{msg}"
    );
    let (code, r) = call(
        c,
        Method::POST,
        &rbs,
        bob,
        Some(binding(
            "x",
            "Role",
            "ghost",
            json!([{"kind": "User", "name": "carol"}]),
        )),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        r["message"],
        r#"rolebindings.rbac.authorization.k8s.io "x" is forbidden: roles.rbac.authorization.k8s.io "ghost" not found"#
    );
    // Roles bob is bound to that do not exist are listed after the missing rules.
    admin(
        c,
        Method::POST,
        &rbs,
        binding(
            "bob-ghost",
            "Role",
            "ghost",
            json!([{"kind": "User", "name": "bob"}]),
        ),
    )
    .await;
    let (code, r) = call(
        c,
        Method::POST,
        &roles,
        bob,
        Some(role(
            "node-getter",
            json!([{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]),
        )),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        r["message"],
        "roles.rbac.authorization.k8s.io \"node-getter\" is forbidden: user \"bob\" (groups=[\"team\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"nodes\"], Verbs:[\"get\"]}; resolution errors: [roles.rbac.authorization.k8s.io \"ghost\" not found]"
    );
    // With `bind` on cluster-admin, the binding is allowed; with `escalate`, the role is.
    admin(
        c,
        Method::POST,
        &format!("{RBAC}/clusterroles"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "granter"},
            "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["cluster-admin"]},
                      {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["escalate"]}]}),
    )
    .await;
    admin(
        c,
        Method::POST,
        &rbs,
        binding(
            "bob-granter",
            "ClusterRole",
            "granter",
            json!([{"kind": "User", "name": "bob"}]),
        ),
    )
    .await;
    let (code, r) = call(
        c,
        Method::POST,
        &rbs,
        bob,
        Some(binding(
            "carol-root",
            "ClusterRole",
            "cluster-admin",
            json!([{"kind": "User", "name": "carol"}]),
        )),
    )
    .await;
    assert_eq!(code, 201, "{r}");
    let (code, r) = call(
        c,
        Method::POST,
        &roles,
        bob,
        Some(role(
            "node-reader",
            json!([{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]),
        )),
    )
    .await;
    assert_eq!(code, 201, "{r}");
    // A ClusterRole with an aggregationRule needs full authority (here: a cluster-wide grant).
    admin(
        c,
        Method::POST,
        &format!("{RBAC}/clusterrolebindings"),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "dave-cr"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:aggregate-to-admin"},
            "subjects": [{"kind": "User", "name": "dave"}]}),
    )
    .await;
    let (code, r) = call(
        c,
        Method::POST,
        &format!("{RBAC}/clusterroles"),
        Some(("dave", &[][..])),
        Some(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "agg"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"x": "y"}}]}}),
        ),
    )
    .await;
    // dave cannot even create ClusterRoles.
    assert_eq!(code, 403, "{r}");
}

/// Reconciliation at start: a tampered bootstrap role gets its rules back (extra rules stay), a
/// removed subject returns, a deleted binding is recreated, and `autoupdate: "false"` is left
/// alone.
#[tokio::test]
async fn bootstrap_policy_is_reconciled_at_every_start() {
    use skiff_store::Store;
    let dir = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn Store> =
        std::sync::Arc::new(skiff_store::SqliteStore::open(&dir.path().join("state.db")).unwrap());
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let tokens = skiff_apiserver::Tokens {
        admin: "a".into(),
        node: "n".into(),
    };
    let st = skiff_apiserver::AppState::new(store.clone(), tokens, rx);
    skiff_apiserver::bootstrap_rbac(&st).await.unwrap();
    let key =
        |plural: &str, name: &str| format!("/registry/rbac.authorization.k8s.io/{plural}/{name}");
    let read = |k: String| {
        let store = store.clone();
        async move {
            let kv = store.get(&k).await.unwrap();
            kv.map(|kv| {
                (
                    serde_json::from_slice::<Value>(&kv.value).unwrap(),
                    kv.mod_revision,
                )
            })
        }
    };
    // Tamper: basic-user loses its rules but gains one; discovery's binding loses its subject;
    // public-info-viewer's binding is deleted; monitoring opts out and loses its rules.
    let (mut basic, rev) = read(key("clusterroles", "system:basic-user"))
        .await
        .unwrap();
    basic["rules"] = json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]);
    store
        .update(
            &key("clusterroles", "system:basic-user"),
            serde_json::to_vec(&basic).unwrap(),
            rev,
        )
        .await
        .unwrap();
    let (mut disc, rev) = read(key("clusterrolebindings", "system:discovery"))
        .await
        .unwrap();
    disc["subjects"] = json!([]);
    store
        .update(
            &key("clusterrolebindings", "system:discovery"),
            serde_json::to_vec(&disc).unwrap(),
            rev,
        )
        .await
        .unwrap();
    store
        .delete(
            &key("clusterrolebindings", "system:public-info-viewer"),
            None,
        )
        .await
        .unwrap();
    let (mut mon, rev) = read(key("clusterroles", "system:monitoring"))
        .await
        .unwrap();
    mon["rules"] = json!([]);
    mon["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] = json!("false");
    store
        .update(
            &key("clusterroles", "system:monitoring"),
            serde_json::to_vec(&mon).unwrap(),
            rev,
        )
        .await
        .unwrap();

    skiff_apiserver::bootstrap_rbac(&st).await.unwrap();

    let (basic, _) = read(key("clusterroles", "system:basic-user"))
        .await
        .unwrap();
    let resources: Vec<Value> = basic["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["resources"].as_array().unwrap().clone())
        .collect();
    for r in [
        "configmaps",
        "selfsubjectaccessreviews",
        "selfsubjectrulesreviews",
        "selfsubjectreviews",
    ] {
        assert!(resources.contains(&json!(r)), "{basic}");
    }
    let (disc, _) = read(key("clusterrolebindings", "system:discovery"))
        .await
        .unwrap();
    assert_eq!(disc["subjects"][0]["name"], "system:authenticated");
    let (piv, _) = read(key("clusterrolebindings", "system:public-info-viewer"))
        .await
        .unwrap();
    assert_eq!(piv["subjects"].as_array().map(Vec::len), Some(2));
    let (mon, _) = read(key("clusterroles", "system:monitoring"))
        .await
        .unwrap();
    assert_eq!(mon["rules"], json!([]));
}
