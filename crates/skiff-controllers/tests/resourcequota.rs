//! The ResourceQuota controller against a real API server: status.hard follows spec.hard,
//! status.used counts pods and their CPU requests, a NodePort Service's ports, and a
//! `count/<resource>.<group>` kind nothing watches (picked up by the periodic recount), and
//! usage is released when a pod is deleted.

mod common;

use std::time::Duration;

use common::TestCluster;
use k8s_openapi::api::core::v1::{Namespace, Pod, ResourceQuota, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::Role;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{json, Value};
use skiff_controllers::Options;

const WAIT: Duration = Duration::from_secs(30);

async fn used(api: &Api<ResourceQuota>) -> Value {
    match api.get("counts").await {
        Ok(q) => serde_json::to_value(q.status.and_then(|s| s.used)).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

#[tokio::test]
async fn quota_usage_is_counted_and_released() {
    let c = TestCluster::start_with(Options {
        resource_quota_sync_period: Some(Duration::from_secs(2)),
        ..Options::default()
    })
    .await;
    let ns = "rq-counts";
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    Api::<Namespace>::all(c.client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let quotas: Api<ResourceQuota> = Api::namespaced(c.client.clone(), ns);
    let hard = json!({"pods": "5", "requests.cpu": "2", "services.nodeports": "4",
        "count/roles.rbac.authorization.k8s.io": "3"});
    let quota: ResourceQuota =
        serde_json::from_value(json!({"metadata": {"name": "counts"}, "spec": {"hard": hard}}))
            .unwrap();
    quotas.create(&PostParams::default(), &quota).await.unwrap();
    let zero = json!({"pods": "0", "requests.cpu": "0", "services.nodeports": "0",
        "count/roles.rbac.authorization.k8s.io": "0"});
    c.wait_for("status.hard and a zero status.used", WAIT, || async {
        let Ok(q) = quotas.get("counts").await else {
            return false;
        };
        let status = serde_json::to_value(q.status).unwrap_or(Value::Null);
        status["hard"] == hard && status["used"] == zero
    })
    .await;

    // Pods need the namespace's default ServiceAccount, which its controller creates.
    let sas: Api<ServiceAccount> = Api::namespaced(c.client.clone(), ns);
    c.wait_for("the default ServiceAccount", WAIT, || async {
        sas.get("default").await.is_ok()
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), ns);
    for name in ["a", "b"] {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name}, "spec": {
            "containers": [{"name": "c", "image": "busybox",
                "resources": {"requests": {"cpu": "500m"}}}]}}))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "np"}, "spec": {
        "type": "NodePort", "selector": {"app": "x"},
        "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]}}))
    .unwrap();
    Api::<Service>::namespaced(c.client.clone(), ns)
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
    let role: Role =
        serde_json::from_value(json!({"metadata": {"name": "r"}, "rules": []})).unwrap();
    Api::<Role>::namespaced(c.client.clone(), ns)
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    let want = json!({"pods": "2", "requests.cpu": "1", "services.nodeports": "2",
        "count/roles.rbac.authorization.k8s.io": "1"});
    c.wait_for("pods, CPU, node ports and roles counted", WAIT, || async {
        used(&quotas).await == want
    })
    .await;

    pods.delete("a", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let want = json!({"pods": "1", "requests.cpu": "500m", "services.nodeports": "2",
        "count/roles.rbac.authorization.k8s.io": "1"});
    c.wait_for("the deleted pod's usage released", WAIT, || async {
        used(&quotas).await == want
    })
    .await;
}
