//! certificates.k8s.io/v1 CertificateSigningRequest: cluster-scoped, with `status` (the signer
//! writes the certificate) and `approval` (approvers write Approved/Denied). Validation is
//! upstream's: the request must be a PEM `CERTIFICATE REQUEST` whose signature verifies, usages
//! are required and known, signerName is `domain/path`, expirationSeconds ≥ 600, conditions are
//! well formed (Approved and Denied never together), status.certificate holds only PEM
//! certificates. What each write path may change (the strategies) is the API server's hook.

use base64::Engine;
use serde_json::{json, Map, Value};
use x509_parser::prelude::FromDer;

use crate::kinds::prelude::*;

pub(crate) const GROUP: &str = "certificates.k8s.io";

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: GROUP,
        version: "v1",
        kind: "CertificateSigningRequest",
        list_kind: "CertificateSigningRequestList",
        plural: "certificatesigningrequests",
        singular: "certificatesigningrequest",
        namespaced: false,
        short_names: &["csr"],
        categories: &[],
        verbs: FULL,
        subresources: &["approval", "status"],
    },
    // Upstream accepts any name the REST path can carry.
    name_rule: NameRule::PathSegment,
    validate,
    table: Table {
        columns: COLUMNS,
        cells,
        ..Table::BASE
    },
    fields: &[
        NAME_FIELD,
        Field {
            label: "spec.signerName",
            value: |o| text(o, "/spec/signerName"),
        },
    ],
    field_error: not_supported_field_error,
    ..Kind::BASE
};

/// The signer name v1 refuses for new requests (v1beta1's default).
const LEGACY_UNKNOWN: &str = "kubernetes.io/legacy-unknown";

/// Every key usage upstream knows, sorted as its error messages list them.
pub const USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

/// Condition types whose status may only be True.
const TRUE_ONLY: &[&str] = &["Approved", "Denied", "Failed"];

/// Base64 bytes of a JSON `[]byte` field (None when missing, empty or not base64).
pub fn bytes_field(obj: &Value, ptr: &str) -> Option<Vec<u8>> {
    let text = obj.pointer(ptr).and_then(Value::as_str)?;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
}

/// Why a CSR's `spec.request` is unacceptable (Go's `ParseCSR` + `CheckSignature` wording), or
/// the DER of the request.
pub fn parse_request(pem: &[u8]) -> Result<Vec<u8>, String> {
    const BAD_BLOCK: &str = "PEM block type must be CERTIFICATE REQUEST";
    let first = x509_parser::pem::Pem::iter_from_buffer(pem).next();
    let der = match first {
        Some(Ok(p)) if p.label == "CERTIFICATE REQUEST" => p.contents,
        _ => return Err(BAD_BLOCK.into()),
    };
    let req = match x509_parser::certification_request::X509CertificationRequest::from_der(&der) {
        Ok(([], req)) => req,
        Ok(_) => return Err("x509: trailing data".into()),
        Err(_) => return Err("x509: malformed certificate request".into()),
    };
    if req.verify_signature().is_err() {
        let alg = req
            .certification_request_info
            .subject_pki
            .algorithm
            .algorithm
            .to_id_string();
        return Err(match alg.as_str() {
            "1.2.840.10045.2.1" => "x509: ECDSA verification failure",
            "1.2.840.113549.1.1.1" => "crypto/rsa: verification error",
            "1.3.101.112" => "x509: Ed25519 verification failure",
            _ => "x509: cannot verify signature: algorithm unimplemented",
        }
        .into());
    }
    Ok(der)
}

/// Go's `validateCertificate`: every PEM block a CERTIFICATE without headers that parses, at
/// least one of them.
fn certificate_error(pem: &[u8]) -> Option<String> {
    if pem.is_empty() {
        return None;
    }
    let mut blocks = 0;
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let Ok(block) = block else { break };
        if block.label != "CERTIFICATE" {
            return Some(format!(
                "only CERTIFICATE PEM blocks are allowed, found {:?}",
                block.label
            ));
        }
        if x509_parser::parse_x509_certificate(&block.contents).is_err() {
            return Some("x509: malformed certificate".into());
        }
        blocks += 1;
    }
    (blocks == 0).then(|| "must contain at least one CERTIFICATE PEM block".into())
}

