//! The HorizontalPodAutoscaler controller (upstream `pkg/controller/podautoscaler`): every sync
//! period each HPA reads its target's `scale` subresource (any kind that has one, resolved
//! through discovery), the pods of the scale's selector and their usage from the resource
//! metrics API (metrics.k8s.io PodMetrics, behind [`MetricsSource`]), proposes a replica count
//! per metric ([`replicas`]), takes the largest, applies `behavior` (stabilization windows and
//! scaling policies, [`behavior`]) and the min/max bounds, writes the scale and the status
//! (current/desired replicas, current metrics, conditions AbleToScale / ScalingActive /
//! ScalingLimited) and records events (SuccessfulRescale, FailedGet*Metric, ...).
//!
//! Pods, Object and External metrics need the custom/external metrics APIs, which skiff does
//! not serve: such metrics are invalid (ScalingActive False when no metric is usable).
//! An HPA without `behavior` uses the API's default behavior (upstream's controller applies
//! its older fixed rules there; the scale-up defaults are nearly the same).

pub mod behavior;
pub mod replicas;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{stream, TryStreamExt};
use k8s_openapi::api::autoscaling::v2::{
    ContainerResourceMetricStatus, HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition,
    HorizontalPodAutoscalerStatus, MetricSpec, MetricStatus, MetricValueStatus,
    ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, reflector, ObjectRef};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};
use skiff_client::driver::{drive, requeue_after};
use skiff_client::events::EventType;

use self::behavior::{History, Rules};
use self::replicas::{PodMetric, PodMetrics, Target};
use crate::{api_message, Context, Error, Result};

const COMPONENT: &str = "horizontal-pod-autoscaler";
const ERROR_REQUEUE: Duration = Duration::from_secs(5);

/// Where per-pod usage comes from (the resource metrics API; a fake in tests).
pub trait MetricsSource: Send + Sync + 'static {
    /// Usage of `resource` (summed over the containers, or only `container`) of the pods in
    /// `namespace` matching `selector`, by pod name.
    fn pod_metrics<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
        resource: &'a str,
        container: Option<&'a str>,
    ) -> BoxFuture<'a, std::result::Result<PodMetrics, String>>;
}

/// A shared [`MetricsSource`] (for [`crate::Options`]).
#[derive(Clone)]
pub struct Source(pub Arc<dyn MetricsSource>);

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricsSource")
    }
}

/// metrics.k8s.io/v1beta1 PodMetrics, as metrics-server (or skiff's API server) serves them.
pub struct ResourceMetricsApi {
    pub client: kube::Client,
}

fn pod_metrics_resource() -> ApiResource {
    ApiResource {
        group: "metrics.k8s.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics.k8s.io/v1beta1".into(),
        kind: "PodMetrics".into(),
        plural: "pods".into(),
    }
}

impl MetricsSource for ResourceMetricsApi {
    fn pod_metrics<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
        resource: &'a str,
        container: Option<&'a str>,
    ) -> BoxFuture<'a, std::result::Result<PodMetrics, String>> {
        Box::pin(async move {
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), namespace, &pod_metrics_resource());
            let list = api
                .list(&ListParams::default().labels(selector))
                .await
                .map_err(|e| {
                    format!(
                        "unable to fetch metrics from resource metrics API: {}",
                        api_message(&e)
                    )
                })?;
            Ok(list
                .items
                .iter()
                .filter_map(|pm| {
                    let name = pm.metadata.name.clone()?;
                    parse_pod_metric(&pm.data, resource, container).map(|m| (name, m))
                })
                .collect())
        })
    }
}

/// One PodMetrics object's usage of `resource` (None: a wanted container has no sample).
pub fn parse_pod_metric(
    data: &Value,
    resource: &str,
    container: Option<&str>,
) -> Option<PodMetric> {
    let timestamp = data
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(jiff::Timestamp::now);
    let window = data
        .get("window")
        .and_then(Value::as_str)
        .and_then(go_duration)
        .unwrap_or(Duration::from_secs(30));
    let mut milli = 0i64;
    let mut found = false;
    for c in data
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if container.is_some_and(|want| c.get("name").and_then(Value::as_str) != Some(want)) {
            continue;
        }
        let usage = c
            .pointer(&format!("/usage/{resource}"))
            .and_then(Value::as_str)
            .and_then(skiff_semantics::quantity::parse_milli_value);
        if let Some(u) = usage {
            milli = milli.saturating_add(u);
            found = true;
        }
    }
    if container.is_some() && !found {
        return None;
    }
    Some(PodMetric {
        milli,
        timestamp,
        window,
    })
}

