//! ServiceAccounts over a real HTTPS listener: the admission plugin's pod mutation, TokenRequest,
//! bound tokens authenticating (and dying with their pod or ServiceAccount), forged tokens
//! refused, and the OIDC discovery documents verifying a real token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{json, Value};

mod common;

use common::{start, status_code, TestServer};

fn server_url(t: &TestServer) -> String {
    let text = std::fs::read_to_string(&t.kubeconfig).unwrap();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap()
        .to_string()
}

fn token_client(t: &TestServer, token: &str) -> kube::Client {
    let ca = std::fs::read(t._dir.path().join("server/tls/ca.crt")).unwrap();
    skiff_client::config::with_token(&server_url(t), &ca, token).unwrap()
}

async fn post(t: &TestServer, path: &str, body: Value) -> Result<Value, kube::Error> {
    let req = http::Request::post(path)
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .unwrap();
    t.client.request(req).await
}

async fn get_raw(client: &kube::Client, path: &str) -> Result<String, kube::Error> {
    client
        .request_text(http::Request::get(path).body(Vec::new()).unwrap())
        .await
}

async fn create_sa(t: &TestServer, ns: &str, name: &str, extra: Value) -> ServiceAccount {
    let sas: Api<ServiceAccount> = Api::namespaced(t.client.clone(), ns);
    let mut sa = json!({"metadata": {"name": name}});
    if let (Some(o), Some(e)) = (sa.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    sas.create(&PostParams::default(), &serde_json::from_value(sa).unwrap())
        .await
        .unwrap()
}

async fn create_pod(t: &TestServer, ns: &str, pod: Value) -> Result<Pod, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), ns);
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pod).unwrap(),
    )
    .await
}

fn claims_of(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64.decode(part).unwrap()).unwrap()
}

/// Whether the token authenticates: None, or the status of a ConfigMap list with it (a 403 is
/// an authenticated ServiceAccount that RBAC grants nothing, so it counts as authenticated).
async fn authenticates(t: &TestServer, token: &str) -> Option<u16> {
    let cms: Api<ConfigMap> = Api::namespaced(token_client(t, token), "default");
    match cms.list(&Default::default()).await {
        Ok(_) => None,
        Err(e) => status_code(&e).filter(|code| *code != 403),
    }
}

