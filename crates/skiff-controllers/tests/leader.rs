//! Several API servers on one store (issue 16): two in-process `Server`s share one SQLite store,
//! each with its controllers and scheduler behind leader election (short timings). Exactly one
//! holds each Lease; a crashed leader (controllers dropped without releasing) is replaced within
//! leaseDuration + retry, a cleanly stopped one at once; a leader whose store writes fail steps
//! down and campaigns again without exiting; the `kubernetes` Service's endpoints list every
//! live server and drop a dead one; concurrent Service creates through both servers never share
//! a ClusterIP or NodePort.

mod common;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Endpoints, Event, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, PostParams};
use kube::Client;
use serde_json::json;
use skiff_controllers::leaderelection::Timings;
use skiff_controllers::{LeaderElect, Leadership};
use skiff_store::{
    KeyValue, ListOptions, ListResult, SnapshotInfo, Store, StoreError, StoreStatus, Watch,
};

const T: Duration = Duration::from_secs(30);

fn timings() -> Timings {
    Timings {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(500),
    }
}

/// A store whose writes fail while `failing` is set (a leader cut off from the datastore).
struct Flaky {
    inner: Arc<dyn Store>,
    failing: Arc<AtomicBool>,
}

impl Flaky {
    fn check(&self) -> skiff_store::Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("test: writes cut off".into()));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for Flaky {
    async fn get(&self, key: &str) -> skiff_store::Result<Option<KeyValue>> {
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str, opts: &ListOptions) -> skiff_store::Result<ListResult> {
        self.inner.list(prefix, opts).await
    }
    async fn create(&self, key: &str, value: Vec<u8>) -> skiff_store::Result<KeyValue> {
        self.check()?;
        self.inner.create(key, value).await
    }
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected_revision: i64,
    ) -> skiff_store::Result<KeyValue> {
        self.check()?;
        self.inner.update(key, value, expected_revision).await
    }
    async fn delete(
        &self,
        key: &str,
        expected_revision: Option<i64>,
    ) -> skiff_store::Result<KeyValue> {
        self.check()?;
        self.inner.delete(key, expected_revision).await
    }
    async fn watch(&self, prefix: &str, from_revision: i64) -> skiff_store::Result<Watch> {
        self.inner.watch(prefix, from_revision).await
    }
    async fn current_revision(&self) -> skiff_store::Result<i64> {
        self.inner.current_revision().await
    }
    async fn compact(&self, revision: i64) -> skiff_store::Result<()> {
        self.inner.compact(revision).await
    }
    async fn status(&self) -> skiff_store::Result<StoreStatus> {
        self.inner.status().await
    }
    async fn snapshot(&self, dest: &Path) -> skiff_store::Result<SnapshotInfo> {
        self.inner.snapshot(dest).await
    }
    async fn restore(&self, snapshot: &Path) -> skiff_store::Result<SnapshotInfo> {
        self.inner.restore(snapshot).await
    }
}

/// One `skiff server` minus the agent: API server, and controllers + scheduler behind leader
/// election with their own least-privileged identities.
struct Peer {
    identity: String,
    addr: SocketAddr,
    admin: Client,
    leadership: Leadership,
    failing: Arc<AtomicBool>,
    controllers: Option<tokio::task::JoinHandle<skiff_controllers::Result<()>>>,
    stop_controllers: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<Result<(), skiff_apiserver::ServerError>>>,
    stop_server: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

struct Options {
    listen: SocketAddr,
    endpoint_interval: Duration,
    lease: Duration,
    controllers: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: "127.0.0.1:0".parse().expect("addr"),
            endpoint_interval: Duration::from_secs(10),
            lease: Duration::from_secs(15),
            controllers: true,
        }
    }
}

