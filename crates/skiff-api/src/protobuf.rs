//! Decoding of Kubernetes protobuf request bodies (`k8s\0` + runtime.Unknown) into JSON.
//!
//! The decoder is schema driven: `table.rs` (generated once from the upstream `generated.proto`
//! files and `types.go` of kubernetes/api and apimachinery v0.33) lists, for every message, the
//! field numbers, wire types, JSON names, whether the Go field is a pointer and whether it is
//! inlined in JSON (`Volume.volumeSource`, `Probe.handler`, ...). Go's gogo-protobuf marshaller
//! writes every non-pointer field even when it holds the zero value, so zero values of
//! non-pointer fields are dropped ("unset"), while pointer fields are kept whenever present
//! (`spec.replicas: 0`, `emptyDir: {}`, `runAsUser: 0`).

#[rustfmt::skip]
mod table;

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::ApiError;

/// Scalar or message type of a field's value. (The k8s protos use only a few scalar types; the
/// rest are kept so the decoder covers every proto2 wire form.)
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)]
enum Ty {
    Str,
    Bool,
    Bytes,
    I32,
    I64,
    U64,
    S64,
    F32,
    F64,
    Fixed32,
    Fixed64,
    Msg(&'static str),
}

/// Cardinality: single value, repeated, or `map<string, V>` (repeated key/value entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Card {
    One,
    Repeated,
    Map,
}

#[derive(Debug)]
struct Field {
    num: u32,
    json: &'static str,
    ty: Ty,
    card: Card,
    pointer: bool,
    inline: bool,
}

#[derive(Debug)]
struct Message {
    name: &'static str,
    /// Go slice types encoded as a message with one repeated field (`ExtraValue`, `Verbs`).
    array: bool,
    fields: &'static [Field],
}

const MAGIC: &[u8] = b"k8s\0";
/// Nesting bound so hostile input cannot blow the stack.
const MAX_DEPTH: usize = 64;

fn messages() -> &'static HashMap<&'static str, &'static Message> {
    static INDEX: OnceLock<HashMap<&'static str, &'static Message>> = OnceLock::new();
    INDEX.get_or_init(|| table::MESSAGES.iter().map(|m| (m.name, m)).collect())
}

/// Decodes an `application/vnd.kubernetes.protobuf` body into the JSON form of the object,
/// with apiVersion and kind set and Go's explicit zero values treated as unset.
pub fn decode(bytes: &[u8]) -> Result<Value, ApiError> {
    decode_inner(bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request was in an unknown format: protobuf: {e}"
        ))
    })
}

fn decode_inner(bytes: &[u8]) -> Result<Value, String> {
    let body = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| "missing the k8s\\0 prefix".to_string())?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    let mut content_encoding = String::new();
    for (num, val) in wire_fields(body)? {
        match (num, val) {
            (1, Wire::Bytes(tm)) => {
                for (n, v) in wire_fields(tm)? {
                    match (n, v) {
                        (1, Wire::Bytes(b)) => api_version = utf8(b)?,
                        (2, Wire::Bytes(b)) => kind = utf8(b)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(b)) => raw = b,
            (3, Wire::Bytes(b)) => content_encoding = utf8(b)?,
            _ => {}
        }
    }
    if !content_encoding.is_empty() {
        return Err(format!("unsupported contentEncoding {content_encoding:?}"));
    }
    if kind.is_empty() || api_version.is_empty() {
        return Err("runtime.Unknown without apiVersion/kind".into());
    }
    let name = message_name(&api_version, &kind)
        .ok_or_else(|| format!("no kind {kind:?} is registered for version {api_version:?}"))?;
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), Value::String(api_version));
    obj.insert("kind".into(), Value::String(kind));
    let msg = *messages()
        .get(name.as_str())
        .ok_or_else(|| format!("unknown message {name}"))?;
    decode_fields(msg, raw, &mut obj, 0)?;
    Ok(Value::Object(obj))
}

