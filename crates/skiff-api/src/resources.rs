//! The resources skiff serves, with everything discovery needs.

/// One served resource (a kind at one group/version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    /// "" for core.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub list_kind: &'static str,
    /// e.g. "deployments".
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    /// e.g. ["status", "scale"] or ["status", "binding", "eviction", "log", "exec"].
    pub subresources: &'static [&'static str],
}

/// Verbs of an ordinary collection resource (upstream's default REST storage).
const FULL: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Namespaces have no `deletecollection` upstream.
const NS_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

const ALL: &[&str] = &["all"];

/// The served resources, core group first (kubectl resolves ambiguous short names like `ev` by
/// discovery order, and upstream lists the legacy group first).
static RESOURCES: &[ResourceInfo] = &[
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        list_kind: "ConfigMapList",
        plural: "configmaps",
        singular: "configmap",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        verbs: FULL,
        subresources: &[],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Endpoints",
        list_kind: "EndpointsList",
        plural: "endpoints",
        singular: "endpoints",
        namespaced: true,
        short_names: &["ep"],
        categories: &[],
        verbs: FULL,
        subresources: &[],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Event",
        list_kind: "EventList",
        plural: "events",
        singular: "event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        verbs: FULL,
        subresources: &[],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Namespace",
        list_kind: "NamespaceList",
        plural: "namespaces",
        singular: "namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        verbs: NS_VERBS,
        subresources: &["status"],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Node",
        list_kind: "NodeList",
        plural: "nodes",
        singular: "node",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        verbs: FULL,
        subresources: &["status"],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Pod",
        list_kind: "PodList",
        plural: "pods",
        singular: "pod",
        namespaced: true,
        short_names: &["po"],
        categories: ALL,
        verbs: FULL,
        subresources: &["status", "binding", "eviction", "log", "exec"],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Secret",
        list_kind: "SecretList",
        plural: "secrets",
        singular: "secret",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: FULL,
        subresources: &[],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        list_kind: "ServiceAccountList",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        namespaced: true,
        short_names: &["sa"],
        categories: &[],
        verbs: FULL,
        subresources: &[],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        kind: "Service",
        list_kind: "ServiceList",
        plural: "services",
        singular: "service",
        namespaced: true,
        short_names: &["svc"],
        categories: ALL,
        verbs: FULL,
        subresources: &["status"],
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "DaemonSet",
        list_kind: "DaemonSetList",
        plural: "daemonsets",
        singular: "daemonset",
        namespaced: true,
        short_names: &["ds"],
        categories: ALL,
        verbs: FULL,
        subresources: &["status"],
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        list_kind: "DeploymentList",
        plural: "deployments",
        singular: "deployment",
        namespaced: true,
        short_names: &["deploy"],
        categories: ALL,
        verbs: FULL,
        subresources: &["status", "scale"],
    },
    ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        list_kind: "ReplicaSetList",
        plural: "replicasets",
        singular: "replicaset",
        namespaced: true,
        short_names: &["rs"],
        categories: ALL,
        verbs: FULL,
        subresources: &["status", "scale"],
    },
    ResourceInfo {
        group: "events.k8s.io",
        version: "v1",
        kind: "Event",
        list_kind: "EventList",
        plural: "events",
        singular: "event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        verbs: FULL,
        subresources: &[],
    },
    // Upstream lists cronjobs before jobs (and `kubectl get all` prints them in that order).
    ResourceInfo {
        group: "batch",
        version: "v1",
        kind: "CronJob",
        list_kind: "CronJobList",
        plural: "cronjobs",
        singular: "cronjob",
        namespaced: true,
        short_names: &["cj"],
        categories: ALL,
        verbs: FULL,
        subresources: &["status"],
    },
    ResourceInfo {
        group: "batch",
        version: "v1",
        kind: "Job",
        list_kind: "JobList",
        plural: "jobs",
        singular: "job",
        namespaced: true,
        short_names: &[],
        categories: ALL,
        verbs: FULL,
        subresources: &["status"],
    },
    ResourceInfo {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        list_kind: "EndpointSliceList",
        plural: "endpointslices",
        singular: "endpointslice",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: FULL,
        subresources: &[],
    },
    ResourceInfo {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        list_kind: "LeaseList",
        plural: "leases",
        singular: "lease",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: FULL,
        subresources: &[],
    },
];

/// Every served resource.
pub fn all() -> &'static [ResourceInfo] {
    RESOURCES
}

/// Looks up by URL parts: group ("" for core), version, plural.
pub fn by_plural(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    all()
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Looks up by apiVersion ("v1", "apps/v1") and kind.
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    all()
        .iter()
        .find(|r| r.api_version() == api_version && r.kind == kind)
}

impl ResourceInfo {
    /// "v1" or "apps/v1".
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Upstream's `DefaultGarbageCollectionPolicy` is OrphanDependents for batch/v1 Jobs (kept
    /// for backward compatibility): a delete that names no propagation policy orphans the pods.
    /// kubectl always sends `propagationPolicy=Background`, so `kubectl delete job` still cascades.
    /// (CronJobs orphan only in batch/v1beta1; batch/v1 CronJobs delete their Jobs.)
    pub fn orphans_by_default(&self) -> bool {
        self.group == "batch" && self.version == "v1" && self.kind == "Job"
    }

    /// "pods" or "deployments.apps", as used in messages and Status details.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}
