//! Serving custom resources: the kinds CustomResourceDefinitions define, looked up at request
//! time after the built-in registry misses.
//!
//! - [`Registry`] (one per `AppState`) derives an [`Index`] of served kinds from the shared
//!   configuration cache (`cache::CRDS`) and rebuilds it on the next lookup after the cache
//!   changed: one [`ServedKind`] per served version of every Established CRD.
//! - `ResourceInfo` holds `&'static str`s (the built-in registry is static data), so custom
//!   kinds' infos are *interned*: each distinct string, string list and info is leaked once and
//!   reused when an equal one is needed again. Re-creating or re-reading the same CRD therefore
//!   allocates nothing new; memory grows only with the number of distinct names ever served.
//! - `strategy` holds the per-request steps (pruning, defaulting, validation, generation,
//!   Table, Scale, selectors, version conversion), `controller` the in-server controllers
//!   (names/Established/storedVersions status, and the cleanup of a deleted CRD's objects).

pub(crate) mod controller;
pub(crate) mod strategy;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, Once, RwLock};

use serde_json::Value;
use skiff_api::schema::columns::Column;
use skiff_api::schema::Schema;
use skiff_api::ResourceInfo;

use crate::cache::{self, Objects};
use crate::AppState;

/// The finalizer a deleting CRD carries until its objects are gone.
pub(crate) const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// Verbs of every custom resource (upstream's CR handler serves them all).
const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Where `/scale` reads and writes (`subresources.scale` of a version).
#[derive(Debug, Clone)]
pub(crate) struct ScalePaths {
    /// e.g. `.spec.replicas`.
    pub spec_replicas: String,
    pub status_replicas: String,
    /// e.g. `.status.selector` (a serialized label selector string), if any.
    pub label_selector: Option<String>,
}

/// How reads at another version than the stored one convert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Conversion {
    /// Only apiVersion changes.
    None,
    /// `spec.conversion.webhook` converts.
    Webhook,
}

/// One served version of a custom kind: everything a request needs.
pub(crate) struct ServedKind {
    pub info: &'static ResourceInfo,
    /// The CRD as cached.
    pub crd: Arc<Value>,
    pub crd_name: String,
    /// The version's structural schema (None when it has none or it did not parse).
    pub schema: Option<Schema>,
    /// List types and atomic maps from the schema, for server-side apply and managedFields.
    pub shape: skiff_api::apply::Shape,
    /// Printer columns (empty: the default Name/Age).
    pub columns: Vec<Column>,
    /// `selectableFields` as field-selector labels (`spec.color`).
    pub selectable: Vec<String>,
    pub storage_version: String,
    pub scale: Option<ScalePaths>,
    pub conversion: Conversion,
    /// The CRD is being deleted: no new objects.
    pub terminating: bool,
}

impl ServedKind {
    pub(crate) fn has_status(&self) -> bool {
        self.info.subresources.contains(&"status")
    }

    /// apiVersion of the storage version.
    pub(crate) fn storage_api_version(&self) -> String {
        format!("{}/{}", self.info.group, self.storage_version)
    }
}

/// The served custom kinds derived from one cache generation.
pub(crate) struct Index {
    generation: u64,
    /// In discovery order: group, then version priority, then plural.
    kinds: Vec<Arc<ServedKind>>,
    /// The openapi entries, built once per index.
    openapi: std::sync::OnceLock<Vec<skiff_api::openapi::CustomKind>>,
    /// Changes when the served kinds or their schemas do (a hash of the Established CRDs'
    /// specs and accepted names): the OpenAPI documents (`AppState::openapi`) are rebuilt only
    /// then, not on CRD status writes or other cache changes.
    openapi_generation: u64,
    /// Per CRD (store key): what it contributed, reused while its resourceVersion is unchanged
    /// so a rebuild parses only the schemas of CRDs that changed.
    entries: std::collections::HashMap<String, Arc<Entry>>,
}

/// One Established CRD's served kinds, as of one resourceVersion.
struct Entry {
    rv: String,
    kinds: Vec<Arc<ServedKind>>,
    /// Hash of `spec` and `status.acceptedNames`.
    fingerprint: u64,
}

