//! `additionalPrinterColumns` of a CRD version: parsing and evaluating each column's JSONPath
//! against an object for the Table response (upstream's CRD `tableconvertor`).
//!
//! Cells follow upstream: `Name` first; a `string` column prints the JSONPath result as
//! text (arrays and objects as JSON, like kubectl's JSONPath printer); `integer`, `number`
//! and `boolean` columns are JSON values; `date` columns print the age (`5m`, `<invalid>`
//! for an unparsable time); a path that finds nothing gives `null`, which kubectl prints as
//! `<none>`. Only the first match of a path counts (`.a[*].b` gives the first `b`).
//!
//! JSONPath subset: `.a.b`, `.a[0]`, `.a[-1]`, `.a[*]`, `['a.b']`, `.a\.b` (escaped dot),
//! `[?(@.type=="Ready")]` / `[?(@.type == 'Ready')]` filters (also `!=`), `..` is not
//! supported; an optional `{…}` wrapper is accepted.

use serde_json::Value;

use crate::table::{human_duration, parse_time, AGE_DOC, NAME_DOC};

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
pub fn parse(columns: Option<&Value>) -> Vec<Column> {
    let mut out = vec![Column {
        name: "Name".into(),
        type_: "string".into(),
        format: "name".into(),
        description: NAME_DOC.into(),
        priority: 0,
        json_path: ".metadata.name".into(),
    }];
    let given = columns.and_then(Value::as_array).filter(|a| !a.is_empty());
    let Some(given) = given else {
        out.push(Column {
            name: "Age".into(),
            type_: "date".into(),
            format: String::new(),
            description: AGE_DOC.into(),
            priority: 0,
            json_path: ".metadata.creationTimestamp".into(),
        });
        return out;
    };
    for c in given {
        let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        out.push(Column {
            name: s("name"),
            type_: s("type"),
            format: s("format"),
            description: s("description"),
            priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
            json_path: s("jsonPath"),
        });
    }
    out
}

/// One Table row's cells for `obj`, one per column.
pub fn cells(columns: &[Column], obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    columns
        .iter()
        .map(|c| {
            if c.format == "name" && c.json_path == ".metadata.name" {
                return obj
                    .pointer("/metadata/name")
                    .cloned()
                    .unwrap_or(Value::String(String::new()));
            }
            let Ok(path) = JsonPath::parse(&c.json_path) else {
                return Value::Null;
            };
            let Some(v) = path.first(obj) else {
                return Value::Null;
            };
            cell(&c.type_, v, now)
        })
        .collect()
}

fn cell(ty: &str, v: &Value, now: jiff::Timestamp) -> Value {
    if v.is_null() {
        return Value::Null;
    }
    match ty {
        "string" => Value::String(match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }),
        "integer" => match v {
            Value::Number(n) => n
                .as_i64()
                .map(Value::from)
                .or_else(|| n.as_f64().map(|f| Value::from(f as i64)))
                .unwrap_or(Value::Null),
            _ => Value::Null,
        },
        "number" => match v {
            Value::Number(n) => n.as_f64().map(Value::from).unwrap_or(Value::Null),
            _ => Value::Null,
        },
        "boolean" => match v {
            Value::Bool(b) => Value::Bool(*b),
            _ => Value::Null,
        },
        "date" => match v {
            Value::String(s) => Value::String(match parse_time(s) {
                Some(t) => human_duration(now.as_second() - t.as_second()),
                None => "<invalid>".into(),
            }),
            _ => Value::Null,
        },
        _ => Value::Null,
    }
}

/// Why a column's JSONPath is not accepted (the CRD validator reports it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("must be a simple json path starting with .")]
    NotRelative,
    #[error("unterminated bracket")]
    Unterminated,
    #[error("unsupported expression {0:?}")]
    Unsupported(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    /// `[?(@.a.b == "x")]` (`eq` false for `!=`).
    Filter {
        field: Vec<String>,
        eq: bool,
        value: Value,
    },
}

/// A parsed column JSONPath.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath(Vec<Step>);

