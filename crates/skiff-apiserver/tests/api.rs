//! API tests: the kube-rs client against a real HTTPS server on a random loopback port, with
//! the generated kubeconfig (CA + bearer token). Each test has its own data dir and store.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::{json, Value};
mod common;

use common::{client_from, start, status_code};
use skiff_apiserver::{Server, ServerConfig};

fn deployment(name: &str, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": image}]}}}
    }))
    .unwrap()
}

#[tokio::test]
async fn deployment_lifecycle() {
    let t = start().await;
    let api: Api<Deployment> = Api::namespaced(t.client.clone(), "default");
    let created = api
        .create(&PostParams::default(), &deployment("web", "nginx:1.27"))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.is_some());
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    let rv1: i64 = meta.resource_version.as_deref().unwrap().parse().unwrap();
    // Defaults were applied.
    let spec = created.spec.as_ref().unwrap();
    assert_eq!(spec.revision_history_limit, Some(10));

    let got = api.get("web").await.unwrap();
    assert_eq!(got.metadata.uid, meta.uid);

    // Label-only merge patch: generation unchanged.
    let patched = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "front"}}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.as_ref().unwrap()["tier"], "front");
    assert_eq!(patched.metadata.generation, Some(1));
    let rv2: i64 = patched
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1);

    // Strategic merge of the containers list by name: generation bumps.
    let smp = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.28"}]}}}});
    let patched = api
        .patch("web", &PatchParams::default(), &Patch::Strategic(smp))
        .await
        .unwrap();
    let containers = &patched
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers;
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0].image.as_deref(), Some("nginx:1.28"));
    assert_eq!(patched.metadata.generation, Some(2));

    // Status sent on the main resource is ignored.
    let patched = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 7}})),
        )
        .await
        .unwrap();
    assert_ne!(patched.status.as_ref().and_then(|s| s.replicas), Some(7));

    // Server-side apply (updates, and creates a second object).
    let ssa = PatchParams::apply("test-manager");
    let applied = api
        .patch(
            "web",
            &ssa.clone().force(),
            &Patch::Apply(deployment("web", "nginx:1.29")),
        )
        .await
        .unwrap();
    let containers = &applied
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers;
    assert_eq!(containers[0].image.as_deref(), Some("nginx:1.29"));
    assert!(applied
        .metadata
        .managed_fields
        .unwrap_or_default()
        .iter()
        .any(|m| m.manager.as_deref() == Some("test-manager")));
    let other = api
        .patch("api", &ssa, &Patch::Apply(deployment("api", "busybox")))
        .await
        .unwrap();
    assert_eq!(other.metadata.name.as_deref(), Some("api"));

    // Label-selector lists.
    let all = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 2);
    let sel = api
        .list(&ListParams::default().labels("app=api"))
        .await
        .unwrap();
    assert_eq!(sel.items.len(), 1);
    assert_eq!(sel.items[0].metadata.name.as_deref(), Some("api"));
    let none = api
        .list(&ListParams::default().labels("app in (x,y)"))
        .await
        .unwrap();
    assert!(none.items.is_empty());
    // Paging.
    let page = api.list(&ListParams::default().limit(1)).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let token = page.metadata.continue_.clone().expect("continue token");
    let page2 = api
        .list(&ListParams::default().limit(1).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(page2.items.len(), 1);
    assert_ne!(page2.items[0].metadata.name, page.items[0].metadata.name);

    // Scale subresource.
    let scale = api.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(2));
    api.patch_scale(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 5}})),
    )
    .await
    .unwrap();
    assert_eq!(
        api.get("web").await.unwrap().spec.unwrap().replicas,
        Some(5)
    );

    // Delete.
    api.delete("web", &DeleteParams::default()).await.unwrap();
    let err = api.get("web").await.unwrap_err();
    assert_eq!(status_code(&err), Some(404));
}

#[tokio::test]
async fn configmap_conflict_and_replace() {
    let t = start().await;
    let api: Api<ConfigMap> = Api::namespaced(t.client.clone(), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"a": "1"}})).unwrap();
    let created = api.create(&PostParams::default(), &cm).await.unwrap();
    let err = api.create(&PostParams::default(), &cm).await.unwrap_err();
    assert_eq!(status_code(&err), Some(409));

    let mut first = created.clone();
    first.data = Some([("a".to_string(), "2".to_string())].into());
    let updated = api
        .replace("cfg", &PostParams::default(), &first)
        .await
        .unwrap();
    assert_eq!(updated.data.as_ref().unwrap()["a"], "2");

    // Replacing with the stale resourceVersion conflicts.
    let mut stale = created.clone();
    stale.data = Some([("a".to_string(), "3".to_string())].into());
    let err = api
        .replace("cfg", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert_eq!(s.reason, "Conflict");
            assert!(
                s.message.contains("the object has been modified"),
                "{}",
                s.message
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(api.get("cfg").await.unwrap().data.unwrap()["a"], "2");

    // Generated names.
    let gen: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).unwrap();
    let made = api.create(&PostParams::default(), &gen).await.unwrap();
    let name = made.metadata.name.unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");

    // Dry run stores nothing.
    let dry: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "dry"}})).unwrap();
    api.create(
        &PostParams {
            dry_run: true,
            ..Default::default()
        },
        &dry,
    )
    .await
    .unwrap();
    assert_eq!(status_code(&api.get("dry").await.unwrap_err()), Some(404));

    // Missing namespace.
    let other: Api<ConfigMap> = Api::namespaced(t.client.clone(), "nope");
    let err = other.create(&PostParams::default(), &cm).await.unwrap_err();
    assert_eq!(status_code(&err), Some(404));

    // JSON patch.
    let p = json!([{"op": "add", "path": "/data/b", "value": "x"}]);
    let patch: kube::api::Patch<()> = Patch::Json(serde_json::from_value(p).unwrap());
    let patched = api
        .patch("cfg", &PatchParams::default(), &patch)
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["b"], "x");
}