/// `apps/v1` + `Deployment` → `k8s.io.api.apps.v1.Deployment` (proto package = first label of the group).
fn message_name(api_version: &str, kind: &str) -> Option<String> {
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    };
    let dir = match group {
        "" => "core",
        "internal.apiserver.k8s.io" => "apiserverinternal",
        g => g.split('.').next().unwrap_or(g),
    };
    let name = if group == "meta.k8s.io" {
        format!("k8s.io.apimachinery.pkg.apis.meta.{version}.{kind}")
    } else {
        format!("k8s.io.api.{dir}.{version}.{kind}")
    };
    messages().contains_key(name.as_str()).then_some(name)
}

enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(out);
        }
    }
    Err("varint too long".into())
}

fn take<'a>(buf: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], String> {
    let end = pos.checked_add(n).ok_or("length overflow")?;
    let s = buf.get(*pos..end).ok_or("truncated field")?;
    *pos = end;
    Ok(s)
}

fn wire_fields(buf: &[u8]) -> Result<Vec<(u32, Wire<'_>)>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let num = u32::try_from(key >> 3).map_err(|_| "field number too large")?;
        let val = match key & 7 {
            0 => Wire::Varint(varint(buf, &mut pos)?),
            1 => {
                let s = take(buf, &mut pos, 8)?;
                Wire::Fixed64(u64::from_le_bytes(s.try_into().map_err(|_| "bad fixed64")?))
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).map_err(|_| "bad length")?;
                Wire::Bytes(take(buf, &mut pos, len)?)
            }
            5 => {
                let s = take(buf, &mut pos, 4)?;
                Wire::Fixed32(u32::from_le_bytes(s.try_into().map_err(|_| "bad fixed32")?))
            }
            w => return Err(format!("unsupported wire type {w} for field {num}")),
        };
        out.push((num, val));
    }
    Ok(out)
}

fn utf8(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "invalid UTF-8 in string field".to_string())
}

/// Decodes the fields of `msg` from `buf` into `obj` (which may already hold inlined siblings).
fn decode_fields(
    msg: &Message,
    buf: &[u8],
    obj: &mut Map<String, Value>,
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("message nesting too deep".into());
    }
    let mut lists: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut maps: Vec<(&'static str, Map<String, Value>)> = Vec::new();
    for (num, wire) in wire_fields(buf)? {
        let Some(field) = msg.fields.iter().find(|f| f.num == num) else {
            continue; // unknown field: newer client, ignore like Go does
        };
        match field.card {
            Card::One => {
                let v = value(field.ty, wire, depth)?;
                if field.inline {
                    if let Value::Object(m) = v {
                        obj.extend(m);
                    }
                } else if !field.pointer && is_zero(&v) {
                    obj.remove(field.json);
                } else if !v.is_null() {
                    obj.insert(field.json.to_string(), v);
                }
            }
            Card::Repeated => {
                let items = match (field.ty, wire) {
                    // Packed repeated scalars.
                    (ty, Wire::Bytes(b)) if !matches!(ty, Ty::Str | Ty::Bytes | Ty::Msg(_)) => {
                        packed(ty, b)?
                    }
                    (ty, w) => vec![value(ty, w, depth)?],
                };
                match lists.iter_mut().find(|(k, _)| *k == field.json) {
                    Some((_, l)) => l.extend(items),
                    None => lists.push((field.json, items)),
                }
            }
            Card::Map => {
                let Wire::Bytes(entry) = wire else {
                    return Err(format!("map field {} is not length-delimited", field.json));
                };
                let mut key = String::new();
                let mut val = None;
                for (n, w) in wire_fields(entry)? {
                    match (n, w) {
                        (1, Wire::Bytes(b)) => key = utf8(b)?,
                        (2, w) => val = Some(value(field.ty, w, depth)?),
                        _ => {}
                    }
                }
                let val = match val {
                    Some(v) if !v.is_null() => v,
                    _ => zero_of(field.ty),
                };
                match maps.iter_mut().find(|(k, _)| *k == field.json) {
                    Some((_, m)) => {
                        m.insert(key, val);
                    }
                    None => {
                        let mut m = Map::new();
                        m.insert(key, val);
                        maps.push((field.json, m));
                    }
                }
            }
        }
    }
    for (k, l) in lists {
        obj.insert(k.to_string(), Value::Array(l));
    }
    for (k, m) in maps {
        obj.insert(k.to_string(), Value::Object(m));
    }
    Ok(())
}

