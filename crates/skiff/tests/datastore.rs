//! `skiff datastore …` and the server's snapshot and bootstrap flags (issue 16: backups and
//! joining servers), through the real binary.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::cluster::free_port;

fn skiff(data_dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env_remove("SKIFF_DATA_DIR")
        .env_remove("SKIFF_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run skiff");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(data_dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = skiff(data_dir, args);
    assert_eq!(code, 0, "skiff {args:?} failed:\n{out}\n{err}");
    out
}

/// A `skiff server --no-agent` process, stopped by PID on drop.
struct Server {
    child: Option<Child>,
    data_dir: PathBuf,
    log: PathBuf,
}

impl Server {
    fn start(data_dir: &Path, extra: &[&str]) -> Server {
        std::fs::create_dir_all(data_dir).unwrap();
        let log = data_dir.with_extension("log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(["server", "--no-agent", "--offline"])
            .args(["--listen", &format!("127.0.0.1:{}", free_port())])
            .args(extra)
            .env("SKIFF_LOG", "info")
            // Plain log lines the tests can search.
            .env("NO_COLOR", "1")
            .env_remove("SKIFF_TOKEN")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawn skiff server");
        let mut s = Server {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            log,
        };
        s.wait_for_log("API server ready", Duration::from_secs(60));
        s
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for_log(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(needle) {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("skiff server exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", self.data_dir.join("kubeconfig.yaml"))
            .env("HOME", self.data_dir.join("home"))
            .stdin(Stdio::null())
            .output()
            .expect("kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn stop(&mut self) {
        common::cluster::stop_child(&mut self.child, Duration::from_secs(10));
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn status_prints_a_table_and_json_for_a_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let table = ok(&data, &["datastore", "status"]);
    assert!(table.contains("Backend:"), "{table}");
    assert!(table.contains("sqlite"), "{table}");
    assert!(
        table.contains(&data.join("server/state.db").display().to_string()),
        "{table}"
    );
    assert!(table.contains("Revision:"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&data, &["datastore", "status", "-o", "json"])).unwrap();
    assert_eq!(json["backend"], "sqlite");
    assert!(json["revision"].is_i64(), "{json}");
    assert!(json["members"].as_array().unwrap().is_empty());
    // An unreachable etcd is an error that names it, not a hang.
    let port = free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let (code, _, err) = skiff(
        &data,
        &["datastore", "status", "--datastore-endpoint", &endpoint],
    );
    assert_ne!(code, 0);
    assert!(err.contains(&endpoint), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60));
}

fn touch(path: &Path, age_secs: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(age_secs))
        .unwrap();
}

#[test]
fn snapshot_ls_and_prune_keep_the_newest_of_their_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let snaps = data.join("server/snapshots");
    std::fs::create_dir_all(&snaps).unwrap();
    for (i, age) in [500u64, 400, 300, 200, 100].iter().enumerate() {
        touch(&snaps.join(format!("snapshot-h-{i}.db")), *age);
    }
    touch(&snaps.join("snapshot-h-0.db.part"), 500);
    touch(&snaps.join("manual-h-x.db"), 1000);
    touch(&snaps.join("notes.txt"), 10);

    let ls = ok(&data, &["datastore", "snapshot", "ls"]);
    let names: Vec<&str> = ls
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        names,
        [
            "snapshot-h-4.db",
            "snapshot-h-3.db",
            "snapshot-h-2.db",
            "snapshot-h-1.db",
            "snapshot-h-0.db",
            "manual-h-x.db"
        ],
        "{ls}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&data, &["datastore", "snapshot", "ls", "-o", "json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 6);

    let out = ok(
        &data,
        &["datastore", "snapshot", "prune", "--retention", "2"],
    );
    assert_eq!(out.lines().count(), 3, "{out}");
    let mut left: Vec<String> = std::fs::read_dir(&snaps)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "manual-h-x.db",
            "notes.txt",
            "snapshot-h-3.db",
            "snapshot-h-4.db"
        ]
    );
    // Another directory and name.
    let other = dir.path().join("elsewhere");
    std::fs::create_dir_all(&other).unwrap();
    touch(&other.join("nightly-a.db"), 20);
    touch(&other.join("nightly-b.db"), 10);
    let other_s = other.display().to_string();
    ok(
        &data,
        &[
            "datastore",
            "snapshot",
            "prune",
            "--retention",
            "1",
            "--name",
            "nightly",
            "--dir",
            &other_s,
        ],
    );
    assert!(other.join("nightly-b.db").exists() && !other.join("nightly-a.db").exists());
}