impl Peer {
    async fn start(store: Arc<dyn Store>, opts: Options) -> Peer {
        let dir = tempfile::tempdir().expect("tempdir");
        let failing = Arc::new(AtomicBool::new(false));
        let store: Arc<dyn Store> = Arc::new(Flaky {
            inner: store,
            failing: failing.clone(),
        });
        let mut config = skiff_apiserver::ServerConfig::new(dir.path(), opts.listen);
        config.endpoint_reconcile_interval = opts.endpoint_interval;
        config.identity_lease_duration = opts.lease;
        let server = skiff_apiserver::Server::bind(config, store)
            .await
            .expect("bind");
        let addr = server.local_addr();
        let url = format!("https://{addr}");
        let ca = server.ca_pem().expect("ca").to_string();
        let component = |user: &str| {
            let cert = server.component_cert(user, &[]).expect("cert");
            skiff_client::config::with_client_cert(
                &url,
                ca.as_bytes(),
                &cert.cert_pem,
                &cert.key_pem,
            )
            .expect("client")
        };
        let cm = component(skiff_apiserver::auth::user::users::CONTROLLER_MANAGER);
        let sched = component(skiff_apiserver::auth::user::users::SCHEDULER);
        let admin = common::client_from(server.kubeconfig_path()).await;
        let (stop_server, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        let identity = skiff_controllers::leaderelection::default_identity();
        let (stop_controllers, rx) = tokio::sync::oneshot::channel::<()>();
        let (leadership, run) = skiff_controllers::run_elected(
            cm,
            sched,
            common::fast_options(),
            LeaderElect {
                identity: identity.clone(),
                timings: timings(),
            },
            async {
                let _ = rx.await;
            },
        );
        let controllers = opts.controllers.then(|| tokio::spawn(run));
        Peer {
            identity,
            addr,
            admin,
            leadership,
            failing,
            controllers,
            stop_controllers: Some(stop_controllers),
            server: Some(server),
            stop_server: Some(stop_server),
            _dir: dir,
        }
    }

    fn leads_both(&self) -> bool {
        self.leadership.controller_manager.get() && self.leadership.scheduler.get()
    }

    /// Like kill -9 of the controllers: their tasks die, nothing is released.
    async fn crash_controllers(&mut self) {
        if let Some(c) = self.controllers.take() {
            c.abort();
            let _ = c.await;
        }
    }

    /// A clean stop of the controllers (Leases released).
    async fn stop_controllers(&mut self) {
        if let Some(tx) = self.stop_controllers.take() {
            let _ = tx.send(());
        }
        if let Some(c) = self.controllers.take() {
            let _ = tokio::time::timeout(T, c).await;
        }
    }

    /// Like kill -9 of the whole server.
    async fn crash_server(&mut self) {
        self.crash_controllers().await;
        if let Some(s) = self.server.take() {
            s.abort();
            let _ = s.await;
        }
    }

    async fn stop_server(&mut self) {
        self.stop_controllers().await;
        if let Some(tx) = self.stop_server.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            let _ = tokio::time::timeout(T, s).await;
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(c) = self.controllers.take() {
            c.abort();
        }
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }
}

fn shared_store(dir: &Path) -> Arc<dyn Store> {
    Arc::new(skiff_store::SqliteStore::open(&dir.join("state.db")).expect("store"))
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn holder(client: &Client, name: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    leases
        .get_opt(name)
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
        .filter(|h| !h.is_empty())
}

/// Waits until exactly one of `peers` leads both components and the Leases name it; returns
/// its index.
async fn single_leader(peers: &[&Peer], timeout: Duration) -> usize {
    let mut found = 0;
    wait_for("a single leader", timeout, || {
        let leading: Vec<usize> = (0..peers.len())
            .filter(|i| peers[*i].leads_both())
            .collect();
        let any_other = (0..peers.len()).any(|i| {
            !leading.contains(&i)
                && (peers[i].leadership.controller_manager.get()
                    || peers[i].leadership.scheduler.get())
        });
        let client = peers[0].admin.clone();
        let ids: Vec<String> = leading.iter().map(|i| peers[*i].identity.clone()).collect();
        if let [one] = leading[..] {
            found = one;
        }
        async move {
            if leading.len() != 1 || any_other {
                return false;
            }
            holder(&client, "kube-controller-manager").await.as_ref() == Some(&ids[0])
                && holder(&client, "kube-scheduler").await.as_ref() == Some(&ids[0])
        }
    })
    .await;
    found
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": "web:v1"}]}
            }
        }
    }))
    .expect("deployment json")
}

