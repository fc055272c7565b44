//! The bootstrap policy (upstream's `bootstrappolicy`: default ClusterRoles, ClusterRoleBindings
//! and the kube-system Roles/RoleBindings), reconciled at every server start as upstream's
//! `rbac/bootstrap-roles` post-start hook does: missing objects are created; existing ones gain
//! missing rules, aggregation selectors, labels, annotations and subjects, unless annotated
//! `rbac.authorization.kubernetes.io/autoupdate: "false"`; a binding whose roleRef changed is
//! recreated. Extra permissions are never removed.
//!
//! skiff runs every in-process controller under one identity, `system:kube-controller-manager`
//! (upstream gives each controller its own ServiceAccount). That user is bound to
//! `skiff:kube-controller-manager`, a ClusterRole holding the union of the
//! `system:controller:*` roles of the controllers skiff runs; the per-controller roles exist
//! too, for compatibility with manifests that reference them.

use serde_json::{json, Map, Value};
use skiff_api::selector::LabelSelector;
use skiff_store::StoreError;

use super::rule::{covers, Rule};
use crate::auth::user::{groups, users};
use crate::keys::{decode, encode};
use crate::AppState;

pub const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";
const BOOTSTRAPPING: &str = "kubernetes.io/bootstrapping";
const AGGREGATE_TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
const AGGREGATE_TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
const AGGREGATE_TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];
const READ_WRITE: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];

const CORE: &str = "";
const APPS: &str = "apps";
const AUTHN: &str = "authentication.k8s.io";
const AUTHZ: &str = "authorization.k8s.io";
const AUTOSCALING: &str = "autoscaling";
const BATCH: &str = "batch";
const CERTS: &str = "certificates.k8s.io";
const COORDINATION: &str = "coordination.k8s.io";
const DISCOVERY: &str = "discovery.k8s.io";
const EVENTS: &str = "events.k8s.io";
const EXTENSIONS: &str = "extensions";
const NETWORKING: &str = "networking.k8s.io";
const POLICY: &str = "policy";
const RBAC: &str = "rbac.authorization.k8s.io";
const STORAGE: &str = "storage.k8s.io";

fn v(x: &[&str]) -> Vec<String> {
    x.iter().map(|s| s.to_string()).collect()
}

