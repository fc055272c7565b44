//! Structural schemas of CustomResourceDefinitions (`openAPIV3Schema`): parsing with the
//! structural checks, defaulting, pruning of unknown fields and validation with upstream's
//! messages, the list types server-side apply needs, and the hook through which
//! `x-kubernetes-validations` CEL rules are checked ([`RuleEngine`], implemented by the API
//! server over skiff-cel).
//!
//! What the API server does with a custom object, in upstream's order: [`Schema::prune`]
//! (unknown fields; with `fieldValidation=Strict` each returned path is an error, with `Warn`
//! a warning — print them with [`unknown_field`]), [`Schema::apply_defaults`], then
//! [`Schema::validate`] (ObjectMeta of the root is the server's own check).

pub mod columns;
mod node;
mod shape;
pub use shape::OBJECT_META;
mod values;

use serde_json::Value;

use crate::validate::Errs;
use crate::Cause;
use node::{Additional, Node};

/// A parsed structural schema (one CRD version's `openAPIV3Schema`).
#[derive(Debug, Clone)]
pub struct Schema {
    raw: Value,
    root: Node,
}

/// Compiles one rule (`Err` = upstream's detail, e.g. `compilation failed: …`). skiff-api has
/// no CEL of its own: the server registers skiff-cel's compiler once at start-up with
/// [`set_rule_compiler`], and CRD validation then rejects rules that do not compile.
pub type RuleCompiler = fn(&Rule) -> Result<(), String>;

static RULE_COMPILER: std::sync::OnceLock<RuleCompiler> = std::sync::OnceLock::new();

/// Registers the rule compiler CRD validation uses (the first registration wins; returns
/// whether this one did).
pub fn set_rule_compiler(f: RuleCompiler) -> bool {
    RULE_COMPILER.set(f).is_ok()
}

pub(crate) fn rule_compiler() -> Option<RuleCompiler> {
    RULE_COMPILER.get().copied()
}

/// Go's `%#v` of an `apiextensions.ValidationRule` (the value upstream prints in a rule's
/// compile error).
pub(crate) fn go_rule(r: &Rule) -> String {
    let reason = match &r.reason {
        Some(x) => format!("(*apiextensions.FieldValueErrorReason)({x:?})"),
        None => "(*apiextensions.FieldValueErrorReason)(nil)".into(),
    };
    let old = if r.optional_old_self {
        "(*bool)(true)"
    } else {
        "(*bool)(nil)"
    };
    format!(
        "apiextensions.ValidationRule{{Rule:{:?}, Message:{:?}, MessageExpression:{:?}, Reason:{reason}, FieldPath:{:?}, OptionalOldSelf:{old}}}",
        r.rule,
        r.message.as_deref().unwrap_or(""),
        r.message_expression.as_deref().unwrap_or(""),
        r.field_path.as_deref().unwrap_or(""),
    )
}

/// How upstream reports a pruned field: `unknown field "spec.foo"` (the path without its
/// leading dot) — the text of a Strict-mode error cause and of a Warn-mode warning.
pub fn unknown_field(path: &str) -> String {
    format!("unknown field {:?}", path.strip_prefix('.').unwrap_or(path))
}

/// Prefixes root-relative cause fields (`properties[spec].type`) with where the schema sits
/// (`spec.versions[0].schema.openAPIV3Schema`).
pub fn prefix_causes(prefix: &str, causes: Vec<Cause>) -> Vec<Cause> {
    if prefix.is_empty() {
        return causes;
    }
    causes
        .into_iter()
        .map(|mut c| {
            c.field = if c.field.is_empty() {
                prefix.to_string()
            } else if c.field.starts_with('[') {
                format!("{prefix}{}", c.field)
            } else {
                format!("{prefix}.{}", c.field)
            };
            c
        })
        .collect()
}

/// `x-kubernetes-list-type` of an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    Atomic,
    Set,
    /// A map keyed by these fields (`x-kubernetes-list-map-keys`).
    Map(Vec<String>),
}

/// One `x-kubernetes-validations` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub rule: String,
    pub message: Option<String>,
    pub message_expression: Option<String>,
    pub reason: Option<String>,
    pub field_path: Option<String>,
    pub optional_old_self: bool,
}

/// What a [`RuleEngine`] says about one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleOutcome {
    Pass,
    /// The rule evaluated to false: the message to report.
    Fail(String),
    /// The rule could not be compiled or evaluated.
    Error(String),
}

