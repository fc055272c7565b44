//! events.k8s.io/v1 Event: served next to core/v1 Event, printed by its printer.

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
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
    table: crate::kinds::core::event::TABLE,
    fields: FIELDS,
    field_error: not_supported_field_error,
    ..Kind::BASE
};

/// Upstream's events.k8s.io/v1 field labels (its conversion maps them onto the core Event's
/// field set: `regarding.*` = `involvedObject.*`, `reportingController` = `reportingComponent`).
const FIELDS: &[Field] = &[
    Field {
        label: "reason",
        value: |o| text(o, "/reason"),
    },
    Field {
        label: "regarding.kind",
        value: |o| text(o, "/regarding/kind"),
    },
    Field {
        label: "regarding.namespace",
        value: |o| text(o, "/regarding/namespace"),
    },
    Field {
        label: "regarding.name",
        value: |o| text(o, "/regarding/name"),
    },
    Field {
        label: "regarding.uid",
        value: |o| text(o, "/regarding/uid"),
    },
    Field {
        label: "regarding.apiVersion",
        value: |o| text(o, "/regarding/apiVersion"),
    },
    Field {
        label: "regarding.resourceVersion",
        value: |o| text(o, "/regarding/resourceVersion"),
    },
    Field {
        label: "regarding.fieldPath",
        value: |o| text(o, "/regarding/fieldPath"),
    },
    Field {
        label: "reportingController",
        value: |o| text(o, "/reportingController"),
    },
    Field {
        label: "source",
        value: source,
    },
    Field {
        label: "type",
        value: |o| text(o, "/type"),
    },
    NAMESPACE_FIELD,
    NAME_FIELD,
];

/// The core field set's `source`: the deprecated source component, else the reporting
/// controller.
fn source(o: &serde_json::Value) -> String {
    let component = text(o, "/deprecatedSource/component");
    if component.is_empty() {
        text(o, "/reportingController")
    } else {
        component
    }
}