#[test]
fn restore_and_migrate_refuse_while_a_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let fake = dir.path().join("some.db");
    std::fs::write(&fake, b"").unwrap();
    let mut server = Server::start(&data, &["--snapshot-interval", "0"]);
    let fake_s = fake.display().to_string();
    let (code, _, err) = skiff(&data, &["datastore", "snapshot", "restore", &fake_s]);
    assert_ne!(code, 0);
    assert!(
        err.contains("in use by a running `skiff server`: stop the server before restoring"),
        "{err}"
    );
    let (code, _, err) = skiff(&data, &["datastore", "status"]);
    assert_ne!(code, 0);
    assert!(err.contains("in use by a running `skiff server`"), "{err}");
    let (code, _, err) = skiff(
        &data,
        &[
            "datastore",
            "migrate",
            "--datastore-endpoint",
            "http://127.0.0.1:1",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("stop it before migrating"), "{err}");
    // The server shared its material in the datastore at start (first server).
    assert!(server.log().contains("Created"), "{}", server.log());
    server.stop();
    let table = ok(&data, &["datastore", "status"]);
    assert!(table.contains("sqlite"), "{table}");
}

#[test]
fn a_server_refuses_a_token_that_is_not_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &["--snapshot-interval", "0"]);
    server.stop();
    let token = std::fs::read_to_string(data.join("node-token")).unwrap();
    // The same token again is fine (a restart with --token).
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, &token).unwrap();
    let mut again = Server::start(
        &data,
        &[
            "--snapshot-interval",
            "0",
            "--token-file",
            &token_file.display().to_string(),
        ],
    );
    assert!(again.log().contains("Joined"), "{}", again.log());
    again.stop();
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("--data-dir")
        .arg(&data)
        .args(["server", "--no-agent", "--offline", "--token", "another"])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .env_remove("SKIFF_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("differs from the one this data dir already uses"),
        "{err}"
    );
}

