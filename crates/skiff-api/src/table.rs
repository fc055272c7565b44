//! `meta.k8s.io/v1 Table` responses with the columns kubectl users know for every kind: the
//! generic Table builder and the cell helpers; each kind's columns and row printer live in its
//! module in `kinds`.
//!
//! Columns and cell formatting reproduce kube-apiserver's printers
//! (`pkg/printers/internalversion/printers.go`), which the server runs with `Wide: true` so
//! priority-1 columns are always present and kubectl hides them unless `-o wide`.

use serde_json::{json, Map, Value};

use crate::selector::LabelSelector;
use crate::ResourceInfo;

/// What each row's `object` carries (`?includeObject=`): PartialObjectMetadata by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    #[default]
    Metadata,
    Object,
}

pub(crate) const NAME_DOC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
pub(crate) const AGE_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// One column: (name, type, priority, description).
pub(crate) type Col = (&'static str, &'static str, u8, &'static str);

pub(crate) const NAME: Col = ("Name", "string", 0, NAME_DOC);
pub(crate) const AGE: Col = ("Age", "string", 0, AGE_DOC);

/// A Table of `objects` (full objects of kind `info`). `list_metadata` is the list's
/// metadata (resourceVersion, continue). `now` is the current time (for AGE columns).
pub fn to_table(
    info: &ResourceInfo,
    objects: &[Value],
    include: IncludeObject,
    list_metadata: Value,
    now: jiff::Timestamp,
) -> Value {
    let table = &crate::kinds::of(info).table;
    let column_definitions: Vec<Value> = table
        .columns
        .iter()
        .map(|&(name, ty, priority, description)| {
            json!({
                "name": name,
                "type": ty,
                "format": if name == "Name" { "name" } else { "" },
                "description": description,
                "priority": priority,
            })
        })
        .collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let mut row = Map::new();
            let cells = if crate::kinds::is_alt_version(info) {
                (table.cells)(&crate::kinds::to_stored(info, obj.clone()), now)
            } else {
                (table.cells)(obj, now)
            };
            row.insert("cells".into(), Value::Array(cells));
            if let Some(conditions) = (table.conditions)(obj) {
                row.insert("conditions".into(), conditions);
            }
            match include {
                IncludeObject::None => {}
                IncludeObject::Metadata => {
                    let meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
                    row.insert(
                        "object".into(),
                        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta}),
                    );
                }
                IncludeObject::Object => {
                    let mut full = obj.clone();
                    if let Value::Object(m) = &mut full {
                        m.entry("kind").or_insert_with(|| json!(info.kind));
                        m.entry("apiVersion")
                            .or_insert_with(|| json!(info.api_version()));
                    }
                    row.insert("object".into(), full);
                }
            }
            Value::Object(row)
        })
        .collect();
    let metadata = if list_metadata.is_object() {
        list_metadata
    } else {
        json!({})
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}

/// String at a JSON pointer ("" when missing or not a string).
pub(crate) fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// Integer at a JSON pointer (0 when missing).
pub(crate) fn n(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// Array at a JSON pointer (empty when missing).
pub(crate) fn arr<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub(crate) fn parse_time(t: &str) -> Option<jiff::Timestamp> {
    t.parse::<jiff::Timestamp>().ok()
}

/// kubectl's `translateTimestampSince`: `<unknown>` for a missing time.
pub(crate) fn since(t: &str, now: jiff::Timestamp) -> String {
    match parse_time(t) {
        Some(ts) => {
            let secs = now.as_second() - ts.as_second();
            human_duration(secs)
        }
        None => "<unknown>".into(),
    }
}

/// `k8s.io/apimachinery/pkg/util/duration.HumanDuration` on whole seconds: `5s`, `3m2s`, `10m`,
/// `5h30m`, `2d3h`, `1y20d`…
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// The NAME and AGE cells of an object.
pub(crate) fn name_age(obj: &Value, now: jiff::Timestamp) -> (String, String) {
    let name = s(obj, "/metadata/name").to_string();
    (name, since(s(obj, "/metadata/creationTimestamp"), now))
}

/// Container names and images of a pod template, comma-joined.
pub(crate) fn container_cells(obj: &Value) -> (String, String) {
    let cs = arr(obj, "/spec/template/spec/containers");
    let names: Vec<&str> = cs.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(c, "/image")).collect();
    (names.join(","), images.join(","))
}

/// A metav1.LabelSelector as `app=web,tier in (a,b)`.
pub(crate) fn selector_string(sel: Option<&Value>) -> String {
    match sel {
        None | Some(Value::Null) => "<none>".into(),
        Some(v) => LabelSelector::from_json(v)
            .map(|l| l.to_string())
            .unwrap_or_else(|_| "<invalid>".into()),
    }
}

/// `labels.FormatLabels`: sorted `k=v` pairs or `<none>`.
pub(crate) fn format_labels(map: Option<&Value>) -> String {
    let Some(m) = map.and_then(Value::as_object) else {
        return "<none>".into();
    };
    if m.is_empty() {
        return "<none>".into();
    }
    let mut pairs: Vec<String> = m
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    pairs.sort();
    pairs.join(",")
}

pub(crate) fn list_with_more(list: Vec<String>, more: bool, count: usize, max: usize) -> String {
    let ret = list.join(",");
    if more {
        return format!("{ret} + {} more...", count - max);
    }
    if ret.is_empty() {
        "<unset>".into()
    } else {
        ret
    }
}