async fn deployment_ready(client: &Client, name: &str, want: i32) -> bool {
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    api.get(name)
        .await
        .ok()
        .and_then(|d| d.status?.ready_replicas)
        == Some(want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_leader_then_failover_after_a_crash_and_after_a_clean_stop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = shared_store(dir.path());
    let mut peers = vec![
        Peer::start(store.clone(), Options::default()).await,
        Peer::start(store.clone(), Options::default()).await,
    ];
    let t = timings();
    let first = single_leader(&[&peers[0], &peers[1]], T).await;
    let second = 1 - first;
    let client = peers[second].admin.clone();
    // Nodes register through either server.
    let _node = common::FakeNode::start(client.clone(), common::NodeSpec::new("ha-node")).await;
    let _node2 = common::FakeNode::start(
        peers[first].admin.clone(),
        common::NodeSpec::new("ha-node-2"),
    )
    .await;

    // The leader recorded upstream's event on its Lease.
    let events: Api<Event> = Api::namespaced(client.clone(), "kube-system");
    let want = format!("{} became leader", peers[first].identity);
    wait_for("the LeaderElection event", T, || {
        let events = events.clone();
        let want = want.clone();
        async move {
            events.list(&ListParams::default()).await.is_ok_and(|l| {
                l.items.iter().any(|e| {
                    e.reason.as_deref() == Some("LeaderElection")
                        && e.message.as_deref() == Some(want.as_str())
                        && e.involved_object.kind.as_deref() == Some("Lease")
                })
            })
        }
    })
    .await;
    // client-go's gauge on /metrics (process-wide: both in-process servers share it).
    let metrics = client
        .request_text(
            http::Request::get("/metrics")
                .body(Vec::new())
                .expect("request"),
        )
        .await
        .expect("/metrics");
    for lease in ["kube-controller-manager", "kube-scheduler"] {
        let line = format!("leader_election_master_status{{name=\"{lease}\"}} 1");
        assert!(metrics.contains(&line), "{line} missing");
    }
    // The standby stays a standby while the leader renews (several lease durations).
    tokio::time::sleep(t.lease_duration * 2).await;
    assert!(peers[first].leads_both() && !peers[second].leadership.controller_manager.get());

    // Crash: the standby may take over only after the lease has stood still for its duration.
    let transitions_before = lease_transitions(&client, "kube-controller-manager").await;
    peers[first].crash_controllers().await;
    let crashed_at = Instant::now();
    let took = wait_for("failover after a crash", T, || {
        let leads = peers[second].leads_both();
        async move { leads }
    })
    .await;
    eprintln!("failover after a crash: {took:?}");
    // The last renewal was at most one retry period (plus its round trip) before the crash.
    assert!(
        took >= t.lease_duration - t.retry_period * 2,
        "took over too early: {took:?}"
    );
    // Observation lags by one jittered retry (≤ 2.2 periods), the takeover attempt by another.
    assert!(
        crashed_at.elapsed()
            <= t.lease_duration + t.retry_period.mul_f64(4.4) + Duration::from_secs(1),
        "failover took {took:?}"
    );
    assert_eq!(
        holder(&client, "kube-controller-manager").await.as_deref(),
        Some(peers[second].identity.as_str())
    );
    assert_eq!(
        lease_transitions(&client, "kube-controller-manager").await,
        transitions_before + 1
    );
    // The new leader's controllers and scheduler work: a Deployment created now gets its pods.
    let api: Api<Deployment> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &deployment("after-failover", 2))
        .await
        .expect("create deployment");
    wait_for("the deployment's pods", T, || {
        deployment_ready(&client, "after-failover", 2)
    })
    .await;
    // Node IPAM, before and after the failover: every node has its own pod CIDR.
    let _node3 = common::FakeNode::start(client.clone(), common::NodeSpec::new("ha-node-3")).await;
    wait_for("distinct pod CIDRs", T, || {
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
        async move {
            let Ok(list) = nodes.list(&ListParams::default()).await else {
                return false;
            };
            let cidrs: HashSet<String> = list
                .items
                .iter()
                .filter_map(|n| n.spec.as_ref()?.pod_cidr.clone())
                .collect();
            list.items.len() == 3 && cidrs.len() == 3
        }
    })
    .await;

    // A third server joins; then the leader stops cleanly: the Lease is released and a
    // standby takes over without waiting for the lease duration.
    peers.push(Peer::start(store.clone(), Options::default()).await);
    tokio::time::sleep(t.retry_period * 3).await;
    assert!(peers[second].leads_both() && !peers[2].leadership.scheduler.get());
    peers[second].stop_controllers().await;
    let took = wait_for("failover after a release", T, || {
        let leads = peers[2].leads_both();
        async move { leads }
    })
    .await;
    eprintln!("failover after a clean stop: {took:?}");
    assert!(
        took < t.lease_duration,
        "release did not speed up the failover: {took:?}"
    );
    for p in &mut peers {
        p.stop_server().await;
    }
}

