//! Structural defaulting and pruning (upstream `structuraldefaulting.Default`,
//! `PruneNonNullableNullsWithoutDefaults` and `structuralpruning.Prune`).

use serde_json::{Map, Value};

use super::node::{Additional, Node, MAX_DEPTH};

/// ObjectMeta's JSON field names: what an embedded resource's (and a custom object's)
/// `metadata` keeps.
pub const OBJECT_META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

fn non_nullable_null(v: &Value, n: &Node) -> bool {
    v.is_null() && !n.nullable
}

/// Defaults absent fields (and non-nullable nulls) of objects that are present, recursively.
pub(crate) fn default(v: &mut Value, n: &Node, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, p) in &n.properties {
                let Some(d) = &p.default else { continue };
                let missing = m.get(k).is_none_or(|x| non_nullable_null(x, p));
                if missing {
                    m.insert(k.clone(), d.clone());
                }
            }
            let ap = match &n.additional {
                Some(Additional::Schema(s)) => Some(s.as_ref()),
                _ => None,
            };
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let Some(x) = m.get_mut(&k) else { continue };
                if let Some(p) = n.properties.get(&k) {
                    default(x, p, depth + 1);
                } else if let Some(ap) = ap {
                    if non_nullable_null(x, ap) {
                        if let Some(d) = &ap.default {
                            *x = d.clone();
                        }
                    }
                    default(x, ap, depth + 1);
                }
            }
            // Non-nullable nulls without a default are dropped (upstream does this while
            // decoding, before defaulting).
            drop_nulls(m, n);
        }
        Value::Array(a) => {
            let Some(items) = &n.items else { return };
            for x in a.iter_mut() {
                if non_nullable_null(x, items) {
                    if let Some(d) = &items.default {
                        *x = d.clone();
                    }
                }
                default(x, items, depth + 1);
            }
        }
        _ => {}
    }
}

fn drop_nulls(m: &mut Map<String, Value>, n: &Node) {
    m.retain(|k, x| {
        if !x.is_null() {
            return true;
        }
        match n.properties.get(k) {
            Some(p) => p.nullable || p.default.is_some(),
            None => match &n.additional {
                Some(Additional::Schema(ap)) => ap.nullable || ap.default.is_some(),
                _ => true,
            },
        }
    });
}

/// Removes unknown fields; `path` is the dotted path so far (`.spec`), `root` marks the
/// resource root or an embedded resource (apiVersion/kind/metadata kept).
pub(crate) fn prune(
    v: &mut Value,
    n: &Node,
    root: bool,
    top: bool,
    path: &str,
    out: &mut Vec<String>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if root && (k == "apiVersion" || k == "kind") {
                    continue;
                }
                let here = format!("{path}.{k}");
                if root && k == "metadata" {
                    if !top {
                        if let Some(Value::Object(meta)) = m.get_mut("metadata") {
                            let unknown: Vec<String> = meta
                                .keys()
                                .filter(|f| !OBJECT_META.contains(&f.as_str()))
                                .cloned()
                                .collect();
                            for f in unknown {
                                meta.remove(&f);
                                out.push(format!("{here}.{f}"));
                            }
                        }
                    }
                    continue;
                }
                let Some(x) = m.get_mut(&k) else { continue };
                if let Some(p) = n.properties.get(&k) {
                    prune(x, p, p.embedded, false, &here, out, depth + 1);
                } else {
                    match &n.additional {
                        Some(Additional::Schema(ap)) => {
                            prune(x, ap, ap.embedded, false, &here, out, depth + 1)
                        }
                        Some(Additional::Bool(true)) => {}
                        _ if n.preserve_unknown => {}
                        _ => {
                            m.remove(&k);
                            out.push(here);
                        }
                    }
                }
            }
        }
        Value::Array(a) => {
            let Some(items) = &n.items else { return };
            for (i, x) in a.iter_mut().enumerate() {
                prune(
                    x,
                    items,
                    items.embedded,
                    false,
                    &format!("{path}[{i}]"),
                    out,
                    depth + 1,
                );
            }
        }
        _ => {}
    }
}