impl JsonPath {
    /// Parses the subset upstream's CRD columns use.
    pub fn parse(src: &str) -> Result<JsonPath, PathError> {
        let mut s = src.trim();
        if let Some(inner) = s.strip_prefix('{').and_then(|x| x.strip_suffix('}')) {
            s = inner.trim();
        }
        if !s.starts_with('.') && !s.starts_with('[') {
            return Err(PathError::NotRelative);
        }
        let b: Vec<char> = s.chars().collect();
        let mut steps = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                '.' => {
                    i += 1;
                    if b.get(i) == Some(&'.') {
                        return Err(PathError::Unsupported("..".into()));
                    }
                    let mut name = String::new();
                    while i < b.len() && b[i] != '.' && b[i] != '[' {
                        if b[i] == '\\' && i + 1 < b.len() {
                            name.push(b[i + 1]);
                            i += 2;
                        } else {
                            name.push(b[i]);
                            i += 1;
                        }
                    }
                    if !name.is_empty() {
                        steps.push(Step::Field(name));
                    }
                }
                '[' => {
                    let close = find_close(&b, i).ok_or(PathError::Unterminated)?;
                    let inner: String = b[i + 1..close].iter().collect();
                    steps.push(bracket(inner.trim())?);
                    i = close + 1;
                }
                _ => {
                    return Err(PathError::Unsupported(b[i..].iter().collect()));
                }
            }
        }
        Ok(JsonPath(steps))
    }

    /// Every match, in document order.
    pub fn find<'a>(&self, v: &'a Value) -> Vec<&'a Value> {
        let mut cur = vec![v];
        for step in &self.0 {
            let mut next = Vec::new();
            for x in cur {
                match step {
                    Step::Field(k) => {
                        if let Some(y) = x.get(k.as_str()) {
                            next.push(y);
                        }
                    }
                    Step::Index(i) => {
                        if let Some(a) = x.as_array() {
                            let idx = if *i < 0 { a.len() as i64 + i } else { *i };
                            if let Some(y) = usize::try_from(idx).ok().and_then(|i| a.get(i)) {
                                next.push(y);
                            }
                        }
                    }
                    Step::All => match x {
                        Value::Array(a) => next.extend(a.iter()),
                        Value::Object(m) => next.extend(m.values()),
                        _ => {}
                    },
                    Step::Filter { field, eq, value } => {
                        let items: Vec<&Value> = match x {
                            Value::Array(a) => a.iter().collect(),
                            Value::Object(m) => m.values().collect(),
                            _ => Vec::new(),
                        };
                        for it in items {
                            let got = field.iter().try_fold(it, |acc, k| acc.get(k.as_str()));
                            let same = got.is_some_and(|g| g == value);
                            if got.is_some() && same == *eq {
                                next.push(it);
                            }
                        }
                    }
                }
            }
            cur = next;
        }
        cur
    }

    /// The first match (what a printer column shows).
    pub fn first<'a>(&self, v: &'a Value) -> Option<&'a Value> {
        self.find(v).into_iter().next()
    }
}

