//! Cluster DNS, served by every node agent on its pods' gateway address (port 53, UDP and TCP),
//! the way NodeLocal DNSCache and CoreDNS's kubernetes plugin serve it upstream:
//!
//! - `<svc>.<ns>.svc.cluster.local` A → the ClusterIP, or the ready endpoints of a headless
//!   Service; SRV → one record per named port;
//! - `_<port>._<proto>.<svc>.<ns>.svc.cluster.local` SRV → that port;
//! - `<hostname>.<svc>.<ns>.svc.cluster.local` A → the ready endpoint of a headless Service
//!   with that hostname (a pod with `hostname` and `subdomain: <svc>`, e.g. a StatefulSet's);
//! - `<a-b-c-d>.<ns>.pod.cluster.local` A → a.b.c.d;
//! - other names under `cluster.local` → NXDOMAIN; any other name is forwarded to the node's
//!   own resolvers (its `/etc/resolv.conf`).
//!
//! Records come from the agent's Service and EndpointSlice reflectors ([`Lookup`]); answers carry
//! a 5 s TTL, like CoreDNS's default.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use simple_dns::rdata::{RData, A, OPT, SRV};
use simple_dns::{Name, Packet, PacketFlag, ResourceRecord, CLASS, QTYPE, RCODE, TYPE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// The cluster domain (the kubelet's `--cluster-domain`).
pub const CLUSTER_DOMAIN: &str = "cluster.local";
const TTL: u32 = 5;
/// Answer size over UDP without EDNS (RFC 1035).
const UDP_PLAIN: usize = 512;
/// The EDNS buffer size we offer (the DNS flag day 2020 value).
const UDP_EDNS: u16 = 1232;
const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// A Service as DNS sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRecord {
    /// None for a headless Service (`clusterIP: None`).
    pub cluster_ip: Option<Ipv4Addr>,
    /// (name, protocol, port) of every port.
    pub ports: Vec<(String, String, u16)>,
}

/// Where the answers come from.
pub trait Lookup: Send + Sync + 'static {
    /// Whether the Service and EndpointSlice lists are complete (before that: SERVFAIL, so
    /// clients retry instead of caching a wrong NXDOMAIN).
    fn ready(&self) -> bool;
    fn service(&self, namespace: &str, name: &str) -> Option<ServiceRecord>;
    /// Ready endpoint addresses of a Service.
    fn endpoints(&self, namespace: &str, name: &str) -> Vec<Ipv4Addr>;
    /// Ready endpoint addresses of a Service whose endpoint carries `hostname` (pods with
    /// `hostname` and `subdomain` = the Service, e.g. StatefulSet pods).
    fn hostname(&self, _namespace: &str, _service: &str, _hostname: &str) -> Vec<Ipv4Addr> {
        Vec::new()
    }
}

/// What to do with one query.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Reply(Vec<u8>),
    /// Not a cluster name: ask the node's resolvers.
    Forward,
    /// Not even a DNS header: drop it.
    Drop,
}

fn header_only(query: &[u8], rcode: RCODE) -> Outcome {
    if query.len() < 2 {
        return Outcome::Drop;
    }
    let mut reply = Packet::new_reply(u16::from_be_bytes([query[0], query[1]]));
    *reply.rcode_mut() = rcode;
    reply
        .build_bytes_vec()
        .map_or(Outcome::Drop, Outcome::Reply)
}

fn a_record(name: &str, ip: Ipv4Addr) -> Option<ResourceRecord<'static>> {
    Some(ResourceRecord::new(
        Name::new(name).ok()?.into_owned(),
        CLASS::IN,
        TTL,
        RData::A(A::from(ip)),
    ))
}

fn srv_record(name: &str, port: u16, weight: u16, target: &str) -> Option<ResourceRecord<'static>> {
    Some(ResourceRecord::new(
        Name::new(name).ok()?.into_owned(),
        CLASS::IN,
        TTL,
        RData::SRV(SRV {
            priority: 0,
            weight,
            port,
            target: Name::new(target).ok()?.into_owned(),
        }),
    ))
}