#[test]
fn save_wipe_restore_brings_back_the_objects() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let snaps = dir.path().join("snaps");
    let snaps_s = snaps.display().to_string();
    let mut server = Server::start(&data, &["--snapshot-interval", "0"]);
    server.kubectl(&["create", "configmap", "keep-me", "--from-literal=k=v"]);
    let rv = server.kubectl(&[
        "get",
        "configmap",
        "keep-me",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    server.stop();
    let out = ok(&data, &["datastore", "snapshot", "save", "--dir", &snaps_s]);
    assert!(out.contains("saved"), "{out}");
    let list = ok(&data, &["datastore", "snapshot", "ls", "--dir", &snaps_s]);
    let file = list
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    assert!(file.starts_with("snapshot-"), "{list}");

    // Wipe: a new object after the snapshot, and the configmap deleted.
    let mut server = Server::start(&data, &["--snapshot-interval", "0"]);
    server.kubectl(&["delete", "configmap", "keep-me"]);
    server.kubectl(&["create", "configmap", "after", "--from-literal=k=v"]);
    server.stop();
    let path = snaps.join(&file).display().to_string();
    let out = ok(&data, &["datastore", "snapshot", "restore", &path]);
    assert!(out.contains("restored"), "{out}");
    let server = Server::start(&data, &["--snapshot-interval", "0"]);
    let got = server.kubectl(&[
        "get",
        "configmap",
        "keep-me",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    assert_eq!(got, rv);
    let names = server.kubectl(&["get", "configmaps", "-o", "name"]);
    assert!(!names.contains("configmap/after"), "{names}");
}

#[test]
fn scheduled_snapshots_keep_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let snaps = dir.path().join("snaps");
    let mut server = Server::start(
        &data,
        &[
            "--snapshot-interval",
            "1s",
            "--snapshot-retention",
            "2",
            "--snapshot-dir",
            &snaps.display().to_string(),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = server
            .log()
            .matches("scheduled datastore snapshot saved")
            .count();
        if n >= 4 {
            break;
        }
        assert!(Instant::now() < deadline, "{}", server.log());
        std::thread::sleep(Duration::from_millis(200));
    }
    server.stop();
    let files: Vec<_> = std::fs::read_dir(&snaps)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".db"))
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    let lease = {
        let s = Server::start(&data, &["--snapshot-interval", "0"]);
        s.kubectl(&[
            "get",
            "lease",
            "-n",
            "kube-system",
            "skiff-snapshot",
            "-o",
            "json",
        ])
    };
    let lease: serde_json::Value = serde_json::from_str(&lease).unwrap();
    assert!(lease["spec"]["holderIdentity"]
        .as_str()
        .is_some_and(|h| h.contains("127.0.0.1")));
}

fn etcd(name: &str) -> (skiff_store::etcd_testing::EtcdCluster, String) {
    let cluster = skiff_store::etcd_testing::EtcdCluster::start(name, 1).expect("etcd");
    cluster
        .wait_healthy(Duration::from_secs(30))
        .expect("etcd healthy");
    let endpoints = cluster.endpoints().join(",");
    (cluster, endpoints)
}

#[test]
fn two_servers_on_etcd_share_the_ca_and_serve_the_same_objects() {
    let (_etcd, endpoints) = etcd("join-two");
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    let flags = [
        "--datastore-endpoint",
        &endpoints,
        "--snapshot-interval",
        "0",
    ];
    let first = Server::start(&a, &flags);
    // One member: the start-up warning from the store's status.
    assert!(first.log().contains("datastore:"), "{}", first.log());
    let token_file = a.join("node-token").display().to_string();
    let mut with_token = flags.to_vec();
    with_token.extend(["--token-file", &token_file]);
    let second = Server::start(&b, &with_token);
    assert!(second.log().contains("Joined"), "{}", second.log());
    for rel in skiff_apiserver::bootstrap::SHARED_FILES {
        assert_eq!(
            std::fs::read(a.join(rel)).ok(),
            std::fs::read(b.join(rel)).ok(),
            "{rel}"
        );
    }
    first.kubectl(&["create", "configmap", "from-a", "--from-literal=k=v"]);
    // A's admin kubeconfig against B: same CA, same object.
    let kc = std::fs::read_to_string(a.join("kubeconfig.yaml")).unwrap();
    let port_of = |d: &Path| {
        let text = std::fs::read_to_string(d.join("kubeconfig.yaml")).unwrap();
        let line = text
            .lines()
            .find(|l| l.contains("server:"))
            .unwrap()
            .to_string();
        line.trim().trim_start_matches("server:").trim().to_string()
    };
    let kc = kc.replace(&port_of(&a), &port_of(&b));
    let kc_path = dir.path().join("a-to-b.yaml");
    std::fs::write(&kc_path, kc).unwrap();
    let out = Command::new("kubectl")
        .args(["get", "configmap", "from-a", "-o", "jsonpath={.data.k}"])
        .env("KUBECONFIG", &kc_path)
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "v");

    // A wrong token: a clear error, no server.
    std::fs::write(dir.path().join("bad"), "not-the-token").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("--data-dir")
        .arg(&c)
        .args([
            "server",
            "--no-agent",
            "--offline",
            "--datastore-endpoint",
            &endpoints,
        ])
        .args([
            "--token-file",
            &dir.path().join("bad").display().to_string(),
        ])
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .env_remove("SKIFF_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("this server's token is wrong"), "{err}");
    assert!(!c.join("server/tls/ca.key").exists());
}

#[test]
fn migrate_copies_a_sqlite_cluster_into_etcd() {
    let (_etcd, endpoints) = etcd("join-migrate");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &["--snapshot-interval", "0"]);
    server.kubectl(&["create", "configmap", "moved", "--from-literal=k=v"]);
    let ca = std::fs::read(data.join("server/tls/ca.crt")).unwrap();
    server.stop();
    let out = ok(
        &data,
        &["datastore", "migrate", "--datastore-endpoint", &endpoints],
    );
    assert!(out.contains("migrated"), "{out}");
    // A second migration would overwrite a cluster: refused without --force.
    let (code, _, err) = skiff(
        &data,
        &["datastore", "migrate", "--datastore-endpoint", &endpoints],
    );
    assert_ne!(code, 0);
    assert!(err.contains("refusing to overwrite"), "{err}");
    let server = Server::start(
        &data,
        &[
            "--datastore-endpoint",
            &endpoints,
            "--snapshot-interval",
            "0",
        ],
    );
    assert!(server.log().contains("Joined"), "{}", server.log());
    assert_eq!(std::fs::read(data.join("server/tls/ca.crt")).unwrap(), ca);
    let got = server.kubectl(&["get", "configmap", "moved", "-o", "jsonpath={.data.k}"]);
    assert_eq!(got, "v");
}

