//! Agent API tests against real containers (needs root): a fake `ContainerIndex` maps pod
//! containers to containers started with skiff_runtime, whose shim and `exec` are the `skiff`
//! binary (`cargo build -p skiff` first). Covers logs (tail, timestamps, limitBytes, follow),
//! exec over WebSocket (stdout/stderr, exit codes, stdin, tty, v4), auth, and end to end with
//! the real kubectl through an in-process API server.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use skiff_agent::api::{self, ApiState, ServingCert};
use skiff_agent::{ContainerIndex, ContainerRef};
use skiff_runtime::{ContainerSpec, Runtime, RuntimeConfig, Status};
use tokio_tungstenite::tungstenite::Message;

const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "true", "false", "test", "tr", "printf", "seq", "nc",
];

fn skiff_exe() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/skiff");
    assert!(
        exe.exists(),
        "{} is missing: run `cargo build -p skiff` first",
        exe.display()
    );
    exe.canonicalize().expect("canonical skiff path")
}

/// Maps `ns/pod/container` to runtime containers; `running` comes from the runtime.
struct FakeIndex {
    rt: Runtime,
    map: Mutex<HashMap<(String, String, String), String>>,
}

impl ContainerIndex for FakeIndex {
    fn lookup(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        _previous: bool,
    ) -> Result<ContainerRef, String> {
        let map = self.map.lock().map_err(|e| e.to_string())?;
        let id = map
            .iter()
            .find(|((n, p, c), _)| {
                n == namespace && p == pod && container.is_none_or(|want| want == c)
            })
            .map(|(_, id)| id.clone())
            .ok_or_else(|| format!("pod {namespace}/{pod} has no container {container:?}"))?;
        let info = self.rt.get(&id).map_err(|e| e.to_string())?;
        Ok(ContainerRef {
            container_id: info.id,
            log_path: info.log_path,
            running: info.status == Status::Running,
        })
    }

    fn pod_netns(&self, namespace: &str, pod: &str) -> Result<PathBuf, String> {
        let id = self.lookup(namespace, pod, None, false)?.container_id;
        let pid = self.rt.get(&id).map_err(|e| e.to_string())?.pid;
        pid.map(|p| PathBuf::from(format!("/proc/{p}/ns/net")))
            .ok_or_else(|| "not running".to_string())
    }
}

struct Env {
    dir: tempfile::TempDir,
    index: Arc<FakeIndex>,
    addr: std::net::SocketAddr,
    token: String,
    /// The CA the agent's serving certificate is signed by.
    ca_pem: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A CA of the test's own and a serving certificate for 127.0.0.1 signed by it.
fn test_ca_and_cert() -> (String, ServingCert) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.clone().self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("cert");
    (
        ca_cert.pem(),
        ServingCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        },
    )
}

impl Env {
    async fn new() -> Env {
        let (ca_pem, cert) = test_ca_and_cert();
        Env::with_cert("node-token-for-tests", ca_pem, cert).await
    }