/// Records for a cluster name: Some(answers, additionals) when the name exists (answers may be
/// empty: NODATA), None for NXDOMAIN.
#[allow(clippy::type_complexity)]
fn cluster_records(
    name: &str,
    qtype: QTYPE,
    lookup: &dyn Lookup,
) -> Option<(Vec<ResourceRecord<'static>>, Vec<ResourceRecord<'static>>)> {
    let wants = |t: TYPE| qtype == QTYPE::TYPE(t) || qtype == QTYPE::ANY;
    let rel = if name == CLUSTER_DOMAIN {
        ""
    } else {
        name.strip_suffix(CLUSTER_DOMAIN)?.strip_suffix('.')?
    };
    let labels: Vec<&str> = if rel.is_empty() {
        Vec::new()
    } else {
        rel.split('.').collect()
    };
    let mut answers = Vec::new();
    let mut extra = Vec::new();
    match labels.as_slice() {
        // The zone and the per-namespace parents exist, with no records of their own.
        [] | ["svc"] | ["pod"] | [_, "svc"] | [_, "pod"] => {}
        [svc, ns, "svc"] => {
            let rec = lookup.service(ns, svc)?;
            if wants(TYPE::A) {
                let ips = match rec.cluster_ip {
                    Some(ip) => vec![ip],
                    None => lookup.endpoints(ns, svc),
                };
                answers.extend(ips.into_iter().filter_map(|ip| a_record(name, ip)));
            }
            if wants(TYPE::SRV) {
                let named: Vec<_> = rec.ports.iter().filter(|p| !p.0.is_empty()).collect();
                let weight = (100 / named.len().max(1)) as u16;
                for (_, _, port) in named {
                    answers.extend(srv_record(name, *port, weight, name));
                }
                if let Some(ip) = rec.cluster_ip {
                    extra.extend(a_record(name, ip));
                }
            }
        }
        // A pod's stable name under its headless Service (CoreDNS serves these for headless
        // Services only).
        [host, svc, ns, "svc"] if !host.starts_with('_') => {
            let rec = lookup.service(ns, svc)?;
            if rec.cluster_ip.is_some() {
                return None;
            }
            let ips = lookup.hostname(ns, svc, host);
            if ips.is_empty() {
                return None;
            }
            if wants(TYPE::A) {
                answers.extend(ips.into_iter().filter_map(|ip| a_record(name, ip)));
            }
        }
        [port, proto, svc, ns, "svc"] => {
            let (port, proto) = (port.strip_prefix('_')?, proto.strip_prefix('_')?);
            let rec = lookup.service(ns, svc)?;
            let (_, _, number) = rec
                .ports
                .iter()
                .find(|(n, p, _)| n == port && p.eq_ignore_ascii_case(proto))?;
            if wants(TYPE::SRV) {
                let target = format!("{svc}.{ns}.svc.{CLUSTER_DOMAIN}");
                answers.extend(srv_record(name, *number, 100, &target));
                if let Some(ip) = rec.cluster_ip {
                    extra.extend(a_record(&target, ip));
                }
            }
        }
        [ip, _, "pod"] => {
            let ip: Ipv4Addr = ip.replace('-', ".").parse().ok()?;
            if wants(TYPE::A) {
                answers.extend(a_record(name, ip));
            }
        }
        _ => return None,
    }
    Some((answers, extra))
}