#[tokio::test]
async fn unauthorized_without_valid_token() {
    let t = start().await;
    let text = std::fs::read_to_string(&t.kubeconfig).unwrap();
    // The admin client certificate swapped for a wrong bearer token.
    let bad = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("client-key-data:"))
        .map(|l| {
            if l.trim_start().starts_with("client-certificate-data:") {
                "    token: wrong".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(bad.contains("token: wrong"));
    let path = t.kubeconfig.with_file_name("bad.yaml");
    std::fs::write(&path, bad).unwrap();
    let client = client_from(&path).await;
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let err = api.list(&ListParams::default()).await.unwrap_err();
    assert_eq!(status_code(&err), Some(401));
}

async fn whoami(client: &kube::Client) -> Result<Value, kube::Error> {
    let req = http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
        .header("content-type", "application/json")
        .body(
            serde_json::to_vec(
                &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
            )
            .unwrap(),
        )
        .unwrap();
    client.request::<Value>(req).await
}

/// A kubeconfig for the test server with a client certificate issued by `ca`.
fn cert_kubeconfig(t: &common::TestServer, cert_pem: &str, key_pem: &str) -> std::path::PathBuf {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let text = std::fs::read_to_string(&t.kubeconfig).unwrap();
    let out: Vec<String> = text
        .lines()
        .map(|l| {
            let indent = &l[..l.len() - l.trim_start().len()];
            if l.trim_start().starts_with("client-certificate-data:") {
                format!("{indent}client-certificate-data: {}", b64(cert_pem))
            } else if l.trim_start().starts_with("client-key-data:") {
                format!("{indent}client-key-data: {}", b64(key_pem))
            } else {
                l.to_string()
            }
        })
        .collect();
    let path = t
        .kubeconfig
        .with_file_name(format!("cert-{}.yaml", rand_suffix()));
    std::fs::write(&path, out.join("\n")).unwrap();
    path
}

fn rand_suffix() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[tokio::test]
async fn client_certificates_name_the_user_and_groups_and_foreign_ones_are_refused() {
    let t = start().await;
    // The admin kubeconfig is system:admin in system:masters.
    let me = whoami(&t.client).await.unwrap();
    assert_eq!(me["status"]["userInfo"]["username"], "system:admin");
    assert_eq!(
        me["status"]["userInfo"]["groups"],
        json!(["system:masters", "system:authenticated"])
    );
    // A certificate from the cluster CA for alice in two groups.
    let dir = t.kubeconfig.parent().unwrap();
    let ca_pem = std::fs::read_to_string(dir.join("server/tls/ca.crt")).unwrap();
    let ca_key = std::fs::read_to_string(dir.join("server/tls/ca.key")).unwrap();
    let signer = skiff_apiserver::auth::x509::CaSigner::new(&ca_pem, &ca_key).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let (cert, key) = signer
        .issue_client(
            "alice",
            &["dev".into(), "qa".into()],
            now - time::Duration::minutes(5),
            now + time::Duration::hours(1),
        )
        .unwrap();
    let alice = client_from(&cert_kubeconfig(&t, &cert, &key)).await;
    let me = whoami(&alice).await.unwrap();
    assert_eq!(me["status"]["userInfo"]["username"], "alice");
    assert_eq!(
        me["status"]["userInfo"]["groups"],
        json!(["dev", "qa", "system:authenticated"])
    );
    // Impersonation is the acting user in whoami.
    let mut cfg = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&t.kubeconfig).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    cfg.auth_info.impersonate = Some("bob".into());
    cfg.auth_info.impersonate_groups = Some(vec!["ops".into()]);
    let as_bob = kube::Client::try_from(cfg).unwrap();
    let me = whoami(&as_bob).await.unwrap();
    assert_eq!(me["status"]["userInfo"]["username"], "bob");
    assert_eq!(
        me["status"]["userInfo"]["groups"],
        json!(["ops", "system:authenticated"])
    );
    // An expired certificate from the right CA fails the TLS handshake.
    let (old, old_key) = signer
        .issue_client(
            "alice",
            &[],
            now - time::Duration::hours(2),
            now - time::Duration::hours(1),
        )
        .unwrap();
    let expired = client_from(&cert_kubeconfig(&t, &old, &old_key)).await;
    assert!(whoami(&expired).await.is_err());
    // The same name from a CA of the attacker's own fails the handshake: no request is served.
    let fake_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "skiff-ca");
    params.distinguished_name = dn;
    let fake_ca = params.self_signed(&fake_key).unwrap();
    let fake =
        skiff_apiserver::auth::x509::CaSigner::new(&fake_ca.pem(), &fake_key.serialize_pem())
            .unwrap();
    let (forged, forged_key) = fake
        .issue_client(
            "system:admin",
            &["system:masters".into()],
            now - time::Duration::minutes(5),
            now + time::Duration::hours(1),
        )
        .unwrap();
    let forged = client_from(&cert_kubeconfig(&t, &forged, &forged_key)).await;
    let err = whoami(&forged).await.unwrap_err();
    assert!(status_code(&err).is_none(), "{err}");
}

#[tokio::test]
async fn discovery_lists_deployments() {
    let t = start().await;
    let v = t.client.apiserver_version().await.unwrap();
    assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "33"));
    let resources = t.client.list_api_group_resources("apps/v1").await.unwrap();
    let d = resources
        .resources
        .iter()
        .find(|r| r.name == "deployments")
        .expect("deployments");
    assert!(d.namespaced);
    assert_eq!(d.kind, "Deployment");
    assert!(resources
        .resources
        .iter()
        .any(|r| r.name == "deployments/scale"));
    let groups = t.client.list_api_groups().await.unwrap();
    assert!(groups.groups.iter().any(|g| g.name == "apps"));
    let core = t.client.list_core_api_versions().await.unwrap();
    assert_eq!(core.versions, vec!["v1".to_string()]);

    // Aggregated discovery with the header kubectl sends.
    let req = http::Request::get("/apis")
        .header(
            "Accept",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        )
        .body(Vec::new())
        .unwrap();
    let body: Value = t.client.request(req).await.unwrap();
    assert_eq!(body["kind"], "APIGroupDiscoveryList");
    let apps = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == "apps")
        .unwrap();
    let res = apps["versions"][0]["resources"].as_array().unwrap();
    assert!(res
        .iter()
        .any(|r| r["resource"] == "deployments" && r["scope"] == "Namespaced"));
}

#[tokio::test]
async fn watch_resumes_in_order() {
    let t = start().await;
    let api: Api<ConfigMap> = Api::namespaced(t.client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "w", "labels": {"k": "v"}}, "data": {"n": "0"}}),
    )
    .unwrap();
    let created = api.create(&PostParams::default(), &cm).await.unwrap();
    let start_rv = created.metadata.resource_version.clone().unwrap();
    for i in 1..=3 {
        api.patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"n": i.to_string()}})),
        )
        .await
        .unwrap();
    }
    api.delete("w", &DeleteParams::default()).await.unwrap();
    let stream = api
        .watch(&WatchParams::default().timeout(5), &start_rv)
        .await
        .unwrap();
    let events: Vec<WatchEvent<ConfigMap>> = stream.take(4).try_collect().await.unwrap();
    let mut seen = Vec::new();
    let mut last_rv = start_rv.parse::<i64>().unwrap();
    for e in events {
        match e {
            WatchEvent::Modified(o) => {
                let rv: i64 = o
                    .metadata
                    .resource_version
                    .clone()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(rv > last_rv);
                last_rv = rv;
                seen.push(format!("M{}", o.data.unwrap()["n"]));
            }
            WatchEvent::Deleted(_) => seen.push("D".into()),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["M1", "M2", "M3", "D"]);

    // A watch from "now" with a label selector: an object that stops matching is DELETED.
    let mut stream = api
        .watch(&WatchParams::default().labels("k=v").timeout(10), "0")
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &cm).await.unwrap();
    assert!(matches!(
        stream.next().await,
        Some(Ok(WatchEvent::Added(_)))
    ));
    api.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"k": "other"}}})),
    )
    .await
    .unwrap();
    assert!(matches!(
        stream.next().await,
        Some(Ok(WatchEvent::Deleted(_)))
    ));
}

