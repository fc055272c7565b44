//! Agent failover between two API servers: two in-process `skiff-apiserver`s share one store
//! and one CA (as joined servers do), and a real agent reaches them through its load balancer
//! (`skiff_agent::lb`, with `skiff agent`'s timings). The server it uses first vanishes (it
//! stops answering without closing anything, as a machine that lost power), then comes back,
//! and then the other one stops. Each time the node's Lease must be renewed through the
//! remaining server within seconds, and the running pod must be left alone. Needs root,
//! busybox and the CNI plugins.

mod pods_support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use pods_support::{container_status, skiff_exe, wait_for};
use serde_json::json;

struct ApiServer {
    addr: std::net::SocketAddr,
    kubeconfig: std::path::PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl ApiServer {
    async fn start(
        dir: &Path,
        store: Arc<dyn skiff_store::Store>,
        reconcile: Duration,
    ) -> ApiServer {
        let mut config =
            skiff_apiserver::ServerConfig::new(dir.to_path_buf(), "127.0.0.1:0".parse().unwrap());
        config.disable_admission_plugins = vec!["ServiceAccount".into()];
        config.endpoint_reconcile_interval = reconcile;
        let server = skiff_apiserver::Server::bind(config, store)
            .await
            .expect("bind");
        let addr = server.local_addr();
        let kubeconfig = server.kubeconfig_path().to_path_buf();
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = server
                .run(async {
                    let _ = rx.await;
                })
                .await;
        });
        ApiServer {
            addr,
            kubeconfig,
            stop: Some(stop),
            task,
        }
    }

    async fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
    }

    async fn admin(&self) -> Client {
        let kc = Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("client config");
        Client::try_from(cfg).expect("client")
    }
}

/// A TCP hop in front of a server that can "vanish": frozen, it stops accepting (the kernel
/// still completes handshakes into its backlog) and stops moving bytes on open connections
/// without closing them, so only timeouts can tell.
struct Vanishing {
    addr: std::net::SocketAddr,
    frozen: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Vanishing {
    async fn start(upstream: std::net::SocketAddr) -> Vanishing {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (frozen, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let mut rx_wait = rx.clone();
                until(&mut rx_wait, false).await;
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = until(&mut rx_wait, true) => continue,
                };
                let Ok((mut client, _)) = accepted else {
                    continue;
                };
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        // Frozen: hold both sockets, silent, until thawed.
                        _ = until(&mut rx, true) => until(&mut rx, false).await,
                    }
                });
            }
        });
        Vanishing { addr, frozen, task }
    }

    fn freeze(&self, frozen: bool) {
        let _ = self.frozen.send(frozen);
    }
}

/// Waits until the flag is `value` (or its sender is gone).
async fn until(rx: &mut tokio::sync::watch::Receiver<bool>, value: bool) {
    let _ = rx.wait_for(|f| *f == value).await.is_ok();
}

impl Drop for Vanishing {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What joined servers share: the CA, the tokens and the ServiceAccount signing key.
fn share_secrets(from: &Path, to: &Path) {
    for f in [
        "server/tls/ca.crt",
        "server/tls/ca.key",
        "server/admin-token",
        "server/service-account.key",
        "node-token",
    ] {
        let dest = to.join(f);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(from.join(f), &dest).unwrap_or_else(|e| panic!("copying {f}: {e}"));
    }
}

/// Wipes the agent's containers, sandboxes and bridge when the test fails half-way.
struct Cleanup {
    data: std::path::PathBuf,
    cidr: String,
    armed: bool,
}

impl Cleanup {
    fn run(&mut self) {
        let rt = skiff_runtime::Runtime::new(skiff_runtime::RuntimeConfig {
            data_dir: self.data.clone(),
            shim_exe: skiff_exe(),
        });
        if let Ok(rt) = rt {
            for c in rt.list().unwrap_or_default() {
                let _ = rt.remove(&c.id, true);
            }
        }
        if let Ok(net) = skiff_net::PodNetwork::new(skiff_net::NetConfig {
            data_dir: self.data.clone(),
            pod_cidr: self.cidr.clone(),
            cni_bin_dir: None,
        }) {
            let _ = net.teardown_all();
        }
        let _ = skiff_agent::proxy::remove_table(&self.data);
        self.armed = false;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::process::Command::new(skiff_exe())
                .arg("--data-dir")
                .arg(&self.data)
                .arg("reset")
                .status();
        }
    }
}