/// The JSON value of a map entry whose value was not written (Go zero value).
fn zero_of(ty: Ty) -> Value {
    match ty {
        Ty::Str | Ty::Bytes => Value::String(String::new()),
        Ty::Bool => Value::Bool(false),
        Ty::Msg(_) => Value::Object(Map::new()),
        _ => Value::from(0),
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
    }
}

fn packed(ty: Ty, buf: &[u8]) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let w = match ty {
            Ty::F64 | Ty::Fixed64 => {
                let s = take(buf, &mut pos, 8)?;
                Wire::Fixed64(u64::from_le_bytes(s.try_into().map_err(|_| "bad fixed64")?))
            }
            Ty::F32 | Ty::Fixed32 => {
                let s = take(buf, &mut pos, 4)?;
                Wire::Fixed32(u32::from_le_bytes(s.try_into().map_err(|_| "bad fixed32")?))
            }
            _ => Wire::Varint(varint(buf, &mut pos)?),
        };
        out.push(value(ty, w, 0)?);
    }
    Ok(out)
}

/// One field value as JSON. Special apimachinery messages get their JSON forms; a message whose
/// bytes are the Go zero value yields an empty object (or Null for Time & co.).
fn value(ty: Ty, wire: Wire<'_>, depth: usize) -> Result<Value, String> {
    Ok(match (ty, wire) {
        (Ty::Str, Wire::Bytes(b)) => Value::String(utf8(b)?),
        (Ty::Bytes, Wire::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Ty::Bool, Wire::Varint(v)) => Value::Bool(v != 0),
        // int32 is sign-extended to 64 bits on the wire.
        (Ty::I32, Wire::Varint(v)) => Value::from(v as i64 as i32),
        (Ty::I64, Wire::Varint(v)) => Value::from(v as i64),
        (Ty::U64, Wire::Varint(v)) => Value::from(v),
        (Ty::S64, Wire::Varint(v)) => Value::from(((v >> 1) as i64) ^ -((v & 1) as i64)),
        (Ty::F64, Wire::Fixed64(v)) => Value::from(f64::from_bits(v)),
        (Ty::F32, Wire::Fixed32(v)) => Value::from(f64::from(f32::from_bits(v))),
        (Ty::Fixed64, Wire::Fixed64(v)) => Value::from(v),
        (Ty::Fixed32, Wire::Fixed32(v)) => Value::from(v),
        (Ty::Msg(name), Wire::Bytes(b)) => message_value(name, b, depth + 1)?,
        (ty, _) => return Err(format!("wire type does not match field type {ty:?}")),
    })
}