#[tokio::test]
async fn invalid_object_is_rejected() {
    let t = start().await;
    let api: Api<Deployment> = Api::namespaced(t.client.clone(), "default");
    let mut d = deployment("noselector", "nginx");
    d.spec.as_mut().unwrap().selector = Default::default();
    let mut v = serde_json::to_value(&d).unwrap();
    v["spec"].as_object_mut().unwrap().remove("selector");
    let d: Deployment = serde_json::from_value(v).unwrap_or(d);
    let err = api.create(&PostParams::default(), &d).await.unwrap_err();
    match &err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422, "{s:?}");
            assert_eq!(s.reason, "Invalid");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        status_code(&api.get("noselector").await.unwrap_err()),
        Some(404)
    );

    let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), "default");
    let bad: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "Bad_Name"}})).unwrap();
    let err = cms.create(&PostParams::default(), &bad).await.unwrap_err();
    assert_eq!(status_code(&err), Some(422));
    assert_eq!(
        status_code(&cms.get("Bad_Name").await.unwrap_err()),
        Some(404)
    );
}

#[tokio::test]
async fn pod_table_and_graceful_delete() {
    let t = start().await;
    common::ensure_default_sa(&t.client, "default").await;
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), "default");
    let pod: Pod =
        serde_json::from_value(json!({"metadata": {"name": "p1", "labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
        .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let req = http::Request::get("/api/v1/namespaces/default/pods?limit=500")
        .header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .unwrap();
    let table: Value = t.client.request(req).await.unwrap();
    assert_eq!(table["kind"], "Table");
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for want in ["Name", "Ready", "Status", "Restarts", "Age"] {
        assert!(names.contains(&want), "{names:?}");
    }
    let rows = table["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["cells"][0], "p1");
    assert_eq!(rows[0]["object"]["metadata"]["name"], "p1");

    // Bind it; then deletion is graceful (deletionTimestamp set, object stays).
    let req = http::Request::post("/api/v1/namespaces/default/pods/p1/binding")
        .header("Content-Type", "application/json")
        .body(
            serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": "p1"}, "target": {"kind": "Node", "name": "node-1"}}))
            .unwrap(),
        )
        .unwrap();
    let _: Value = t.client.request(req).await.unwrap();
    let bound = pods.get("p1").await.unwrap();
    assert_eq!(bound.spec.unwrap().node_name.as_deref(), Some("node-1"));
    pods.delete("p1", &DeleteParams::default()).await.unwrap();
    let terminating = pods.get("p1").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    pods.delete(
        "p1",
        &DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(status_code(&pods.get("p1").await.unwrap_err()), Some(404));
}

#[tokio::test]
async fn compacted_watch_is_expired() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(skiff_store::SqliteStore::open(&dir.path().join("state.db")).unwrap());
    let server = Server::bind(
        ServerConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap()),
        store.clone(),
    )
    .await
    .unwrap();
    let client = client_from(server.kubeconfig_path()).await;
    let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap();
    let first = api.create(&PostParams::default(), &cm).await.unwrap();
    let old_rv = first.metadata.resource_version.unwrap();
    for i in 0..3 {
        api.patch(
            "c",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"i": i.to_string()}})),
        )
        .await
        .unwrap();
    }
    use skiff_store::Store;
    let current = store.current_revision().await.unwrap();
    store.compact(current).await.unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), &old_rv)
        .await
        .unwrap()
        .boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Error(e))) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
}

// ---- batch/v1 Jobs ----

fn job(name: &str, restart_policy: &str) -> k8s_openapi::api::batch::v1::Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"restartPolicy": restart_policy,
            "containers": [{"name": "pi", "image": "perl:5.34", "command": ["perl", "-e", "1"]}]}}}
    }))
    .unwrap()
}

