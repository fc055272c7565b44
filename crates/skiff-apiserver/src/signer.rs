//! The in-process CSR signer for `kubernetes.io/kube-apiserver-client` and
//! `kubernetes.io/kube-apiserver-client-kubelet` (kube-controller-manager's `csrsigning`
//! controllers; it runs here because it needs the cluster CA key, which only the API server
//! holds). It watches CertificateSigningRequests and, for each one Approved and neither Failed
//! nor issued, checks the request against the signer's rules — a failure becomes a `Failed`
//! condition (`SignerValidationFailure`) — then signs it with the cluster CA for
//! min(expirationSeconds, one year) (at least ten minutes, backdated five) and writes
//! `status.certificate` through the `/status` path, so admission and validation see the write.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use skiff_api::kinds::certificates as csr;
use skiff_api::ResourceInfo;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension};

use crate::ctx::{Ctx, Mode};
use crate::keys::{collection_prefix, decode};
use crate::plugins::certificates::{CLIENT_SIGNER, KUBELET_CLIENT_SIGNER};
use crate::query::Query;
use crate::AppState;

/// The longest certificate the signers issue (`--cluster-signing-duration`'s default).
pub const MAX_TTL: Duration = crate::CLIENT_CERT_TTL;
const MIN_TTL: Duration = Duration::from_secs(600);
const BACKDATE: Duration = Duration::from_secs(300);

fn info() -> Option<&'static ResourceInfo> {
    skiff_api::resources::by_plural("certificates.k8s.io", "v1", "certificatesigningrequests")
}

/// Starts the signer (no-op without a CA); it stops when the server shuts down.
pub(crate) fn start(st: Arc<AppState>) {
    if st.pki.is_none() {
        return;
    }
    let Some(info) = info() else { return };
    tokio::spawn(async move {
        let mut shutdown = st.shutdown.clone();
        loop {
            if let Err(err) = run_once(&st, info).await {
                tracing::debug!(%err, "csr signer: relisting");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    });
}

/// Lists every request, then follows the watch until it ends.
async fn run_once(st: &Arc<AppState>, info: &'static ResourceInfo) -> Result<(), String> {
    let prefix = collection_prefix(info, None);
    let list = st
        .store
        .list(&prefix, &Default::default())
        .await
        .map_err(|e| e.to_string())?;
    for kv in &list.items {
        if let Ok(obj) = decode(kv) {
            handle(st, info, obj, kv.mod_revision).await;
        }
    }
    let mut watch = st
        .store
        .watch(&prefix, list.revision)
        .await
        .map_err(|e| e.to_string())?;
    let mut shutdown = st.shutdown.clone();
    loop {
        let event = tokio::select! {
            e = watch.events.recv() => e,
            _ = shutdown.changed() => return Ok(()),
        };
        let Some(event) = event else {
            return Err("watch ended".into());
        };
        let event = event.map_err(|e| e.to_string())?;
        if event.kind != skiff_store::EventKind::Put {
            continue;
        }
        if let Ok(obj) = decode(&event.kv) {
            handle(st, info, obj, event.kv.mod_revision).await;
        }
    }
}

fn has_condition(obj: &Value, t: &str) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == t && c["status"] == "True"))
}

/// Whether the signer acts on `obj`: ours, Approved, not Denied or Failed, not yet issued.
fn wants(obj: &Value) -> bool {
    let signer = obj
        .pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or("");
    (signer == CLIENT_SIGNER || signer == KUBELET_CLIENT_SIGNER)
        && has_condition(obj, "Approved")
        && !has_condition(obj, "Denied")
        && !has_condition(obj, "Failed")
        && csr::bytes_field(obj, "/status/certificate").is_none_or(|c| c.is_empty())
}

