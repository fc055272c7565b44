//! The ServiceAccount controllers against a real API server: `default` in every namespace (and
//! back after a delete), `kube-root-ca.crt` published and repaired, pods admitted in a brand-new
//! namespace, and legacy token Secrets filled, authenticating while they exist, and deleted
//! when their ServiceAccount is gone.

mod common;

use std::time::Duration;

use common::TestCluster;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use skiff_controllers::Options;

const CA: &str = "-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n";
const WAIT: Duration = Duration::from_secs(20);

async fn cluster() -> TestCluster {
    TestCluster::start_with(Options {
        root_ca_pem: Some(CA.into()),
        ..Options::default()
    })
    .await
}

async fn namespace(c: &TestCluster, name: &str) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    Api::<Namespace>::all(c.client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

/// A client that authenticates with `token` (the admin kubeconfig with its user swapped).
async fn token_client(c: &TestCluster, token: &str, dir: &tempfile::TempDir) -> kube::Client {
    let text = std::fs::read_to_string(&c.kubeconfig).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("client-certificate-data:") {
            out.push_str(&format!("    token: {token}\n"));
        } else if !line.trim_start().starts_with("client-key-data:") {
            out.push_str(line);
            out.push('\n');
        }
    }
    let path = dir.path().join("token.kubeconfig");
    std::fs::write(&path, out).unwrap();
    common::client_from(&path).await
}

#[tokio::test]
async fn every_namespace_gets_default_and_the_root_ca() {
    let c = cluster().await;
    namespace(&c, "team-a").await;
    // A pod right after the namespace: admission waits for `default` briefly.
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
    .unwrap();
    let created = Api::<Pod>::namespaced(c.client.clone(), "team-a")
        .create(&PostParams::default(), &pod)
        .await
        .expect("a pod in a new namespace is admitted");
    assert_eq!(
        created.spec.unwrap().service_account_name.as_deref(),
        Some("default")
    );

    let sas: Api<ServiceAccount> = Api::namespaced(c.client.clone(), "team-a");
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "team-a");
    for ns in ["default", "kube-system", "team-a"] {
        let sas: Api<ServiceAccount> = Api::namespaced(c.client.clone(), ns);
        c.wait_for(&format!("default SA in {ns}"), WAIT, || async {
            sas.get_opt("default").await.unwrap().is_some()
        })
        .await;
    }
    c.wait_for("kube-root-ca.crt", WAIT, || async {
        cms.get_opt("kube-root-ca.crt").await.unwrap().is_some()
    })
    .await;
    let cm = cms.get("kube-root-ca.crt").await.unwrap();
    assert_eq!(cm.data.as_ref().unwrap()["ca.crt"], CA);
    assert_eq!(
        cm.metadata.annotations.as_ref().unwrap()["kubernetes.io/description"],
        skiff_controllers::serviceaccounts::ROOT_CA_DESCRIPTION
    );

    // Deleted or tampered with, both come back.
    sas.delete("default", &DeleteParams::default())
        .await
        .unwrap();
    let patch = json!({"data": {"ca.crt": "evil"}});
    cms.patch(
        "kube-root-ca.crt",
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .unwrap();
    c.wait_for("default SA re-created", WAIT, || async {
        sas.get_opt("default").await.unwrap().is_some()
    })
    .await;
    c.wait_for("kube-root-ca.crt repaired", WAIT, || async {
        cms.get("kube-root-ca.crt").await.unwrap().data.unwrap()["ca.crt"] == CA
    })
    .await;
}

#[tokio::test]
async fn legacy_token_secrets_are_filled_and_die_with_their_secret() {
    let c = cluster().await;
    let dir = tempfile::tempdir().unwrap();
    let sas: Api<ServiceAccount> = Api::namespaced(c.client.clone(), "default");
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "robot"}})).unwrap();
    let sa = sas.create(&PostParams::default(), &sa).await.unwrap();
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), "default");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "robot-token",
            "annotations": {"kubernetes.io/service-account.name": "robot"}},
        "type": "kubernetes.io/service-account-token"}))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    c.wait_for("the token Secret filled", WAIT, || async {
        secrets
            .get("robot-token")
            .await
            .unwrap()
            .data
            .is_some_and(|d| d.contains_key("token"))
    })
    .await;
    let filled = secrets.get("robot-token").await.unwrap();
    let data = filled.data.clone().unwrap();
    assert_eq!(data["namespace"].0, b"default");
    assert_eq!(data["ca.crt"].0, CA.as_bytes());
    assert_eq!(
        filled.metadata.annotations.as_ref().unwrap()["kubernetes.io/service-account.uid"],
        sa.metadata.uid.clone().unwrap()
    );
    let token = String::from_utf8(data["token"].0.clone()).unwrap();
    let as_robot = token_client(&c, &token, &dir).await;
    let cms: Api<ConfigMap> = Api::namespaced(as_robot, "default");
    // Authenticated: allowed, or a 403 from RBAC (the ServiceAccount is bound to nothing).
    match cms.list(&Default::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("the legacy token should authenticate, got {other:?}"),
    }

    secrets
        .delete("robot-token", &DeleteParams::default())
        .await
        .unwrap();
    match cms.list(&Default::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 401),
        other => panic!("expected 401 after the Secret was deleted, got {other:?}"),
    }

    // A token Secret for a ServiceAccount that does not exist is deleted.
    let orphan: Secret = serde_json::from_value(json!({
        "metadata": {"name": "ghost-token",
            "annotations": {"kubernetes.io/service-account.name": "ghost"}},
        "type": "kubernetes.io/service-account-token"}))
    .unwrap();
    secrets
        .create(&PostParams::default(), &orphan)
        .await
        .unwrap();
    c.wait_for("the orphan token Secret deleted", WAIT, || async {
        secrets.get_opt("ghost-token").await.unwrap().is_none()
    })
    .await;
}