/// The generated selector and template labels carry the uid the server assigned.
fn assert_generated(j: &Value, name: &str) {
    let uid = j["metadata"]["uid"].as_str().expect("uid");
    assert!(!uid.is_empty());
    assert_eq!(
        j["spec"]["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
    );
    let labels = json!({"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
        "controller-uid": uid, "job-name": name});
    assert_eq!(j["spec"]["template"]["metadata"]["labels"], labels);
    assert_eq!(j["metadata"]["labels"], labels);
}

#[tokio::test]
async fn job_create_defaults_validation_and_updates() {
    use k8s_openapi::api::batch::v1::Job;
    let t = start().await;
    let api: Api<Job> = Api::namespaced(t.client.clone(), "default");
    let created = api
        .create(&PostParams::default(), &job("pi", "Never"))
        .await
        .unwrap();
    let v = serde_json::to_value(&created).unwrap();
    assert_generated(&v, "pi");
    let spec = &v["spec"];
    assert_eq!(
        (
            &spec["parallelism"],
            &spec["completions"],
            &spec["backoffLimit"],
            &spec["completionMode"],
            &spec["suspend"],
            &spec["manualSelector"],
            &spec["podReplacementPolicy"],
        ),
        (
            &json!(1),
            &json!(1),
            &json!(6),
            &json!("NonIndexed"),
            &json!(false),
            &json!(false),
            &json!("TerminatingOrFailed")
        )
    );
    assert_eq!(created.metadata.generation, Some(1));
    // What a later GET returns is what was stored.
    assert_eq!(
        serde_json::to_value(api.get("pi").await.unwrap()).unwrap()["spec"],
        v["spec"]
    );

    // restartPolicy Always (or left out, which defaults to Always) is 422 and stores nothing.
    for rp in ["Always", ""] {
        let mut bad = job("bad", rp);
        if rp.is_empty() {
            bad.spec
                .as_mut()
                .unwrap()
                .template
                .spec
                .as_mut()
                .unwrap()
                .restart_policy = None;
        }
        let err = api.create(&PostParams::default(), &bad).await.unwrap_err();
        let kube::Error::Api(s) = &err else {
            panic!("{err}")
        };
        assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{s:?}");
        assert_eq!(
            s.message,
            "Job.batch \"bad\" is invalid: spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""
        );
    }
    assert_eq!(status_code(&api.get("bad").await.unwrap_err()), Some(404));

    // Selector and template are immutable; labels and parallelism are not.
    for patch in [
        json!({"spec": {"selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "other"}}}}),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "pi", "image": "perl:5.36"}]}}}}),
        json!({"spec": {"completions": 3}}),
    ] {
        let err = api
            .patch("pi", &PatchParams::default(), &Patch::Strategic(&patch))
            .await
            .unwrap_err();
        let kube::Error::Api(s) = &err else {
            panic!("{err}")
        };
        assert_eq!(s.code, 422, "{patch}: {s:?}");
        assert!(s.message.contains("field is immutable"), "{}", s.message);
    }
    let patched = api
        .patch(
            "pi",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {"team": "a"}}, "spec": {"parallelism": 2}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.as_ref().unwrap().parallelism, Some(2));
    assert_eq!(patched.metadata.generation, Some(2));

    // A full PUT of the stored object (what `kubectl replace` does) is accepted as is.
    let mut current = api.get("pi").await.unwrap();
    current.metadata.annotations = Some([("note".to_string(), "x".to_string())].into());
    api.replace("pi", &PostParams::default(), &current)
        .await
        .unwrap();

    // Status: ignored on the main resource, written through jobs/status.
    let p = api
        .patch(
            "pi",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"active": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(p.status.as_ref().and_then(|s| s.active), None);
    let status = json!({"status": {"active": 1, "ready": 0, "startTime": "2026-01-01T00:00:00Z"}});
    let s = api
        .patch_status("pi", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(s.status.as_ref().and_then(|s| s.active), Some(1));
    assert_eq!(s.metadata.generation, Some(2));
    // Status writes cannot change the spec.
    let s = api
        .patch_status(
            "pi",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"parallelism": 9}, "status": {"active": 2}})),
        )
        .await
        .unwrap();
    assert_eq!(s.spec.as_ref().unwrap().parallelism, Some(2));
    assert_eq!(s.status.as_ref().and_then(|s| s.active), Some(2));
    // ... and get the status strategy's checks.
    let err = api
        .patch_status(
            "pi",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(422));

    // Table columns as upstream prints them.
    let req = http::Request::get("/apis/batch/v1/namespaces/default/jobs")
        .header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .unwrap();
    let table: Value = t.client.request(req).await.unwrap();
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Name",
            "Status",
            "Completions",
            "Duration",
            "Age",
            "Containers",
            "Images",
            "Selector"
        ]
    );
    let cells = &table["rows"][0]["cells"];
    assert_eq!(
        (&cells[0], &cells[1], &cells[2]),
        (&json!("pi"), &json!("Running"), &json!("0/1"))
    );
    assert_eq!(cells[6], "perl:5.34");
}

/// Minimal protobuf writer for the test body (length-delimited fields only).
fn pb(fields: &[(u32, Vec<u8>)]) -> Vec<u8> {
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut out = Vec::new();
    for (num, bytes) in fields {
        varint(u64::from(*num) << 3 | 2, &mut out);
        varint(bytes.len() as u64, &mut out);
        out.extend_from_slice(bytes);
    }
    out
}

fn s(v: &str) -> Vec<u8> {
    v.as_bytes().to_vec()
}

#[tokio::test]
async fn job_protobuf_create_and_discovery() {
    let t = start().await;
    // `kubectl create job hello --image=busybox -- echo hi` as kubectl 1.32+ sends it.
    let container = pb(&[
        (1, s("hello")),
        (2, s("busybox")),
        (3, s("echo")),
        (3, s("hi")),
    ]);
    let pod_spec = pb(&[(2, container), (3, s("Never"))]);
    let template = pb(&[(1, pb(&[])), (2, pod_spec)]);
    let job = pb(&[
        (1, pb(&[(1, s("hello"))])),
        (2, pb(&[(6, template)])),
        (3, pb(&[])),
    ]);
    let envelope = pb(&[(1, pb(&[(1, s("batch/v1")), (2, s("Job"))])), (2, job)]);
    let mut body = b"k8s\0".to_vec();
    body.extend(envelope);
    let req = http::Request::post(
        "/apis/batch/v1/namespaces/default/jobs?fieldManager=kubectl-create&fieldValidation=Strict",
    )
    .header("Content-Type", "application/vnd.kubernetes.protobuf")
    .header(
        "Accept",
        "application/vnd.kubernetes.protobuf,application/json",
    )
    .body(body)
    .unwrap();
    let created: Value = t.client.request(req).await.unwrap();
    assert_eq!(created["kind"], "Job");
    assert_generated(&created, "hello");
    assert_eq!(
        created["spec"]["template"]["spec"]["containers"][0]["command"],
        json!(["echo", "hi"])
    );
    assert_eq!(created["spec"]["completions"], 1);
    assert_eq!(created["status"], json!({}));

    // Discovery: legacy and aggregated.
    let resources = t.client.list_api_group_resources("batch/v1").await.unwrap();
    let j = resources
        .resources
        .iter()
        .find(|r| r.name == "jobs")
        .expect("jobs");
    assert!(
        j.namespaced && j.kind == "Job" && j.short_names.as_deref().unwrap_or_default().is_empty()
    );
    assert_eq!(j.categories.as_deref(), Some(&["all".to_string()][..]));
    assert!(resources.resources.iter().any(|r| r.name == "jobs/status"));
    let groups = t.client.list_api_groups().await.unwrap();
    assert!(groups.groups.iter().any(|g| g.name == "batch"
        && g.preferred_version
            .as_ref()
            .map(|v| v.group_version.as_str())
            == Some("batch/v1")));
    let req = http::Request::get("/apis")
        .header(
            "Accept",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        )
        .body(Vec::new())
        .unwrap();
    let body: Value = t.client.request(req).await.unwrap();
    let batch = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == "batch")
        .expect("batch group");
    // cronjobs come first, as upstream lists them.
    let jobs = batch["versions"][0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "jobs")
        .expect("jobs");
    assert_eq!(jobs["resource"], "jobs");
    assert_eq!(jobs["singularResource"], "job");
    assert_eq!(jobs["categories"], json!(["all"]));
    assert!(jobs.get("shortNames").is_none());
    assert_eq!(
        jobs["subresources"],
        json!([{"subresource": "status", "responseKind": {"group": "batch", "version": "v1", "kind": "Job"},
            "verbs": ["get", "patch", "update"]}])
    );
    // The OpenAPI index lists the group for kubectl's client-side validation.
    let req = http::Request::get("/openapi/v3").body(Vec::new()).unwrap();
    let idx: Value = t.client.request(req).await.unwrap();
    assert!(idx["paths"]["apis/batch/v1"]["serverRelativeURL"].is_string());
}

