//! The list strategies of the built-in types skiff serves: which lists merge by key (and by
//! which key for strategic merge patch vs. server-side apply), which are sets of primitives and
//! which are atomic. Derived from the `patchMergeKey`/`patchStrategy` and `listType`/`listMapKey`
//! tags of k8s.io/api; anything not listed is an atomic list / granular map like upstream's
//! defaults.

/// A node type in the object tree; `Unknown` has no special lists below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Unknown,
    Workload,
    CronJob,
    Pod,
    Service,
    Node,
    Namespace,
    ServiceAccount,
    Other,
    ObjectMeta,
    LabelSelector,
    WorkloadSpec,
    WorkloadStatus,
    CronJobSpec,
    JobTemplateSpec,
    PodTemplateSpec,
    PodSpec,
    Container,
    PodStatus,
    ServiceSpec,
    ServiceStatus,
    NodeSpec,
    NodeStatus,
    NamespaceStatus,
    WebhookConfiguration,
    Webhook,
    /// A node of a custom kind's structural schema (see `custom`).
    Custom(u32),
}

/// How a list field merges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListKind {
    /// Replaced wholesale.
    Atomic,
    /// A set of primitives (SMP `merge` strategy without a key; SSA `listType=set`).
    Set,
    /// A list of objects keyed by `smp_key` (SMP) / `keys` (SSA `listMapKey`s).
    Map {
        smp_key: &'static str,
        keys: &'static [&'static str],
    },
}

/// What the schema says about one field: the type of its value (or of its list elements) and
/// the list strategy when it is a list. `atomic` marks `structType=atomic` objects (SSA only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field {
    pub ty: Ty,
    pub list: ListKind,
    pub atomic: bool,
}

const fn plain(ty: Ty) -> Field {
    Field {
        ty,
        list: ListKind::Atomic,
        atomic: false,
    }
}

const fn keyed(ty: Ty, smp_key: &'static str, keys: &'static [&'static str]) -> Field {
    Field {
        ty,
        list: ListKind::Map { smp_key, keys },
        atomic: false,
    }
}

const fn set() -> Field {
    Field {
        ty: Ty::Unknown,
        list: ListKind::Set,
        atomic: false,
    }
}

/// The schema of field `name` inside a value of type `ty`.
pub(crate) fn field(ty: Ty, name: &str) -> Field {
    use Ty::*;
    match (ty, name) {
        (Custom(id), _) => super::custom::field(id, name),
        (
            Workload | CronJob | Pod | Service | Node | Namespace | ServiceAccount | Other
            | WebhookConfiguration,
            "metadata",
        ) => plain(ObjectMeta),
        (WebhookConfiguration, "webhooks") => keyed(Webhook, "name", &["name"]),
        (Webhook, "matchConditions") => keyed(Unknown, "name", &["name"]),
        (CronJob, "spec") => plain(CronJobSpec),
        (CronJobSpec, "jobTemplate") => plain(JobTemplateSpec),
        (JobTemplateSpec, "metadata") => plain(ObjectMeta),
        (JobTemplateSpec, "spec") => plain(WorkloadSpec),
        (Workload, "spec") => plain(WorkloadSpec),
        (Workload, "status") => plain(WorkloadStatus),
        // A PodTemplate's root holds its template directly.
        (Workload, "template") => plain(PodTemplateSpec),
        (Pod, "spec") => plain(PodSpec),
        (Pod, "status") => plain(PodStatus),
        (Service, "spec") => plain(ServiceSpec),
        (Service, "status") => plain(ServiceStatus),
        (Node, "spec") => plain(NodeSpec),
        (Node, "status") => plain(NodeStatus),
        (Namespace, "status") => plain(NamespaceStatus),
        (ServiceAccount, "secrets") => keyed(Unknown, "name", &["name"]),

        (ObjectMeta, "ownerReferences") => keyed(Unknown, "uid", &["uid"]),
        (ObjectMeta, "finalizers") => set(),

        (WorkloadSpec, "selector") => Field {
            ty: LabelSelector,
            list: ListKind::Atomic,
            atomic: true,
        },
        (WorkloadSpec, "template") => plain(PodTemplateSpec),
        (
            WorkloadStatus | PodStatus | ServiceStatus | NodeStatus | NamespaceStatus,
            "conditions",
        ) => keyed(Unknown, "type", &["type"]),

        (PodTemplateSpec, "metadata") => plain(ObjectMeta),
        (PodTemplateSpec, "spec") => plain(PodSpec),

        (PodSpec, "containers" | "initContainers" | "ephemeralContainers") => {
            keyed(Container, "name", &["name"])
        }
        (PodSpec, "volumes") => keyed(Unknown, "name", &["name"]),
        (PodSpec, "imagePullSecrets") => keyed(Unknown, "name", &["name"]),
        (PodSpec, "hostAliases") => keyed(Unknown, "ip", &["ip"]),
        (PodSpec, "topologySpreadConstraints") => keyed(
            Unknown,
            "topologyKey",
            &["topologyKey", "whenUnsatisfiable"],
        ),
        (PodSpec, "resourceClaims" | "schedulingGates") => keyed(Unknown, "name", &["name"]),

        (Container, "ports") => keyed(Unknown, "containerPort", &["containerPort", "protocol"]),
        (Container, "env") => keyed(Unknown, "name", &["name"]),
        (Container, "volumeMounts") => keyed(Unknown, "mountPath", &["mountPath"]),
        (Container, "volumeDevices") => keyed(Unknown, "devicePath", &["devicePath"]),

        (PodStatus, "podIPs" | "hostIPs") => keyed(Unknown, "ip", &["ip"]),
        (PodStatus, "resourceClaimStatuses") => keyed(Unknown, "name", &["name"]),

        (ServiceSpec, "ports") => keyed(Unknown, "port", &["port", "protocol"]),

        (NodeSpec, "podCIDRs") => set(),
        (NodeStatus, "addresses") => keyed(Unknown, "type", &["type"]),

        _ => plain(Unknown),
    }
}
