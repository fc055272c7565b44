//! The Kubernetes protobuf message table of `skiff_api::protobuf` (`table.rs`), generated from
//! upstream API definitions vendored under `xtask/data/protobuf/`.
//!
//! Two upstream sources per API package, both filtered to declarations only (see [`vendor`]):
//! - `generated.proto`: every message, its field numbers, proto types and cardinality;
//! - `types.go.txt`: the Go structs behind those messages, whose field order, JSON names,
//!   pointer-ness and `,inline` tags decide how a decoded field appears in JSON. Go's
//!   gogo-protobuf marshaller writes zero values of non-pointer fields, so the decoder must know
//!   which fields are pointers.
//!
//! Messages without a Go struct carrying protobuf tags (`Time`, `Quantity`, …) take their fields
//! from the proto; Go slice types (`ExtraValue`, `Verbs`) are marked `array`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Vendored data, relative to the xtask crate.
pub const DATA_DIR: &str = "data/protobuf";
/// The generated table, relative to the xtask crate.
pub const TABLE_PATH: &str = "../crates/skiff-api/src/protobuf/table.rs";

/// Upstream packages whose messages the table holds: (repository, directory in it).
pub const PACKAGES: &[(&str, &str)] = &[
    ("api", "admission/v1"),
    ("api", "admissionregistration/v1"),
    ("api", "apidiscovery/v2"),
    ("api", "apps/v1"),
    ("api", "authentication/v1"),
    ("api", "authorization/v1"),
    ("api", "autoscaling/v1"),
    ("api", "autoscaling/v2"),
    ("api", "batch/v1"),
    ("api", "certificates/v1"),
    ("api", "coordination/v1"),
    ("api", "core/v1"),
    ("api", "discovery/v1"),
    ("api", "events/v1"),
    ("api", "flowcontrol/v1"),
    ("api", "networking/v1"),
    ("api", "node/v1"),
    ("api", "policy/v1"),
    ("api", "rbac/v1"),
    ("api", "scheduling/v1"),
    ("api", "storage/v1"),
    ("apimachinery", "pkg/api/resource"),
    ("apimachinery", "pkg/apis/meta/v1"),
    ("apimachinery", "pkg/runtime"),
    ("apimachinery", "pkg/util/intstr"),
];

const PROTO_FILE: &str = "generated.proto";
const GO_FILE: &str = "types.go.txt";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("{file}:{line}: cannot parse {text:?}")]
    Parse {
        file: String,
        line: usize,
        text: String,
    },
    #[error("{file}: no `package` line")]
    NoPackage { file: String },
    #[error("unsupported proto scalar type {0:?}")]
    Scalar(String),
    #[error(
        "Go field {go_struct}.{field} has protobuf number {num}, which message {message} lacks"
    )]
    Unmatched {
        go_struct: String,
        field: String,
        num: u32,
        message: String,
    },
}

/// Cardinality, as the table's Rust path: `Card::One`, `Card::Repeated` or `Card::Map`.
type Card = &'static str;

#[derive(Debug)]
struct ProtoField {
    card: Card,
    /// Value type as written (scalar or message name; for maps the value type).
    ty: String,
    name: String,
    num: u32,
}

#[derive(Debug)]
struct ProtoMessage {
    package: String,
    name: String,
    fields: Vec<ProtoField>,
}

#[derive(Debug)]
struct GoField {
    name: String,
    pointer: bool,
    embedded: bool,
    /// The `json:"…"` tag, if any.
    json: Option<String>,
    /// The `protobuf:"…"` tag, if any.
    protobuf: Option<String>,
}

#[derive(Debug, Default)]
struct GoPackage {
    structs: HashMap<String, Vec<GoField>>,
    slices: HashSet<String>,
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::Io(path.to_path_buf(), e))
}

fn package_dir(repo: &str, dir: &str) -> String {
    format!("k8s.io/{repo}/{dir}")
}

/// The lines of a `.proto` that are not comments or blank, with their 0-based numbers.
fn proto_declarations(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut in_comment = false;
    text.lines().enumerate().filter(move |(_, raw)| {
        let line = raw.trim();
        if in_comment || line.starts_with("/*") {
            in_comment = !line.contains("*/");
            return false;
        }
        !(line.is_empty() || line.starts_with("//"))
    })
}

