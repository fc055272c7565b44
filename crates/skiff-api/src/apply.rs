//! Server-side apply: field ownership in `metadata.managedFields` (FieldsV1), conflicts between
//! managers, and apply as create when the object is missing.
//!
//! A simplified structured-merge-diff: field sets are trees of FieldsV1 path elements
//! (`f:<field>`, `k:{…}` for keyed list items, `v:<json>` for set members, `.` for an owned
//! item/map itself), built from the values with the list strategies in `patch::schema`.
//! Apply merges the intent into the live object, reports a conflict when that changes a field
//! another manager owns, and prunes fields the applier owned before but dropped.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::patch::schema::{self, Field, ListKind, Ty};
use crate::{ApiError, ResourceInfo};

/// A FieldsV1 tree node: `member` means the path itself is owned (`.` or a leaf `{}`).
#[derive(Debug, Clone, Default, PartialEq)]
struct FieldSet {
    member: bool,
    children: BTreeMap<String, FieldSet>,
}

impl FieldSet {
    fn child(&mut self, key: String) -> &mut FieldSet {
        self.children.entry(key).or_default()
    }

    fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    /// Every owned path.
    fn members(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.member && !prefix.is_empty() {
            out.push(prefix.clone());
        }
        for (k, c) in &self.children {
            prefix.push(k.clone());
            c.collect(prefix, out);
            prefix.pop();
        }
    }

    fn contains(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => self.member,
            Some((first, rest)) => self.children.get(first).is_some_and(|c| c.contains(rest)),
        }
    }

    fn insert(&mut self, path: &[String]) {
        match path.split_first() {
            None => self.member = true,
            Some((first, rest)) => self.child(first.clone()).insert(rest),
        }
    }

    /// Unowns `path`, dropping nodes left empty.
    fn remove(&mut self, path: &[String]) {
        match path.split_first() {
            None => self.member = false,
            Some((first, rest)) => {
                if let Some(c) = self.children.get_mut(first) {
                    c.remove(rest);
                    if c.is_empty() {
                        self.children.remove(first);
                    }
                }
            }
        }
    }

    fn union(&mut self, other: &FieldSet) {
        for p in other.members() {
            self.insert(&p);
        }
    }

    fn to_json(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(".".into(), json!({}));
        }
        for (k, c) in &self.children {
            if !c.is_empty() {
                m.insert(k.clone(), c.to_json());
            }
        }
        Value::Object(m)
    }

    fn from_json(v: &Value) -> FieldSet {
        let mut set = FieldSet::default();
        if let Value::Object(m) = v {
            if m.is_empty() {
                set.member = true;
            }
            for (k, c) in m {
                if k == "." {
                    set.member = true;
                } else {
                    set.children.insert(k.clone(), FieldSet::from_json(c));
                }
            }
        }
        set
    }
}

/// The object without the fields the server owns and never attributes to managers (and
/// without `status` when `drop_status`).
fn trackable(obj: &Value, drop_status: bool) -> Value {
    let mut out = obj.clone();
    if let Value::Object(m) = &mut out {
        m.remove("apiVersion");
        m.remove("kind");
        if drop_status {
            m.remove("status");
        }
        if let Some(Value::Object(meta)) = m.get_mut("metadata") {
            for k in [
                "name",
                "namespace",
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "managedFields",
                "selfLink",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                meta.remove(k);
            }
            if meta.is_empty() {
                m.remove("metadata");
            }
        }
    }
    out
}

/// Key fields of a keyed list item with schema defaults applied (`protocol` defaults to TCP),
/// as upstream does when identifying items.
fn item_key(item: &Value, keys: &[&str]) -> Vec<(String, Value)> {
    keys.iter()
        .filter_map(|k| match item.get(*k) {
            Some(v) if !v.is_null() => Some((k.to_string(), v.clone())),
            _ if *k == "protocol" => Some((k.to_string(), json!("TCP"))),
            _ => None,
        })
        .collect()
}

