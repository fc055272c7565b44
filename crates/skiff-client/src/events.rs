//! The event recorder: core/v1 Events that `kubectl describe` shows (ScalingReplicaSet,
//! SuccessfulCreate, SuccessfulDelete, Scheduled, FailedScheduling, ...), aggregated like
//! upstream (a repeat bumps `count` and `lastTimestamp` instead of creating a new Event).
//!
//! Shaped like client-go's legacy `record.EventRecorder`: name `<object>.<hex unix nanos>`,
//! namespace of the object (`default` for cluster-scoped ones), `source.component` and
//! `reportingComponent` set to the component, `firstTimestamp`/`lastTimestamp` set, `eventTime`
//! left null. Repeats of the same (object, type, reason, message, component) within 10 minutes
//! PATCH `count`/`lastTimestamp` of the existing Event (the EventCorrelator's log cache).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};

/// Repeats older than this start a new Event (upstream: the correlator's 10-minute window).
const AGGREGATION_WINDOW: Duration = Duration::from_secs(600);
/// Past this many cached series, stale ones are pruned.
const CACHE_PRUNE_THRESHOLD: usize = 4096;

/// Records events as a named component (e.g. "deployment-controller").
#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    cache: Arc<Mutex<HashMap<SeriesKey, Series>>>,
}

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// What makes two events "the same" for aggregation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    component: String,
    api_version: String,
    kind: String,
    namespace: String,
    name: String,
    uid: String,
    kind_of_event: &'static str,
    reason: String,
    message: String,
}

/// The Event currently representing a series.
#[derive(Debug, Clone)]
struct Series {
    event_name: String,
    namespace: String,
    count: i32,
    last_seen: Instant,
}

/// What to do for one publish, decided under the cache lock.
enum Action {
    Create { count: i32 },
    Bump { event_name: String, count: i32 },
}

impl Recorder {
    pub fn new(client: kube::Client) -> Self {
        Recorder {
            client,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
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
        let namespace = match object.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => ns.to_string(),
            _ => "default".to_string(),
        };
        let key = SeriesKey {
            component: component.to_string(),
            api_version: object.api_version.clone().unwrap_or_default(),
            kind: object.kind.clone().unwrap_or_default(),
            namespace: object.namespace.clone().unwrap_or_default(),
            name: object.name.clone().unwrap_or_default(),
            uid: object.uid.clone().unwrap_or_default(),
            kind_of_event: kind.as_str(),
            reason: reason.to_string(),
            message: message.to_string(),
        };
        let now = jiff::Timestamp::now();
        let action = self.reserve(&key, &namespace);
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);

        if let Action::Bump {
            ref event_name,
            count,
        } = action
        {
            let patch = serde_json::json!({
                "count": count,
                "lastTimestamp": Time(now),
            });
            match api
                .patch(event_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return,
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    // The Event was deleted (TTL, user): start a new series like upstream.
                    tracing::debug!(event = %event_name, "aggregated event gone; recreating");
                }
                Err(e) => {
                    tracing::warn!(event = %event_name, error = %e, "failed to update event");
                    return;
                }
            }
        }

        let count = match action {
            Action::Create { count } => count,
            Action::Bump { .. } => 1,
        };
        let object_name = object.name.clone().unwrap_or_default();
        let nanos = now.as_nanosecond();
        let event_name = format!("{object_name}.{nanos:x}");
        let event = Event {
            metadata: ObjectMeta {
                name: Some(event_name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: object.clone(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(kind.as_str().to_string()),
            source: Some(EventSource {
                component: Some(component.to_string()),
                host: None,
            }),
            reporting_component: Some(component.to_string()),
            reporting_instance: Some(String::new()),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            count: Some(count),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                if let Ok(mut cache) = self.cache.lock() {
                    cache.insert(
                        key,
                        Series {
                            event_name,
                            namespace,
                            count,
                            last_seen: Instant::now(),
                        },
                    );
                }
            }
            Err(e) => {
                tracing::warn!(event = %event_name, reason, error = %e, "failed to create event");
                if let Ok(mut cache) = self.cache.lock() {
                    cache.remove(&key);
                }
            }
        }
    }

    /// Decides between a new Event and bumping an existing one, counting this occurrence.
    fn reserve(&self, key: &SeriesKey, namespace: &str) -> Action {
        let Ok(mut cache) = self.cache.lock() else {
            return Action::Create { count: 1 };
        };
        let now = Instant::now();
        if cache.len() > CACHE_PRUNE_THRESHOLD {
            cache.retain(|_, s| now.duration_since(s.last_seen) < AGGREGATION_WINDOW);
        }
        match cache.get_mut(key) {
            Some(s)
                if now.duration_since(s.last_seen) < AGGREGATION_WINDOW
                    && s.namespace == namespace =>
            {
                s.count += 1;
                s.last_seen = now;
                Action::Bump {
                    event_name: s.event_name.clone(),
                    count: s.count,
                }
            }
            _ => Action::Create { count: 1 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_strings() {
        assert_eq!(EventType::Normal.as_str(), "Normal");
        assert_eq!(EventType::Warning.as_str(), "Warning");
    }
}