impl Index {
    fn build(crds: &Objects, generation: u64, prev: Option<&Index>) -> Self {
        use std::hash::{Hash, Hasher};
        let mut kinds: Vec<Arc<ServedKind>> = Vec::new();
        let mut entries = std::collections::HashMap::new();
        let mut openapi = std::collections::hash_map::DefaultHasher::new();
        for (key, crd) in crds.iter() {
            if !condition_true(crd, "Established") {
                continue;
            }
            let rv = str_at(crd, "/metadata/resourceVersion").to_string();
            let entry = match prev.and_then(|p| p.entries.get(key)).filter(|e| e.rv == rv) {
                Some(e) => e.clone(),
                None => {
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    crd.get("spec").map(Value::to_string).hash(&mut h);
                    crd.pointer("/status/acceptedNames")
                        .map(Value::to_string)
                        .hash(&mut h);
                    Arc::new(Entry {
                        rv,
                        kinds: served_kinds(crd, true).into_iter().map(Arc::new).collect(),
                        fingerprint: h.finish(),
                    })
                }
            };
            // Objects iterate in key order, so the hash is stable for equal contents.
            key.hash(&mut openapi);
            entry.fingerprint.hash(&mut openapi);
            kinds.extend(entry.kinds.iter().cloned());
            entries.insert(key.clone(), entry);
        }
        kinds.sort_by(|a, b| {
            a.info
                .group
                .cmp(b.info.group)
                .then_with(|| version_priority(a.info.version, b.info.version))
                .then_with(|| a.info.plural.cmp(b.info.plural))
        });
        Index {
            generation,
            kinds,
            openapi: std::sync::OnceLock::new(),
            openapi_generation: openapi.finish(),
            entries,
        }
    }

    /// The kind at (group, version, plural).
    pub(crate) fn by_plural(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<Arc<ServedKind>> {
        self.kinds
            .iter()
            .find(|k| k.info.group == group && k.info.version == version && k.info.plural == plural)
            .cloned()
    }

    /// The infos of every served kind, in discovery order.
    pub(crate) fn infos(&self) -> Vec<&'static ResourceInfo> {
        self.kinds.iter().map(|k| k.info).collect()
    }

    /// The storage-version kind of each CRD (one per stored collection).
    pub(crate) fn storage_kinds(&self) -> Vec<Arc<ServedKind>> {
        self.kinds
            .iter()
            .filter(|k| k.info.version == k.storage_version)
            .cloned()
            .collect()
    }

    /// See [`Index::openapi_kinds`]: equal for equal served kinds and schemas.
    pub(crate) fn openapi_generation(&self) -> u64 {
        self.openapi_generation
    }

    /// Custom kinds as the OpenAPI builders take them.
    pub(crate) fn openapi_kinds(&self) -> &[skiff_api::openapi::CustomKind] {
        self.openapi.get_or_init(|| {
            self.kinds
                .iter()
                .map(|k| skiff_api::openapi::CustomKind {
                    info: k.info.clone(),
                    schema: k
                        .schema
                        .as_ref()
                        .map(|s| s.raw().clone())
                        .unwrap_or_else(|| serde_json::json!({})),
                })
                .collect()
        })
    }
}

/// The per-server registry of custom kinds; see the module doc.
pub(crate) struct Registry {
    index: RwLock<Arc<Index>>,
    changes: tokio::sync::watch::Receiver<u64>,
    started: Once,
    /// CRDs whose cleanup task is running.
    pub(crate) cleaning: Mutex<std::collections::HashSet<String>>,
}

impl Registry {
    pub(crate) fn new(cache: &cache::Cache) -> Self {
        Registry {
            index: RwLock::new(Arc::new(Index::build(&Objects::new(), u64::MAX, None))),
            changes: cache.subscribe(),
            started: Once::new(),
            cleaning: Mutex::new(Default::default()),
        }
    }

    /// The index for the cache as it is now (rebuilt when the cache changed since).
    pub(crate) fn current(&self, st: &AppState) -> Arc<Index> {
        let generation = *self.changes.borrow();
        let prev = {
            let idx = match self.index.read() {
                Ok(i) => i,
                Err(p) => p.into_inner(),
            };
            if idx.generation == generation {
                return idx.clone();
            }
            idx.clone()
        };
        let fresh = Arc::new(Index::build(
            &st.cache.snapshot(cache::CRDS),
            generation,
            Some(&prev),
        ));
        let mut idx = match self.index.write() {
            Ok(i) => i,
            Err(p) => p.into_inner(),
        };
        *idx = fresh.clone();
        fresh
    }

    /// The index once the cache has its first list.
    pub(crate) async fn ready(&self, st: &Arc<AppState>) -> Arc<Index> {
        self.ensure_started(st);
        st.cache.ready(st).await;
        self.current(st)
    }