/// `k:{"containerPort":80,"protocol":"TCP"}` (keys sorted).
fn key_element(key: &[(String, Value)]) -> String {
    let mut sorted = key.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let parts: Vec<String> = sorted
        .iter()
        .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), v))
        .collect();
    format!("k:{{{}}}", parts.join(","))
}

/// Records every owned path of `v` (of schema `f`) under `node`. `mark_maps` marks newly
/// added maps themselves as owned (`.`), as Update entries do.
fn fill(v: &Value, f: Field, node: &mut FieldSet, mark_maps: bool) {
    match v {
        Value::Object(m) if !f.atomic => {
            for (k, cv) in m {
                let cf = schema::field(f.ty, k);
                fill(cv, cf, node.child(format!("f:{k}")), mark_maps);
            }
            if m.is_empty() || (mark_maps && f.ty == Ty::Unknown) {
                node.member = true;
            }
        }
        Value::Array(items) => match f.list {
            ListKind::Atomic => node.member = true,
            ListKind::Set => {
                for it in items {
                    node.child(format!("v:{it}")).member = true;
                }
                if items.is_empty() {
                    node.member = true;
                }
            }
            ListKind::Map { keys, .. } => {
                for it in items {
                    let c = node.child(key_element(&item_key(it, keys)));
                    c.member = true;
                    if let Value::Object(m) = it {
                        for (k, cv) in m {
                            let cf = schema::field(f.ty, k);
                            fill(cv, cf, c.child(format!("f:{k}")), mark_maps);
                        }
                    }
                }
                if items.is_empty() {
                    node.member = true;
                }
            }
        },
        _ => node.member = true,
    }
}

/// How a kind's objects are structured for server-side apply and managedFields: which lists
/// merge by key, which are sets, which maps are atomic.
#[derive(Debug, Clone, Copy)]
pub struct Shape(Field);

impl Shape {
    /// A built-in kind's (from the kind registry).
    pub fn of(info: &ResourceInfo) -> Shape {
        Shape(Field {
            ty: crate::kinds::of(info).patch_root,
            list: ListKind::Atomic,
            atomic: false,
        })
    }

    /// A custom kind's, from its version's `openAPIV3Schema`.
    pub fn from_schema(schema: &Value) -> Shape {
        Shape(Field {
            ty: crate::patch::custom::root(schema),
            list: ListKind::Atomic,
            atomic: false,
        })
    }
}

/// The set of fields present in `obj`, rooted at the object.
fn fields_of(root: Field, obj: &Value, mark_maps: bool) -> FieldSet {
    let mut set = FieldSet::default();
    if let Value::Object(m) = obj {
        let f = root;
        for (k, v) in m {
            let cf = schema::field(f.ty, k);
            let node = set.child(format!("f:{k}"));
            // Top-level structs exist implicitly (Go non-pointer structs): never own them.
            if let Value::Object(inner) = v {
                for (ik, iv) in inner {
                    fill(
                        iv,
                        schema::field(cf.ty, ik),
                        node.child(format!("f:{ik}")),
                        mark_maps,
                    );
                }
            } else {
                fill(v, cf, node, mark_maps);
            }
        }
    }
    set.member = false;
    set
}