/// Parses a (filtered or upstream) `generated.proto`.
fn parse_proto(file: &str, text: &str) -> Result<Vec<ProtoMessage>, Error> {
    let err = |line: usize, t: &str| Error::Parse {
        file: file.to_string(),
        line: line + 1,
        text: t.to_string(),
    };
    let mut package = None;
    let mut out = Vec::new();
    let mut current: Option<ProtoMessage> = None;
    for (i, raw) in proto_declarations(text) {
        let line = raw.trim();
        if let Some(p) = line.strip_prefix("package ") {
            package = Some(p.trim_end_matches(';').trim().to_string());
        } else if let Some(rest) = line.strip_prefix("message ") {
            let name = rest.trim_end_matches('{').trim().to_string();
            let package = package.clone().ok_or_else(|| Error::NoPackage {
                file: file.to_string(),
            })?;
            current = Some(ProtoMessage {
                package,
                name,
                fields: Vec::new(),
            });
        } else if line == "}" {
            out.extend(current.take());
        } else if let Some(msg) = current.as_mut() {
            let decl = line.strip_suffix(';').ok_or_else(|| err(i, raw))?;
            let (lhs, num) = decl.split_once('=').ok_or_else(|| err(i, raw))?;
            let num: u32 = num.trim().parse().map_err(|_| err(i, raw))?;
            let (card, ty, name) = if let Some(m) = lhs.trim().strip_prefix("map<") {
                let (kv, name) = m.split_once('>').ok_or_else(|| err(i, raw))?;
                let (_, v) = kv.split_once(',').ok_or_else(|| err(i, raw))?;
                ("Card::Map", v.trim(), name.trim())
            } else {
                let mut parts = lhs.split_whitespace();
                let card = match parts.next() {
                    Some("optional") => "Card::One",
                    Some("repeated") => "Card::Repeated",
                    _ => return Err(err(i, raw)),
                };
                let (Some(ty), Some(name), None) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(err(i, raw));
                };
                (card, ty, name)
            };
            msg.fields.push(ProtoField {
                card,
                ty: ty.to_string(),
                name: name.to_string(),
                num,
            });
        } else if !(line.starts_with("syntax ")
            || line.starts_with("import ")
            || line.starts_with("option "))
        {
            return Err(err(i, raw));
        }
    }
    Ok(out)
}

/// Value of `key:"…"` in a Go struct tag.
fn tag_value(tags: &str, key: &str) -> Option<String> {
    let start = tags.find(&format!("{key}:\""))? + key.len() + 2;
    let end = tags[start..].find('"')? + start;
    Some(tags[start..end].to_string())
}

