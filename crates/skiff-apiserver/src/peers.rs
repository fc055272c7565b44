//! The API servers sharing one store find each other through identity Leases, like upstream's
//! APIServer identity leases and its lease endpoint reconciler: each server keeps a Lease
//! `kube-system/apiserver-<hash>` (label `apiserver.kubernetes.io/identity=kube-apiserver`,
//! holderIdentity `apiserver-<uuid>`, the address the `kubernetes` Service should send traffic
//! to in the annotation [`ADDRESS_ANNOTATION`]), renewed every endpoint reconcile interval.
//! Every server then writes the `kubernetes` Service's Endpoints and EndpointSlice with the
//! sorted addresses of the servers whose Lease is fresh, so the list holds every live server
//! (not the last one to write), loses a dead one within the lease duration, and loses a cleanly
//! stopping one at once ([`leave`]).
//!
//! Freshness compares `renewTime + leaseDurationSeconds` with this server's wall clock, as
//! upstream's identity-lease garbage collector does; servers of one cluster are expected to
//! keep their clocks in sync (NTP). Controllers' leader election never compares clocks.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::Digest;
use skiff_store::StoreError;

use crate::keys::{encode, object_key};
use crate::respond::now_rfc3339;
use crate::AppState;

/// The identity label and its value on every API server's Lease.
pub const IDENTITY_LABEL: &str = "apiserver.kubernetes.io/identity";
pub const IDENTITY_VALUE: &str = "kube-apiserver";
/// Where a server's Lease names the address (`ip:port`) it serves the API on.
pub const ADDRESS_ANNOTATION: &str = "skiff.dev/advertise-address";
const NAMESPACE: &str = "kube-system";

/// This server's identity.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// The Lease's name: `apiserver-<hash of hostname and address>` (stable across restarts of
    /// the same server, distinct for servers sharing a host).
    pub lease_name: String,
    /// holderIdentity: `apiserver-<uuid>`, new at every start.
    pub holder: String,
    pub advertise: SocketAddrV4,
    pub lease_duration: Duration,
}

impl Identity {
    pub fn new(advertise: SocketAddrV4, lease_duration: Duration) -> Self {
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        let digest = sha2::Sha256::digest(format!("{host}|{advertise}").as_bytes());
        let hash: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        Identity {
            lease_name: format!("apiserver-{hash}"),
            holder: format!("apiserver-{}", uuid::Uuid::new_v4()),
            advertise,
            lease_duration,
        }
    }
}

fn leases() -> Option<&'static skiff_api::ResourceInfo> {
    skiff_api::resources::by_plural("coordination.k8s.io", "v1", "leases")
}

fn micro_now() -> Value {
    serde_json::to_value(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        jiff::Timestamp::now(),
    ))
    .unwrap_or(Value::Null)
}

