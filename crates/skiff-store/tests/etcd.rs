//! The etcd backend against real etcd clusters (Debian's etcd-server on loopback ports): quorum
//! loss and recovery, client TLS, the watch cache, status warnings, snapshots, the space quota.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_store::etcd_testing::{free_port, EtcdCluster, TlsFiles};
use skiff_store::{
    CacheOptions, CachedStore, EtcdOptions, EtcdStore, EtcdTuning, Event, EventKind, ListOptions,
    Store, StoreError, Watch,
};

fn v(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

async fn cluster(name: &str, size: usize) -> EtcdCluster {
    let name = name.to_string();
    tokio::task::spawn_blocking(move || EtcdCluster::start(&name, size))
        .await
        .unwrap()
        .expect("start etcd")
}

fn options(c: &EtcdCluster) -> EtcdOptions {
    EtcdOptions {
        endpoints: c.endpoints(),
        ..Default::default()
    }
}

async fn next(w: &mut Watch) -> Event {
    tokio::time::timeout(Duration::from_secs(20), w.events.recv())
        .await
        .expect("watch event in time")
        .expect("watch still open")
        .expect("watch event ok")
}

async fn quiet(w: &mut Watch) {
    if let Ok(ev) = tokio::time::timeout(Duration::from_millis(300), w.events.recv()).await {
        panic!("unexpected watch item: {ev:?}");
    }
}

/// `etcd_debugging_mvcc_watcher_total` from a member's /metrics (plain HTTP, test only).
fn etcd_watchers(client_port: u16) -> i64 {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", client_port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watcher_total "))
        .and_then(|n| n.trim().parse::<f64>().ok())
        .map(|n| n as i64)
        .expect("watcher metric")
}

