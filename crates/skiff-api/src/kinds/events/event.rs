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
    ..Kind::BASE
};
