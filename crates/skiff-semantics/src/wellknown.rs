//! Well-known label, annotation and taint keys (upstream `k8s.io/api/core/v1/well_known_*.go`,
//! `apps/v1`, `batch/v1`, `discovery/v1` constants), spelled once for every crate.

/// Label keys.
pub mod labels {
    pub const HOSTNAME: &str = "kubernetes.io/hostname";
    pub const OS: &str = "kubernetes.io/os";
    pub const ARCH: &str = "kubernetes.io/arch";
    pub const BETA_OS: &str = "beta.kubernetes.io/os";
    pub const BETA_ARCH: &str = "beta.kubernetes.io/arch";
    /// Set on every Namespace to its name.
    pub const METADATA_NAME: &str = "kubernetes.io/metadata.name";
    /// `node-role.kubernetes.io/<role>` labels name a node's roles (kubectl's ROLES column).
    pub const NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";
    /// The older single-role label.
    pub const ROLE: &str = "kubernetes.io/role";
    /// Added by the Deployment controller to its ReplicaSets and their pods.
    pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
    /// Added by DaemonSet (and StatefulSet) controllers to their pods.
    pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";
    /// EndpointSlice → Service.
    pub const SERVICE_NAME: &str = "kubernetes.io/service-name";
    pub const ENDPOINTSLICE_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
    pub const ENDPOINTSLICE_SKIP_MIRROR: &str = "endpointslice.kubernetes.io/skip-mirror";
    pub const SERVICE_HEADLESS: &str = "service.kubernetes.io/headless";
    /// Job pod labels (prefixed and legacy forms are both set).
    pub const JOB_NAME: &str = "batch.kubernetes.io/job-name";
    pub const LEGACY_JOB_NAME: &str = "job-name";
    pub const CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
    pub const LEGACY_CONTROLLER_UID: &str = "controller-uid";
}

/// Annotation keys.
pub mod annotations {
    /// Deployment and ReplicaSet revision.
    pub const REVISION: &str = "deployment.kubernetes.io/revision";
    pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
    pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
    pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
    pub const LAST_APPLIED_CONFIG: &str = "kubectl.kubernetes.io/last-applied-configuration";
    pub const CRONJOB_SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
    pub const ENDPOINTS_OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
    /// ReplicaSet scale-down prefers pods with a lower cost.
    pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";
    /// The extensions/v1beta1 rollback request a Deployment may still carry.
    pub const DEPRECATED_ROLLBACK_TO: &str = "deprecated.deployment.rollback.to";
    /// On the bookmark that ends a watch's initial events (`sendInitialEvents`).
    pub const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";
}

/// Node taint keys.
pub mod taints {
    pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
    pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
    pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
    pub const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
    pub const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
    pub const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
    pub const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
}
