//! The seed's cluster on one machine (root): `skiff server` with its embedded node agent runs a
//! Deployment of the web example as real containers with pod IPs, and kubectl's logs and exec
//! reach them through the API server.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::Cluster;

fn build_web_images(c: &Cluster) {
    let ctx = c.dir.path().join("web");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/web");
    std::fs::create_dir_all(ctx.join("app")).expect("ctx");
    std::fs::copy(src.join("Containerfile"), ctx.join("Containerfile")).expect("Containerfile");
    std::fs::copy(src.join("app/start.sh"), ctx.join("app/start.sh")).expect("start.sh");
    std::fs::copy("/bin/busybox", ctx.join("busybox")).expect("busybox");
    for version in ["v1", "v2"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("--data-dir")
            .arg(c.data_dir())
            .args([
                "image",
                "build",
                "-t",
                &format!("web:{version}"),
                "--build-arg",
            ])
            .arg(format!("VERSION={version}"))
            .arg(&ctx)
            .output()
            .expect("skiff image build");
        assert!(
            out.status.success(),
            "build: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn http_get(ip: &str, port: u16) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(
        &format!("{ip}:{port}").parse().ok()?,
        Duration::from_secs(2),
    )
    .ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

#[test]
fn deployment_runs_real_containers_reachable_on_pod_ips() {
    assert!(nix::unistd::geteuid().is_root(), "cluster tests need root");
    let c = Cluster::start();
    build_web_images(&c);
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=web:v1",
        "--replicas=3",
        "--port=80",
    ]);
    let out = c.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    assert!(out.contains("successfully rolled out"), "{out}");

    let pods = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.podIP}{\"\\n\"}{end}",
    ]);
    let pods: Vec<(String, String)> = pods
        .lines()
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(n, ip)| (n.to_string(), ip.to_string()))
        })
        .collect();
    assert_eq!(pods.len(), 3, "{pods:?}");
    for (name, ip) in &pods {
        assert!(ip.starts_with("100.64."), "pod IP {ip}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let body = loop {
            if let Some(b) = http_get(ip, 80).filter(|b| b.contains("200")) {
                break b;
            }
            assert!(
                Instant::now() < deadline,
                "pod {name} at {ip} never answered"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(body.contains(&format!("web v1 on {name}")), "{body}");
    }

    let (first, _) = &pods[0];
    let env = c.ok(&["exec", first, "--", "cat", "/etc/web/env"]);
    assert_eq!(env.trim(), "WEB_VERSION=v1");
    let (code, _, _) = c.kubectl(&["exec", first, "--", "sh", "-c", "exit 3"]);
    assert_eq!(code, 3, "kubectl exec returns the command's exit code");
    let hostname = c.ok(&["exec", first, "--", "hostname"]);
    assert_eq!(hostname.trim(), first.as_str());
    c.ok(&[
        "exec",
        first,
        "--",
        "sh",
        "-c",
        "echo to-the-log > /proc/1/fd/1",
    ]);
    let logs = c.eventually(&["logs", first], "to-the-log", Duration::from_secs(10));
    assert!(logs.contains("to-the-log"), "{logs}");

    c.ok(&["delete", "deployment", "web"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, names, _) = c.kubectl(&["get", "pods", "-l", "app=web", "-o", "name"]);
        if names.trim().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "pods not gone: {names}");
        std::thread::sleep(Duration::from_millis(250));
    }
    c.assert_node_clean();
}
