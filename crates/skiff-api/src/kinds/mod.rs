//! One home per kind: every built-in kind skiff serves is one module here holding everything the
//! server knows about it (its discovery data, defaulting, create/update preparation, validation,
//! Table printer, strategic-merge root type and extra field selectors), and [`registry`] lists
//! them. Discovery, OpenAPI, REST, defaulting, validation, patches and tables all dispatch
//! through the registry; shared building blocks (pod-spec defaulting and validation, ObjectMeta
//! and name rules, the table cell helpers) stay in `defaults`, `validate` and `table`.
//!
//! Adding a kind: one module under its group with a `pub(crate) const KIND: Kind`, one line in
//! [`REGISTRY`], and its entry in the generated protobuf table.

use serde_json::{Map, Value};

use crate::patch::schema::Ty;
use crate::table::{Col, AGE, NAME};
use crate::validate::{Errs, NameRule};
use crate::ResourceInfo;

mod admissionregistration;
mod apiextensions;
mod apiregistration;
mod apps;
mod authentication;
mod authorization;
mod autoscaling;
mod batch;
pub mod certificates;
mod coordination;
pub(crate) mod core;
mod discovery;
mod events;
mod metrics;
mod networking;
pub mod policy;
mod rbac;
pub mod scheduling;
mod storage;

/// What a kind module imports: the strategy types and the shared building blocks.
pub(crate) mod prelude {
    pub(crate) use super::{
        boolean, integer, not_supported_field_error, text, Field, Kind, Table, ALL, FULL, GET_LIST,
        NAMESPACE_FIELD, NAME_FIELD, NS_VERBS,
    };
    pub(crate) use crate::defaults::{
        array, child, default, is_empty, pod_condition_patterns, pod_template,
    };
    pub(crate) use crate::patch::schema::Ty;
    pub(crate) use crate::table::*;
    pub(crate) use crate::validate::*;
    pub(crate) use crate::ResourceInfo;
}

/// Verbs of an ordinary collection resource (upstream's default REST storage).
pub(crate) const FULL: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Namespaces have no `deletecollection` upstream.
pub(crate) const NS_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

pub(crate) const ALL: &[&str] = &["all"];

/// Read-only kinds computed on request (ComponentStatus).
pub(crate) const GET_LIST: &[&str] = &["get", "list"];

/// A kind's strategy: static data and plain function pointers (a kind leaves out what it does
/// not need by taking [`Kind::BASE`]'s no-op defaults).
pub struct Kind {
    /// Discovery data: GVK/GVR, scope, short names, categories, verbs, subresources.
    pub info: ResourceInfo,
    /// Upstream's `SetDefaults_*` on the JSON object (fields already set are kept).
    pub(crate) defaults: fn(&mut Map<String, Value>),
    /// Create-only strategy steps that need the server-assigned uid (before defaulting).
    pub(crate) prepare_create: fn(&mut Value),
    /// Update-only strategy steps (after defaulting, main and status writes): `(old, new)`.
    pub(crate) prepare_update: fn(&Value, &mut Value),
    /// The rule `metadata.name` follows.
    pub(crate) name_rule: NameRule,
    /// Kind-specific validation after ObjectMeta (`old` = the stored object on updates, main
    /// and status writes alike).
    pub(crate) validate: fn(&mut Errs, &Map<String, Value>, Option<&Value>),
    /// The `meta.k8s.io/v1 Table` printer.
    pub(crate) table: Table,
    /// The type at the root of the object, for strategic merge and server-side apply list keys.
    pub(crate) patch_root: Ty,
    /// The field labels a field selector may name (upstream's field label conversion func and
    /// `GetAttrs` for the kind) and how each reads from the object.
    pub(crate) fields: &'static [Field],
    /// The 400 message for a label not in `fields` (upstream's wording differs by kind).
    pub(crate) field_error: fn(&str) -> String,
    /// A delete naming no propagation policy orphans the dependents (upstream's
    /// `DefaultGarbageCollectionPolicy`).
    pub(crate) orphans_by_default: bool,
    /// Further versions the kind is served at, each converted to and from the stored version
    /// (`info.version`, the preferred one) at the REST edge.
    pub(crate) alt_versions: &'static [AltVersion],
}