/// Paths changed between `old` and `new`: `touched` gets added/modified/removed paths,
/// `removed` the removed ones.
fn diff(
    old: Option<&Value>,
    new: Option<&Value>,
    f: Field,
    node: &mut FieldSet,
    removed: &mut FieldSet,
    depth: usize,
) {
    if old == new {
        return;
    }
    match (old, new) {
        (Some(Value::Object(o)), Some(Value::Object(n))) if !f.atomic => {
            let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let cf = schema::field(f.ty, k);
                let el = format!("f:{k}");
                let mut sub_removed = FieldSet::default();
                diff(
                    o.get(k),
                    n.get(k),
                    cf,
                    node.child(el.clone()),
                    &mut sub_removed,
                    depth + 1,
                );
                if !sub_removed.is_empty() {
                    removed.children.insert(el.clone(), sub_removed);
                }
                if node.children.get(&el).is_some_and(FieldSet::is_empty) {
                    node.children.remove(&el);
                }
            }
        }
        (Some(Value::Array(o)), Some(Value::Array(n))) if f.list != ListKind::Atomic => {
            match f.list {
                ListKind::Set => {
                    for v in o.iter().filter(|v| !n.contains(v)) {
                        node.child(format!("v:{v}")).member = true;
                        removed.child(format!("v:{v}")).member = true;
                    }
                    for v in n.iter().filter(|v| !o.contains(v)) {
                        node.child(format!("v:{v}")).member = true;
                    }
                }
                ListKind::Map { keys, .. } => {
                    let find = |list: &[Value], key: &[(String, Value)]| {
                        list.iter().find(|it| item_key(it, keys) == key).cloned()
                    };
                    let mut seen = Vec::new();
                    for it in o.iter().chain(n.iter()) {
                        let key = item_key(it, keys);
                        if seen.contains(&key) {
                            continue;
                        }
                        seen.push(key.clone());
                        let el = key_element(&key);
                        let (oi, ni) = (find(o, &key), find(n, &key));
                        let item_field = Field {
                            ty: f.ty,
                            list: ListKind::Atomic,
                            atomic: false,
                        };
                        match (&oi, &ni) {
                            (Some(_), Some(_)) => {
                                let mut sub_removed = FieldSet::default();
                                diff(
                                    oi.as_ref(),
                                    ni.as_ref(),
                                    item_field,
                                    node.child(el.clone()),
                                    &mut sub_removed,
                                    depth + 1,
                                );
                                if !sub_removed.is_empty() {
                                    removed.children.insert(el.clone(), sub_removed);
                                }
                            }
                            (Some(_), None) => {
                                node.child(el.clone()).member = true;
                                removed.child(el.clone()).member = true;
                            }
                            (None, Some(v)) => {
                                let c = node.child(el.clone());
                                c.member = true;
                                if let Value::Object(m) = v {
                                    for (k, cv) in m {
                                        fill(
                                            cv,
                                            schema::field(f.ty, k),
                                            c.child(format!("f:{k}")),
                                            true,
                                        );
                                    }
                                }
                            }
                            (None, None) => {}
                        }
                        if node.children.get(&el).is_some_and(FieldSet::is_empty) {
                            node.children.remove(&el);
                        }
                    }
                }
                ListKind::Atomic => {}
            }
        }
        (_, None) => {
            node.member = true;
            removed.member = true;
        }
        (_, Some(v)) => {
            // Added or replaced wholesale: own the node and everything in it.
            match v {
                Value::Object(m) if !f.atomic && depth <= 1 => {
                    for (k, cv) in m {
                        fill(
                            cv,
                            schema::field(f.ty, k),
                            node.child(format!("f:{k}")),
                            true,
                        );
                    }
                }
                _ => fill(v, f, node, true),
            }
        }
    }
}

fn changed_fields(root: Field, old: &Value, new: &Value) -> (FieldSet, FieldSet) {
    let mut touched = FieldSet::default();
    let mut removed = FieldSet::default();
    diff(Some(old), Some(new), root, &mut touched, &mut removed, 0);
    touched.member = false;
    removed.member = false;
    (touched, removed)
}

/// One `managedFields` entry.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: String,
    api_version: String,
    time: Option<String>,
    subresource: Option<String>,
    set: FieldSet,
}

