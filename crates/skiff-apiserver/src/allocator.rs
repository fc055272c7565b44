//! Service address allocation (upstream's ClusterIP and NodePort registries): ClusterIPs from the
//! service CIDR and nodePorts from the node-port range, assigned at admission before the Service
//! is stored.
//!
//! Every allocation is its own store key, `/registry/ranges/serviceips/<ip>` or
//! `/registry/ranges/servicenodeports/<port>`, whose value names the owning Service
//! (namespace/name/uid). Claiming is a create-if-absent, so two concurrent creates can never get
//! the same IP or port and allocations survive restarts. Keys are released when the Service is
//! deleted or stops using them; a failed write releases what it claimed, and [`repair`] at
//! startup frees keys whose owner is gone (a crash between claim and store).

use std::collections::{BTreeSet, HashSet};
use std::net::Ipv4Addr;

use rand::Rng;
use serde_json::{json, Value};
use skiff_api::{ApiError, Cause};
use skiff_semantics::cidr::Ipv4Net;
use skiff_store::StoreError;

use crate::keys::{decode, encode, object_key};
use crate::objects::meta_str;
use crate::respond::now_rfc3339;
use crate::AppState;

const IP_PREFIX: &str = "/registry/ranges/serviceips/";
const PORT_PREFIX: &str = "/registry/ranges/servicenodeports/";
/// Random picks before falling back to a scan of the used set.
const RANDOM_TRIES: usize = 16;

/// The configured ranges.
#[derive(Debug, Clone)]
pub(crate) struct Ranges {
    pub cidr: Ipv4Net,
    pub node_ports: (u16, u16),
}

impl Ranges {
    fn base(&self) -> u32 {
        u32::from(self.cidr.network())
    }

    /// Number of addresses in the CIDR.
    fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.cidr.prefix_len()))
    }

    fn cidr_string(&self) -> String {
        self.cidr.trunc().to_string()
    }

    /// Offset of `ip` in the range when it is usable (not network/broadcast).
    fn offset(&self, ip: Ipv4Addr) -> Option<u64> {
        let off = u64::from(u32::from(ip).wrapping_sub(self.base()));
        (self.cidr.contains(&ip) && off >= 1 && off + 1 < self.size()).then_some(off)
    }

    fn ip_at(&self, off: u64) -> Ipv4Addr {
        Ipv4Addr::from(self.base().wrapping_add(off as u32))
    }

    /// The first usable address, reserved for `default/kubernetes`.
    pub fn first_ip(&self) -> Ipv4Addr {
        self.ip_at(1)
    }
}

/// Keys a request newly claimed (released again if the write fails).
#[derive(Debug, Default)]
pub(crate) struct Claimed {
    keys: Vec<String>,
}

impl Claimed {
    /// Undoes the claims (the object was not stored).
    pub async fn release(self, st: &AppState) {
        for key in self.keys {
            let _ = st.store.delete(&key, None).await;
        }
    }
}

fn owner(svc: &Value) -> Value {
    json!({
        "namespace": meta_str(svc, "namespace").unwrap_or(""),
        "name": meta_str(svc, "name").unwrap_or(""),
        "uid": meta_str(svc, "uid").unwrap_or(""),
        "since": now_rfc3339(),
    })
}

fn owner_uid(value: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(value)
        .ok()?
        .get("uid")?
        .as_str()
        .map(str::to_string)
}

fn svc_type(svc: &Value) -> &str {
    svc.pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
}

fn cluster_ip(svc: &Value) -> &str {
    svc.pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .or_else(|| svc.pointer("/spec/clusterIPs/0").and_then(Value::as_str))
        .unwrap_or("")
}

/// Whether this type gets nodePorts (LoadBalancer unless allocateLoadBalancerNodePorts=false).
fn wants_node_ports(svc: &Value) -> bool {
    match svc_type(svc) {
        "NodePort" => true,
        "LoadBalancer" => svc
            .pointer("/spec/allocateLoadBalancerNodePorts")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        _ => false,
    }
}