fn renew_time(lease: &Lease) -> Option<jiff::Timestamp> {
    let t = lease.spec.as_ref()?.renew_time.as_ref()?;
    Some(t.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn agent_fails_over_without_touching_its_pods() {
    let dir = tempfile::Builder::new()
        .prefix("skiff-failover-test-")
        .tempdir()
        .unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let store: Arc<dyn skiff_store::Store> =
        Arc::new(skiff_store::SqliteStore::open(&root.join("state.db")).expect("store"));
    // Each server writes its own address into the `kubernetes` Service's endpoints at start and
    // then every reconcile interval; B starts last and A never reconciles during the test, so
    // the EndpointSlice names B.
    let mut a = ApiServer::start(&root.join("a"), store.clone(), Duration::from_secs(3600)).await;
    share_secrets(&root.join("a"), &root.join("b"));
    let mut b = ApiServer::start(&root.join("b"), store.clone(), Duration::from_secs(1)).await;
    // The agent knows A only through a hop that can make it vanish.
    let hop = Vanishing::start(a.addr).await;
    let admin_a = a.admin().await;
    let admin_b = b.admin().await;

    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    pods_support::busybox_image(&data, &root);
    let n = std::process::id();
    let cidr = format!("100.64.{}.0/24", 240 + n % 10);
    let node = format!("failover-test-{n}");
    let mut cleanup = Cleanup {
        data: data.clone(),
        cidr: cidr.clone(),
        armed: true,
    };

    // `skiff agent`'s load balancer settings; B is not among its --server URLs: the agent
    // learns it from the `kubernetes` Service's EndpointSlice.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let state_file = data.join("agent").join("api-servers.json");
    let mut lb_config =
        skiff_agent::lb::LbConfig::new("127.0.0.1:0".parse().unwrap(), Some(state_file.clone()));
    lb_config.ca_pem = Some(std::fs::read(root.join("a/server/tls/ca.crt")).unwrap());
    let lb = skiff_agent::lb::LoadBalancer::start(
        lb_config,
        &[format!("https://{}", hop.addr)],
        stopped.clone(),
    )
    .await
    .expect("load balancer");
    let ca = std::fs::read(root.join("a/server/tls/ca.crt")).unwrap();
    let token = std::fs::read_to_string(root.join("a/node-token")).unwrap();
    let identity = skiff_client::node_identity::NodeIdentity::establish(
        skiff_client::node_identity::IdentityOptions {
            server: lb.url(),
            ca_pem: ca,
            join_token: token.trim().to_string(),
            node_name: node.clone(),
            dir: data.join("agent").join("pki"),
            expiration_seconds: None,
        },
    )
    .await
    .expect("node identity through the load balancer");
    let client = identity.client();
    let mut id_stop = stopped.clone();
    tokio::spawn(identity.run(async move {
        let _ = id_stop.wait_for(|s| *s).await;
    }));
    tokio::spawn(skiff_agent::lb::follow_endpoints(
        client.clone(),
        lb.clone(),
        stopped.clone(),
    ));
    let config = skiff_agent::AgentConfig {
        data_dir: data.clone(),
        node_name: node.clone(),
        node_ip: "127.0.0.1".parse().unwrap(),
        api_listen: "127.0.0.1:0".parse().unwrap(),
        api_token: token.trim().to_string(),
        skiff_exe: skiff_exe(),
        // Heartbeats every 2 s.
        lease_duration_seconds: 8,
        offline: true,
        sync_frequency: Duration::from_secs(60),
        housekeeping_interval: Duration::from_secs(10),
        limits: Default::default(),
        api_server: Some(lb.local_addr().to_string()),
        storage_root: None,
    };
    let mut agent_stop = stopped.clone();
    let agent = tokio::spawn(skiff_agent::run(client.clone(), config, async move {
        let _ = agent_stop.wait_for(|s| *s).await;
    }));

    let nodes: Api<Node> = Api::all(admin_b.clone());
    wait_for("node registration", Duration::from_secs(30), || {
        let nodes = nodes.clone();
        let node = node.clone();
        async move { nodes.get_opt(&node).await.ok().flatten().is_some() }
    })
    .await;
    nodes
        .patch(
            &node,
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})),
        )
        .await
        .expect("assign the pod CIDR");

    let (a_addr, b_addr) = (hop.addr.to_string(), b.addr.to_string());
    wait_for("the LB to learn server B", Duration::from_secs(20), || {
        let lb = lb.clone();
        let b_addr = b_addr.clone();
        async move { lb.servers().iter().any(|s| s.addr == b_addr && !s.fallback) }
    })
    .await;
    let kept = std::fs::read_to_string(&state_file).expect("the server list is kept");
    assert!(kept.contains(&b_addr), "{kept}");

    let pods_b: Api<Pod> = Api::namespaced(admin_b.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "steady", "namespace": "default"},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "c", "image": "bb:1", "command": ["/bin/busybox", "sleep", "3600"],
        }]},
    }))
    .unwrap();
    pods_b
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    let deadline = Instant::now() + Duration::from_secs(60);
    let before = loop {
        let p = pods_b.get("steady").await.expect("get pod");
        if running(&p) {
            break p;
        }
        assert!(Instant::now() < deadline, "pod never ran: {:#?}", p.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let cs = container_status(&before, "c").unwrap().clone();

    // Everything goes to A, the first server, until it vanishes.
    assert_eq!(lb.current(), Some(a_addr.clone()));
    hop.freeze(true);
    let took = lease_renewed_after(&admin_b, &node, &lb).await;
    println!("failover: A vanished; the Lease was renewed through B {took:?} later");
    assert_eq!(lb.current(), Some(b_addr.clone()));
    assert!(took < Duration::from_secs(15), "{took:?}");
    same_container(&pods_b, &cs).await;

    // A comes back (the agent stays on B), then B stops: back to A.
    hop.freeze(false);
    wait_for("A to be healthy again", Duration::from_secs(20), || {
        let lb = lb.clone();
        let a_addr = a_addr.clone();
        async move { lb.servers().iter().any(|s| s.addr == a_addr && s.healthy) }
    })
    .await;
    assert_eq!(lb.current(), Some(b_addr.clone()), "the LB sticks to B");
    b.stop().await;
    let took = lease_renewed_after(&admin_a, &node, &lb).await;
    println!("failover: B stopped; the Lease was renewed through A {took:?} later");
    assert_eq!(lb.current(), Some(a_addr.clone()));
    assert!(took < Duration::from_secs(10), "{took:?}");
    let pods_a: Api<Pod> = Api::namespaced(admin_a.clone(), "default");
    same_container(&pods_a, &cs).await;

    // The agent's pod watch lives on through A: deleting the pod there is carried out.
    pods_a
        .delete("steady", &DeleteParams::default().grace_period(1))
        .await
        .expect("delete pod");
    wait_for("the pod to be finalized", Duration::from_secs(60), || {
        let pods = pods_a.clone();
        async move { pods.get_opt("steady").await.ok().flatten().is_none() }
    })
    .await;

    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(15), agent).await;
    cleanup.run();
    a.stop().await;
    drop(hop);
    let tables = std::process::Command::new("nft")
        .args(["list", "tables"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    assert!(
        !tables.contains(&skiff_net::proxy::table_name(&data)),
        "nft table left behind"
    );
    let rootstr = root.to_string_lossy().into_owned();
    let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&rootstr))
        .map(String::from)
        .collect();
    assert!(mounts.is_empty(), "mounts left behind: {mounts:#?}");
}