impl Entry {
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("manager".into(), json!(self.manager));
        m.insert("operation".into(), json!(self.operation));
        m.insert("apiVersion".into(), json!(self.api_version));
        if let Some(t) = &self.time {
            m.insert("time".into(), json!(t));
        }
        m.insert("fieldsType".into(), json!("FieldsV1"));
        m.insert("fieldsV1".into(), self.set.to_json());
        if let Some(s) = &self.subresource {
            m.insert("subresource".into(), json!(s));
        }
        Value::Object(m)
    }

    /// How conflicts name the manager (`"kubectl-client-side-apply" using apps/v1`).
    fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s = format!("{s} with subresource {sub:?}");
        }
        if self.operation == "Update" {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }
}

fn entries_of(obj: &Value) -> Vec<Entry> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|e| Entry {
                    manager: e
                        .get("manager")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                    operation: e
                        .get("operation")
                        .and_then(Value::as_str)
                        .unwrap_or("Update")
                        .into(),
                    api_version: e
                        .get("apiVersion")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .into(),
                    time: e.get("time").and_then(Value::as_str).map(str::to_string),
                    subresource: e
                        .get("subresource")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                    set: e
                        .get("fieldsV1")
                        .map(FieldSet::from_json)
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn set_entries(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.set.is_empty())
        .map(Entry::to_json)
        .collect();
    if let Value::Object(m) = obj {
        let meta = m.entry("metadata").or_insert_with(|| json!({}));
        if let Value::Object(meta) = meta {
            if list.is_empty() {
                meta.remove("managedFields");
            } else {
                meta.insert("managedFields".into(), Value::Array(list));
            }
        }
    }
}

/// `.spec.template.spec.containers[name="web"].image`.
fn render_path(path: &[String]) -> String {
    let mut out = String::new();
    for el in path {
        if let Some(f) = el.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = el.strip_prefix("k:") {
            let parts: Vec<String> = serde_json::from_str::<Map<String, Value>>(k)
                .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                .unwrap_or_default();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = el.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        } else if let Some(i) = el.strip_prefix("i:") {
            out.push_str(&format!("[{i}]"));
        }
    }
    out
}

/// SSA merge of `applied` into `live`: maps merge, keyed lists merge item by item, sets union,
/// atomic values are replaced.
fn apply_merge(live: &mut Value, applied: &Value, f: Field) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) if !f.atomic => {
            for (k, av) in a {
                let cf = schema::field(f.ty, k);
                if av.is_null() {
                    l.remove(k);
                    continue;
                }
                match l.get_mut(k) {
                    Some(lv) => apply_merge(lv, av, cf),
                    None => {
                        l.insert(k.clone(), av.clone());
                    }
                }
            }
        }
        (Value::Array(l), Value::Array(a)) if f.list != ListKind::Atomic => match f.list {
            ListKind::Set => {
                for v in a {
                    if !l.contains(v) {
                        l.push(v.clone());
                    }
                }
            }
            ListKind::Map { keys, .. } => {
                let item_field = Field {
                    ty: f.ty,
                    list: ListKind::Atomic,
                    atomic: false,
                };
                for av in a {
                    let key = item_key(av, keys);
                    match l.iter_mut().find(|it| item_key(it, keys) == key) {
                        Some(lv) => apply_merge(lv, av, item_field),
                        None => l.push(av.clone()),
                    }
                }
            }
            ListKind::Atomic => {}
        },
        (l, a) => *l = a.clone(),
    }
}

/// Removes the value at `path` (FieldsV1 elements) from `obj`, if present.
fn remove_at(obj: &mut Value, path: &[String], f: Field) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if let Some(name) = first.strip_prefix("f:") {
        let Value::Object(m) = obj else { return };
        if rest.is_empty() {
            m.remove(name);
        } else if let Some(child) = m.get_mut(name) {
            remove_at(child, rest, schema::field(f.ty, name));
        }
    } else if let Some(k) = first.strip_prefix("k:") {
        let (Value::Array(items), ListKind::Map { keys, .. }) = (obj, f.list) else {
            return;
        };
        let Ok(want) = serde_json::from_str::<Map<String, Value>>(k) else {
            return;
        };
        let mut want: Vec<(String, Value)> = want.into_iter().collect();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        let matches = |it: &Value| {
            let mut key = item_key(it, keys);
            key.sort_by(|a, b| a.0.cmp(&b.0));
            key == want
        };
        if rest.is_empty() {
            items.retain(|it| !matches(it));
        } else if let Some(it) = items.iter_mut().find(|it| matches(it)) {
            let item_field = Field {
                ty: f.ty,
                list: ListKind::Atomic,
                atomic: false,
            };
            remove_at(it, rest, item_field);
        }
    } else if let Some(v) = first.strip_prefix("v:") {
        let (Value::Array(items), Ok(v)) = (obj, serde_json::from_str::<Value>(v)) else {
            return;
        };
        items.retain(|it| *it != v);
    }
}

