//! Node identities against a real HTTPS server: the join token only bootstraps, agents get
//! their own client certificates (and renew them), the Node authorizer limits a node to the
//! objects its pods reference, and NodeRestriction to its own Node, Lease and pods.

mod common;

use std::time::Duration;

use serde_json::{json, Value};
use skiff_client::node_identity::{IdentityOptions, NodeIdentity};

struct Cluster {
    srv: common::TestServer,
    url: String,
    ca: Vec<u8>,
    token: String,
}

async fn cluster() -> Cluster {
    let srv = common::start().await;
    // No controllers run here: the ServiceAccount admission (before NodeRestriction, as
    // upstream) needs `default` to exist.
    common::ensure_default_sa(&srv.client, "default").await;
    let ca = std::fs::read(srv._dir.path().join("server/tls/ca.crt")).expect("CA");
    let text = std::fs::read_to_string(&srv.kubeconfig).expect("kubeconfig");
    let url = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("server line")
        .to_string();
    let token = std::fs::read_to_string(srv._dir.path().join("node-token"))
        .expect("token")
        .trim()
        .to_string();
    Cluster {
        srv,
        url,
        ca,
        token,
    }
}

impl Cluster {
    fn options(&self, node: &str) -> IdentityOptions {
        IdentityOptions {
            server: self.url.clone(),
            ca_pem: self.ca.clone(),
            join_token: self.token.clone(),
            node_name: node.to_string(),
            dir: self.srv._dir.path().join(format!("agent-{node}")),
            expiration_seconds: None,
        }
    }

    async fn node(&self, node: &str) -> kube::Client {
        NodeIdentity::establish(self.options(node))
            .await
            .expect("node identity")
            .client()
    }

    fn token_client(&self) -> kube::Client {
        skiff_client::config::with_token(&self.url, &self.ca, &self.token).expect("client")
    }

    fn admin(&self) -> &kube::Client {
        &self.srv.client
    }
}

/// A raw request; the API error (code and message) on failure.
async fn call(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value, (u16, String)> {
    let ct = if method == "PATCH" {
        "application/merge-patch+json"
    } else {
        "application/json"
    };
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::CONTENT_TYPE, ct)
        .body(
            body.map(|b| serde_json::to_vec(&b).unwrap())
                .unwrap_or_default(),
        )
        .unwrap();
    match client.request_text(req).await {
        Ok(text) => Ok(serde_json::from_str(&text).unwrap_or(Value::Null)),
        Err(kube::Error::Api(ae)) => Err((ae.code, ae.message)),
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

fn forbidden(res: Result<Value, (u16, String)>) -> String {
    match res {
        Err((403, msg)) => msg,
        other => panic!("expected 403, got {other:?}"),
    }
}

#[tokio::test]
async fn the_join_token_only_bootstraps() {
    let c = cluster().await;
    let token = c.token_client();
    assert_eq!(
        forbidden(call(&token, "GET", "/api/v1/secrets", None).await),
        r#"secrets is forbidden: User "system:bootstrap:skiff-node" cannot list resource "secrets" in API group "" at the cluster scope"#
    );
    let pod =
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}});
    forbidden(call(&token, "POST", "/api/v1/namespaces/default/pods", Some(pod)).await);
    forbidden(call(&token, "DELETE", "/api/v1/nodes/n1", None).await);
    // Discovery, as for every authenticated user.
    call(&token, "GET", "/api", None).await.expect("discovery");
}

