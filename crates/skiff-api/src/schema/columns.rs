//! `additionalPrinterColumns` of a CRD version: parsing and evaluating each column's JSONPath
//! against an object for the Table response.
//!
//! Interface skeleton: the bodies are filled in on the `i14-schema` branch.

use serde_json::Value;

/// One printer column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    /// integer, number, string, boolean or date.
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    /// e.g. `.spec.replicas`.
    pub json_path: String,
}

/// The columns of a version's `additionalPrinterColumns` (upstream adds Name first and, when
/// none are given, Age).
pub fn parse(_columns: Option<&Value>) -> Vec<Column> {
    Vec::new()
}

/// One Table row's cells for `obj`, one per column.
pub fn cells(columns: &[Column], _obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
    columns.iter().map(|_| Value::Null).collect()
}
