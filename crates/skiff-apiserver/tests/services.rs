//! Service address allocation: ClusterIPs from the service CIDR and nodePorts from the node-port
//! range, claimed atomically in the store, released on delete, kept across restarts.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
mod common;

use common::{client_from, start, status_code};
use skiff_apiserver::{Server, ServerConfig};

fn svc(name: &str, spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn web(name: &str) -> Service {
    svc(
        name,
        json!({"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}),
    )
}

fn cluster_ip(s: &Service) -> String {
    s.spec
        .as_ref()
        .unwrap()
        .cluster_ip
        .clone()
        .unwrap_or_default()
}

fn node_ports(s: &Service) -> Vec<i32> {
    s.spec
        .as_ref()
        .unwrap()
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.node_port)
        .collect()
}

fn in_service_cidr(ip: &str) -> bool {
    let ip: Ipv4Addr = ip.parse().unwrap();
    let o = ip.octets();
    o[0] == 100 && o[1] == 65 && ip != Ipv4Addr::new(100, 65, 0, 0) && o != [100, 65, 255, 255]
}

fn message(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

#[tokio::test]
async fn cluster_ips_unique_under_concurrency() {
    let t = start().await;
    let api: Api<Service> = Api::namespaced(t.client.clone(), "default");
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let api = api.clone();
            tokio::spawn(async move {
                api.create(&PostParams::default(), &web(&format!("s{i}")))
                    .await
            })
        })
        .collect();
    let mut ips = HashSet::new();
    for t in tasks {
        let s = t.await.unwrap().unwrap();
        let ip = cluster_ip(&s);
        assert!(in_service_cidr(&ip), "{ip} not in range");
        assert_ne!(ip, "100.65.0.1", "reserved for the kubernetes Service");
        let spec = s.spec.as_ref().unwrap();
        assert_eq!(spec.cluster_ips.as_deref(), Some(&[ip.clone()][..]));
        assert_eq!(spec.ip_families.as_deref(), Some(&["IPv4".to_string()][..]));
        assert_eq!(spec.ip_family_policy.as_deref(), Some("SingleStack"));
        assert!(ips.insert(ip), "duplicate ClusterIP");
    }
    // The kubernetes Service holds the first address.
    let k = api.get("kubernetes").await.unwrap();
    assert_eq!(cluster_ip(&k), "100.65.0.1");
    assert_eq!(k.spec.unwrap().ports.unwrap()[0].port, 443);
}

#[tokio::test]
async fn requested_cluster_ip_and_headless() {
    let t = start().await;
    let api: Api<Service> = Api::namespaced(t.client.clone(), "default");
    let spec = json!({"clusterIP": "100.65.0.5", "ports": [{"port": 80}]});
    let a = api
        .create(&PostParams::default(), &svc("a", spec.clone()))
        .await
        .unwrap();
    assert_eq!(cluster_ip(&a), "100.65.0.5");
    let err = api
        .create(&PostParams::default(), &svc("b", spec))
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(422));
    assert_eq!(
        message(&err),
        "Service \"b\" is invalid: spec.clusterIPs: Invalid value: [\"100.65.0.5\"]: failed to allocate IP 100.65.0.5: provided IP is already allocated"
    );
    let err = api
        .create(
            &PostParams::default(),
            &svc(
                "c",
                json!({"clusterIP": "10.0.0.5", "ports": [{"port": 80}]}),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(422));
    assert!(
        message(&err).contains("not in the valid range"),
        "{}",
        message(&err)
    );
    // Headless: nothing allocated.
    let h = api
        .create(
            &PostParams::default(),
            &svc(
                "h",
                json!({"clusterIP": "None", "selector": {"a": "b"}, "ports": [{"port": 80}]}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(cluster_ip(&h), "None");
    // Deleting frees the IP for someone else; an update keeps it (immutable).
    let kept = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(cluster_ip(&kept), "100.65.0.5");
    api.delete("a", &DeleteParams::default()).await.unwrap();
    let b = api
        .create(
            &PostParams::default(),
            &svc(
                "b",
                json!({"clusterIP": "100.65.0.5", "ports": [{"port": 80}]}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(cluster_ip(&b), "100.65.0.5");
}

#[tokio::test]
async fn node_port_allocation() {
    let t = start().await;
    let api: Api<Service> = Api::namespaced(t.client.clone(), "default");
    let np = api
        .create(
            &PostParams::default(),
            &svc(
                "np",
                json!({"type": "NodePort", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]}),
            ),
        )
        .await
        .unwrap();
    let ports = node_ports(&np);
    assert_eq!(ports.len(), 2);
    assert!(
        ports.iter().all(|p| (30000..=32767).contains(p)),
        "{ports:?}"
    );
    assert_ne!(ports[0], ports[1]);

    let fixed = json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]});
    let f = api
        .create(&PostParams::default(), &svc("fixed", fixed.clone()))
        .await
        .unwrap();
    assert_eq!(node_ports(&f), vec![30080]);
    let err = api
        .create(&PostParams::default(), &svc("dup", fixed.clone()))
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(422));
    assert_eq!(
        message(&err),
        "Service \"dup\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
    );
    // A failed create does not leak its ClusterIP claim: creating with a fresh IP still works.
    let err = api
        .create(
            &PostParams::default(),
            &svc(
                "out",
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 40000}]}),
            ),
        )
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), Some(422));
    assert!(
        message(&err).contains(
            "provided port is not in the valid range. The range of valid ports is 30000-32767"
        ),
        "{}",
        message(&err)
    );
    // Delete releases: the port can be requested again.
    api.delete("fixed", &DeleteParams::default()).await.unwrap();
    let again = api
        .create(&PostParams::default(), &svc("dup", fixed))
        .await
        .unwrap();
    assert_eq!(node_ports(&again), vec![30080]);

    // NodePort → ClusterIP releases; ClusterIP → NodePort allocates.
    let c = api
        .patch(
            "dup",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"type": "ClusterIP"}})),
        )
        .await
        .unwrap();
    assert!(node_ports(&c).is_empty());
    let other = api
        .create(
            &PostParams::default(),
            &svc(
                "other",
                json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(node_ports(&other), vec![30080]);
    let back = api
        .patch(
            "dup",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"type": "NodePort"}})),
        )
        .await
        .unwrap();
    let p = node_ports(&back);
    assert_eq!(p.len(), 1);
    assert_ne!(p[0], 30080);
    // A PUT without nodePorts/clusterIP keeps the allocated ones.
    let mut replaced = back.clone();
    let spec = replaced.spec.as_mut().unwrap();
    spec.cluster_ip = None;
    spec.cluster_ips = None;
    spec.ports.as_mut().unwrap()[0].node_port = None;
    let r = api
        .replace("dup", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert_eq!(node_ports(&r), p);
    assert_eq!(cluster_ip(&r), cluster_ip(&back));
}

