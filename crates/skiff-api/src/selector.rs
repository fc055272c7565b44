//! Label selectors (`k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`) and field
//! selectors (`path=value`, `path==value`, `path!=value`, comma-separated).
//!
//! The label grammar and its matching rules follow `k8s.io/apimachinery/pkg/labels`: `!=` and
//! `notin` also match objects without the key, `>`/`<` compare integers. Matching itself is
//! `skiff_semantics::labels`, shared with the controllers and the agent.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use skiff_semantics::labels::Requirement;

use crate::ApiError;

/// Upstream's `Requirement.String()`.
fn render(r: &Requirement) -> String {
    let set = |vs: &BTreeSet<String>| vs.iter().cloned().collect::<Vec<_>>().join(",");
    match r {
        Requirement::Eq(k, v) => format!("{k}={v}"),
        Requirement::NotEq(k, v) => format!("{k}!={v}"),
        Requirement::In(k, vs) => format!("{k} in ({})", set(vs)),
        Requirement::NotIn(k, vs) => format!("{k} notin ({})", set(vs)),
        Requirement::Exists(k) => k.clone(),
        Requirement::DoesNotExist(k) => format!("!{k}"),
        Requirement::Gt(k, n) => format!("{k}>{n}"),
        Requirement::Lt(k, n) => format!("{k}<{n}"),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Not,
    Eq,
    DoubleEq,
    NotEq,
    In,
    NotIn,
    Open,
    Close,
    Comma,
    Gt,
    Lt,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Ident(s) => s.clone(),
            Token::Not => "!".into(),
            Token::Eq => "=".into(),
            Token::DoubleEq => "==".into(),
            Token::NotEq => "!=".into(),
            Token::In => "in".into(),
            Token::NotIn => "notin".into(),
            Token::Open => "(".into(),
            Token::Close => ")".into(),
            Token::Comma => ",".into(),
            Token::Gt => ">".into(),
            Token::Lt => "<".into(),
        }
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '!' | '=' | '(' | ')' | ',' | '<' | '>')
}

fn lex(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let next = chars.get(i + 1).copied();
        let tok = match c {
            '!' if next == Some('=') => {
                i += 1;
                Token::NotEq
            }
            '!' => Token::Not,
            '=' if next == Some('=') => {
                i += 1;
                Token::DoubleEq
            }
            '=' => Token::Eq,
            '(' => Token::Open,
            ')' => Token::Close,
            ',' => Token::Comma,
            '>' => Token::Gt,
            '<' => Token::Lt,
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !is_special(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                out.push(match word.as_str() {
                    "in" => Token::In,
                    "notin" => Token::NotIn,
                    _ => Token::Ident(word),
                });
                continue;
            }
        };
        out.push(tok);
        i += 1;
    }
    out
}

fn parse_error(msg: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("unable to parse requirement: {msg}"))
}

const LABEL_VALUE_HELP: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// `(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?`, at most 63 characters.
fn valid_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() > 63 {
        return false;
    }
    if b.is_empty() {
        return true;
    }
    let alnum = |c: u8| c.is_ascii_alphanumeric();
    alnum(b[0])
        && alnum(b[b.len() - 1])
        && b.iter()
            .all(|&c| alnum(c) || c == b'-' || c == b'_' || c == b'.')
}

/// DNS-1123 subdomain (label key prefixes).
fn valid_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        })
}