#[tokio::test]
async fn job_delete_orphans_unless_told_otherwise() {
    use k8s_openapi::api::batch::v1::Job;
    let t = start().await;
    let api: Api<Job> = Api::namespaced(t.client.clone(), "default");
    for name in ["a", "b"] {
        api.create(&PostParams::default(), &job(name, "OnFailure"))
            .await
            .unwrap();
    }
    // No policy: batch/v1's default is to orphan (the garbage collector then releases the
    // pods and removes the finalizer).
    api.delete("a", &DeleteParams::default()).await.unwrap();
    let a = api.get("a").await.unwrap();
    assert!(a.metadata.deletion_timestamp.is_some());
    assert_eq!(a.metadata.finalizers, Some(vec!["orphan".to_string()]));
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(status_code(&api.get("a").await.unwrap_err()), Some(404));
    // kubectl delete sends Background: gone at once (pods are the GC's business).
    api.delete("b", &DeleteParams::background()).await.unwrap();
    assert_eq!(status_code(&api.get("b").await.unwrap_err()), Some(404));
}

// ---- apps/v1 DaemonSets ----

fn daemon_set(name: &str) -> k8s_openapi::api::apps::v1::DaemonSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                    "containers": [{"name": "agent", "image": "busybox:1.36", "command": ["sleep", "3600"]}]}}}
    }))
    .unwrap()
}

fn template_generation(ds: &k8s_openapi::api::apps::v1::DaemonSet) -> Option<String> {
    ds.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("deprecated.daemonset.template.generation"))
        .cloned()
}

fn api_status(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(s) => *s,
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn daemon_set_create_defaults_validation_and_updates() {
    use k8s_openapi::api::apps::v1::DaemonSet;
    let t = start().await;
    let api: Api<DaemonSet> = Api::namespaced(t.client.clone(), "default");
    let created = api
        .create(&PostParams::default(), &daemon_set("agent"))
        .await
        .unwrap();
    let v = serde_json::to_value(&created).unwrap();
    assert_eq!(
        v["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    );
    assert_eq!(v["spec"]["revisionHistoryLimit"], 10);
    let pod = &v["spec"]["template"]["spec"];
    assert_eq!(
        (
            &pod["restartPolicy"],
            &pod["dnsPolicy"],
            &pod["schedulerName"],
            &pod["terminationGracePeriodSeconds"],
            &pod["securityContext"],
            &pod["containers"][0]["imagePullPolicy"],
        ),
        (
            &json!("Always"),
            &json!("ClusterFirst"),
            &json!("default-scheduler"),
            &json!(30),
            &json!({}),
            &json!("IfNotPresent")
        )
    );
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(template_generation(&created).as_deref(), Some("1"));
    assert_eq!(
        v["status"],
        json!({"currentNumberScheduled": 0, "desiredNumberScheduled": 0,
        "numberMisscheduled": 0, "numberReady": 0})
    );
    assert_eq!(
        serde_json::to_value(api.get("agent").await.unwrap()).unwrap()["spec"],
        v["spec"]
    );

    // Invalid DaemonSets are 422 with upstream's wording, and nothing is stored.
    let mut no_selector = daemon_set("bad");
    no_selector.spec.as_mut().unwrap().selector = Default::default();
    let s = api_status(
        api.create(&PostParams::default(), &no_selector)
            .await
            .unwrap_err(),
    );
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        s.message,
        "DaemonSet.apps \"bad\" is invalid: spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for daemonset"
    );
    let mut on_failure = serde_json::to_value(daemon_set("bad")).unwrap();
    on_failure["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
    on_failure["spec"]["updateStrategy"] =
        json!({"rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}});
    let s = api_status(
        api.create(
            &PostParams::default(),
            &serde_json::from_value(on_failure).unwrap(),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(s.code, 422);
    assert_eq!(
        s.message,
        "DaemonSet.apps \"bad\" is invalid: [spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\", spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0]"
    );
    let causes = s.details.unwrap().causes;
    assert_eq!(causes.len(), 2);
    assert_eq!(causes[0].reason, "FieldValueNotSupported");
    assert_eq!(causes[0].field, "spec.template.spec.restartPolicy");
    assert_eq!(status_code(&api.get("bad").await.unwrap_err()), Some(404));

    // The selector is immutable.
    let s = api_status(
        api.patch(
            "agent",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"selector": {"matchLabels": {"app": "other"}},
                "template": {"metadata": {"labels": {"app": "other"}}}}}),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(s.code, 422);
    assert!(
        s.message
            .ends_with("spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"other\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"),
        "{}",
        s.message
    );

    // `kubectl set image` and `kubectl rollout restart` patches: generation and template
    // generation grow; a label change bumps neither.
    let set_image = json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"agent"}],
        "containers":[{"image":"busybox:1.37","name":"agent"}]}}}});
    let p = api
        .patch(
            "agent",
            &PatchParams::default(),
            &Patch::Strategic(&set_image),
        )
        .await
        .unwrap();
    let c = &p
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(c.image.as_deref(), Some("busybox:1.37"));
    assert_eq!(c.command.as_ref().map(Vec::len), Some(2));
    assert_eq!(p.metadata.generation, Some(2));
    assert_eq!(template_generation(&p).as_deref(), Some("2"));
    let restart = json!({"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-11-27T01:00:00Z"}}}}});
    let p = api
        .patch(
            "agent",
            &PatchParams::default(),
            &Patch::Strategic(&restart),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.generation, Some(3));
    assert_eq!(template_generation(&p).as_deref(), Some("3"));
    let p = api
        .patch(
            "agent",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"team": "infra"},
                "annotations": {"deprecated.daemonset.template.generation": "42"}},
                "spec": {"minReadySeconds": 5}})),
        )
        .await
        .unwrap();
    // A spec change outside the template: generation only; clients cannot set the annotation.
    assert_eq!(p.metadata.generation, Some(4));
    assert_eq!(template_generation(&p).as_deref(), Some("3"));

    // Status: ignored on the main resource, written through daemonsets/status the way the
    // controller does it (a PUT of the whole object).
    let p = api
        .patch(
            "agent",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"numberReady": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(p.status.as_ref().unwrap().number_ready, 0);
    let mut current = api.get("agent").await.unwrap();
    current.status = Some(
        serde_json::from_value(
            json!({"currentNumberScheduled": 2, "desiredNumberScheduled": 2,
            "numberMisscheduled": 0, "numberReady": 1, "updatedNumberScheduled": 2,
            "numberAvailable": 1, "numberUnavailable": 1, "observedGeneration": 4}),
        )
        .unwrap(),
    );
    current.spec.as_mut().unwrap().min_ready_seconds = Some(99);
    let s = api
        .replace_status("agent", &PostParams::default(), &current)
        .await
        .unwrap();
    let status = s.status.as_ref().unwrap();
    assert_eq!(
        (
            status.desired_number_scheduled,
            status.number_ready,
            status.observed_generation
        ),
        (2, 1, Some(4))
    );
    // Status writes keep the spec, the generation and the template generation.
    assert_eq!(s.spec.as_ref().unwrap().min_ready_seconds, Some(5));
    assert_eq!(s.metadata.generation, Some(4));
    assert_eq!(template_generation(&s).as_deref(), Some("3"));
    let s = api_status(
        api.patch_status(
            "agent",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"numberReady": -1}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        s.message,
        "DaemonSet.apps \"agent\" is invalid: status.numberReady: Invalid value: -1: must be greater than or equal to 0"
    );

    // Table columns as upstream prints them.
    let req = http::Request::get("/apis/apps/v1/namespaces/default/daemonsets")
        .header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .unwrap();
    let table: Value = t.client.request(req).await.unwrap();
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Name",
            "Desired",
            "Current",
            "Ready",
            "Up-to-date",
            "Available",
            "Node Selector",
            "Age",
            "Containers",
            "Images",
            "Selector"
        ]
    );
    let cells = table["rows"][0]["cells"].as_array().unwrap();
    assert_eq!(
        cells[..7],
        json!(["agent", 2, 2, 1, 2, 1, "kubernetes.io/os=linux"])
            .as_array()
            .unwrap()[..]
    );
    assert_eq!(
        cells[8..],
        json!(["agent", "busybox:1.37", "app=agent"])
            .as_array()
            .unwrap()[..]
    );
}

