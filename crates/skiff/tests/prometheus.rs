//! A real Prometheus (Debian's `prometheus` package) scrapes a real `skiff server`: the API
//! server's `/metrics` over HTTPS with a client certificate that only has `system:monitoring`
//! (from `skiff kubeconfig --group system:monitoring`), and the node agent's `/metrics` and
//! `/metrics/cadvisor` with the node token, while a Deployment runs. Prometheus's own query API
//! then shows the series; a user without the role gets 403.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::cluster::{build_web_images_into, free_port, Cluster};

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// Prometheus, stopped by PID when dropped.
struct Prometheus {
    child: Child,
    port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a PromQL query for a URL.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET /api/v1/query?query=q` on Prometheus: the JSON `data.result` array.
fn query(p: &Prometheus, q: &str) -> Vec<serde_json::Value> {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", p.port)) else {
        return Vec::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!(
        "GET /api/v1/query?query={} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
        encode(q)
    );
    if s.write_all(req.as_bytes()).is_err() {
        return Vec::new();
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

/// Polls `q` until it has a result for which `ok` holds.
fn eventually(
    p: &Prometheus,
    q: &str,
    ok: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = query(p, q);
        if !r.is_empty() && ok(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "{q}: {r:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The value of a result as f64.
fn value(r: &serde_json::Value) -> f64 {
    r["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Writes the client certificate, key and CA of `kubeconfig` beside it; returns their paths.
fn tls_files(kubeconfig: &Path) -> (String, String, String) {
    let text = std::fs::read_to_string(kubeconfig).expect("kubeconfig");
    let dir = kubeconfig.parent().expect("dir");
    let mut out = Vec::new();
    for (field, file) in [
        ("client-certificate-data: ", "prom.crt"),
        ("client-key-data: ", "prom.key"),
        ("certificate-authority-data: ", "prom-ca.crt"),
    ] {
        let b64 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix(field))
            .unwrap_or_else(|| panic!("{field} in {text}"));
        let pem = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .expect("base64");
        let path = dir.join(file);
        std::fs::write(&path, pem).expect("write");
        out.push(path.to_string_lossy().into_owned());
    }
    (out[0].clone(), out[1].clone(), out[2].clone())
}

#[test]
fn prometheus_scrapes_the_api_server_and_the_agent() {
    assert!(
        Path::new(PROMETHEUS).exists(),
        "{PROMETHEUS} missing: apt-get install prometheus (.ci/run installs it)"
    );
    let agent_port = free_port();
    // A /24 no other test file uses (they take 2-75 and 224-255).
    let cidr = format!("100.64.{}.0/24", 150 + std::process::id() % 10);
    let c = Cluster::start_with(cidr, &["--agent-port", &agent_port.to_string()]);
    build_web_images_into(&c.data_dir(), &c.dir.path().join("web"), &["v1"]);
    c.ok(&["create", "deployment", "web", "--image=web:v1"]);

    // A monitoring identity: a client certificate in group system:monitoring.
    let kc = c.dir.path().join("prom.kubeconfig");
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("--data-dir")
        .arg(c.data_dir())
        .args([
            "kubeconfig",
            "--user",
            "prometheus",
            "--group",
            "system:monitoring",
        ])
        .arg("--out")
        .arg(&kc)
        .output()
        .expect("skiff kubeconfig");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (cert, key, ca) = tls_files(&kc);
    // The same identity may read /metrics but nothing else; a user without the role gets 403.
    let kcs = kc.to_string_lossy().into_owned();
    let (code, body, err) = c.kubectl(&["--kubeconfig", &kcs, "get", "--raw", "/metrics"]);
    assert_eq!(code, 0, "{err}");
    assert!(body.contains("apiserver_request_total{"), "{body}");
    let (code, _, err) = c.kubectl(&["--kubeconfig", &kcs, "get", "pods"]);
    assert_ne!(code, 0);
    assert!(err.contains("Forbidden"), "{err}");
    let other = c.dir.path().join("other.kubeconfig");
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("--data-dir")
        .arg(c.data_dir())
        .args(["kubeconfig", "--user", "nosy"])
        .arg("--out")
        .arg(&other)
        .output()
        .expect("skiff kubeconfig");
    assert!(out.status.success());
    let (code, _, err) = c.kubectl(&[
        "--kubeconfig",
        &other.to_string_lossy(),
        "get",
        "--raw",
        "/metrics",
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("Forbidden") && err.contains("/metrics"),
        "{err}"
    );

    let node_token = c.data_dir().join("node-token");
    let cluster_ca = c.data_dir().join("server/tls/ca.crt");
    let port = free_port();
    let config = format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: skiff-apiserver
    scheme: https
    tls_config:
      ca_file: {ca}
      cert_file: {cert}
      key_file: {key}
    static_configs:
      - targets: ['127.0.0.1:{api}']
  - job_name: skiff-agent
    scheme: https
    authorization:
      credentials_file: {token}
    tls_config:
      ca_file: {cluster_ca}
    static_configs:
      - targets: ['127.0.0.1:{agent}']
  - job_name: skiff-cadvisor
    scheme: https
    metrics_path: /metrics/cadvisor
    authorization:
      credentials_file: {token}
    tls_config:
      ca_file: {cluster_ca}
    static_configs:
      - targets: ['127.0.0.1:{agent}']
"#,
        api = c.port,
        agent = agent_port,
        token = node_token.display(),
        cluster_ca = cluster_ca.display(),
    );
    let cfg_path = c.dir.path().join("prometheus.yml");
    std::fs::write(&cfg_path, config).expect("prometheus.yml");
    let log = std::fs::File::create(c.dir.path().join("prometheus.log")).expect("log");
    let child = Command::new(PROMETHEUS)
        .arg(format!("--config.file={}", cfg_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            c.dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    let p = Prometheus { child, port };

    let prom_log =
        || std::fs::read_to_string(c.dir.path().join("prometheus.log")).unwrap_or_default();
    for job in ["skiff-apiserver", "skiff-agent", "skiff-cadvisor"] {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = query(&p, &format!("up{{job=\"{job}\"}}"));
            if r.first().map(value) == Some(1.0) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{job} never up: {r:?}\n{}",
                prom_log()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
    let r = eventually(&p, "apiserver_request_total", |_| true);
    assert!(r.iter().any(|s| s["metric"]["component"] == "apiserver"));
    eventually(
        &p,
        r#"apiserver_request_total{verb="POST",resource="deployments",group="apps",code="201"}"#,
        |r| value(&r[0]) >= 1.0,
    );
    eventually(&p, "apiserver_request_duration_seconds_bucket", |_| true);
    eventually(
        &p,
        r#"etcd_request_duration_seconds_count{operation="get"}"#,
        |_| true,
    );
    eventually(&p, r#"apiserver_storage_objects{resource="pods"}"#, |r| {
        value(&r[0]) >= 1.0
    });
    eventually(&p, "process_resident_memory_bytes", |r| value(&r[0]) > 0.0);
    // The controllers run in the server process: their workqueues are on the same /metrics.
    eventually(&p, r#"workqueue_adds_total{name="deployment"}"#, |r| {
        value(&r[0]) >= 1.0
    });
    eventually(
        &p,
        r#"workqueue_work_duration_seconds_count{name="replicaset"}"#,
        |r| value(&r[0]) >= 1.0,
    );
    // The agent: the web pod started, counted and measured.
    c.eventually(&["get", "pods"], "Running", Duration::from_secs(60));
    eventually(&p, "kubelet_running_pods", |r| value(&r[0]) >= 1.0);
    eventually(
        &p,
        r#"kubelet_running_containers{container_state="running"}"#,
        |r| value(&r[0]) >= 1.0,
    );
    eventually(&p, "kubelet_pod_start_duration_seconds_count", |r| {
        value(&r[0]) >= 1.0
    });
    eventually(
        &p,
        r#"kubelet_pod_worker_duration_seconds_count{operation="create"}"#,
        |r| value(&r[0]) >= 1.0,
    );
    let r = eventually(
        &p,
        r#"container_memory_working_set_bytes{namespace="default",container="web"}"#,
        |r| value(&r[0]) > 0.0,
    );
    assert!(r[0]["metric"]["pod"]
        .as_str()
        .is_some_and(|p| p.starts_with("web-")));
    eventually(
        &p,
        r#"container_cpu_usage_seconds_total{namespace="default",container="web"}"#,
        |r| value(&r[0]) > 0.0,
    );
    eventually(
        &p,
        r#"container_network_receive_bytes_total{namespace="default",interface="eth0"}"#,
        |_| true,
    );
    eventually(
        &p,
        r#"container_network_transmit_bytes_total{namespace="default",interface="eth0"}"#,
        |_| true,
    );
    drop(p);
}