#[tokio::test]
async fn agents_get_their_own_certificate_and_renew_it() {
    let c = cluster().await;
    let mut opts = c.options("n1");
    opts.expiration_seconds = Some(7200);
    let identity = NodeIdentity::establish(opts.clone())
        .await
        .expect("identity");
    let files = identity.files().clone();
    for f in [&files.cert, &files.key, &files.kubeconfig] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(f).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", f.display());
    }
    let info = identity.cert_info();
    assert_eq!(info.common_name, "system:node:n1");
    assert_eq!(info.organizations, ["system:nodes"]);
    // Two hours plus the hour of clock-skew backdating.
    assert_eq!(info.not_after - info.not_before, 7200 + 3600);

    // The node may create and read its own Node, nothing more.
    let client = identity.client();
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1",
        "labels": {"kubernetes.io/hostname": "n1"}}});
    call(&client, "POST", "/api/v1/nodes", Some(node))
        .await
        .expect("own node");
    call(&client, "GET", "/api/v1/nodes/n1", None)
        .await
        .expect("read own node");
    assert_eq!(
        forbidden(call(&client, "GET", "/api/v1/namespaces/default/secrets", None).await),
        r#"secrets is forbidden: User "system:node:n1" cannot list resource "secrets" in API group "" in the namespace "default": No Object name found"#
    );

    // Renewal replaces the files and the client's certificate; the same client keeps working.
    let before = std::fs::read_to_string(&files.cert).unwrap();
    identity.renew().await.expect("renew");
    let after = std::fs::read_to_string(&files.cert).unwrap();
    assert_ne!(before, after);
    call(&client, "GET", "/api/v1/nodes/n1", None)
        .await
        .expect("read own node after renewal");
    // A restart keeps the fresh certificate rather than minting another.
    drop(identity);
    let again = NodeIdentity::establish(opts).await.expect("identity");
    assert_eq!(std::fs::read_to_string(&files.cert).unwrap(), after);
    drop(again);

    // The node's own certificate cannot mint another node's identity.
    let err = skiff_client::node_identity::request(&client, "n2", None, None)
        .await
        .err()
        .expect("n1 minted n2");
    assert_eq!(common::status_code(&err), Some(403), "{err}");
    // Bad input is refused.
    let token = c.token_client();
    let err = skiff_client::node_identity::request(&token, "N_1", None, Some("pw"))
        .await
        .err()
        .expect("invalid name");
    assert_eq!(common::status_code(&err), Some(400), "{err}");
    let err = skiff_client::node_identity::request(&token, "n1", Some(60), Some("pw"))
        .await
        .err()
        .expect("too short");
    assert_eq!(common::status_code(&err), Some(400), "{err}");
    let wrong = skiff_client::config::with_token(&c.url, &c.ca, "wrong").unwrap();
    let err = skiff_client::node_identity::request(&wrong, "n1", None, Some("pw"))
        .await
        .err()
        .expect("wrong token");
    assert_eq!(common::status_code(&err), Some(401), "{err}");
}

#[tokio::test]
async fn the_join_token_cannot_take_over_an_existing_node() {
    let c = cluster().await;
    let first = c.node("n1").await;
    call(
        &first,
        "POST",
        "/api/v1/nodes",
        Some(json!({"metadata": {"name": "n1"}})),
    )
    .await
    .expect("own node");
    // Another machine (its own password) with the join token, for the same name.
    let mut other = c.options("n1");
    other.dir = c.srv._dir.path().join("other-machine");
    let err = NodeIdentity::establish(other.clone())
        .await
        .err()
        .expect("took over n1");
    assert!(err.to_string().contains("Node password rejected"), "{err}");
    // Without a password at all: refused before anything is issued.
    let token = c.token_client();
    let err = skiff_client::node_identity::request(&token, "n1", None, None)
        .await
        .err()
        .expect("no password");
    assert_eq!(common::status_code(&err), Some(400), "{err}");
    // The first machine restarts (same password) and is still itself.
    NodeIdentity::establish(c.options("n1"))
        .await
        .expect("same machine");
    // Nor can the join token get a serving certificate for the existing node (to pose as its
    // agent API); the node itself can.
    let loopback = [std::net::IpAddr::from([127, 0, 0, 1])];
    let err = skiff_client::node_cert::request(&token, "n1", &loopback)
        .await
        .err()
        .expect("serving certificate for n1 with the join token");
    assert_eq!(common::status_code(&err), Some(403), "{err}");
    skiff_client::node_cert::request(&first, "n1", &loopback)
        .await
        .expect("the node's own serving certificate");
    // Once the Node is deleted, the name is free for a new machine.
    call(c.admin(), "DELETE", "/api/v1/nodes/n1", None)
        .await
        .expect("delete node");
    NodeIdentity::establish(other).await.expect("freed name");
}

fn pod_on(name: &str, node: &str, secret: &str, cm: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox",
            "envFrom": [{"configMapRef": {"name": cm}}]}],
            "volumes": [{"name": "s", "secret": {"secretName": secret}}]}})
}