fn strip_managed_fields(v: &mut Value) {
    if let Some(Value::Object(meta)) = v.get_mut("metadata") {
        meta.remove("managedFields");
    }
}

/// Applies `applied` (the user's intent) for `manager` onto `live` (None = create). Returns the
/// new object with managedFields updated. A field owned by another manager with a different
/// value is a 409 Conflict listing the fields (unless `force`, which takes ownership).
pub fn server_side_apply(
    info: &ResourceInfo,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApiError> {
    server_side_apply_shaped(info, Shape::of(info), live, applied, manager, force, now)
}

/// [`server_side_apply`] for objects structured as `shape` (custom kinds).
pub fn server_side_apply_shaped(
    info: &ResourceInfo,
    shape: Shape,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApiError> {
    let root = shape.0;
    if !applied.is_object() {
        return Err(ApiError::bad_request(
            "error decoding YAML: the apply patch must be an object",
        ));
    }
    let mut intent = applied.clone();
    strip_managed_fields(&mut intent);
    let has_status = info.subresources.contains(&"status");
    if has_status {
        if let Value::Object(m) = &mut intent {
            m.remove("status");
        }
    }
    let api_version = applied
        .get("apiVersion")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| info.api_version());
    let applied_set = fields_of(root, &trackable(&intent, has_status), false);
    let is_me =
        |e: &Entry| e.manager == manager && e.operation == "Apply" && e.subresource.is_none();

    let Some(live) = live else {
        let mut obj = intent;
        let entry = Entry {
            manager: manager.to_string(),
            operation: "Apply".into(),
            api_version,
            time: Some(now.to_string()),
            subresource: None,
            set: applied_set,
        };
        set_entries(&mut obj, &[entry]);
        return Ok(obj);
    };

    let mut entries = entries_of(live);
    let mut merged = live.clone();
    strip_managed_fields(&mut merged);
    let mut base = merged.clone();
    apply_merge(&mut merged, &intent, root);

    // Conflicts: fields this apply changes that another manager owns.
    let (touched, _) = changed_fields(
        root,
        &trackable(&base, has_status),
        &trackable(&merged, has_status),
    );
    let touched_paths = touched.members();
    let mut conflicts: Vec<(String, Vec<String>, usize)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if is_me(e) {
            continue;
        }
        for p in &touched_paths {
            if e.set.contains(p) {
                conflicts.push((e.describe(), p.clone(), i));
            }
        }
    }
    if !conflicts.is_empty() {
        if !force {
            return Err(conflict_error(&conflicts));
        }
        for (_, p, i) in &conflicts {
            if let Some(e) = entries.get_mut(*i) {
                e.set.remove(p);
            }
        }
    }

    // Prune what this manager applied before, no longer applies and nobody else owns.
    let previous = entries.iter().find(|e| is_me(e)).map(|e| e.set.clone());
    if let Some(prev) = previous {
        let mut others = FieldSet::default();
        for e in entries.iter().filter(|e| !is_me(e)) {
            others.union(&e.set);
        }
        let mut dropped: Vec<Vec<String>> = prev
            .members()
            .into_iter()
            .filter(|p| !applied_set.contains(p) && !others.contains(p))
            .collect();
        // A path under another dropped one goes with it (removing a keyed item's key field
        // first would leave the item unfindable); the rest deepest first.
        let whole = dropped.clone();
        dropped.retain(|p| !whole.iter().any(|q| q.len() < p.len() && p.starts_with(q)));
        dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in dropped {
            remove_at(&mut merged, &p, root);
        }
    }

    let entry = Entry {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version,
        time: Some(now.to_string()),
        subresource: None,
        set: applied_set,
    };
    match entries.iter_mut().find(|e| is_me(e)) {
        Some(e) => *e = entry,
        None => entries.push(entry),
    }
    base = merged;
    set_entries(&mut base, &entries);
    Ok(base)
}