/// Strips a trailing `// comment` from a Go line (tags never contain `//`).
fn strip_go_comment(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

/// Top-level `type X struct {` blocks and `type X []T` declarations of Go source, keeping only
/// tagged field lines. Yields (type name, declaration line or field lines).
fn go_decls(text: &str) -> Vec<(String, GoDecl)> {
    let mut out = Vec::new();
    let mut current: Option<(String, Vec<String>)> = None;
    for raw in text.lines() {
        if let Some((_, lines)) = current.as_mut() {
            if raw == "}" {
                if let Some((name, lines)) = current.take() {
                    out.push((name, GoDecl::Struct(lines)));
                }
            } else {
                let line = strip_go_comment(raw).trim();
                if line.contains('`') {
                    lines.push(line.to_string());
                }
            }
            continue;
        }
        let Some(rest) = raw.strip_prefix("type ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        if kind == "struct" && rest.trim_end().ends_with('{') {
            current = Some((name.to_string(), Vec::new()));
        } else if kind.starts_with("[]") {
            out.push((
                name.to_string(),
                GoDecl::Slice(strip_go_comment(raw).trim().to_string()),
            ));
        }
    }
    out
}

enum GoDecl {
    Struct(Vec<String>),
    Slice(String),
}

/// Parses a `types.go.txt` written by [`vendor`].
fn parse_go(file: &str, text: &str) -> Result<GoPackage, Error> {
    let mut pkg = GoPackage::default();
    for (name, decl) in go_decls(text) {
        match decl {
            GoDecl::Slice(_) => {
                pkg.slices.insert(name);
            }
            GoDecl::Struct(lines) => {
                let mut fields = Vec::new();
                for line in lines {
                    let parse_err = || Error::Parse {
                        file: file.to_string(),
                        line: 0,
                        text: line.clone(),
                    };
                    let (decl, tags) = line.split_once('`').ok_or_else(parse_err)?;
                    let mut parts = decl.split_whitespace();
                    let (fname, ty, embedded) = match (parts.next(), parts.next()) {
                        (Some(ty), None) => (ty.trim_start_matches('*').to_string(), ty, true),
                        (Some(n), Some(ty)) => (n.to_string(), ty, false),
                        _ => return Err(parse_err()),
                    };
                    fields.push(GoField {
                        name: fname,
                        pointer: ty.starts_with('*'),
                        embedded,
                        json: tag_value(tags, "json"),
                        protobuf: tag_value(tags, "protobuf"),
                    });
                }
                pkg.structs.insert(name, fields);
            }
        }
    }
    Ok(pkg)
}

fn rust_ty(package: &str, ty: &str) -> Result<String, Error> {
    Ok(match ty {
        "string" => "Ty::Str".into(),
        "bool" => "Ty::Bool".into(),
        "bytes" => "Ty::Bytes".into(),
        "int32" => "Ty::I32".into(),
        "int64" => "Ty::I64".into(),
        "uint64" => "Ty::U64".into(),
        "sint64" => "Ty::S64".into(),
        "float" => "Ty::F32".into(),
        "double" => "Ty::F64".into(),
        "fixed32" => "Ty::Fixed32".into(),
        "fixed64" => "Ty::Fixed64".into(),
        t if t.starts_with(|c: char| c.is_ascii_lowercase()) && !t.contains('.') => {
            return Err(Error::Scalar(t.to_string()))
        }
        t if t.contains('.') => format!("Ty::Msg(\"{}\")", t.trim_start_matches('.')),
        t => format!("Ty::Msg(\"{package}.{t}\")"),
    })
}

struct Row {
    num: u32,
    json: String,
    ty: String,
    card: Card,
    pointer: bool,
    inline: bool,
}

/// The table rows of one message: Go field order and JSON rules when a Go struct with protobuf
/// tags exists, the proto's fields otherwise.
fn rows(msg: &ProtoMessage, go: &GoPackage) -> Result<Vec<Row>, Error> {
    let by_num: HashMap<u32, &ProtoField> = msg.fields.iter().map(|f| (f.num, f)).collect();
    let tagged: Vec<&GoField> = go
        .structs
        .get(&msg.name)
        .map(|fs| {
            fs.iter()
                .filter(|f| f.protobuf.as_deref().is_some_and(|p| p != "-"))
                .collect()
        })
        .unwrap_or_default();
    if tagged.is_empty() {
        return msg
            .fields
            .iter()
            .map(|f| {
                Ok(Row {
                    num: f.num,
                    json: f.name.clone(),
                    ty: rust_ty(&msg.package, &f.ty)?,
                    card: f.card,
                    pointer: false,
                    inline: false,
                })
            })
            .collect();
    }
    let mut out = Vec::new();
    for gf in tagged {
        let pb = gf.protobuf.as_deref().unwrap_or_default();
        let num: u32 = pb
            .split(',')
            .nth(1)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Error::Parse {
                file: msg.name.clone(),
                line: 0,
                text: pb.to_string(),
            })?;
        let pf = by_num.get(&num).ok_or_else(|| Error::Unmatched {
            go_struct: msg.name.clone(),
            field: gf.name.clone(),
            num,
            message: format!("{}.{}", msg.package, msg.name),
        })?;
        let (json_name, json_opts) = match gf.json.as_deref() {
            Some(j) => match j.split_once(',') {
                Some((n, o)) => (n.to_string(), o.to_string()),
                None => (j.to_string(), String::new()),
            },
            None => (String::new(), String::new()),
        };
        if json_name == "-" {
            continue; // not part of the JSON form
        }
        let inline =
            json_opts.split(',').any(|o| o == "inline") || (gf.embedded && gf.json.is_none());
        let json = if inline {
            String::new()
        } else if json_name.is_empty() {
            pf.name.clone()
        } else {
            json_name
        };
        out.push(Row {
            num,
            json,
            ty: rust_ty(&msg.package, &pf.ty)?,
            card: pf.card,
            pointer: gf.pointer,
            inline,
        });
    }
    Ok(out)
}