/// Answers one query (`max_len`: the transport's limit before EDNS; UDP's 512 or TCP's 65535).
pub fn answer(query: &[u8], lookup: &dyn Lookup, max_len: usize) -> Outcome {
    let Ok(packet) = Packet::parse(query) else {
        return header_only(query, RCODE::FormatError);
    };
    if packet.has_flags(PacketFlag::RESPONSE) {
        return Outcome::Drop;
    }
    let [question] = packet.questions.as_slice() else {
        return header_only(query, RCODE::NotImplemented);
    };
    let name = question.qname.to_string().to_ascii_lowercase();
    let name = name.trim_end_matches('.');
    if name != CLUSTER_DOMAIN && !name.ends_with(&format!(".{CLUSTER_DOMAIN}")) {
        return Outcome::Forward;
    }
    if !lookup.ready() {
        return header_only(query, RCODE::ServerFailure);
    }
    let mut reply = Packet::new_reply(packet.id());
    reply.set_flags(PacketFlag::AUTHORITATIVE_ANSWER | PacketFlag::RECURSION_AVAILABLE);
    if packet.has_flags(PacketFlag::RECURSION_DESIRED) {
        reply.set_flags(PacketFlag::RECURSION_DESIRED);
    }
    reply.questions.push(question.clone());
    let mut limit = max_len;
    if let Some(opt) = packet.opt() {
        limit = limit.max(usize::from(opt.udp_packet_size.min(UDP_EDNS)));
        *reply.opt_mut() = Some(OPT {
            opt_codes: Vec::new(),
            udp_packet_size: UDP_EDNS,
            version: 0,
        });
    }
    match cluster_records(name, question.qtype, lookup) {
        Some((answers, extra)) => {
            reply.answers = answers;
            reply.additional_records = extra;
        }
        None => *reply.rcode_mut() = RCODE::NameError,
    }
    let Ok(mut bytes) = reply.build_bytes_vec_compressed() else {
        return header_only(query, RCODE::ServerFailure);
    };
    if bytes.len() > limit {
        // Too big for this transport: the client retries over TCP.
        reply.answers.clear();
        reply.additional_records.clear();
        reply.set_flags(PacketFlag::TRUNCATION);
        match reply.build_bytes_vec_compressed() {
            Ok(b) => bytes = b,
            Err(_) => return header_only(query, RCODE::ServerFailure),
        }
    }
    Outcome::Reply(bytes)
}

/// The node's resolvers (`nameserver` lines of a resolv.conf), port 53; `own` is left out so
/// the server never forwards to itself.
pub fn upstreams(resolv_conf: &str, own: Ipv4Addr) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some("nameserver"))
                .then(|| f.next())
                .flatten()
                .and_then(|a| a.parse::<std::net::IpAddr>().ok())
        })
        .filter(|ip| *ip != std::net::IpAddr::V4(own))
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Relays a query to the first upstream that answers.
async fn forward(query: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    for up in upstreams {
        let bind: SocketAddr = if up.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let Ok(sock) = UdpSocket::bind(bind).await else {
            continue;
        };
        if sock.send_to(query, up).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 65535];
        if let Ok(Ok((n, from))) =
            tokio::time::timeout(FORWARD_TIMEOUT, sock.recv_from(&mut buf)).await
        {
            if from == *up && n >= 2 && buf[..2] == query[..2] {
                buf.truncate(n);
                return Some(buf);
            }
        }
    }
    None
}

async fn respond(
    query: &[u8],
    lookup: &dyn Lookup,
    upstreams: &[SocketAddr],
    max_len: usize,
) -> Option<Vec<u8>> {
    match answer(query, lookup, max_len) {
        Outcome::Reply(b) => Some(b),
        Outcome::Drop => None,
        Outcome::Forward => match forward(query, upstreams).await {
            Some(b) => Some(b),
            None => match header_only(query, RCODE::ServerFailure) {
                Outcome::Reply(b) => Some(b),
                _ => None,
            },
        },
    }
}

/// A socket bound to `addr` even before the address exists (IP_FREEBIND): the pod bridge gets
/// its gateway address only when the first pod sandbox is created.
fn freebind_socket(addr: SocketAddr, ty: socket2::Type) -> std::io::Result<socket2::Socket> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, ty, None)?;
    sock.set_freebind_v4(true)?;
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    Ok(sock)
}