#[tokio::test]
async fn allocations_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut taken = (String::new(), 0);
    for round in 0..2 {
        let store = Arc::new(skiff_store::SqliteStore::open(&dir.path().join("state.db")).unwrap());
        let server = Server::bind(
            ServerConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap()),
            store,
        )
        .await
        .unwrap();
        let client = client_from(server.kubeconfig_path()).await;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        let api: Api<Service> = Api::namespaced(client, "default");
        if round == 0 {
            let s = api
                .create(
                    &PostParams::default(),
                    &svc("keep", json!({"type": "NodePort", "ports": [{"port": 80}]})),
                )
                .await
                .unwrap();
            taken = (cluster_ip(&s), node_ports(&s)[0]);
        } else {
            let ip_err = api
                .create(
                    &PostParams::default(),
                    &svc("x", json!({"clusterIP": taken.0, "ports": [{"port": 80}]})),
                )
                .await
                .unwrap_err();
            assert_eq!(status_code(&ip_err), Some(422));
            let port_err = api
                .create(
                    &PostParams::default(),
                    &svc(
                        "y",
                        json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": taken.1}]}),
                    ),
                )
                .await
                .unwrap_err();
            assert!(message(&port_err).contains("provided port is already allocated"));
            // Exactly one kubernetes Service, still on the first address.
            assert_eq!(
                cluster_ip(&api.get("kubernetes").await.unwrap()),
                "100.65.0.1"
            );
        }
        drop(tx);
        running.await.unwrap().unwrap();
    }
}

/// The `kubernetes` Service has upstream's master Endpoints and EndpointSlice (the advertise
/// address, port `https`), and the reconciler puts them back when they are deleted or changed.
#[tokio::test]
async fn kubernetes_service_endpoints_are_reconciled() {
    use k8s_openapi::api::core::v1::Endpoints;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        Arc::new(skiff_store::SqliteStore::open(&dir.path().join("state.db")).expect("store"));
    let mut config = ServerConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap());
    config.endpoint_reconcile_interval = std::time::Duration::from_millis(100);
    let server = Server::bind(config, store).await.expect("bind");
    let port = i32::from(server.local_addr().port());
    let kubeconfig = server.kubeconfig_path().to_path_buf();
    let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    let client = client_from(&kubeconfig).await;
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client, "default");

    let check = |e: &Endpoints, s: &EndpointSlice| {
        let subset = &e.subsets.as_ref().expect("subsets")[0];
        let addrs = subset.addresses.as_ref().expect("addresses");
        assert_eq!(addrs.len(), 1);
        assert_eq!(addrs[0].ip, "127.0.0.1");
        let p = &subset.ports.as_ref().expect("ports")[0];
        assert_eq!(
            (p.name.as_deref(), p.port, p.protocol.as_deref()),
            (Some("https"), port, Some("TCP"))
        );
        assert_eq!(
            e.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("endpointslice.kubernetes.io/skip-mirror"))
                .map(String::as_str),
            Some("true")
        );
        assert_eq!(s.address_type, "IPv4");
        assert_eq!(
            s.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
                .map(String::as_str),
            Some("kubernetes")
        );
        assert_eq!(s.endpoints[0].addresses, vec!["127.0.0.1".to_string()]);
        assert_eq!(
            s.endpoints[0].conditions.as_ref().and_then(|c| c.ready),
            Some(true)
        );
        let sp = &s.ports.as_ref().expect("slice ports")[0];
        assert_eq!((sp.name.as_deref(), sp.port), (Some("https"), Some(port)));
    };
    check(
        &eps.get("kubernetes").await.unwrap(),
        &slices.get("kubernetes").await.unwrap(),
    );

    // Deleted and tampered with: both come back as they were.
    eps.delete("kubernetes", &DeleteParams::default())
        .await
        .unwrap();
    slices
        .patch(
            "kubernetes",
            &PatchParams::default(),
            &Patch::Merge(json!({"endpoints": [{"addresses": ["10.9.9.9"]}]})),
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let e = eps.get_opt("kubernetes").await.unwrap();
        let s = slices.get("kubernetes").await.unwrap();
        if let Some(e) = e.filter(|_| s.endpoints[0].addresses == vec!["127.0.0.1".to_string()]) {
            check(&e, &s);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not reconciled: {s:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