    async fn with_cert(token: &str, ca_pem: String, cert: ServingCert) -> Env {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests need root (namespaces, overlayfs, cgroups)"
        );
        let dir = tempfile::Builder::new()
            .prefix("skiff-agent-api-")
            .tempdir()
            .expect("tempdir");
        let data_dir = dir.path().canonicalize().expect("canonical").join("data");
        let lower = dir.path().join("layer");
        std::fs::create_dir_all(lower.join("bin")).expect("mkdir");
        std::fs::create_dir_all(lower.join("tmp")).expect("mkdir");
        std::fs::copy("/bin/busybox", lower.join("bin/busybox")).expect("copy busybox");
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", lower.join("bin").join(a)).expect("symlink");
        }
        let rt = Runtime::new(RuntimeConfig {
            data_dir: data_dir.clone(),
            shim_exe: skiff_exe(),
        })
        .expect("runtime");
        let index = Arc::new(FakeIndex {
            rt,
            map: Mutex::new(HashMap::new()),
        });
        let token = token.to_string();
        let state = ApiState {
            data_dir: data_dir.clone(),
            skiff_exe: skiff_exe(),
            token: token.clone(),
            index: index.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            api::serve(listener, state, &cert, async {
                let _ = rx.await;
            })
            .await
        });
        Env {
            dir,
            index,
            addr,
            token,
            ca_pem,
            _stop: tx,
        }
    }

    /// Starts a container for `pod/container` in namespace default.
    fn start(&self, pod: &str, container: &str, args: &[&str]) -> String {
        let spec = ContainerSpec {
            image: "bb:1".into(),
            image_id: "sha256:test".into(),
            lowers: vec![self.dir.path().join("layer")],
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/bin".into()],
            ..Default::default()
        };
        let info = self
            .index
            .rt
            .create_and_start(spec)
            .expect("start container");
        self.index.map.lock().expect("lock").insert(
            ("default".into(), pod.into(), container.into()),
            info.id.clone(),
        );
        info.id
    }

    async fn tls(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut self.ca_pem.as_bytes()) {
            roots.add(c.expect("CA pem")).expect("CA");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("127.0.0.1").expect("name"), tcp)
            .await
            .expect("TLS handshake")
    }

    /// GET with (or without) the token; returns status and the whole body.
    async fn get(&self, path: &str, token: Option<&str>) -> (u16, String) {
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(self.tls().await))
                .await
                .expect("handshake");
        tokio::spawn(conn);
        let mut req = http::Request::get(path).header("host", "agent");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = send
            .send_request(req.body(Empty::<Bytes>::new()).expect("request"))
            .await
            .expect("send");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn logs_of(&self, pod: &str, container: &str) -> String {
        self.get(
            &format!("/containerLogs/default/{pod}/{container}"),
            Some(&self.token),
        )
        .await
        .1
    }

    async fn logs(&self, query: &str) -> String {
        let (status, body) = self
            .get(
                &format!("/containerLogs/default/p/c?{query}"),
                Some(&self.token),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Runs an exec session: sends `input` frames, collects (stdout, stderr, status JSON).
    async fn exec(
        &self,
        query: &str,
        proto: &str,
        input: Vec<Vec<u8>>,
    ) -> (String, String, String) {
        let req = http::Request::get(format!("wss://127.0.0.1/exec/default/p/c?{query}"))
            .header("host", "agent")
            .header("authorization", format!("Bearer {}", self.token))
            .header("sec-websocket-protocol", proto)
            .header(
                "sec-websocket-key",
                tokio_tungstenite::tungstenite::handshake::client::generate_key(),
            )
            .header("sec-websocket-version", "13")
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .body(())
            .expect("request");
        let (mut ws, resp) = tokio_tungstenite::client_async(req, self.tls().await)
            .await
            .expect("websocket handshake");
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some(proto)
        );
        for frame in input {
            ws.send(Message::Binary(frame.into())).await.expect("send");
        }
        let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), Vec::new());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, ws.next()).await {
            match msg {
                Ok(Message::Binary(b)) => match b.first() {
                    Some(1) => out.extend_from_slice(&b[1..]),
                    Some(2) => err.extend_from_slice(&b[1..]),
                    Some(3) => status.extend_from_slice(&b[1..]),
                    _ => {}
                },
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let s = |v: Vec<u8>| String::from_utf8_lossy(&v).into_owned();
        (s(out), s(err), s(status))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let ids: Vec<String> = self
            .index
            .map
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        for id in ids {
            let _ = self.index.rt.stop(&id, Duration::from_secs(0));
            let _ = self.index.rt.remove(&id, true);
        }
    }
}

