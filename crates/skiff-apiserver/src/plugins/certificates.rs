//! CertificateSigningRequest admission: the requestor recorded on create (upstream's strategy,
//! from the request's user), and upstream's three certificate plugins — CertificateApproval
//! (`approve` on the `signers` resource to write `/approval`), CertificateSigning (`sign` to
//! change the certificate or conditions through `/status`) and CertificateSubjectRestriction
//! (no `system:masters` client certificates from the kube-apiserver-client signer).

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use skiff_api::kinds::certificates as csr;
use skiff_api::ApiError;

use super::{Operation, Plugin, Request};
use crate::authz::{authorize, Attributes, Decision};
use crate::respond::ApiResult;

const GROUP: &str = "certificates.k8s.io";
const RESOURCE: &str = "certificatesigningrequests";
pub(crate) const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";
pub(crate) const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

fn is_csr(req: &Request<'_>) -> bool {
    req.ctx.info.group == GROUP && req.ctx.info.kind == "CertificateSigningRequest"
}

/// `admission.NewForbidden` for a CSR: `certificatesigningrequests.certificates.k8s.io "x" is
/// forbidden: <why>`.
fn forbidden(name: &str, why: &str) -> ApiError {
    let mut e = ApiError::forbidden(format!("{RESOURCE}.{GROUP} {name:?} is forbidden: {why}"));
    e.details = Some(json!({"name": name, "group": GROUP, "kind": RESOURCE}));
    e
}

fn signer_of(v: Option<&Value>) -> &str {
    v.and_then(|v| v.pointer("/spec/signerName"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Upstream's `IsAuthorizedForSignerName`: `verb` on `signers` named the signer, or its
/// `domain/*`.
pub(crate) async fn authorized_for_signer(req: &Request<'_>, verb: &str, signer: &str) -> bool {
    let domain = signer.split('/').next().unwrap_or("");
    for name in [signer.to_string(), format!("{domain}/*")] {
        let attrs = Attributes {
            user: Arc::clone(&req.ctx.user),
            verb: verb.into(),
            resource_request: true,
            api_group: GROUP.into(),
            api_version: "*".into(),
            resource: "signers".into(),
            name,
            ..Default::default()
        };
        if authorize(&req.ctx.st, &attrs).await == Decision::Allow {
            return true;
        }
    }
    false
}

/// The strategy steps that need the request: the requestor on create, and no Approved or
/// Denied conditions added through `/status`.
pub(crate) struct Requestor;

#[async_trait]
impl Plugin for Requestor {
    fn name(&self) -> &'static str {
        "CertificateSigningRequestStrategy"
    }

    fn handles(&self, req: &Request<'_>) -> bool {
        is_csr(req)
            && (req.op == Operation::Create
                || (req.op == Operation::Update && req.subresource == "status"))
    }

    async fn mutate(&self, req: &Request<'_>, obj: Option<&mut Value>) -> ApiResult<()> {
        let Some(obj) = obj else { return Ok(()) };
        if req.op != Operation::Create {
            return Ok(());
        }
        if !obj.get("spec").is_some_and(Value::is_object) {
            obj["spec"] = json!({});
        }
        let user = req.user();
        let spec = &mut obj["spec"];
        for k in ["username", "uid", "groups", "extra"] {
            if let Some(m) = spec.as_object_mut() {
                m.remove(k);
            }
        }
        if !user.name.is_empty() {
            spec["username"] = json!(user.name);
        }
        if !user.uid.is_empty() {
            spec["uid"] = json!(user.uid);
        }
        if !user.groups.is_empty() {
            spec["groups"] = json!(user.groups);
        }
        if !user.extra.is_empty() {
            spec["extra"] = json!(user.extra);
        }
        Ok(())
    }

    async fn validate(&self, req: &Request<'_>, obj: Option<&Value>) -> ApiResult<Vec<String>> {
        let (Some(obj), Some(old), Operation::Update) = (obj, req.old, req.op) else {
            return Ok(Vec::new());
        };
        let count = |v: &Value, t: &str| {
            v.pointer("/status/conditions")
                .and_then(Value::as_array)
                .map_or(0, |cs| cs.iter().filter(|c| c["type"] == t).count())
        };
        let mut causes = Vec::new();
        for t in ["Approved", "Denied"] {
            if count(obj, t) > count(old, t) {
                causes.push(skiff_api::Cause {
                    reason: "FieldValueForbidden".into(),
                    message: format!("Forbidden: updates may not add a condition of type {t:?}"),
                    field: "status.conditions".into(),
                });
            }
        }
        if causes.is_empty() {
            return Ok(Vec::new());
        }
        Err(ApiError::invalid(
            GROUP,
            "CertificateSigningRequest",
            req.name,
            causes,
        ))
    }
}

/// CertificateApproval: writing `/approval` needs `approve` on the request's signer.
pub(crate) struct Approval;

#[async_trait]
impl Plugin for Approval {
    fn name(&self) -> &'static str {
        "CertificateApproval"
    }

    fn handles(&self, req: &Request<'_>) -> bool {
        is_csr(req) && req.op == Operation::Update && req.subresource == "approval"
    }

    async fn validate(&self, req: &Request<'_>, _obj: Option<&Value>) -> ApiResult<Vec<String>> {
        // The stored signer counts: a write cannot move the request to another signer.
        let signer = signer_of(req.old);
        if authorized_for_signer(req, "approve", signer).await {
            return Ok(Vec::new());
        }
        Err(forbidden(
            req.name,
            &format!("user not permitted to approve requests with signerName {signer:?}"),
        ))
    }
}

/// CertificateSigning: changing the certificate or conditions through `/status` needs `sign`
/// on the request's signer.
pub(crate) struct Signing;

#[async_trait]
impl Plugin for Signing {
    fn name(&self) -> &'static str {
        "CertificateSigning"
    }

    fn handles(&self, req: &Request<'_>) -> bool {
        is_csr(req) && req.op == Operation::Update && req.subresource == "status"
    }

    async fn validate(&self, req: &Request<'_>, obj: Option<&Value>) -> ApiResult<Vec<String>> {
        let get = |v: Option<&Value>, p: &str| v.and_then(|v| v.pointer(p)).cloned();
        let unchanged = ["/status/certificate", "/status/conditions"]
            .iter()
            .all(|p| get(obj, p) == get(req.old, p));
        if unchanged {
            return Ok(Vec::new());
        }
        let signer = signer_of(req.old);
        if authorized_for_signer(req, "sign", signer).await {
            return Ok(Vec::new());
        }
        Err(forbidden(
            req.name,
            &format!("user not permitted to sign requests with signerName {signer:?}"),
        ))
    }
}