/// 409 with upstream's message and `FieldManagerConflict` causes.
fn conflict_error(conflicts: &[(String, Vec<String>, usize)]) -> ApiError {
    let mut sorted: Vec<(String, String)> = conflicts
        .iter()
        .map(|(m, p, _)| (m.clone(), render_path(p)))
        .collect();
    sorted.sort();
    let causes: Vec<Value> = sorted
        .iter()
        .map(|(m, p)| {
            json!({"reason": "FieldManagerConflict", "message": format!("conflict with {m}"), "field": p})
        })
        .collect();
    let message = if sorted.len() == 1 {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            sorted[0].0, sorted[0].1
        )
    } else {
        let mut lines: Vec<String> = Vec::new();
        let mut current: Option<&str> = None;
        for (m, p) in &sorted {
            if current != Some(m.as_str()) {
                lines.push(format!("conflicts with {m}:"));
                current = Some(m.as_str());
            }
            lines.push(format!("- {p}"));
        }
        format!(
            "Apply failed with {} conflicts: {}",
            sorted.len(),
            lines.join("\n")
        )
    };
    let mut err = ApiError::new(409, "Conflict", message);
    err.details = Some(json!({"causes": causes}));
    err
}

/// Records `manager` (operation "Update") as owner of the fields it changed from `old` to `new`
/// (create: all fields). Called for create/update/patch so apply conflicts are detected later.
pub fn record_update(
    info: &ResourceInfo,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    now: &str,
) {
    record_update_shaped(info, Shape::of(info), old, new, manager, now)
}

/// [`record_update`] for objects structured as `shape` (custom kinds).
pub fn record_update_shaped(
    info: &ResourceInfo,
    shape: Shape,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    now: &str,
) {
    let root = shape.0;
    let api_version = info.api_version();
    let (mut entries, touched, removed) = match old {
        Some(old) => {
            let (touched, removed) =
                changed_fields(root, &trackable(old, false), &trackable(new, false));
            (entries_of(old), touched, removed)
        }
        None => (
            Vec::new(),
            fields_of(root, &trackable(new, false), true),
            FieldSet::default(),
        ),
    };
    if touched.is_empty() {
        set_entries(new, &entries);
        return;
    }
    let touched_paths = touched.members();
    let removed_paths = removed.members();
    let is_me = |e: &Entry| {
        e.manager == manager
            && e.operation == "Update"
            && e.api_version == api_version
            && e.subresource.is_none()
    };
    // Updaters take fields away from everyone else (no conflicts for updates).
    for e in entries.iter_mut().filter(|e| !is_me(e)) {
        for p in &touched_paths {
            e.set.remove(p);
        }
    }
    let mut mine = entries
        .iter()
        .find(|e| is_me(e))
        .map(|e| e.set.clone())
        .unwrap_or_default();
    mine.union(&touched);
    for p in &removed_paths {
        mine.remove(p);
    }
    let entry = Entry {
        manager: manager.to_string(),
        operation: "Update".into(),
        api_version: api_version.clone(),
        time: Some(now.to_string()),
        subresource: None,
        set: mine,
    };
    match entries.iter_mut().find(|e| is_me(e)) {
        Some(e) => *e = entry,
        None => entries.push(entry),
    }
    set_entries(new, &entries);
}