#[tokio::test]
async fn pods_get_the_service_account_volume_and_unknown_accounts_are_refused() {
    let t = start().await;
    // No default ServiceAccount (no controllers here): upstream's Forbidden, after retries.
    let err = create_pod(
        &t,
        "default",
        json!({"metadata": {"name": "p0"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await
    .unwrap_err();
    match &err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 403);
            assert_eq!(
                s.message,
                "pods \"p0\" is forbidden: error looking up service account default/default: serviceaccount \"default\" not found"
            );
        }
        other => panic!("{other:?}"),
    }

    common::ensure_default_sa(&t.client, "default").await;
    let pod = create_pod(
        &t,
        "default",
        json!({"metadata": {"name": "p1"}, "spec": {
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await
    .unwrap();
    let v = serde_json::to_value(&pod).unwrap();
    assert_eq!(v["spec"]["serviceAccountName"], "default");
    assert_eq!(v["spec"]["serviceAccount"], "default");
    let vols = v["spec"]["volumes"].as_array().unwrap();
    assert_eq!(vols.len(), 1);
    let name = vols[0]["name"].as_str().unwrap();
    assert!(
        name.starts_with("kube-api-access-") && name.len() == 21,
        "{name}"
    );
    assert_eq!(
        vols[0]["projected"],
        json!({"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]})
    );
    let mount = json!([{"name": name, "readOnly": true,
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]);
    assert_eq!(v["spec"]["containers"][0]["volumeMounts"], mount);
    assert_eq!(v["spec"]["initContainers"][0]["volumeMounts"], mount);

    // Opting out on the ServiceAccount, and the pod overriding it back.
    create_sa(
        &t,
        "default",
        "quiet",
        json!({"automountServiceAccountToken": false, "imagePullSecrets": [{"name": "reg"}]}),
    )
    .await;
    let pod = create_pod(
        &t,
        "default",
        json!({"metadata": {"name": "p2"}, "spec": {"serviceAccountName": "quiet",
            "containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await
    .unwrap();
    let v = serde_json::to_value(&pod).unwrap();
    assert!(v["spec"].get("volumes").is_none(), "{v}");
    assert_eq!(v["spec"]["imagePullSecrets"], json!([{"name": "reg"}]));
    let pod = create_pod(
        &t,
        "default",
        json!({"metadata": {"name": "p3"}, "spec": {"serviceAccountName": "quiet",
            "automountServiceAccountToken": true,
            "containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await
    .unwrap();
    assert_eq!(pod.spec.unwrap().volumes.unwrap().len(), 1);

    // A named ServiceAccount that does not exist is refused at once.
    let err = create_pod(
        &t,
        "default",
        json!({"metadata": {"name": "p4"}, "spec": {"serviceAccountName": "ghost",
            "containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains(
            "pods \"p4\" is forbidden: error looking up service account default/ghost: serviceaccount \"ghost\" not found"
        ),
        "{err}"
    );

    // Mirror pods are not mutated and may not name a ServiceAccount.
    let pod = create_pod(
        &t,
        "default",
        json!({"metadata": {"name": "m1", "annotations": {"kubernetes.io/config.mirror": "x"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await
    .unwrap();
    assert!(pod.spec.unwrap().volumes.is_none());
    let err = create_pod(
        &t,
        "default",
        json!({"metadata": {"name": "m2", "annotations": {"kubernetes.io/config.mirror": "x"}},
            "spec": {"serviceAccountName": "default", "containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("a mirror pod may not reference service accounts"),
        "{err}"
    );
}

#[tokio::test]
async fn bound_tokens_authenticate_until_their_pod_goes() {
    let t = start().await;
    let sa = create_sa(&t, "default", "build", json!({})).await;
    let sa_uid = sa.metadata.uid.clone().unwrap();
    let pod = create_pod(
        &t,
        "default",
        json!({"metadata": {"name": "runner"}, "spec": {"serviceAccountName": "build",
            "nodeName": "node-a", "containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await
    .unwrap();
    let pod_uid = pod.metadata.uid.clone().unwrap();

    let base = "/api/v1/namespaces/default/serviceaccounts/build/token";
    // Validation, in upstream's words.
    let err = post(&t, base, json!({"spec": {"expirationSeconds": 60}}))
        .await
        .unwrap_err();
    match &err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422);
            assert_eq!(s.message, "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes");
        }
        other => panic!("{other:?}"),
    }
    let err = post(
        &t,
        "/api/v1/namespaces/default/serviceaccounts/nobody/token",
        json!({}),
    )
    .await
    .unwrap_err();
    assert_eq!(status_code(&err), Some(404));
    let err = post(
        &t,
        base,
        json!({"spec": {"boundObjectRef": {"kind": "Pod",
        "apiVersion": "v1", "name": "runner", "uid": "not-the-uid"}}}),
    )
    .await
    .unwrap_err();
    assert_eq!(status_code(&err), Some(409), "{err}");
    let err = post(
        &t,
        base,
        json!({"spec": {"boundObjectRef": {"kind": "Deployment",
        "apiVersion": "apps/v1", "name": "x"}}}),
    )
    .await
    .unwrap_err();
    assert!(err
        .to_string()
        .contains("cannot bind token to object of type apps/v1, Kind=Deployment"));

    // An unbound token: default audience and expiry.
    let tr = post(
        &t,
        base,
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest"}),
    )
    .await
    .unwrap();
    assert_eq!(tr["kind"], "TokenRequest");
    assert_eq!(tr["metadata"]["name"], "build");
    assert_eq!(tr["spec"]["expirationSeconds"], 3600);
    assert_eq!(
        tr["spec"]["audiences"],
        json!(["https://kubernetes.default.svc.cluster.local"])
    );
    let plain = tr["status"]["token"].as_str().unwrap().to_string();
    let c = claims_of(&plain);
    assert_eq!(c["sub"], "system:serviceaccount:default:build");
    assert_eq!(c["iss"], "https://kubernetes.default.svc.cluster.local");
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3600
    );
    assert_eq!(c["nbf"], c["iat"]);
    assert!(c["jti"].as_str().is_some_and(|j| j.len() == 36));
    let exp_ts: jiff::Timestamp = tr["status"]["expirationTimestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(exp_ts.as_second(), c["exp"].as_i64().unwrap());
    assert_eq!(authenticates(&t, &plain).await, None);

    // A pod-bound token carries the pod (and its node when the node exists).
    let tr = post(
        &t,
        base,
        json!({"spec": {"expirationSeconds": 600,
        "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "runner", "uid": pod_uid}}}),
    )
    .await
    .unwrap();
    let bound = tr["status"]["token"].as_str().unwrap().to_string();
    let c = claims_of(&bound);
    assert_eq!(
        c["kubernetes.io"],
        json!({"namespace": "default", "serviceaccount": {"name": "build", "uid": sa_uid},
            "pod": {"name": "runner", "uid": pod_uid}})
    );
    assert_eq!(authenticates(&t, &bound).await, None);

    // With the pod's node registered, the node goes in the claims and the user's extra.
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(t.client.clone());
    let node = nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "node-a"}})).unwrap(),
        )
        .await
        .unwrap();
    let node_uid = node.metadata.uid.unwrap();
    let tr = post(
        &t,
        base,
        json!({"spec": {
        "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "runner"}}}),
    )
    .await
    .unwrap();
    let with_node = tr["status"]["token"].as_str().unwrap().to_string();
    assert_eq!(
        claims_of(&with_node)["kubernetes.io"]["node"],
        json!({"name": "node-a", "uid": node_uid})
    );
    let review = post(
        &t,
        "/apis/authentication.k8s.io/v1/tokenreviews",
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": with_node}}),
    )
    .await
    .unwrap();
    let extra = &review["status"]["user"]["extra"];
    assert_eq!(
        extra["authentication.kubernetes.io/node-name"],
        json!(["node-a"])
    );
    assert_eq!(
        extra["authentication.kubernetes.io/node-uid"],
        json!([node_uid])
    );

    // The projected-volume expiry is extended to a year, warning after 3607 s.
    let tr = post(
        &t,
        base,
        json!({"spec": {"expirationSeconds": 3607,
        "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "runner"}}}),
    )
    .await
    .unwrap();
    let c = claims_of(tr["status"]["token"].as_str().unwrap());
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        365 * 24 * 3600
    );
    assert_eq!(
        c["kubernetes.io"]["warnafter"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3607
    );

    // Another audience is not for this API.
    let tr = post(&t, base, json!({"spec": {"audiences": ["vault"]}}))
        .await
        .unwrap();
    let vault = tr["status"]["token"].as_str().unwrap();
    assert_eq!(authenticates(&t, vault).await, Some(401));

    // Deleting the pod kills its token at once (grace 0), not the unbound one.
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), "default");
    pods.delete("runner", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert_eq!(authenticates(&t, &bound).await, Some(401));
    assert_eq!(authenticates(&t, &plain).await, None);

    // A re-created ServiceAccount (new uid) does not revive old tokens.
    let sas: Api<ServiceAccount> = Api::namespaced(t.client.clone(), "default");
    sas.delete("build", &DeleteParams::default()).await.unwrap();
    assert_eq!(authenticates(&t, &plain).await, Some(401));
    create_sa(&t, "default", "build", json!({})).await;
    assert_eq!(authenticates(&t, &plain).await, Some(401));
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    let t = start().await;
    create_sa(&t, "default", "weak", json!({})).await;
    let strong = create_sa(&t, "default", "strong", json!({})).await;
    let tr = post(
        &t,
        "/api/v1/namespaces/default/serviceaccounts/weak/token",
        json!({}),
    )
    .await
    .unwrap();
    let token = tr["status"]["token"].as_str().unwrap();
    assert_eq!(authenticates(&t, token).await, None);
    let parts: Vec<&str> = token.split('.').collect();
    // The attack: rewrite the claims to another ServiceAccount and keep the signature.
    let mut c = claims_of(token);
    c["sub"] = json!("system:serviceaccount:default:strong");
    c["kubernetes.io"]["serviceaccount"] =
        json!({"name": "strong", "uid": strong.metadata.uid.unwrap()});
    let forged_claims = B64.encode(c.to_string());
    let tampered = format!("{}.{forged_claims}.{}", parts[0], parts[2]);
    assert_eq!(authenticates(&t, &tampered).await, Some(401));
    // alg none with no signature.
    let none = format!(
        "{}.{forged_claims}.",
        B64.encode(json!({"alg": "none"}).to_string())
    );
    assert_eq!(authenticates(&t, &none).await, Some(401));
    // Signed by a key that is not the server's.
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let rng = ring::rand::SystemRandom::new();
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &other.serialize_der(),
        &rng,
    )
    .unwrap();
    let input = format!("{}.{forged_claims}", parts[0]);
    let sig = pair.sign(&rng, input.as_bytes()).unwrap();
    let foreign = format!("{input}.{}", B64.encode(sig.as_ref()));
    assert_eq!(authenticates(&t, &foreign).await, Some(401));
    // Garbage bearer tokens are plain 401s too.
    assert_eq!(authenticates(&t, "a.b.c").await, Some(401));
}

#[tokio::test]
async fn oidc_discovery_serves_the_key_that_verifies_tokens() {
    let t = start().await;
    create_sa(&t, "default", "build", json!({})).await;
    let doc: Value = serde_json::from_str(
        &get_raw(&t.client, "/.well-known/openid-configuration")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        doc["issuer"],
        "https://kubernetes.default.svc.cluster.local"
    );
    assert_eq!(
        doc["jwks_uri"],
        format!("{}/openid/v1/jwks", server_url(&t))
    );
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        json!(["ES256"])
    );
    assert_eq!(doc["response_types_supported"], json!(["id_token"]));
    assert_eq!(doc["subject_types_supported"], json!(["public"]));
    let jwks: Value =
        serde_json::from_str(&get_raw(&t.client, "/openid/v1/jwks").await.unwrap()).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let k = &keys[0];
    assert_eq!(
        (k["kty"].as_str(), k["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    assert_eq!(
        (k["alg"].as_str(), k["use"].as_str()),
        (Some("ES256"), Some("sig"))
    );

    let tr = post(
        &t,
        "/api/v1/namespaces/default/serviceaccounts/build/token",
        json!({}),
    )
    .await
    .unwrap();
    let token = tr["status"]["token"].as_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let header: Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"], k["kid"]);
    // Verify with nothing but the published JWK, as an external relying party would.
    let mut point = vec![4u8];
    point.extend(B64.decode(k["x"].as_str().unwrap()).unwrap());
    point.extend(B64.decode(k["y"].as_str().unwrap()).unwrap());
    let public =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point);
    let input = format!("{}.{}", parts[0], parts[1]);
    public
        .verify(input.as_bytes(), &B64.decode(parts[2]).unwrap())
        .expect("the JWKS key verifies the token");

    // The discovery documents need a credential like any other path (no anonymous access).
    let ca = std::fs::read(t._dir.path().join("server/tls/ca.crt")).unwrap();
    let anon = skiff_client::config::with_token(&server_url(&t), &ca, "nope").unwrap();
    let err = get_raw(&anon, "/openid/v1/jwks").await.unwrap_err();
    assert_eq!(status_code(&err), Some(401));
}

#[tokio::test]
async fn token_review_answers_for_bound_tokens() {
    let t = start().await;
    let sa = create_sa(&t, "default", "build", json!({})).await;
    let pod = create_pod(
        &t,
        "default",
        json!({"metadata": {"name": "runner"}, "spec": {"serviceAccountName": "build",
            "containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await
    .unwrap();
    let tr = post(
        &t,
        "/api/v1/namespaces/default/serviceaccounts/build/token",
        json!({"spec": {"audiences": ["https://kubernetes.default.svc.cluster.local", "vault"],
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "runner"}}}),
    )
    .await
    .unwrap();
    let token = tr["status"]["token"].as_str().unwrap().to_string();
    let jti = claims_of(&token)["jti"].as_str().unwrap().to_string();
    let review = |token: String, auds: Value| {
        let t = &t;
        async move {
            let mut spec = json!({"token": token});
            if !auds.is_null() {
                spec["audiences"] = auds;
            }
            post(
                t,
                "/apis/authentication.k8s.io/v1/tokenreviews",
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}),
            )
            .await
            .unwrap()
        }
    };
    let r = review(token.clone(), Value::Null).await;
    assert_eq!(r["kind"], "TokenReview");
    assert_eq!(r["spec"]["token"], token.as_str());
    assert_eq!(r["status"]["authenticated"], true, "{r}");
    assert_eq!(
        r["status"]["audiences"],
        json!(["https://kubernetes.default.svc.cluster.local"])
    );
    let user = &r["status"]["user"];
    assert_eq!(user["username"], "system:serviceaccount:default:build");
    assert_eq!(user["uid"], sa.metadata.uid.clone().unwrap().as_str());
    assert_eq!(
        user["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ])
    );
    assert_eq!(
        user["extra"],
        json!({"authentication.kubernetes.io/credential-id": [format!("JTI={jti}")],
            "authentication.kubernetes.io/pod-name": ["runner"],
            "authentication.kubernetes.io/pod-uid": [pod.metadata.uid.clone().unwrap()]})
    );
    // Another audience the token carries.
    let r = review(token.clone(), json!(["vault"])).await;
    assert_eq!(r["status"]["authenticated"], true);
    assert_eq!(r["status"]["audiences"], json!(["vault"]));
    // An audience it does not.
    let r = review(token.clone(), json!(["other"])).await;
    assert_eq!(r["status"]["authenticated"], false);
    assert_eq!(
        r["status"]["error"],
        "[invalid bearer token, token audiences [\"https://kubernetes.default.svc.cluster.local\" \"vault\"] is invalid for the target audiences [\"other\"]]"
    );
    // Garbage.
    let r = review("nope".into(), Value::Null).await;
    assert_eq!(
        r["status"],
        json!({"authenticated": false, "user": {}, "error": "invalid bearer token"})
    );
    // The pod goes, the token with it.
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), "default");
    pods.delete("runner", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let r = review(token.clone(), Value::Null).await;
    assert_eq!(r["status"]["authenticated"], false);
    assert_eq!(
        r["status"]["error"],
        "[invalid bearer token, service account token has been invalidated]"
    );
    // A TokenReview without a token is a bad request.
    let err = post(
        &t,
        "/apis/authentication.k8s.io/v1/tokenreviews",
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {}}),
    )
    .await
    .unwrap_err();
    assert_eq!(status_code(&err), Some(400));
}