/// Serves DNS on `listen`:53 (UDP and TCP) until `stop` turns true.
pub async fn serve(
    listen: Ipv4Addr,
    port: u16,
    lookup: Arc<dyn Lookup>,
    upstreams: Vec<SocketAddr>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let addr = SocketAddr::from((listen, port));
    let udp = Arc::new(UdpSocket::from_std(
        freebind_socket(addr, socket2::Type::DGRAM)?.into(),
    )?);
    let tcp_sock = freebind_socket(addr, socket2::Type::STREAM)?;
    tcp_sock.listen(128)?;
    let tcp = TcpListener::from_std(tcp_sock.into())?;
    let upstreams: Arc<[SocketAddr]> = upstreams.into();
    tracing::info!(%addr, "cluster DNS listening");
    let mut buf = vec![0u8; 65535];
    loop {
        tokio::select! {
            r = udp.recv_from(&mut buf) => {
                let Ok((n, peer)) = r else { continue };
                let query = buf[..n].to_vec();
                let (udp, lookup, upstreams) = (udp.clone(), lookup.clone(), upstreams.clone());
                tokio::spawn(async move {
                    if let Some(reply) = respond(&query, lookup.as_ref(), &upstreams, UDP_PLAIN).await {
                        let _ = udp.send_to(&reply, peer).await;
                    }
                });
            }
            r = tcp.accept() => {
                let Ok((conn, _)) = r else { continue };
                let (lookup, upstreams) = (lookup.clone(), upstreams.clone());
                tokio::spawn(async move {
                    let _ = serve_tcp(conn, lookup.as_ref(), &upstreams).await;
                });
            }
            _ = stop.changed() => {
                if *stop.borrow() {
                    return Ok(());
                }
            }
        }
    }
}