/// Stop one of three members: writes go on; stop a second: a write fails with Unavailable within
/// the request timeout; restart one: writes resume. The cached watch sees every acknowledged
/// write exactly once, in order, across all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quorum_loss_makes_writes_unavailable_then_they_resume() {
    let mut c = cluster("quorum", 3).await;
    let timeout = Duration::from_secs(3);
    let inner = EtcdStore::connect_with(
        options(&c),
        EtcdTuning {
            request_timeout: timeout,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let s = CachedStore::start(Arc::new(inner), CacheOptions::default())
        .await
        .unwrap();
    let status = s.status().await.unwrap();
    assert_eq!(status.members.len(), 3);
    assert!(status.members.iter().all(|m| m.healthy), "{status:?}");
    assert_eq!(status.members.iter().filter(|m| m.is_leader).count(), 1);
    assert!(status.warnings.is_empty(), "{:?}", status.warnings);

    let mut w = s.watch("/q/", 0).await.unwrap();
    let mut acked = Vec::new();
    for i in 0..10 {
        acked.push(s.create(&format!("/q/a{i}"), v("x")).await.unwrap());
    }

    // Stop the leader (the harder case): writes pause for the election, then go on.
    let leader = status
        .members
        .iter()
        .find(|m| m.is_leader)
        .map(|m| m.name.clone())
        .unwrap();
    let leader = c.members.iter().position(|m| m.name == leader).unwrap();
    c.stop(leader, true);
    let t = Instant::now();
    let first = loop {
        match s.create("/q/b", v("x")).await {
            Ok(kv) => break kv,
            Err(StoreError::Unavailable(_)) if t.elapsed() < Duration::from_secs(20) => {}
            Err(StoreError::AlreadyExists(_)) => break s.get("/q/b").await.unwrap().unwrap(),
            Err(e) => panic!("{e}"),
        }
    };
    println!(
        "leader stopped: first write acknowledged after {:?}",
        t.elapsed()
    );
    acked.push(first);
    let t = Instant::now();
    for i in 0..30 {
        acked.push(
            s.create(&format!("/q/b{i}"), v("x"))
                .await
                .expect("writes go on with one member of three down"),
        );
    }
    println!(
        "one member down: 30 writes in {:?}, none failed",
        t.elapsed()
    );
    let down = c.members[leader].name.clone();
    let status = s.status().await.unwrap();
    assert!(
        status
            .warnings
            .iter()
            .any(|w| w.contains(&down) && w.contains("unhealthy")),
        "{:?}",
        status.warnings
    );

    let second = (0..3).find(|&i| i != leader).unwrap();
    c.stop(second, true);
    let t = Instant::now();
    match s.create("/q/c", v("x")).await {
        Err(StoreError::Unavailable(msg)) => {
            println!(
                "two members down: write failed after {:?}: {msg}",
                t.elapsed()
            );
            assert!(t.elapsed() < timeout + Duration::from_secs(2));
        }
        r => panic!("want Unavailable, got {r:?}"),
    }
    // Reads that need a quorum fail the same way instead of hanging.
    assert!(matches!(
        s.get("/q/a0").await,
        Err(StoreError::Unavailable(_))
    ));

    c.restart(second).unwrap();
    let t = Instant::now();
    let resumed = loop {
        match s.create("/q/d", v("x")).await {
            Ok(kv) => break kv,
            Err(StoreError::Unavailable(_)) if t.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            // A write whose answer was lost may have landed.
            Err(StoreError::AlreadyExists(_)) => break s.get("/q/d").await.unwrap().unwrap(),
            Err(e) => panic!("writes did not resume: {e}"),
        }
    };
    println!("member restarted: writes resumed after {:?}", t.elapsed());
    acked.push(resumed);

    let mut got = Vec::new();
    while got.len() < acked.len() {
        let e = next(&mut w).await;
        if e.kv.key != "/q/c" {
            got.push(e.kv);
        }
    }
    assert_eq!(got, acked);
    quiet(&mut w).await;
}

/// rcgen CA, a member certificate for 127.0.0.1 and a client certificate, as PEM files.
fn tls_files(dir: &Path) -> (TlsFiles, TlsFiles) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let server = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    let client_key = rcgen::KeyPair::generate().unwrap();
    let mut client_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "skiff");
    let client = client_params.signed_by(&client_key, &issuer).unwrap();
    let w = |name: &str, pem: String| {
        let p = dir.join(name);
        std::fs::write(&p, pem).unwrap();
        p
    };
    let ca = w("ca.pem", ca_cert.pem());
    (
        TlsFiles {
            ca: ca.clone(),
            cert: w("server.pem", server.pem()),
            key: w("server-key.pem", server_key.serialize_pem()),
        },
        TlsFiles {
            ca,
            cert: w("client.pem", client.pem()),
            key: w("client-key.pem", client_key.serialize_pem()),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_tls_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let (server, client) = tls_files(dir.path());
    let c = tokio::task::spawn_blocking(move || EtcdCluster::start_tls("tls", 1, server))
        .await
        .unwrap()
        .expect("start etcd with TLS");
    assert!(c.endpoints()[0].starts_with("https://"));
    let opts = EtcdOptions {
        endpoints: c.endpoints(),
        ca_file: Some(client.ca.clone()),
        cert_file: Some(client.cert.clone()),
        key_file: Some(client.key.clone()),
    };
    let s = skiff_store::etcd::connect(opts.clone()).await.unwrap();
    let mut w = s.watch("/tls/", 0).await.unwrap();
    let a = s.create("/tls/a", v("1")).await.unwrap();
    assert_eq!(s.get("/tls/a").await.unwrap(), Some(a.clone()));
    assert_eq!(next(&mut w).await.kv, a);

    // Without a client certificate the member refuses us: a clear error at connect.
    let no_cert = EtcdOptions {
        cert_file: None,
        key_file: None,
        ..opts.clone()
    };
    let t = Instant::now();
    match EtcdStore::connect(no_cert).await {
        Err(e) => {
            println!("no client certificate: {e} (after {:?})", t.elapsed());
            // TLS 1.3: the member's alert can come after the client finished its handshake,
            // so the text varies (BadCertificate, or the connection closed); it is unavailable.
            assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
        }
        Ok(_) => panic!("connected without a client certificate"),
    }
    // Plain HTTP to a TLS member is refused at once too.
    let plain = EtcdOptions {
        endpoints: vec![c.endpoints()[0].replace("https://", "http://")],
        ..opts
    };
    assert!(EtcdStore::connect(plain).await.is_err());
}

#[tokio::test]
async fn unreachable_endpoint_is_unavailable() {
    let port = free_port().unwrap();
    let t = Instant::now();
    let r = EtcdStore::connect_with(
        EtcdOptions {
            endpoints: vec![format!("http://127.0.0.1:{port}")],
            ..Default::default()
        },
        EtcdTuning {
            request_timeout: Duration::from_secs(2),
            ..Default::default()
        },
    )
    .await;
    match r {
        Err(StoreError::Unavailable(msg)) => {
            println!("unreachable: {msg} after {:?}", t.elapsed());
            assert!(msg.contains(&port.to_string()), "{msg}");
            assert!(t.elapsed() < Duration::from_secs(5));
        }
        Err(e) => panic!("want Unavailable, got {e}"),
        Ok(_) => panic!("connected to nothing"),
    }
}

/// 100 watchers on different prefixes are one etcd watch; each gets exactly its events.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_watchers_share_one_etcd_watch() {
    let c = cluster("fanout", 1).await;
    let inner = EtcdStore::connect(options(&c)).await.unwrap();
    let s = CachedStore::start(Arc::new(inner), CacheOptions::default())
        .await
        .unwrap();
    const WATCHERS: usize = 100;
    let mut watches = Vec::new();
    for i in 0..WATCHERS {
        watches.push(s.watch(&format!("/w/{}/", i % 10), 0).await.unwrap());
    }
    let mut written = Vec::new();
    for i in 0..50 {
        written.push(
            s.create(&format!("/w/{}/{i}", i % 10), v("x"))
                .await
                .unwrap(),
        );
    }
    for (i, w) in watches.iter_mut().enumerate() {
        let want: Vec<_> = written
            .iter()
            .filter(|kv| kv.key.starts_with(&format!("/w/{}/", i % 10)))
            .cloned()
            .collect();
        for kv in want {
            assert_eq!(next(w).await.kv, kv);
        }
    }
    let stats = s.stats();
    assert_eq!(stats.watchers, WATCHERS);
    assert_eq!(s.inner().active_watches(), 1);
    let in_etcd = etcd_watchers(c.members[0].client_port);
    println!(
        "{WATCHERS} watchers: {} etcd watch(es) held by the store, etcd reports {in_etcd} watcher(s); ring {} events / {} bytes",
        s.inner().active_watches(),
        stats.events,
        stats.bytes
    );
    assert_eq!(in_etcd, 1);
    drop(watches);
    // Watchers notice their receiver is gone at the next event.
    s.create("/w/0/last", v("x")).await.unwrap();
    for _ in 0..50 {
        if s.stats().watchers == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.stats().watchers, 0);
}

