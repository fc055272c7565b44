//! The event recorder: core/v1 Events that `kubectl describe` shows (ScalingReplicaSet,
//! SuccessfulCreate, SuccessfulDelete, Scheduled, FailedScheduling, ...), aggregated like
//! upstream (a repeat bumps `count` and `lastTimestamp` instead of creating a new Event).

use k8s_openapi::api::core::v1::ObjectReference;

/// Records events as a named component (e.g. "deployment-controller").
#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
}

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl Recorder {
    pub fn new(client: kube::Client) -> Self {
        Recorder { client }
    }

    /// Publishes an event about `object` from `component`; failures are logged, never returned
    /// (events are best effort, as upstream).
    pub async fn publish(
        &self,
        component: &str,
        object: &ObjectReference,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        let _ = (&self.client, component, object, kind, reason, message);
        todo!()
    }
}
