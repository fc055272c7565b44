//! core/v1 ComponentStatus (deprecated upstream, still listed by kubectl get cs): the health of
//! the control plane's components, computed on read by the API server (never stored).

use serde_json::{json, Value};

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "",
        version: "v1",
        kind: "ComponentStatus",
        list_kind: "ComponentStatusList",
        plural: "componentstatuses",
        singular: "componentstatus",
        namespaced: false,
        short_names: &["cs"],
        categories: &[],
        verbs: GET_LIST,
        subresources: &[],
    },
    table: Table {
        columns: COLUMNS,
        cells,
        ..Table::BASE
    },
    ..Kind::BASE
};

/// Upstream's `componentStatusColumnDefinitions`.
const COLUMNS: &[Col] = &[
    NAME,
    ("Status", "string", 0, "Status of the component conditions"),
    (
        "Message",
        "string",
        0,
        "Message of the component conditions",
    ),
    ("Error", "string", 0, "Error of the component conditions"),
];

/// Upstream's `printComponentStatus`: the first `Healthy` condition decides.
fn cells(obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
    let name = s(obj, "/metadata/name");
    let healthy = arr(obj, "/conditions")
        .iter()
        .find(|c| s(c, "/type") == "Healthy");
    let (status, message, error) = match healthy {
        Some(c) => (
            if s(c, "/status") == "True" {
                "Healthy"
            } else {
                "Unhealthy"
            },
            s(c, "/message"),
            s(c, "/error"),
        ),
        None => ("Unknown", "", ""),
    };
    vec![json!(name), json!(status), json!(message), json!(error)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_health_like_kubectl() {
        let now = jiff::Timestamp::now();
        let ok = json!({"metadata": {"name": "etcd-0"},
            "conditions": [{"type": "Healthy", "status": "True", "message": "ok"}]});
        assert_eq!(
            cells(&ok, now),
            vec![json!("etcd-0"), json!("Healthy"), json!("ok"), json!("")]
        );
        let bad = json!({"metadata": {"name": "scheduler"},
            "conditions": [{"type": "Healthy", "status": "False", "error": "down"}]});
        assert_eq!(
            cells(&bad, now)[1..],
            [json!("Unhealthy"), json!(""), json!("down")]
        );
        let none = json!({"metadata": {"name": "x"}});
        assert_eq!(cells(&none, now)[1], json!("Unknown"));
    }
}