fn ports_mut(svc: &mut Value) -> Vec<&mut serde_json::Map<String, Value>> {
    svc.pointer_mut("/spec/ports")
        .and_then(Value::as_array_mut)
        .map(|a| a.iter_mut().filter_map(Value::as_object_mut).collect())
        .unwrap_or_default()
}

fn node_port(p: &Value) -> Option<i64> {
    p.get("nodePort")
        .and_then(Value::as_i64)
        .filter(|n| *n != 0)
}

/// The store keys a Service's current spec uses.
fn used_keys(svc: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ip = cluster_ip(svc);
    if !ip.is_empty() && ip != "None" && svc_type(svc) != "ExternalName" {
        out.insert(format!("{IP_PREFIX}{ip}"));
    }
    if let Some(ports) = svc.pointer("/spec/ports").and_then(Value::as_array) {
        for p in ports {
            if let Some(np) = node_port(p) {
                out.insert(format!("{PORT_PREFIX}{np}"));
            }
        }
    }
    out
}

fn invalid(svc: &Value, field: &str, value: &str, message: String) -> ApiError {
    ApiError::invalid(
        "",
        "Service",
        meta_str(svc, "name").unwrap_or(""),
        vec![Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {value}: {message}"),
            field: field.into(),
        }],
    )
}

fn backend(e: StoreError) -> ApiError {
    ApiError::internal(format!("allocating service addresses: {e}"))
}

/// Create-if-absent of one allocation key. Ok(true) = newly claimed, Ok(false) = already ours,
/// Err(None) = taken by another Service.
async fn claim(
    st: &AppState,
    key: &str,
    svc: &Value,
    dry_run: bool,
) -> Result<bool, Option<ApiError>> {
    let uid = meta_str(svc, "uid").unwrap_or("");
    let taken_by = |v: &[u8]| {
        if owner_uid(v).as_deref() == Some(uid) && !uid.is_empty() {
            Ok(false)
        } else {
            Err(None)
        }
    };
    if dry_run {
        return match st.store.get(key).await {
            Ok(Some(kv)) => taken_by(&kv.value),
            Ok(None) => Ok(false),
            Err(e) => Err(Some(backend(e))),
        };
    }
    let value = serde_json::to_vec(&owner(svc)).unwrap_or_default();
    match st.store.create(key, value).await {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists(_)) => match st.store.get(key).await {
            Ok(Some(kv)) => taken_by(&kv.value),
            // Released in between: try once more.
            Ok(None) => Box::pin(claim(st, key, svc, dry_run)).await,
            Err(e) => Err(Some(backend(e))),
        },
        Err(e) => Err(Some(backend(e))),
    }
}

/// Keys under `prefix` (the used set, for the fallback scan).
async fn used_set(st: &AppState, prefix: &str) -> Result<HashSet<String>, ApiError> {
    let list = st
        .store
        .list(prefix, &Default::default())
        .await
        .map_err(backend)?;
    Ok(list
        .items
        .into_iter()
        .filter_map(|kv| kv.key.strip_prefix(prefix).map(str::to_string))
        .collect())
}