async fn wait_for_logs(env: &Env, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let body = env.logs("").await;
        if body.contains(needle) {
            return;
        }
        assert!(Instant::now() < deadline, "no {needle:?} in logs: {body:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: real containers behind the agent API (namespaces, overlayfs, cgroups)"]
async fn logs_tail_timestamps_limit_follow() {
    let env = Env::new().await;
    env.start(
        "p",
        "c",
        &[
            "sh",
            "-c",
            "echo one; echo two; echo three; sleep 3; echo four",
        ],
    );
    wait_for_logs(&env, "three\n").await;
    assert_eq!(env.logs("").await, "one\ntwo\nthree\n");
    assert_eq!(env.logs("tailLines=2").await, "two\nthree\n");
    assert_eq!(env.logs("tailLines=0").await, "");
    assert_eq!(env.logs("limitBytes=5").await, "one\nt");
    assert_eq!(env.logs("sinceSeconds=3600").await, "one\ntwo\nthree\n");
    let ts = env.logs("timestamps=true&tailLines=1").await;
    let (time, rest) = ts.split_once(' ').expect("timestamp prefix");
    assert_eq!(rest, "three\n");
    assert_eq!(time.len(), "2025-01-01T00:00:03.000000000Z".len(), "{time}");
    assert!(
        time.ends_with('Z') && time.parse::<jiff::Timestamp>().is_ok(),
        "{time}"
    );
    // follow: returns only once the container has exited, with everything.
    let started = Instant::now();
    assert_eq!(env.logs("follow=true").await, "one\ntwo\nthree\nfour\n");
    assert!(started.elapsed() > Duration::from_millis(500));
    // Bad parameters are Status errors.
    let (status, body) = env
        .get("/containerLogs/default/p/c?tailLines=x", Some(&env.token))
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = env
        .get("/containerLogs/default/nope/c", Some(&env.token))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"kind\":\"Status\""), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: real containers behind the agent API (namespaces, overlayfs, cgroups)"]
async fn exec_over_websocket() {
    let env = Env::new().await;
    env.start("p", "c", &["sleep", "1000"]);
    let v5 = "v5.channel.k8s.io";
    let (out, err, status) = env
        .exec(
            "command=echo&command=hi&stdout=true&stderr=true",
            v5,
            vec![],
        )
        .await;
    assert_eq!((out.as_str(), err.as_str()), ("hi\n", ""));
    let status: serde_json::Value = serde_json::from_str(&status).expect("status json");
    assert_eq!(status["status"], "Success");

    let (out, err, status) = env
        .exec(
            "command=sh&command=-c&command=echo%20out;%20echo%20err%20%3E%262;%20exit%203&stdout=true&stderr=true",
            v5,
            vec![],
        )
        .await;
    assert_eq!((out.as_str(), err.as_str()), ("out\n", "err\n"));
    let status: serde_json::Value = serde_json::from_str(&status).expect("status json");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");

    // stdin: data, then the v5 close-stream frame for channel 0 ends cat.
    let (out, _, status) = env
        .exec(
            "command=cat&stdin=true&stdout=true&stderr=true",
            v5,
            vec![b"\0some input".to_vec(), vec![255, 0]],
        )
        .await;
    assert_eq!(out, "some input");
    assert!(status.contains("Success"), "{status}");

    // v4 is accepted too.
    let (out, _, status) = env
        .exec(
            "command=echo&command=v4&stdout=true",
            "v4.channel.k8s.io",
            vec![],
        )
        .await;
    assert_eq!(out, "v4\n");
    assert!(status.contains("Success"), "{status}");

    // tty: the command's stdout is a terminal; resize frames are accepted.
    let (out, _, status) = env
        .exec(
            "command=sh&command=-c&command=test%20-t%201%20%26%26%20echo%20isatty&stdout=true&stdin=true&tty=true",
            v5,
            vec![
                [&[4u8][..], br#"{"Width":80,"Height":24}"#].concat(),
                vec![255, 0],
            ],
        )
        .await;
    assert!(out.contains("isatty"), "{out:?}");
    assert!(status.contains("Success"), "{status}");

    // No command / not a websocket: 400 Status.
    let (code, _) = env
        .get("/exec/default/p/c?stdout=true", Some(&env.token))
        .await;
    assert_eq!(code, 400);
    let (code, _) = env
        .get(
            "/exec/default/p/c?command=true&stdout=true",
            Some(&env.token),
        )
        .await;
    assert_eq!(code, 400);
}

impl Env {
    /// A WebSocket session on `path` with subprotocol `proto`: sends `input`, returns every
    /// message until the close (or 30 s).
    async fn ws_session(&self, path: &str, proto: &str, input: Vec<Message>) -> Vec<Message> {
        let req = http::Request::get(format!("wss://127.0.0.1{path}"))
            .header("host", "agent")
            .header("authorization", format!("Bearer {}", self.token))
            .header("sec-websocket-protocol", proto)
            .header(
                "sec-websocket-key",
                tokio_tungstenite::tungstenite::handshake::client::generate_key(),
            )
            .header("sec-websocket-version", "13")
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .body(())
            .expect("request");
        let (mut ws, resp) = tokio_tungstenite::client_async(req, self.tls().await)
            .await
            .expect("websocket handshake");
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some(proto)
        );
        for m in input {
            ws.send(m).await.expect("send");
        }
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, ws.next()).await {
            match msg {
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(m) => got.push(m),
            }
        }
        got
    }
}