fn message_value(name: &str, b: &[u8], depth: usize) -> Result<Value, String> {
    match name {
        "k8s.io.apimachinery.pkg.apis.meta.v1.Time" => time(b, false),
        "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime" => time(b, true),
        "k8s.io.apimachinery.pkg.apis.meta.v1.Duration" => {
            let mut ns = 0i64;
            for (n, w) in wire_fields(b)? {
                if let (1, Wire::Varint(v)) = (n, w) {
                    ns = v as i64;
                }
            }
            Ok(Value::String(go_duration(ns)))
        }
        "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => {
            let (mut ty, mut int, mut s) = (0u64, 0i64, String::new());
            for (n, w) in wire_fields(b)? {
                match (n, w) {
                    (1, Wire::Varint(v)) => ty = v,
                    (2, Wire::Varint(v)) => int = i64::from(v as i64 as i32),
                    (3, Wire::Bytes(x)) => s = utf8(x)?,
                    _ => {}
                }
            }
            // A zero int is kept (pointer fields like maxUnavailable: 0); non-pointer zero
            // values are dropped by the caller.
            Ok(match ty {
                0 => Value::from(int),
                _ => Value::String(s),
            })
        }
        "k8s.io.apimachinery.pkg.api.resource.Quantity" => {
            let mut s = String::new();
            for (n, w) in wire_fields(b)? {
                if let (1, Wire::Bytes(x)) = (n, w) {
                    s = utf8(x)?;
                }
            }
            Ok(if s.is_empty() {
                Value::Null
            } else {
                Value::String(s)
            })
        }
        "k8s.io.apimachinery.pkg.runtime.RawExtension"
        | "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1" => {
            let mut raw: &[u8] = &[];
            for (n, w) in wire_fields(b)? {
                if let (1, Wire::Bytes(x)) = (n, w) {
                    raw = x;
                }
            }
            if raw.is_empty() {
                Ok(Value::Null)
            } else if raw.starts_with(MAGIC) {
                decode_inner(raw)
            } else {
                serde_json::from_slice(raw).map_err(|e| format!("embedded JSON in {name}: {e}"))
            }
        }
        _ => {
            let msg = *messages()
                .get(name)
                .ok_or_else(|| format!("unknown message {name}"))?;
            if msg.array {
                // `type ExtraValue []string`: one repeated field, rendered as a JSON array.
                let mut obj = Map::new();
                decode_fields(msg, b, &mut obj, depth)?;
                return Ok(obj
                    .into_iter()
                    .next()
                    .map(|(_, v)| v)
                    .unwrap_or_else(|| Value::Array(Vec::new())));
            }
            let mut obj = Map::new();
            decode_fields(msg, b, &mut obj, depth)?;
            Ok(Value::Object(obj))
        }
    }
}

/// `metav1.Time` ({seconds, nanos}) → RFC 3339 (seconds precision; MicroTime with 6 digits).
/// The zero time is Null so non-pointer timestamps count as unset.
fn time(b: &[u8], micro: bool) -> Result<Value, String> {
    let (mut secs, mut nanos) = (0i64, 0i32);
    for (n, w) in wire_fields(b)? {
        match (n, w) {
            (1, Wire::Varint(v)) => secs = v as i64,
            (2, Wire::Varint(v)) => nanos = v as i64 as i32,
            _ => {}
        }
    }
    if secs == 0 && nanos == 0 {
        return Ok(Value::Null);
    }
    // Go's zero time.Time (year 1) marshals as seconds -62135596800.
    if secs == -62_135_596_800 && nanos == 0 {
        return Ok(Value::Null);
    }
    let ts = jiff::Timestamp::new(secs, if micro { nanos } else { 0 })
        .map_err(|e| format!("bad timestamp: {e}"))?;
    let fmt = if micro {
        "%Y-%m-%dT%H:%M:%S%.6fZ"
    } else {
        "%Y-%m-%dT%H:%M:%SZ"
    };
    Ok(Value::String(ts.strftime(fmt).to_string()))
}

/// Go's `time.Duration.String()` (e.g. "1h0m0s", "1.5s", "300ms", "0s").
fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let mut out = String::new();
    if u < 1_000_000_000 {
        let (unit, div) = if u < 1_000 {
            ("ns", 1)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        out.push_str(&frac(u, div));
        out.push_str(unit);
    } else {
        let h = u / 3_600_000_000_000;
        let m = (u / 60_000_000_000) % 60;
        let s_ns = u % 60_000_000_000;
        if h > 0 {
            out.push_str(&format!("{h}h{m}m"));
        } else if m > 0 {
            out.push_str(&format!("{m}m"));
        }
        out.push_str(&frac(s_ns, 1_000_000_000));
        out.push('s');
    }
    if neg {
        format!("-{out}")
    } else {
        out
    }
}

fn frac(v: u64, div: u64) -> String {
    let whole = v / div;
    let rest = v % div;
    if rest == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_match_go() {
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(300_000_000), "300ms");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
    }

    #[test]
    fn table_resolves_every_message_reference() {
        for m in table::MESSAGES {
            for f in m.fields {
                if let Ty::Msg(n) = f.ty {
                    assert!(messages().contains_key(n), "{} -> {n}", m.name);
                }
            }
        }
    }
}