/// A Go duration like `15s`, `10.5s`, `1m0s` (what metrics APIs put in `window`).
fn go_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut num = String::new();
    for ch in s.chars() {
        match ch {
            '0'..='9' | '.' => num.push(ch),
            'h' | 'm' | 's' => {
                let n: f64 = num.parse().ok()?;
                total += n * match ch {
                    'h' => 3600.0,
                    'm' => 60.0,
                    _ => 1.0,
                };
                num.clear();
            }
            _ => return None,
        }
    }
    (num.is_empty() && total.is_finite() && total >= 0.0).then(|| Duration::from_secs_f64(total))
}

/// The controller's state: the metrics source, the sync period and each HPA's history
/// (recommendations and scale events, which upstream also keeps in memory only).
pub struct Hpac {
    ctx: Arc<Context>,
    metrics: Arc<dyn MetricsSource>,
    period: Duration,
    history: Mutex<HashMap<String, History>>,
    /// The generation each HPA was last triggered at.
    generations: Mutex<HashMap<String, i64>>,
    kinds: Mutex<HashMap<(String, String), ApiResource>>,
}

/// Runs this controller until the process stops, with the resource metrics API unless the
/// options name another source.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let source: Arc<dyn MetricsSource> = match &ctx.options.hpa_metrics {
        Some(s) => s.0.clone(),
        None => Arc::new(ResourceMetricsApi {
            client: ctx.client.clone(),
        }),
    };
    run_with(ctx, source).await
}

/// Runs this controller with `metrics` as the usage source.
pub async fn run_with(ctx: Arc<Context>, metrics: Arc<dyn MetricsSource>) -> Result<()> {
    let client = ctx.client.clone();
    let period = ctx.options.hpa_sync_period;
    let hpac = Arc::new(Hpac {
        ctx,
        metrics,
        period,
        history: Mutex::new(HashMap::new()),
        generations: Mutex::new(HashMap::new()),
        kinds: Mutex::new(HashMap::new()),
    });
    let (store, writer) = reflector::store::<HorizontalPodAutoscaler>();
    let forget = hpac.clone();
    let triggers = reflector(
        writer,
        watcher(
            Api::<HorizontalPodAutoscaler>::all(client),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .map_ok(move |ev| {
        let refs: Vec<ObjectRef<HorizontalPodAutoscaler>> = match ev {
            // Spec changes and new objects sync at once; the controller's own status writes do
            // not (each HPA otherwise syncs once per period, like upstream's rate-limited queue).
            watcher::Event::Apply(h) | watcher::Event::InitApply(h) if forget.spec_changed(&h) => {
                vec![ObjectRef::from_obj(&h)]
            }
            watcher::Event::Delete(h) => {
                forget.forget(&key_of(&h));
                vec![]
            }
            _ => vec![],
        };
        stream::iter(refs.into_iter().map(Ok::<_, watcher::Error>))
    })
    .try_flatten();
    drive(
        "horizontalpodautoscaler",
        hpac,
        store,
        triggers,
        requeue_after("horizontalpodautoscaler", ERROR_REQUEUE),
        |obj, c| Box::pin(async move { c.reconcile(obj).await }),
    )
    .await;
    Err(Error::WatchEnded("horizontalpodautoscaler"))
}

fn key_of(h: &HorizontalPodAutoscaler) -> String {
    format!("{}/{}", h.namespace().unwrap_or_default(), h.name_any())
}

/// The HPA's conditions, updated in place (a changed status gets a new transition time).
struct Conditions(Vec<HorizontalPodAutoscalerCondition>);

impl Conditions {
    fn set(&mut self, ty: &str, status: bool, reason: &str, message: &str, now: &Time) {
        let status = if status { "True" } else { "False" };
        match self.0.iter_mut().find(|c| c.type_ == ty) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = Some(now.clone());
                }
                c.status = status.into();
                c.reason = Some(reason.into());
                c.message = Some(message.into());
            }
            None => self.0.push(HorizontalPodAutoscalerCondition {
                type_: ty.into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_transition_time: Some(now.clone()),
            }),
        }
    }
}