fn find_close(b: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (j, c) in b.iter().enumerate().skip(open) {
        match (quote, c) {
            (Some(q), c) if *c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(*c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

fn unquote(s: &str) -> Option<&str> {
    let s = s.trim();
    s.strip_prefix('\'')
        .and_then(|x| x.strip_suffix('\''))
        .or_else(|| s.strip_prefix('"').and_then(|x| x.strip_suffix('"')))
}

fn bracket(inner: &str) -> Result<Step, PathError> {
    if inner == "*" {
        return Ok(Step::All);
    }
    if let Ok(i) = inner.parse::<i64>() {
        return Ok(Step::Index(i));
    }
    if let Some(name) = unquote(inner) {
        return Ok(Step::Field(name.to_string()));
    }
    let unsupported = || PathError::Unsupported(inner.to_string());
    let expr = inner
        .strip_prefix('?')
        .map(str::trim)
        .and_then(|x| x.strip_prefix('('))
        .and_then(|x| x.strip_suffix(')'))
        .ok_or_else(unsupported)?;
    let (lhs, eq, rhs) = if let Some((l, r)) = expr.split_once("==") {
        (l, true, r)
    } else if let Some((l, r)) = expr.split_once("!=") {
        (l, false, r)
    } else {
        return Err(unsupported());
    };
    let field: Vec<String> = lhs
        .trim()
        .strip_prefix("@.")
        .ok_or_else(unsupported)?
        .split('.')
        .map(str::to_string)
        .collect();
    let rhs = rhs.trim();
    let value = match unquote(rhs) {
        Some(s) => Value::String(s.to_string()),
        None => serde_json::from_str(rhs).map_err(|_| unsupported())?,
    };
    Ok(Step::Filter { field, eq, value })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn now() -> jiff::Timestamp {
        "2024-01-01T01:00:00Z".parse().unwrap()
    }

    #[test]
    fn name_first_and_age_when_none_given() {
        let cols = parse(None);
        let names: Vec<(&str, &str, &str)> = cols
            .iter()
            .map(|c| (c.name.as_str(), c.type_.as_str(), c.format.as_str()))
            .collect();
        assert_eq!(names, [("Name", "string", "name"), ("Age", "date", "")]);
        assert_eq!(parse(Some(&json!([]))).len(), 2);
        let obj = json!({"metadata": {"name": "a", "creationTimestamp": "2024-01-01T00:55:00Z"}});
        assert_eq!(cells(&cols, &obj, now()), [json!("a"), json!("5m")]);
    }

    #[test]
    fn given_columns_follow_name_and_print_like_upstream() {
        let cols = parse(Some(&json!([
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
            {"name": "Ready", "type": "string",
             "jsonPath": ".status.conditions[?(@.type == 'Ready')].status"},
            {"name": "Programmed", "type": "string",
             "jsonPath": ".status.conditions[?(@.type==\"Programmed\")].status", "priority": 1},
            {"name": "Hosts", "type": "string", "jsonPath": ".spec.hostnames"},
            {"name": "Addr", "type": "string", "jsonPath": ".status.addresses[*].value"},
            {"name": "Paused", "type": "boolean", "jsonPath": ".status.paused"},
            {"name": "Ratio", "type": "number", "jsonPath": ".spec.ratio"},
            {"name": "Missing", "type": "string", "jsonPath": ".spec.nothing"},
            {"name": "App", "type": "string",
             "jsonPath": ".metadata.labels.app\\.kubernetes\\.io/name"},
            {"name": "First", "type": "string", "jsonPath": ".spec.hostnames[0]"},
            {"name": "Created", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            {"name": "Bad", "type": "date", "jsonPath": ".spec.when"},
        ])));
        assert_eq!(cols.len(), 13);
        assert_eq!(cols[0].name, "Name");
        assert_eq!(cols[3].priority, 1);
        let obj = json!({
            "metadata": {"name": "gw", "creationTimestamp": "2023-12-31T01:00:00Z",
                         "labels": {"app.kubernetes.io/name": "web"}},
            "spec": {"replicas": 3, "hostnames": ["a.example.com", "b"], "ratio": 1.5,
                     "when": "yesterday"},
            "status": {"paused": false,
                       "conditions": [{"type": "Programmed", "status": "False"},
                                      {"type": "Ready", "status": "True"}],
                       "addresses": [{"value": "10.0.0.1"}, {"value": "10.0.0.2"}]},
        });
        assert_eq!(
            cells(&cols, &obj, now()),
            [
                json!("gw"),
                json!(3),
                json!("True"),
                json!("False"),
                json!("[\"a.example.com\",\"b\"]"),
                json!("10.0.0.1"),
                json!(false),
                json!(1.5),
                Value::Null,
                json!("web"),
                json!("a.example.com"),
                json!("24h"),
                json!("<invalid>"),
            ]
        );
    }

    #[test]
    fn unsupported_paths_are_errors() {
        assert_eq!(JsonPath::parse("spec.x"), Err(PathError::NotRelative));
        assert!(JsonPath::parse(".a[0").is_err());
        assert!(JsonPath::parse(".a..b").is_err());
        assert!(JsonPath::parse("{.spec.replicas}").is_ok());
        assert!(JsonPath::parse(".a['b.c']").is_ok());
    }
}
