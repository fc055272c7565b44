//! Kubernetes' CEL libraries (upstream `k8s.io/apiserver/pkg/cel/library`): lists, regex,
//! quantity, url, ip and cidr. Each function works on [`Value`]s; `wrap!` makes the
//! overload `cel` calls, charging one cost unit per call.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use cel::common::types::{DYN_TYPE, LIST_TYPE, STRING_TYPE};
use cel::common::value::{CowVal, Val};
use cel::objects::{Key, Map, Opaque};
use cel::{DeclarationError, Env, ExecutionError, Value};
use skiff_semantics::quantity::Quantity as Q;

type R = Result<Value, ExecutionError>;

macro_rules! wrap {
    ($name:ident, $imp:path) => {
        fn $name<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
            let vals = args
                .iter()
                .map(|a| Value::try_from(a.as_ref()))
                .collect::<Result<Vec<_>, _>>()?;
            crate::charge(1)?;
            let out = $imp(&vals)?;
            let b: Box<dyn Val> = out.try_into()?;
            Ok(CowVal::Owned(b))
        }
    };
}
pub(crate) use wrap;

pub(crate) fn err(function: &str, msg: impl ToString) -> ExecutionError {
    ExecutionError::function_error(function, msg)
}

pub(crate) fn str_arg<'a>(f: &str, args: &'a [Value], i: usize) -> Result<&'a str, ExecutionError> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(other) => Err(err(
            f,
            format!(
                "no such overload: {f} applied to {}",
                crate::type_name(other)
            ),
        )),
        None => Err(ExecutionError::invalid_argument_count(i + 1, args.len())),
    }
}

fn list_arg<'a>(f: &str, args: &'a [Value]) -> Result<&'a [Value], ExecutionError> {
    match args.first() {
        Some(Value::List(l)) => Ok(l.as_slice()),
        _ => Err(err(f, "expected a list")),
    }
}

pub(crate) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    // lists
    env.add_member_overload("isSorted", "list_is_sorted", LIST_TYPE, vec![], w_is_sorted)?;
    env.add_member_overload("sum", "list_sum", LIST_TYPE, vec![], w_sum)?;
    env.add_member_overload("min", "list_min", LIST_TYPE, vec![], w_min)?;
    env.add_member_overload("max", "list_max", LIST_TYPE, vec![], w_max)?;
    env.add_member_overload(
        "indexOf",
        "list_index_of",
        LIST_TYPE,
        vec![DYN_TYPE],
        w_index_of,
    )?;
    env.add_member_overload(
        "lastIndexOf",
        "list_last_index_of",
        LIST_TYPE,
        vec![DYN_TYPE],
        w_last_index_of,
    )?;
    // regex
    env.add_member_overload(
        "find",
        "string_find",
        STRING_TYPE,
        vec![STRING_TYPE],
        w_find,
    )?;
    env.add_member_overload(
        "findAll",
        "string_find_all",
        STRING_TYPE,
        vec![STRING_TYPE],
        w_find_all,
    )?;
    env.add_member_overload(
        "findAll",
        "string_find_all_n",
        STRING_TYPE,
        vec![STRING_TYPE, DYN_TYPE],
        w_find_all,
    )?;
    // quantity
    env.add_overload("quantity", "quantity_string", vec![STRING_TYPE], w_quantity)?;
    env.add_overload(
        "isQuantity",
        "is_quantity_string",
        vec![STRING_TYPE],
        w_is_quantity,
    )?;
    for (name, f) in [
        ("sign", w_q_sign as cel::common::functions::Function),
        ("isInteger", w_q_is_integer),
        ("asInteger", w_q_as_integer),
        ("asApproximateFloat", w_q_as_float),
    ] {
        env.add_member_overload(name, &format!("quantity_{name}"), DYN_TYPE, vec![], f)?;
    }
    for (name, f) in [
        ("compareTo", w_q_compare as cel::common::functions::Function),
        ("isLessThan", w_q_less),
        ("isGreaterThan", w_q_greater),
        ("add", w_q_add),
        ("sub", w_q_sub),
    ] {
        env.add_member_overload(
            name,
            &format!("quantity_{name}"),
            DYN_TYPE,
            vec![DYN_TYPE],
            f,
        )?;
    }
    // url
    env.add_overload("url", "url_string", vec![STRING_TYPE], w_url)?;
    env.add_overload("isURL", "is_url_string", vec![STRING_TYPE], w_is_url)?;
    for (name, f) in [
        (
            "getScheme",
            w_url_scheme as cel::common::functions::Function,
        ),
        ("getHost", w_url_host),
        ("getHostname", w_url_hostname),
        ("getPort", w_url_port),
        ("getEscapedPath", w_url_path),
        ("getQuery", w_url_query),
    ] {
        env.add_member_overload(name, &format!("url_{name}"), DYN_TYPE, vec![], f)?;
    }
    // ip / cidr
    env.add_overload("ip", "ip_string", vec![STRING_TYPE], w_ip)?;
    env.add_overload("isIP", "is_ip_string", vec![STRING_TYPE], w_is_ip)?;
    env.add_overload("cidr", "cidr_string", vec![STRING_TYPE], w_cidr)?;
    env.add_overload("isCIDR", "is_cidr_string", vec![STRING_TYPE], w_is_cidr)?;
    for (name, f) in [
        ("family", w_ip_family as cel::common::functions::Function),
        ("isLoopback", w_ip_is_loopback),
        ("isUnspecified", w_ip_is_unspecified),
        ("prefixLength", w_cidr_prefix_length),
        ("ip", w_cidr_ip),
        ("masked", w_cidr_masked),
    ] {
        env.add_member_overload(name, &format!("net_{name}"), DYN_TYPE, vec![], f)?;
    }
    env.add_member_overload(
        "containsIP",
        "cidr_contains_ip",
        DYN_TYPE,
        vec![DYN_TYPE],
        w_contains_ip,
    )?;
    env.add_member_overload(
        "containsCIDR",
        "cidr_contains_cidr",
        DYN_TYPE,
        vec![DYN_TYPE],
        w_contains_cidr,
    )?;
    Ok(())
}