#[tokio::test]
async fn daemon_set_protobuf_create_discovery_and_delete() {
    use k8s_openapi::api::apps::v1::DaemonSet;
    let t = start().await;
    // A DaemonSet body as a kubectl 1.32+ typed client encodes it (zero values written).
    let labels = pb(&[(11, pb(&[(1, s("app")), (2, s("node-agent"))]))]);
    let selector = pb(&[(1, pb(&[(1, s("app")), (2, s("node-agent"))]))]);
    let container = pb(&[(1, s("agent")), (2, s("busybox:1.36")), (14, s(""))]);
    let pod_spec = pb(&[(2, container), (3, s(""))]);
    let template = pb(&[(1, labels.clone()), (2, pod_spec)]);
    let spec = pb(&[(1, selector), (2, template), (3, pb(&[(1, s(""))]))]);
    let meta = pb(&[(1, s("node-agent")), (2, s("")), (3, s(""))]);
    let ds = pb(&[(1, meta), (2, spec), (3, pb(&[]))]);
    let envelope = pb(&[(1, pb(&[(1, s("apps/v1")), (2, s("DaemonSet"))])), (2, ds)]);
    let mut body = b"k8s\0".to_vec();
    body.extend(envelope);
    let req = http::Request::post(
        "/apis/apps/v1/namespaces/default/daemonsets?fieldManager=kubectl-create&fieldValidation=Strict",
    )
    .header("Content-Type", "application/vnd.kubernetes.protobuf")
    .header(
        "Accept",
        "application/vnd.kubernetes.protobuf,application/json",
    )
    .body(body)
    .unwrap();
    let created: Value = t.client.request(req).await.unwrap();
    assert_eq!(created["kind"], "DaemonSet");
    assert_eq!(created["metadata"]["name"], "node-agent");
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(
        created["spec"]["selector"],
        json!({"matchLabels": {"app": "node-agent"}})
    );
    // Go's empty strings were "unset": defaults filled them in.
    assert_eq!(
        created["spec"]["updateStrategy"]["type"],
        json!("RollingUpdate")
    );
    assert_eq!(
        created["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert_eq!(
        created["spec"]["template"]["spec"]["restartPolicy"],
        "Always"
    );
    assert_eq!(
        created["metadata"]["managedFields"][0]["manager"],
        "kubectl-create"
    );
    // The status is reset on create; Go never omits these four counters.
    assert_eq!(
        created["status"],
        json!({"currentNumberScheduled": 0, "numberMisscheduled": 0,
            "desiredNumberScheduled": 0, "numberReady": 0})
    );
    assert_eq!(
        created["metadata"]["annotations"],
        json!({"deprecated.daemonset.template.generation": "1"})
    );

    // Discovery: legacy and aggregated, with the short name and the `all` category.
    let resources = t.client.list_api_group_resources("apps/v1").await.unwrap();
    let names: Vec<&str> = resources
        .resources
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert!(names.contains(&"daemonsets") && names.contains(&"daemonsets/status"));
    assert!(!names.contains(&"daemonsets/scale"));
    let d = resources
        .resources
        .iter()
        .find(|r| r.name == "daemonsets")
        .unwrap();
    assert!(d.namespaced && d.kind == "DaemonSet" && d.singular_name == "daemonset");
    assert_eq!(d.short_names.as_deref(), Some(&["ds".to_string()][..]));
    assert_eq!(d.categories.as_deref(), Some(&["all".to_string()][..]));
    assert_eq!(d.verbs.len(), 8);
    let req = http::Request::get("/apis")
        .header(
            "Accept",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        )
        .body(Vec::new())
        .unwrap();
    let body: Value = t.client.request(req).await.unwrap();
    let apps = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == "apps")
        .expect("apps group");
    let ds = apps["versions"][0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "daemonsets")
        .expect("daemonsets");
    assert_eq!(ds["singularResource"], "daemonset");
    assert_eq!(ds["shortNames"], json!(["ds"]));
    assert_eq!(ds["categories"], json!(["all"]));
    assert_eq!(ds["scope"], "Namespaced");
    assert_eq!(
        ds["subresources"],
        json!([{"subresource": "status", "responseKind": {"group": "apps", "version": "v1", "kind": "DaemonSet"},
            "verbs": ["get", "patch", "update"]}])
    );
    // OpenAPI for `kubectl apply` under strict validation.
    let req = http::Request::get("/openapi/v3").body(Vec::new()).unwrap();
    let idx: Value = t.client.request(req).await.unwrap();
    let url = idx["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let req = http::Request::get(url).body(Vec::new()).unwrap();
    let doc: Value = t.client.request(req).await.unwrap();
    assert!(
        doc["paths"]["/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}"]["patch"].is_object()
    );
    assert!(doc["components"]["schemas"]["io.k8s.api.apps.v1.DaemonSet"].is_object());

    // Delete: apps/v1 defaults to Background, so no orphan finalizer holds it back.
    let api: Api<DaemonSet> = Api::namespaced(t.client.clone(), "default");
    api.create(&PostParams::default(), &daemon_set("other"))
        .await
        .unwrap();
    api.delete("node-agent", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        status_code(&api.get("node-agent").await.unwrap_err()),
        Some(404)
    );
    api.delete("other", &DeleteParams::background())
        .await
        .unwrap();
    assert!(api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
}

// ---- batch/v1 CronJobs ----

fn cron_job(name: &str, schedule: &str) -> k8s_openapi::api::batch::v1::CronJob {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {
            "restartPolicy": "OnFailure",
            "containers": [{"name": "hello", "image": "busybox:1.36", "command": ["date"]}]}}}}}
    }))
    .unwrap()
}