fn conditions(obj: &Value) -> &[Value] {
    arr(obj, "/status/conditions")
}

fn condition_type(c: &Value) -> &str {
    c.get("type").and_then(Value::as_str).unwrap_or("")
}

fn of_type<'a>(obj: &'a Value, t: &str) -> Vec<&'a Value> {
    conditions(obj)
        .iter()
        .filter(|c| condition_type(c) == t)
        .collect()
}

fn usages(obj: &Value) -> Vec<&str> {
    arr(obj, "/spec/usages")
        .iter()
        .map(|u| u.as_str().unwrap_or(""))
        .collect()
}

/// Upstream's `certificateValidationOptions`: what an update tolerates because the stored
/// object already has it (create tolerates nothing).
#[derive(Default)]
struct Tolerate {
    both_approved_and_denied: bool,
    legacy_signer: bool,
    duplicate_condition_types: bool,
    empty_condition_type: bool,
    arbitrary_certificate: bool,
    unknown_usages: bool,
    duplicate_usages: bool,
}

fn has_duplicates<'a>(items: impl Iterator<Item = &'a str>) -> bool {
    let mut seen = std::collections::HashSet::new();
    items.into_iter().any(|i| !seen.insert(i))
}

impl Tolerate {
    fn for_update(new: &Value, old: Option<&Value>) -> Self {
        let Some(old) = old else {
            return Self::default();
        };
        let types = || conditions(old).iter().map(condition_type);
        let old_cert = bytes_field(old, "/status/certificate").unwrap_or_default();
        let new_cert = bytes_field(new, "/status/certificate").unwrap_or_default();
        Tolerate {
            both_approved_and_denied: types().any(|t| t == "Approved")
                && types().any(|t| t == "Denied"),
            legacy_signer: s(old, "/spec/signerName") == LEGACY_UNKNOWN,
            duplicate_condition_types: has_duplicates(types()),
            empty_condition_type: types().any(str::is_empty),
            arbitrary_certificate: old_cert == new_cert || certificate_error(&old_cert).is_some(),
            unknown_usages: usages(old).iter().any(|u| !USAGES.contains(u)),
            duplicate_usages: has_duplicates(usages(old).into_iter()),
        }
    }
}

/// Upstream's `ValidateSignerName`.
fn signer_name(e: &mut Errs, name: &str) {
    const F: &str = "spec.signerName";
    if name.is_empty() {
        e.required(F, "");
        return;
    }
    let segments: Vec<&str> = name.split('/').collect();
    let [domain, path] = segments[..] else {
        e.invalid_str(
            F,
            name,
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        );
        return;
    };
    if domain.len() > 253 {
        e.too_long(F, 253);
    }
    let labels: Vec<&str> = domain.split('.').collect();
    for l in &labels {
        let errs = dns1123_label(l);
        for m in &errs {
            e.invalid_str(F, domain, &format!("validating label {l:?}: {m}"));
        }
        if !errs.is_empty() {
            break;
        }
    }
    if labels.len() < 2 {
        e.invalid_str(
            F,
            domain,
            "should be a domain with at least two segments separated by dots",
        );
    }
    for l in path.split('.') {
        let errs = dns1123_subdomain(l);
        for m in &errs {
            e.invalid_str(F, path, &format!("validating label {l:?}: {m}"));
        }
        if !errs.is_empty() {
            break;
        }
    }
    let max = 253 + (253 + 63 + 1) + 1;
    if name.len() > max {
        e.too_long(F, max);
    }
}