/// A resource rule.
fn r(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Rule {
    Rule {
        verbs: v(verbs),
        api_groups: v(groups),
        resources: v(resources),
        ..Default::default()
    }
}

/// A resource rule limited to names.
fn rn(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> Rule {
    Rule {
        resource_names: v(names),
        ..r(verbs, groups, resources)
    }
}

/// A non-resource rule.
fn urls(verbs: &[&str], paths: &[&str]) -> Rule {
    Rule {
        verbs: v(verbs),
        non_resource_urls: v(paths),
        ..Default::default()
    }
}

/// Upstream's `eventsRule()`.
fn events() -> Rule {
    r(&["create", "update", "patch"], &[CORE, EVENTS], &["events"])
}

/// A ClusterRole of the bootstrap policy.
pub struct RoleSpec {
    pub name: &'static str,
    pub rules: Vec<Rule>,
    pub labels: Vec<(&'static str, &'static str)>,
    /// `aggregationRule.clusterRoleSelectors[].matchLabels` (one label each).
    pub aggregate_from: Vec<(&'static str, &'static str)>,
}

fn role(name: &'static str, rules: Vec<Rule>) -> RoleSpec {
    RoleSpec {
        name,
        rules,
        labels: Vec::new(),
        aggregate_from: Vec::new(),
    }
}

fn labelled(name: &'static str, label: &'static str, rules: Vec<Rule>) -> RoleSpec {
    RoleSpec {
        labels: vec![(label, "true")],
        ..role(name, rules)
    }
}

/// A binding's subject: ("User" | "Group" | "ServiceAccount", name, namespace).
type SubjectSpec = (&'static str, &'static str, &'static str);

pub struct BindingSpec {
    pub name: &'static str,
    /// For RoleBindings.
    pub namespace: &'static str,
    /// ("ClusterRole" | "Role", name).
    pub role: (&'static str, &'static str),
    pub subjects: Vec<SubjectSpec>,
}

fn crb(name: &'static str, subjects: Vec<SubjectSpec>) -> BindingSpec {
    BindingSpec {
        name,
        namespace: "",
        role: ("ClusterRole", name),
        subjects,
    }
}

fn user(name: &'static str) -> SubjectSpec {
    ("User", name, "")
}

fn group(name: &'static str) -> SubjectSpec {
    ("Group", name, "")
}

fn sa(ns: &'static str, name: &'static str) -> SubjectSpec {
    ("ServiceAccount", name, ns)
}

/// The default ClusterRoles (upstream's `ClusterRoles()`, without the roles of components
/// skiff does not have, such as kube-dns or the legacy persistent-volume provisioner).
pub fn cluster_roles() -> Vec<RoleSpec> {
    let mut roles = vec![
        role(
            "cluster-admin",
            vec![r(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])],
        ),
        role(
            "system:discovery",
            vec![urls(
                &["get"],
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            )],
        ),
        role(
            "system:monitoring",
            vec![urls(
                &["get"],
                &[
                    "/healthz",
                    "/healthz/*",
                    "/livez",
                    "/livez/*",
                    "/metrics",
                    "/metrics/slis",
                    "/readyz",
                    "/readyz/*",
                ],
            )],
        ),
        role(
            "system:basic-user",
            vec![
                r(
                    &["create"],
                    &[AUTHZ],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
                r(&["create"], &[AUTHN], &["selfsubjectreviews"]),
            ],
        ),
        role(
            "system:public-info-viewer",
            vec![urls(
                &["get"],
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
            )],
        ),
        RoleSpec {
            aggregate_from: vec![(AGGREGATE_TO_ADMIN, "true")],
            ..role("admin", Vec::new())
        },
        RoleSpec {
            labels: vec![(AGGREGATE_TO_ADMIN, "true")],
            aggregate_from: vec![(AGGREGATE_TO_EDIT, "true")],
            ..role("edit", Vec::new())
        },
        RoleSpec {
            labels: vec![(AGGREGATE_TO_EDIT, "true")],
            aggregate_from: vec![(AGGREGATE_TO_VIEW, "true")],
            ..role("view", Vec::new())
        },
        labelled(
            "system:aggregate-to-admin",
            AGGREGATE_TO_ADMIN,
            vec![
                r(&["create"], &[AUTHZ], &["localsubjectaccessreviews"]),
                r(READ_WRITE, &[RBAC], &["roles", "rolebindings"]),
            ],
        ),
        labelled(
            "system:aggregate-to-edit",
            AGGREGATE_TO_EDIT,
            vec![
                // Read of resources that can escalate.
                r(
                    READ,
                    &[CORE],
                    &[
                        "pods/attach",
                        "pods/proxy",
                        "pods/exec",
                        "pods/portforward",
                        "secrets",
                        "services/proxy",
                    ],
                ),
                r(&["impersonate"], &[CORE], &["serviceaccounts"]),
                r(
                    WRITE,
                    &[CORE],
                    &[
                        "pods",
                        "pods/attach",
                        "pods/proxy",
                        "pods/exec",
                        "pods/portforward",
                    ],
                ),
                r(&["create"], &[CORE], &["pods/eviction"]),
                r(
                    WRITE,
                    &[CORE],
                    &[
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "serviceaccounts",
                        "services",
                        "services/proxy",
                        "persistentvolumeclaims",
                        "configmaps",
                        "secrets",
                        "events",
                    ],
                ),
                r(&["create"], &[CORE], &["serviceaccounts/token"]),
                r(
                    WRITE,
                    &[APPS],
                    &[
                        "statefulsets",
                        "statefulsets/scale",
                        "daemonsets",
                        "deployments",
                        "deployments/scale",
                        "deployments/rollback",
                        "replicasets",
                        "replicasets/scale",
                    ],
                ),
                r(WRITE, &[AUTOSCALING], &["horizontalpodautoscalers"]),
                r(WRITE, &[BATCH], &["jobs", "cronjobs"]),
                r(
                    WRITE,
                    &[EXTENSIONS],
                    &[
                        "daemonsets",
                        "deployments",
                        "deployments/scale",
                        "deployments/rollback",
                        "ingresses",
                        "replicasets",
                        "replicasets/scale",
                        "replicationcontrollers/scale",
                        "networkpolicies",
                    ],
                ),
                r(WRITE, &[POLICY], &["poddisruptionbudgets"]),
                r(WRITE, &[NETWORKING], &["networkpolicies", "ingresses"]),
            ],
        ),
        // What a metrics-server install adds (skiff serves metrics.k8s.io itself): viewers,
        // editors and admins may read resource metrics (`kubectl top`).
        RoleSpec {
            labels: vec![
                (AGGREGATE_TO_VIEW, "true"),
                (AGGREGATE_TO_EDIT, "true"),
                (AGGREGATE_TO_ADMIN, "true"),
            ],
            ..role(
                "system:aggregated-metrics-reader",
                vec![r(READ, &["metrics.k8s.io"], &["pods", "nodes"])],
            )
        },
        labelled(
            "system:aggregate-to-view",
            AGGREGATE_TO_VIEW,
            vec![
                r(
                    READ,
                    &[CORE],
                    &[
                        "pods",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "serviceaccounts",
                        "services",
                        "services/status",
                        "endpoints",
                        "persistentvolumeclaims",
                        "persistentvolumeclaims/status",
                        "configmaps",
                    ],
                ),
                r(
                    READ,
                    &[CORE],
                    &[
                        "limitranges",
                        "resourcequotas",
                        "bindings",
                        "events",
                        "pods/status",
                        "resourcequotas/status",
                        "namespaces/status",
                        "replicationcontrollers/status",
                        "pods/log",
                    ],
                ),
                // Read of namespaces at namespace scope: this namespace.
                r(READ, &[CORE], &["namespaces"]),
                r(READ, &[DISCOVERY], &["endpointslices"]),
                r(
                    READ,
                    &[APPS],
                    &[
                        "controllerrevisions",
                        "statefulsets",
                        "statefulsets/status",
                        "statefulsets/scale",
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/status",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/status",
                        "replicasets/scale",
                    ],
                ),
                r(
                    READ,
                    &[AUTOSCALING],
                    &[
                        "horizontalpodautoscalers",
                        "horizontalpodautoscalers/status",
                    ],
                ),
                r(
                    READ,
                    &[BATCH],
                    &["jobs", "cronjobs", "cronjobs/status", "jobs/status"],
                ),
                r(
                    READ,
                    &[EXTENSIONS],
                    &[
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/scale",
                        "deployments/status",
                        "ingresses",
                        "ingresses/status",
                        "replicasets",
                        "replicasets/scale",
                        "replicasets/status",
                        "replicationcontrollers/scale",
                        "networkpolicies",
                    ],
                ),
                r(
                    READ,
                    &[POLICY],
                    &["poddisruptionbudgets", "poddisruptionbudgets/status"],
                ),
                r(
                    READ,
                    &[NETWORKING],
                    &["networkpolicies", "ingresses", "ingresses/status"],
                ),
            ],
        ),
        role(
            "system:node",
            vec![
                r(&["create"], &[AUTHN], &["tokenreviews"]),
                r(
                    &["create"],
                    &[AUTHZ],
                    &["subjectaccessreviews", "localsubjectaccessreviews"],
                ),
                r(READ, &[CORE], &["services"]),
                r(&["create", "get", "list", "watch"], &[CORE], &["nodes"]),
                r(&["update", "patch"], &[CORE], &["nodes/status"]),
                r(&["update", "patch"], &[CORE], &["nodes"]),
                r(&["create", "update", "patch"], &[CORE], &["events"]),
                r(READ, &[CORE], &["pods"]),
                r(&["create", "delete"], &[CORE], &["pods"]),
                r(&["update", "patch"], &[CORE], &["pods/status"]),
                r(&["create"], &[CORE], &["pods/eviction"]),
                r(READ, &[CORE], &["secrets", "configmaps"]),
                r(
                    &["get"],
                    &[CORE],
                    &["persistentvolumeclaims", "persistentvolumes"],
                ),
                r(&["get"], &[CORE], &["endpoints"]),
                r(
                    &["create", "get", "list", "watch"],
                    &[CERTS],
                    &["certificatesigningrequests"],
                ),
                r(
                    &["get", "create", "update", "patch", "delete"],
                    &[COORDINATION],
                    &["leases"],
                ),
                r(&["get"], &[STORAGE], &["volumeattachments"]),
                r(&["create"], &[CORE], &["serviceaccounts/token"]),
                r(
                    &["get", "update", "patch"],
                    &[CORE],
                    &["persistentvolumeclaims/status"],
                ),
                r(&["get"], &[STORAGE], &["csidrivers"]),
                r(
                    &["get", "create", "update", "patch", "delete"],
                    &[STORAGE],
                    &["csinodes"],
                ),
                r(READ, &["node.k8s.io"], &["runtimeclasses"]),
            ],
        ),
        role(
            "system:node-proxier",
            vec![
                r(&["list", "watch"], &[CORE], &["services", "endpoints"]),
                r(&["get", "list", "watch"], &[CORE], &["nodes"]),
                events(),
                r(&["list", "watch"], &[DISCOVERY], &["endpointslices"]),
            ],
        ),
        role(
            "system:auth-delegator",
            vec![
                r(&["create"], &[AUTHN], &["tokenreviews"]),
                r(&["create"], &[AUTHZ], &["subjectaccessreviews"]),
            ],
        ),
        role(
            "system:kube-aggregator",
            vec![r(READ, &[CORE], &["services", "endpoints"])],
        ),
        role(
            "system:kube-controller-manager",
            vec![
                events(),
                r(&["create"], &[COORDINATION], &["leases"]),
                rn(
                    &["get", "update"],
                    &[COORDINATION],
                    &["leases"],
                    &["kube-controller-manager"],
                ),
                r(&["create"], &[CORE], &["secrets", "serviceaccounts"]),
                r(&["delete"], &[CORE], &["secrets"]),
                r(
                    &["get"],
                    &[CORE],
                    &["configmaps", "namespaces", "secrets", "serviceaccounts"],
                ),
                r(&["update"], &[CORE], &["secrets", "serviceaccounts"]),
                r(&["create"], &[AUTHN], &["tokenreviews"]),
                r(&["create"], &[AUTHZ], &["subjectaccessreviews"]),
                r(&["list", "watch"], &["*"], &["*"]),
                r(&["create"], &[CORE], &["serviceaccounts/token"]),
            ],
        ),
        role(
            "system:kube-scheduler",
            vec![
                events(),
                r(&["create"], &[COORDINATION], &["leases"]),
                rn(
                    &["get", "update"],
                    &[COORDINATION],
                    &["leases"],
                    &["kube-scheduler"],
                ),
                r(READ, &[CORE], &["nodes"]),
                r(&["get", "list", "watch", "delete"], &[CORE], &["pods"]),
                r(&["create"], &[CORE], &["pods/binding", "bindings"]),
                r(&["patch", "update"], &[CORE], &["pods/status"]),
                r(READ, &[CORE], &["services", "replicationcontrollers"]),
                r(READ, &[APPS, EXTENSIONS], &["replicasets"]),
                r(READ, &[APPS], &["statefulsets"]),
                r(READ, &[POLICY], &["poddisruptionbudgets"]),
                r(
                    READ,
                    &[CORE],
                    &["persistentvolumeclaims", "persistentvolumes"],
                ),
                r(&["create"], &[AUTHN], &["tokenreviews"]),
                r(&["create"], &[AUTHZ], &["subjectaccessreviews"]),
                r(READ, &[STORAGE], &["csinodes"]),
                r(READ, &[CORE], &["namespaces"]),
                r(READ, &[STORAGE], &["csidrivers"]),
                r(READ, &[STORAGE], &["csistoragecapacities"]),
            ],
        ),
        role(
            "system:volume-scheduler",
            vec![
                r(
                    &["get", "list", "watch", "update", "patch"],
                    &[CORE],
                    &["persistentvolumes"],
                ),
                r(READ, &[STORAGE], &["storageclasses"]),
                r(
                    &["get", "list", "watch", "update", "patch"],
                    &[CORE],
                    &["persistentvolumeclaims"],
                ),
            ],
        ),
        role(
            "system:node-bootstrapper",
            vec![r(
                &["create", "get", "list", "watch"],
                &[CERTS],
                &["certificatesigningrequests"],
            )],
        ),
        role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![r(
                &["create"],
                &[CERTS],
                &["certificatesigningrequests/nodeclient"],
            )],
        ),
        role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![r(
                &["create"],
                &[CERTS],
                &["certificatesigningrequests/selfnodeclient"],
            )],
        ),
        role(
            "system:certificates.k8s.io:kube-apiserver-client-approver",
            vec![rn(
                &["approve"],
                &[CERTS],
                &["signers"],
                &["kubernetes.io/kube-apiserver-client"],
            )],
        ),
        role(
            "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
            vec![rn(
                &["approve"],
                &[CERTS],
                &["signers"],
                &["kubernetes.io/kube-apiserver-client-kubelet"],
            )],
        ),
        role(
            "system:certificates.k8s.io:kubelet-serving-approver",
            vec![rn(
                &["approve"],
                &[CERTS],
                &["signers"],
                &["kubernetes.io/kubelet-serving"],
            )],
        ),
        role(
            "system:certificates.k8s.io:legacy-unknown-approver",
            vec![rn(
                &["approve"],
                &[CERTS],
                &["signers"],
                &["kubernetes.io/legacy-unknown"],
            )],
        ),
        role(
            "system:service-account-issuer-discovery",
            vec![urls(
                &["get"],
                &[
                    "/.well-known/openid-configuration",
                    "/.well-known/openid-configuration/",
                    "/openid/v1/jwks",
                    "/openid/v1/jwks/",
                ],
            )],
        ),
    ];
    let controllers = controller_roles();
    let mut union: Vec<Rule> = Vec::new();
    for c in &controllers {
        for rule in &c.rules {
            if !union.contains(rule) {
                union.push(rule.clone());
            }
        }
    }
    roles.extend(controllers);
    roles.push(role(SKIFF_CONTROLLER_MANAGER, union));
    roles
}

/// The role that holds every permission of skiff's in-process controllers.
pub const SKIFF_CONTROLLER_MANAGER: &str = "skiff:kube-controller-manager";

/// Upstream's `system:controller:*` roles of the controllers skiff runs.
pub fn controller_roles() -> Vec<RoleSpec> {
    vec![
        role(
            "system:controller:clusterrole-aggregation-controller",
            vec![r(
                &["escalate", "get", "list", "watch", "update", "patch"],
                &[RBAC],
                &["clusterroles"],
            )],
        ),
        role(
            "system:controller:cronjob-controller",
            vec![
                r(&["get", "list", "watch", "update"], &[BATCH], &["cronjobs"]),
                r(
                    &[
                        "get", "list", "watch", "create", "update", "delete", "patch",
                    ],
                    &[BATCH],
                    &["jobs"],
                ),
                r(&["update"], &[BATCH], &["cronjobs/status"]),
                r(&["update"], &[BATCH], &["cronjobs/finalizers"]),
                r(&["list", "delete"], &[CORE], &["pods"]),
                events(),
            ],
        ),
        role(
            "system:controller:daemon-set-controller",
            vec![
                r(READ, &[EXTENSIONS, APPS], &["daemonsets"]),
                r(&["update"], &[EXTENSIONS, APPS], &["daemonsets/status"]),
                r(&["update"], &[EXTENSIONS, APPS], &["daemonsets/finalizers"]),
                r(&["list", "watch"], &[CORE], &["nodes"]),
                r(
                    &["list", "watch", "create", "delete", "patch"],
                    &[CORE],
                    &["pods"],
                ),
                r(&["create"], &[CORE], &["pods/binding"]),
                r(
                    &[
                        "get", "list", "watch", "create", "delete", "update", "patch",
                    ],
                    &[APPS],
                    &["controllerrevisions"],
                ),
                events(),
            ],
        ),
        role(
            "system:controller:deployment-controller",
            vec![
                r(
                    &["get", "list", "watch", "update"],
                    &[EXTENSIONS, APPS],
                    &["deployments"],
                ),
                r(&["update"], &[EXTENSIONS, APPS], &["deployments/status"]),
                r(
                    &["update"],
                    &[EXTENSIONS, APPS],
                    &["deployments/finalizers"],
                ),
                r(
                    &[
                        "get", "list", "watch", "create", "update", "patch", "delete",
                    ],
                    &[APPS, EXTENSIONS],
                    &["replicasets"],
                ),
                r(&["get", "list", "watch", "update"], &[CORE], &["pods"]),
                events(),
            ],
        ),
        role(
            "system:controller:disruption-controller",
            vec![
                r(READ, &[EXTENSIONS, APPS], &["deployments"]),
                r(READ, &[APPS, EXTENSIONS], &["replicasets"]),
                r(READ, &[CORE], &["replicationcontrollers"]),
                r(READ, &[POLICY], &["poddisruptionbudgets"]),
                r(READ, &[APPS], &["statefulsets"]),
                r(&["update"], &[POLICY], &["poddisruptionbudgets/status"]),
                r(&["get"], &["*"], &["*/scale"]),
                events(),
            ],
        ),
        role(
            "system:controller:endpoint-controller",
            vec![
                r(READ, &[CORE], &["services", "pods"]),
                r(
                    &["get", "list", "create", "update", "delete"],
                    &[CORE],
                    &["endpoints"],
                ),
                r(&["create"], &[CORE], &["endpoints/restricted"]),
                events(),
            ],
        ),
        role(
            "system:controller:endpointslice-controller",
            vec![
                r(READ, &[CORE], &["services", "pods", "nodes"]),
                r(&["update"], &[CORE], &["services/finalizers"]),
                r(
                    &["get", "list", "create", "update", "delete"],
                    &[DISCOVERY],
                    &["endpointslices"],
                ),
                events(),
            ],
        ),
        role(
            "system:controller:generic-garbage-collector",
            vec![
                r(
                    &["get", "list", "watch", "patch", "update", "delete"],
                    &["*"],
                    &["*"],
                ),
                events(),
            ],
        ),
        role(
            "system:controller:horizontal-pod-autoscaler",
            vec![
                r(
                    &["get", "list", "watch"],
                    &[AUTOSCALING],
                    &["horizontalpodautoscalers"],
                ),
                r(
                    &["update"],
                    &[AUTOSCALING],
                    &["horizontalpodautoscalers/status"],
                ),
                r(&["get", "update"], &["*"], &["*/scale"]),
                r(&["list"], &[CORE], &["pods"]),
                // Resource metrics, and the custom and external metrics APIs if registered.
                r(&["list"], &["metrics.k8s.io"], &["pods"]),
                r(&["get", "list"], &["custom.metrics.k8s.io"], &["*"]),
                r(&["get", "list"], &["external.metrics.k8s.io"], &["*"]),
                events(),
            ],
        ),
        role(
            "system:controller:job-controller",
            vec![
                r(
                    &["get", "list", "watch", "update", "patch"],
                    &[BATCH],
                    &["jobs"],
                ),
                r(&["update"], &[BATCH], &["jobs/status"]),
                r(&["update"], &[BATCH], &["jobs/finalizers"]),
                r(
                    &["list", "watch", "create", "delete", "patch"],
                    &[CORE],
                    &["pods"],
                ),
                events(),
            ],
        ),
        role(
            "system:controller:namespace-controller",
            vec![
                r(
                    &["get", "list", "watch", "delete"],
                    &[CORE],
                    &["namespaces"],
                ),
                r(
                    &["update"],
                    &[CORE],
                    &["namespaces/finalize", "namespaces/status"],
                ),
                r(
                    &["get", "list", "delete", "deletecollection"],
                    &["*"],
                    &["*"],
                ),
            ],
        ),
        role(
            "system:controller:node-controller",
            vec![
                r(
                    &["get", "list", "update", "delete", "patch"],
                    &[CORE],
                    &["nodes"],
                ),
                r(&["patch", "update"], &[CORE], &["nodes/status"]),
                r(&["patch", "update"], &[CORE], &["pods/status"]),
                r(&["list", "delete"], &[CORE], &["pods"]),
                events(),
            ],
        ),
        // Upstream's rules plus `patch` (skiff's binder writes with merge patches) and
        // `watch` on nodes/pods (it is level-triggered on them).
        role(
            "system:controller:persistent-volume-binder",
            vec![
                r(
                    &[
                        "get", "list", "watch", "update", "patch", "create", "delete",
                    ],
                    &[CORE],
                    &["persistentvolumes"],
                ),
                r(&["update", "patch"], &[CORE], &["persistentvolumes/status"]),
                r(
                    &["get", "list", "watch", "update", "patch"],
                    &[CORE],
                    &["persistentvolumeclaims"],
                ),
                r(
                    &["update", "patch"],
                    &[CORE],
                    &["persistentvolumeclaims/status"],
                ),
                r(READ, &[CORE], &["pods"]),
                r(READ, &[STORAGE], &["storageclasses"]),
                r(READ, &[CORE], &["nodes"]),
                events(),
            ],
        ),
        role(
            "system:controller:pod-garbage-collector",
            vec![
                r(&["list", "watch", "delete"], &[CORE], &["pods"]),
                r(&["get", "list"], &[CORE], &["nodes"]),
                r(&["patch"], &[CORE], &["pods/status"]),
            ],
        ),
        role(
            "system:controller:pv-protection-controller",
            vec![
                r(
                    &["get", "list", "watch", "update", "patch"],
                    &[CORE],
                    &["persistentvolumes"],
                ),
                events(),
            ],
        ),
        role(
            "system:controller:pvc-protection-controller",
            vec![
                r(
                    &["get", "list", "watch", "update", "patch"],
                    &[CORE],
                    &["persistentvolumeclaims"],
                ),
                r(READ, &[CORE], &["pods"]),
                events(),
            ],
        ),
        role(
            "system:controller:replicaset-controller",
            vec![
                r(
                    &["get", "list", "watch", "update"],
                    &[APPS, EXTENSIONS],
                    &["replicasets"],
                ),
                r(&["update"], &[APPS, EXTENSIONS], &["replicasets/status"]),
                r(
                    &["update"],
                    &[APPS, EXTENSIONS],
                    &["replicasets/finalizers"],
                ),
                r(
                    &["list", "watch", "patch", "create", "delete"],
                    &[CORE],
                    &["pods"],
                ),
                events(),
            ],
        ),
        role(
            "system:controller:replication-controller",
            vec![
                r(
                    &["get", "list", "watch", "update"],
                    &[CORE],
                    &["replicationcontrollers"],
                ),
                r(&["update"], &[CORE], &["replicationcontrollers/status"]),
                r(&["update"], &[CORE], &["replicationcontrollers/finalizers"]),
                r(
                    &["list", "watch", "patch", "create", "delete"],
                    &[CORE],
                    &["pods"],
                ),
                events(),
            ],
        ),
        role(
            "system:controller:resourcequota-controller",
            vec![
                // It counts any kind (`count/*`), so it may list and watch everything.
                r(&["list", "watch"], &["*"], &["*"]),
                r(&["update"], &[CORE], &["resourcequotas/status"]),
                events(),
            ],
        ),
        role(
            "system:controller:root-ca-cert-publisher",
            vec![r(&["create", "update"], &[CORE], &["configmaps"]), events()],
        ),
        role(
            "system:controller:service-account-controller",
            vec![r(&["create"], &[CORE], &["serviceaccounts"]), events()],
        ),
        role(
            "system:controller:statefulset-controller",
            vec![
                r(&["list", "watch"], &[CORE], &["pods"]),
                // skiff reads the set live before each sync ("get"), beyond upstream's rule.
                r(&["get", "list", "watch"], &[APPS], &["statefulsets"]),
                r(&["update", "patch"], &[APPS], &["statefulsets/status"]),
                r(&["update"], &[APPS], &["statefulsets/finalizers"]),
                r(
                    &["get", "create", "delete", "update", "patch"],
                    &[CORE],
                    &["pods"],
                ),
                r(
                    &[
                        "get", "create", "delete", "update", "patch", "list", "watch",
                    ],
                    &[APPS],
                    &["controllerrevisions"],
                ),
                r(&["get", "create"], &[CORE], &["persistentvolumeclaims"]),
                r(
                    &["update", "delete", "patch"],
                    &[CORE],
                    &["persistentvolumeclaims"],
                ),
                events(),
            ],
        ),
        role(
            "system:controller:ttl-after-finished-controller",
            vec![
                r(&["get", "list", "watch", "delete"], &[BATCH], &["jobs"]),
                events(),
            ],
        ),
    ]
}

/// The default ClusterRoleBindings.
pub fn cluster_role_bindings() -> Vec<BindingSpec> {
    let mut b = vec![
        crb("cluster-admin", vec![group(groups::MASTERS)]),
        crb("system:monitoring", vec![group("system:monitoring")]),
        crb("system:discovery", vec![group(groups::AUTHENTICATED)]),
        crb("system:basic-user", vec![group(groups::AUTHENTICATED)]),
        crb(
            "system:public-info-viewer",
            vec![group(groups::AUTHENTICATED), group(groups::UNAUTHENTICATED)],
        ),
        crb("system:node-proxier", vec![user("system:kube-proxy")]),
        crb(
            "system:kube-controller-manager",
            vec![user(users::CONTROLLER_MANAGER)],
        ),
        crb("system:kube-scheduler", vec![user(users::SCHEDULER)]),
        crb("system:volume-scheduler", vec![user(users::SCHEDULER)]),
        // Bound to nobody, as upstream: nodes are authorized by the Node authorizer.
        crb("system:node", vec![]),
        crb(
            "system:service-account-issuer-discovery",
            vec![group(groups::SERVICE_ACCOUNTS)],
        ),
        crb(
            SKIFF_CONTROLLER_MANAGER,
            vec![user(users::CONTROLLER_MANAGER)],
        ),
    ];
    // Upstream binds each controller role to its controller's ServiceAccount.
    for c in controller_roles() {
        let Some(short) = c.name.strip_prefix("system:controller:") else {
            continue;
        };
        b.push(BindingSpec {
            name: c.name,
            namespace: "",
            role: ("ClusterRole", c.name),
            subjects: vec![("ServiceAccount", short, "kube-system")],
        });
    }
    b
}

/// Roles in kube-system (upstream's `NamespaceRoles()` for the components skiff has).
pub fn namespace_roles() -> Vec<(&'static str, RoleSpec)> {
    vec![
        (
            "kube-system",
            role(
                "extension-apiserver-authentication-reader",
                vec![rn(
                    READ,
                    &[CORE],
                    &["configmaps"],
                    &["extension-apiserver-authentication"],
                )],
            ),
        ),
        (
            "kube-system",
            role(
                "system::leader-locking-kube-controller-manager",
                vec![
                    r(&["watch"], &[CORE], &["configmaps"]),
                    rn(
                        &["get", "update"],
                        &[CORE],
                        &["configmaps"],
                        &["kube-controller-manager"],
                    ),
                ],
            ),
        ),
        (
            "kube-system",
            role(
                "system::leader-locking-kube-scheduler",
                vec![
                    r(&["watch"], &[CORE], &["configmaps"]),
                    rn(
                        &["get", "update"],
                        &[CORE],
                        &["configmaps"],
                        &["kube-scheduler"],
                    ),
                ],
            ),
        ),
    ]
}

pub fn namespace_role_bindings() -> Vec<BindingSpec> {
    let rb = |name: &'static str, subjects| BindingSpec {
        name,
        namespace: "kube-system",
        role: ("Role", name),
        subjects,
    };
    vec![
        rb(
            "extension-apiserver-authentication-reader",
            vec![user(users::CONTROLLER_MANAGER), user(users::SCHEDULER)],
        ),
        rb(
            "system::leader-locking-kube-controller-manager",
            vec![
                user(users::CONTROLLER_MANAGER),
                sa("kube-system", "kube-controller-manager"),
            ],
        ),
        rb(
            "system::leader-locking-kube-scheduler",
            vec![user(users::SCHEDULER), sa("kube-system", "kube-scheduler")],
        ),
    ]
}

