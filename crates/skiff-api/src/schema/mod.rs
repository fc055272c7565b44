//! Structural schemas of CustomResourceDefinitions (`openAPIV3Schema`): parsing with the
//! structural checks, defaulting, pruning of unknown fields and validation with upstream's
//! messages, the list types server-side apply needs, and the hook through which
//! `x-kubernetes-validations` CEL rules are checked ([`RuleEngine`], implemented by the API
//! server over skiff-cel).
//!
//! Interface skeleton: the bodies are filled in on the `i14-schema` branch.

pub mod columns;

use serde_json::Value;

use crate::Cause;

/// A parsed structural schema (one CRD version's `openAPIV3Schema`).
#[derive(Debug, Clone)]
pub struct Schema {
    raw: Value,
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
        Ok(Schema { raw: v.clone() })
    }

    /// The schema as given.
    pub fn raw(&self) -> &Value {
        &self.raw
    }

    /// Applies `default`s to `obj` (a whole custom object).
    pub fn apply_defaults(&self, _obj: &mut Value) {}

    /// Removes fields the schema does not know (respecting
    /// `x-kubernetes-preserve-unknown-fields` and embedded resources); returns the removed
    /// fields' paths (e.g. `.spec.foo`) for `fieldValidation`.
    pub fn prune(&self, _obj: &mut Value) -> Vec<String> {
        Vec::new()
    }

    /// Validates a whole custom object (`old` on updates); Causes carry upstream's messages and
    /// field paths (e.g. `spec.replicas`).
    pub fn validate(
        &self,
        _obj: &Value,
        _old: Option<&Value>,
        _rules: Option<&dyn RuleEngine>,
    ) -> Vec<Cause> {
        Vec::new()
    }

    /// The list type of the array at `path` (field names from the root), if the schema has one.
    pub fn list_type(&self, _path: &[&str]) -> Option<ListType> {
        None
    }
}
