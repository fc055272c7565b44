//! Validation of a custom object against its structural schema, in upstream's three passes:
//! kube-openapi's schema validator (type, allOf/anyOf/oneOf/not, string, format, number,
//! array, enum, object — in that order at each node) turned into field causes the way
//! `kubeOpenAPIResultToFieldErrors` does, then `x-kubernetes-list-type` set/map uniqueness,
//! then `x-kubernetes-validations` rules through a [`RuleEngine`].
//!
//! kube-openapi names a value by its dotted path with array indexes as `.0`
//! (`spec.items.0.name`); the list-type and rule passes use `field.Path` syntax
//! (`spec.items[0]`, `spec.map[key]`), exactly like upstream.

use base64::Engine;
use serde_json::{Map, Value};

use super::node::{Additional, Node, MAX_DEPTH};
use super::{Rule, RuleEngine, RuleOutcome};
use crate::validate::{go_value, Errs};

/// The JSON type name kube-openapi infers for a value.
pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::String(_) => "string",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Go's `%v` of a float64 bound (`1`, `1.5`).
fn bound(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// The `name` of an openapi error: `spec.x`; the root is "".
fn child(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

/// Messages as kube-openapi formats them (`<name> in body …`).
fn msg(path: &str, rest: &str) -> String {
    format!("{path} in body {rest}")
}

struct V<'a> {
    e: &'a mut Errs,
}

impl V<'_> {
    /// field.TypeInvalid: `Invalid value: "string": spec.x in body must be of type integer: "string"`.
    fn type_invalid(&mut self, path: &str, value: &Value, detail: String) {
        self.e.push(
            "FieldValueTypeInvalid",
            path,
            format!("Invalid value: {}: {detail}", go_value(value)),
        );
    }
    fn invalid(&mut self, path: &str, value: &Value, detail: String) {
        // Go prints a float64 value with `%v` (`2`, not `2.0`).
        let shown = match value {
            Value::Number(n) if !n.is_i64() && !n.is_u64() => {
                n.as_f64().map_or_else(|| n.to_string(), bound)
            }
            other => go_value(other),
        };
        self.e.push(
            "FieldValueInvalid",
            path,
            format!("Invalid value: {shown}: {detail}"),
        );
    }
}

