//! coordination.k8s.io/v1 Lease: the Holder column.

use serde_json::{json, Value};

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
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
    table: Table {
        columns: COLUMNS,
        cells,
        ..Table::BASE
    },
    ..Kind::BASE
};

const COLUMNS: &[Col] = &[NAME, ("Holder", "string", 0, "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field."), AGE];

fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    vec![
        json!(name),
        json!(s(obj, "/spec/holderIdentity")),
        json!(age),
    ]
}