fn validate_key(key: &str) -> Result<(), ApiError> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(valid_dns_subdomain);
    if name.is_empty() || !valid_label_name(name) || !prefix_ok {
        return Err(parse_error(format!(
            "key: Invalid value: \"{key}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        )));
    }
    Ok(())
}

fn validate_value(key: &str, idx: usize, value: &str) -> Result<(), ApiError> {
    if valid_label_name(value) {
        Ok(())
    } else {
        Err(parse_error(format!(
            "values[{idx}][{key}]: Invalid value: \"{value}\": {LABEL_VALUE_HELP}"
        )))
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }
    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn requirement(&mut self) -> Result<Requirement, ApiError> {
        let negated = if self.peek() == Some(&Token::Not) {
            self.pos += 1;
            true
        } else {
            false
        };
        let key = match self.next() {
            Some(Token::Ident(k)) => k,
            Some(t) => {
                return Err(ApiError::bad_request(format!(
                    "found '{}', expected: !, identifier",
                    t.describe()
                )))
            }
            None => {
                return Err(ApiError::bad_request(
                    "found '', expected: !, identifier".to_string(),
                ))
            }
        };
        validate_key(&key)?;
        if negated {
            return Ok(Requirement::DoesNotExist(key));
        }
        let op = match self.peek() {
            None | Some(Token::Comma) => return Ok(Requirement::Exists(key)),
            Some(t) => t.clone(),
        };
        self.pos += 1;
        match op {
            Token::Eq | Token::DoubleEq | Token::NotEq => {
                // An empty value (`k=`) is legal and means the empty string.
                let value = match self.peek() {
                    Some(Token::Ident(v)) => {
                        let v = v.clone();
                        self.pos += 1;
                        v
                    }
                    None | Some(Token::Comma) => String::new(),
                    Some(t) => {
                        return Err(ApiError::bad_request(format!(
                            "found '{}', expected: ',' or 'end of string'",
                            t.describe()
                        )))
                    }
                };
                validate_value(&key, 0, &value)?;
                Ok(if op == Token::NotEq {
                    Requirement::NotEq(key, value)
                } else {
                    Requirement::Eq(key, value)
                })
            }
            Token::In | Token::NotIn => {
                if self.next() != Some(Token::Open) {
                    return Err(ApiError::bad_request("found '', expected: '('".to_string()));
                }
                let mut values = BTreeSet::new();
                let mut expect_value = true;
                loop {
                    match self.next() {
                        Some(Token::Close) => {
                            if expect_value && !values.is_empty() {
                                // `in (a,)` keeps upstream's behaviour of an empty value.
                                values.insert(String::new());
                            }
                            break;
                        }
                        Some(Token::Ident(v)) if expect_value => {
                            validate_value(&key, values.len(), &v)?;
                            values.insert(v);
                            expect_value = false;
                        }
                        Some(Token::Comma) if !expect_value => expect_value = true,
                        Some(Token::Comma) => {
                            values.insert(String::new());
                        }
                        Some(t) => {
                            return Err(ApiError::bad_request(format!(
                                "found '{}', expected: ',', ')' or identifier",
                                t.describe()
                            )))
                        }
                        None => {
                            return Err(ApiError::bad_request(
                                "found '', expected: ')'".to_string(),
                            ))
                        }
                    }
                }
                if values.is_empty() {
                    return Err(parse_error(
                        "values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty",
                    ));
                }
                Ok(if op == Token::In {
                    Requirement::In(key, values)
                } else {
                    Requirement::NotIn(key, values)
                })
            }
            Token::Gt | Token::Lt => {
                let raw = match self.next() {
                    Some(Token::Ident(v)) => v,
                    _ => {
                        return Err(ApiError::bad_request(
                            "found '', expected: identifier".to_string(),
                        ))
                    }
                };
                let n: i64 = raw.parse().map_err(|_| {
                    parse_error(format!(
                        "values[0]: Invalid value: \"{raw}\": for 'Gt', 'Lt' operators, the value must be an integer"
                    ))
                })?;
                Ok(if op == Token::Gt {
                    Requirement::Gt(key, n)
                } else {
                    Requirement::Lt(key, n)
                })
            }
            t => Err(ApiError::bad_request(format!(
                "found '{}', expected: in, notin, =, ==, !=, gt, lt",
                t.describe()
            ))),
        }
    }
}

/// Reads a JSON string array (`values` of a matchExpression).
fn string_values(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl LabelSelector {
    /// Parses the query-string form; a syntax error is a 400 naming the problem.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let tokens = lex(text);
        if tokens.is_empty() {
            return Ok(Self::default());
        }
        let mut p = Parser { tokens, pos: 0 };
        let mut requirements = Vec::new();
        loop {
            requirements.push(p.requirement()?);
            match p.next() {
                None => break,
                Some(Token::Comma) => continue,
                Some(t) => {
                    return Err(ApiError::bad_request(format!(
                        "found '{}', expected: ',' or 'end of string'",
                        t.describe()
                    )))
                }
            }
        }
        Ok(LabelSelector { requirements })
    }
    /// From a metav1.LabelSelector JSON object (matchLabels + matchExpressions). An empty or
    /// null selector matches everything.
    pub fn from_json(selector: &serde_json::Value) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        if selector.is_null() {
            return Ok(Self::default());
        }
        if !selector.is_object() {
            return Err(ApiError::bad_request("label selector must be an object"));
        }
        if let Some(ml) = selector.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in ml {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                validate_key(k)?;
                validate_value(k, 0, &v)?;
                requirements.push(Requirement::Eq(k.clone(), v));
            }
        }
        if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
                let op = e
                    .get("operator")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let values = string_values(e.get("values"));
                validate_key(key)?;
                let key = key.to_string();
                let req = match op {
                    "In" | "NotIn" => {
                        if values.is_empty() {
                            return Err(parse_error(
                                "values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty",
                            ));
                        }
                        for (i, v) in values.iter().enumerate() {
                            validate_value(&key, i, v)?;
                        }
                        let set: BTreeSet<String> = values.into_iter().collect();
                        if op == "In" {
                            Requirement::In(key, set)
                        } else {
                            Requirement::NotIn(key, set)
                        }
                    }
                    "Exists" | "DoesNotExist" => {
                        if !values.is_empty() {
                            return Err(parse_error(
                                "values: Invalid value: values set must be empty for exists and does not exist",
                            ));
                        }
                        if op == "Exists" {
                            Requirement::Exists(key)
                        } else {
                            Requirement::DoesNotExist(key)
                        }
                    }
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "\"{other}\" is not a valid label selector operator"
                        )))
                    }
                };
                requirements.push(req);
            }
        }
        // Sorted by key like upstream's internal selector so `to_string()` is stable.
        requirements.sort_by(|a, b| a.key().cmp(b.key()));
        Ok(LabelSelector { requirements })
    }
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
    /// Matches `metadata.labels` of an object.
    pub fn matches_object(&self, object: &serde_json::Value) -> bool {
        if self.requirements.is_empty() {
            return true;
        }
        let labels: BTreeMap<String, String> = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        self.matches(&labels)
    }
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