// ---- lists ----

fn compare(f: &str, a: &Value, b: &Value) -> Result<Ordering, ExecutionError> {
    let ord = match (a, b) {
        (Value::Int(x), Value::Int(y)) => x.partial_cmp(y),
        (Value::UInt(x), Value::UInt(y)) => x.partial_cmp(y),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y),
        (Value::Int(x), Value::Float(y)) => (*x as f64).partial_cmp(y),
        (Value::Float(x), Value::Int(y)) => x.partial_cmp(&(*y as f64)),
        (Value::String(x), Value::String(y)) => x.partial_cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.partial_cmp(y),
        (Value::Bytes(x), Value::Bytes(y)) => x.partial_cmp(y),
        (Value::Opaque(x), Value::Opaque(y)) => {
            match (x.downcast_ref::<Quantity>(), y.downcast_ref::<Quantity>()) {
                (Some(p), Some(q)) => p.0.partial_cmp(&q.0),
                _ => None,
            }
        }
        _ => None,
    };
    ord.ok_or_else(|| {
        err(
            f,
            format!("no such overload: {f}: values are not comparable"),
        )
    })
}

fn is_sorted(args: &[Value]) -> R {
    let l = list_arg("isSorted", args)?;
    for w in l.windows(2) {
        if compare("isSorted", &w[0], &w[1])? == Ordering::Greater {
            return Ok(Value::Bool(false));
        }
    }
    Ok(Value::Bool(true))
}

fn sum(args: &[Value]) -> R {
    let l = list_arg("sum", args)?;
    let mut acc = match l.first() {
        None => return Ok(Value::Int(0)),
        Some(Value::Int(_)) => Value::Int(0),
        Some(Value::UInt(_)) => Value::UInt(0),
        Some(Value::Float(_)) => Value::Float(0.0),
        Some(Value::Opaque(o)) if o.downcast_ref::<Quantity>().is_some() => quantity_value(Q::ZERO),
        Some(other) => {
            return Err(err(
                "sum",
                format!("no such overload: sum on list({})", crate::type_name(other)),
            ))
        }
    };
    for v in l {
        acc = match (&acc, v) {
            (Value::Int(a), Value::Int(b)) => Value::Int(
                a.checked_add(*b)
                    .ok_or_else(|| err("sum", "integer overflow"))?,
            ),
            (Value::UInt(a), Value::UInt(b)) => Value::UInt(
                a.checked_add(*b)
                    .ok_or_else(|| err("sum", "unsigned integer overflow"))?,
            ),
            (Value::Float(a), Value::Float(b)) => Value::Float(a + b),
            (Value::Opaque(_), Value::Opaque(_)) => q_add(&[acc.clone(), v.clone()])?,
            _ => return Err(err("sum", "list elements must all have the same type")),
        };
    }
    Ok(acc)
}