/// A built-in kind served at one more version: plain conversion functions to and from the
/// stored version (they set `apiVersion`). Defaulting, validation and tables run on the stored
/// version's shape.
pub struct AltVersion {
    pub version: &'static str,
    /// A stored object as this version shows it.
    pub from_stored: fn(Value) -> Value,
    /// An object of this version as it is stored.
    pub to_stored: fn(Value) -> Value,
}

/// The conversion for `info` when it names an extra version of its kind (None: the stored one).
fn alt_of(info: &ResourceInfo) -> Option<&'static AltVersion> {
    let kind = by_group_kind(info.group, info.kind)?;
    if kind.info.version == info.version {
        return None;
    }
    kind.alt_versions.iter().find(|a| a.version == info.version)
}

/// An object at `info`'s version as the stored version holds it (unchanged for kinds served at
/// one version).
pub fn to_stored(info: &ResourceInfo, obj: Value) -> Value {
    match alt_of(info) {
        Some(a) => (a.to_stored)(obj),
        None => obj,
    }
}

/// A stored object as `info`'s version shows it.
pub fn from_stored(info: &ResourceInfo, obj: Value) -> Value {
    match alt_of(info) {
        Some(a) => (a.from_stored)(obj),
        None => obj,
    }
}

/// Whether `info` is an extra served version of a stored kind (namespace cleanup and the
/// like skip these: the objects are the stored version's).
pub fn is_alt_version(info: &ResourceInfo) -> bool {
    alt_of(info).is_some()
}

/// A kind's Table printer: columns (kube-apiserver's printer column definitions) and rows.
pub(crate) struct Table {
    pub(crate) columns: &'static [Col],
    /// The row's cells, one per column.
    pub(crate) cells: fn(&Value, jiff::Timestamp) -> Vec<Value>,
    /// Row conditions (e.g. a finished Pod's `Completed`), if any.
    pub(crate) conditions: fn(&Value) -> Option<Value>,
}

impl Table {
    /// Name and Age only (upstream's default printer).
    pub(crate) const BASE: Table = Table {
        columns: &[NAME, AGE],
        cells: name_age_cells,
        conditions: |_| None,
    };
}

fn name_age_cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = crate::table::name_age(obj, now);
    vec![Value::String(name), Value::String(age)]
}

impl Kind {
    /// A kind with no hooks: no defaults, no preparation, ObjectMeta validation only with
    /// DNS-1123 subdomain names, Name/Age table, no list merge keys, plain field selectors.
    pub(crate) const BASE: Kind = Kind {
        info: ResourceInfo {
            group: "",
            version: "",
            kind: "",
            list_kind: "",
            plural: "",
            singular: "",
            namespaced: true,
            short_names: &[],
            categories: &[],
            verbs: FULL,
            subresources: &[],
        },
        defaults: |_| {},
        prepare_create: |_| {},
        prepare_update: |_, _| {},
        name_rule: NameRule::Subdomain,
        validate: |_, _, _| {},
        table: Table::BASE,
        patch_root: Ty::Other,
        fields: META_FIELDS,
        field_error: default_field_error,
        orphans_by_default: false,
        alt_versions: &[],
    };
}

/// One selectable field: the label a field selector names and the value it compares against
/// (upstream's typed value as text: booleans "true"/"false", numbers in decimal, unset = the
/// zero value).
pub struct Field {
    pub label: &'static str,
    pub value: fn(&Value) -> String,
}