/// Length-prefixed queries on one connection until the client closes or idles for 10 s.
async fn serve_tcp(
    mut conn: tokio::net::TcpStream,
    lookup: &dyn Lookup,
    upstreams: &[SocketAddr],
) -> std::io::Result<()> {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(Duration::from_secs(10), conn.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
        conn.read_exact(&mut query).await?;
        let Some(reply) = respond(&query, lookup, upstreams, usize::from(u16::MAX)).await else {
            return Ok(());
        };
        let Ok(n) = u16::try_from(reply.len()) else {
            return Ok(());
        };
        conn.write_all(&n.to_be_bytes()).await?;
        conn.write_all(&reply).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use simple_dns::Question;

    struct Fake;
    impl Lookup for Fake {
        fn ready(&self) -> bool {
            true
        }
        fn service(&self, ns: &str, name: &str) -> Option<ServiceRecord> {
            match (ns, name) {
                ("default", "web") => Some(ServiceRecord {
                    cluster_ip: Some(Ipv4Addr::new(10, 43, 0, 7)),
                    ports: vec![("http".into(), "TCP".into(), 80)],
                }),
                ("db", "pg") => Some(ServiceRecord {
                    cluster_ip: None,
                    ports: vec![("sql".into(), "TCP".into(), 5432)],
                }),
                _ => None,
            }
        }
        fn endpoints(&self, ns: &str, name: &str) -> Vec<Ipv4Addr> {
            if (ns, name) == ("db", "pg") {
                (1..=200).map(|i| Ipv4Addr::new(100, 64, 1, i)).collect()
            } else {
                Vec::new()
            }
        }
        fn hostname(&self, ns: &str, svc: &str, host: &str) -> Vec<Ipv4Addr> {
            if (ns, svc, host) == ("db", "pg", "pg-1") {
                vec![Ipv4Addr::new(100, 64, 1, 2)]
            } else {
                Vec::new()
            }
        }
    }

    #[test]
    fn stable_pod_names_under_headless_services() {
        let (rc, a, _) = reply("pg-1.pg.db.svc.cluster.local", TYPE::A, 512);
        assert_eq!((rc, a), (RCODE::NoError, vec!["100.64.1.2".to_string()]));
        // Unknown hostnames, and any hostname under a ClusterIP Service, do not exist.
        for missing in [
            "pg-7.pg.db.svc.cluster.local",
            "pg-1.web.default.svc.cluster.local",
        ] {
            assert_eq!(
                reply(missing, TYPE::A, 512).0,
                RCODE::NameError,
                "{missing}"
            );
        }
    }

    fn query(name: &str, t: TYPE) -> Vec<u8> {
        let mut q = Packet::new_query(0x4242);
        q.set_flags(PacketFlag::RECURSION_DESIRED);
        q.questions.push(Question::new(
            Name::new_unchecked(name),
            QTYPE::TYPE(t),
            simple_dns::QCLASS::CLASS(CLASS::IN),
            false,
        ));
        q.build_bytes_vec().expect("query")
    }

    fn reply(name: &str, t: TYPE, max: usize) -> (RCODE, Vec<String>, bool) {
        let Outcome::Reply(bytes) = answer(&query(name, t), &Fake, max) else {
            panic!("no reply for {name}");
        };
        let p = Packet::parse(&bytes).expect("parse reply");
        assert_eq!(p.id(), 0x4242);
        let answers = p
            .answers
            .iter()
            .map(|rr| match &rr.rdata {
                RData::A(a) => Ipv4Addr::from(a.address).to_string(),
                RData::SRV(s) => format!("{} {}", s.port, s.target),
                other => format!("{other:?}"),
            })
            .collect();
        (p.rcode(), answers, p.has_flags(PacketFlag::TRUNCATION))
    }

    #[test]
    fn services_pods_and_nxdomain() {
        let (rc, a, _) = reply("web.default.svc.cluster.local", TYPE::A, 512);
        assert_eq!((rc, a), (RCODE::NoError, vec!["10.43.0.7".to_string()]));
        let (rc, a, _) = reply("WEB.default.svc.cluster.local.", TYPE::A, 512);
        assert_eq!((rc, a.len()), (RCODE::NoError, 1), "case-insensitive");
        let (rc, a, _) = reply("web.default.svc.cluster.local", TYPE::AAAA, 512);
        assert_eq!((rc, a.len()), (RCODE::NoError, 0), "NODATA, not NXDOMAIN");
        let (_, a, _) = reply("web.default.svc.cluster.local", TYPE::SRV, 512);
        assert_eq!(a, vec!["80 web.default.svc.cluster.local".to_string()]);
        let (_, a, _) = reply("_http._tcp.web.default.svc.cluster.local", TYPE::SRV, 512);
        assert_eq!(a, vec!["80 web.default.svc.cluster.local".to_string()]);
        let (rc, _, _) = reply("_nope._tcp.web.default.svc.cluster.local", TYPE::SRV, 512);
        assert_eq!(rc, RCODE::NameError);
        let (_, a, _) = reply("100-64-3-9.default.pod.cluster.local", TYPE::A, 512);
        assert_eq!(a, vec!["100.64.3.9".to_string()]);
        for missing in [
            "nope.default.svc.cluster.local",
            "web.other.svc.cluster.local",
            "a.b.c.d.e.f.cluster.local",
        ] {
            assert_eq!(
                reply(missing, TYPE::A, 512).0,
                RCODE::NameError,
                "{missing}"
            );
        }
        assert_eq!(
            reply("default.svc.cluster.local", TYPE::A, 512).0,
            RCODE::NoError
        );
    }

    #[test]
    fn headless_answers_endpoints_and_truncates_over_udp() {
        let (rc, a, tc) = reply("pg.db.svc.cluster.local", TYPE::A, 512);
        assert_eq!((rc, a.len(), tc), (RCODE::NoError, 0, true));
        let (rc, a, tc) = reply("pg.db.svc.cluster.local", TYPE::A, 65535);
        assert_eq!((rc, a.len(), tc), (RCODE::NoError, 200, false));
    }

    #[test]
    fn other_names_are_forwarded_and_garbage_is_handled() {
        assert_eq!(
            answer(&query("example.com", TYPE::A), &Fake, 512),
            Outcome::Forward
        );
        assert_eq!(answer(&[1], &Fake, 512), Outcome::Drop);
        let Outcome::Reply(b) = answer(&[0xab, 0xcd, 0xff, 0xff, 0xff], &Fake, 512) else {
            panic!("garbage with an id gets FORMERR");
        };
        let p = Packet::parse(&b).expect("formerr parses");
        assert_eq!((p.id(), p.rcode()), (0xabcd, RCODE::FormatError));
    }

    #[test]
    fn upstreams_skip_ourselves() {
        let conf = "search x\nnameserver 100.64.0.1\nnameserver 127.0.0.53\n# nameserver 1.1.1.1\nnameserver ::1\n";
        let got = upstreams(conf, Ipv4Addr::new(100, 64, 0, 1));
        assert_eq!(
            got,
            vec![
                "127.0.0.53:53".parse::<SocketAddr>().expect("addr"),
                "[::1]:53".parse().expect("addr")
            ]
        );
    }

    /// UDP and TCP end to end on loopback, including forwarding to a fake upstream.
    #[tokio::test]
    async fn serves_udp_tcp_and_forwards() {
        let upstream = UdpSocket::bind("127.0.0.1:0").await.expect("bind upstream");
        let up_addr = upstream.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = upstream.recv_from(&mut buf).await {
                // Echo the query back with the response bit: enough to prove the relay.
                let mut r = buf[..n].to_vec();
                r[2] |= 0x80;
                let _ = upstream.send_to(&r, peer).await;
            }
        });
        let port = {
            let probe = std::net::UdpSocket::bind("127.0.0.1:0").expect("probe");
            probe.local_addr().expect("addr").port()
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(serve(
            Ipv4Addr::LOCALHOST,
            port,
            Arc::new(Fake),
            vec![up_addr],
            stop_rx,
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
        let mut buf = [0u8; 4096];
        client
            .send_to(
                &query("web.default.svc.cluster.local", TYPE::A),
                ("127.0.0.1", port),
            )
            .await
            .expect("send");
        let (n, _) = tokio::time::timeout(Duration::from_secs(2), client.recv_from(&mut buf))
            .await
            .expect("udp answer in time")
            .expect("recv");
        let p = Packet::parse(&buf[..n]).expect("parse");
        assert_eq!(p.answers.len(), 1);

        client
            .send_to(&query("example.com", TYPE::A), ("127.0.0.1", port))
            .await
            .expect("send");
        let (n, _) = tokio::time::timeout(Duration::from_secs(3), client.recv_from(&mut buf))
            .await
            .expect("forwarded answer in time")
            .expect("recv");
        let p = Packet::parse(&buf[..n]).expect("parse");
        assert!(p.has_flags(PacketFlag::RESPONSE));
        assert_eq!(p.questions[0].qname.to_string(), "example.com");

        let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("tcp");
        let q = query("pg.db.svc.cluster.local", TYPE::A);
        conn.write_all(&(q.len() as u16).to_be_bytes())
            .await
            .expect("len");
        conn.write_all(&q).await.expect("query");
        let mut len = [0u8; 2];
        conn.read_exact(&mut len).await.expect("len");
        let mut r = vec![0u8; usize::from(u16::from_be_bytes(len))];
        conn.read_exact(&mut r).await.expect("reply");
        let p = Packet::parse(&r).expect("parse");
        assert_eq!(p.answers.len(), 200, "TCP carries the big headless answer");

        stop_tx.send(true).expect("stop");
        server.await.expect("join").expect("serve");
    }
}
