//! The ServiceAccount token authenticator: a JWT whose issuer is ours (or the legacy issuer)
//! is verified here and nowhere else; any other bearer token is not ours (None).
//!
//! Bound tokens: ES256 signature by our key, `aud` intersecting the API audiences, exp/nbf
//! with a minute of leeway, then the objects: the ServiceAccount must exist with the claimed
//! uid, and so must the bound Pod or Secret (a token dies with its pod; a pod being deleted
//! keeps it for a minute past its deletionTimestamp, as upstream). The user is the
//! ServiceAccount with upstream's `extra` (pod name/uid, node name/uid, credential id).
//!
//! Tokens of `kubernetes.io/service-account-token` Secrets (legacy tokens, which skiff's token
//! controller gets through TokenRequest bound to the Secret) are Secret-bound tokens: valid
//! while that Secret and the ServiceAccount exist with the claimed uids.

use async_trait::async_trait;
use serde_json::Value;
use skiff_api::ApiError;

use super::{get_core, jwt, private_claims, LEEWAY};
use crate::auth::{TokenAuthenticator, UserInfo};
use crate::AppState;

/// Upstream's `extra` keys of a ServiceAccount user.
pub(crate) mod extra {
    pub const POD_NAME: &str = "authentication.kubernetes.io/pod-name";
    pub const POD_UID: &str = "authentication.kubernetes.io/pod-uid";
    pub const NODE_NAME: &str = "authentication.kubernetes.io/node-name";
    pub const NODE_UID: &str = "authentication.kubernetes.io/node-uid";
    pub const CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";
}

pub(crate) struct ServiceAccountAuthenticator;

/// Why a token of ours is rejected, in upstream's words (the client of a request only sees
/// 401; a TokenReview shows the reason).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Rejected {
    #[error("go-jose/go-jose: error in cryptographic primitive")]
    Signature,
    #[error("service account token is malformed")]
    Malformed,
    #[error("service account token has expired")]
    Expired,
    #[error("service account token could not be validated")]
    NotYetValid,
    #[error("token audiences {0} is invalid for the target audiences {1}")]
    Audience(String, String),
    #[error("service account token claims are malformed")]
    Claims,
    #[error("service account token has been invalidated")]
    Invalidated,
    #[error("{0}")]
    Mismatch(String),
    #[error("looking up {0}")]
    Lookup(#[source] ApiError),
}

impl From<jwt::JwtError> for Rejected {
    fn from(e: jwt::JwtError) -> Self {
        match e {
            jwt::JwtError::Signature => Rejected::Signature,
            jwt::JwtError::Malformed | jwt::JwtError::Algorithm => Rejected::Malformed,
        }
    }
}

/// Go's `%q` of a string list: `["a" "b"]`.
fn go_quoted(list: &[&str]) -> String {
    let items: Vec<String> = list.iter().map(|a| format!("{a:?}")).collect();
    format!("[{}]", items.join(" "))
}

/// A ServiceAccount token checked for `wanted` audiences: None when the token is not one of
/// ours; else the user and the audiences it is good for (token ∩ wanted), or why not.
pub(crate) async fn review(
    st: &AppState,
    token: &str,
    wanted: &[String],
) -> Option<Result<(UserInfo, Vec<String>), Rejected>> {
    let claims = jwt::peek_claims(token).ok()?;
    let iss = claims.get("iss").and_then(Value::as_str)?;
    if iss == st.service_accounts.issuer {
        Some(bound(st, token, wanted).await)
    } else {
        None
    }
}

#[async_trait]
impl TokenAuthenticator for ServiceAccountAuthenticator {
    async fn authenticate_token(
        &self,
        st: &AppState,
        token: &str,
    ) -> Option<Result<UserInfo, ApiError>> {
        let res = review(st, token, &st.service_accounts.audiences).await?;
        Some(res.map(|(user, _)| user).map_err(|why| {
            tracing::debug!(%why, "rejected a ServiceAccount token");
            match why {
                Rejected::Lookup(e) if e.code >= 500 => e,
                _ => ApiError::unauthorized(),
            }
        }))
    }
}

fn num(claims: &Value, f: &str) -> Option<i64> {
    claims
        .get(f)
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
}

/// exp/nbf/iat with upstream's leeway.
fn check_times(claims: &Value, now: i64) -> Result<(), Rejected> {
    if let Some(exp) = num(claims, "exp") {
        if now > exp + LEEWAY {
            return Err(Rejected::Expired);
        }
    }
    for f in ["nbf", "iat"] {
        if let Some(t) = num(claims, f) {
            if now + LEEWAY < t {
                return Err(Rejected::NotYetValid);
            }
        }
    }
    Ok(())
}