fn validate(e: &mut Errs, obj: &Map<String, Value>, old: Option<&Value>) {
    let new = Value::Object(obj.clone());
    let tol = Tolerate::for_update(&new, old);
    let request = bytes_field(&new, "/spec/request").unwrap_or_default();
    if let Err(msg) = parse_request(&request) {
        let shown = new.pointer("/spec/request").cloned().unwrap_or(json!(""));
        e.invalid("spec.request", &shown, &msg);
    }
    let us = usages(&new);
    if us.is_empty() {
        e.required("spec.usages", "");
    }
    if !tol.unknown_usages {
        for (i, u) in us.iter().enumerate() {
            if !USAGES.contains(u) {
                e.not_supported(&format!("spec.usages[{i}]"), u, USAGES);
            }
        }
    }
    if !tol.duplicate_usages {
        for (i, u) in us.iter().enumerate() {
            if us[..i].contains(u) {
                e.duplicate(&format!("spec.usages[{i}]"), u);
            }
        }
    }
    let signer = s(&new, "/spec/signerName");
    if !tol.legacy_signer && signer == LEGACY_UNKNOWN {
        e.invalid_str(
            "spec.signerName",
            signer,
            "the legacy signerName is not allowed via this API version",
        );
    } else {
        signer_name(e, signer);
    }
    if let Some(secs) = new
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
    {
        if secs < 600 {
            e.invalid(
                "spec.expirationSeconds",
                &json!(secs),
                "may not specify a duration less than 600 seconds (10 minutes)",
            );
        }
    }
    validate_conditions(e, &new, &tol);
    if !tol.arbitrary_certificate {
        let cert = bytes_field(&new, "/status/certificate").unwrap_or_default();
        if let Some(msg) = certificate_error(&cert) {
            e.invalid_str("status.certificate", "<certificate data>", &msg);
        }
    }
    if let Some(old) = old {
        // Approved, Denied and Failed conditions are never taken back.
        for t in TRUE_ONLY {
            if of_type(&new, t).len() < of_type(old, t).len() {
                e.forbidden(
                    "status.conditions",
                    &format!("updates may not remove a condition of type {t:?}"),
                );
            }
        }
        let old_cert = bytes_field(old, "/status/certificate").unwrap_or_default();
        let new_cert = bytes_field(&new, "/status/certificate").unwrap_or_default();
        if old_cert != new_cert && !old_cert.is_empty() {
            e.forbidden(
                "status.certificate",
                "updates may not modify existing certificate content",
            );
        }
    }
}

fn validate_conditions(e: &mut Errs, obj: &Value, tol: &Tolerate) {
    const F: &str = "status.conditions";
    let (mut approved, mut denied) = (false, false);
    let mut seen = Vec::new();
    for (i, c) in conditions(obj).iter().enumerate() {
        let t = condition_type(c);
        if !tol.empty_condition_type && t.is_empty() {
            e.required(&format!("{F}[{i}].type"), "");
        }
        let allowed: &[&str] = if TRUE_ONLY.contains(&t) {
            &["True"]
        } else {
            &["False", "True", "Unknown"]
        };
        let status = c.get("status").and_then(Value::as_str).unwrap_or("");
        if status.is_empty() {
            e.required(&format!("{F}[{i}].status"), "");
        } else if !allowed.contains(&status) {
            e.not_supported(&format!("{F}[{i}].status"), status, allowed);
        }
        if !tol.both_approved_and_denied {
            let clash = match t {
                "Approved" => {
                    approved = true;
                    denied
                }
                "Denied" => {
                    denied = true;
                    approved
                }
                _ => false,
            };
            if clash {
                e.invalid_str(
                    F,
                    t,
                    "Approved and Denied conditions are mutually exclusive",
                );
            }
        }
        if !tol.duplicate_condition_types {
            if seen.contains(&t) {
                e.duplicate(&format!("{F}[{i}].type"), t);
            }
            seen.push(t);
        }
    }
}