/// One node's checks; `path` is kube-openapi's dotted name.
fn node(n: &Node, v: &Value, old: Option<&Value>, path: &str, out: &mut V, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    // Validation ratcheting (CRDValidationRatcheting, on by default): a value that is
    // unchanged from the old object is not re-validated, so tightened schemas do not block
    // updates of other fields.
    if old.is_some_and(|o| json_eq(o, v)) {
        return;
    }
    // type
    let types: Vec<&str> = if n.int_or_string {
        vec!["integer", "string"]
    } else if n.ty.is_empty() {
        vec![]
    } else {
        vec![n.ty.as_str()]
    };
    if v.is_null() {
        if !types.is_empty() && !n.nullable {
            let t = types.join(",");
            out.type_invalid(
                path,
                &Value::String("null".into()),
                msg(path, &format!("must be of type {t}: \"null\"")),
            );
        }
        enum_check(n, v, path, out);
        return;
    }
    let sch = json_type(v);
    let float_int = sch == "number"
        && v.as_f64().is_some_and(|f| f.fract() == 0.0)
        && types.contains(&"integer");
    let int_float = sch == "integer" && types.contains(&"number");
    if !(types.is_empty() || types.contains(&sch) || float_int || int_float) {
        let t = types.join(",");
        out.type_invalid(
            path,
            &Value::String(sch.into()),
            msg(path, &format!("must be of type {t}: {sch:?}")),
        );
        return;
    }
    // anyOf, oneOf, allOf, not — kube-openapi's order. A failed anyOf/oneOf also reports
    // the errors of the closest alternative (fewest errors stands in for upstream's
    // "most positive checks").
    let composite = |out: &mut V, detail: String| {
        out.e.push(
            "FieldValueInvalid",
            "",
            format!("Invalid value: \"\": {detail}"),
        );
    };
    if !n.any_of.is_empty() {
        let results: Vec<Vec<crate::Cause>> = n
            .any_of
            .iter()
            .map(|s| sub(s, v, old, path, depth))
            .collect();
        if !results.iter().any(Vec::is_empty) {
            composite(
                out,
                format!("{path:?} must validate at least one schema (anyOf)"),
            );
            if let Some(best) = results.into_iter().min_by_key(Vec::len) {
                out.e.0.extend(best);
            }
        }
    }
    if !n.one_of.is_empty() {
        let results: Vec<Vec<crate::Cause>> = n
            .one_of
            .iter()
            .map(|s| sub(s, v, old, path, depth))
            .collect();
        let ok = results.iter().filter(|r| r.is_empty()).count();
        if ok != 1 {
            let found = if ok == 0 {
                "Found none valid".to_string()
            } else {
                format!("Found {ok} valid alternatives")
            };
            composite(
                out,
                format!("{path:?} must validate one and only one schema (oneOf). {found}"),
            );
            if ok == 0 {
                if let Some(best) = results.into_iter().min_by_key(Vec::len) {
                    out.e.0.extend(best);
                }
            }
        }
    }
    if !n.all_of.is_empty() {
        let mut valid = 0;
        for s in &n.all_of {
            let r = sub(s, v, old, path, depth);
            if r.is_empty() {
                valid += 1;
            }
            out.e.0.extend(r);
        }
        if valid != n.all_of.len() {
            let none = if valid == 0 { ". None validated" } else { "" };
            composite(
                out,
                format!("{path:?} must validate all the schemas (allOf){none}"),
            );
        }
    }
    if let Some(not) = &n.not {
        if sub(not, v, old, path, depth).is_empty() {
            composite(out, format!("{path:?} must not validate the schema (not)"));
        }
    }
    match v {
        Value::String(s) => string(n, s, v, path, out),
        Value::Number(_) => number(n, v, path, out),
        _ => {}
    }
    if let Value::Array(a) = v {
        if let Some(items) = &n.items {
            let olds = old.and_then(Value::as_array);
            for (i, x) in a.iter().enumerate() {
                let ox = correlate(n, x, olds);
                node(items, x, ox, &format!("{path}.{i}"), out, depth + 1);
            }
        }
        let size = a.len() as u64;
        if let Some(min) = n.min_items.filter(|m| size < *m) {
            out.invalid(
                path,
                &Value::from(size),
                msg(path, &format!("should have at least {min} items")),
            );
        }
        if let Some(max) = n.max_items.filter(|m| size > *m) {
            out.e.too_many(path, a.len(), max as usize);
        }
        if n.unique_items && has_duplicates(a) {
            out.invalid(
                path,
                &Value::String(String::new()),
                msg(path, "shouldn't contain duplicates"),
            );
        }
    }
    enum_check(n, v, path, out);
    if let Value::Object(m) = v {
        object(n, m, old.and_then(Value::as_object), path, out, depth);
    }
}

/// The causes one alternative of a junctor yields for `v`.
fn sub(n: &Node, v: &Value, old: Option<&Value>, path: &str, depth: usize) -> Vec<crate::Cause> {
    let mut e = Errs::default();
    node(n, v, old, path, &mut V { e: &mut e }, depth + 1);
    e.0
}

fn has_duplicates(a: &[Value]) -> bool {
    a.iter()
        .enumerate()
        .any(|(i, x)| a[i + 1..].iter().any(|y| json_eq(x, y)))
}

/// JSON equality with numbers compared by value (1 == 1.0).
pub(crate) fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, p)| y.get(k).is_some_and(|q| json_eq(p, q)))
        }
        _ => a == b,
    }
}