/// Evaluates `x-kubernetes-validations` rules (`self` = the value at the rule's node,
/// `oldSelf` = the old value on updates when it exists).
pub trait RuleEngine: Send + Sync {
    fn check(&self, rule: &Rule, self_value: &Value, old_self: Option<&Value>) -> RuleOutcome;
}

impl Schema {
    /// Parses an `openAPIV3Schema`; Err lists what makes it non-structural (field paths
    /// relative to the schema root; the caller prefixes them).
    pub fn parse(v: &Value) -> Result<Schema, Vec<Cause>> {
        Self::parse_at(v, "")
    }

    /// [`Schema::parse`] for a schema at `prefix` (e.g.
    /// `spec.versions[0].schema.openAPIV3Schema`): causes carry full field paths, as do the
    /// paths upstream quotes inside messages (`because it is defined in …`).
    pub fn parse_at(v: &Value, prefix: &str) -> Result<Schema, Vec<Cause>> {
        let mut e = Errs::default();
        let mut root = node::parse_node(v, "", &mut e, 0);
        node::check(&root, v, prefix, &mut e);
        if !e.0.is_empty() {
            // Upstream sorts the structural causes by their text (map order is random).
            e.0.sort_by(|a, b| (&a.field, &a.message).cmp(&(&b.field, &b.message)));
            e.0.dedup();
            return Err(prefix_causes(prefix, e.0));
        }
        // Defaults are themselves pruned and defaulted when the CRD is loaded; a default
        // that then fails its own schema makes the schema invalid.
        let mut bad = Vec::new();
        fix_defaults(&mut root, "", &mut bad, 0);
        if !bad.is_empty() {
            return Err(prefix_causes(prefix, bad));
        }
        Ok(Schema {
            raw: v.clone(),
            root,
        })
    }

    /// The schema as given.
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// Applies `default`s to `obj` (a whole custom object).
    pub fn apply_defaults(&self, obj: &mut Value) {
        shape::default(obj, &self.root, 0);
    }

    /// Removes fields the schema does not know (respecting
    /// `x-kubernetes-preserve-unknown-fields` and embedded resources); returns the removed
    /// fields' paths (e.g. `.spec.foo`) for `fieldValidation`.
    pub fn prune(&self, obj: &mut Value) -> Vec<String> {
        let mut out = Vec::new();
        shape::prune(obj, &self.root, true, true, "", &mut out, 0);
        out
    }

    /// Validates a whole custom object (`old` on updates); Causes carry upstream's messages and
    /// field paths (e.g. `spec.replicas`).
    ///
    /// Passes in upstream's order: the OpenAPI schema (kube-openapi names values by dotted
    /// paths with `.0` for items: `spec.items.0.name`), embedded resources' TypeMeta and
    /// ObjectMeta, list-type uniqueness, then `x-kubernetes-validations` when `rules` is given
    /// (those use `field.Path` syntax: `spec.items[0]`, `spec.map[key]`). On updates values
    /// equal to the old object's are not re-validated (upstream's validation ratcheting; only
    /// map-list items correlate with old items), old list-type errors are not repeated, and
    /// transition rules (`oldSelf`) run only where an old value exists (or
    /// `optionalOldSelf`). A rule's failure message is the engine's text, else the rule's
    /// `message`, else `failed rule: <rule>`.
    pub fn validate(
        &self,
        obj: &Value,
        old: Option<&Value>,
        rules: Option<&dyn RuleEngine>,
    ) -> Vec<Cause> {
        let mut e = Errs::default();
        values::openapi(&self.root, obj, old, &mut e);
        values::embedded(&self.root, obj, "", &mut e, 0);
        let mut lists = Errs::default();
        values::list_types(&self.root, obj, "", &mut lists, 0);
        if let Some(old) = old {
            // Duplicates the old object already had do not fail an update (upstream reports
            // only new list-type errors).
            let mut before = Errs::default();
            values::list_types(&self.root, old, "", &mut before, 0);
            lists.0.retain(|c| !before.0.contains(c));
        }
        e.0.extend(lists.0);
        if let Some(engine) = rules {
            values::rules(&self.root, obj, old, "", engine, &mut e, 0);
        }
        e.0
    }

