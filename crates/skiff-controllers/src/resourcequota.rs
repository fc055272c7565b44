//! The ResourceQuota controller, like kube-controller-manager's resourcequota controller: every
//! quota gets `status.hard` = `spec.hard` and `status.used` = what the namespace's objects
//! charge for each hard resource (`skiff_semantics::quota`, the rules the API server's
//! ResourceQuota admission charges by): non-terminal pods (and their compute requests and
//! limits, within the quota's scopes), Services (node ports, load balancers),
//! PersistentVolumeClaims (storage, per StorageClass), ConfigMaps, Secrets, and any served kind
//! as `count/<resource>.<group>`. Changes to quotas and to those core kinds mark their namespace
//! for a recount (a burst is counted once); every `resource_quota_sync_period` all quotas are
//! recounted, which also catches the `count/*` kinds nothing watches. A status write that
//! loses a race (admission charged in between) is recounted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, ResourceQuota,
    ResourceQuotaStatus, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use kube::Resource;
use serde_json::Value;
use skiff_semantics::quota as q;
use tokio::sync::Notify;

use crate::{Context, Result};

/// Namespaces waiting for a recount, and whether everything is.
#[derive(Default)]
struct Dirty {
    namespaces: BTreeSet<String>,
    all: bool,
}

type Shared = Arc<(Mutex<Dirty>, Notify)>;

fn mark(shared: &Shared, ns: Option<String>) {
    if let Ok(mut d) = shared.0.lock() {
        match ns {
            Some(ns) => {
                d.namespaces.insert(ns);
            }
            None => d.all = true,
        }
    }
    shared.1.notify_one();
}