fn extreme(f: &str, args: &[Value], want: Ordering) -> R {
    let l = list_arg(f, args)?;
    let mut best = l
        .first()
        .ok_or_else(|| err(f, format!("{f} called on empty list")))?;
    for v in &l[1..] {
        if compare(f, v, best)? == want {
            best = v;
        }
    }
    Ok(best.clone())
}

fn min(args: &[Value]) -> R {
    extreme("min", args, Ordering::Less)
}

fn max(args: &[Value]) -> R {
    extreme("max", args, Ordering::Greater)
}

fn index_of(args: &[Value]) -> R {
    let l = list_arg("indexOf", args)?;
    let x = args
        .get(1)
        .ok_or_else(|| err("indexOf", "missing argument"))?;
    Ok(Value::Int(
        l.iter().position(|v| v == x).map_or(-1, |i| i as i64),
    ))
}

fn last_index_of(args: &[Value]) -> R {
    let l = list_arg("lastIndexOf", args)?;
    let x = args
        .get(1)
        .ok_or_else(|| err("lastIndexOf", "missing argument"))?;
    Ok(Value::Int(
        l.iter().rposition(|v| v == x).map_or(-1, |i| i as i64),
    ))
}

wrap!(w_is_sorted, is_sorted);
wrap!(w_sum, sum);
wrap!(w_min, min);
wrap!(w_max, max);
wrap!(w_index_of, index_of);
wrap!(w_last_index_of, last_index_of);

// ---- regex ----

fn regex(f: &str, pattern: &str) -> Result<regex::Regex, ExecutionError> {
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| err(f, format!("Invalid regex: {e}")))
}

fn find(args: &[Value]) -> R {
    let s = str_arg("find", args, 0)?;
    let re = regex("find", str_arg("find", args, 1)?)?;
    crate::charge(s.len() as u64 / 64)?;
    Ok(Value::String(Arc::new(
        re.find(s)
            .map(|m| m.as_str().to_string())
            .unwrap_or_default(),
    )))
}

fn find_all(args: &[Value]) -> R {
    let s = str_arg("findAll", args, 0)?;
    let re = regex("findAll", str_arg("findAll", args, 1)?)?;
    let limit = match args.get(2) {
        None => usize::MAX,
        Some(Value::Int(n)) if *n < 0 => usize::MAX,
        Some(Value::Int(n)) => usize::try_from(*n).unwrap_or(usize::MAX),
        Some(_) => return Err(err("findAll", "limit must be an int")),
    };
    crate::charge(s.len() as u64 / 64)?;
    let found: Vec<Value> = re
        .find_iter(s)
        .take(limit)
        .map(|m| Value::String(Arc::new(m.as_str().to_string())))
        .collect();
    Ok(Value::List(Arc::new(found)))
}

wrap!(w_find, find);
wrap!(w_find_all, find_all);

// ---- quantity ----

/// A `kubernetes.Quantity` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Quantity(pub Q);

impl Opaque for Quantity {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.Quantity"
    }
}

fn quantity_value(q: Q) -> Value {
    Value::Opaque(Arc::new(Quantity(q)))
}

fn q_arg(f: &str, args: &[Value], i: usize) -> Result<Q, ExecutionError> {
    match args.get(i) {
        Some(Value::Opaque(o)) => o
            .downcast_ref::<Quantity>()
            .map(|q| q.0)
            .ok_or_else(|| err(f, format!("no such overload: {f}"))),
        // add/sub also take an int
        Some(Value::Int(n)) if i > 0 => Ok(Q::new(i128::from(*n), 0)),
        Some(other) => Err(err(
            f,
            format!(
                "no such overload: {f} applied to {}",
                crate::type_name(other)
            ),
        )),
        None => Err(ExecutionError::invalid_argument_count(i + 1, args.len())),
    }
}