fn metadata(name: &str, ns: &str, labels: &[(&str, &str)]) -> Value {
    let mut l = Map::new();
    l.insert(BOOTSTRAPPING.into(), "rbac-defaults".into());
    for (k, val) in labels {
        l.insert(k.to_string(), Value::String(val.to_string()));
    }
    let mut m = json!({
        "name": name,
        "labels": l,
        "annotations": {AUTOUPDATE: "true"},
    });
    if !ns.is_empty() {
        m["namespace"] = ns.into();
    }
    m
}

/// The object form of a role spec.
pub fn role_object(spec: &RoleSpec, ns: &str) -> Value {
    let kind = if ns.is_empty() { "ClusterRole" } else { "Role" };
    let mut o = json!({
        "apiVersion": format!("{RBAC}/v1"),
        "kind": kind,
        "metadata": metadata(spec.name, ns, &spec.labels),
        "rules": spec.rules.iter().map(Rule::to_json).collect::<Vec<_>>(),
    });
    if !spec.aggregate_from.is_empty() {
        o["aggregationRule"] = json!({
            "clusterRoleSelectors": spec.aggregate_from.iter()
                .map(|(k, val)| json!({"matchLabels": {*k: *val}}))
                .collect::<Vec<_>>()
        });
    }
    o
}