/// Creates or renews this server's Lease.
pub(crate) async fn renew(st: &AppState, me: &Identity) -> Result<(), StoreError> {
    let Some(info) = leases() else {
        return Ok(());
    };
    let key = object_key(info, Some(NAMESPACE), &me.lease_name);
    let seconds = me.lease_duration.as_secs().max(1);
    let current = st.store.get(&key).await?;
    let (mut lease, revision) = match current.as_ref().and_then(|kv| {
        Some((
            serde_json::from_slice::<Value>(&kv.value).ok()?,
            kv.mod_revision,
        ))
    }) {
        Some(found) => found,
        None => {
            let mut lease = json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": me.lease_name, "namespace": NAMESPACE,
                    "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": now_rfc3339()},
                "spec": {},
            });
            skiff_api::defaults::apply_defaults(info, &mut lease);
            (lease, 0)
        }
    };
    let now = micro_now();
    let spec = json!({
        "holderIdentity": me.holder,
        "leaseDurationSeconds": seconds,
        "acquireTime": if lease.pointer("/spec/holderIdentity").and_then(Value::as_str) == Some(me.holder.as_str()) {
            lease.pointer("/spec/acquireTime").cloned().unwrap_or(now.clone())
        } else {
            now.clone()
        },
        "renewTime": now,
    });
    lease["spec"] = spec;
    lease["metadata"]["labels"] = json!({
        IDENTITY_LABEL: IDENTITY_VALUE,
        "kubernetes.io/hostname": nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default(),
    });
    lease["metadata"]["annotations"] = json!({ADDRESS_ANNOTATION: me.advertise.to_string()});
    let written = if revision == 0 {
        st.store.create(&key, encode(&lease)).await.map(|_| ())
    } else {
        st.store
            .update(&key, encode(&lease), revision)
            .await
            .map(|_| ())
    };
    match written {
        // Raced with ourselves (a previous run under the same name): the next tick renews.
        Ok(()) | Err(StoreError::AlreadyExists(_)) | Err(StoreError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// An identity Lease expired this long ago belongs to a server that is gone for good (a
/// renamed or removed one): it is deleted, as upstream's identity-lease garbage collector does.
const GC_AFTER: jiff::SignedDuration = jiff::SignedDuration::from_secs(3600);

/// The advertise addresses of servers whose identity Lease is fresh, sorted. Deletes Leases
/// expired for more than [`GC_AFTER`].
pub(crate) async fn live_servers(st: &AppState) -> Result<Vec<SocketAddrV4>, StoreError> {
    let Some(info) = leases() else {
        return Ok(Vec::new());
    };
    let prefix = crate::keys::collection_prefix(info, Some(NAMESPACE));
    let list = st.store.list(&prefix, &Default::default()).await?;
    let now = jiff::Timestamp::now();
    let long_ago = now.checked_sub(GC_AFTER).unwrap_or(now);
    for kv in &list.items {
        let Ok(lease) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        if is_identity(&lease) && !fresh(&lease, long_ago) {
            tracing::info!(key = %kv.key, "deleting an API server identity Lease expired for an hour");
            // Revision-checked: a server that came back and renewed it keeps it.
            let _ = st.store.delete(&kv.key, Some(kv.mod_revision)).await;
        }
    }
    let mut out: Vec<SocketAddrV4> = list
        .items
        .iter()
        .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
        .filter(|l| is_identity(l) && fresh(l, now))
        .filter_map(|l| {
            l.pointer("/metadata/annotations")?
                .get(ADDRESS_ANNOTATION)?
                .as_str()?
                .parse()
                .ok()
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

fn is_identity(lease: &Value) -> bool {
    lease
        .pointer("/metadata/labels")
        .and_then(|m| m.get(IDENTITY_LABEL))
        .and_then(Value::as_str)
        == Some(IDENTITY_VALUE)
}

fn fresh(lease: &Value, now: jiff::Timestamp) -> bool {
    let Some(renewed) = lease
        .pointer("/spec/renewTime")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
    else {
        return false;
    };
    let secs = lease
        .pointer("/spec/leaseDurationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    renewed
        .checked_add(jiff::SignedDuration::from_secs(secs))
        .is_ok_and(|expiry| expiry > now)
}

/// One round: renew our Lease, then point the `kubernetes` Service at every live server that
/// serves on our port (the Service has one target port).
pub(crate) async fn reconcile(st: &AppState, me: &Identity) -> Result<(), StoreError> {
    renew(st, me).await?;
    write_endpoints(st, me, true).await
}

async fn write_endpoints(st: &AppState, me: &Identity, include_me: bool) -> Result<(), StoreError> {
    let mut ips: Vec<Ipv4Addr> = live_servers(st)
        .await?
        .into_iter()
        .filter(|a| a.port() == me.advertise.port())
        .map(|a| *a.ip())
        .collect();
    ips.retain(|ip| include_me || *ip != *me.advertise.ip());
    if include_me {
        ips.push(*me.advertise.ip());
    }
    ips.sort();
    ips.dedup();
    if ips.is_empty() {
        // As upstream: never erase every address (a last server stopping leaves itself).
        return Ok(());
    }
    crate::allocator::ensure_kubernetes_endpoints(st, &ips, me.advertise.port()).await
}

/// Reconciles every `interval` until the server shuts down.
pub(crate) async fn run(st: Arc<AppState>, me: Identity, interval: Duration) {
    crate::every(st.clone(), interval, || async {
        if let Err(e) = reconcile(&st, &me).await {
            tracing::warn!("reconciling the kubernetes Service's endpoints: {e}");
        }
    })
    .await
}

/// A cleanly stopping server: deletes its Lease and takes itself out of the endpoints.
pub(crate) async fn leave(st: &AppState, me: &Identity) {
    let Some(info) = leases() else { return };
    let key = object_key(info, Some(NAMESPACE), &me.lease_name);
    if let Ok(Some(kv)) = st.store.get(&key).await {
        let ours = serde_json::from_slice::<Value>(&kv.value)
            .ok()
            .and_then(|l| {
                l.pointer("/spec/holderIdentity")
                    .and_then(Value::as_str)
                    .map(|h| h == me.holder)
            })
            .unwrap_or(false);
        if ours {
            let _ = st.store.delete(&key, Some(kv.mod_revision)).await;
        }
    }
    if let Err(e) = write_endpoints(st, me, false).await {
        tracing::warn!("removing this server from the kubernetes Service's endpoints: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_fresh_until_renew_time_plus_its_duration() {
        let lease = |renew: &str, secs: i64| json!({"spec": {"renewTime": renew, "leaseDurationSeconds": secs}});
        let now: jiff::Timestamp = "2026-01-01T00:00:20Z".parse().expect("time");
        assert!(fresh(&lease("2026-01-01T00:00:10.000000Z", 15), now));
        assert!(!fresh(&lease("2026-01-01T00:00:05.000000Z", 15), now));
        assert!(!fresh(&json!({"spec": {}}), now));
    }

    #[test]
    fn servers_on_one_host_get_distinct_lease_names() {
        let a = Identity::new(
            "127.0.0.11:6443".parse().expect("addr"),
            Duration::from_secs(15),
        );
        let b = Identity::new(
            "127.0.0.12:6443".parse().expect("addr"),
            Duration::from_secs(15),
        );
        let a2 = Identity::new(
            "127.0.0.11:6443".parse().expect("addr"),
            Duration::from_secs(15),
        );
        assert_ne!(a.lease_name, b.lease_name);
        assert_eq!(a.lease_name, a2.lease_name);
        assert_ne!(a.holder, a2.holder);
        assert!(a.lease_name.starts_with("apiserver-") && a.lease_name.len() == 42);
    }
}