async fn handle(st: &Arc<AppState>, info: &'static ResourceInfo, obj: Value, rev: i64) {
    if !wants(&obj) {
        return;
    }
    let Some(pki) = st.pki.as_ref() else { return };
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut new = obj.clone();
    match sign(pki, &obj) {
        Ok(pem) => {
            new["status"]["certificate"] = json!(base64_encode(pem.as_bytes()));
        }
        Err(SignError::Rejected(why)) => {
            let mut conditions = obj
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            conditions.push(json!({"type": "Failed", "status": "True",
                "reason": "SignerValidationFailure", "message": why}));
            new["status"]["conditions"] = json!(conditions);
        }
        Err(SignError::Internal(err)) => {
            tracing::warn!(csr = %name, %err, "csr signer: signing failed");
            return;
        }
    }
    if let Err(e) = write_status(st, info, &name, &obj, rev, new).await {
        // A newer version arrives through the watch; other failures are retried on relist.
        tracing::debug!(csr = %name, err = %e.message, "csr signer: status write");
    } else {
        tracing::info!(csr = %name, "csr signer: processed an approved request");
    }
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// Writes `new` through the `/status` path (strategy, validation, admission) at `rev`.
async fn write_status(
    st: &Arc<AppState>,
    info: &'static ResourceInfo,
    name: &str,
    old: &Value,
    rev: i64,
    new: Value,
) -> Result<(), skiff_api::ApiError> {
    let ctx = Ctx {
        st: st.clone(),
        info,
        ns: None,
        query: Query::parse(Some("fieldManager=kube-controller-manager")),
        headers: Default::default(),
        user: Arc::new(crate::auth::UserInfo::apiserver()),
        custom: None,
    };
    let Some(mut prepared) = crate::storage::prepare_update(&ctx, old, new, Mode::Status, true)?
    else {
        return Ok(());
    };
    crate::plugins::admit(
        &crate::plugins::Request {
            ctx: &ctx,
            op: crate::plugins::Operation::Update,
            name,
            subresource: "status",
            old: Some(old),
        },
        Some(&mut prepared),
    )
    .await?;
    crate::storage::commit_update(&ctx, name, prepared, rev)
        .await
        .map(|_| ())
        .map_err(|e| crate::respond::store_err(info, name, e))
}

#[derive(Debug)]
enum SignError {
    /// The request breaks the signer's rules (a Failed condition).
    Rejected(String),
    /// Something on our side (retried).
    Internal(String),
}

/// The certificate's lifetime: the requested one within [10 min, 1 year], else a year.
fn ttl(obj: &Value) -> Duration {
    match obj
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_u64)
    {
        None => MAX_TTL,
        Some(s) => Duration::from_secs(s).clamp(MIN_TTL, MAX_TTL),
    }
}

/// Kinds of subjectAltName a request may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum San {
    Dns,
    Email,
    Ip,
    Uri,
}

/// The parts of a request the signer looks at.
struct Parsed {
    /// The DER SubjectPublicKeyInfo.
    spki: Vec<u8>,
    /// The DER subject, issued exactly as requested.
    subject: Vec<u8>,
    common_name: String,
    organizations: Vec<String>,
    sans: Vec<San>,
}

fn parse(der: &[u8]) -> Result<Parsed, SignError> {
    let bad = |e: String| SignError::Rejected(format!("unable to parse csr: {e}"));
    let (_, req) = x509_parser::certification_request::X509CertificationRequest::from_der(der)
        .map_err(|e| bad(e.to_string()))?;
    let info = &req.certification_request_info;
    let first = |v: Vec<&str>| v.first().map(|s| s.to_string()).unwrap_or_default();
    let common_name = first(
        info.subject
            .iter_common_name()
            .filter_map(|a| a.as_str().ok())
            .collect(),
    );
    let organizations = info
        .subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .map(str::to_string)
        .collect();
    let mut sans = Vec::new();
    for ext in req.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for n in &san.general_names {
                sans.push(match n {
                    GeneralName::DNSName(_) => San::Dns,
                    GeneralName::RFC822Name(_) => San::Email,
                    GeneralName::URI(_) => San::Uri,
                    GeneralName::IPAddress(_) => San::Ip,
                    _ => continue,
                });
            }
        }
    }
    Ok(Parsed {
        spki: info.subject_pki.raw.to_vec(),
        subject: info.subject.as_raw().to_vec(),
        common_name,
        organizations,
        sans,
    })
}