async fn lease_transitions(client: &Client, name: &str) -> i32 {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    leases
        .get(name)
        .await
        .expect("lease")
        .spec
        .and_then(|s| s.lease_transitions)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_cut_off_from_the_store_steps_down_and_campaigns_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = shared_store(dir.path());
    let peers = [
        Peer::start(store.clone(), Options::default()).await,
        Peer::start(store.clone(), Options::default()).await,
    ];
    let t = timings();
    let first = single_leader(&[&peers[0], &peers[1]], T).await;
    let second = 1 - first;
    peers[first].failing.store(true, Ordering::SeqCst);
    let cut = Instant::now();
    let mut leading = peers[first].leadership.controller_manager.clone();
    tokio::time::timeout(T, leading.wait(false))
        .await
        .expect("the cut-off leader stops leading");
    let stepped_down = cut.elapsed();
    eprintln!("stepped down after {stepped_down:?}");
    assert!(
        stepped_down <= t.renew_deadline + t.retry_period * 2 + Duration::from_secs(1),
        "{stepped_down:?}"
    );
    // It did not exit: the election keeps running (campaigning), and the peer takes over.
    assert!(peers[first]
        .controllers
        .as_ref()
        .is_some_and(|c| !c.is_finished()));
    single_leader(&[&peers[0], &peers[1]], T).await;
    assert!(peers[second].leads_both());
    // Writes come back: it stays a standby (the peer holds the Lease) but campaigns.
    peers[first].failing.store(false, Ordering::SeqCst);
    tokio::time::sleep(t.lease_duration).await;
    assert!(!peers[first].leadership.controller_manager.get());
    assert!(peers[first]
        .controllers
        .as_ref()
        .is_some_and(|c| !c.is_finished()));
}

fn endpoint_ips(ep: &Endpoints) -> Vec<String> {
    ep.subsets
        .iter()
        .flatten()
        .flat_map(|s| s.addresses.iter().flatten().map(|a| a.ip.clone()))
        .collect()
}