/// CertificateSubjectRestriction: the kube-apiserver-client signer never issues a certificate
/// in `system:masters` (that group bypasses authorization).
pub(crate) struct SubjectRestriction;

/// The Organization values of a CSR's subject (empty when it does not parse).
pub(crate) fn request_organizations(obj: &Value) -> Vec<String> {
    let Some(der) =
        csr::bytes_field(obj, "/spec/request").and_then(|pem| csr::parse_request(&pem).ok())
    else {
        return Vec::new();
    };
    use x509_parser::prelude::FromDer;
    let Ok((_, req)) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
    else {
        return Vec::new();
    };
    req.certification_request_info
        .subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect()
}

#[async_trait]
impl Plugin for SubjectRestriction {
    fn name(&self) -> &'static str {
        "CertificateSubjectRestriction"
    }

    fn handles(&self, req: &Request<'_>) -> bool {
        is_csr(req) && req.op == Operation::Create
    }

    async fn validate(&self, req: &Request<'_>, obj: Option<&Value>) -> ApiResult<Vec<String>> {
        let Some(obj) = obj else {
            return Ok(Vec::new());
        };
        let signer = signer_of(Some(obj));
        if signer != CLIENT_SIGNER {
            return Ok(Vec::new());
        }
        let masters = crate::auth::user::groups::MASTERS;
        if request_organizations(obj).iter().any(|o| o == masters) {
            return Err(forbidden(
                req.name,
                &format!("use of {signer} signer with {masters} group is not allowed"),
            ));
        }
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::auth::UserInfo;
    use crate::ctx::Ctx;
    use crate::query::Query;
    use crate::{AppState, Tokens};

    /// Allows `verb` on `signers` named `name` only.
    struct Only {
        verb: &'static str,
        name: &'static str,
    }

    #[async_trait]
    impl crate::authz::Authorizer for Only {
        async fn authorize(&self, _st: &AppState, a: &Attributes) -> Decision {
            let hit = a.resource == "signers"
                && a.api_group == GROUP
                && a.verb == self.verb
                && a.name == self.name;
            if hit {
                Decision::Allow
            } else {
                Decision::NoOpinion(String::new())
            }
        }
    }

    fn state(dir: &Path, allow: Only) -> Arc<AppState> {
        let store = Arc::new(skiff_store::SqliteStore::open(&dir.join("state.db")).unwrap());
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let tokens = Tokens {
            admin: "admin".into(),
            node: "node".into(),
        };
        let Ok(mut st) = Arc::try_unwrap(AppState::new(store, tokens, rx)) else {
            panic!("state is shared")
        };
        st.authorizers = vec![Arc::new(allow)];
        Arc::new(st)
    }

    fn ctx(st: &Arc<AppState>) -> Ctx {
        Ctx {
            st: st.clone(),
            info: skiff_api::resources::by_plural(GROUP, "v1", RESOURCE).unwrap(),
            ns: None,
            query: Query::default(),
            headers: Default::default(),
            user: Arc::new(UserInfo::new("alice", &["dev"])),
            custom: None,
        }
    }

    fn csr(signer: &str) -> Value {
        json!({"metadata": {"name": "x"}, "spec": {"signerName": signer}, "status": {}})
    }

    async fn check(st: &Arc<AppState>, sub: &str, old: &Value, new: &Value) -> ApiResult<()> {
        let ctx = ctx(st);
        let req = Request {
            ctx: &ctx,
            op: Operation::Update,
            name: "x",
            subresource: sub,
            old: Some(old),
        };
        for p in [&Approval as &dyn Plugin, &Signing] {
            if p.handles(&req) {
                p.validate(&req, Some(new)).await?;
            }
        }
        Ok(())
    }

    #[tokio::test]
    async fn approving_and_signing_need_the_signer_permission() {
        let dir = tempfile::tempdir().unwrap();
        let old = csr(CLIENT_SIGNER);
        let mut approved = old.clone();
        approved["status"]["conditions"] = json!([{"type": "Approved", "status": "True"}]);

        // `approve` on the domain wildcard is enough to approve; it is not `sign`.
        let st = state(
            dir.path(),
            Only {
                verb: "approve",
                name: "kubernetes.io/*",
            },
        );
        check(&st, "approval", &old, &approved).await.unwrap();
        let mut issued = approved.clone();
        issued["status"]["certificate"] = json!("Y2VydA==");
        let err = check(&st, "status", &approved, &issued).await.unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "certificatesigningrequests.certificates.k8s.io \"x\" is forbidden: user not permitted to sign requests with signerName \"kubernetes.io/kube-apiserver-client\""
        );
        // A status write that changes neither certificate nor conditions needs nothing.
        let mut annotated = approved.clone();
        annotated["metadata"]["annotations"] = json!({"a": "b"});
        check(&st, "status", &approved, &annotated).await.unwrap();

        // `approve` on another signer's name is not enough.
        let dir2 = tempfile::tempdir().unwrap();
        let st = state(
            dir2.path(),
            Only {
                verb: "approve",
                name: "example.com/other",
            },
        );
        let err = check(&st, "approval", &old, &approved).await.unwrap_err();
        assert_eq!(
            err.message,
            "certificatesigningrequests.certificates.k8s.io \"x\" is forbidden: user not permitted to approve requests with signerName \"kubernetes.io/kube-apiserver-client\""
        );
        // The stored signer counts, not one the write claims.
        let dir3 = tempfile::tempdir().unwrap();
        let st = state(
            dir3.path(),
            Only {
                verb: "sign",
                name: CLIENT_SIGNER,
            },
        );
        check(&st, "status", &approved, &issued).await.unwrap();
        let mut moved = issued.clone();
        moved["spec"]["signerName"] = json!("example.com/other");
        let other = csr("example.com/other");
        assert!(check(&st, "status", &other, &moved).await.is_err());
    }
}