#[tokio::test]
async fn nodes_read_only_what_their_pods_reference() {
    let c = cluster().await;
    let admin = c.admin();
    for (kind, name) in [
        ("secrets", "for-b"),
        ("secrets", "unused"),
        ("configmaps", "cm-b"),
    ] {
        call(
            admin,
            "POST",
            &format!("/api/v1/namespaces/default/{kind}"),
            Some(json!({"metadata": {"name": name}, "data": {}})),
        )
        .await
        .expect("create");
    }
    let (a, b) = (c.node("node-a").await, c.node("node-b").await);
    call(
        admin,
        "POST",
        "/api/v1/namespaces/default/pods",
        Some(pod_on("web", "node-b", "for-b", "cm-b")),
    )
    .await
    .expect("pod");
    let secret = "/api/v1/namespaces/default/secrets/for-b";
    assert_eq!(
        forbidden(call(&a, "GET", secret, None).await),
        r#"secrets "for-b" is forbidden: User "system:node:node-a" cannot get resource "secrets" in API group "" in the namespace "default": no relationship found between node 'node-a' and this object"#
    );
    call(&b, "GET", secret, None)
        .await
        .expect("node-b reads its pod's secret");
    call(
        &b,
        "GET",
        "/api/v1/namespaces/default/configmaps/cm-b",
        None,
    )
    .await
    .expect("node-b reads its pod's configmap");
    forbidden(call(&b, "GET", "/api/v1/namespaces/default/secrets/unused", None).await);
    // A list of exactly that secret (a field selector on its name) is a read of it.
    call(
        &b,
        "GET",
        "/api/v1/namespaces/default/secrets?fieldSelector=metadata.name%3Dfor-b",
        None,
    )
    .await
    .expect("list by name");
    forbidden(call(&b, "GET", "/api/v1/namespaces/default/secrets", None).await);
    // Pods: every pod may be listed (the agent enforces NetworkPolicies, whose peers are any
    // pod's labels and IP, like kube-router's and Calico's node agents).
    call(&a, "GET", "/api/v1/pods", None)
        .await
        .expect("a node lists every pod for NetworkPolicy peers");
    let listed = call(
        &b,
        "GET",
        "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-b",
        None,
    )
    .await
    .expect("own pods");
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    // The pod goes: so does node-b's access.
    call(
        admin,
        "DELETE",
        "/api/v1/namespaces/default/pods/web?gracePeriodSeconds=0",
        None,
    )
    .await
    .expect("delete");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match call(&b, "GET", secret, None).await {
            Err((403, _)) => break,
            _ if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            other => panic!("node-b still reads the secret: {other:?}"),
        }
    }
}