fn quantity(args: &[Value]) -> R {
    let s = str_arg("quantity", args, 0)?;
    Q::parse(s)
        .map(quantity_value)
        .map_err(|_| err("quantity", "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"))
}

fn is_quantity(args: &[Value]) -> R {
    Ok(Value::Bool(
        Q::parse(str_arg("isQuantity", args, 0)?).is_ok(),
    ))
}

fn neg(q: Q) -> Q {
    let s = q.to_string();
    let flipped = match s.strip_prefix('-') {
        Some(rest) => rest.to_string(),
        None => format!("-{s}"),
    };
    Q::parse(&flipped).unwrap_or(q)
}

fn q_sign(args: &[Value]) -> R {
    let q = q_arg("sign", args, 0)?;
    Ok(Value::Int(if q.is_positive() {
        1
    } else if q.is_negative() {
        -1
    } else {
        0
    }))
}

/// Whether `q` has no fractional part (exactly).
fn q_integral(q: Q) -> bool {
    Q::new(i128::from(q.value()), 0) == q
}

fn q_is_integer(args: &[Value]) -> R {
    Ok(Value::Bool(q_integral(q_arg("isInteger", args, 0)?)))
}

fn q_as_integer(args: &[Value]) -> R {
    let q = q_arg("asInteger", args, 0)?;
    if !q_integral(q) {
        return Err(err("asInteger", "cannot convert value to integer"));
    }
    Ok(Value::Int(q.value()))
}

fn q_as_float(args: &[Value]) -> R {
    let q = q_arg("asApproximateFloat", args, 0)?;
    // Exact for anything a milli-value holds; larger values fall back to whole units.
    let m = q.milli_value();
    if m != i64::MAX && m != i64::MIN {
        Ok(Value::Float(m as f64 / 1000.0))
    } else {
        Ok(Value::Float(q.value() as f64))
    }
}

fn q_compare(args: &[Value]) -> R {
    let a = q_arg("compareTo", args, 0)?;
    let b = q_arg("compareTo", args, 1)?;
    Ok(Value::Int(match a.cmp(&b) {
        Ordering::Less => -1,
        Ordering::Equal => 0,
        Ordering::Greater => 1,
    }))
}

fn q_less(args: &[Value]) -> R {
    Ok(Value::Bool(
        q_arg("isLessThan", args, 0)? < q_arg("isLessThan", args, 1)?,
    ))
}

fn q_greater(args: &[Value]) -> R {
    Ok(Value::Bool(
        q_arg("isGreaterThan", args, 0)? > q_arg("isGreaterThan", args, 1)?,
    ))
}

fn q_add(args: &[Value]) -> R {
    Ok(quantity_value(
        q_arg("add", args, 0)?.saturating_add(&q_arg("add", args, 1)?),
    ))
}

fn q_sub(args: &[Value]) -> R {
    Ok(quantity_value(
        q_arg("sub", args, 0)?.saturating_add(&neg(q_arg("sub", args, 1)?)),
    ))
}

wrap!(w_quantity, quantity);
wrap!(w_is_quantity, is_quantity);
wrap!(w_q_sign, q_sign);
wrap!(w_q_is_integer, q_is_integer);
wrap!(w_q_as_integer, q_as_integer);
wrap!(w_q_as_float, q_as_float);
wrap!(w_q_compare, q_compare);
wrap!(w_q_less, q_less);
wrap!(w_q_greater, q_greater);
wrap!(w_q_add, q_add);
wrap!(w_q_sub, q_sub);

// ---- url ----

/// A parsed URL (`kubernetes.URL`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url {
    scheme: String,
    host: String,
    path: String,
    query: String,
}

impl Opaque for Url {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.URL"
    }
}

