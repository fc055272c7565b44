//! Bound ServiceAccount tokens for projected `serviceAccountToken` volume sources, the
//! kubelet's token manager: one TokenRequest (`serviceaccounts/<sa>/token`, bound to the pod)
//! per (namespace, account, audience, expiry, pod uid), cached and requested again once 80 %
//! of its life or 24 h has passed (minus up to 10 s of jitter), so the volume re-sync rewrites
//! the file with a fresh token well before the old one expires.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use kube::Client;

/// Upstream refreshes every token at least daily, whatever its expiry.
const MAX_TTL: Duration = Duration::from_secs(24 * 3600);
const MAX_JITTER: Duration = Duration::from_secs(10);
/// A projected token source without expirationSeconds gets an hour (the API default).
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    pub namespace: String,
    pub service_account: String,
    pub audience: String,
    pub expiration_seconds: Option<i64>,
    pub pod_uid: String,
}

#[derive(Debug, Clone)]
struct Cached {
    token: String,
    /// When it was issued and when it expires, as the API server said.
    issued: jiff::Timestamp,
    expires: jiff::Timestamp,
}

#[derive(Default)]
pub struct TokenManager {
    cache: Mutex<HashMap<TokenKey, Cached>>,
}

/// Whether a token issued at `issued` and expiring at `expires` is due for renewal at `now`.
pub fn requires_refresh(
    now: jiff::Timestamp,
    issued: jiff::Timestamp,
    expires: jiff::Timestamp,
    jitter: Duration,
) -> bool {
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let ttl = expires.as_second() - issued.as_second();
    let now = now.as_second();
    if now > issued.as_second() + secs(MAX_TTL) - secs(jitter) {
        return true;
    }
    // Within the last 20 % of its life (minus the jitter).
    now > expires.as_second() - ttl * 20 / 100 - secs(jitter)
}

impl TokenManager {
    /// The pod's token for `key`, from the cache or a new TokenRequest bound to the pod.
    pub async fn get(
        &self,
        client: &Client,
        key: &TokenKey,
        pod_name: &str,
    ) -> Result<String, String> {
        let now = jiff::Timestamp::now();
        let jitter = MAX_JITTER.mul_f64(rand::random::<f64>());
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            // Expired entries are useless: drop them (pods that went away included).
            cache.retain(|_, c| c.expires > now);
            if let Some(c) = cache.get(key) {
                if !requires_refresh(now, c.issued, c.expires, jitter) {
                    return Ok(c.token.clone());
                }
            }
        }
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: if key.audience.is_empty() {
                    Vec::new()
                } else {
                    vec![key.audience.clone()]
                },
                expiration_seconds: Some(
                    key.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS),
                ),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(pod_name.to_string()),
                    uid: Some(key.pod_uid.clone()),
                }),
            },
            ..Default::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(client.clone(), &key.namespace);
        let fetched: Result<TokenRequest, kube::Error> = api
            .create_subresource(
                "token",
                &key.service_account,
                &PostParams::default(),
                &request,
            )
            .await;
        let tr = match fetched {
            Ok(tr) => tr,
            Err(e) => {
                // Upstream keeps serving a cached token that has not expired yet.
                let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(c) = cache.get(key).filter(|c| c.expires > now) {
                    tracing::warn!(namespace = %key.namespace, sa = %key.service_account,
                        "renewing a service account token: {e}; keeping the current one");
                    return Ok(c.token.clone());
                }
                return Err(format!("failed to fetch token: {}", api_error_message(&e)));
            }
        };
        let status = tr
            .status
            .ok_or("failed to fetch token: no status in the TokenRequest")?;
        let expires = status.expiration_timestamp.0;
        let seconds = tr
            .spec
            .expiration_seconds
            .or(request.spec.expiration_seconds)
            .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
        let issued = expires
            .checked_sub(jiff::SignedDuration::from_secs(seconds))
            .unwrap_or(now);
        let token = status.token;
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(
            key.clone(),
            Cached {
                token: token.clone(),
                issued,
                expires,
            },
        );
        Ok(token)
    }

    /// Forgets the tokens of a pod that is gone.
    pub fn forget_pod(&self, pod_uid: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| k.pod_uid != pod_uid);
    }
}

