//! Script generation of the service proxy: golden-ish assertions on the key lines, and
//! `nft -c` (check only, nothing is committed) accepting the result.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use skiff_net::proxy::{
    render, EndpointModel, Protocol, RenderConfig, ServiceModel, ServicePortModel,
};
use skiff_net::Ipv4Cidr;

fn cfg() -> RenderConfig {
    RenderConfig {
        table: "skiff_deadbeef".into(),
        bridge: "skdeadbeef".into(),
        pod_cidr: Ipv4Cidr::parse("100.64.160.0/24").unwrap(),
        route_localnet: true,
    }
}

fn ep(last: u8, ready: bool, serving: bool, terminating: bool) -> EndpointModel {
    EndpointModel {
        ip: Ipv4Addr::new(100, 64, 160, last),
        port: 8080,
        ready,
        serving,
        terminating,
        local: last.is_multiple_of(2),
    }
}

fn svc(name: &str, ip: [u8; 4], node_port: Option<u16>, eps: Vec<EndpointModel>) -> ServiceModel {
    ServiceModel {
        namespace: "default".into(),
        name: name.into(),
        cluster_ip: Some(Ipv4Addr::from(ip)),
        ports: vec![ServicePortModel {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port,
            endpoints: eps,
        }],
        session_affinity_timeout: None,
        external_traffic_policy_local: false,
    }
}

