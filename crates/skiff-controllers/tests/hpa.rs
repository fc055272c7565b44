//! HorizontalPodAutoscaler end to end (API server + all controllers + a fake node), with a
//! fake resource-metrics source whose per-pod CPU usage the test sets: the HPA scales a
//! Deployment up through its `scale` subresource, reports status, conditions and events, and
//! scales back down under its behavior; the object reads the same through autoscaling/v1.

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::Client;
use serde_json::json;
use skiff_controllers::podautoscaler::replicas::{PodMetric, PodMetrics};
use skiff_controllers::podautoscaler::{MetricsSource, Source};

const T: Duration = Duration::from_secs(40);

/// Every Running pod of the selector uses `cpu` millicores.
struct FakeMetrics {
    client: tokio::sync::OnceCell<Client>,
    cpu: AtomicI64,
}

impl MetricsSource for FakeMetrics {
    fn pod_metrics<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
        _resource: &'a str,
        _container: Option<&'a str>,
    ) -> BoxFuture<'a, Result<PodMetrics, String>> {
        Box::pin(async move {
            let client = self.client.get().ok_or("no client yet")?;
            let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
            let list = pods
                .list(&ListParams::default().labels(selector))
                .await
                .map_err(|e| e.to_string())?;
            let milli = self.cpu.load(Ordering::SeqCst);
            Ok(list
                .items
                .into_iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .filter_map(|p| p.metadata.name)
                .map(|n| {
                    let m = PodMetric {
                        milli,
                        timestamp: jiff::Timestamp::now(),
                        window: Duration::ZERO,
                    };
                    (n, m)
                })
                .collect())
        })
    }
}