/// Claims a random free value: random picks in the dynamic (upper) band first, then a scan of
/// the whole range from a random start. `candidates` is `(lo, band, hi)` inclusive offsets.
async fn claim_random(
    st: &AppState,
    svc: &Value,
    prefix: &str,
    (lo, band, hi): (u64, u64, u64),
    render: impl Fn(u64) -> String,
    dry_run: bool,
    claimed: &mut Claimed,
) -> Result<Option<String>, ApiError> {
    if lo > hi {
        return Ok(None);
    }
    let dyn_lo = if band <= hi { band } else { lo };
    for _ in 0..RANDOM_TRIES {
        let off = rand::thread_rng().gen_range(dyn_lo..=hi);
        let value = render(off);
        match claim(st, &format!("{prefix}{value}"), svc, dry_run).await {
            Ok(true) => {
                claimed.keys.push(format!("{prefix}{value}"));
                return Ok(Some(value));
            }
            Ok(false) => return Ok(Some(value)),
            Err(None) => continue,
            Err(Some(e)) => return Err(e),
        }
    }
    let mut used = used_set(st, prefix).await?;
    // Upper band from a random start, then the static band.
    let rotate = |from: u64, to: u64| -> Vec<u64> {
        if from > to {
            return Vec::new();
        }
        let span = to - from + 1;
        let start = rand::thread_rng().gen_range(0..span);
        (0..span).map(|i| from + (start + i) % span).collect()
    };
    let mut order = rotate(dyn_lo, hi);
    if dyn_lo > lo {
        order.extend(rotate(lo, dyn_lo - 1));
    }
    for off in order {
        let value = render(off);
        if used.contains(&value) {
            continue;
        }
        match claim(st, &format!("{prefix}{value}"), svc, dry_run).await {
            Ok(true) => {
                claimed.keys.push(format!("{prefix}{value}"));
                return Ok(Some(value));
            }
            Ok(false) => return Ok(Some(value)),
            Err(None) => {
                used.insert(value);
            }
            Err(Some(e)) => return Err(e),
        }
    }
    Ok(None)
}

/// Claims what `svc` needs that is not covered by `keep` (keys it already owns), filling
/// unset clusterIP/nodePorts. On error everything claimed so far is released.
async fn allocate(
    st: &AppState,
    svc: &mut Value,
    keep: &BTreeSet<String>,
    dry_run: bool,
) -> Result<Claimed, ApiError> {
    let mut claimed = Claimed::default();
    match allocate_inner(st, svc, keep, dry_run, &mut claimed).await {
        Ok(()) => Ok(claimed),
        Err(e) => {
            claimed.release(st).await;
            Err(e)
        }
    }
}