async fn kubernetes_endpoints(client: &Client) -> (Vec<String>, Vec<String>) {
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let ep = eps.get("kubernetes").await.map(|e| endpoint_ips(&e));
    let slice = slices.get("kubernetes").await.map(|s| {
        s.endpoints
            .iter()
            .flat_map(|e| e.addresses.clone())
            .collect::<Vec<_>>()
    });
    (ep.unwrap_or_default(), slice.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_kubernetes_endpoints_list_every_live_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = shared_store(dir.path());
    let opts = |ip: Ipv4Addr, port: u16| Options {
        listen: SocketAddr::new(ip.into(), port),
        endpoint_interval: Duration::from_millis(300),
        lease: Duration::from_secs(2),
        controllers: false,
    };
    let ips = [
        Ipv4Addr::new(127, 0, 0, 11),
        Ipv4Addr::new(127, 0, 0, 12),
        Ipv4Addr::new(127, 0, 0, 13),
    ];
    let mut a = Peer::start(store.clone(), opts(ips[0], 0)).await;
    let port = a.addr.port();
    let mut b = Peer::start(store.clone(), opts(ips[1], port)).await;
    let c = Peer::start(store.clone(), opts(ips[2], port)).await;
    let all: Vec<String> = ips.iter().map(|i| i.to_string()).collect();
    let client = c.admin.clone();
    wait_for("all three servers in the endpoints", T, || {
        let client = client.clone();
        let all = all.clone();
        async move { kubernetes_endpoints(&client).await == (all.clone(), all) }
    })
    .await;
    // Each server has its identity Lease, labelled as upstream.
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let ids = leases
        .list(&ListParams::default().labels("apiserver.kubernetes.io/identity=kube-apiserver"))
        .await
        .expect("leases");
    assert_eq!(ids.items.len(), 3);
    assert!(ids.items.iter().all(|l| l
        .metadata
        .name
        .as_deref()
        .is_some_and(|n| n.starts_with("apiserver-"))));
    // A crashed server leaves within its lease duration (+ one reconcile round).
    a.crash_server().await;
    let took = wait_for("the dead server out of the endpoints", T, || {
        let client = client.clone();
        let want = vec![all[1].clone(), all[2].clone()];
        async move { kubernetes_endpoints(&client).await == (want.clone(), want) }
    })
    .await;
    eprintln!("dead server removed after {took:?}");
    assert!(took <= Duration::from_secs(4), "{took:?}");
    // A cleanly stopping one leaves at once.
    b.stop_server().await;
    let took = wait_for("the stopped server out of the endpoints", T, || {
        let client = client.clone();
        let want = vec![all[2].clone()];
        async move { kubernetes_endpoints(&client).await == (want.clone(), want) }
    })
    .await;
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_service_creates_through_two_servers_never_share_addresses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = shared_store(dir.path());
    // Both start at the same moment: bootstrap must tolerate the peer's writes.
    let no_controllers = || Options {
        controllers: false,
        ..Options::default()
    };
    let (a, b) = tokio::join!(
        Peer::start(store.clone(), no_controllers()),
        Peer::start(store.clone(), no_controllers())
    );
    let mut tasks = Vec::new();
    for (i, client) in [a.admin.clone(), b.admin.clone()].into_iter().enumerate() {
        for j in 0..30 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let svc: Service = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": format!("s{i}-{j}")},
                    "spec": {"type": "NodePort", "selector": {"app": "x"},
                        "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]},
                }))
                .expect("service json");
                let api: Api<Service> = Api::namespaced(client, "default");
                api.create(&PostParams::default(), &svc)
                    .await
                    .expect("create service")
            }));
        }
    }
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for t in tasks {
        let svc = t.await.expect("task");
        let spec = svc.spec.expect("spec");
        assert!(
            ips.insert(spec.cluster_ip.expect("clusterIP")),
            "a ClusterIP was handed out twice"
        );
        for p in spec.ports.expect("ports") {
            assert!(
                ports.insert(p.node_port.expect("nodePort")),
                "a NodePort was handed out twice"
            );
        }
    }
    assert_eq!((ips.len(), ports.len()), (60, 120));
    // A third server starting now repairs allocations: it must not free any of them.
    let c = Peer::start(store.clone(), no_controllers()).await;
    let services: Api<Service> = Api::namespaced(c.admin.clone(), "default");
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "late"},
        "spec": {"selector": {"app": "x"}, "ports": [{"port": 80}]},
    }))
    .expect("service json");
    let late = services
        .create(&PostParams::default(), &svc)
        .await
        .expect("create");
    let late_ip = late.spec.and_then(|s| s.cluster_ip).expect("clusterIP");
    assert!(!ips.contains(&late_ip));
}
