//! ServiceAccount tokens, server side: the signing key ([`jwt`]), the claims of bound tokens
//! ([`claims`]), the `serviceaccounts/token` TokenRequest subresource ([`token`]), the
//! authenticator that accepts them ([`authn`]) and the OIDC
//! discovery documents ([`oidc`]).

pub(crate) mod authn;
pub(crate) mod jwt;
pub(crate) mod oidc;
pub(crate) mod token;

use std::sync::Arc;

use serde_json::{json, Map, Value};
use skiff_api::ApiError;

use crate::keys::{decode, object_key};
use crate::respond::{store_err, ApiResult};
use crate::AppState;

/// Upstream's default issuer for kubeadm and k3s clusters (`--service-account-issuer`).
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The projected volume's expirationSeconds: such pod-bound tokens are quietly extended to
/// [`EXTENDED_EXPIRATION`] and only warn after this (upstream's safe transition to bound
/// tokens, `--service-account-extend-token-expiration`, on by default).
pub const WARN_ONLY_EXPIRATION: i64 = 3607;
pub(crate) const EXTENDED_EXPIRATION: i64 = 365 * 24 * 3600;
/// go-jose's default clock-skew leeway for exp/nbf/iat.
pub(crate) const LEEWAY: i64 = 60;

/// The server's ServiceAccount token settings and key.
pub(crate) struct ServiceAccounts {
    pub key: jwt::SigningKey,
    /// `iss` of the tokens this server issues and accepts.
    pub issuer: String,
    /// The API audiences: a token for these may call this API server (= the issuer).
    pub audiences: Vec<String>,
    /// `jwks_uri` of the discovery document.
    pub jwks_uri: String,
    /// Extend 3607 s pod-bound tokens to a year, warning after 3607 s (upstream default).
    pub extend_expiration: bool,
}

impl ServiceAccounts {
    pub(crate) fn new(key: jwt::SigningKey, issuer: &str, external: &str) -> Arc<Self> {
        Arc::new(Self {
            key,
            issuer: issuer.to_string(),
            audiences: vec![issuer.to_string()],
            jwks_uri: format!("{external}{}", oidc::JWKS_PATH),
            extend_expiration: true,
        })
    }
}

/// A `{name, uid}` reference inside the `kubernetes.io` claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ref {
    pub name: String,
    pub uid: String,
}

impl Ref {
    pub(crate) fn of(obj: &Value) -> Self {
        let m = crate::objects::meta(obj);
        let s = |f: &str| m.get(f).and_then(Value::as_str).unwrap_or("").to_string();
        Ref {
            name: s("name"),
            uid: s("uid"),
        }
    }

    fn to_json(&self) -> Value {
        json!({"name": self.name, "uid": self.uid})
    }

    fn from_json(v: Option<&Value>) -> Option<Self> {
        let v = v?;
        Some(Ref {
            name: v.get("name")?.as_str()?.to_string(),
            uid: v
                .get("uid")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        })
    }
}

/// What a token is bound to besides its ServiceAccount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Bound {
    pub pod: Option<Ref>,
    pub secret: Option<Ref>,
    /// With a pod: the node it runs on; alone: a node-bound token.
    pub node: Option<Ref>,
}

/// The claims of a bound token, as upstream's `serviceaccount.Claims` plus the issuer.
#[allow(clippy::too_many_arguments)]
pub(crate) fn claims(
    issuer: &str,
    namespace: &str,
    sa: &Ref,
    audiences: &[String],
    now: i64,
    expiration_seconds: i64,
    warn_after: Option<i64>,
    bound: &Bound,
    jti: &str,
) -> Value {
    let mut k = Map::new();
    k.insert("namespace".into(), json!(namespace));
    k.insert("serviceaccount".into(), sa.to_json());
    if let Some(pod) = &bound.pod {
        k.insert("pod".into(), pod.to_json());
    } else if let Some(secret) = &bound.secret {
        k.insert("secret".into(), secret.to_json());
    }
    if let Some(node) = &bound.node {
        if bound.secret.is_none() {
            k.insert("node".into(), node.to_json());
        }
    }
    if let Some(w) = warn_after {
        k.insert("warnafter".into(), json!(w));
    }
    json!({
        "iss": issuer,
        "sub": format!("{}{namespace}:{}", crate::auth::user::SERVICE_ACCOUNT_PREFIX, sa.name),
        "aud": audiences,
        "exp": now + expiration_seconds,
        "iat": now,
        "nbf": now,
        "jti": jti,
        "kubernetes.io": Value::Object(k),
    })
}