fn api_error_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    type Seen = Arc<Mutex<Vec<(String, serde_json::Value)>>>;

    /// A canned API server answering TokenRequests: token `t<n>` for the n-th request,
    /// expiring `lifetime` seconds from now while claiming `expirationSeconds: 600`; with
    /// `fail` set it answers 503.
    fn token_server(lifetime: i64, fail: Arc<std::sync::atomic::AtomicBool>) -> (Client, Seen) {
        use http_body_util::Full;
        let seen: Seen = Arc::default();
        let log = seen.clone();
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let log = log.clone();
            let fail = fail.clone();
            async move {
                let path = req.uri().path().to_string();
                let body = req.into_body().collect_bytes().await?;
                let body: serde_json::Value =
                    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                let n = {
                    let mut l = log.lock().unwrap();
                    l.push((path, body.clone()));
                    l.len()
                };
                let (code, answer) = if fail.load(std::sync::atomic::Ordering::SeqCst) {
                    (
                        503,
                        serde_json::json!({"kind": "Status", "apiVersion": "v1",
                        "status": "Failure", "code": 503, "message": "unavailable"}),
                    )
                } else {
                    let exp = jiff::Timestamp::now().as_second() + lifetime;
                    let mut tr = body.clone();
                    tr["spec"]["expirationSeconds"] = serde_json::json!(600);
                    tr["status"] = serde_json::json!({
                        "token": format!("t{n}"),
                        "expirationTimestamp": jiff::Timestamp::from_second(exp).unwrap().to_string(),
                    });
                    (201, tr)
                };
                let resp = http::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Full::new(bytes::Bytes::from(answer.to_string())))
                    .map_err(|e| kube::Error::Service(Box::new(e)))?;
                Ok::<_, kube::Error>(resp)
            }
        });
        (Client::new(service, "default"), seen)
    }

    fn key() -> TokenKey {
        TokenKey {
            namespace: "shop".into(),
            service_account: "robot".into(),
            audience: "vault".into(),
            expiration_seconds: Some(600),
            pod_uid: "uid-1".into(),
        }
    }

    #[tokio::test]
    async fn requests_a_bound_token_and_caches_it() {
        let (client, seen) = token_server(600, Arc::default());
        let m = TokenManager::default();
        assert_eq!(m.get(&client, &key(), "web-0").await.unwrap(), "t1");
        assert_eq!(m.get(&client, &key(), "web-0").await.unwrap(), "t1");
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1, "the second get is served from the cache");
        let (path, body) = &seen[0];
        assert_eq!(path, "/api/v1/namespaces/shop/serviceaccounts/robot/token");
        assert_eq!(body["spec"]["audiences"], serde_json::json!(["vault"]));
        assert_eq!(body["spec"]["expirationSeconds"], 600);
        assert_eq!(
            body["spec"]["boundObjectRef"],
            serde_json::json!({"apiVersion": "v1", "kind": "Pod", "name": "web-0", "uid": "uid-1"})
        );
        // Another pod uid is another token.
        let mut other = key();
        other.pod_uid = "uid-2".into();
        assert_eq!(m.get(&client, &other, "web-1").await.unwrap(), "t2");
        m.forget_pod("uid-1");
        assert_eq!(m.get(&client, &key(), "web-0").await.unwrap(), "t3");
    }

    #[tokio::test]
    async fn renews_near_expiry_and_keeps_the_old_token_if_renewal_fails() {
        // 600 s tokens that expire in 60 s: past 80 % of their life at once.
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (client, seen) = token_server(60, fail.clone());
        let m = TokenManager::default();
        assert_eq!(m.get(&client, &key(), "web-0").await.unwrap(), "t1");
        assert_eq!(m.get(&client, &key(), "web-0").await.unwrap(), "t2");
        fail.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(m.get(&client, &key(), "web-0").await.unwrap(), "t2");
        assert_eq!(seen.lock().unwrap().len(), 3);
        // Nothing cached and the API fails: the kubelet's error.
        let mut fresh = key();
        fresh.pod_uid = "uid-9".into();
        let err = m.get(&client, &fresh, "web-9").await.unwrap_err();
        assert!(err.starts_with("failed to fetch token: "), "{err}");
    }

    fn ts(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn refresh_after_eighty_percent_of_the_ttl() {
        let none = Duration::ZERO;
        // One hour token issued at 0: due after 48 minutes.
        assert!(!requires_refresh(ts(1000), ts(0), ts(3600), none));
        assert!(!requires_refresh(ts(2880), ts(0), ts(3600), none));
        assert!(requires_refresh(ts(2881), ts(0), ts(3600), none));
        // The jitter brings it forward by up to 10 s.
        assert!(requires_refresh(
            ts(2875),
            ts(0),
            ts(3600),
            Duration::from_secs(10)
        ));
    }

    #[test]
    fn refresh_daily_whatever_the_expiry() {
        let week = 7 * 24 * 3600;
        let none = Duration::ZERO;
        assert!(!requires_refresh(ts(24 * 3600), ts(0), ts(week), none));
        assert!(requires_refresh(ts(24 * 3600 + 1), ts(0), ts(week), none));
    }
}