fn running(p: &Pod) -> bool {
    container_status(p, "c")
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.running.as_ref())
        .is_some()
}

/// How long until the node's Lease is renewed after now, read through `admin`.
async fn lease_renewed_after(
    admin: &Client,
    node: &str,
    lb: &skiff_agent::lb::LoadBalancer,
) -> Duration {
    let leases: Api<Lease> = Api::namespaced(admin.clone(), "kube-node-lease");
    let t0 = Instant::now();
    let since = jiff::Timestamp::now();
    loop {
        let lease = leases.get_opt(node).await.ok().flatten();
        if lease
            .as_ref()
            .and_then(renew_time)
            .is_some_and(|t| t > since)
        {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the Lease was not renewed; LB: {:?}",
            lb.servers()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A few heartbeats and pod syncs later, the pod runs the very same container.
async fn same_container(pods: &Api<Pod>, before: &k8s_openapi::api::core::v1::ContainerStatus) {
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = pods.get("steady").await.expect("get pod");
    let now = container_status(&after, "c").unwrap().clone();
    assert_eq!(
        before.container_id, now.container_id,
        "the container was replaced"
    );
    assert_eq!(
        before.restart_count, now.restart_count,
        "the container restarted"
    );
    let started = |c: &k8s_openapi::api::core::v1::ContainerStatus| {
        c.state
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .and_then(|r| r.started_at.clone())
    };
    assert_eq!(started(before), started(&now));
    assert!(running(&after));
}