fn nft_check(script: &str) {
    let mut child = Command::new("nft")
        .args(["-c", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "nft -c rejected the script: {}\n{script}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn line_with<'a>(script: &'a str, needle: &str) -> &'a str {
    script
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in\n{script}"))
}

#[test]
#[ignore = "needs root: nft -c needs CAP_NET_ADMIN"]
fn layout_and_load_balancing() {
    let s = render(
        &cfg(),
        &[svc(
            "web",
            [10, 160, 0, 10],
            Some(29160),
            vec![
                ep(3, true, true, false),
                ep(2, true, true, false),
                ep(4, false, false, false),
            ],
        )],
    );
    assert!(s.starts_with(
        "add table ip skiff_deadbeef\ndelete table ip skiff_deadbeef\ntable ip skiff_deadbeef {"
    ));
    for l in [
        "type nat hook prerouting priority -100; policy accept;",
        "type nat hook output priority -100; policy accept;",
        "type nat hook postrouting priority 100; policy accept;",
        "ip daddr . meta l4proto . th dport vmap @service-ips",
        "fib daddr type local meta l4proto . th dport vmap @service-nodeports",
        "ip saddr 127.0.0.0/8 oifname \"skdeadbeef\" masquerade",
        "iifname != \"lo\" ip daddr 127.0.0.0/8 ct state != { established, related } drop",
        "meta mark set meta mark | 0x4000",
        "masquerade fully-random",
        "meta l4proto tcp reject with tcp reset",
    ] {
        assert!(s.contains(l), "missing {l:?} in\n{s}");
    }
    let clusterip = line_with(&s, "10.160.0.10 . tcp . 80 : goto service-");
    let chain = clusterip.rsplit(' ').next().unwrap().trim_end_matches(',');
    assert!(chain.ends_with("-default/web/tcp/http"), "{chain}");
    assert!(s.contains(&format!("tcp . 29160 : goto {chain}")), "{s}");
    // Two ready endpoints (sorted), the not-ready one left out.
    let lb = line_with(&s, "numgen random mod 2 vmap");
    assert!(
        lb.contains("0 : goto endpoint-") && lb.contains("__100.64.160.2/8080, 1 : goto endpoint-"),
        "{lb}"
    );
    assert!(lb.contains("__100.64.160.3/8080 }"), "{lb}");
    assert!(!s.contains("100.64.160.4"), "{s}");
    assert!(s.contains("meta l4proto tcp dnat to 100.64.160.2:8080"));
    nft_check(&s);
}

#[test]
#[ignore = "needs root: nft -c needs CAP_NET_ADMIN"]
fn endpoint_fallback_and_reject() {
    let s = render(
        &cfg(),
        &[
            svc(
                "terminating",
                [10, 160, 0, 11],
                None,
                vec![ep(5, false, true, true), ep(6, false, false, true)],
            ),
            svc(
                "down",
                [10, 160, 0, 12],
                Some(29161),
                vec![ep(7, false, false, false)],
            ),
        ],
    );
    // Serving+terminating endpoint used when nothing is ready; a non-serving one never.
    assert!(s.contains("dnat to 100.64.160.5:8080"), "{s}");
    assert!(!s.contains("100.64.160.6"), "{s}");
    // No usable endpoints: rejected from the filter chains, no DNAT entry.
    line_with(&s, "10.160.0.12 . tcp . 80 : goto reject-chain");
    line_with(&s, "tcp . 29161 : goto reject-chain");
    assert!(!s.contains("10.160.0.12 . tcp . 80 : goto service-"), "{s}");
    nft_check(&s);
}

#[test]
#[ignore = "needs root: nft -c needs CAP_NET_ADMIN"]
fn affinity_local_policy_and_hostile_names() {
    let mut a = svc(
        "sticky",
        [10, 160, 0, 13],
        Some(29162),
        vec![ep(2, true, true, false), ep(3, true, true, false)],
    );
    a.session_affinity_timeout = Some(600);
    a.external_traffic_policy_local = true;
    a.ports.push(ServicePortModel {
        name: "dns".into(),
        protocol: Protocol::Udp,
        port: 53,
        node_port: None,
        endpoints: vec![ep(2, true, true, false)],
    });
    let mut evil = svc(
        "x\"; flush ruleset; \"",
        [10, 160, 0, 14],
        None,
        vec![ep(9, true, true, false)],
    );
    evil.namespace = "a b{}".into();
    let s = render(&cfg(), &[a, evil]);
    assert!(s.contains("flags dynamic,timeout"), "{s}");
    assert!(s.contains("timeout 600s"), "{s}");
    line_with(&s, "update @affinity-");
    line_with(&s, "ip saddr @affinity-");
    let ext = line_with(&s, "tcp . 29162 : goto external-");
    assert!(ext.contains("/sticky/tcp/http"), "{ext}");
    line_with(&s, "ip saddr 100.64.160.0/24 goto service-");
    line_with(&s, "fib saddr type local goto service-");
    // Only the local endpoint (even last octet) in the local chain.
    let local_chain = s.split("chain local-").nth(1).unwrap();
    let local_chain = &local_chain[..local_chain.find('}').unwrap()];
    assert!(local_chain.contains("100.64.160.2/8080") && !local_chain.contains("100.64.160.3"));
    line_with(&s, "10.160.0.13 . udp . 53 : goto service-");
    assert!(s.contains("meta l4proto udp dnat to 100.64.160.2:8080"));
    assert!(!s.contains("flush ruleset"), "{s}");
    nft_check(&s);
}

#[test]
#[ignore = "needs root: nft -c needs CAP_NET_ADMIN"]
fn deterministic_and_empty() {
    let a = svc("a", [10, 160, 0, 1], None, vec![ep(2, true, true, false)]);
    let b = svc("b", [10, 160, 0, 2], None, vec![ep(3, true, true, false)]);
    assert_eq!(
        render(&cfg(), &[a.clone(), b.clone()]),
        render(&cfg(), &[b, a])
    );
    let empty = render(&cfg(), &[]);
    assert!(!empty.contains("elements"), "{empty}");
    nft_check(&empty);
}

/// Defence in depth (issue 10 item 5): an endpoint that got stored with a loopback,
/// link-local, unspecified, multicast or ClusterIP address is never DNATed to; a service left
/// with only such endpoints rejects like one with no endpoints.
#[test]
#[ignore = "needs root: nft -c needs CAP_NET_ADMIN"]
fn special_endpoint_addresses_are_never_programmed() {
    let at = |ip: [u8; 4]| EndpointModel {
        ip: Ipv4Addr::from(ip),
        ..ep(0, true, true, false)
    };
    let hostile = [
        [127, 0, 0, 1],
        [127, 1, 2, 3],
        [169, 254, 169, 254],
        [0, 0, 0, 0],
        [224, 0, 0, 251],
        [239, 1, 1, 1],
        [255, 255, 255, 255],
        [10, 160, 0, 30],
    ];
    // Only hostile endpoints (the last is the other service's ClusterIP).
    let only = svc(
        "only",
        [10, 160, 0, 20],
        Some(29170),
        hostile.iter().map(|ip| at(*ip)).collect(),
    );
    // Hostile ones next to a real pod: only the pod is used.
    let mut mixed_eps: Vec<EndpointModel> = hostile.iter().map(|ip| at(*ip)).collect();
    mixed_eps.push(ep(7, true, true, false));
    let mixed = svc("mixed", [10, 160, 0, 30], None, mixed_eps);
    // Terminating fallback never picks a hostile one either.
    let fallback = svc(
        "fallback",
        [10, 160, 0, 31],
        None,
        vec![
            EndpointModel {
                ready: false,
                terminating: true,
                ..at([127, 0, 0, 1])
            },
            ep(8, false, true, true),
        ],
    );
    let s = render(&cfg(), &[only, mixed, fallback]);
    for ip in hostile {
        let ip = Ipv4Addr::from(ip);
        assert!(
            !s.contains(&format!("dnat to {ip}:")),
            "{ip} programmed:\n{s}"
        );
    }
    line_with(&s, "10.160.0.20 . tcp . 80 : goto reject-chain");
    line_with(&s, "tcp . 29170 : goto reject-chain");
    line_with(&s, "10.160.0.30 . tcp . 80 : goto service-");
    assert!(s.contains("dnat to 100.64.160.7:8080"), "{s}");
    assert!(s.contains("dnat to 100.64.160.8:8080"), "{s}");
    nft_check(&s);
    for ip in hostile.iter().take(7) {
        assert!(skiff_net::proxy::forbidden_endpoint(Ipv4Addr::from(*ip)));
    }
    assert!(!skiff_net::proxy::forbidden_endpoint(Ipv4Addr::new(
        10, 1, 2, 3
    )));
}