/// Upstream's checks: kube-apiserver-client wants `client auth` and at most digital signature
/// and key encipherment besides; the kubelet client signer wants a `system:node:` CN in
/// exactly `system:nodes`, no SANs and its fixed usages.
fn check(signer: &str, p: &Parsed, usages: &[&str]) -> Result<(), String> {
    if signer == KUBELET_CLIENT_SIGNER {
        if p.organizations != ["system:nodes"] {
            return Err("subject organization is not system:nodes".into());
        }
        for (san, kind) in [
            (San::Dns, "DNS"),
            (San::Email, "Email"),
            (San::Ip, "IP"),
            (San::Uri, "URI"),
        ] {
            if p.sans.contains(&san) {
                return Err(format!("{kind} subjectAltNames are not allowed"));
            }
        }
        if !p.common_name.starts_with("system:node:") {
            return Err("subject common name does not begin with system:node:".into());
        }
        let mut set: Vec<&str> = usages.to_vec();
        set.sort();
        set.dedup();
        let full = ["client auth", "digital signature", "key encipherment"];
        if set != full && set != ["client auth", "digital signature"] {
            return Err(format!("usages did not match [{}]", full.join(" ")));
        }
        return Ok(());
    }
    let mut client_auth = false;
    for u in usages {
        match *u {
            "digital signature" | "key encipherment" => {}
            "client auth" => client_auth = true,
            other => return Err(format!("invalid usage for client certificate: {other}")),
        }
    }
    if !client_auth {
        return Err("missing required usage for client certificate: client auth".into());
    }
    Ok(())
}

/// Checks and signs the request of `obj`; the certificate PEM.
fn sign(pki: &crate::Pki, obj: &Value) -> Result<String, SignError> {
    let signer = obj
        .pointer("/spec/signerName")
        .and_then(Value::as_str)
        .unwrap_or("");
    let pem = csr::bytes_field(obj, "/spec/request").unwrap_or_default();
    let der = csr::parse_request(&pem).map_err(SignError::Rejected)?;
    let parsed = parse(&der)?;
    let usages: Vec<&str> = obj
        .pointer("/spec/usages")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    check(signer, &parsed, &usages).map_err(SignError::Rejected)?;
    let ca = pki
        .signer()
        .map_err(|e| SignError::Internal(e.to_string()))?;
    let not_before = time::OffsetDateTime::now_utc() - BACKDATE;
    // The signed certificate has the client usages (digital signature, key encipherment,
    // client auth) both signers allow.
    ca.sign_client(
        &parsed.subject,
        &parsed.spki,
        not_before,
        not_before + ttl(obj),
    )
    .map_err(|e| SignError::Internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(cn: &str, orgs: &[&str]) -> Parsed {
        Parsed {
            spki: Vec::new(),
            subject: Vec::new(),
            common_name: cn.into(),
            organizations: orgs.iter().map(|s| s.to_string()).collect(),
            sans: Vec::new(),
        }
    }

    #[test]
    fn signer_rules_follow_upstream() {
        let alice = parsed("alice", &["dev"]);
        assert_eq!(check(CLIENT_SIGNER, &alice, &["client auth"]), Ok(()));
        assert_eq!(
            check(CLIENT_SIGNER, &alice, &["digital signature"]),
            Err("missing required usage for client certificate: client auth".into())
        );
        assert_eq!(
            check(CLIENT_SIGNER, &alice, &["client auth", "server auth"]),
            Err("invalid usage for client certificate: server auth".into())
        );
        let node = parsed("system:node:n1", &["system:nodes"]);
        let usages = ["digital signature", "key encipherment", "client auth"];
        assert_eq!(check(KUBELET_CLIENT_SIGNER, &node, &usages), Ok(()));
        assert_eq!(
            check(KUBELET_CLIENT_SIGNER, &alice, &usages),
            Err("subject organization is not system:nodes".into())
        );
        assert_eq!(
            check(
                KUBELET_CLIENT_SIGNER,
                &parsed("n1", &["system:nodes"]),
                &usages
            ),
            Err("subject common name does not begin with system:node:".into())
        );
        assert_eq!(
            check(KUBELET_CLIENT_SIGNER, &node, &["client auth"]),
            Err("usages did not match [client auth digital signature key encipherment]".into())
        );
    }

    #[test]
    fn lifetimes_are_clamped() {
        assert_eq!(ttl(&json!({"spec": {}})), MAX_TTL);
        assert_eq!(
            ttl(&json!({"spec": {"expirationSeconds": 3600}})),
            Duration::from_secs(3600)
        );
        assert_eq!(ttl(&json!({"spec": {"expirationSeconds": 600}})), MIN_TTL);
        assert_eq!(
            ttl(&json!({"spec": {"expirationSeconds": 10u64 << 30}})),
            MAX_TTL
        );
    }
}