async fn allocate_inner(
    st: &AppState,
    svc: &mut Value,
    keep: &BTreeSet<String>,
    dry_run: bool,
    claimed: &mut Claimed,
) -> Result<(), ApiError> {
    let ranges = st.ranges.clone();
    let ty = svc_type(svc).to_string();
    if ty != "ExternalName" {
        let requested = cluster_ip(svc).to_string();
        if requested == "None" {
            set_ips(svc, "None");
        } else if requested.is_empty() {
            let size = ranges.size();
            // Offset 1 is the kubernetes Service's; the low band prefers static requests.
            let band = (size / 16).clamp(16, 256);
            let picked = claim_random(
                st,
                svc,
                IP_PREFIX,
                (2, band, size.saturating_sub(2)),
                |o| ranges.ip_at(o).to_string(),
                dry_run,
                claimed,
            )
            .await?;
            let Some(ip) = picked else {
                return Err(ApiError::internal(format!(
                    "failed to allocate a serviceIP: range is full ({})",
                    ranges.cidr_string()
                )));
            };
            set_ips(svc, &ip);
        } else {
            let shown = format!("[\"{requested}\"]");
            let ip: Ipv4Addr = requested.parse().map_err(|_| {
                invalid(
                    svc,
                    "spec.clusterIPs[0]",
                    &requested,
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into(),
                )
            })?;
            if ranges.offset(ip).is_none() {
                return Err(invalid(
                    svc,
                    "spec.clusterIPs",
                    &shown,
                    format!(
                        "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}",
                        ranges.cidr_string()
                    ),
                ));
            }
            let key = format!("{IP_PREFIX}{ip}");
            if !keep.contains(&key) {
                match claim(st, &key, svc, dry_run).await {
                    Ok(true) => claimed.keys.push(key),
                    Ok(false) => {}
                    Err(None) => {
                        return Err(invalid(
                            svc,
                            "spec.clusterIPs",
                            &shown,
                            format!("failed to allocate IP {ip}: provided IP is already allocated"),
                        ))
                    }
                    Err(Some(e)) => return Err(e),
                }
            }
            set_ips(svc, &requested);
        }
    }
    if !wants_node_ports(svc) {
        return Ok(());
    }
    let (lo, hi) = ranges.node_ports;
    let span = u64::from(hi.saturating_sub(lo)) + 1;
    let band = u64::from(lo) + (span / 32).clamp(16, 128);
    let snapshot = svc.clone();
    let mut assigned: Vec<(usize, i64)> = Vec::new();
    let ports = snapshot
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, p) in ports.iter().enumerate() {
        match node_port(p) {
            Some(np) => {
                let field = format!("spec.ports[{i}].nodePort");
                if np < i64::from(lo) || np > i64::from(hi) {
                    return Err(invalid(
                        svc,
                        &field,
                        &np.to_string(),
                        format!("provided port is not in the valid range. The range of valid ports is {lo}-{hi}"),
                    ));
                }
                let key = format!("{PORT_PREFIX}{np}");
                if keep.contains(&key) || claimed.keys.contains(&key) {
                    continue;
                }
                match claim(st, &key, svc, dry_run).await {
                    Ok(true) => claimed.keys.push(key),
                    Ok(false) => {}
                    Err(None) => {
                        return Err(invalid(
                            svc,
                            &field,
                            &np.to_string(),
                            "provided port is already allocated".into(),
                        ))
                    }
                    Err(Some(e)) => return Err(e),
                }
            }
            None => {
                let picked = claim_random(
                    st,
                    &snapshot,
                    PORT_PREFIX,
                    (u64::from(lo), band, u64::from(hi)),
                    |o| o.to_string(),
                    dry_run,
                    claimed,
                )
                .await?;
                let Some(np) = picked.and_then(|s| s.parse::<i64>().ok()) else {
                    return Err(ApiError::internal(format!(
                        "failed to allocate a nodePort: range is full ({lo}-{hi})"
                    )));
                };
                assigned.push((i, np));
            }
        }
    }
    let mut ports = ports_mut(svc);
    for (i, np) in assigned {
        if let Some(p) = ports.get_mut(i) {
            p.insert("nodePort".into(), json!(np));
        }
    }
    Ok(())
}

fn set_ips(svc: &mut Value, ip: &str) {
    if let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("clusterIP".into(), json!(ip));
        spec.insert("clusterIPs".into(), json!([ip]));
        if ip != "None" || spec.get("ipFamilies").is_none() {
            spec.insert("ipFamilies".into(), json!(["IPv4"]));
        }
        spec.entry("ipFamilyPolicy")
            .or_insert_with(|| json!("SingleStack"));
    }
}

/// Create: fills clusterIP(s) and nodePorts, claiming them. Release the result if the Service
/// is not stored after all.
pub(crate) async fn on_create(
    st: &AppState,
    svc: &mut Value,
    dry_run: bool,
) -> Result<Claimed, ApiError> {
    allocate(st, svc, &BTreeSet::new(), dry_run).await
}

/// Before validation of an update: keeps what the old object had allocated when the new one
/// leaves it unset (PUT without clusterIP, ports without nodePort), and drops type-dependent
/// fields when the type changes (NodePort→ClusterIP drops nodePorts, →ExternalName drops IPs).
pub(crate) fn carry_over(old: &Value, new: &mut Value) {
    let new_ty = svc_type(new).to_string();
    let old_ip = cluster_ip(old).to_string();
    if new_ty == "ExternalName" {
        if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
            let same = spec.get("clusterIP").and_then(Value::as_str) == Some(old_ip.as_str());
            if same || spec.get("clusterIP").and_then(Value::as_str) == Some("") {
                spec.remove("clusterIP");
                spec.remove("clusterIPs");
                spec.remove("ipFamilies");
                spec.remove("ipFamilyPolicy");
            }
        }
    } else if cluster_ip(new).is_empty() && !old_ip.is_empty() && svc_type(old) != "ExternalName" {
        set_ips(new, &old_ip);
    }
    let old_ports: Vec<Value> = old
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let wants = wants_node_ports(new);
    for p in ports_mut(new) {
        let has = p
            .get("nodePort")
            .and_then(Value::as_i64)
            .filter(|n| *n != 0);
        let same_port = |o: &&Value| {
            o.get("port") == p.get("port")
                && o.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                    == p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
        };
        let old_np = old_ports.iter().find(same_port).and_then(node_port);
        if wants {
            if has.is_none() {
                if let Some(np) = old_np {
                    p.insert("nodePort".into(), json!(np));
                }
            }
        } else if has.is_some() && has == old_np {
            p.remove("nodePort");
        }
    }
}