/// `metadata.name`.
pub(crate) const NAME_FIELD: Field = Field {
    label: "metadata.name",
    value: |o| text(o, "/metadata/name"),
};
/// `metadata.namespace` (empty for cluster-scoped objects).
pub(crate) const NAMESPACE_FIELD: Field = Field {
    label: "metadata.namespace",
    value: |o| text(o, "/metadata/namespace"),
};
/// What every kind without its own conversion func supports
/// (`runtime.DefaultMetaV1FieldSelectorConversion`).
pub(crate) const META_FIELDS: &[Field] = &[NAME_FIELD, NAMESPACE_FIELD];

/// `DefaultMetaV1FieldSelectorConversion`'s message.
pub(crate) fn default_field_error(label: &str) -> String {
    format!(
        "{label:?} is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
    )
}

/// The message of the core kinds' own conversion funcs.
pub(crate) fn not_supported_field_error(label: &str) -> String {
    format!("field label not supported: {label}")
}

/// A string field (unset = "").
pub(crate) fn text(o: &Value, pointer: &str) -> String {
    o.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// A boolean field as Go's `strconv.FormatBool` (unset = "false").
pub(crate) fn boolean(o: &Value, pointer: &str) -> String {
    o.pointer(pointer)
        .and_then(Value::as_bool)
        .unwrap_or(false)
        .to_string()
}

/// An integer field in decimal (unset = "0").
pub(crate) fn integer(o: &Value, pointer: &str) -> String {
    o.pointer(pointer)
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .to_string()
}

/// The served kinds, core group first (kubectl resolves ambiguous short names like `ev` by
/// discovery order, and upstream lists the legacy group first). One line per kind.
static REGISTRY: &[Kind] = &[
    core::componentstatus::KIND,
    core::configmap::KIND,
    core::endpoints::KIND,
    core::event::KIND,
    core::limitrange::KIND,
    core::namespace::KIND,
    core::node::KIND,
    core::persistentvolumeclaim::KIND,
    core::persistentvolume::KIND,
    core::pod::KIND,
    core::podtemplate::KIND,
    core::replicationcontroller::KIND,
    core::resourcequota::KIND,
    core::secret::KIND,
    core::serviceaccount::KIND,
    core::service::KIND,
    apps::controllerrevision::KIND,
    apps::daemonset::KIND,
    apps::deployment::KIND,
    apps::replicaset::KIND,
    apps::statefulset::KIND,
    events::event::KIND,
    authentication::SELF_SUBJECT_REVIEW,
    authentication::TOKEN_REVIEW,
    authorization::LOCAL_SUBJECT_ACCESS_REVIEW,
    authorization::SELF_SUBJECT_ACCESS_REVIEW,
    authorization::SELF_SUBJECT_RULES_REVIEW,
    authorization::SUBJECT_ACCESS_REVIEW,
    autoscaling::horizontalpodautoscaler::KIND,
    // Upstream lists cronjobs before jobs (and `kubectl get all` prints them in that order).
    batch::cronjob::KIND,
    batch::job::KIND,
    // Upstream's group priority puts RBAC before discovery and coordination.
    rbac::CLUSTER_ROLE_BINDING,
    rbac::CLUSTER_ROLE,
    rbac::ROLE_BINDING,
    rbac::ROLE,
    storage::storageclass::KIND,
    certificates::KIND,
    networking::ingressclass::KIND,
    networking::ingress::KIND,
    networking::networkpolicy::KIND,
    policy::poddisruptionbudget::KIND,
    admissionregistration::webhooks::MUTATING,
    admissionregistration::webhooks::VALIDATING,
    admissionregistration::policies::POLICY,
    admissionregistration::policies::BINDING,
    apiextensions::CRD,
    apiregistration::API_SERVICE,
    scheduling::priorityclass::KIND,
    discovery::endpointslice::KIND,
    coordination::lease::KIND,
    // Served like an aggregated API (metrics-server's), after the built-in groups.
    metrics::NODE_METRICS,
    metrics::POD_METRICS,
];

/// Every served kind, in discovery order.
pub fn registry() -> &'static [Kind] {
    REGISTRY
}

/// The strategy of a kind by API group and kind (any served version).
pub fn by_group_kind(group: &str, kind: &str) -> Option<&'static Kind> {
    REGISTRY
        .iter()
        .find(|k| k.info.group == group && k.info.kind == kind)
}