fn enum_check(n: &Node, v: &Value, path: &str, out: &mut V) {
    let Some(values) = &n.enum_ else {
        return;
    };
    if values.is_empty() || values.iter().any(|x| json_eq(x, v)) {
        return;
    }
    let supported: Vec<String> = values
        .iter()
        .map(|x| match x {
            Value::String(s) => format!("{s:?}"),
            other => format!("{:?}", other.to_string()),
        })
        .collect();
    out.e.push(
        "FieldValueNotSupported",
        path,
        format!(
            "Unsupported value: {}: supported values: {}",
            go_value(v),
            supported.join(", ")
        ),
    );
}

fn string(n: &Node, s: &str, v: &Value, path: &str, out: &mut V) {
    let len = s.chars().count() as u64;
    if let Some(max) = n.max_length.filter(|m| len > *m) {
        out.e.push(
            "FieldValueTooLong",
            path,
            format!("Too long: may not be more than {max} bytes"),
        );
    }
    if let Some(min) = n.min_length.filter(|m| len < *m) {
        out.invalid(
            path,
            v,
            msg(path, &format!("should be at least {min} chars long")),
        );
    }
    if let (Some(p), Some(re)) = (&n.pattern, &n.regex) {
        if !re.is_match(s) {
            out.invalid(path, v, msg(path, &format!("should match '{p}'")));
        }
    }
    if !n.format.is_empty() && !format_ok(&n.format, s) {
        out.type_invalid(
            path,
            v,
            msg(path, &format!("must be of type {}: {s:?}", n.format)),
        );
    }
}

fn number(n: &Node, v: &Value, path: &str, out: &mut V) {
    let Some(x) = v.as_f64() else {
        return;
    };
    if let Some(m) = n.multiple_of.filter(|m| *m > 0.0) {
        let q = x / m;
        if (q - q.round()).abs() > 1e-9 {
            out.invalid(
                path,
                v,
                msg(path, &format!("should be a multiple of {}", bound(m))),
            );
        }
    }
    if let Some(max) = n.maximum {
        let bad = if n.exclusive_maximum {
            x >= max
        } else {
            x > max
        };
        if bad {
            let word = if n.exclusive_maximum {
                "less than"
            } else {
                "less than or equal to"
            };
            out.invalid(
                path,
                v,
                msg(path, &format!("should be {word} {}", bound(max))),
            );
        }
    }
    if let Some(min) = n.minimum {
        let bad = if n.exclusive_minimum {
            x <= min
        } else {
            x < min
        };
        if bad {
            let word = if n.exclusive_minimum {
                "greater than"
            } else {
                "greater than or equal to"
            };
            out.invalid(
                path,
                v,
                msg(path, &format!("should be {word} {}", bound(min))),
            );
        }
    }
}

fn object(
    n: &Node,
    m: &Map<String, Value>,
    old: Option<&Map<String, Value>>,
    path: &str,
    out: &mut V,
    depth: usize,
) {
    let size = m.len() as u64;
    if let Some(min) = n.min_properties.filter(|x| size < *x) {
        out.invalid(
            path,
            &Value::String(String::new()),
            msg(path, &format!("should have at least {min} properties")),
        );
        return;
    }
    if let Some(max) = n.max_properties.filter(|x| size > *x) {
        out.e.too_many(path, m.len(), max as usize);
        return;
    }
    match &n.additional {
        Some(Additional::Bool(false)) => {
            for k in m.keys().filter(|k| !n.properties.contains_key(*k)) {
                out.invalid(
                    path,
                    &Value::String(k.clone()),
                    format!("{path}.{k} in body is a forbidden property"),
                );
            }
        }
        Some(Additional::Schema(ap)) => {
            for (k, x) in m.iter().filter(|(k, _)| !n.properties.contains_key(*k)) {
                node(
                    ap,
                    x,
                    old.and_then(|o| o.get(k)),
                    &format!("{path}.{k}"),
                    out,
                    depth + 1,
                );
            }
        }
        _ => {}
    }
    for (k, p) in &n.properties {
        if let Some(x) = m.get(k) {
            node(
                p,
                x,
                old.and_then(|o| o.get(k)),
                &child(path, k),
                out,
                depth + 1,
            );
        }
    }
    for k in &n.required {
        if !m.contains_key(k) {
            out.e.required(&child(path, k), "");
        }
    }
}