/// The object form of a binding spec.
pub fn binding_object(spec: &BindingSpec) -> Value {
    let kind = if spec.namespace.is_empty() {
        "ClusterRoleBinding"
    } else {
        "RoleBinding"
    };
    let subjects: Vec<Value> = spec
        .subjects
        .iter()
        .map(|(k, name, ns)| {
            if *k == "ServiceAccount" {
                json!({"kind": k, "name": name, "namespace": ns})
            } else {
                json!({"apiGroup": RBAC, "kind": k, "name": name})
            }
        })
        .collect();
    let mut o = json!({
        "apiVersion": format!("{RBAC}/v1"),
        "kind": kind,
        "metadata": metadata(spec.name, spec.namespace, &[]),
        "roleRef": {"apiGroup": RBAC, "kind": spec.role.0, "name": spec.role.1},
    });
    if !subjects.is_empty() {
        o["subjects"] = Value::Array(subjects);
    }
    o
}

fn key(plural: &str, ns: &str, name: &str) -> String {
    if ns.is_empty() {
        format!("/registry/{RBAC}/{plural}/{name}")
    } else {
        format!("/registry/{RBAC}/{plural}/{ns}/{name}")
    }
}

fn stamp(obj: &mut Value) {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
        m.insert(
            "creationTimestamp".into(),
            crate::respond::now_rfc3339().into(),
        );
    }
}