/// Generates the text of `table.rs` from the vendored data under `data_dir`.
pub fn generate(data_dir: &Path) -> Result<String, Error> {
    let mut messages: BTreeMap<String, (ProtoMessage, usize)> = BTreeMap::new();
    let mut gos = Vec::new();
    for (repo, dir) in PACKAGES {
        let base = data_dir.join(package_dir(repo, dir));
        let proto_path = base.join(PROTO_FILE);
        let go_path = base.join(GO_FILE);
        let go = parse_go(&go_path.display().to_string(), &read(&go_path)?)?;
        for m in parse_proto(&proto_path.display().to_string(), &read(&proto_path)?)? {
            messages.insert(format!("{}.{}", m.package, m.name), (m, gos.len()));
        }
        gos.push(go);
    }
    let version = read(&data_dir.join("VERSION"))?;
    let mut out = String::new();
    out.push_str(
        "//! Generated protobuf message table (see `super`): field numbers, JSON names, pointer-ness, inlining.\n\n",
    );
    let _ = writeln!(
        out,
        "// @generated by `cargo run -p skiff-xtask -- protobuf` from xtask/data/protobuf (kubernetes/api and\n\
         // kubernetes/apimachinery {}: generated.proto field numbers and types; types.go json names,\n\
         // pointer-ness and inlining). Do not edit by hand.\n",
        version.trim()
    );
    out.push_str("use super::{Card, Field, Message, Ty};\n\n");
    out.push_str("pub(super) static MESSAGES: &[Message] = &[\n");
    for (full, (msg, gi)) in &messages {
        let go = &gos[*gi];
        let _ = writeln!(
            out,
            "    Message {{ name: \"{full}\", array: {}, fields: &[",
            go.slices.contains(&msg.name)
        );
        for r in rows(msg, go)? {
            let card = r.card;
            let _ = writeln!(
                out,
                "        Field {{ num: {}, json: \"{}\", ty: {}, card: {card}, pointer: {}, inline: {} }},",
                r.num, r.json, r.ty, r.pointer, r.inline
            );
        }
        out.push_str("    ] },\n");
    }
    out.push_str("];\n");
    Ok(out)
}