/// The first served kind named `kind` in any group (objects carry only their kind when a field
/// selector reads them; a name served in two groups shares its field selectors).
pub(crate) fn by_kind_name(kind: &str) -> Option<&'static Kind> {
    REGISTRY.iter().find(|k| k.info.kind == kind)
}

/// The strategy for `info` ([`Kind::BASE`] for a kind skiff does not serve).
pub(crate) fn of(info: &ResourceInfo) -> &'static Kind {
    by_group_kind(info.group, info.kind).unwrap_or(&Kind::BASE)
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use serde_json::json;

    use super::*;

    #[test]
    fn registry_entries_are_consistent() {
        let mut gvr = HashSet::new();
        let mut gk = HashSet::new();
        let mut short: HashMap<&str, &str> = HashMap::new();
        for k in registry() {
            let i = &k.info;
            assert!(gvr.insert((i.group, i.version, i.plural)), "{i:?}");
            assert!(gk.insert((i.group, i.kind)), "{i:?}");
            assert_eq!(i.list_kind, format!("{}List", i.kind));
            assert_eq!(i.singular, i.kind.to_lowercase());
            // metrics.k8s.io names NodeMetrics and PodMetrics `nodes` and `pods`.
            assert!(
                i.plural.starts_with(i.singular)
                    || i.plural.starts_with(i.singular.trim_end_matches('y'))
                    || i.group == "metrics.k8s.io",
                "{i:?}"
            );
            // Stored kinds can be read; review kinds are create-only; metrics are read-only.
            assert!(i.verbs.contains(&"get") || i.verbs == ["create"], "{i:?}");
            // A short name may be shared only by one kind served in two groups (`ev`).
            for s in i.short_names {
                let prev = short.insert(s, i.kind);
                assert!(prev.is_none_or(|p| p == i.kind), "{s} for {i:?}");
            }
            // Lookups find the entry itself.
            assert!(std::ptr::eq(of(i), k));
            let by_plural = crate::resources::by_plural(i.group, i.version, i.plural);
            assert_eq!(by_plural, Some(i));
            assert_eq!(crate::resources::by_kind(&i.api_version(), i.kind), Some(i));
            assert_eq!(
                i.orphans_by_default(),
                (i.group, i.kind) == ("batch", "Job")
            );
        }
    }

    #[test]
    fn every_table_has_a_name_column_and_one_cell_per_column() {
        let now: jiff::Timestamp = "2026-11-27T01:10:00Z".parse().expect("time");
        let objects = [
            json!({}),
            json!({"metadata": {"name": "a", "creationTimestamp": "2026-11-27T01:00:00Z"},
                   "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
        ];
        for k in registry() {
            let names: Vec<&str> = k.table.columns.iter().map(|c| c.0).collect();
            assert!(names.contains(&"Name"), "{}: {names:?}", k.info.kind);
            let unique: HashSet<&str> = names.iter().copied().collect();
            assert_eq!(unique.len(), names.len(), "{}", k.info.kind);
            for obj in &objects {
                let cells = (k.table.cells)(obj, now);
                assert_eq!(cells.len(), names.len(), "{} {obj}", k.info.kind);
            }
        }
    }

    #[test]
    fn unserved_kinds_get_the_base_strategy() {
        let info = ResourceInfo {
            group: "storage.k8s.io",
            kind: "CSIDriver",
            ..Kind::BASE.info
        };
        let kind = of(&info);
        assert_eq!(kind.info.kind, "");
        let columns: Vec<&str> = kind.table.columns.iter().map(|c| c.0).collect();
        assert_eq!(columns, ["Name", "Age"]);
        assert_eq!(kind.patch_root, Ty::Other);
        assert!(by_group_kind("storage.k8s.io", "CSIDriver").is_none());
        assert!(by_kind_name("Job").is_some_and(|k| k.info.group == "batch"));
    }
}