    /// The served kind at (group, version, plural); on a miss, waits for the cache to catch up
    /// with writes made before this request (a CRD Established just now) and looks again.
    pub(crate) async fn lookup(
        &self,
        st: &Arc<AppState>,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<Arc<ServedKind>> {
        if let Some(k) = self.ready(st).await.by_plural(group, version, plural) {
            return Some(k);
        }
        st.cache.catch_up(st).await;
        self.current(st).by_plural(group, version, plural)
    }

    /// Starts the CRD controllers once (needs a Tokio runtime).
    pub(crate) fn ensure_started(&self, st: &Arc<AppState>) {
        self.started.call_once(|| {
            let st = st.clone();
            tokio::spawn(controller::run(st));
        });
    }
}

/// Whether `crd` has condition `ty` with status True.
pub(crate) fn condition_true(crd: &Value, ty: &str) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.get("type").and_then(Value::as_str) == Some(ty) && c["status"] == "True")
        })
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn str_list(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The served kinds of one CRD (every served version; all versions when `served_only` is
/// false). Names come from `status.acceptedNames` (what the naming controller accepted),
/// falling back to `spec.names`.
pub(crate) fn served_kinds(crd: &Arc<Value>, served_only: bool) -> Vec<ServedKind> {
    let group = str_at(crd, "/spec/group");
    let names = match crd.pointer("/status/acceptedNames") {
        Some(n)
            if n.get("plural")
                .and_then(Value::as_str)
                .is_some_and(|p| !p.is_empty()) =>
        {
            n
        }
        _ => match crd.pointer("/spec/names") {
            Some(n) => n,
            None => return Vec::new(),
        },
    };
    let plural = str_at(names, "/plural");
    let kind = str_at(names, "/kind");
    if group.is_empty() || plural.is_empty() || kind.is_empty() {
        return Vec::new();
    }
    let singular = match str_at(names, "/singular") {
        "" => kind.to_lowercase(),
        s => s.to_string(),
    };
    let list_kind = match str_at(names, "/listKind") {
        "" => format!("{kind}List"),
        s => s.to_string(),
    };
    let namespaced = str_at(crd, "/spec/scope") != "Cluster";
    let short_names = intern_list(&str_list(names.get("shortNames")));
    let categories = intern_list(&str_list(names.get("categories")));
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let storage_version = versions
        .iter()
        .find(|v| v["storage"] == true)
        .and_then(|v| v.get("name").and_then(Value::as_str))
        .unwrap_or("")
        .to_string();
    let conversion = match str_at(crd, "/spec/conversion/strategy") {
        "Webhook" => Conversion::Webhook,
        _ => Conversion::None,
    };
    let terminating = crd.pointer("/metadata/deletionTimestamp").is_some();
    let crd_name = str_at(crd, "/metadata/name").to_string();
    let mut out = Vec::new();
    for v in &versions {
        let name = v.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() || (served_only && v["served"] != true) {
            continue;
        }
        let status = v.pointer("/subresources/status").is_some();
        let scale = v.pointer("/subresources/scale").map(|s| ScalePaths {
            spec_replicas: str_at(s, "/specReplicasPath").to_string(),
            status_replicas: str_at(s, "/statusReplicasPath").to_string(),
            label_selector: s
                .get("labelSelectorPath")
                .and_then(Value::as_str)
                .map(str::to_string),
        });
        let mut subs = Vec::new();
        if status {
            subs.push("status");
        }
        if scale.is_some() {
            subs.push("scale");
        }
        let info = intern_info(ResourceInfo {
            group: intern(group),
            version: intern(name),
            kind: intern(kind),
            list_kind: intern(&list_kind),
            plural: intern(plural),
            singular: intern(&singular),
            namespaced,
            short_names,
            categories,
            verbs: VERBS,
            subresources: intern_list(&subs),
        });
        let schema = v
            .pointer("/schema/openAPIV3Schema")
            .and_then(|s| Schema::parse(s).ok());
        let shape = match v.pointer("/schema/openAPIV3Schema") {
            Some(s) if schema.is_some() => skiff_api::apply::Shape::from_schema(s),
            _ => skiff_api::apply::Shape::of(info),
        };
        let columns = skiff_api::schema::columns::parse(v.get("additionalPrinterColumns"));
        let selectable = v
            .get("selectableFields")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.get("jsonPath").and_then(Value::as_str))
                    .map(|p| p.trim_start_matches('.').to_string())
                    .collect()
            })
            .unwrap_or_default();
        out.push(ServedKind {
            info,
            crd: crd.clone(),
            crd_name: crd_name.clone(),
            schema,
            shape,
            columns,
            selectable,
            storage_version: storage_version.clone(),
            scale,
            conversion: conversion.clone(),
            terminating,
        });
    }
    out
}

