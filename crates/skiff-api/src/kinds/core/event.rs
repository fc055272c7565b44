//! core/v1 Event, and the printer events.k8s.io/v1 Events share.

use serde_json::{json, Value};

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
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
    table: TABLE,
    fields: FIELDS,
    field_error: not_supported_field_error,
    ..Kind::BASE
};

/// The Table both Event kinds print.
pub(crate) const TABLE: Table = Table {
    columns: COLUMNS,
    cells,
    ..Table::BASE
};

#[rustfmt::skip]
const COLUMNS: &[Col] = &[
        ("Last Seen", "string", 0, "The time at which the most recent occurrence of this event was recorded."),
        ("Type", "string", 0, "Type of this event (Normal, Warning), new types could be added in the future"),
        ("Reason", "string", 0, "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
        ("Object", "string", 0, "The object that this event is about."),
        ("Subobject", "string", 1, "The subobject (field path) this event is about."),
        ("Source", "string", 1, "The component reporting this event. Should be a short machine understandable string."),
        ("Message", "string", 0, "A human-readable description of the status of this operation."),
        ("First Seen", "string", 1, "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)"),
        ("Count", "string", 1, "The number of times this event has occurred."),
        ("Name", "string", 1, NAME_DOC),
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    event_cells(obj, s(obj, "/metadata/name"), now)
}

/// Core and events.k8s.io Events share the printer; the latter's fields are mapped first.
fn event_cells(obj: &Value, name: &str, now: jiff::Timestamp) -> Vec<Value> {
    let new_api = obj.get("regarding").is_some() || obj.get("note").is_some();
    let (involved, message, first, last, mut count, source_component, source_host) = if new_api {
        (
            obj.get("regarding").cloned().unwrap_or(Value::Null),
            s(obj, "/note"),
            s(obj, "/deprecatedFirstTimestamp"),
            s(obj, "/deprecatedLastTimestamp"),
            n(obj, "/deprecatedCount"),
            s(obj, "/deprecatedSource/component"),
            s(obj, "/deprecatedSource/host"),
        )
    } else {
        (
            obj.get("involvedObject").cloned().unwrap_or(Value::Null),
            s(obj, "/message"),
            s(obj, "/firstTimestamp"),
            s(obj, "/lastTimestamp"),
            n(obj, "/count"),
            s(obj, "/source/component"),
            s(obj, "/source/host"),
        )
    };
    let first_seen = if parse_time(first).is_some() {
        since(first, now)
    } else {
        since(s(obj, "/eventTime"), now)
    };
    let mut last_seen = if parse_time(last).is_some() {
        since(last, now)
    } else {
        first_seen.clone()
    };
    if let Some(series) = obj.get("series").filter(|v| v.is_object()) {
        last_seen = since(s(series, "/lastObservedTime"), now);
        count = n(series, "/count");
    } else if count == 0 {
        count = 1;
    }
    let kind = s(&involved, "/kind").to_lowercase();
    let iname = s(&involved, "/name");
    let target = if iname.is_empty() {
        kind
    } else {
        format!("{kind}/{iname}")
    };
    let component = if source_component.is_empty() {
        s(obj, "/reportingController")
    } else {
        source_component
    };
    let instance = if source_host.is_empty() {
        s(obj, "/reportingInstance")
    } else {
        source_host
    };
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last_seen),
        json!(s(obj, "/type")),
        json!(s(obj, "/reason")),
        json!(target),
        json!(s(&involved, "/fieldPath")),
        json!(source),
        json!(message.trim()),
        json!(first_seen),
        json!(count),
        json!(name),
    ]
}

/// Upstream's core/v1 Event field labels; `source` falls back to the reporting controller.
const FIELDS: &[Field] = &[
    Field {
        label: "involvedObject.kind",
        value: |o| text(o, "/involvedObject/kind"),
    },
    Field {
        label: "involvedObject.namespace",
        value: |o| text(o, "/involvedObject/namespace"),
    },
    Field {
        label: "involvedObject.name",
        value: |o| text(o, "/involvedObject/name"),
    },
    Field {
        label: "involvedObject.uid",
        value: |o| text(o, "/involvedObject/uid"),
    },
    Field {
        label: "involvedObject.apiVersion",
        value: |o| text(o, "/involvedObject/apiVersion"),
    },
    Field {
        label: "involvedObject.resourceVersion",
        value: |o| text(o, "/involvedObject/resourceVersion"),
    },
    Field {
        label: "involvedObject.fieldPath",
        value: |o| text(o, "/involvedObject/fieldPath"),
    },
    Field {
        label: "reason",
        value: |o| text(o, "/reason"),
    },
    Field {
        label: "reportingComponent",
        value: |o| text(o, "/reportingComponent"),
    },
    Field {
        label: "source",
        value: event_source,
    },
    Field {
        label: "type",
        value: |o| text(o, "/type"),
    },
    NAMESPACE_FIELD,
    NAME_FIELD,
];

fn event_source(o: &Value) -> String {
    let component = text(o, "/source/component");
    if component.is_empty() {
        text(o, "/reportingComponent")
    } else {
        component
    }
}