async fn get(
    st: &AppState,
    plural: &str,
    ns: Option<&str>,
    name: &str,
) -> Result<Option<Value>, Rejected> {
    get_core(st, plural, ns, name)
        .await
        .map_err(Rejected::Lookup)
}

/// Requires `obj` to exist with `uid` (`claim` names the claim in the mismatch message).
fn same(obj: Option<&Value>, uid: &str, what: &str, claim: &str) -> Result<(), Rejected> {
    let Some(obj) = obj else {
        return Err(Rejected::Invalidated);
    };
    let have = super::Ref::of(obj).uid;
    if have != uid {
        return Err(Rejected::Mismatch(format!(
            "{what} UID ({have}) does not match {claim} ({uid})"
        )));
    }
    Ok(())
}

/// Pods and Secrets being deleted keep their tokens for a minute past the deletion time.
fn deleted_long_ago(obj: &Value, now: i64) -> bool {
    crate::objects::meta_str(obj, "deletionTimestamp")
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .is_some_and(|t| t.as_second() < now - 60)
}

async fn bound(
    st: &AppState,
    token: &str,
    wanted: &[String],
) -> Result<(UserInfo, Vec<String>), Rejected> {
    let sa_cfg = &st.service_accounts;
    let claims = sa_cfg.key.verify(token)?;
    let now = crate::respond::now().as_second();
    check_times(&claims, now)?;
    let aud: Vec<&str> = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let auds: Vec<String> = wanted
        .iter()
        .filter(|w| aud.contains(&w.as_str()))
        .cloned()
        .collect();
    if auds.is_empty() {
        let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
        return Err(Rejected::Audience(go_quoted(&aud), go_quoted(&wanted)));
    }
    let p = private_claims(&claims).ok_or(Rejected::Claims)?;
    let ns = p.namespace.as_str();
    let sa = get(st, "serviceaccounts", Some(ns), &p.sa.name).await?;
    same(sa.as_ref(), &p.sa.uid, "service account", "claim")?;
    let mut user = UserInfo::for_service_account(ns, &p.sa.name, &p.sa.uid);
    if let Some(secret) = &p.bound.secret {
        let obj = get(st, "secrets", Some(ns), &secret.name).await?;
        same(
            obj.as_ref(),
            &secret.uid,
            "secret",
            "service account secret ref claim",
        )?;
        if obj.as_ref().is_some_and(|o| deleted_long_ago(o, now)) {
            return Err(Rejected::Invalidated);
        }
    }
    if let Some(pod) = &p.bound.pod {
        let obj = get(st, "pods", Some(ns), &pod.name).await?;
        same(
            obj.as_ref(),
            &pod.uid,
            "pod",
            "service account pod ref claim",
        )?;
        if obj.as_ref().is_some_and(|o| deleted_long_ago(o, now)) {
            return Err(Rejected::Invalidated);
        }
        user.extra
            .insert(extra::POD_NAME.into(), vec![pod.name.clone()]);
        user.extra
            .insert(extra::POD_UID.into(), vec![pod.uid.clone()]);
    }
    if let Some(node) = &p.bound.node {
        if p.bound.pod.is_none() {
            // A node-bound token dies with its node.
            let obj = get(st, "nodes", None, &node.name).await?;
            same(
                obj.as_ref(),
                &node.uid,
                "node",
                "service account node ref claim",
            )?;
        }
        user.extra
            .insert(extra::NODE_NAME.into(), vec![node.name.clone()]);
        user.extra
            .insert(extra::NODE_UID.into(), vec![node.uid.clone()]);
    }
    if let Some(jti) = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty())
    {
        user.extra
            .insert(extra::CREDENTIAL_ID.into(), vec![format!("JTI={jti}")]);
    }
    Ok((user, auds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_have_a_minute_of_leeway() {
        let c = serde_json::json!({"exp": 1000, "nbf": 400, "iat": 400});
        assert!(check_times(&c, 500).is_ok());
        assert!(check_times(&c, 1060).is_ok());
        assert!(matches!(check_times(&c, 1061), Err(Rejected::Expired)));
        assert!(check_times(&c, 340).is_ok());
        assert!(matches!(check_times(&c, 339), Err(Rejected::NotYetValid)));
    }
}
