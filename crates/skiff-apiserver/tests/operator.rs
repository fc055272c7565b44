//! A real operator against skiff: a custom kind declared with kube-rs's `CustomResource` derive
//! (its CRD generated from the Rust type), and a `kube::runtime::Controller` that reconciles each
//! `Greeting` into a ConfigMap it owns and reports progress through the status subresource —
//! the way operators are written for upstream Kubernetes, unchanged.

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{CustomResource, CustomResourceExt, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema)]
#[kube(
    group = "demo.skiff.dev",
    version = "v1",
    kind = "Greeting",
    namespaced,
    status = "GreetingStatus",
    shortname = "gr",
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".spec.message"}"#
)]
pub struct GreetingSpec {
    message: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GreetingStatus {
    config_map: String,
    observed_generation: i64,
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("kube: {0}")]
    Kube(#[from] kube::Error),
    #[error("object without namespace or uid")]
    Incomplete,
}

struct Ctx {
    client: kube::Client,
}

/// Makes the Greeting's ConfigMap say its message, then records that in the status.
async fn reconcile(g: Arc<Greeting>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = g.namespace().ok_or(Error::Incomplete)?;
    let owner = g.controller_owner_ref(&()).ok_or(Error::Incomplete)?;
    let name = format!("{}-greeting", g.name_any());
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "ownerReferences": [owner]},
        "data": {"message": g.spec.message},
    });
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    cms.patch(
        &name,
        &PatchParams::apply("greeting-operator").force(),
        &Patch::Apply(&cm),
    )
    .await?;
    let greetings: Api<Greeting> = Api::namespaced(ctx.client.clone(), &ns);
    let status = json!({"status": {"configMap": name, "observedGeneration": g.meta().generation.unwrap_or(0)}});
    greetings
        .patch_status(
            &g.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

fn error_policy(_g: Arc<Greeting>, _e: &Error, _ctx: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_millis(200))
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_operator_reconciles_its_custom_kind() {
    let srv = common::start().await;
    let client = srv.client.clone();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Greeting::crd())
        .await
        .expect("create the generated CRD");
    eventually("the CRD is Established", || async {
        crds.get("greetings.demo.skiff.dev").await.is_ok_and(|c| {
            c.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
    })
    .await;

    let ns = "default";
    let greetings: Api<Greeting> = Api::namespaced(client.clone(), ns);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let controller = tokio::spawn(
        Controller::new(
            Api::<Greeting>::all(client.clone()),
            watcher::Config::default(),
        )
        .owns(
            Api::<ConfigMap>::all(client.clone()),
            watcher::Config::default(),
        )
        .run(
            reconcile,
            error_policy,
            Arc::new(Ctx {
                client: client.clone(),
            }),
        )
        .for_each(|_| async {}),
    );

    let hello = Greeting::new(
        "hello",
        GreetingSpec {
            message: "hi there".into(),
        },
    );
    greetings
        .create(&PostParams::default(), &hello)
        .await
        .expect("create a Greeting");
    eventually("the ConfigMap says the message", || async {
        cms.get("hello-greeting").await.is_ok_and(|cm| {
            cm.data
                .unwrap_or_default()
                .get("message")
                .map(String::as_str)
                == Some("hi there")
        })
    })
    .await;
    eventually("the status reports generation 1", || async {
        greetings.get_status("hello").await.is_ok_and(|g| {
            g.status
                .is_some_and(|s| s.observed_generation == 1 && s.config_map == "hello-greeting")
        })
    })
    .await;
    let cm = cms.get("hello-greeting").await.expect("configmap");
    let owner = &cm.metadata.owner_references.unwrap_or_default()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Greeting", "hello")
    );
    assert_eq!(owner.controller, Some(true));

    // A spec change bumps the generation; a status write does not.
    greetings
        .patch(
            "hello",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"message": "bye"}})),
        )
        .await
        .expect("change the message");
    eventually("the operator follows the spec change", || async {
        let cm_ok = cms.get("hello-greeting").await.is_ok_and(|cm| {
            cm.data
                .unwrap_or_default()
                .get("message")
                .map(String::as_str)
                == Some("bye")
        });
        let status_ok = greetings
            .get_status("hello")
            .await
            .is_ok_and(|g| g.status.is_some_and(|s| s.observed_generation == 2));
        cm_ok && status_ok
    })
    .await;
    assert_eq!(
        greetings
            .get("hello")
            .await
            .expect("get")
            .metadata
            .generation,
        Some(2)
    );

    // The owned ConfigMap deleted by someone else comes back.
    cms.delete("hello-greeting", &DeleteParams::default())
        .await
        .expect("delete the ConfigMap");
    eventually("the operator recreates its ConfigMap", || async {
        cms.get("hello-greeting").await.is_ok()
    })
    .await;

    // The schema the derive generated is enforced: `message` is required.
    let bad = serde_json::from_value::<Greeting>(json!({
        "apiVersion": "demo.skiff.dev/v1", "kind": "Greeting",
        "metadata": {"name": "bad"}, "spec": {"message": "x"}
    }))
    .expect("typed");
    let mut raw = serde_json::to_value(&bad).expect("json");
    raw["spec"] = json!({});
    let dynamic: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &kube::api::ApiResource::erase::<Greeting>(&()),
    );
    let err = dynamic
        .create(
            &PostParams::default(),
            &serde_json::from_value(raw).expect("dynamic"),
        )
        .await
        .expect_err("a Greeting without a message is invalid");
    assert_eq!(common::status_code(&err), Some(422), "{err}");
    assert!(
        err.to_string().contains("spec.message: Required value"),
        "{err}"
    );

    controller.abort();
}