// ---- embedded resources (objectmeta.Validate) ----

/// TypeMeta and ObjectMeta of every embedded resource below the root (the root's own are
/// the API server's checks).
pub(crate) fn embedded(n: &Node, v: &Value, path: &str, e: &mut Errs, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        Value::Object(m) => {
            if n.embedded && depth > 0 {
                embedded_resource(m, path, e);
            }
            for (k, x) in m {
                if let Some(p) = n.properties.get(k) {
                    embedded(p, x, &field_child(path, k), e, depth + 1);
                } else if let Some(Additional::Schema(ap)) = &n.additional {
                    embedded(ap, x, &format!("{path}[{k}]"), e, depth + 1);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = &n.items {
                for (i, x) in a.iter().enumerate() {
                    embedded(items, x, &format!("{path}[{i}]"), e, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn embedded_resource(m: &Map<String, Value>, path: &str, e: &mut Errs) {
    let f = |k: &str| field_child(path, k);
    for k in ["apiVersion", "kind"] {
        match m.get(k) {
            None => e.required(&f(k), ""),
            Some(Value::String(s)) if s.is_empty() => e.required(&f(k), ""),
            Some(Value::String(_)) => {}
            Some(other) => e.invalid(&f(k), other, "must be a string"),
        }
    }
    if let Some(av) = m.get("apiVersion").and_then(Value::as_str) {
        if av.matches('/').count() > 1 {
            e.invalid_str(
                &f("apiVersion"),
                av,
                &format!("unexpected GroupVersion string: {av}"),
            );
        }
    }
    if let Some(kind) = m
        .get("kind")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
    {
        let errs = crate::validate::dns1035_label(&kind.to_lowercase());
        if !errs.is_empty() {
            e.invalid_str(
                &f("kind"),
                kind,
                &format!(
                    "may have mixed case, but should otherwise match: {}",
                    errs.join(",")
                ),
            );
        }
    }
    let Some(meta) = m.get("metadata") else {
        return;
    };
    let Some(mm) = meta.as_object() else {
        e.invalid(&f("metadata"), meta, "must be an object");
        return;
    };
    // Upstream fills in a name so that a nameless template is fine.
    let mut meta = mm.clone();
    if meta
        .get("name")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        meta.insert("name".into(), Value::String("fakename".into()));
    }
    let namespaced = meta
        .get("namespace")
        .and_then(Value::as_str)
        .is_some_and(|ns| !ns.is_empty());
    let mut inner = Errs::default();
    crate::validate::object_meta(
        &mut inner,
        Some(&Value::Object(meta)),
        namespaced,
        crate::validate::NameRule::PathSegment,
    );
    for mut c in inner.0 {
        c.field = field_child(path, &c.field);
        e.0.push(c);
    }
}

/// The kube-openapi pass over a whole object.
pub(crate) fn openapi(root: &Node, obj: &Value, old: Option<&Value>, e: &mut Errs) {
    node(root, obj, old, "", &mut V { e }, 0);
}

// ---- formats (kube-openapi's strfmt registry, the ones CRDs keep) ----

/// Whether `s` is a valid `format`. Names are normalized like go-openapi (`date-time` is
/// `datetime`); formats upstream strips from CRD schemas (int32, int64, float, double, …) and
/// unknown ones accept anything.
pub(crate) fn format_ok(format: &str, s: &str) -> bool {
    match format.replace('-', "").as_str() {
        "byte" => base64::engine::general_purpose::STANDARD
            .decode(s.replace(['\r', '\n'], ""))
            .is_ok(),
        "date" => s.len() == 10 && jiff::civil::Date::strptime("%Y-%m-%d", s).is_ok(),
        "datetime" => date_time(s),
        "duration" => duration(s),
        "uuid" => matches(&UUID, s),
        "uuid3" => matches(&UUID3, s),
        "uuid4" => matches(&UUID4, s),
        "uuid5" => matches(&UUID5, s),
        "email" => email(s),
        "hostname" => hostname(s),
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => cidr(s),
        "mac" => mac(s),
        "hexcolor" => matches(&HEXCOLOR, s),
        "rgbcolor" => matches(&RGBCOLOR, s),
        "ssn" => matches(&SSN, s),
        "uri" => uri(s),
        "bsonobjectid" => s.len() == 24 && s.chars().all(|c| c.is_ascii_hexdigit()),
        _ => true,
    }
}

/// A lazily compiled pattern of the strfmt registry.
struct Pattern(&'static str, std::sync::OnceLock<Option<regex::Regex>>);

impl Pattern {
    const fn new(p: &'static str) -> Pattern {
        Pattern(p, std::sync::OnceLock::new())
    }
}

fn matches(p: &Pattern, s: &str) -> bool {
    p.1.get_or_init(|| regex::Regex::new(p.0).ok())
        .as_ref()
        .is_none_or(|r| r.is_match(s))
}

static UUID: Pattern =
    Pattern::new(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$");
static UUID3: Pattern =
    Pattern::new(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$");
static UUID4: Pattern =
    Pattern::new(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$");
static UUID5: Pattern =
    Pattern::new(r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$");
static HEXCOLOR: Pattern = Pattern::new(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$");
static RGBCOLOR: Pattern =
    Pattern::new(r"^rgb\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*\)$");
static SSN: Pattern = Pattern::new(r"^\d{3}[- ]?\d{2}[- ]?\d{4}$");

/// Go's `url.ParseRequestURI`: an absolute URI or an absolute path, no fragment.
fn uri(s: &str) -> bool {
    if s.is_empty() || s.contains(char::is_whitespace) {
        return false;
    }
    if s.starts_with('/') {
        return true;
    }
    match s.split_once(':') {
        Some((scheme, _)) => {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }
        None => false,
    }
}

fn date_time(s: &str) -> bool {
    if s.parse::<jiff::Timestamp>().is_ok() {
        return true;
    }
    // strfmt also takes a date-time without a zone.
    s.parse::<jiff::civil::DateTime>().is_ok() && s.contains('T')
}

/// strfmt `ParseDuration`: Go durations (`1h30m`, `1.5s`) and `<n> <unit>` forms (`3 days`).
fn duration(s: &str) -> bool {
    let s = s.trim();
    if s.is_empty() {
        return false;
    }
    let go_units = ["ns", "us", "µs", "ms", "s", "m", "h", "d", "w"];
    let mut rest = s.strip_prefix(['+', '-']).unwrap_or(s);
    if rest == "0" {
        return true;
    }
    let mut any = false;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            break;
        }
        let u = rest[n..]
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .map_or(rest.len(), |i| i + n);
        if !go_units.contains(&&rest[n..u]) {
            break;
        }
        any = true;
        rest = &rest[u..];
    }
    if any && rest.is_empty() {
        return true;
    }
    // `<number> <unit>` with long unit names.
    let mut parts = s.split_whitespace();
    let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    const UNITS: &[&str] = &[
        "ns",
        "nanosecond",
        "us",
        "microsecond",
        "ms",
        "millisecond",
        "s",
        "sec",
        "second",
        "m",
        "min",
        "minute",
        "h",
        "hr",
        "hour",
        "d",
        "day",
        "w",
        "wk",
        "week",
    ];
    n.parse::<i64>().is_ok() && UNITS.contains(&unit.trim_end_matches('s'))
        || n.parse::<i64>().is_ok() && UNITS.contains(&unit)
}

fn email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty() && !domain.is_empty() && !s.contains(char::is_whitespace)
}

fn hostname(s: &str) -> bool {
    if s.is_empty() || s.len() > 255 {
        return false;
    }
    s.trim_end_matches('.').split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
            && !l.starts_with('-')
            && !l.ends_with('-')
    })
}

fn cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(bits) = bits.parse::<u8>() else {
        return false;
    };
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => bits <= 32,
        Ok(std::net::IpAddr::V6(_)) => bits <= 128,
        Err(_) => false,
    }
}

fn mac(s: &str) -> bool {
    // Go's net.ParseMAC also takes the dotted form (0123.4567.89ab).
    if s.contains('.') {
        let parts: Vec<&str> = s.split('.').collect();
        return matches!(parts.len(), 3 | 4 | 10)
            && parts
                .iter()
                .all(|p| p.len() == 4 && p.chars().all(|c| c.is_ascii_hexdigit()));
    }
    let sep = if s.contains(':') { ':' } else { '-' };
    let parts: Vec<&str> = s.split(sep).collect();
    matches!(parts.len(), 6 | 8 | 20)
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

// ---- list types (structurallisttype.ValidateListSetsAndMaps) ----

fn field_child(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

/// Duplicate items of `set` lists and duplicate keys of `map` lists.
pub(crate) fn list_types(n: &Node, v: &Value, path: &str, e: &mut Errs, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match v {
        Value::Array(a) => {
            match n.list_type.as_deref() {
                Some("set") => {
                    // Canonical JSON text as the identity (maps are key-sorted), so a long
                    // list costs one pass, not a quadratic scan.
                    let mut seen = std::collections::HashSet::new();
                    for (i, x) in a.iter().enumerate() {
                        if !seen.insert(canonical(x)) {
                            e.push(
                                "FieldValueDuplicate",
                                &format!("{path}[{i}]"),
                                format!("Duplicate value: {}", go_value(x)),
                            );
                        }
                    }
                }
                Some("map") => {
                    let mut seen = std::collections::HashSet::new();
                    for (i, x) in a.iter().enumerate() {
                        let Some(k) = map_key(n, x) else { continue };
                        if !seen.insert(canonical(&Value::Object(k.clone()))) {
                            e.push(
                                "FieldValueDuplicate",
                                &format!("{path}[{i}]"),
                                format!("Duplicate value: {}", go_map(&k)),
                            );
                        }
                    }
                }
                _ => {}
            }
            if let Some(items) = &n.items {
                for (i, x) in a.iter().enumerate() {
                    list_types(items, x, &format!("{path}[{i}]"), e, depth + 1);
                }
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                if let Some(p) = n.properties.get(k) {
                    list_types(p, x, &field_child(path, k), e, depth + 1);
                } else if let Some(Additional::Schema(ap)) = &n.additional {
                    list_types(ap, x, &format!("{path}[{k}]"), e, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// A value's identity for duplicate detection: its JSON text with whole floats written as
/// integers (1.0 and 1 are the same value).
fn canonical(v: &Value) -> String {
    fn norm(v: &Value) -> Value {
        match v {
            Value::Number(n) if !n.is_i64() && !n.is_u64() => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9e15 => Value::from(f as i64),
                _ => v.clone(),
            },
            Value::Array(a) => Value::Array(a.iter().map(norm).collect()),
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, x)| (k.clone(), norm(x))).collect())
            }
            other => other.clone(),
        }
    }
    norm(v).to_string()
}

/// The old item a new list item corresponds to: only map lists correlate (by their keys).
fn correlate<'a>(n: &Node, item: &Value, olds: Option<&'a Vec<Value>>) -> Option<&'a Value> {
    if n.list_type.as_deref() != Some("map") {
        return None;
    }
    let k = map_key(n, item);
    olds?.iter().find(|o| map_key(n, o) == k)
}

/// The key fields of a map-list item (defaults applied before validation fill missing ones).
fn map_key(n: &Node, item: &Value) -> Option<Map<String, Value>> {
    let obj = item.as_object()?;
    let mut k = Map::new();
    for name in &n.list_map_keys {
        if let Some(v) = obj.get(name) {
            k.insert(name.clone(), v.clone());
        }
    }
    Some(k)
}

/// Go's `%#v` of a `map[string]interface{}` key.
fn go_map(m: &Map<String, Value>) -> String {
    let parts: Vec<String> = m
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k:?}:{s:?}"),
            Value::Number(n) if n.is_i64() => format!("{k:?}:{n}"),
            other => format!("{k:?}:{other}"),
        })
        .collect();
    format!("map[string]interface {{}}{{{}}}", parts.join(", "))
}

// ---- x-kubernetes-validations ----

/// Whether a rule mentions `oldSelf` (a transition rule).
pub(crate) fn is_transition(rule: &str) -> bool {
    let b = rule.as_bytes();
    let mut from = 0;
    while let Some(i) = rule[from..].find("oldSelf") {
        let at = from + i;
        let end = at + "oldSelf".len();
        let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        let before_ok = at == 0 || !(ident(b[at - 1]) || b[at - 1] == b'.');
        let after_ok = end >= b.len() || !ident(b[end]);
        if before_ok && after_ok {
            return true;
        }
        from = end;
    }
    false
}

/// `ruleErrorString`: the rule's message, else the rule, trimmed.
fn rule_error_string(rule: &Rule) -> String {
    match &rule.message {
        Some(m) => m.trim().to_string(),
        None => rule.rule.trim().to_string(),
    }
}

/// How upstream words a rule that could not be compiled or evaluated.
fn rule_error(rule: &Rule, err: &str) -> String {
    if err.starts_with("rule compile error") {
        err.to_string()
    } else if err.starts_with("compilation failed") {
        format!("rule compile error: {err}")
    } else if err.starts_with("no such overload") {
        format!(
            "'{err}': call arguments did not match a supported operator, function or macro signature for rule: {}",
            rule_error_string(rule)
        )
    } else if err.starts_with("operation cancelled: actual cost limit exceeded") {
        format!(
            "'{err}': no further validation rules will be run due to call cost exceeds limit for rule: {}",
            rule_error_string(rule)
        )
    } else {
        format!("{err} evaluating rule: {}", rule_error_string(rule))
    }
}

/// Upstream's schema type for a rule error's value (`"object"`, `"string"`, …).
fn schema_type(n: &Node) -> &str {
    if n.int_or_string {
        "integer"
    } else {
        n.ty.as_str()
    }
}

fn rule_cause(e: &mut Errs, n: &Node, rule: &Rule, path: &str, detail: String) {
    let f = match &rule.field_path {
        Some(fp) => {
            let fp = fp.strip_prefix('.').unwrap_or(fp);
            if path.is_empty() {
                fp.to_string()
            } else if fp.starts_with('[') {
                format!("{path}{fp}")
            } else {
                format!("{path}.{fp}")
            }
        }
        None => path.to_string(),
    };
    let ty = Value::String(schema_type(n).to_string());
    match rule.reason.as_deref() {
        Some("FieldValueForbidden") => e.forbidden(&f, &detail),
        Some("FieldValueRequired") => e.required(&f, &detail),
        Some("FieldValueDuplicate") => e.push(
            "FieldValueDuplicate",
            &f,
            format!("Duplicate value: {}", go_value(&ty)),
        ),
        _ => e.invalid(&f, &ty, &detail),
    }
}

/// Evaluates every rule at every node where a value is present.
pub(crate) fn rules(
    n: &Node,
    v: &Value,
    old: Option<&Value>,
    path: &str,
    engine: &dyn RuleEngine,
    e: &mut Errs,
    depth: usize,
) {
    if depth > MAX_DEPTH || v.is_null() {
        return;
    }
    let unchanged = old.is_some_and(|o| json_eq(o, v));
    for rule in &n.rules {
        let transition = is_transition(&rule.rule);
        if transition && old.is_none() && !rule.optional_old_self {
            continue;
        }
        // Ratcheting: rules without oldSelf do not run again on unchanged values.
        if unchanged && !transition {
            continue;
        }
        match engine.check(rule, v, old) {
            RuleOutcome::Pass => {}
            RuleOutcome::Fail(m) => {
                let detail = if m.trim().is_empty() {
                    match &rule.message {
                        Some(msg) => msg.trim().to_string(),
                        None => format!("failed rule: {}", rule_error_string(rule)),
                    }
                } else if let Some(rest) = m.strip_prefix("failed rule:") {
                    format!("failed rule: {}", rest.trim())
                } else {
                    m.trim().to_string()
                };
                rule_cause(e, n, rule, path, detail);
            }
            RuleOutcome::Error(err) => {
                let ty = Value::String(schema_type(n).to_string());
                e.invalid(path, &ty, &rule_error(rule, &err));
            }
        }
    }
    for s in &n.all_of {
        rules(s, v, old, path, engine, e, depth + 1);
    }
    match v {
        Value::Object(m) => {
            let om = old.and_then(Value::as_object);
            for (k, x) in m {
                let ox = om.and_then(|o| o.get(k));
                if let Some(p) = n.properties.get(k) {
                    rules(p, x, ox, &field_child(path, k), engine, e, depth + 1);
                } else if let Some(Additional::Schema(ap)) = &n.additional {
                    rules(ap, x, ox, &format!("{path}[{k}]"), engine, e, depth + 1);
                }
            }
        }
        Value::Array(a) => {
            let Some(items) = &n.items else { return };
            let olds = old.and_then(Value::as_array);
            for (i, x) in a.iter().enumerate() {
                let ox = correlate(n, x, olds);
                rules(items, x, ox, &format!("{path}[{i}]"), engine, e, depth + 1);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_follow_the_strfmt_registry() {
        let ok = [
            ("byte", "aGVsbG8="),
            ("date", "2024-02-29"),
            ("date-time", "2024-01-02T03:04:05Z"),
            ("datetime", "2024-01-02T03:04:05.123+02:00"),
            ("duration", "1h30m"),
            ("duration", "3 days"),
            ("uuid", "123e4567-e89b-12d3-a456-426614174000"),
            ("uuid", "123E4567E89B12D3A456426614174000"),
            ("uuid4", "123e4567-e89b-42d3-a456-426614174000"),
            ("email", "a@example.com"),
            ("hostname", "web-1.example.com"),
            ("ipv4", "10.0.0.1"),
            ("ipv6", "fd00::1"),
            ("cidr", "10.0.0.0/8"),
            ("mac", "01:23:45:67:89:ab"),
            ("mac", "0123.4567.89ab"),
            ("hexcolor", "#fff"),
            ("rgbcolor", "rgb(1, 2, 3)"),
            ("uri", "https://example.com/x"),
            ("int32", "anything"),
            ("password", "anything"),
        ];
        for (f, v) in ok {
            assert!(format_ok(f, v), "{f} {v}");
        }
        let bad = [
            ("byte", "not base64!"),
            ("date", "2024-02-30"),
            ("date-time", "yesterday"),
            ("duration", "soon"),
            ("uuid", "123"),
            ("uuid4", "123e4567-e89b-12d3-a456-426614174000"),
            ("email", "nobody"),
            ("hostname", "-bad-.com"),
            ("ipv4", "1.2.3"),
            ("ipv6", "10.0.0.1"),
            ("cidr", "10.0.0.0/33"),
            ("mac", "01:23"),
            ("hexcolor", "#ffff"),
            ("uri", "not a uri"),
        ];
        for (f, v) in bad {
            assert!(!format_ok(f, v), "{f} {v}");
        }
    }

    #[test]
    fn transition_rules_are_found_by_identifier() {
        assert!(is_transition("self == oldSelf"));
        assert!(is_transition("oldSelf.x == self.x"));
        assert!(!is_transition("self.oldSelfish == 1"));
        assert!(!is_transition("self.x.oldSelf == 1"));
    }
}