/// The `kubernetes.io` private claim, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Private {
    pub namespace: String,
    pub sa: Ref,
    pub bound: Bound,
}

pub(crate) fn private_claims(claims: &Value) -> Option<Private> {
    let k = claims.get("kubernetes.io")?;
    let sa = Ref::from_json(k.get("serviceaccount"))?;
    if sa.uid.is_empty() {
        return None;
    }
    Some(Private {
        namespace: k.get("namespace")?.as_str()?.to_string(),
        sa,
        bound: Bound {
            pod: Ref::from_json(k.get("pod")),
            secret: Ref::from_json(k.get("secret")),
            node: Ref::from_json(k.get("node")),
        },
    })
}

/// A stored object of a core/v1 resource (None when absent).
pub(crate) async fn get_core(
    st: &AppState,
    plural: &str,
    ns: Option<&str>,
    name: &str,
) -> ApiResult<Option<Value>> {
    let info = skiff_api::resources::by_plural("", "v1", plural)
        .ok_or_else(|| ApiError::internal(format!("resource {plural} is not served")))?;
    match st.store.get(&object_key(info, ns, name)).await {
        Ok(Some(kv)) => Ok(Some(decode(&kv)?)),
        Ok(None) => Ok(None),
        Err(e) => Err(store_err(info, name, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_claims_are_upstreams() {
        let sa = Ref {
            name: "build".into(),
            uid: "sa-uid".into(),
        };
        let bound = Bound {
            pod: Some(Ref {
                name: "p".into(),
                uid: "p-uid".into(),
            }),
            secret: None,
            node: Some(Ref {
                name: "n1".into(),
                uid: "n-uid".into(),
            }),
        };
        let c = claims(
            DEFAULT_ISSUER,
            "ns",
            &sa,
            &["api".to_string()],
            1000,
            3600,
            None,
            &bound,
            "j-1",
        );
        assert_eq!(
            c,
            json!({"iss": DEFAULT_ISSUER, "sub": "system:serviceaccount:ns:build",
                "aud": ["api"], "exp": 4600, "iat": 1000, "nbf": 1000, "jti": "j-1",
                "kubernetes.io": {"namespace": "ns",
                    "serviceaccount": {"name": "build", "uid": "sa-uid"},
                    "pod": {"name": "p", "uid": "p-uid"},
                    "node": {"name": "n1", "uid": "n-uid"}}})
        );
        let p = private_claims(&c).unwrap();
        assert_eq!(p.namespace, "ns");
        assert_eq!(p.sa, sa);
        assert_eq!(p.bound, bound);

        // A secret-bound token names the secret and no node; an unbound one neither.
        let secret = Bound {
            secret: Some(Ref {
                name: "s".into(),
                uid: "s-uid".into(),
            }),
            ..Default::default()
        };
        let c = claims("i", "ns", &sa, &[], 0, 600, Some(3607), &secret, "j");
        assert_eq!(c["kubernetes.io"]["secret"]["name"], "s");
        assert_eq!(c["kubernetes.io"]["warnafter"], 3607);
        assert!(c["kubernetes.io"].get("pod").is_none());
        let c = claims("i", "ns", &sa, &[], 0, 600, None, &Bound::default(), "j");
        assert_eq!(
            c["kubernetes.io"],
            json!({"namespace": "ns", "serviceaccount": {"name": "build", "uid": "sa-uid"}})
        );
    }
}