/// Update (after validation): claims what the new object newly uses. Returns the claims (to
/// undo if the write fails) and the keys to release once the write succeeded.
pub(crate) async fn on_update(
    st: &AppState,
    old: &Value,
    new: &mut Value,
    dry_run: bool,
) -> Result<(Claimed, Vec<String>), ApiError> {
    let old_keys = used_keys(old);
    let claimed = allocate(st, new, &old_keys, dry_run).await?;
    let new_keys = used_keys(new);
    let release = old_keys.difference(&new_keys).cloned().collect();
    Ok((claimed, release))
}

/// Releases keys still owned by the Service with this uid (never someone else's).
pub(crate) async fn release_keys(st: &AppState, keys: &[String], uid: &str) {
    for key in keys {
        if let Ok(Some(kv)) = st.store.get(key).await {
            if owner_uid(&kv.value).as_deref() == Some(uid) {
                let _ = st.store.delete(key, Some(kv.mod_revision)).await;
            }
        }
    }
}

/// A deleted Service gives back everything it held.
pub(crate) async fn on_delete(st: &AppState, svc: &Value) {
    let keys: Vec<String> = used_keys(svc).into_iter().collect();
    release_keys(st, &keys, meta_str(svc, "uid").unwrap_or("")).await;
}

fn services_info() -> Option<&'static skiff_api::ResourceInfo> {
    skiff_api::resources::by_plural("", "v1", "services")
}

/// A claim younger than this is never freed by [`repair`]: with several servers on one store,
/// a peer may have claimed it for a Service it is about to store.
const REPAIR_MIN_AGE: jiff::SignedDuration = jiff::SignedDuration::from_secs(60);

/// Whether a claim (its `since`) is older than [`REPAIR_MIN_AGE`]; claims without a readable
/// time (older data) count as old.
fn claim_is_old(value: &[u8], now: jiff::Timestamp) -> bool {
    let since = serde_json::from_slice::<Value>(value)
        .ok()
        .and_then(|v| v.get("since")?.as_str()?.parse::<jiff::Timestamp>().ok());
    match since {
        Some(since) => now.duration_since(since) >= REPAIR_MIN_AGE,
        None => true,
    }
}

/// Startup repair: drops allocation keys whose owner Service is gone (or was recreated with a
/// new uid) and that were claimed more than a minute ago (so a claim a concurrent server made
/// for a Service it is still creating survives), and records keys for stored Services that
/// lack them (data from older versions).
pub(crate) async fn repair(st: &AppState) -> Result<(), StoreError> {
    let Some(info) = services_info() else {
        return Ok(());
    };
    let list = st
        .store
        .list(
            &crate::keys::collection_prefix(info, None),
            &Default::default(),
        )
        .await?;
    let mut live: HashSet<String> = HashSet::new();
    for kv in &list.items {
        let Ok(svc) = decode(kv) else { continue };
        let uid = meta_str(&svc, "uid").unwrap_or("").to_string();
        for key in used_keys(&svc) {
            let value = serde_json::to_vec(&owner(&svc)).unwrap_or_default();
            match st.store.create(&key, value).await {
                Ok(_) | Err(StoreError::AlreadyExists(_)) => {}
                Err(e) => return Err(e),
            }
            live.insert(format!("{key}#{uid}"));
        }
    }
    let now = jiff::Timestamp::now();
    for prefix in [IP_PREFIX, PORT_PREFIX] {
        let keys = st.store.list(prefix, &Default::default()).await?;
        for kv in keys.items {
            let uid = owner_uid(&kv.value).unwrap_or_default();
            if !live.contains(&format!("{}#{uid}", kv.key)) && claim_is_old(&kv.value, now) {
                tracing::info!(key = %kv.key, "releasing a service allocation without an owner");
                let _ = st.store.delete(&kv.key, Some(kv.mod_revision)).await;
            }
        }
    }
    Ok(())
}