/// Upstream's `extractCSRStatus`: Denied over Approved over Pending, then Failed and Issued.
pub fn condition_summary(obj: &Value) -> String {
    let has = |t: &str| conditions(obj).iter().any(|c| condition_type(c) == t);
    let mut out = if has("Denied") {
        "Denied".to_string()
    } else if has("Approved") {
        "Approved".to_string()
    } else {
        "Pending".to_string()
    };
    if has("Failed") {
        out.push_str(",Failed");
    }
    if bytes_field(obj, "/status/certificate").is_some_and(|c| !c.is_empty()) {
        out.push_str(",Issued");
    }
    out
}

#[rustfmt::skip]
const COLUMNS: &[Col] = &[
    NAME,
    AGE,
    ("SignerName", "string", 0, "signerName indicates the requested signer, and is a qualified name."),
    ("Requestor", "string", 0, "username contains the name of the user that created the CertificateSigningRequest. Populated by the API server on creation and immutable."),
    ("RequestedDuration", "string", 0, "expirationSeconds is the requested duration of validity of the issued certificate."),
    ("Condition", "string", 0, "conditions applied to the request. Known conditions are \"Approved\", \"Denied\", and \"Failed\"."),
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    let or_none = |v: &str| {
        if v.is_empty() {
            "<none>".to_string()
        } else {
            v.to_string()
        }
    };
    let duration = obj
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .map_or_else(|| "<none>".to_string(), human_duration);
    vec![
        json!(name),
        json!(age),
        json!(or_none(s(obj, "/spec/signerName"))),
        json!(s(obj, "/spec/username")),
        json!(duration),
        json!(condition_summary(obj)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    // An ECDSA P-256 request for CN=alice, O=dev made with `openssl req -new -newkey ec
    // -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=alice/O=dev`.
    const REQUEST: &str = "-----BEGIN CERTIFICATE REQUEST-----
MIHZMIGAAgEAMB4xDjAMBgNVBAMMBWFsaWNlMQwwCgYDVQQKDANkZXYwWTATBgcq
hkjOPQIBBggqhkjOPQMBBwNCAARFyjKzIhGB89iT85rii4MUKDbeCJ4EN006tIj3
WQyMQOjEdj2W3EOnkLv/ozzrqeC23AKQYR8TnU4qyhGu6uWNoAAwCgYIKoZIzj0E
AwIDSAAwRQIgOOucVZNwwKxqFRyNF9h8vKyB0iP1jrPSBwQbCHQuGjkCIQCw406H
syBeji39Y7dgtHoHZcE2mCH9xEihALGM4K8glg==
-----END CERTIFICATE REQUEST-----
";

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn causes(obj: Value, old: Option<&Value>) -> Vec<String> {
        let mut e = Errs::default();
        validate(&mut e, obj.as_object().unwrap(), old);
        e.0.iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn usages_are_sorted() {
        let mut sorted = USAGES.to_vec();
        sorted.sort();
        assert_eq!(sorted, USAGES);
    }

    #[test]
    fn bad_requests_get_upstreams_messages() {
        let obj = json!({"spec": {
            "request": b64("not a pem"),
            "signerName": "example",
            "usages": ["client auth", "bogus", "client auth"],
            "expirationSeconds": 100,
        }});
        let got = causes(obj, None);
        let req = format!(
            "spec.request: Invalid value: {:?}: PEM block type must be CERTIFICATE REQUEST",
            b64("not a pem")
        );
        assert_eq!(got[0], req);
        assert!(got[1].starts_with("spec.usages[1]: Unsupported value: \"bogus\": supported values: \"any\", \"cert sign\", \"client auth\""), "{}", got[1]);
        assert_eq!(got[2], "spec.usages[2]: Duplicate value: \"client auth\"");
        assert_eq!(got[3], "spec.signerName: Invalid value: \"example\": must be a fully qualified domain and path of the form 'example.com/signer-name'");
        assert_eq!(got[4], "spec.expirationSeconds: Invalid value: 100: may not specify a duration less than 600 seconds (10 minutes)");
        assert_eq!(got.len(), 5, "{got:?}");

        let missing = causes(json!({"spec": {"request": b64(REQUEST)}}), None);
        assert_eq!(
            missing,
            [
                "spec.usages: Required value",
                "spec.signerName: Required value"
            ]
        );
        let legacy = causes(
            json!({"spec": {"request": b64(REQUEST), "usages": ["client auth"],
            "signerName": "kubernetes.io/legacy-unknown"}}),
            None,
        );
        assert_eq!(legacy, ["spec.signerName: Invalid value: \"kubernetes.io/legacy-unknown\": the legacy signerName is not allowed via this API version"]);
        let one_label = causes(
            json!({"spec": {"request": b64(REQUEST), "usages": ["client auth"],
            "signerName": "example/Signer"}}),
            None,
        );
        assert_eq!(one_label[0], "spec.signerName: Invalid value: \"example\": should be a domain with at least two segments separated by dots");
        assert!(one_label[1].starts_with("spec.signerName: Invalid value: \"Signer\": validating label \"Signer\": a lowercase RFC 1123 subdomain"), "{one_label:?}");
    }

    #[test]
    fn a_tampered_request_fails_its_signature_check() {
        let ok = json!({"spec": {"request": b64(REQUEST), "usages": ["client auth"],
            "signerName": "kubernetes.io/kube-apiserver-client"}});
        assert!(causes(ok, None).is_empty());
        let der = parse_request(REQUEST.as_bytes()).unwrap();
        // Flip a bit of the subject (the signed part).
        let mut bad = der.clone();
        bad[20] ^= 1;
        let pem = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            base64::engine::general_purpose::STANDARD.encode(&bad)
        );
        assert_eq!(
            parse_request(pem.as_bytes()).unwrap_err(),
            "x509: ECDSA verification failure"
        );
    }

    #[test]
    fn conditions_follow_upstream() {
        let base = json!({"spec": {"request": b64(REQUEST), "usages": ["client auth"],
            "signerName": "kubernetes.io/kube-apiserver-client"}});
        let mut both = base.clone();
        both["status"] = json!({"conditions": [
            {"type": "Approved", "status": "True"},
            {"type": "Denied", "status": "False"},
            {"type": "Approved", "status": "True"},
            {"type": "Custom"},
        ]});
        assert_eq!(
            causes(both.clone(), None),
            [
                "status.conditions[1].status: Unsupported value: \"False\": supported values: \"True\"",
                "status.conditions: Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive",
                "status.conditions: Invalid value: \"Approved\": Approved and Denied conditions are mutually exclusive",
                "status.conditions[2].type: Duplicate value: \"Approved\"",
                "status.conditions[3].status: Required value",
            ]
        );
        // Conditions are never removed.
        let mut approved = base.clone();
        approved["status"] = json!({"conditions": [{"type": "Approved", "status": "True"}]});
        assert_eq!(
            causes(base.clone(), Some(&approved)),
            ["status.conditions: Forbidden: updates may not remove a condition of type \"Approved\""]
        );
        let mut issued = approved.clone();
        issued["status"]["certificate"] = json!(b64("garbage"));
        assert_eq!(
            causes(issued, None),
            ["status.certificate: Invalid value: \"<certificate data>\": must contain at least one CERTIFICATE PEM block"]
        );
    }

    #[test]
    fn the_table_prints_requestor_duration_and_condition() {
        let now = jiff::Timestamp::now();
        let obj = json!({"metadata": {"name": "alice"},
            "spec": {"signerName": "kubernetes.io/kube-apiserver-client", "username": "bob",
                     "expirationSeconds": 86400},
            "status": {"conditions": [{"type": "Approved", "status": "True"}],
                       "certificate": b64("x")}});
        let c = cells(&obj, now);
        assert_eq!(
            c[2..],
            [
                json!("kubernetes.io/kube-apiserver-client"),
                json!("bob"),
                json!("24h"),
                json!("Approved,Issued")
            ]
        );
        let pending = json!({"metadata": {"name": "p"}, "spec": {}});
        assert_eq!(
            cells(&pending, now)[2..],
            [
                json!("<none>"),
                json!(""),
                json!("<none>"),
                json!("Pending")
            ]
        );
    }
}