impl std::fmt::Display for LabelSelector {
    /// The canonical string form (`app=web,tier in (a,b)`), as `kubectl get -o wide` shows it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.requirements.iter().map(render).collect();
        f.write_str(&parts.join(","))
    }
}

/// A parsed field selector: `(label, equal?, value)` terms, all of which must hold.
///
/// [`FieldSelector::for_kind`] checks every label against the kind's field list (the form the
/// API server uses); [`FieldSelector::parse`] only checks syntax and reads labels the object's
/// kind does not define as dotted paths.
#[derive(Clone, Default)]
pub struct FieldSelector {
    terms: Vec<(String, bool, String)>,
    /// The kind's readers for `terms`, index for index, when built by `for_kind`.
    readers: Vec<fn(&Value) -> String>,
}

impl std::fmt::Debug for FieldSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldSelector")
            .field("terms", &self.terms)
            .field("bound", &!self.readers.is_empty())
            .finish()
    }
}

/// Splits on unescaped `sep`, keeping escapes for the second pass.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push('\\');
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    if escaped {
        cur.push('\\');
    }
    out.push(cur);
    out
}

/// Removes `\` escapes from a field selector value.
fn unescape(s: &str) -> Result<String, ()> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ ('\\' | ',' | '=' | '!')) => out.push(n),
                _ => return Err(()),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// Finds the first unescaped occurrence of `op` in `s` (byte index).
fn find_unescaped(s: &str, op: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if s[i..].starts_with(op) {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The value at a dotted path as a string: strings as-is, bools/numbers stringified,
/// missing/null/compound = "".
fn field_value(object: &Value, path: &str) -> String {
    // A field the object's kind defines (e.g. a Job's `status.successful`).
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    if let Some(field) =
        crate::kinds::by_kind_name(kind).and_then(|k| k.fields.iter().find(|f| f.label == path))
    {
        return (field.value)(object);
    }
    let mut cur = object;
    for part in path.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

impl FieldSelector {
    /// `metadata.name=x,spec.nodeName!=`, any dotted path into the object; values compared as
    /// strings (missing = ""). 400 on syntax errors.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        for part in split_unescaped(text, ',') {
            let bad = || {
                ApiError::bad_request(format!(
                    "invalid selector: '{text}'; can't understand '{part}'"
                ))
            };
            // Same operator precedence as upstream: `!=`, then `==`, then `=`.
            let (idx, len, eq) = if let Some(i) = find_unescaped(&part, "!=") {
                (i, 2, false)
            } else if let Some(i) = find_unescaped(&part, "==") {
                (i, 2, true)
            } else if let Some(i) = find_unescaped(&part, "=") {
                (i, 1, true)
            } else {
                return Err(bad());
            };
            let field = part[..idx].trim().to_string();
            if field.is_empty() {
                return Err(bad());
            }
            let value = unescape(&part[idx + len..]).map_err(|_| bad())?;
            terms.push((field, eq, value));
        }
        Ok(FieldSelector {
            terms,
            readers: Vec::new(),
        })
    }

    /// Parses a selector for one resource: every label must be one the kind supports
    /// (upstream's field label conversion), else a 400 with upstream's message. Values then
    /// compare as upstream's field sets hold them (booleans "true"/"false", unset = zero value).
    pub fn for_kind(text: &str, info: &crate::ResourceInfo) -> Result<Self, ApiError> {
        let mut sel = Self::parse(text)?;
        let kind = crate::kinds::of(info);
        let mut readers = Vec::with_capacity(sel.terms.len());
        for (label, _, _) in &sel.terms {
            let field = kind
                .fields
                .iter()
                .find(|f| f.label == label)
                .ok_or_else(|| ApiError::bad_request((kind.field_error)(label)))?;
            readers.push(field.value);
        }
        sel.readers = readers;
        Ok(sel)
    }

    pub fn matches(&self, object: &serde_json::Value) -> bool {
        self.terms.iter().enumerate().all(|(i, (path, eq, value))| {
            let actual = match self.readers.get(i) {
                Some(read) => read(object),
                None => field_value(object, path),
            };
            (actual == *value) == *eq
        })
    }
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}