/// (channel, payload) of binary-protocol messages, TEXT or BINARY.
fn channels(msgs: &[Message]) -> Vec<(u8, Vec<u8>)> {
    msgs.iter()
        .filter_map(|m| match m {
            Message::Binary(b) => Some(b.to_vec()),
            Message::Text(t) => Some(t.as_bytes().to_vec()),
            _ => None,
        })
        .filter_map(|v| v.split_first().map(|(c, r)| (*c, r.to_vec())))
        .collect()
}

fn joined(frames: &[(u8, Vec<u8>)], channel: u8) -> String {
    let v: Vec<u8> = frames
        .iter()
        .filter(|(c, _)| *c == channel)
        .flat_map(|(_, d)| d.clone())
        .collect();
    String::from_utf8_lossy(&v).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: real containers behind the agent API (namespaces, overlayfs, cgroups)"]
async fn exec_over_every_websocket_protocol() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let env = Env::new().await;
    env.start("p", "c", &["sleep", "1000"]);

    // channel.k8s.io (the conformance spec's protocol): the first message is an empty stdout
    // frame, then output; success writes nothing on the error channel, a failure its text.
    let q = "/exec/default/p/c?command=echo&command=hi&stdout=true&stderr=true";
    let msgs = env.ws_session(q, "channel.k8s.io", vec![]).await;
    let frames = channels(&msgs);
    assert_eq!(frames.first(), Some(&(1u8, vec![])), "{frames:?}");
    assert_eq!(joined(&frames, 1), "hi\n");
    assert_eq!(joined(&frames, 3), "");
    let q = "/exec/default/p/c?command=sh&command=-c&command=exit%204&stdout=true";
    let frames = channels(&env.ws_session(q, "channel.k8s.io", vec![]).await);
    assert!(
        joined(&frames, 3).starts_with("command terminated with non-zero exit code"),
        "{frames:?}"
    );

    // Stdin in a TEXT frame (the Python client's way) on v4 and v5.
    for proto in ["v4.channel.k8s.io", "v5.channel.k8s.io"] {
        let q =
            "/exec/default/p/c?command=sh&command=-c&command=head%20-c%205&stdin=true&stdout=true";
        let msgs = env
            .ws_session(q, proto, vec![Message::Text("\u{0}hello".into())])
            .await;
        let frames = channels(&msgs);
        assert_eq!(joined(&frames, 1), "hello", "{proto}");
        assert!(joined(&frames, 3).contains("Success"), "{proto}");
    }

    // base64.channel.k8s.io and v4.base64: TEXT frames both ways, '0'+channel then base64.
    for proto in ["base64.channel.k8s.io", "v4.base64.channel.k8s.io"] {
        let q = "/exec/default/p/c?command=sh&command=-c&command=head%20-c%203;%20echo%20e%20%3E%262&stdin=true&stdout=true&stderr=true";
        let stdin = Message::Text(format!("0{}", b64.encode("abc")).into());
        let msgs = env.ws_session(q, proto, vec![stdin]).await;
        let mut out = Vec::new();
        let mut err = Vec::new();
        for m in &msgs {
            let Message::Text(t) = m else {
                panic!("{proto}: a non-text message {m:?}");
            };
            let (ch, data) = t.as_str().split_at(1);
            let data = b64.decode(data).expect("base64");
            match ch {
                "1" => out.extend(data),
                "2" => err.extend(data),
                _ => {}
            }
        }
        assert_eq!(out, b"abc", "{proto}");
        assert_eq!(err, b"e\n", "{proto}");
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: real containers behind the agent API (namespaces, overlayfs, cgroups)"]
async fn logs_over_websocket() {
    use base64::Engine;
    let env = Env::new().await;
    env.start(
        "p",
        "c",
        &["sh", "-c", "echo one; echo two; exec sleep 1000"],
    );
    wait_for_logs(&env, "two").await;
    let msgs = env
        .ws_session("/containerLogs/default/p/c", "binary.k8s.io", vec![])
        .await;
    let text: Vec<u8> = msgs
        .iter()
        .flat_map(|m| match m {
            Message::Binary(b) => b.to_vec(),
            other => panic!("binary.k8s.io sent {other:?}"),
        })
        .collect();
    assert_eq!(String::from_utf8_lossy(&text), "one\ntwo\n");
    let msgs = env
        .ws_session(
            "/containerLogs/default/p/c?tailLines=1",
            "base64.binary.k8s.io",
            vec![],
        )
        .await;
    let text: Vec<u8> = msgs
        .iter()
        .flat_map(|m| match m {
            Message::Text(t) => base64::engine::general_purpose::STANDARD
                .decode(t.as_str())
                .expect("base64"),
            other => panic!("base64.binary.k8s.io sent {other:?}"),
        })
        .collect();
    assert_eq!(String::from_utf8_lossy(&text), "two\n");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: real containers behind the agent API (namespaces, overlayfs, cgroups)"]
async fn port_forward_channel_protocol_in_the_pods_netns() {
    let env = Env::new().await;
    // Listens on the container's own loopback (a network namespace of its own): reachable only
    // from inside it.
    let id = env.start("p", "c", &["nc", "-ll", "-p", "7000", "-e", "echo", "pong"]);
    // The runtime's own network namespace has loopback down (pod sandboxes bring it up).
    let pid = env.index.rt.get(&id).expect("info").pid.expect("pid");
    let up = std::process::Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["ip", "link", "set", "lo", "up"])
        .status()
        .expect("nsenter");
    assert!(up.success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    for proto in ["v4.channel.k8s.io", "channel.k8s.io"] {
        let msgs = env
            .ws_session("/portForward/default/p?ports=7000,7001", proto, vec![])
            .await;
        let frames = channels(&msgs);
        // Every channel opens with its port, 2 bytes little endian.
        let port = |p: u16| p.to_le_bytes().to_vec();
        for (ch, p) in [(0u8, 7000u16), (1, 7000), (2, 7001), (3, 7001)] {
            let first = frames
                .iter()
                .find(|(c, _)| *c == ch)
                .map(|(_, d)| d.clone());
            assert_eq!(first, Some(port(p)), "{proto} channel {ch}: {frames:?}");
        }
        let rest = |ch: u8| -> String {
            let v: Vec<u8> = frames
                .iter()
                .filter(|(c, _)| *c == ch)
                .skip(1)
                .flat_map(|(_, d)| d.clone())
                .collect();
            String::from_utf8_lossy(&v).into_owned()
        };
        assert_eq!(rest(0), "pong\n", "{proto}: {frames:?}");
        assert_eq!(rest(1), "", "{proto}");
        let err = rest(3);
        assert!(
            err.contains("error forwarding port 7001") && err.contains("connection refused"),
            "{proto}: {err}"
        );
    }
}

/// A fake shim on `path` speaking the attach socket contract: echoes stdin upper-cased on
/// stdout, reports resizes on stderr, and on stdin close writes "bye" and exit code 0.
fn fake_shim(path: std::path::PathBuf) -> tokio::task::JoinHandle<String> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    // The path is longer than sun_path allows: bind through the directory's /proc link.
    let dir = std::fs::File::open(path.parent().expect("dir")).expect("open dir");
    let short = format!(
        "/proc/self/fd/{}/attach.sock",
        std::os::fd::AsRawFd::as_raw_fd(&dir)
    );
    // The container's real shim serves this path too: unlink its socket so ours takes its place
    // (the shim keeps listening on the unlinked one, which nobody can reach any more).
    let _ = std::fs::remove_file(&short);
    let listener = tokio::net::UnixListener::bind(&short).expect("bind attach.sock");
    drop(dir);
    tokio::spawn(async move {
        let (sock, _) = listener.accept().await.expect("accept");
        let (rd, mut wr) = sock.into_split();
        let mut rd = tokio::io::BufReader::new(rd);
        let mut hello = String::new();
        rd.read_line(&mut hello).await.expect("hello line");
        let send = |kind: u8, data: &[u8]| {
            let mut f = vec![kind];
            f.extend((data.len() as u32).to_be_bytes());
            f.extend(data);
            f
        };
        // Without stdin there is nothing to wait for: greet and exit.
        if !hello.contains("\"stdin\":true") {
            wr.write_all(&send(1, b"attached\n")).await.expect("write");
            wr.write_all(&send(3, b"0")).await.expect("write");
            return hello;
        }
        loop {
            let mut head = [0u8; 5];
            rd.read_exact(&mut head).await.expect("frame");
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let mut data = vec![0u8; len];
            rd.read_exact(&mut data).await.expect("payload");
            match head[0] {
                0 => wr
                    .write_all(&send(1, &data.to_ascii_uppercase()))
                    .await
                    .expect("write"),
                4 => wr.write_all(&send(2, &data)).await.expect("write"),
                5 => {
                    wr.write_all(&send(1, b"bye")).await.expect("write");
                    wr.write_all(&send(3, b"0")).await.expect("write");
                    return hello;
                }
                k => panic!("unexpected frame kind {k}"),
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: real containers behind the agent API (namespaces, overlayfs, cgroups)"]
async fn attach_speaks_the_shim_socket_protocol() {
    let env = Env::new().await;
    let id = env.start("p", "c", &["sleep", "1000"]);
    let sock = env
        .dir
        .path()
        .canonicalize()
        .expect("canonical")
        .join("data/containers")
        .join(&id)
        .join("attach.sock");
    let shim = fake_shim(sock.clone());
    let q = "/attach/default/p/c?stdin=true&stdout=true&stderr=true";
    let msgs = env
        .ws_session(
            q,
            "v5.channel.k8s.io",
            vec![
                Message::Binary(b"\0hello".to_vec().into()),
                Message::Binary([&[4u8][..], br#"{"Width":80,"Height":24}"#].concat().into()),
                Message::Binary(vec![255, 0].into()),
            ],
        )
        .await;
    let frames = channels(&msgs);
    assert_eq!(joined(&frames, 1), "HELLObye", "{frames:?}");
    // No tty was asked for, but the resize still reaches the shim (it decides).
    assert_eq!(joined(&frames, 2), r#"{"Width":80,"Height":24}"#);
    assert!(joined(&frames, 3).contains("Success"), "{frames:?}");
    let hello: serde_json::Value =
        serde_json::from_str(&shim.await.expect("shim")).expect("hello JSON");
    assert_eq!(
        hello,
        serde_json::json!({"stdin": true, "stdout": true, "stderr": true})
    );
    let _ = std::fs::remove_file(&sock);

    // No shim socket: a plain 400 before any upgrade.
    let (code, body) = env
        .get("/attach/default/p/c?stdout=true", Some(&env.token))
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("unable to attach"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: real containers behind the agent API (namespaces, overlayfs, cgroups)"]
async fn requests_need_the_node_token() {
    let env = Env::new().await;
    let (code, body) = env.get("/containerLogs/default/p/c", None).await;
    assert_eq!(code, 401, "{body}");
    let (code, _) = env
        .get("/containerLogs/default/p/c", Some("wrong-token"))
        .await;
    assert_eq!(code, 401);
    let (code, _) = env.get("/exec/default/p/c?command=true", None).await;
    assert_eq!(code, 401);
}

/// Runs kubectl against `kubeconfig`; returns (exit code, stdout, stderr).
async fn kubectl(
    kubeconfig: &std::path::Path,
    args: &[&str],
    stdin: &[u8],
) -> (i32, String, String) {
    use tokio::io::AsyncWriteExt;
    let cache = kubeconfig.with_file_name("kubectl-cache");
    let mut child = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(&cache)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl must be installed for this test");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).await.expect("write stdin");
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl timed out")
        .expect("kubectl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs root: real containers behind the agent API (namespaces, overlayfs, cgroups)"]
async fn kubectl_logs_and_exec_through_the_api_server() {
    use k8s_openapi::api::core::v1::{Node, Pod};
    use kube::api::{Api, Patch, PatchParams, PostParams};

    let server_dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(
        skiff_store::SqliteStore::open(&server_dir.path().join("state.db")).expect("store"),
    );
    let mut config =
        skiff_apiserver::ServerConfig::new(server_dir.path(), "127.0.0.1:0".parse().expect("addr"));
    // No controllers here, so no `default` ServiceAccount: run without that admission.
    config.disable_admission_plugins = vec!["ServiceAccount".into()];
    let server = skiff_apiserver::Server::bind(config, store)
        .await
        .expect("bind");
    let kubeconfig = server.kubeconfig_path().to_path_buf();
    let server_addr = server.local_addr();
    let node_token = server.state().tokens.node.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));
    // The agent's certificate comes from the cluster CA, asked for with the node token.
    let ca_pem = std::fs::read_to_string(server_dir.path().join("server/tls/ca.crt")).expect("CA");
    let server_url = format!("https://{}", server_addr);
    let node_client = skiff_client::config::with_token(&server_url, ca_pem.as_bytes(), &node_token)
        .expect("node client");
    let localhost = [std::net::IpAddr::from([127, 0, 0, 1])];
    let cert = skiff_client::node_cert::request(&node_client, "n1", &localhost)
        .await
        .expect("serving certificate");
    let env = Env::with_cert(&node_token, ca_pem, cert.into()).await;
    let web_id = env.start(
        "web",
        "web",
        &["sh", "-c", "echo hello; echo world; exec sleep 1000"],
    );
    env.start("job", "job", &["sh", "-c", "echo a; sleep 2; echo b"]);

    let client = skiff_client::config::from_kubeconfig(&kubeconfig)
        .await
        .expect("client");
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "n1"},
    }))
    .expect("node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");
    let status = serde_json::json!({"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": env.addr.port()}},
    }});
    nodes
        .patch_status("n1", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("node status");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for name in ["web", "job"] {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"nodeName": "n1", "containers": [{"name": name, "image": "bb:1"}]},
        }))
        .expect("pod");
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("create pod");
    }
    // The web container has written its two lines once `tail` sees them.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !env.logs_of("web", "web").await.contains("world") {
        assert!(Instant::now() < deadline, "web never logged");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (code, out, err) = kubectl(&kubeconfig, &["logs", "web"], b"").await;
    assert_eq!((code, out.as_str()), (0, "hello\nworld\n"), "{err}");
    let (code, out, err) = kubectl(
        &kubeconfig,
        &["logs", "web", "--tail=1", "--timestamps"],
        b"",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.ends_with("Z world\n") && out.lines().count() == 1,
        "{out}"
    );
    let (code, out, err) = kubectl(&kubeconfig, &["logs", "-f", "job"], b"").await;
    assert_eq!((code, out.as_str()), (0, "a\nb\n"), "{err}");
    let (code, _, err) = kubectl(&kubeconfig, &["logs", "web", "-c", "nope"], b"").await;
    assert_ne!(code, 0);
    assert!(
        err.contains("container nope is not valid for pod web"),
        "{err}"
    );

    let (code, out, err) = kubectl(&kubeconfig, &["exec", "web", "--", "echo", "hi"], b"").await;
    assert_eq!((code, out.as_str()), (0, "hi\n"), "{err}");
    let (code, out, err) = kubectl(
        &kubeconfig,
        &["exec", "-i", "web", "--", "cat"],
        b"some input",
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "some input"), "{err}");
    let (code, _, err) = kubectl(
        &kubeconfig,
        &["exec", "web", "--", "sh", "-c", "exit 3"],
        b"",
    )
    .await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("command terminated with exit code 3"), "{err}");

    // pods/attach through the API server to the container's shim socket (a fake shim here; the
    // real one is covered by crates/skiff/tests/streaming.rs).
    let sock = env
        .dir
        .path()
        .canonicalize()
        .expect("canonical")
        .join("data/containers")
        .join(&web_id)
        .join("attach.sock");
    let shim = fake_shim(sock.clone());
    let (code, out, err) = kubectl(&kubeconfig, &["attach", "web"], b"").await;
    assert_eq!((code, out.as_str()), (0, "attached\n"), "{err}");
    assert!(shim.await.expect("shim").contains("\"stdout\":true"));
    let _ = std::fs::remove_file(&sock);

    // An agent whose certificate the cluster CA did not sign is refused.
    let rogue = Env::new().await;
    rogue.start("web", "web", &["sh", "-c", "echo rogue; exec sleep 1000"]);
    let status = serde_json::json!({"status": {
        "daemonEndpoints": {"kubeletEndpoint": {"Port": rogue.addr.port()}},
    }});
    nodes
        .patch_status("n1", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("node status");
    let (code, out, err) = kubectl(&kubeconfig, &["logs", "web"], b"").await;
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("TLS handshake"), "{err}");
    drop(stop_tx);
}