fn autoupdate_off(obj: &Value) -> bool {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(AUTOUPDATE))
        .and_then(Value::as_str)
        == Some("false")
}

/// Existing labels/annotations win; expected ones are added.
fn merge_map(existing: &mut Value, expected: &Value, field: &str) -> bool {
    let Some(want) = expected
        .pointer(&format!("/metadata/{field}"))
        .and_then(Value::as_object)
    else {
        return false;
    };
    let Some(meta) = existing.get_mut("metadata").and_then(Value::as_object_mut) else {
        return false;
    };
    let have = meta
        .entry(field.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !have.is_object() {
        *have = Value::Object(Map::new());
    }
    let Some(have) = have.as_object_mut() else {
        return false;
    };
    let mut changed = false;
    for (k, val) in want {
        if !have.contains_key(k) {
            have.insert(k.clone(), val.clone());
            changed = true;
        }
    }
    changed
}

/// Reconciles one role (missing rules and aggregation selectors added).
fn reconcile_role(existing: &mut Value, expected: &Value) -> bool {
    let mut changed = merge_map(existing, expected, "labels");
    changed |= merge_map(existing, expected, "annotations");
    let (_, missing) = covers(&Rule::list_from(existing), &Rule::list_from(expected));
    if !missing.is_empty() {
        let rules = existing
            .as_object_mut()
            .map(|o| o.entry("rules").or_insert_with(|| json!([])));
        if let Some(Value::Array(a)) = rules {
            a.extend(missing.iter().map(Rule::to_json));
            changed = true;
        }
    }
    if let Some(want) = expected
        .pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array)
    {
        let have: Vec<Value> = existing
            .pointer("/aggregationRule/clusterRoleSelectors")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut sel = have.clone();
        for w in want {
            if !have.contains(w) {
                sel.push(w.clone());
            }
        }
        if sel.len() != have.len() {
            existing["aggregationRule"] = json!({"clusterRoleSelectors": sel});
            changed = true;
        }
    }
    changed
}