/// Parses an absolute URL or an absolute path, as Go's `url.ParseRequestURI` accepts them.
fn parse_url(s: &str) -> Option<Url> {
    if s.is_empty() || s.chars().any(|c| c.is_control() || c == ' ') {
        return None;
    }
    let s = s.split_once('#').map_or(s, |(a, _)| a);
    let (rest, query) = s.split_once('?').map_or((s, ""), |(a, q)| (a, q));
    if rest.starts_with('/') {
        return Some(Url {
            scheme: String::new(),
            host: String::new(),
            path: rest.to_string(),
            query: query.to_string(),
        });
    }
    let (scheme, after) = rest.split_once(':')?;
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
        return None;
    }
    let (host, path) = match after.strip_prefix("//") {
        Some(a) => match a.find('/') {
            Some(i) => (&a[..i], &a[i..]),
            None => (a, ""),
        },
        None if after.starts_with('/') => ("", after),
        None => return None,
    };
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if host.starts_with('[') && !host.contains(']') {
        return None;
    }
    Some(Url {
        scheme: scheme.to_string(),
        host: host.to_string(),
        path: path.to_string(),
        query: query.to_string(),
    })
}

fn url_arg(f: &str, args: &[Value]) -> Result<Url, ExecutionError> {
    match args.first() {
        Some(Value::Opaque(o)) => o
            .downcast_ref::<Url>()
            .cloned()
            .ok_or_else(|| err(f, format!("no such overload: {f}"))),
        _ => Err(err(f, format!("no such overload: {f}"))),
    }
}

fn url(args: &[Value]) -> R {
    let s = str_arg("url", args, 0)?;
    parse_url(s)
        .map(|u| Value::Opaque(Arc::new(u)))
        .ok_or_else(|| err("url", format!("URL parse error during conversion from string: parse \"{s}\": invalid URI for request")))
}

fn is_url(args: &[Value]) -> R {
    Ok(Value::Bool(parse_url(str_arg("isURL", args, 0)?).is_some()))
}

fn s(v: impl Into<String>) -> Value {
    Value::String(Arc::new(v.into()))
}

/// `host` split into hostname and port (IPv6 brackets removed).
fn split_host(host: &str) -> (String, String) {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((h, tail)) = rest.split_once(']') {
            return (
                h.to_string(),
                tail.strip_prefix(':').unwrap_or("").to_string(),
            );
        }
    }
    match host.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.to_string()),
        None => (host.to_string(), String::new()),
    }
}

fn url_scheme(args: &[Value]) -> R {
    Ok(s(url_arg("getScheme", args)?.scheme))
}

fn url_host(args: &[Value]) -> R {
    Ok(s(url_arg("getHost", args)?.host))
}

fn url_hostname(args: &[Value]) -> R {
    Ok(s(split_host(&url_arg("getHostname", args)?.host).0))
}

fn url_port(args: &[Value]) -> R {
    Ok(s(split_host(&url_arg("getPort", args)?.host).1))
}

fn url_path(args: &[Value]) -> R {
    Ok(s(url_arg("getEscapedPath", args)?.path))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn url_query(args: &[Value]) -> R {
    let u = url_arg("getQuery", args)?;
    let mut q: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for pair in u.query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        q.entry(percent_decode(k))
            .or_default()
            .push(s(percent_decode(v)));
    }
    let map: HashMap<Key, Value> = q
        .into_iter()
        .map(|(k, v)| (Key::String(Arc::new(k)), Value::List(Arc::new(v))))
        .collect();
    Ok(Value::Map(Map { map: Arc::new(map) }))
}

wrap!(w_url, url);
wrap!(w_is_url, is_url);
wrap!(w_url_scheme, url_scheme);
wrap!(w_url_host, url_host);
wrap!(w_url_hostname, url_hostname);
wrap!(w_url_port, url_port);
wrap!(w_url_path, url_path);
wrap!(w_url_query, url_query);

// ---- ip / cidr ----

/// A `net.IP` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ip(IpAddr);

impl Opaque for Ip {
    fn runtime_type_name(&self) -> &str {
        "net.IP"
    }
}

/// A `net.CIDR` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cidr(ipnet::IpNet);

impl Opaque for Cidr {
    fn runtime_type_name(&self) -> &str {
        "net.CIDR"
    }
}

/// Upstream refuses IPv4-mapped IPv6 and zones; `IpAddr` parsing already refuses zones.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let ip: IpAddr = s.parse().ok()?;
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => None,
        _ => Some(ip),
    }
}