/// How often [`run_repair`] runs (upstream's ClusterIP/NodePort repair controllers: 3 min).
pub(crate) const REPAIR_INTERVAL: std::time::Duration = std::time::Duration::from_secs(180);

/// Runs [`repair`] every `interval` until the server shuts down, like upstream's repair
/// controllers: a claim left by a crash between claim and store (here or on a peer server) is
/// freed within a minute plus one interval. Safe on every server at once: frees are
/// revision-checked deletes and records are create-if-absent.
pub(crate) async fn run_repair(st: std::sync::Arc<AppState>, interval: std::time::Duration) {
    crate::every(st.clone(), interval, || async {
        if let Err(e) = repair(&st).await {
            tracing::warn!("repairing service address allocations: {e}");
        }
    })
    .await
}

/// Creates `default/kubernetes` (ClusterIP = the first usable address, 443 → the API server
/// port) at first start, like upstream's bootstrap controller. Its Endpoints are not managed.
pub(crate) async fn ensure_kubernetes_service(
    st: &AppState,
    api_port: u16,
) -> Result<(), StoreError> {
    let Some(info) = services_info() else {
        return Ok(());
    };
    let key = object_key(info, Some("default"), "kubernetes");
    if st.store.get(&key).await?.is_some() {
        return Ok(());
    }
    let ip = st.ranges.first_ip().to_string();
    let mut svc = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default",
            "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": now_rfc3339(),
            "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api_port}],
            "sessionAffinity": "None"},
        "status": {"loadBalancer": {}},
    });
    skiff_api::defaults::apply_defaults(info, &mut svc);
    let ip_key = format!("{IP_PREFIX}{ip}");
    let claimed = match st
        .store
        .create(
            &ip_key,
            serde_json::to_vec(&owner(&svc)).unwrap_or_default(),
        )
        .await
    {
        Ok(_) => true,
        Err(StoreError::AlreadyExists(_)) => {
            // A peer server starting at the same time may have claimed it for this Service.
            if st.store.get(&key).await?.is_none() {
                tracing::warn!(%ip, "the kubernetes Service IP is taken; not creating the Service");
            }
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    match st.store.create(&key, encode(&svc)).await {
        Ok(_) => Ok(()),
        Err(e) => {
            if claimed {
                let _ = st.store.delete(&ip_key, None).await;
            }
            match e {
                StoreError::AlreadyExists(_) => Ok(()),
                e => Err(e),
            }
        }
    }
}

/// Endpoints and EndpointSlices may not point into the service CIDR: an endpoint that is
/// itself a ClusterIP would make the proxy DNAT to a virtual address (a loop, or a way around
/// a Service's own endpoints). Upstream validation has no such check (it has no CIDR at hand);
/// skiff rejects it at admission with a 422 like the other endpoint address rules.
/// `candidates` are (field path, address) pairs, from the kind's hook.
pub(crate) fn reject_service_cidr_addresses(
    st: &AppState,
    info: &skiff_api::ResourceInfo,
    obj: &Value,
    candidates: Vec<(String, &str)>,
) -> Result<(), ApiError> {
    let ranges = &st.ranges;
    let causes: Vec<Cause> = candidates
        .into_iter()
        .filter(|(_, raw)| {
            raw.parse::<Ipv4Addr>()
                .is_ok_and(|ip| ranges.cidr.contains(&ip))
        })
        .map(|(field, raw)| Cause {
            reason: "FieldValueInvalid".into(),
            message: format!(
                "Invalid value: {raw:?}: may not be in the service CIDR ({})",
                ranges.cidr_string()
            ),
            field,
        })
        .collect();
    if causes.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid(
        info.group,
        info.kind,
        meta_str(obj, "name").unwrap_or(""),
        causes,
    ))
}