/// Reconciles one binding's subjects; None = its roleRef changed (recreate it).
fn reconcile_binding(existing: &mut Value, expected: &Value) -> Option<bool> {
    if existing.get("roleRef") != expected.get("roleRef") {
        return None;
    }
    let mut changed = merge_map(existing, expected, "labels");
    changed |= merge_map(existing, expected, "annotations");
    let want = expected
        .get("subjects")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let same = |a: &Value, b: &Value| {
        ["kind", "name", "namespace"]
            .iter()
            .all(|f| a.get(f).and_then(Value::as_str) == b.get(f).and_then(Value::as_str))
    };
    let mut have = existing
        .get("subjects")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for w in want {
        if !have.iter().any(|h| same(h, &w)) {
            have.push(w);
            changed = true;
        }
    }
    if changed && !have.is_empty() {
        existing["subjects"] = Value::Array(have);
    }
    Some(changed)
}

#[derive(Clone, Copy)]
enum Which {
    Role,
    Binding,
}

async fn ensure(
    st: &AppState,
    k: &str,
    mut expected: Value,
    which: Which,
) -> Result<(), StoreError> {
    for _ in 0..crate::ctx::RETRIES {
        let Some(kv) = st.store.get(k).await? else {
            stamp(&mut expected);
            match st.store.create(k, encode(&expected)).await {
                Ok(_) => return Ok(()),
                Err(StoreError::AlreadyExists(_)) => continue,
                Err(e) => return Err(e),
            }
        };
        let Ok(mut existing) = decode(&kv) else {
            tracing::warn!(key = k, "unreadable RBAC object; not reconciled");
            return Ok(());
        };
        if autoupdate_off(&existing) {
            return Ok(());
        }
        let outcome = match which {
            Which::Role => Some(reconcile_role(&mut existing, &expected)),
            Which::Binding => reconcile_binding(&mut existing, &expected),
        };
        let res = match outcome {
            Some(false) => return Ok(()),
            Some(true) => st
                .store
                .update(k, encode(&existing), kv.mod_revision)
                .await
                .map(|_| ()),
            None => {
                tracing::info!(
                    key = k,
                    "bootstrap binding's roleRef changed; recreating it"
                );
                match st.store.delete(k, Some(kv.mod_revision)).await {
                    Ok(_) => continue,
                    Err(e) => Err(e),
                }
            }
        };
        match res {
            Ok(()) => return Ok(()),
            Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    tracing::warn!(
        key = k,
        "could not reconcile a bootstrap RBAC object: it kept changing"
    );
    Ok(())
}

/// Reconciles the whole bootstrap policy, then fills aggregated ClusterRoles so they are right
/// before the aggregation controller first runs.
pub async fn reconcile(st: &AppState) -> Result<(), StoreError> {
    for spec in cluster_roles() {
        ensure(
            st,
            &key("clusterroles", "", spec.name),
            role_object(&spec, ""),
            Which::Role,
        )
        .await?;
    }
    for spec in cluster_role_bindings() {
        ensure(
            st,
            &key("clusterrolebindings", "", spec.name),
            binding_object(&spec),
            Which::Binding,
        )
        .await?;
    }
    for (ns, spec) in namespace_roles() {
        ensure(
            st,
            &key("roles", ns, spec.name),
            role_object(&spec, ns),
            Which::Role,
        )
        .await?;
    }
    for spec in namespace_role_bindings() {
        ensure(
            st,
            &key("rolebindings", spec.namespace, spec.name),
            binding_object(&spec),
            Which::Binding,
        )
        .await?;
    }
    aggregate_all(st).await
}

/// The rules an aggregated role should have: those of every other ClusterRole matching one of its
/// selectors, by role name, without repeats (upstream's clusterrole-aggregation controller).
pub fn aggregated_rules(role: &Value, all: &[Value]) -> Option<Vec<Value>> {
    let selectors = role
        .pointer("/aggregationRule/clusterRoleSelectors")
        .and_then(Value::as_array)?;
    let name = role.pointer("/metadata/name").and_then(Value::as_str);
    let parsed: Vec<LabelSelector> = selectors
        .iter()
        .filter_map(|s| LabelSelector::from_json(s).ok())
        .collect();
    let mut sorted: Vec<&Value> = all
        .iter()
        .filter(|o| o.pointer("/metadata/name").and_then(Value::as_str) != name)
        .filter(|o| parsed.iter().any(|p| p.matches_object(o)))
        .collect();
    sorted.sort_by_key(|o| {
        o.pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let mut rules: Vec<Value> = Vec::new();
    for o in sorted {
        for rule in o
            .get("rules")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !rules.contains(rule) {
                rules.push(rule.clone());
            }
        }
    }
    Some(rules)
}

async fn aggregate_all(st: &AppState) -> Result<(), StoreError> {
    let prefix = format!("/registry/{RBAC}/clusterroles/");
    let list = st.store.list(&prefix, &Default::default()).await?;
    let mut all: Vec<(skiff_store::KeyValue, Value, bool)> = list
        .items
        .into_iter()
        .filter_map(|kv| decode(&kv).ok().map(|o| (kv, o, false)))
        .collect();
    // Aggregated roles can aggregate each other (admin takes edit, which takes view): iterate in
    // memory to a fixed point, then write what changed.
    for _ in 0..8 {
        let objs: Vec<Value> = all.iter().map(|(_, o, _)| o.clone()).collect();
        let mut changed = false;
        for (_, obj, dirty) in all.iter_mut() {
            let Some(rules) = aggregated_rules(obj, &objs) else {
                continue;
            };
            let rules = Value::Array(rules);
            if obj.get("rules").unwrap_or(&json!([])) != &rules {
                obj["rules"] = rules;
                *dirty = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for (kv, obj, dirty) in &all {
        if !dirty {
            continue;
        }
        match st.store.update(&kv.key, encode(obj), kv.mod_revision).await {
            Ok(_) | Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_are_unique_and_bindings_point_at_roles() {
        let roles = cluster_roles();
        let mut names: Vec<&str> = roles.iter().map(|r| r.name).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
        for b in cluster_role_bindings() {
            assert!(names.contains(&b.role.1), "{} has no role", b.name);
        }
        let ns_roles: Vec<&str> = namespace_roles().iter().map(|(_, r)| r.name).collect();
        for b in namespace_role_bindings() {
            assert!(ns_roles.contains(&b.role.1));
        }
    }

    #[test]
    fn reconcile_adds_missing_rules_and_subjects_only() {
        let spec = role(
            "x",
            vec![
                r(&["get", "list"], &[CORE], &["pods"]),
                urls(&["get"], &["/a"]),
            ],
        );
        let expected = role_object(&spec, "");
        let mut existing = json!({"metadata": {"name": "x", "labels": {"mine": "1"}},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]},
                      {"verbs": ["delete"], "apiGroups": [""], "resources": ["secrets"]}]});
        assert!(reconcile_role(&mut existing, &expected));
        let rules = Rule::list_from(&existing);
        assert_eq!(rules.len(), 4);
        assert!(covers(&rules, &spec.rules).0);
        assert_eq!(existing["metadata"]["labels"]["mine"], "1");
        assert_eq!(
            existing["metadata"]["labels"][BOOTSTRAPPING],
            "rbac-defaults"
        );
        assert!(!reconcile_role(&mut existing, &expected));

        let b = binding_object(&crb("y", vec![group("g1"), user("u1")]));
        let mut have = json!({"roleRef": b["roleRef"].clone(), "metadata": {"name": "y"},
            "subjects": [{"kind": "Group", "name": "g1", "apiGroup": RBAC},
                         {"kind": "User", "name": "other", "apiGroup": RBAC}]});
        assert_eq!(reconcile_binding(&mut have, &b), Some(true));
        assert_eq!(have["subjects"].as_array().map(Vec::len), Some(3));
        let mut moved = json!({"roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "z"}});
        assert_eq!(reconcile_binding(&mut moved, &b), None);
    }

    #[test]
    fn aggregation_unions_matching_roles_by_name() {
        let view = role_object(
            &cluster_roles()
                .into_iter()
                .find(|r| r.name == "view")
                .unwrap(),
            "",
        );
        let a = json!({"metadata": {"name": "b-role", "labels": {AGGREGATE_TO_VIEW: "true"}},
            "rules": [{"verbs": ["get"], "resources": ["x"], "apiGroups": [""]}]});
        let b = json!({"metadata": {"name": "a-role", "labels": {AGGREGATE_TO_VIEW: "true"}},
            "rules": [{"verbs": ["get"], "resources": ["y"], "apiGroups": [""]},
                      {"verbs": ["get"], "resources": ["x"], "apiGroups": [""]}]});
        let c = json!({"metadata": {"name": "c", "labels": {AGGREGATE_TO_EDIT: "true"}},
            "rules": [{"verbs": ["*"], "resources": ["*"], "apiGroups": ["*"]}]});
        let rules = aggregated_rules(&view, &[a, b, c, view.clone()]).unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0]["resources"], json!(["y"]));
        assert!(aggregated_rules(&json!({"metadata": {"name": "n"}}), &[]).is_none());
    }
}