/// The 422 message of a create that must fail (and store nothing).
async fn invalid_create(
    api: &Api<k8s_openapi::api::batch::v1::CronJob>,
    cj: &k8s_openapi::api::batch::v1::CronJob,
) -> String {
    let err = api.create(&PostParams::default(), cj).await.unwrap_err();
    let s = api_status(err);
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{s:?}");
    let name = cj.metadata.name.as_deref().unwrap();
    assert_eq!(status_code(&api.get(name).await.unwrap_err()), Some(404));
    s.message
}

#[tokio::test]
async fn cron_job_create_defaults_validation_status_and_delete() {
    use k8s_openapi::api::batch::v1::CronJob;
    let t = start().await;
    let api: Api<CronJob> = Api::namespaced(t.client.clone(), "default");
    let created = api
        .create(&PostParams::default(), &cron_job("hello", "*/1 * * * *"))
        .await
        .unwrap();
    let v = serde_json::to_value(&created).unwrap();
    let spec = &v["spec"];
    assert_eq!(
        (
            &spec["concurrencyPolicy"],
            &spec["suspend"],
            &spec["successfulJobsHistoryLimit"],
            &spec["failedJobsHistoryLimit"],
        ),
        (&json!("Allow"), &json!(false), &json!(3), &json!(1))
    );
    // The template keeps its shape: pod defaults only, no selector or Job defaults.
    let job_spec = &spec["jobTemplate"]["spec"];
    assert!(job_spec.get("selector").is_none() && job_spec.get("backoffLimit").is_none());
    assert_eq!(
        job_spec["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(v["status"], json!({}));
    assert_eq!(
        serde_json::to_value(api.get("hello").await.unwrap()).unwrap()["spec"],
        v["spec"]
    );

    // Upstream's 422s, nothing stored.
    let msg = invalid_create(&api, &cron_job("bad", "every minute")).await;
    assert_eq!(
        msg,
        "CronJob.batch \"bad\" is invalid: spec.schedule: Invalid value: \"every minute\": expected exactly 5 fields, found 2: [every minute]"
    );
    let msg = invalid_create(&api, &cron_job("tz", "TZ=UTC */5 * * * *")).await;
    assert_eq!(
        msg,
        "CronJob.batch \"tz\" is invalid: spec.schedule: Invalid value: \"TZ=UTC */5 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
    );
    let mut zoned = cron_job("zoned", "0 9 * * *");
    zoned.spec.as_mut().unwrap().time_zone = Some("Mars/Olympus_Mons".into());
    let msg = invalid_create(&api, &zoned).await;
    assert_eq!(
        msg,
        "CronJob.batch \"zoned\" is invalid: spec.timeZone: Invalid value: \"Mars/Olympus_Mons\": unknown time zone Mars/Olympus_Mons"
    );
    let mut always = cron_job("always", "@hourly");
    let job_spec = always
        .spec
        .as_mut()
        .unwrap()
        .job_template
        .spec
        .as_mut()
        .unwrap();
    job_spec.template.spec.as_mut().unwrap().restart_policy = Some("Always".into());
    let msg = invalid_create(&api, &always).await;
    assert_eq!(
        msg,
        "CronJob.batch \"always\" is invalid: spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""
    );
    let long = "a".repeat(53);
    let msg = invalid_create(&api, &cron_job(&long, "@daily")).await;
    assert_eq!(
        msg,
        format!("CronJob.batch \"{long}\" is invalid: metadata.name: Invalid value: \"{long}\": must be no more than 52 characters")
    );
    // A valid zone is accepted.
    zoned.spec.as_mut().unwrap().time_zone = Some("Europe/Berlin".into());
    api.create(&PostParams::default(), &zoned).await.unwrap();

    // `kubectl patch cronjob hello -p '{"spec":{"suspend":true}}'`: a spec change.
    let patched = api
        .patch(
            "hello",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.as_ref().unwrap().suspend, Some(true));
    assert_eq!(patched.metadata.generation, Some(2));
    let err = api
        .patch(
            "hello",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"concurrencyPolicy": "Sometimes"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(422));

    // Status: ignored on the main resource, written through cronjobs/status like the
    // controller does (GET, change, PUT).
    let p = api
        .patch(
            "hello",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"lastScheduleTime": "2026-01-01T00:00:00Z"}})),
        )
        .await
        .unwrap();
    assert!(p
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .is_none());
    let mut current = api.get_status("hello").await.unwrap();
    let scheduled = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(90))
        .round(jiff::Unit::Second)
        .unwrap();
    current.status = Some(serde_json::from_value(json!({
        "lastScheduleTime": scheduled.to_string(),
        "active": [{"kind": "Job", "apiVersion": "batch/v1", "name": "hello-29000000", "namespace": "default"}]
    })).unwrap());
    current.spec.as_mut().unwrap().schedule = "@yearly".into();
    let s = api
        .replace_status("hello", &PostParams::default(), &current)
        .await
        .unwrap();
    let status = s.status.as_ref().unwrap();
    assert_eq!(status.active.as_ref().map(Vec::len), Some(1));
    // The spec is the stored one; generation unchanged by the status write.
    assert_eq!(s.spec.as_ref().unwrap().schedule, "*/1 * * * *");
    assert_eq!(s.metadata.generation, Some(2));

    // Table columns as upstream prints them.
    let req = http::Request::get("/apis/batch/v1/namespaces/default/cronjobs")
        .header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .unwrap();
    let table: Value = t.client.request(req).await.unwrap();
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "Name",
            "Schedule",
            "Timezone",
            "Suspend",
            "Active",
            "Last Schedule",
            "Age",
            "Containers",
            "Images",
            "Selector"
        ]
    );
    let rows = table["rows"].as_array().unwrap();
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["cells"][0] == name)
            .map(|r| r["cells"].clone())
            .unwrap()
    };
    let hello = row("hello");
    assert_eq!(
        hello.as_array().unwrap()[..5],
        json!(["hello", "*/1 * * * *", "<none>", "True", 1])
            .as_array()
            .unwrap()[..]
    );
    // 90 s ago (give a slow machine a few seconds).
    let last = hello[5].as_str().unwrap();
    assert!(last.ends_with('s') && last.len() <= 4, "{last}");
    assert_eq!(hello[8], "busybox:1.36");
    assert_eq!(hello[9], "<none>");
    let zoned = row("zoned");
    assert_eq!(
        zoned.as_array().unwrap()[1..6],
        json!(["0 9 * * *", "Europe/Berlin", "False", 0, "<none>"])
            .as_array()
            .unwrap()[..]
    );

    // Delete with no policy: batch/v1 CronJobs delete their Jobs (no orphan finalizer).
    api.delete("hello", &DeleteParams::default()).await.unwrap();
    assert_eq!(status_code(&api.get("hello").await.unwrap_err()), Some(404));
    api.delete("zoned", &DeleteParams::background())
        .await
        .unwrap();
    assert!(api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
}