#[tokio::test]
async fn node_restriction_keeps_nodes_to_their_own_objects() {
    let c = cluster().await;
    let admin = c.admin();
    let (a, b) = (c.node("node-a").await, c.node("node-b").await);
    for (client, name) in [(&a, "node-a"), (&b, "node-b")] {
        call(
            client,
            "POST",
            "/api/v1/nodes",
            Some(json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}})),
        )
        .await
        .expect("own node");
    }
    // Other nodes' objects.
    assert_eq!(
        forbidden(call(&a, "DELETE", "/api/v1/nodes/node-b", None).await),
        r#"nodes "node-b" is forbidden: User "system:node:node-a" cannot delete resource "nodes" in API group "" at the cluster scope"#
    );
    assert_eq!(
        forbidden(
            call(
                &a,
                "PATCH",
                "/api/v1/nodes/node-b",
                Some(json!({"metadata": {"labels": {"x": "y"}}}))
            )
            .await
        ),
        r#"nodes "node-b" is forbidden: node "node-a" is not allowed to modify node "node-b""#
    );
    // Steering labels and taints on its own Node.
    assert_eq!(
        forbidden(
            call(
                &a,
                "PATCH",
                "/api/v1/nodes/node-a",
                Some(
                    json!({"metadata": {"labels": {"node-restriction.kubernetes.io/pool": "gpu"}}})
                )
            )
            .await
        ),
        r#"nodes "node-a" is forbidden: is not allowed to modify labels: node-restriction.kubernetes.io/pool"#
    );
    assert_eq!(
        forbidden(
            call(
                &a,
                "PATCH",
                "/api/v1/nodes/node-a",
                Some(json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}))
            )
            .await
        ),
        r#"nodes "node-a" is forbidden: node "node-a" is not allowed to modify taints"#
    );
    assert_eq!(
        forbidden(
            call(
                &a,
                "POST",
                "/api/v1/nodes",
                Some(json!({"metadata": {"name": "node-a2",
                    "labels": {"node-role.kubernetes.io/control-plane": ""}}}))
            )
            .await
        ),
        r#"nodes "node-a2" is forbidden: node "node-a" is not allowed to modify node "node-a2""#
    );
    call(
        &a,
        "PATCH",
        "/api/v1/nodes/node-a",
        Some(json!({"metadata": {"labels": {"example.com/rack": "r1"}}})),
    )
    .await
    .expect("own labels");
    // Leases: its own, in kube-node-lease.
    let lease = |name: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name}, "spec": {"holderIdentity": name}})
    };
    let leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
    call(&a, "POST", leases, Some(lease("node-a")))
        .await
        .expect("own lease");
    assert_eq!(
        forbidden(call(&a, "POST", leases, Some(lease("node-b"))).await),
        r#"leases.coordination.k8s.io "node-b" is forbidden: can only access node lease with the same name as the requesting node"#
    );
    // Pods: no normal pods; status, deletion and eviction only of pods bound to itself.
    let pod = |name: &str, node: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}})
    };
    let pods = "/api/v1/namespaces/default/pods";
    assert_eq!(
        forbidden(call(&a, "POST", pods, Some(pod("evil", "node-a"))).await),
        r#"pods "evil" is forbidden: pod does not have "kubernetes.io/config.mirror" annotation, node "node-a" can only create mirror pods"#
    );
    // Mirror pods: bound to itself, owned by its Node, referencing nothing.
    let node_uid = call(&a, "GET", "/api/v1/nodes/node-a", None)
        .await
        .expect("own node")["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string();
    let mirror = |name: &str, node: &str, extra: Value| {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name,
            "annotations": {"kubernetes.io/config.mirror": "hash"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "node-a",
                "uid": node_uid, "controller": true}]},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}});
        if let (Some(spec), Some(extra)) = (p["spec"].as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        p
    };
    call(
        &a,
        "POST",
        pods,
        Some(mirror("static-a", "node-a", json!({}))),
    )
    .await
    .expect("mirror pod");
    assert_eq!(
        forbidden(
            call(
                &a,
                "POST",
                pods,
                Some(mirror("static-b", "node-b", json!({})))
            )
            .await
        ),
        r#"pods "static-b" is forbidden: node "node-a" can only create pods with spec.nodeName set to itself"#
    );
    assert_eq!(
        forbidden(
            call(
                &a,
                "POST",
                pods,
                Some(mirror(
                    "static-s",
                    "node-a",
                    json!({"volumes": [{"name": "s", "secret": {"secretName": "x"}}]})
                ))
            )
            .await
        ),
        // The ServiceAccount admission runs before NodeRestriction (upstream's plugin order)
        // and already refuses a mirror pod that references a Secret.
        r#"pods "static-s" is forbidden: a mirror pod may not reference secrets"#
    );
    assert_eq!(
        forbidden(
            call(
                &a,
                "POST",
                pods,
                Some(mirror(
                    "static-c",
                    "node-a",
                    json!({"volumes": [{"name": "c", "configMap": {"name": "x"}}]})
                ))
            )
            .await
        ),
        r#"pods "static-c" is forbidden: node "node-a" can not create pods that reference configmaps"#
    );
    call(admin, "POST", pods, Some(pod("on-b", "node-b")))
        .await
        .expect("pod");
    let status = Some(json!({"status": {"phase": "Running"}}));
    assert_eq!(
        forbidden(call(&a, "PATCH", &format!("{pods}/on-b/status"), status.clone()).await),
        r#"pods "on-b" is forbidden: node "node-a" can only update pod status for pods with spec.nodeName set to itself"#
    );
    call(&b, "PATCH", &format!("{pods}/on-b/status"), status)
        .await
        .expect("own pod status");
    let eviction =
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "on-b"}});
    assert_eq!(
        forbidden(call(&a, "POST", &format!("{pods}/on-b/eviction"), Some(eviction)).await),
        r#"pods "on-b" is forbidden: node node-a can only evict pods with spec.nodeName set to itself"#
    );
    assert_eq!(
        forbidden(call(&a, "DELETE", &format!("{pods}/on-b"), None).await),
        r#"pods "on-b" is forbidden: node "node-a" can only delete pods with spec.nodeName set to itself"#
    );
    call(&b, "DELETE", &format!("{pods}/on-b"), None)
        .await
        .expect("own pod");
}