/// A watch from an old revision still in the ring replays exactly what etcd itself replays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn old_revision_inside_the_ring_replays_exactly() {
    let c = cluster("replay", 1).await;
    let inner = Arc::new(EtcdStore::connect(options(&c)).await.unwrap());
    let s = CachedStore::start(inner.clone(), CacheOptions::default())
        .await
        .unwrap();
    let base = s.current_revision().await.unwrap();
    let mut kv = s.create("/r/a", v("0")).await.unwrap();
    for i in 1..40 {
        if i % 7 == 0 {
            s.delete("/r/a", None).await.unwrap();
            kv = s.create("/r/a", v(&i.to_string())).await.unwrap();
        } else {
            kv = s
                .update("/r/a", v(&i.to_string()), kv.mod_revision)
                .await
                .unwrap();
        }
        s.create(&format!("/r/b{i}"), v("b")).await.unwrap();
    }
    let last = s.current_revision().await.unwrap();
    // Let the pump take everything in.
    for _ in 0..100 {
        if s.stats().latest_revision >= last {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let from = base + 13;
    let mut cached = s.watch("/r/", from).await.unwrap();
    let mut direct = inner.watch("/r/", from).await.unwrap();
    assert_eq!(s.stats().watchers, 1, "served from the ring");
    let mut n = 0;
    for rev in from + 1..=last {
        let (a, b) = (next(&mut cached).await, next(&mut direct).await);
        assert_eq!(a.kv.mod_revision, rev);
        assert_eq!((&a.kind, &a.kv, &a.prev), (&b.kind, &b.kv, &b.prev));
        if a.kind == EventKind::Delete {
            assert!(!a.kv.value.is_empty(), "a delete carries the last value");
            assert!(a.prev.is_some());
        }
        n += 1;
    }
    quiet(&mut cached).await;
    println!("replayed {n} events from the ring, identical to etcd's own replay");
}

/// A watcher that never reads is dropped once the ring moves past it; others are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_cached_watcher_is_dropped() {
    let c = cluster("slow", 1).await;
    let inner = EtcdStore::connect(options(&c)).await.unwrap();
    let s = CachedStore::start(
        Arc::new(inner),
        CacheOptions {
            max_events: 32,
            watch_buffer: 4,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut slow = s.watch("/", 0).await.unwrap();
    let mut fast = s.watch("/", 0).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut revs = Vec::new();
        while revs.len() < 200 {
            revs.push(next(&mut fast).await.kv.mod_revision);
        }
        revs
    });
    for i in 0..200 {
        s.create(&format!("/k{i}"), v("x")).await.unwrap();
    }
    let revs = reader.await.unwrap();
    assert!(revs.windows(2).all(|w| w[1] == w[0] + 1));
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.events.recv()).await {
            Ok(Some(ev)) => got.push(ev.unwrap().kv.mod_revision),
            Ok(None) => break,
            Err(_) => panic!("slow watcher was not closed"),
        }
    }
    assert!(got.len() < 200, "slow watcher got {} events", got.len());
    assert!(got.windows(2).all(|w| w[1] == w[0] + 1));
}

