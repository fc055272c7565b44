//! Schemas of metrics.k8s.io/v1beta1 (k8s-openapi has no metrics types), named and described
//! as upstream's `k8s.io/metrics` definitions so `kubectl explain podmetrics` reads the same.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

/// NodeMetrics sets resource usage metrics of a node.
#[derive(schemars::JsonSchema)]
#[schemars(rename = "io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics")]
#[allow(dead_code)]
pub(crate) struct NodeMetrics {
    /// APIVersion defines the versioned schema of this representation of an object.
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    /// Kind is a string value representing the REST resource this object represents.
    kind: Option<String>,
    /// Standard object's metadata.
    metadata: Option<ObjectMeta>,
    /// The following fields define time interval from which metrics were collected from the
    /// interval [Timestamp-Window, Timestamp].
    timestamp: Time,
    window: String,
    /// The memory usage is the memory working set.
    usage: BTreeMap<String, Quantity>,
}

/// PodMetrics sets resource usage metrics of a pod.
#[derive(schemars::JsonSchema)]
#[schemars(rename = "io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetrics")]
#[allow(dead_code)]
pub(crate) struct PodMetrics {
    /// APIVersion defines the versioned schema of this representation of an object.
    #[serde(rename = "apiVersion")]
    api_version: Option<String>,
    /// Kind is a string value representing the REST resource this object represents.
    kind: Option<String>,
    /// Standard object's metadata.
    metadata: Option<ObjectMeta>,
    /// The following fields define time interval from which metrics were collected from the
    /// interval [Timestamp-Window, Timestamp].
    timestamp: Time,
    window: String,
    /// Metrics for all containers are collected within the same time window.
    containers: Vec<ContainerMetrics>,
}

/// ContainerMetrics sets resource usage metrics of a container.
#[derive(schemars::JsonSchema)]
#[schemars(rename = "io.k8s.metrics.pkg.apis.metrics.v1beta1.ContainerMetrics")]
#[allow(dead_code)]
pub(crate) struct ContainerMetrics {
    /// Container name corresponding to the one from pod.spec.containers.
    name: String,
    /// The memory usage is the memory working set.
    usage: BTreeMap<String, Quantity>,
}