#[test]
fn rotate_keys_updates_the_shared_copy() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &["--snapshot-interval", "0", "--secrets-encryption"]);
    server.kubectl(&["create", "secret", "generic", "s1", "--from-literal=k=v"]);
    server.stop();
    let out = ok(&data, &["secrets-encrypt", "rotate-keys"]);
    assert!(out.contains("re-encrypted 1 secrets"), "{out}");
    assert!(
        out.contains("the cluster's shared copy now holds the new key"),
        "{out}"
    );
    let status = ok(&data, &["secrets-encrypt", "status"]);
    assert!(status.contains("Enabled"), "{status}");
    // The restarted server finds its own (new) key in the shared copy: nothing to write.
    let server = Server::start(&data, &["--snapshot-interval", "0"]);
    assert!(server.log().contains("written=[]"), "{}", server.log());
    let got = server.kubectl(&["get", "secret", "s1", "-o", "jsonpath={.data.k}"]);
    assert_eq!(got, "dg==");
}

#[test]
fn two_servers_on_etcd_take_one_scheduled_snapshot_per_interval() {
    let (_etcd, endpoints) = etcd("join-sched");
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let (snap_a, snap_b) = (dir.path().join("snap-a"), dir.path().join("snap-b"));
    let flags = |snaps: &Path| -> Vec<String> {
        [
            "--datastore-endpoint",
            &endpoints,
            "--snapshot-interval",
            "2s",
            "--snapshot-retention",
            "100",
            "--snapshot-dir",
            &snaps.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let fa = flags(&snap_a);
    let mut first = Server::start(&a, &fa.iter().map(String::as_str).collect::<Vec<_>>());
    // Half an interval later: the worst offset for a naive lease.
    std::thread::sleep(Duration::from_millis(1000));
    let mut fb = flags(&snap_b);
    let token = a.join("node-token").display().to_string();
    fb.extend(["--token-file".to_string(), token]);
    let mut second = Server::start(&b, &fb.iter().map(String::as_str).collect::<Vec<_>>());
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(12));
    let count = |l: &str| l.matches("scheduled datastore snapshot saved").count();
    let (na, nb) = (count(&first.log()), count(&second.log()));
    first.stop();
    second.stop();
    let elapsed = started.elapsed().as_secs() + 1;
    let intervals = elapsed / 2 + 1;
    assert!(na + nb >= 3, "{na} + {nb} snapshots in {elapsed}s");
    assert!(
        (na + nb) as u64 <= intervals + 1,
        "{na} + {nb} snapshots in {elapsed}s: more than one per 2 s interval"
    );
    // etcd also writes its native snapshot next to each (`<file>.etcd`).
    let files = |d: &Path| {
        std::fs::read_dir(d).map_or(0, |r| {
            r.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".db"))
                .count()
        })
    };
    assert_eq!(files(&snap_a) + files(&snap_b), na + nb);
}