async fn wait<F, Fut>(cluster: &common::TestCluster, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    cluster
        .wait_for(what, T, || {
            let fut = check();
            async move { fut.await.is_some() }
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_scales_a_deployment_up_and_down_from_cpu_usage() {
    let metrics = Arc::new(FakeMetrics {
        client: tokio::sync::OnceCell::new(),
        cpu: AtomicI64::new(10),
    });
    let options = skiff_controllers::Options {
        hpa_sync_period: Duration::from_secs(1),
        hpa_metrics: Some(Source(metrics.clone())),
        ..common::fast_options()
    };
    let cluster = common::TestCluster::start_with(options).await;
    let _ = metrics.client.set(cluster.client.clone());
    let _node = cluster.add_node("hpa-node").await;
    let client = cluster.client.clone();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "burn"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "burn"}},
            "template": {"metadata": {"labels": {"app": "burn"}},
                "spec": {"containers": [{"name": "c", "image": "busybox",
                    "resources": {"requests": {"cpu": "100m"}}}]}}}
    }))
    .expect("deployment");
    deployments
        .create(&PostParams::default(), &d)
        .await
        .expect("create deployment");
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "burn"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "burn"},
            "minReplicas": 1, "maxReplicas": 5,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 50}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 2,
                "policies": [{"type": "Percent", "value": 100, "periodSeconds": 1}]}}}
    }))
    .expect("hpa");
    hpas.create(&PostParams::default(), &hpa)
        .await
        .expect("create hpa");

    // Idle (10%): stays at one replica, with a valid metric.
    wait(&cluster, "the HPA to report 10% cpu", || async {
        let h = hpas.get("burn").await.ok()?;
        let s = h.status?;
        let u = s
            .current_metrics?
            .first()?
            .resource
            .as_ref()?
            .current
            .average_utilization?;
        (u == 10 && s.desired_replicas == 1).then_some(())
    })
    .await;

    // 200% of the request against 50%: 1 → 4.
    metrics.cpu.store(200, Ordering::SeqCst);
    wait(&cluster, "the deployment to scale to 4", || async {
        let d = deployments.get("burn").await.ok()?;
        (d.spec?.replicas? == 4).then_some(())
    })
    .await;
    wait(&cluster, "the HPA status to show the rescale", || async {
        let s = hpas.get("burn").await.ok()?.status?;
        (s.desired_replicas == 4 && s.last_scale_time.is_some()).then_some(())
    })
    .await;
    let h = hpas.get("burn").await.expect("hpa");
    let status = h.status.expect("status");
    let conditions = status.conditions.expect("conditions");
    let cond = |ty: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == ty)
            .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
            .unwrap_or_else(|| panic!("{ty} in {conditions:?}"))
    };
    assert_eq!(
        cond("ScalingActive"),
        ("True".into(), "ValidMetricFound".into())
    );
    assert_eq!(cond("AbleToScale").0, "True");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    wait(&cluster, "the SuccessfulRescale event", || async {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some("SuccessfulRescale")
                        && e.message.as_deref()
                            == Some("New size: 4; reason: cpu resource utilization (percentage of request) above target")
                })
                .then_some(())
        })
        .await;

    // The same object through autoscaling/v1.
    let v1 = ApiResource {
        group: "autoscaling".into(),
        version: "v1".into(),
        api_version: "autoscaling/v1".into(),
        kind: "HorizontalPodAutoscaler".into(),
        plural: "horizontalpodautoscalers".into(),
    };
    let v1_api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &v1);
    let o = v1_api.get("burn").await.expect("v1 get");
    assert_eq!(o.data["spec"]["targetCPUUtilizationPercentage"], 50);
    assert_eq!(o.data["spec"]["maxReplicas"], 5);
    assert!(o.data["status"]["currentCPUUtilizationPercentage"].is_number());
    let ann = o.metadata.annotations.unwrap_or_default();
    assert!(
        ann.contains_key("autoscaling.alpha.kubernetes.io/conditions"),
        "{ann:?}"
    );
    assert!(
        ann.contains_key("autoscaling.alpha.kubernetes.io/behavior"),
        "{ann:?}"
    );

    // Idle again: back to one after the 2 s window.
    metrics.cpu.store(5, Ordering::SeqCst);
    wait(&cluster, "the deployment to scale back to 1", || async {
        let d = deployments.get("burn").await.ok()?;
        (d.spec?.replicas? == 1).then_some(())
    })
    .await;
    wait(&cluster, "the scale-down event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| e.message.as_deref() == Some("New size: 1; reason: All metrics below target"))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_reports_why_it_cannot_scale() {
    let metrics = Arc::new(FakeMetrics {
        client: tokio::sync::OnceCell::new(),
        cpu: AtomicI64::new(10),
    });
    let options = skiff_controllers::Options {
        hpa_sync_period: Duration::from_secs(1),
        hpa_metrics: Some(Source(metrics.clone())),
        ..common::fast_options()
    };
    let cluster = common::TestCluster::start_with(options).await;
    let _ = metrics.client.set(cluster.client.clone());
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(cluster.client.clone(), "default");
    // No such target: AbleToScale False FailedGetScale.
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "ghost"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ghost"},
            "maxReplicas": 3}
    }))
    .expect("hpa");
    hpas.create(&PostParams::default(), &hpa)
        .await
        .expect("create");
    wait(&cluster, "FailedGetScale", || async {
        let h = hpas.get("ghost").await.ok()?;
        let c = h.status?.conditions?;
        c.iter()
            .any(|c| {
                c.type_ == "AbleToScale"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("FailedGetScale")
            })
            .then_some(())
    })
    .await;
    // Created through autoscaling/v1, read through v2 (stored once, converted at the edge).
    let v1 = ApiResource {
        group: "autoscaling".into(),
        version: "v1".into(),
        api_version: "autoscaling/v1".into(),
        kind: "HorizontalPodAutoscaler".into(),
        plural: "horizontalpodautoscalers".into(),
    };
    let v1_api: Api<DynamicObject> = Api::namespaced_with(cluster.client.clone(), "default", &v1);
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "old"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ghost"},
            "maxReplicas": 4, "targetCPUUtilizationPercentage": 60}
    }))
    .expect("v1 hpa");
    let created = v1_api
        .create(&PostParams::default(), &obj)
        .await
        .expect("v1 create");
    assert_eq!(created.data["spec"]["targetCPUUtilizationPercentage"], 60);
    assert_eq!(created.data["spec"]["minReplicas"], 1);
    let as_v2 = hpas.get("old").await.expect("v2 get");
    let m = &as_v2.spec.expect("spec").metrics.expect("metrics")[0];
    assert_eq!(
        m.resource
            .as_ref()
            .and_then(|r| r.target.average_utilization),
        Some(60)
    );
    let bad: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "bad"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "maxReplicas": 0}
    }))
    .expect("v1 hpa");
    let err = v1_api
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("invalid");
    assert!(
        err.to_string()
            .contains("spec.maxReplicas: Invalid value: 0: must be greater than 0"),
        "{err}"
    );

    // An external metric only: ScalingActive False (no external metrics API).
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "ext"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "ext"}},
            "template": {"metadata": {"labels": {"app": "ext"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
    }))
    .expect("deployment");
    deployments
        .create(&PostParams::default(), &d)
        .await
        .expect("create deployment");
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "ext"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ext"},
            "maxReplicas": 3, "metrics": [{"type": "External", "external": {
                "metric": {"name": "queue"}, "target": {"type": "Value", "value": "10"}}}]}
    }))
    .expect("hpa");
    hpas.create(&PostParams::default(), &hpa)
        .await
        .expect("create");
    wait(&cluster, "FailedGetExternalMetric", || async {
        let h = hpas.get("ext").await.ok()?;
        let c = h.status?.conditions?;
        c.iter()
            .any(|c| {
                c.type_ == "ScalingActive"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("FailedGetExternalMetric")
            })
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_scales_a_custom_kind_through_its_scale_subresource() {
    let metrics = Arc::new(FakeMetrics {
        client: tokio::sync::OnceCell::new(),
        cpu: AtomicI64::new(200),
    });
    let options = skiff_controllers::Options {
        hpa_sync_period: Duration::from_secs(1),
        hpa_metrics: Some(Source(metrics.clone())),
        ..common::fast_options()
    };
    let cluster = common::TestCluster::start_with(options).await;
    let _ = metrics.client.set(cluster.client.clone());
    let _node = cluster.add_node("crd-node").await;
    let client = cluster.client.clone();
    let crd_res = ApiResource {
        group: "apiextensions.k8s.io".into(),
        version: "v1".into(),
        api_version: "apiextensions.k8s.io/v1".into(),
        kind: "CustomResourceDefinition".into(),
        plural: "customresourcedefinitions".into(),
    };
    let crds: Api<DynamicObject> = Api::all_with(client.clone(), &crd_res);
    let crd: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "workers.example.skiff.dev"},
        "spec": {"group": "example.skiff.dev", "scope": "Namespaced",
            "names": {"plural": "workers", "singular": "worker", "kind": "Worker"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                    "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"}},
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .expect("crd");
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("create crd");
    let worker_res = ApiResource {
        group: "example.skiff.dev".into(),
        version: "v1".into(),
        api_version: "example.skiff.dev/v1".into(),
        kind: "Worker".into(),
        plural: "workers".into(),
    };
    let workers: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &worker_res);
    let w: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.skiff.dev/v1", "kind": "Worker",
        "metadata": {"name": "w"}, "spec": {"replicas": 1}
    }))
    .expect("worker");
    wait(&cluster, "the Worker kind to be served", || async {
        workers
            .create(&PostParams::default(), &w)
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    workers
        .patch_status(
            "w",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"status": {"replicas": 1, "selector": "app=w"}})),
        )
        .await
        .expect("worker status");
    // The Worker's one pod (a real operator would create it).
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "w-0", "labels": {"app": "w"}},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"requests": {"cpu": "100m"}}}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("pod");
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "w"},
        "spec": {"scaleTargetRef": {"apiVersion": "example.skiff.dev/v1", "kind": "Worker", "name": "w"},
            "maxReplicas": 3, "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 50}}}]}
    }))
    .expect("hpa");
    hpas.create(&PostParams::default(), &hpa)
        .await
        .expect("create hpa");
    // 200% against 50% → 4, capped at the maximum 3.
    wait(&cluster, "the Worker to be scaled to 3", || async {
        let w = workers.get("w").await.ok()?;
        (w.data["spec"]["replicas"] == 3).then_some(())
    })
    .await;
    wait(&cluster, "ScalingLimited TooManyReplicas", || async {
        let c = hpas.get("w").await.ok()?.status?.conditions?;
        c.iter()
            .any(|c| {
                c.type_ == "ScalingLimited"
                    && c.status == "True"
                    && c.reason.as_deref() == Some("TooManyReplicas")
            })
            .then_some(())
    })
    .await;
}