/// A metric that yields no proposal: the condition reason and the message.
struct Invalid {
    reason: &'static str,
    message: String,
}

/// One metric's proposal: replicas, the name used in messages, its status.
struct Proposed {
    replicas: i32,
    name: String,
    status: MetricStatus,
}

impl Hpac {
    fn forget(&self, key: &str) {
        if let Ok(mut h) = self.history.lock() {
            h.remove(key);
        }
        if let Ok(mut g) = self.generations.lock() {
            g.remove(key);
        }
    }

    /// Whether `h` is new or its spec changed since it was last seen.
    fn spec_changed(&self, h: &HorizontalPodAutoscaler) -> bool {
        let generation = h.metadata.generation.unwrap_or(0);
        let Ok(mut g) = self.generations.lock() else {
            return true;
        };
        g.insert(key_of(h), generation) != Some(generation)
    }

    async fn event(&self, hpa: &HorizontalPodAutoscaler, ty: EventType, reason: &str, msg: &str) {
        self.ctx
            .events
            .publish(COMPONENT, &hpa.object_ref(&()), ty, reason, msg)
            .await;
    }

    /// The target's resource (`apiVersion` + `kind` → plural) through discovery, cached.
    async fn resource_of(&self, api_version: &str, kind: &str) -> Result<ApiResource> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(ar) = self.kinds.lock().ok().and_then(|k| k.get(&key).cloned()) {
            return Ok(ar);
        }
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (ar, _) = kube::discovery::pinned_kind(&self.ctx.client, &gvk).await?;
        if let Ok(mut k) = self.kinds.lock() {
            k.insert(key, ar.clone());
        }
        Ok(ar)
    }

    async fn reconcile(self: Arc<Self>, hpa: Arc<HorizontalPodAutoscaler>) -> Result<Action> {
        let now_ts = jiff::Timestamp::now();
        let now = Time(now_ts);
        let ns = hpa.namespace().unwrap_or_default();
        let key = key_of(&hpa);
        let spec = hpa.spec.clone().unwrap_or_default();
        let old_status = hpa.status.clone().unwrap_or_default();
        let mut conds = Conditions(old_status.conditions.clone().unwrap_or_default());
        let target = &spec.scale_target_ref;
        let api_version = target.api_version.clone().unwrap_or_default();
        let mut status = HorizontalPodAutoscalerStatus {
            observed_generation: hpa.metadata.generation,
            last_scale_time: old_status.last_scale_time.clone(),
            current_replicas: old_status.current_replicas,
            desired_replicas: old_status.desired_replicas,
            current_metrics: old_status.current_metrics.clone(),
            conditions: None,
        };

        // The target's scale.
        let scale = match self.resource_of(&api_version, &target.kind).await {
            Ok(ar) => {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(self.ctx.client.clone(), &ns, &ar);
                api.get_scale(&target.name)
                    .await
                    .map(|s| (api, s))
                    .map_err(|e| api_message(&e))
            }
            Err(e) => Err(e.to_string()),
        };
        let (scale_api, scale) = match scale {
            Ok(s) => s,
            Err(e) => {
                let msg =
                    format!("the HPA controller was unable to get the target's current scale: {e}");
                self.event(&hpa, EventType::Warning, "FailedGetScale", &e)
                    .await;
                conds.set("AbleToScale", false, "FailedGetScale", &msg, &now);
                status.conditions = Some(conds.0);
                self.write_status(&hpa, &status).await?;
                return Ok(Action::requeue(self.period));
            }
        };
        conds.set(
            "AbleToScale",
            true,
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale",
            &now,
        );
        let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let selector = scale
            .status
            .as_ref()
            .and_then(|s| s.selector.clone())
            .unwrap_or_default();
        let min = spec.min_replicas.unwrap_or(1);
        let max = spec.max_replicas;
        status.current_replicas = Some(current);

        let mut reason = String::new();
        let desired;
        if current == 0 && min != 0 {
            desired = 0;
            conds.set(
                "ScalingActive",
                false,
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero",
                &now,
            );
        } else if current > max {
            reason = "Current number of replicas above Spec.MaxReplicas".into();
            desired = max;
        } else if current < min {
            reason = "Current number of replicas below Spec.MinReplicas".into();
            desired = min;
        } else {
            let (proposal, statuses) = self
                .compute(&hpa, &spec.metrics, current, &selector, &ns, now_ts)
                .await;
            status.current_metrics = (!statuses.is_empty()).then_some(statuses);
            match proposal {
                Err(invalid) => {
                    let msg = format!(
                        "the HPA was unable to compute the replica count: {}",
                        invalid.message
                    );
                    conds.set("ScalingActive", false, invalid.reason, &msg, &now);
                    status.conditions = Some(conds.0);
                    self.write_status(&hpa, &status).await?;
                    return Ok(Action::requeue(self.period));
                }
                Ok((proposed, metric_name)) => {
                    let msg = format!(
                        "the HPA was able to successfully calculate a replica count from {metric_name}"
                    );
                    conds.set("ScalingActive", true, "ValidMetricFound", &msg, &now);
                    desired = self.normalize(
                        &key, &spec, min, current, proposed, &mut conds, &now, now_ts,
                    );
                    reason = if desired > current {
                        format!("{metric_name} above target")
                    } else {
                        "All metrics below target".into()
                    };
                }
            }
        }

        if desired != current {
            let patch = Patch::Merge(json!({"spec": {"replicas": desired}}));
            match scale_api
                .patch_scale(&target.name, &PatchParams::default(), &patch)
                .await
            {
                Ok(_) => {
                    let msg = format!(
                        "the HPA controller was able to update the target scale to {desired}"
                    );
                    conds.set("AbleToScale", true, "SucceededRescale", &msg, &now);
                    let event = format!("New size: {desired}; reason: {reason}");
                    self.event(&hpa, EventType::Normal, "SuccessfulRescale", &event)
                        .await;
                    if let Ok(mut h) = self.history.lock() {
                        let (up, down) = rules(&spec);
                        let entry = h.entry(key.clone()).or_default();
                        behavior::record_scale(entry, &up, &down, current, desired, now_ts);
                    }
                    status.last_scale_time = Some(now.clone());
                }
                Err(e) => {
                    let err = api_message(&e);
                    let msg =
                        format!("the HPA controller was unable to update the target scale: {err}");
                    conds.set("AbleToScale", false, "FailedUpdateScale", &msg, &now);
                    let event = format!("New size: {desired}; reason: {reason}; error: {err}");
                    self.event(&hpa, EventType::Warning, "FailedRescale", &event)
                        .await;
                    status.conditions = Some(conds.0);
                    self.write_status(&hpa, &status).await?;
                    return Err(e.into());
                }
            }
        }
        status.desired_replicas = desired;
        status.conditions = Some(conds.0);
        self.write_status(&hpa, &status).await?;
        Ok(Action::requeue(self.period))
    }

    /// Behavior: stabilization, then the scaling policies and the bounds.
    #[allow(clippy::too_many_arguments)]
    fn normalize(
        &self,
        key: &str,
        spec: &k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerSpec,
        min: i32,
        current: i32,
        proposed: i32,
        conds: &mut Conditions,
        now: &Time,
        now_ts: jiff::Timestamp,
    ) -> i32 {
        let (up, down) = rules(spec);
        let Ok(mut all) = self.history.lock() else {
            return current;
        };
        let h = all.entry(key.to_string()).or_default();
        behavior::prune(h, &up, &down, now_ts);
        let (stabilized, reason, message) =
            behavior::stabilize(h, &up, &down, current, proposed, now_ts);
        if stabilized != proposed {
            conds.set("AbleToScale", true, reason, message, now);
        } else {
            conds.set(
                "AbleToScale",
                true,
                "ReadyForNewScale",
                "recommended size matches current size",
                now,
            );
        }
        let (desired, reason, message) = behavior::limit_rate(
            h,
            &up,
            &down,
            min,
            spec.max_replicas,
            current,
            stabilized,
            now_ts,
        );
        conds.set(
            "ScalingLimited",
            desired != stabilized,
            reason,
            message,
            now,
        );
        desired
    }

    /// Every metric's proposal; the largest wins. Errors when no metric is usable, or when
    /// some are not and the usable ones would scale down (upstream's caution).
    async fn compute(
        &self,
        hpa: &HorizontalPodAutoscaler,
        specs: &Option<Vec<MetricSpec>>,
        current: i32,
        selector: &str,
        ns: &str,
        now: jiff::Timestamp,
    ) -> (
        std::result::Result<(i32, String), Invalid>,
        Vec<MetricStatus>,
    ) {
        let default_cpu: Vec<MetricSpec> = serde_json::from_value(json!([{"type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]))
        .unwrap_or_default();
        let specs = specs
            .as_ref()
            .filter(|s| !s.is_empty())
            .unwrap_or(&default_cpu);
        if selector.is_empty() {
            self.event(
                hpa,
                EventType::Warning,
                "SelectorRequired",
                "selector is required",
            )
            .await;
            return (
                Err(Invalid {
                    reason: "InvalidSelector",
                    message: "the HPA target's scale is missing a selector".into(),
                }),
                Vec::new(),
            );
        }
        let pods = Api::<Pod>::namespaced(self.ctx.client.clone(), ns)
            .list(&ListParams::default().labels(selector))
            .await
            .map(|l| l.items);
        let mut statuses = Vec::with_capacity(specs.len());
        let mut best: Option<(i32, String)> = None;
        let mut first_invalid: Option<Invalid> = None;
        let mut invalid = 0usize;
        for spec in specs {
            let result = match &pods {
                Ok(pods) => {
                    self.one_metric(spec, current, selector, ns, pods, now)
                        .await
                }
                Err(e) => Err(Invalid {
                    reason: "FailedGetResourceMetric",
                    message: format!("unable to get pods: {}", api_message(e)),
                }),
            };
            match result {
                Ok(p) => {
                    statuses.push(p.status);
                    if best.as_ref().is_none_or(|(r, _)| p.replicas > *r) {
                        best = Some((p.replicas, p.name));
                    }
                }
                Err(e) => {
                    statuses.push(MetricStatus::default());
                    invalid += 1;
                    self.event(hpa, EventType::Warning, e.reason, &e.message)
                        .await;
                    first_invalid.get_or_insert(e);
                }
            }
        }
        if let Some(first) = first_invalid {
            let msg = format!(
                "invalid metrics ({invalid} invalid out of {}), first error is: {}",
                specs.len(),
                first.message
            );
            self.event(
                hpa,
                EventType::Warning,
                "FailedComputeMetricsReplicas",
                &msg,
            )
            .await;
            if best.as_ref().is_none_or(|(r, _)| *r < current) {
                return (Err(first), statuses);
            }
        }
        match best {
            Some(b) => (Ok(b), statuses),
            None => (
                Err(Invalid {
                    reason: "InvalidMetricSourceType",
                    message: "no metrics".into(),
                }),
                statuses,
            ),
        }
    }

    async fn one_metric(
        &self,
        spec: &MetricSpec,
        current: i32,
        selector: &str,
        ns: &str,
        pods: &[Pod],
        now: jiff::Timestamp,
    ) -> std::result::Result<Proposed, Invalid> {
        let (name, container, target, reason) = match spec.type_.as_str() {
            "Resource" => match &spec.resource {
                Some(r) => (r.name.clone(), None, &r.target, "FailedGetResourceMetric"),
                None => return Err(invalid_source(spec)),
            },
            "ContainerResource" => match &spec.container_resource {
                Some(r) => (
                    r.name.clone(),
                    Some(r.container.clone()),
                    &r.target,
                    "FailedGetContainerResourceMetric",
                ),
                None => return Err(invalid_source(spec)),
            },
            "Pods" => {
                let metric = spec
                    .pods
                    .as_ref()
                    .map(|p| p.metric.name.clone())
                    .unwrap_or_default();
                return Err(Invalid {
                    reason: "FailedGetPodsMetric",
                    message: format!("unable to get metric {metric}: no custom metrics API (custom.metrics.k8s.io) is served"),
                });
            }
            "Object" => {
                let metric = spec
                    .object
                    .as_ref()
                    .map(|p| p.metric.name.clone())
                    .unwrap_or_default();
                return Err(Invalid {
                    reason: "FailedGetObjectMetric",
                    message: format!("unable to get metric {metric}: no custom metrics API (custom.metrics.k8s.io) is served"),
                });
            }
            "External" => {
                let metric = spec
                    .external
                    .as_ref()
                    .map(|p| p.metric.name.clone())
                    .unwrap_or_default();
                return Err(Invalid {
                    reason: "FailedGetExternalMetric",
                    message: format!("unable to get external metric {ns}/{metric}: no external metrics API (external.metrics.k8s.io) is served"),
                });
            }
            _ => return Err(invalid_source(spec)),
        };
        let (calc_target, what) = match (target.average_utilization, &target.average_value) {
            (Some(u), _) => (Target::Utilization(i64::from(u)), "utilization"),
            (None, Some(v)) => match skiff_semantics::quantity::parse_milli_value(&v.0) {
                Some(m) => (Target::AverageValue(m), "usage"),
                None => return Err(invalid_source(spec)),
            },
            (None, None) => return Err(invalid_source(spec)),
        };
        let fail = |e: String| Invalid {
            reason,
            message: format!("failed to get {name} {what}: {e}"),
        };
        let samples = self
            .metrics
            .pod_metrics(ns, selector, &name, container.as_deref())
            .await
            .map_err(&fail)?;
        let p = replicas::resource_replicas(
            current,
            calc_target,
            &name,
            container.as_deref(),
            pods,
            samples,
            now,
        )
        .map_err(|e| fail(e.0))?;
        let value = MetricValueStatus {
            average_utilization: p.utilization.and_then(|u| i32::try_from(u).ok()),
            average_value: Some(Quantity(milli_quantity(p.raw_milli))),
            value: None,
        };
        let utilization = matches!(calc_target, Target::Utilization(_));
        let container_part = container.as_ref().map(|_| " container").unwrap_or_default();
        let metric_name = if utilization {
            format!("{name}{container_part} resource utilization (percentage of request)")
        } else {
            format!("{name}{container_part} resource")
        };
        let status = match container {
            None => MetricStatus {
                type_: "Resource".into(),
                resource: Some(ResourceMetricStatus {
                    name: name.clone(),
                    current: value,
                }),
                ..Default::default()
            },
            Some(c) => MetricStatus {
                type_: "ContainerResource".into(),
                container_resource: Some(ContainerResourceMetricStatus {
                    name: name.clone(),
                    container: c,
                    current: value,
                }),
                ..Default::default()
            },
        };
        Ok(Proposed {
            replicas: p.replicas,
            name: metric_name,
            status,
        })
    }

    async fn write_status(
        &self,
        hpa: &HorizontalPodAutoscaler,
        status: &HorizontalPodAutoscalerStatus,
    ) -> Result<()> {
        if hpa.status.as_ref() == Some(status) {
            return Ok(());
        }
        let api: Api<HorizontalPodAutoscaler> = Api::namespaced(
            self.ctx.client.clone(),
            &hpa.namespace().unwrap_or_default(),
        );
        let patch = Patch::Merge(json!({ "status": status }));
        match api
            .patch_status(&hpa.name_any(), &PatchParams::default(), &patch)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn invalid_source(spec: &MetricSpec) -> Invalid {
    Invalid {
        reason: "InvalidMetricSourceType",
        message: format!("invalid metric source type {:?} or target", spec.type_),
    }
}

/// The effective scale-up and scale-down rules.
fn rules(spec: &k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerSpec) -> (Rules, Rules) {
    let b = spec.behavior.as_ref();
    (
        Rules::resolve(b.and_then(|b| b.scale_up.as_ref()), true),
        Rules::resolve(b.and_then(|b| b.scale_down.as_ref()), false),
    )
}

/// A milli value as a canonical quantity (`250m`, `2`, `104857600`).
fn milli_quantity(m: i64) -> String {
    if m % 1000 == 0 {
        (m / 1000).to_string()
    } else {
        format!("{m}m")
    }
}

#[cfg(test)]
mod tests;