/// The member restarts under the cache: the pump re-watches and watchers see no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cache_rewatches_after_the_member_restarts() {
    let mut c = cluster("restart", 1).await;
    let inner = EtcdStore::connect(options(&c)).await.unwrap();
    let s = CachedStore::start(Arc::new(inner), CacheOptions::default())
        .await
        .unwrap();
    let mut w = s.watch("/x/", 0).await.unwrap();
    let mut acked = Vec::new();
    for i in 0..5 {
        acked.push(s.create(&format!("/x/a{i}"), v("1")).await.unwrap());
    }
    c.stop(0, true);
    c.restart(0).unwrap();
    let t = Instant::now();
    for i in 0..5 {
        loop {
            match s.create(&format!("/x/b{i}"), v("2")).await {
                Ok(kv) => {
                    acked.push(kv);
                    break;
                }
                Err(StoreError::Unavailable(_)) if t.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    for kv in &acked {
        assert_eq!(&next(&mut w).await.kv, kv);
    }
    quiet(&mut w).await;
    assert!(s.stats().inner_watches_started >= 2, "{:?}", s.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_warns_about_one_or_an_even_number_of_members() {
    let one = cluster("one", 1).await;
    let s = skiff_store::etcd::connect(options(&one)).await.unwrap();
    s.create("/a", v("1")).await.unwrap();
    let st = s.status().await.unwrap();
    assert_eq!(st.backend, "etcd");
    assert_eq!(st.members.len(), 1);
    assert!(st.members[0].healthy && st.members[0].is_leader);
    assert!(st.db_size_bytes > 0 && st.db_size_in_use_bytes > 0);
    assert_eq!(st.keys, Some(1));
    assert_eq!(st.revision, s.current_revision().await.unwrap());
    assert!(st.commit_latency.count >= 1);
    assert!(
        st.warnings.iter().any(|w| w.contains("no fault tolerance")),
        "{:?}",
        st.warnings
    );
    drop(one);

    let two = cluster("two", 2).await;
    let s = skiff_store::etcd::connect(options(&two)).await.unwrap();
    let st = s.status().await.unwrap();
    assert_eq!(st.members.len(), 2);
    assert!(
        st.warnings
            .iter()
            .any(|w| w.contains("even member count tolerates no more failures than one fewer")),
        "{:?}",
        st.warnings
    );
}

/// The native snapshot next to skiff's is a real etcd snapshot: `etcdctl snapshot restore`
/// makes a data dir an etcd serves our keys from.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn native_snapshot_restores_with_etcdctl() {
    let c = cluster("native", 1).await;
    let s = EtcdStore::connect(options(&c)).await.unwrap();
    for i in 0..20 {
        s.create(&format!("/n/{i:02}"), v(&format!("value-{i}")))
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("snap.db");
    let size = s.native_snapshot(&dest).await.unwrap();
    assert_eq!(std::fs::metadata(&dest).unwrap().len(), size);
    let data = dir.path().join("restored");
    let (port, peer) = (free_port().unwrap(), free_port().unwrap());
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("snapshot")
        .arg("restore")
        .arg(&dest)
        .arg("--data-dir")
        .arg(&data)
        .arg("--name")
        .arg("r")
        .arg("--initial-cluster")
        .arg(format!("r=http://127.0.0.1:{peer}"))
        .arg("--initial-advertise-peer-urls")
        .arg(format!("http://127.0.0.1:{peer}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut etcd = std::process::Command::new("etcd")
        .arg("--name")
        .arg("r")
        .arg("--data-dir")
        .arg(&data)
        .arg("--listen-client-urls")
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("--advertise-client-urls")
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("--listen-peer-urls")
        .arg(format!("http://127.0.0.1:{peer}"))
        .arg("--initial-advertise-peer-urls")
        .arg(format!("http://127.0.0.1:{peer}"))
        .arg("--initial-cluster")
        .arg(format!("r=http://127.0.0.1:{peer}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let restored = async {
        let t = Instant::now();
        loop {
            let opts = EtcdOptions {
                endpoints: vec![format!("http://127.0.0.1:{port}")],
                ..Default::default()
            };
            match EtcdStore::connect(opts).await {
                Ok(r) => return r.list("/n/", &ListOptions::default()).await,
                Err(e) if t.elapsed() > Duration::from_secs(20) => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    .await;
    let _ = etcd.kill();
    let _ = etcd.wait();
    let restored = restored.unwrap();
    let original = s.list("/n/", &ListOptions::default()).await.unwrap();
    assert_eq!(restored.items.len(), 20);
    assert_eq!(restored.items, original.items);
}

/// skiff's snapshot format round trip: snapshot, change everything, restore: the same keys and
/// values come back (with new, higher revisions) and watchers see the changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshot_then_restore_brings_back_every_key() {
    let c = cluster("roundtrip", 1).await;
    let s = skiff_store::etcd::connect(options(&c)).await.unwrap();
    for i in 0..300 {
        // Some values big enough that restore must split transactions by size too.
        let size = if i % 50 == 0 { 600 * 1024 } else { 100 };
        s.create(
            &format!("/registry/x/{i:03}"),
            vec![b'a' + (i % 26) as u8; size],
        )
        .await
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("snap.db");
    let info = s.snapshot(&dest).await.unwrap();
    assert_eq!(info.keys, 300);
    assert!(std::fs::metadata(dir.path().join("snap.db.etcd")).is_ok());
    let before = s.list("/", &ListOptions::default()).await.unwrap();
    assert_eq!(info.revision, before.revision);

    for i in 0..100 {
        s.delete(&format!("/registry/x/{i:03}"), None)
            .await
            .unwrap();
    }
    s.create("/registry/x/new", v("not in the snapshot"))
        .await
        .unwrap();
    let mut w = s.watch("/registry/", 0).await.unwrap();
    let restored = s.restore(&dest).await.unwrap();
    assert_eq!(restored.keys, 300);
    let after = s.list("/", &ListOptions::default()).await.unwrap();
    let strip = |l: &skiff_store::ListResult| {
        l.items
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&after), strip(&before));
    assert!(after.revision > before.revision);
    // The deleted extra key and every restored key show up as events.
    let mut deleted_new = false;
    for _ in 0..301 {
        let e = next(&mut w).await;
        if e.kv.key == "/registry/x/new" {
            assert_eq!(e.kind, EventKind::Delete);
            deleted_new = true;
        }
    }
    assert!(deleted_new);
}

/// etcd's space quota: writes fail with SpaceExceeded (the 507 the apiserver maps), reads and
/// deletes still work, and status shows the NOSPACE alarm.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nospace_alarm_is_space_exceeded() {
    let c = tokio::task::spawn_blocking(|| {
        EtcdCluster::start_with("quota", 1, None, &["--quota-backend-bytes=4194304"])
    })
    .await
    .unwrap()
    .expect("start etcd");
    let s = skiff_store::etcd::connect(options(&c)).await.unwrap();
    let big = vec![b'q'; 1024 * 1024];
    let mut err = None;
    for i in 0..20 {
        match s.create(&format!("/big/{i}"), big.clone()).await {
            Ok(_) => {}
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    match err {
        Some(StoreError::SpaceExceeded(msg)) => {
            assert!(msg.contains("database space exceeded"), "{msg}")
        }
        other => panic!("want SpaceExceeded, got {other:?}"),
    }
    assert!(s.get("/big/0").await.unwrap().is_some());
    s.delete("/big/0", None).await.unwrap();
    let st = s.status().await.unwrap();
    assert!(
        st.alarms.iter().any(|a| a.starts_with("NOSPACE")),
        "{:?}",
        st.alarms
    );
    assert!(
        st.warnings.iter().any(|w| w.contains("NOSPACE")),
        "{:?}",
        st.warnings
    );
}

/// When a write through the cache returns, the pump already holds it: watchers of this server
/// (and caches built on them) can see it before the caller's next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_returned_write_is_already_in_the_cache() {
    let c = cluster("visible", 1).await;
    let inner = EtcdStore::connect(options(&c)).await.unwrap();
    let s = CachedStore::start(Arc::new(inner), CacheOptions::default())
        .await
        .unwrap();
    let mut kv = s.create("/v/a", v("0")).await.unwrap();
    assert!(s.stats().latest_revision >= kv.mod_revision);
    for i in 1..50 {
        kv = s
            .update("/v/a", v(&i.to_string()), kv.mod_revision)
            .await
            .unwrap();
        assert!(s.stats().latest_revision >= kv.mod_revision);
    }
    let d = s.delete("/v/a", None).await.unwrap();
    assert!(s.stats().latest_revision >= d.mod_revision);
}

/// Not a benchmark (the machine is shared): a rough number for the docs, concurrent creates
/// through the server's store on a one-member cluster, and the commit latency histogram.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_rate_and_latency() {
    let c = cluster("rate", 1).await;
    let s = skiff_store::etcd::connect(options(&c)).await.unwrap();
    const TASKS: usize = 16;
    const EACH: usize = 100;
    let t = Instant::now();
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..EACH {
                s.create(&format!("/rate/{task}/{i}"), vec![b'x'; 1000])
                    .await
                    .unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    let st = s.status().await.unwrap();
    let h = &st.commit_latency;
    let mut cumulative = 0;
    let p99 = h
        .bounds
        .iter()
        .zip(&h.counts)
        .find(|(_, n)| {
            cumulative += **n;
            cumulative as f64 >= h.count as f64 * 0.99
        })
        .map_or(f64::INFINITY, |(b, _)| *b);
    println!(
        "{} creates by {TASKS} tasks in {secs:.2}s = {:.0}/s; commit round trips: mean {:.1} ms, p99 <= {:.0} ms",
        TASKS * EACH,
        (TASKS * EACH) as f64 / secs,
        h.sum_seconds / h.count as f64 * 1000.0,
        p99 * 1000.0
    );
    assert_eq!(
        s.list("/rate/", &ListOptions::default())
            .await
            .unwrap()
            .items
            .len(),
        TASKS * EACH
    );
}

/// A value exactly at the limit fits SQLite but not etcd's request (which also carries the
/// transaction): it must still be TooLarge (413), not a storage error (500).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn value_at_the_limit_is_too_large_not_a_backend_error() {
    let c = cluster("limit", 1).await;
    let s = skiff_store::etcd::connect(options(&c)).await.unwrap();
    let key = "/limit/a";
    let value = vec![b'z'; skiff_store::DEFAULT_MAX_VALUE_BYTES - key.len()];
    match s.create(key, value).await {
        Ok(_) => println!("a value at the limit fit"),
        Err(e @ StoreError::TooLarge { .. }) => println!("at the limit: {e}"),
        Err(e) => panic!("want success or TooLarge, got {e}"),
    }
}

/// A key skiff cannot have written (not UTF-8) is skipped by lists and watches, not an error
/// that would break every list of `/` and make the watch cache re-watch forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn foreign_non_utf8_keys_are_skipped() {
    use std::os::unix::ffi::OsStrExt;
    let c = cluster("foreign", 1).await;
    let s = skiff_store::etcd::connect(options(&c)).await.unwrap();
    let mut w = s.watch("/", 0).await.unwrap();
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(c.endpoints()[0].clone())
        .arg("put")
        .arg(std::ffi::OsStr::from_bytes(b"/foreign/\xff\xfe"))
        .arg("v")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = s.create("/ok", v("1")).await.unwrap();
    assert_eq!(next(&mut w).await.kv, ok);
    let all = s.list("/", &ListOptions::default()).await.unwrap();
    assert_eq!(all.items, vec![ok]);
}