/// Marks the namespace of every changed `K` (a re-list marks everything). Only metadata is
/// watched: the namespace is all a mark needs, and full objects would cost every write's
/// body again here.
async fn watch_kind<K>(client: kube::Client, shared: Shared)
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let api: Api<PartialObjectMeta<K>> = Api::all(client);
    let mut events = watcher(api, watcher::Config::default()).boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::Delete(o)) => {
                mark(&shared, o.metadata.namespace.clone())
            }
            Ok(watcher::Event::InitDone) => mark(&shared, None),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!("resourcequota watch: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The `(group, plural)` a quota resource name counts.
fn kind_of(name: &str) -> Option<(String, String)> {
    if let Some(rest) = name.strip_prefix("count/") {
        return Some(match rest.split_once('.') {
            Some((plural, group)) => (group.to_string(), plural.to_string()),
            None => (String::new(), rest.to_string()),
        });
    }
    for plural in ["pods", "services", "persistentvolumeclaims"] {
        if q::charges("", plural, name) {
            return Some((String::new(), plural.to_string()));
        }
    }
    match name {
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => {
            Some((String::new(), name.to_string()))
        }
        _ => None,
    }
}

/// Lists a namespace's objects of any kind, finding a group's preferred version by discovery.
struct Lister {
    client: kube::Client,
    versions: HashMap<String, Option<String>>,
}

impl Lister {
    async fn version(&mut self, group: &str) -> Option<String> {
        if group.is_empty() {
            return Some("v1".into());
        }
        if !self.versions.contains_key(group) {
            match self.client.list_api_groups().await {
                Ok(list) => {
                    for g in list.groups {
                        let v = g
                            .preferred_version
                            .map(|p| p.version)
                            .or_else(|| g.versions.first().map(|v| v.version.clone()));
                        self.versions.insert(g.name, v);
                    }
                }
                Err(e) => tracing::debug!("resourcequota: discovery: {e}"),
            }
            // Unknown groups count nothing until the next full recount asks again.
            self.versions.entry(group.to_string()).or_insert(None);
        }
        self.versions.get(group).cloned().flatten()
    }

    async fn list(&mut self, group: &str, plural: &str, ns: &str) -> Result<Vec<Value>> {
        let Some(version) = self.version(group).await else {
            return Ok(Vec::new());
        };
        let api_version = if group.is_empty() {
            version.clone()
        } else {
            format!("{group}/{version}")
        };
        let ar = ApiResource {
            group: group.to_string(),
            version,
            api_version,
            kind: String::new(),
            plural: plural.to_string(),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
        match api.list(&ListParams::default()).await {
            Ok(list) => Ok(list
                .items
                .into_iter()
                .filter_map(|o| serde_json::to_value(o).ok())
                .collect()),
            // A kind that is not served counts zero.
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }
}

/// What `quota` should report as used, given the namespace's objects by kind.
pub fn compute_used(
    quota: &Value,
    objects: &BTreeMap<(String, String), Vec<Value>>,
    now: jiff::Timestamp,
) -> q::ResourceList {
    let hard = q::names(quota.pointer("/spec/hard"));
    let mut used = q::ResourceList::new();
    for ((group, plural), items) in objects {
        for obj in items {
            if q::quota_matches(quota, group, plural, obj) {
                used = q::add(&used, &q::usage(group, plural, obj, now));
            }
        }
    }
    let mut used = q::mask(&used, &hard);
    for name in hard {
        used.entry(name).or_insert(q::Amount::count(0));
    }
    used
}

/// Recounts one quota; Ok(false) when its status write lost a race.
async fn sync_quota(lister: &mut Lister, quota: &ResourceQuota) -> Result<bool> {
    let (Some(ns), Some(name)) = (
        quota.metadata.namespace.as_deref(),
        quota.metadata.name.as_deref(),
    ) else {
        return Ok(true);
    };
    let value = serde_json::to_value(quota).unwrap_or(Value::Null);
    let hard_names = q::names(value.pointer("/spec/hard"));
    let kinds: BTreeSet<(String, String)> = hard_names.iter().filter_map(|n| kind_of(n)).collect();
    let mut objects = BTreeMap::new();
    for (group, plural) in kinds {
        let items = lister.list(&group, &plural, ns).await?;
        objects.insert((group, plural), items);
    }
    let used = compute_used(&value, &objects, jiff::Timestamp::now());
    let to_map = |l: &q::ResourceList| -> BTreeMap<String, Quantity> {
        l.iter()
            .map(|(k, v)| (k.clone(), Quantity(v.text())))
            .collect()
    };
    let hard = quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let status = ResourceQuotaStatus {
        hard: Some(hard),
        used: Some(to_map(&used)),
    };
    let current = quota.status.clone().unwrap_or_default();
    let same = |a: &Option<BTreeMap<String, Quantity>>, b: &Option<BTreeMap<String, Quantity>>| {
        let norm = |m: &Option<BTreeMap<String, Quantity>>| {
            let list: q::ResourceList = m
                .iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.clone(), q::Amount::parse(&v.0)?)))
                .collect();
            list.into_iter()
                .map(|(k, v)| (k, v.q))
                .collect::<BTreeMap<_, _>>()
        };
        norm(a) == norm(b) && a.as_ref().map(BTreeMap::len) == b.as_ref().map(BTreeMap::len)
    };
    if same(&current.hard, &status.hard) && same(&current.used, &status.used) {
        return Ok(true);
    }
    let mut updated = quota.clone();
    updated.status = Some(status);
    let api: Api<ResourceQuota> = Api::namespaced(lister.client.clone(), ns);
    match api
        .replace_status(name, &PostParams::default(), &updated)
        .await
    {
        Ok(_) => {
            tracing::debug!(namespace = ns, quota = name, "quota usage updated");
            Ok(true)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(true),
        Err(e) => Err(e.into()),
    }
}

/// Recounts the quotas of `ns` (None: of every namespace); returns the namespaces to retry.
async fn sync(lister: &mut Lister, ns: Option<&str>) -> Result<BTreeSet<String>> {
    let api: Api<ResourceQuota> = match ns {
        Some(ns) => Api::namespaced(lister.client.clone(), ns),
        None => Api::all(lister.client.clone()),
    };
    let mut retry = BTreeSet::new();
    for quota in api.list(&ListParams::default()).await?.items {
        if !sync_quota(lister, &quota).await? {
            retry.extend(quota.metadata.namespace.clone());
        }
    }
    Ok(retry)
}

/// Runs until its watches end.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let client = ctx.client.clone();
    let shared: Shared = Arc::new((Mutex::new(Dirty::default()), Notify::new()));
    // Aborted with this task.
    let mut watches = tokio::task::JoinSet::new();
    watches.spawn(watch_kind::<ResourceQuota>(client.clone(), shared.clone()));
    watches.spawn(watch_kind::<Pod>(client.clone(), shared.clone()));
    watches.spawn(watch_kind::<Service>(client.clone(), shared.clone()));
    watches.spawn(watch_kind::<PersistentVolumeClaim>(
        client.clone(),
        shared.clone(),
    ));
    watches.spawn(watch_kind::<ConfigMap>(client.clone(), shared.clone()));
    watches.spawn(watch_kind::<Secret>(client.clone(), shared.clone()));
    watches.spawn(watch_kind::<ReplicationController>(
        client.clone(),
        shared.clone(),
    ));
    let period = ctx.options.resource_quota_sync_period;
    let mut tick = tokio::time::interval(period.unwrap_or(Duration::from_secs(3600)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lister = Lister {
        client,
        versions: HashMap::new(),
    };
    loop {
        tokio::select! {
            _ = shared.1.notified() => {}
            _ = tick.tick() => {
                if period.is_some() {
                    // Discovery may have changed (new CRDs): ask again.
                    lister.versions.clear();
                    mark(&shared, None);
                }
            }
            _ = watches.join_next() => return Err(crate::Error::WatchEnded("resourcequota")),
        }
        // Let a burst settle before counting.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let dirty = match shared.0.lock() {
            Ok(mut d) => std::mem::take(&mut *d),
            Err(_) => return Err(crate::Error::Other("resourcequota state poisoned".into())),
        };
        let result = if dirty.all {
            sync(&mut lister, None).await
        } else {
            let mut retry = BTreeSet::new();
            let mut failed = None;
            for ns in &dirty.namespaces {
                match sync(&mut lister, Some(ns)).await {
                    Ok(r) => retry.extend(r),
                    Err(e) => failed = Some(e),
                }
            }
            failed.map_or(Ok(retry), Err)
        };
        match result {
            Ok(retry) => {
                for ns in retry {
                    mark(&shared, Some(ns));
                }
            }
            Err(e) => {
                tracing::debug!("resourcequota sync: {e}");
                // Try everything again shortly.
                tokio::time::sleep(Duration::from_secs(1)).await;
                mark(&shared, None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn used_covers_every_hard_resource() {
        let quota = json!({"spec": {"hard": {"pods": "2", "requests.cpu": "1", "secrets": "5"}}});
        let pod = |cpu: &str, phase: &str| {
            json!({"spec": {"containers": [{"name": "c",
                "resources": {"requests": {"cpu": cpu}}}]}, "status": {"phase": phase}})
        };
        let mut objects = BTreeMap::new();
        objects.insert(
            (String::new(), "pods".to_string()),
            vec![
                pod("500m", "Running"),
                pod("250m", "Pending"),
                pod("1", "Succeeded"),
            ],
        );
        let used = compute_used(&quota, &objects, jiff::Timestamp::now());
        assert_eq!(used["pods"].text(), "2");
        assert_eq!(used["requests.cpu"].text(), "750m");
        assert_eq!(used["secrets"].text(), "0");
        assert_eq!(
            kind_of("count/deployments.apps"),
            Some(("apps".into(), "deployments".into()))
        );
        assert_eq!(
            kind_of("limits.memory"),
            Some((String::new(), "pods".into()))
        );
    }
}