#[tokio::test]
async fn cron_job_protobuf_create_discovery_and_job_from_it() {
    use k8s_openapi::api::batch::v1::{CronJob, Job};
    let t = start().await;
    // `kubectl create cronjob hello --image=busybox --schedule='*/1 * * * *' -- date` as
    // kubectl 1.32+ encodes it (Go zero values written, concurrencyPolicy "").
    let container = pb(&[
        (1, s("hello")),
        (2, s("busybox")),
        (3, s("date")),
        (14, s("")),
    ]);
    let pod_spec = pb(&[(2, container), (3, s("OnFailure"))]);
    let template = pb(&[(1, pb(&[])), (2, pod_spec)]);
    let job_spec = pb(&[(6, template)]);
    let job_template = pb(&[(1, pb(&[(1, s("hello"))])), (2, job_spec)]);
    let spec = pb(&[(1, s("*/1 * * * *")), (3, s("")), (5, job_template)]);
    let meta = pb(&[(1, s("hello")), (2, s("")), (3, s(""))]);
    let cj = pb(&[(1, meta), (2, spec), (3, pb(&[]))]);
    let envelope = pb(&[(1, pb(&[(1, s("batch/v1")), (2, s("CronJob"))])), (2, cj)]);
    let mut body = b"k8s\0".to_vec();
    body.extend(envelope);
    let req = http::Request::post(
        "/apis/batch/v1/namespaces/default/cronjobs?fieldManager=kubectl-create&fieldValidation=Strict",
    )
    .header("Content-Type", "application/vnd.kubernetes.protobuf")
    .header(
        "Accept",
        "application/vnd.kubernetes.protobuf,application/json",
    )
    .body(body)
    .unwrap();
    let created: Value = t.client.request(req).await.unwrap();
    assert_eq!(created["kind"], "CronJob");
    assert_eq!(created["spec"]["schedule"], "*/1 * * * *");
    assert_eq!(created["spec"]["concurrencyPolicy"], "Allow");
    assert_eq!(created["spec"]["jobTemplate"]["metadata"]["name"], "hello");
    assert_eq!(
        created["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"],
        json!(["date"])
    );
    assert_eq!(
        created["metadata"]["managedFields"][0]["manager"],
        "kubectl-create"
    );

    // `kubectl create job manual --from=cronjob/hello`: kubectl builds the Job from the
    // template, with the instantiate annotation and a controller reference to the CronJob.
    let cj: CronJob = Api::namespaced(t.client.clone(), "default")
        .get("hello")
        .await
        .unwrap();
    let uid = cj.metadata.uid.clone().unwrap();
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "manual",
            "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "hello",
                "uid": uid, "controller": true}]},
        "spec": serde_json::to_value(&cj.spec.as_ref().unwrap().job_template.spec).unwrap()
    }))
    .unwrap();
    let jobs: Api<Job> = Api::namespaced(t.client.clone(), "default");
    let j = jobs.create(&PostParams::default(), &job).await.unwrap();
    let jv = serde_json::to_value(&j).unwrap();
    assert_generated(&jv, "manual");
    assert_eq!(jv["spec"]["backoffLimit"], 6);
    assert_eq!(jv["metadata"]["ownerReferences"][0]["uid"], json!(uid));
    assert_eq!(
        jv["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"],
        "manual"
    );

    // Discovery: legacy and aggregated, short name cj, category all, status subresource.
    let resources = t.client.list_api_group_resources("batch/v1").await.unwrap();
    let names: Vec<&str> = resources
        .resources
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]
    );
    let c = &resources.resources[0];
    assert!(c.namespaced && c.kind == "CronJob" && c.singular_name == "cronjob");
    assert_eq!(c.short_names.as_deref(), Some(&["cj".to_string()][..]));
    assert_eq!(c.categories.as_deref(), Some(&["all".to_string()][..]));
    assert_eq!(c.verbs.len(), 8);
    let req = http::Request::get("/apis")
        .header(
            "Accept",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        )
        .body(Vec::new())
        .unwrap();
    let body: Value = t.client.request(req).await.unwrap();
    let batch = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == "batch")
        .expect("batch group");
    let cjs = &batch["versions"][0]["resources"][0];
    assert_eq!(cjs["resource"], "cronjobs");
    assert_eq!(cjs["singularResource"], "cronjob");
    assert_eq!(cjs["shortNames"], json!(["cj"]));
    assert_eq!(cjs["categories"], json!(["all"]));
    assert_eq!(cjs["scope"], "Namespaced");
    assert_eq!(
        cjs["subresources"],
        json!([{"subresource": "status", "responseKind": {"group": "batch", "version": "v1", "kind": "CronJob"},
            "verbs": ["get", "patch", "update"]}])
    );
    // OpenAPI for `kubectl apply -f cronjob.yaml` under strict validation.
    let req = http::Request::get("/openapi/v3").body(Vec::new()).unwrap();
    let idx: Value = t.client.request(req).await.unwrap();
    let url = idx["paths"]["apis/batch/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    let req = http::Request::get(url).body(Vec::new()).unwrap();
    let doc: Value = t.client.request(req).await.unwrap();
    assert_eq!(
        doc["paths"]["/apis/batch/v1/namespaces/{namespace}/cronjobs/{name}"]["patch"]
            ["x-kubernetes-group-version-kind"]["kind"],
        "CronJob"
    );
    assert!(doc["components"]["schemas"]["io.k8s.api.batch.v1.CronJob"].is_object());
}