/// Go files of an upstream package that declare its API types (not tests or generated code).
fn go_sources(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::Io(dir.to_path_buf(), e))?;
    let mut files = Vec::new();
    for e in entries {
        let path = e.map_err(|e| Error::Io(dir.to_path_buf(), e))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".go")
            && !name.ends_with("_test.go")
            && !name.ends_with(".pb.go")
            && !name.starts_with("zz_generated")
            && !name.contains("swagger_doc")
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Refreshes `data_dir` from checkouts of kubernetes/api and kubernetes/apimachinery: each
/// package's `generated.proto` without comments and blank lines, and the Go declarations of its
/// messages (tagged struct fields, slice types) as `types.go.txt`.
pub fn vendor(api: &Path, apimachinery: &Path, data_dir: &Path) -> Result<(), Error> {
    for (repo, dir) in PACKAGES {
        let src = match *repo {
            "api" => api.join(dir),
            _ => apimachinery.join(dir),
        };
        let dst = data_dir.join(package_dir(repo, dir));
        std::fs::create_dir_all(&dst).map_err(|e| Error::Io(dst.clone(), e))?;
        let proto_text = read(&src.join(PROTO_FILE))?;
        let messages = parse_proto(PROTO_FILE, &proto_text)?;
        let names: HashSet<&str> = messages.iter().map(|m| m.name.as_str()).collect();
        let mut proto = String::new();
        for (_, line) in proto_declarations(&proto_text) {
            proto.push_str(line);
            proto.push('\n');
        }
        let mut go = String::new();
        for path in go_sources(&src)? {
            for (name, decl) in go_decls(&read(&path)?) {
                if !names.contains(name.as_str()) {
                    continue;
                }
                match decl {
                    GoDecl::Slice(line) => {
                        go.push_str(&line);
                        go.push('\n');
                    }
                    GoDecl::Struct(lines) => {
                        let _ = writeln!(go, "type {name} struct {{");
                        for l in lines {
                            let _ = writeln!(go, "\t{l}");
                        }
                        go.push_str("}\n");
                    }
                }
            }
        }
        for (file, text) in [(PROTO_FILE, proto), (GO_FILE, go)] {
            let path = dst.join(file);
            std::fs::write(&path, text).map_err(|e| Error::Io(path.clone(), e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROTO: &str = "syntax = \"proto2\";\npackage k8s.io.api.demo.v1;\n\
        // comment\nmessage Spec {\n  optional string name = 1;\n  optional int32 replicas = 2;\n\
        repeated Item items = 3;\n  map<string, string> labels = 4;\n  optional Source source = 5;\n\
        optional bytes raw = 6;\n}\nmessage Words {\n  repeated string items = 1;\n}\n\
        message Stamp {\n  optional int64 seconds = 1;\n}\n";
    const GO: &str = "type Spec struct {\n\
        \tReplicas *int32 `json:\"replicas,omitempty\" protobuf:\"varint,2,opt,name=replicas\"`\n\
        \tName string `json:\"name\" protobuf:\"bytes,1,opt,name=name\"`\n\
        \tSource `json:\",inline\" protobuf:\"bytes,5,opt,name=source\"`\n\
        \tRaw []byte `json:\"-\" protobuf:\"bytes,6,opt,name=raw\"`\n\
        \tItems []Item `protobuf:\"bytes,3,rep,name=items\"`\n\
        \tLabels map[string]string `json:\"labels,omitempty\" protobuf:\"bytes,4,rep,name=labels\"`\n\
        }\ntype Words []string\ntype Stamp struct {\n\ttime.Time `protobuf:\"-\"`\n}\n";

    fn table() -> (Vec<ProtoMessage>, GoPackage) {
        let msgs = parse_proto("demo.proto", PROTO).expect("proto");
        let go = parse_go("demo.go", GO).expect("go");
        (msgs, go)
    }

    #[test]
    fn go_order_pointers_inline_and_json_fallback() {
        let (msgs, go) = table();
        let rows = rows(&msgs[0], &go).expect("rows");
        let got: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.num,
                    r.json.as_str(),
                    r.ty.as_str(),
                    r.card,
                    r.pointer,
                    r.inline,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (2, "replicas", "Ty::I32", "Card::One", true, false),
                (1, "name", "Ty::Str", "Card::One", false, false),
                (
                    5,
                    "",
                    "Ty::Msg(\"k8s.io.api.demo.v1.Source\")",
                    "Card::One",
                    false,
                    true
                ),
                // json:"-" (Raw) is dropped; no json tag falls back to the proto name.
                (
                    3,
                    "items",
                    "Ty::Msg(\"k8s.io.api.demo.v1.Item\")",
                    "Card::Repeated",
                    false,
                    false
                ),
                (4, "labels", "Ty::Str", "Card::Map", false, false),
            ]
        );
    }

    #[test]
    fn messages_without_tagged_go_fields_use_the_proto() {
        let (msgs, go) = table();
        assert!(go.slices.contains("Words"));
        let stamp = rows(&msgs[2], &go).expect("rows");
        assert_eq!(stamp.len(), 1);
        assert_eq!(
            (stamp[0].json.as_str(), stamp[0].ty.as_str()),
            ("seconds", "Ty::I64")
        );
        assert!(!stamp[0].pointer);
    }

    #[test]
    fn go_field_missing_from_proto_is_an_error() {
        let msgs = parse_proto("demo.proto", PROTO).expect("proto");
        let go = parse_go(
            "demo.go",
            "type Spec struct {\n\tX int32 `json:\"x\" protobuf:\"varint,9,opt,name=x\"`\n}\n",
        )
        .expect("go");
        assert!(matches!(
            rows(&msgs[0], &go),
            Err(Error::Unmatched { num: 9, .. })
        ));
    }

    #[test]
    fn malformed_proto_field_is_an_error() {
        let bad = "package p;\nmessage M {\n  optional string name;\n}\n";
        assert!(matches!(
            parse_proto("bad.proto", bad),
            Err(Error::Parse { line: 3, .. })
        ));
    }
}