/// Writes the `kubernetes` Service's Endpoints and EndpointSlice in `default`, like upstream's
/// endpoint reconciler: the live API servers' addresses (sorted, from `peers`) with port
/// `https`, the Endpoints labelled to skip mirroring, the slice named `kubernetes` with only the
/// `kubernetes.io/service-name` label (no endpointslice controller owns it). Existing objects
/// are replaced only when addresses, ports or labels differ.
pub(crate) async fn ensure_kubernetes_endpoints(
    st: &AppState,
    addresses: &[Ipv4Addr],
    api_port: u16,
) -> Result<(), StoreError> {
    let ips: Vec<String> = addresses.iter().map(Ipv4Addr::to_string).collect();
    let port = json!([{"name": "https", "port": api_port, "protocol": "TCP"}]);
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(), "ports": port}],
    });
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
            "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4",
        "endpoints": ips.iter().map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}})).collect::<Vec<_>>(),
        "ports": port,
    });
    let targets = [
        (
            skiff_api::resources::by_plural("", "v1", "endpoints"),
            endpoints,
            &["subsets"][..],
        ),
        (
            skiff_api::resources::by_plural("discovery.k8s.io", "v1", "endpointslices"),
            slice,
            &["addressType", "endpoints", "ports"][..],
        ),
    ];
    for (info, mut want, fields) in targets {
        let Some(info) = info else { continue };
        let key = object_key(info, Some("default"), "kubernetes");
        match st.store.get(&key).await? {
            None => {
                want["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
                want["metadata"]["creationTimestamp"] = json!(now_rfc3339());
                skiff_api::defaults::apply_defaults(info, &mut want);
                match st.store.create(&key, encode(&want)).await {
                    Ok(_) | Err(StoreError::AlreadyExists(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Some(kv) => {
                let Ok(mut have) = serde_json::from_slice::<Value>(&kv.value) else {
                    continue;
                };
                let same = fields.iter().all(|f| have.get(*f) == want.get(*f))
                    && have.pointer("/metadata/labels") == want.pointer("/metadata/labels");
                if same {
                    continue;
                }
                tracing::info!(kind = info.kind, addresses = ?ips, api_port, "updating the kubernetes Service's endpoints");
                for f in fields {
                    have[*f] = want[*f].clone();
                }
                have["metadata"]["labels"] = want["metadata"]["labels"].clone();
                match st.store.update(&key, encode(&have), kv.mod_revision).await {
                    // A peer wrote it meanwhile: the next round reconciles again.
                    Ok(_) | Err(StoreError::Conflict { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repair_spares_claims_younger_than_a_minute() {
        let now: jiff::Timestamp = "2026-01-01T00:10:00Z".parse().expect("time");
        let claim = |since: &str| {
            serde_json::to_vec(&json!({"namespace": "default", "name": "a", "uid": "u",
                "since": since}))
            .expect("json")
        };
        assert!(!claim_is_old(&claim("2026-01-01T00:09:30Z"), now));
        assert!(claim_is_old(&claim("2026-01-01T00:09:00Z"), now));
        assert!(claim_is_old(&claim("2026-01-01T00:00:00Z"), now));
        // Claims written before claim times were recorded, or unreadable ones, are old.
        assert!(claim_is_old(br#"{"uid":"u"}"#, now));
        assert!(claim_is_old(b"garbage", now));
    }
}