fn ip(args: &[Value]) -> R {
    let t = str_arg("ip", args, 0)?;
    parse_ip(t)
        .map(|i| Value::Opaque(Arc::new(Ip(i))))
        .ok_or_else(|| {
            err(
                "ip",
                format!("IP Address \"{t}\" parse error during conversion from string"),
            )
        })
}

fn is_ip(args: &[Value]) -> R {
    Ok(Value::Bool(parse_ip(str_arg("isIP", args, 0)?).is_some()))
}

fn cidr(args: &[Value]) -> R {
    let t = str_arg("cidr", args, 0)?;
    t.parse::<ipnet::IpNet>()
        .map(|n| Value::Opaque(Arc::new(Cidr(n))))
        .map_err(|_| err("cidr", format!("network address parse error during conversion from string: network address parse error: invalid CIDR address: {t}")))
}

fn is_cidr(args: &[Value]) -> R {
    Ok(Value::Bool(
        str_arg("isCIDR", args, 0)?.parse::<ipnet::IpNet>().is_ok(),
    ))
}

fn ip_of(f: &str, v: Option<&Value>) -> Result<IpAddr, ExecutionError> {
    match v {
        Some(Value::Opaque(o)) => o
            .downcast_ref::<Ip>()
            .map(|i| i.0)
            .ok_or_else(|| err(f, format!("no such overload: {f}"))),
        Some(Value::String(t)) => {
            parse_ip(t).ok_or_else(|| err(f, format!("IP Address \"{t}\" parse error")))
        }
        _ => Err(err(f, format!("no such overload: {f}"))),
    }
}

fn cidr_of(f: &str, v: Option<&Value>) -> Result<ipnet::IpNet, ExecutionError> {
    match v {
        Some(Value::Opaque(o)) => o
            .downcast_ref::<Cidr>()
            .map(|c| c.0)
            .ok_or_else(|| err(f, format!("no such overload: {f}"))),
        Some(Value::String(t)) => t
            .parse()
            .map_err(|_| err(f, format!("invalid CIDR address: {t}"))),
        _ => Err(err(f, format!("no such overload: {f}"))),
    }
}

fn ip_family(args: &[Value]) -> R {
    Ok(Value::Int(match ip_of("family", args.first())? {
        IpAddr::V4(_) => 4,
        IpAddr::V6(_) => 6,
    }))
}

fn ip_is_loopback(args: &[Value]) -> R {
    Ok(Value::Bool(
        ip_of("isLoopback", args.first())?.is_loopback(),
    ))
}

fn ip_is_unspecified(args: &[Value]) -> R {
    Ok(Value::Bool(
        ip_of("isUnspecified", args.first())?.is_unspecified(),
    ))
}

fn cidr_prefix_length(args: &[Value]) -> R {
    Ok(Value::Int(i64::from(
        cidr_of("prefixLength", args.first())?.prefix_len(),
    )))
}

fn cidr_ip(args: &[Value]) -> R {
    Ok(Value::Opaque(Arc::new(Ip(
        cidr_of("ip", args.first())?.addr()
    ))))
}

fn cidr_masked(args: &[Value]) -> R {
    Ok(Value::Opaque(Arc::new(Cidr(
        cidr_of("masked", args.first())?.trunc(),
    ))))
}

fn contains_ip(args: &[Value]) -> R {
    let n = cidr_of("containsIP", args.first())?;
    Ok(Value::Bool(n.contains(&ip_of("containsIP", args.get(1))?)))
}

fn contains_cidr(args: &[Value]) -> R {
    let n = cidr_of("containsCIDR", args.first())?;
    Ok(Value::Bool(
        n.contains(&cidr_of("containsCIDR", args.get(1))?),
    ))
}

wrap!(w_ip, ip);
wrap!(w_is_ip, is_ip);
wrap!(w_cidr, cidr);
wrap!(w_is_cidr, is_cidr);
wrap!(w_ip_family, ip_family);
wrap!(w_ip_is_loopback, ip_is_loopback);
wrap!(w_ip_is_unspecified, ip_is_unspecified);
wrap!(w_cidr_prefix_length, cidr_prefix_length);
wrap!(w_cidr_ip, cidr_ip);
wrap!(w_cidr_masked, cidr_masked);
wrap!(w_contains_ip, contains_ip);
wrap!(w_contains_cidr, contains_cidr);