/// Kubernetes version priority (`v1` > `v1beta2` > `v1beta1` > `v1alpha1`, then other
/// strings alphabetically): Ordering::Less = `a` comes first.
pub(crate) fn version_priority(a: &str, b: &str) -> std::cmp::Ordering {
    fn parse(v: &str) -> Option<(u64, u8, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let major: u64 = rest[..digits].parse().ok()?;
        let tail = &rest[digits..];
        if tail.is_empty() {
            return Some((major, 2, 0));
        }
        let (level, num) = if let Some(n) = tail.strip_prefix("beta") {
            (1, n)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (0, n)
        } else {
            return None;
        };
        if num.is_empty() || !num.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        Some((major, level, num.parse().ok()?))
    }
    match (parse(a), parse(b)) {
        // Higher stability first, then higher major, then higher minor.
        (Some((ma, la, na)), Some((mb, lb, nb))) => lb.cmp(&la).then(mb.cmp(&ma)).then(nb.cmp(&na)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

static STRINGS: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
static LISTS: Mutex<Vec<&'static [&'static str]>> = Mutex::new(Vec::new());
static INFOS: Mutex<Vec<&'static ResourceInfo>> = Mutex::new(Vec::new());

/// The one leaked copy of `s`.
fn intern(s: &str) -> &'static str {
    let mut set = match STRINGS.lock() {
        Ok(s) => s,
        Err(p) => p.into_inner(),
    };
    if let Some(found) = set.get(s) {
        return found;
    }
    let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
    set.insert(leaked);
    leaked
}

/// The one leaked copy of a list of (interned) strings.
fn intern_list(items: &[&str]) -> &'static [&'static str] {
    if items.is_empty() {
        return &[];
    }
    let interned: Vec<&'static str> = items.iter().map(|s| intern(s)).collect();
    let mut lists = match LISTS.lock() {
        Ok(l) => l,
        Err(p) => p.into_inner(),
    };
    if let Some(found) = lists.iter().find(|l| **l == interned.as_slice()) {
        return found;
    }
    let leaked: &'static [&'static str] = Box::leak(interned.into_boxed_slice());
    lists.push(leaked);
    leaked
}

/// The one leaked copy of `info`.
fn intern_info(info: ResourceInfo) -> &'static ResourceInfo {
    let mut infos = match INFOS.lock() {
        Ok(i) => i,
        Err(p) => p.into_inner(),
    };
    if let Some(found) = infos.iter().find(|i| ***i == info) {
        return found;
    }
    let leaked: &'static ResourceInfo = Box::leak(Box::new(info));
    infos.push(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn versions_sort_by_kubernetes_priority() {
        let mut vs = vec![
            "v1alpha1",
            "foo",
            "v2",
            "v1beta1",
            "v1",
            "v11alpha2",
            "v1beta2",
            "bar",
            "v3beta1",
        ];
        vs.sort_by(|a, b| version_priority(a, b));
        assert_eq!(
            vs,
            [
                "v2",
                "v1",
                "v3beta1",
                "v1beta2",
                "v1beta1",
                "v11alpha2",
                "v1alpha1",
                "bar",
                "foo"
            ]
        );
    }

    #[test]
    fn rebuilds_reuse_unchanged_crds_and_keep_the_openapi_generation() {
        let crd = |rv: &str, reason: &str| {
            Arc::new(json!({
                "metadata": {"name": "widgets.example.com", "resourceVersion": rv},
                "spec": {"group": "example.com", "scope": "Namespaced",
                    "names": {"plural": "widgets", "kind": "Widget"},
                    "versions": [{"name": "v1", "served": true, "storage": true}]},
                "status": {"conditions": [{"type": "Established", "status": "True",
                    "reason": reason}]}
            }))
        };
        let key = "/registry/apiextensions.k8s.io/customresourcedefinitions/widgets.example.com";
        let mut objs = Objects::new();
        objs.insert(key.into(), crd("5", "a"));
        let first = Index::build(&objs, 1, None);
        let again = Index::build(&objs, 2, Some(&first));
        assert!(Arc::ptr_eq(&first.kinds[0], &again.kinds[0]));
        assert_eq!(first.openapi_generation, again.openapi_generation);
        // A status-only change: rebuilt, but the documents stay.
        objs.insert(key.into(), crd("6", "b"));
        let status = Index::build(&objs, 3, Some(&again));
        assert!(!Arc::ptr_eq(&again.kinds[0], &status.kinds[0]));
        assert_eq!(again.openapi_generation, status.openapi_generation);
        let empty = Index::build(&Objects::new(), 4, Some(&status));
        assert_ne!(empty.openapi_generation, status.openapi_generation);
    }

    #[test]
    fn interning_reuses_equal_infos() {
        let crd = Arc::new(json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "subresources": {"status": {}}}]}
        }));
        let a = served_kinds(&crd, true);
        let b = served_kinds(&crd.clone(), true);
        assert_eq!(a.len(), 1);
        assert!(std::ptr::eq(a[0].info, b[0].info));
        assert_eq!(a[0].info.singular, "widget");
        assert_eq!(a[0].info.list_kind, "WidgetList");
        assert_eq!(a[0].info.subresources, ["status"]);
        assert_eq!(a[0].info.short_names, ["wd"]);
    }
}