    /// Whether any node carries `x-kubernetes-validations`.
    pub fn has_rules(&self) -> bool {
        fn any(n: &Node, d: usize) -> bool {
            d < node::MAX_DEPTH
                && (!n.rules.is_empty()
                    || n.properties.values().any(|p| any(p, d + 1))
                    || n.items.as_deref().is_some_and(|i| any(i, d + 1))
                    || matches!(&n.additional, Some(Additional::Schema(s)) if any(s, d + 1))
                    || n.all_of.iter().any(|s| any(s, d + 1)))
        }
        any(&self.root, 0)
    }

    /// Every rule with its place in the schema in upstream's field-path syntax, root-relative
    /// (`properties[spec].x-kubernetes-validations[0]`; prefix it like other schema causes),
    /// for compiling the rules when the CRD is written.
    pub fn rules(&self) -> Vec<(String, Rule)> {
        fn walk(n: &Node, path: &str, out: &mut Vec<(String, Rule)>, d: usize) {
            if d > node::MAX_DEPTH {
                return;
            }
            let join = |k: &str| {
                if path.is_empty() {
                    k.to_string()
                } else {
                    format!("{path}.{k}")
                }
            };
            for (i, r) in n.rules.iter().enumerate() {
                out.push((
                    format!("{}[{i}]", join("x-kubernetes-validations")),
                    r.clone(),
                ));
            }
            for (k, p) in &n.properties {
                walk(p, &format!("{}[{k}]", join("properties")), out, d + 1);
            }
            if let Some(i) = &n.items {
                walk(i, &join("items"), out, d + 1);
            }
            if let Some(Additional::Schema(s)) = &n.additional {
                walk(s, &join("additionalProperties"), out, d + 1);
            }
        }
        let mut out = Vec::new();
        walk(&self.root, "", &mut out, 0);
        out
    }

    /// The list type of the array at `path` (field names from the root), if the schema has one.
    ///
    /// Arrays on the way are stepped through (`["spec", "ports", "targets"]` reads the
    /// `targets` of the `ports` items); an array without `x-kubernetes-list-type` is atomic,
    /// as upstream treats it.
    pub fn list_type(&self, path: &[&str]) -> Option<ListType> {
        let mut n = &self.root;
        for name in path {
            while n.ty == "array" {
                n = n.items.as_deref()?;
            }
            n = match n.properties.get(*name) {
                Some(p) => p,
                None => match &n.additional {
                    Some(Additional::Schema(s)) => s,
                    _ => return None,
                },
            };
        }
        if n.ty != "array" {
            return None;
        }
        Some(match n.list_type.as_deref() {
            Some("set") => ListType::Set,
            Some("map") => ListType::Map(n.list_map_keys.clone()),
            _ => ListType::Atomic,
        })
    }
}

/// Prunes and defaults every `default` against its own node, then validates it (upstream's
/// CRD validation: `default` must be pruned and must validate).
fn fix_defaults(n: &mut Node, path: &str, bad: &mut Vec<Cause>, d: usize) {
    if d > node::MAX_DEPTH {
        return;
    }
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    for (k, p) in n.properties.iter_mut() {
        fix_defaults(p, &format!("{}[{k}]", join("properties")), bad, d + 1);
    }
    if let Some(i) = n.items.as_deref_mut() {
        fix_defaults(i, &join("items"), bad, d + 1);
    }
    if let Some(Additional::Schema(s)) = n.additional.as_mut() {
        fix_defaults(s, &join("additionalProperties"), bad, d + 1);
    }
    let Some(def) = n.default.take() else {
        return;
    };
    let mut pruned = def.clone();
    if !def.is_null() {
        let mut removed = Vec::new();
        shape::prune(&mut pruned, n, n.embedded, false, "", &mut removed, 0);
        if !removed.is_empty() {
            bad.push(Cause {
                reason: "FieldValueInvalid".into(),
                message: format!(
                    "Invalid value: {}: must not have unknown fields",
                    node::shown(&def)
                ),
                field: join("default"),
            });
        }
        // Upstream validates the default as written, with an empty value path (so its
        // messages read ` in body should …`).
        let mut e = Errs::default();
        values::openapi(n, &def, None, &mut e);
        for c in e.0 {
            bad.push(Cause {
                field: if c.field.is_empty() {
                    join("default")
                } else {
                    format!("{}.{}", join("default"), c.field)
                },
                ..c
            });
        }
    }
    // What is applied is the pruned default (defaulting then fills its own nested defaults).
    let def = pruned;
    n.default = Some(def);
}
