//! The list strategies of custom kinds, from their structural schemas: `x-kubernetes-list-type`
//! (`map` with `x-kubernetes-list-map-keys`, `set`, `atomic` — the default for CRD arrays, as
//! upstream) and `x-kubernetes-map-type: atomic`, as [`Ty::Custom`] nodes server-side apply and
//! managedFields walk like the built-in types of `schema`.
//!
//! Nodes live in one process-wide arena, interned by the schema's content: the same schema
//! (a CRD re-created, another server's test using it) reuses its nodes, so memory grows only with
//! the distinct schemas ever served, like the interned `ResourceInfo`s of custom kinds.

use std::collections::{HashMap, HashSet};
use std::sync::{LazyLock, RwLock};

use serde_json::Value;

use super::schema::{Field, ListKind, Ty};

#[derive(Default)]
struct Arena {
    /// Each node's fields by name (fields not listed are untyped, atomic lists).
    nodes: Vec<HashMap<String, Field>>,
    by_content: HashMap<String, u32>,
    strings: HashSet<&'static str>,
    key_lists: HashMap<Vec<String>, &'static [&'static str]>,
}

static ARENA: LazyLock<RwLock<Arena>> = LazyLock::new(Default::default);

const UNTYPED: Field = Field {
    ty: Ty::Unknown,
    list: ListKind::Atomic,
    atomic: false,
};

/// The schema of field `name` of custom node `id`.
pub(crate) fn field(id: u32, name: &str) -> Field {
    let arena = match ARENA.read() {
        Ok(a) => a,
        Err(poisoned) => poisoned.into_inner(),
    };
    arena
        .nodes
        .get(id as usize)
        .and_then(|n| n.get(name))
        .copied()
        .unwrap_or(UNTYPED)
}

/// The root type of objects of a custom kind whose `openAPIV3Schema` is `schema`.
pub(crate) fn root(schema: &Value) -> Ty {
    let mut arena = match ARENA.write() {
        Ok(a) => a,
        Err(poisoned) => poisoned.into_inner(),
    };
    object(&mut arena, schema, true)
}

impl Arena {
    fn string(&mut self, s: &str) -> &'static str {
        if let Some(k) = self.strings.get(s) {
            return k;
        }
        let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
        self.strings.insert(leaked);
        leaked
    }

    fn keys(&mut self, keys: Vec<String>) -> &'static [&'static str] {
        if let Some(k) = self.key_lists.get(&keys) {
            return k;
        }
        let list: Vec<&'static str> = keys.iter().map(|k| self.string(k)).collect();
        let leaked: &'static [&'static str] = Box::leak(list.into_boxed_slice());
        self.key_lists.insert(keys, leaked);
        leaked
    }
}

/// The node of an object schema; objects without `properties` (maps, preserved unknown
/// fields) stay untyped and granular.
fn object(arena: &mut Arena, s: &Value, resource: bool) -> Ty {
    let props = s.get("properties").and_then(Value::as_object);
    let embedded = s
        .get("x-kubernetes-embedded-resource")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let resource = resource || embedded;
    if props.is_none_or(|p| p.is_empty()) && !resource {
        return Ty::Unknown;
    }
    let content = format!("{resource}:{s}");
    if let Some(id) = arena.by_content.get(&content) {
        return Ty::Custom(*id);
    }
    let mut fields = HashMap::new();
    if resource {
        // ownerReferences, finalizers … merge as in every object.
        fields.insert(
            "metadata".to_string(),
            Field {
                ty: Ty::ObjectMeta,
                list: ListKind::Atomic,
                atomic: false,
            },
        );
    }
    for (name, ps) in props.into_iter().flatten() {
        if resource && name == "metadata" {
            continue;
        }
        let f = field_of(arena, ps);
        fields.insert(name.clone(), f);
    }
    let id = arena.nodes.len() as u32;
    arena.nodes.push(fields);
    arena.by_content.insert(content, id);
    Ty::Custom(id)
}

fn field_of(arena: &mut Arena, s: &Value) -> Field {
    match s.get("type").and_then(Value::as_str) {
        Some("array") => {
            let items = s.get("items").unwrap_or(&Value::Null);
            let ty = object(arena, items, false);
            let list = match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("map") => {
                    let keys: Vec<String> = s
                        .get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|k| k.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    if keys.is_empty() {
                        ListKind::Atomic
                    } else {
                        let keys = arena.keys(keys);
                        ListKind::Map {
                            smp_key: keys[0],
                            keys,
                        }
                    }
                }
                Some("set") => ListKind::Set,
                _ => ListKind::Atomic,
            };
            Field {
                ty,
                list,
                atomic: false,
            }
        }
        Some("object") => Field {
            ty: object(arena, s, false),
            list: ListKind::Atomic,
            atomic: s.get("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic"),
        },
        _ => UNTYPED,
    }
}
