//! API aggregation against a tiny extension API server in the test (hyper + rustls in a
//! network namespace of the test's, its own CA, requiring a client certificate from the front-proxy CA that the
//! `extension-apiserver-authentication` ConfigMap publishes): the built-in APIServices, an
//! APIService pointing at a Service + Endpoints becoming Available, requests proxied with the
//! user's identity in front-proxy headers, legacy and aggregated discovery listing the group,
//! and the server going away (FailedDiscoveryCheck, stale discovery, 503).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{Api, DeleteParams, PostParams};
use kube::Client;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};
use serde_json::{json, Value};

const GROUP: &str = "example.skiff.dev";
const NS: &str = "aggr-test";

struct Env {
    dir: tempfile::TempDir,
    addr: std::net::SocketAddr,
    client: Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(check_interval: Duration) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        Arc::new(skiff_store::SqliteStore::open(&dir.path().join("state.db")).expect("store"));
    let mut config =
        skiff_apiserver::ServerConfig::new(dir.path(), "127.0.0.1:0".parse().expect("addr"));
    config.apiservice_check_interval = check_interval;
    let server = skiff_apiserver::Server::bind(config, store)
        .await
        .expect("bind");
    let kubeconfig = server.kubeconfig_path().to_path_buf();
    let addr = server.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    // kube retries 503s for minutes by default; kubectl does not, and the 503s are asserted.
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    config.default_retry = false;
    let client = Client::try_from(config).expect("client");
    Env {
        dir,
        addr,
        client,
        _stop: tx,
    }
}

/// A raw request: (status, JSON body or Null).
async fn raw(client: &Client, req: http::Request<Vec<u8>>) -> (u16, Value) {
    let resp = client
        .send(req.map(kube::client::Body::from))
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn get(client: &Client, path: &str) -> (u16, Value) {
    raw(
        client,
        http::Request::get(path).body(Vec::new()).expect("request"),
    )
    .await
}

/// The extension server's "pod": a network namespace joined to the host by a veth pair on a
/// /30 of its own (Endpoints may not point at loopback). Deleted with the veth on drop.
struct PodNet {
    netns: String,
    peer_ip: String,
}

impl PodNet {
    fn create() -> Self {
        let id = std::process::id();
        let netns = format!("skiff-ag{id:x}");
        let veth = format!("vag{:x}", id % 0x00ff_ffff);
        let (b, c) = ((id >> 6) % 256, (id % 64) * 4);
        let host_ip = format!("10.214.{b}.{}", c + 1);
        let peer_ip = format!("10.214.{b}.{}", c + 2);
        let ip = |args: &[&str]| {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .expect("run ip");
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ip(&["netns", "add", &netns]);
        let net = PodNet {
            netns: netns.clone(),
            peer_ip: peer_ip.clone(),
        };
        let peer = format!("{veth}p");
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &netns]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &veth]);
        ip(&["link", "set", &veth, "up"]);
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{peer_ip}/30"),
            "dev",
            &peer,
        ]);
        ip(&["-n", &netns, "link", "set", &peer, "up"]);
        net
    }

    /// A listener bound inside the namespace (a socket keeps the namespace it was made in).
    fn listen(&self) -> tokio::net::TcpListener {
        let path = format!("/run/netns/{}", self.netns);
        let addr = format!("{}:0", self.peer_ip);
        let std_listener = std::thread::spawn(move || {
            let f = std::fs::File::open(&path).expect("netns file");
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let l = std::net::TcpListener::bind(&addr).expect("bind in netns");
            l.set_nonblocking(true).expect("nonblocking");
            l
        })
        .join()
        .expect("netns thread");
        tokio::net::TcpListener::from_std(std_listener).expect("tokio listener")
    }
}

impl Drop for PodNet {
    fn drop(&mut self) {
        // Deleting the namespace removes the veth pair too.
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
    }
}

struct ExtServer {
    ca_pem: String,
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

/// The extension API server: discovery for `example.skiff.dev/v1` and a `widgets` list that
/// echoes the front-proxy identity; connections must present a client certificate signed by
/// `front_proxy_ca` (its common name is echoed too).
async fn ext_server(front_proxy_ca: &str, host: &str, net: &PodNet) -> ExtServer {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "ext-ca");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.clone().self_signed(&ca_key).expect("ca");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec![host.to_string()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("cert");

    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut front_proxy_ca.as_bytes()) {
        roots.add(c.expect("ca cert")).expect("add");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("verifier");
    let key_der = rustls_pemfile::private_key(&mut key.serialize_pem().as_bytes())
        .expect("key")
        .expect("a key");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert.der().clone()], key_der)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = net.listen();
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let cn = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|der| {
                    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
                    let cn = cert.subject().iter_common_name().next()?;
                    cn.as_str().ok().map(str::to_string)
                })
                .unwrap_or_default();
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let cn = cn.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        if req.headers().get("upgrade").is_some() {
                            // An exec-like stream: echo whatever comes after the 101.
                            let on = hyper::upgrade::on(req);
                            tokio::spawn(async move {
                                if let Ok(up) = on.await {
                                    let (mut r, mut w) = tokio::io::split(TokioIo::new(up));
                                    let _ = tokio::io::copy(&mut r, &mut w).await;
                                }
                            });
                            return Ok(http::Response::builder()
                                .status(101)
                                .header("connection", "Upgrade")
                                .header("upgrade", "echo")
                                .body(Full::new(Bytes::new()))
                                .expect("response"));
                        }
                        let all = |name: &str| -> Vec<String> {
                            req.headers()
                                .get_all(name)
                                .iter()
                                .map(|v| v.to_str().unwrap_or("").to_string())
                                .collect()
                        };
                        let aggregated = all("accept")
                            .iter()
                            .any(|a| a.contains("as=APIGroupDiscoveryList"));
                        let body = match path.as_str() {
                            // Its own aggregated discovery (with a category only this has).
                            "/apis" if aggregated => json!({
                                "kind": "APIGroupDiscoveryList",
                                "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
                                "items": [{"metadata": {"name": "example.skiff.dev"},
                                    "versions": [{"version": "v1", "freshness": "Current",
                                        "resources": [{"resource": "widgets",
                                            "singularResource": "widget",
                                            "scope": "Namespaced",
                                            "responseKind": {"group": "example.skiff.dev",
                                                "version": "v1", "kind": "Widget"},
                                            "verbs": ["get", "list"],
                                            "categories": ["from-aggregated"]}]}]}],
                            }),
                            "/apis/example.skiff.dev/v1" => json!({
                                "kind": "APIResourceList", "apiVersion": "v1",
                                "groupVersion": "example.skiff.dev/v1",
                                "resources": [{"name": "widgets", "singularName": "widget",
                                    "namespaced": true, "kind": "Widget",
                                    "verbs": ["get", "list"], "shortNames": ["wd"]}],
                            }),
                            _ => json!({
                                "kind": "WidgetList", "apiVersion": "example.skiff.dev/v1",
                                "metadata": {}, "items": [],
                                "echo": {"path": path, "cn": cn, "user": all("x-remote-user"),
                                    "groups": all("x-remote-group"),
                                    "extraScopes": all("x-remote-extra-scopes"),
                                    "authorization": all("authorization"),
                                    "impersonate": all("impersonate-user"),
                                    "host": all("host")},
                            }),
                        };
                        let ct = if aggregated && path == "/apis" {
                            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
                        } else {
                            "application/json"
                        };
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("content-type", ct)
                                .body(Full::new(Bytes::from(body.to_string())))
                                .expect("response"),
                        )
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .with_upgrades(),
            );
        }
    });
    ExtServer {
        ca_pem: ca.pem(),
        port,
        task,
    }
}

/// Upgrades a raw HTTPS connection (admin client certificate) on an aggregated path and
/// returns what the extension server echoes back.
async fn upgrade_echo(env: &Env) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tls = env.dir.path().join("server/tls");
    let read = |n: &str| std::fs::read_to_string(tls.join(n)).expect("pem");
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut read("ca.crt").as_bytes()) {
        roots.add(c.expect("cert")).expect("root");
    }
    let certs = rustls_pemfile::certs(&mut read("admin.crt").as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certs");
    let key = rustls_pemfile::private_key(&mut read("admin.key").as_bytes())
        .expect("key")
        .expect("a key");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_client_auth_cert(certs, key)
    .expect("client config");
    let tcp = tokio::net::TcpStream::connect(env.addr)
        .await
        .expect("connect");
    let mut s = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name"),
            tcp,
        )
        .await
        .expect("tls");
    let req = format!(
        "POST /apis/{GROUP}/v1/namespaces/{NS}/widgets/w/exec HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Connection: Upgrade\r\nUpgrade: echo\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(
            s.read(&mut byte).await.expect("read") == 1,
            "connection closed"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping-pong").await.expect("write");
    let mut buf = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .expect("echo in time")
        .expect("read");
    String::from_utf8_lossy(&buf).to_string()
}

/// The example group's aggregated discovery item once its version shows `freshness` (routing
/// and discovery follow the configuration cache, a few milliseconds behind the store).
async fn aggregated_item(client: &Client, freshness: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..30 {
        let (_, doc) = raw(
            client,
            http::Request::get("/apis")
                .header(
                    "accept",
                    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
                )
                .body(Vec::new())
                .expect("request"),
        )
        .await;
        if let Some(item) = doc["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|i| i["metadata"]["name"] == GROUP)
        {
            if item["versions"][0]["freshness"] == freshness {
                return item.clone();
            }
            last = item.clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{GROUP} never became {freshness} in aggregated discovery: {last}");
}

async fn wait_available(api: &Api<APIService>, name: &str, want: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        if let Ok(a) = api.get(name).await {
            last = serde_json::to_value(&a).expect("json");
            let cond = last
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Available").cloned());
            if let Some(c) = cond {
                let shown = if c["status"] == "True" {
                    "True".to_string()
                } else {
                    format!("False ({})", c["reason"].as_str().unwrap_or(""))
                };
                let full = format!(
                    "{} ({})",
                    c["status"].as_str().unwrap_or(""),
                    c["reason"].as_str().unwrap_or("")
                );
                if shown == want || full == want {
                    return c;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{name} never became {want}: {last}");
}

#[tokio::test]
async fn local_and_crd_apiservices_and_validation() {
    let env = start(Duration::from_millis(500)).await;
    let api: Api<APIService> = Api::all(env.client.clone());
    for name in [
        "v1.",
        "v1.apps",
        "v1.rbac.authorization.k8s.io",
        "v1beta1.metrics.k8s.io",
    ] {
        let c = wait_available(&api, name, "True").await;
        assert_eq!(c["reason"], "Local");
        let a = serde_json::to_value(api.get(name).await.expect("get")).expect("json");
        assert_eq!(
            a["metadata"]["labels"]["kube-aggregator.kubernetes.io/automanaged"],
            "onstart"
        );
        assert!(a["spec"]["service"].is_null());
    }
    let core = serde_json::to_value(api.get("v1.").await.expect("get")).expect("json");
    assert_eq!(core["spec"]["groupPriorityMinimum"], 18000);
    assert_eq!(core["spec"]["versionPriority"], 1);

    // The table kubectl prints.
    let (code, table) = raw(
        &env.client,
        http::Request::get("/apis/apiregistration.k8s.io/v1/apiservices/v1.apps")
            .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
            .body(Vec::new())
            .expect("request"),
    )
    .await;
    assert_eq!(code, 200);
    let cols: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(cols, ["Name", "Service", "Available", "Age"]);
    assert_eq!(table["rows"][0]["cells"][1], "Local");
    assert_eq!(table["rows"][0]["cells"][2], "True");

    // Name must be version.group; priorities in range.
    let bad: APIService = serde_json::from_value(json!({
        "metadata": {"name": "v2.example.skiff.dev"},
        "spec": {"group": GROUP, "version": "v1", "groupPriorityMinimum": 0,
            "versionPriority": 10, "service": {"namespace": NS, "name": "ext-api"}},
    }))
    .expect("apiservice");
    let err = api
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("invalid");
    let kube::Error::Api(status) = err else {
        panic!("unexpected {err}");
    };
    assert_eq!(status.code, 422);
    assert!(
        status
            .message
            .contains("must be `spec.version+\".\"+spec.group`: \"v1.example.skiff.dev\""),
        "{}",
        status.message
    );
    assert!(status
        .message
        .contains("must be positive and less than 20000"));

    // An Established CRD's served versions get APIServices (automanaged: true), removed with it.
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.stable.skiff.dev"},
        "spec": {"group": "stable.skiff.dev", "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget",
                "listKind": "GadgetList"},
            "versions": [
                {"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object"}}},
                {"name": "v1beta1", "served": false, "storage": false,
                    "schema": {"openAPIV3Schema": {"type": "object"}}}]},
    });
    let crds_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    let (code, created) = raw(
        &env.client,
        http::Request::post(crds_path)
            .header("content-type", "application/json")
            .body(crd.to_string().into_bytes())
            .expect("request"),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    // The API server's CRD status controller establishes it.
    let started = std::time::Instant::now();
    loop {
        let (_, crd) = raw(
            &env.client,
            http::Request::get(format!("{crds_path}/gadgets.stable.skiff.dev"))
                .body(Vec::new())
                .expect("request"),
        )
        .await;
        let established = crd["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        });
        if established {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{crd}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let c = wait_available(&api, "v1.stable.skiff.dev", "True").await;
    assert_eq!(c["reason"], "Local");
    let a = serde_json::to_value(api.get("v1.stable.skiff.dev").await.expect("get")).expect("json");
    assert_eq!(
        a["metadata"]["labels"]["kube-aggregator.kubernetes.io/automanaged"],
        "true"
    );
    assert_eq!(a["spec"]["groupPriorityMinimum"], 1000);
    assert!(api
        .get_opt("v1beta1.stable.skiff.dev")
        .await
        .expect("get")
        .is_none());
    let (code, _) = raw(
        &env.client,
        http::Request::delete(format!("{crds_path}/gadgets.stable.skiff.dev"))
            .body(Vec::new())
            .expect("request"),
    )
    .await;
    assert_eq!(code, 200);
    let mut gone = false;
    for _ in 0..50 {
        if api
            .get_opt("v1.stable.skiff.dev")
            .await
            .expect("get")
            .is_none()
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the CRD's APIService outlived it");

    // Create, read, delete (the Python client's e2e test_apiserver does the same).
    let good: APIService = serde_json::from_value(json!({
        "metadata": {"name": "v1.example.skiff.dev"},
        "spec": {"group": GROUP, "version": "v1", "groupPriorityMinimum": 100,
            "versionPriority": 10, "insecureSkipTLSVerify": true,
            "service": {"namespace": NS, "name": "missing"}},
    }))
    .expect("apiservice");
    api.create(&PostParams::default(), &good)
        .await
        .expect("create");
    let err = api
        .create(&PostParams::default(), &good)
        .await
        .expect_err("conflict");
    let kube::Error::Api(status) = err else {
        panic!("unexpected {err}");
    };
    assert_eq!(
        (status.code, status.reason.as_str()),
        (409, "AlreadyExists")
    );
    assert_eq!(
        status.message,
        "apiservices.apiregistration.k8s.io \"v1.example.skiff.dev\" already exists"
    );
    let read =
        serde_json::to_value(api.get("v1.example.skiff.dev").await.expect("get")).expect("json");
    assert_eq!(read["spec"]["service"]["port"], 443, "port defaulted");
    let c = wait_available(&api, "v1.example.skiff.dev", "False (ServiceNotFound)").await;
    assert_eq!(
        c["message"],
        format!("service/missing in {NS:?} is not present")
    );
    api.delete("v1.example.skiff.dev", &DeleteParams::default())
        .await
        .expect("delete");
    for _ in 0..50 {
        if api
            .get_opt("v1.example.skiff.dev")
            .await
            .expect("get")
            .is_none()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the APIService was not deleted");
}

#[tokio::test]
async fn proxies_to_an_extension_api_server() {
    // Upstream's interval: only changes, re-checks of failures and proxy errors drive checks.
    let env = start(Duration::from_secs(30)).await;
    let client = env.client.clone();
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "kube-system");
    let cm = cms
        .get("extension-apiserver-authentication")
        .await
        .expect("configmap");
    let data = cm.data.expect("data");
    assert_eq!(
        data["requestheader-allowed-names"],
        "[\"front-proxy-client\"]"
    );
    assert_eq!(
        data["requestheader-username-headers"],
        "[\"X-Remote-User\"]"
    );
    assert_eq!(data["requestheader-group-headers"], "[\"X-Remote-Group\"]");
    assert_eq!(
        data["requestheader-extra-headers-prefix"],
        "[\"X-Remote-Extra-\"]"
    );
    assert!(data["client-ca-file"].contains("BEGIN CERTIFICATE"));
    let front_ca = data["requestheader-client-ca-file"].clone();
    assert_ne!(front_ca, data["client-ca-file"]);

    let net = PodNet::create();
    let ext = ext_server(&front_ca, &format!("ext-api.{NS}.svc"), &net).await;

    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": NS}})).expect("ns"),
    )
    .await
    .expect("namespace");
    let api: Api<APIService> = Api::all(client.clone());
    let apiservice: APIService = serde_json::from_value(json!({
        "metadata": {"name": "v1.example.skiff.dev"},
        "spec": {"group": GROUP, "version": "v1", "groupPriorityMinimum": 100,
            "versionPriority": 10,
            "caBundle": base64::engine::general_purpose::STANDARD.encode(&ext.ca_pem),
            "service": {"namespace": NS, "name": "ext-api", "port": 443}},
    }))
    .expect("apiservice");
    api.create(&PostParams::default(), &apiservice)
        .await
        .expect("create");
    // Registered before its Service exists: unavailable, then re-checked within seconds once
    // the Service and its endpoints appear (they are not watched).
    wait_available(&api, "v1.example.skiff.dev", "False (ServiceNotFound)").await;
    let svcs: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), NS);
    svcs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "ext-api"},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 4443}]}}))
        .expect("svc"),
    )
    .await
    .expect("service");
    let eps: Api<k8s_openapi::api::core::v1::Endpoints> = Api::namespaced(client.clone(), NS);
    eps.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "ext-api"},
            "subsets": [{"addresses": [{"ip": net.peer_ip}],
                "ports": [{"name": "https", "port": ext.port}]}]}))
        .expect("endpoints"),
    )
    .await
    .expect("endpoints");

    let c = wait_available(&api, "v1.example.skiff.dev", "True").await;
    assert_eq!(c["reason"], "Passed");
    assert_eq!(c["message"], "all checks passed");

    // A proxied request carries the (impersonated) user, never the client's credentials.
    let (code, body) = raw(
        &client,
        http::Request::get(format!("/apis/{GROUP}/v1/namespaces/{NS}/widgets?limit=5"))
            .header("Impersonate-User", "alice")
            .header("Impersonate-Group", "system:masters")
            .header("Impersonate-Extra-Scopes", "read")
            .header("X-Remote-User", "mallory")
            .body(Vec::new())
            .expect("request"),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let echo = &body["echo"];
    assert_eq!(
        echo["path"],
        format!("/apis/{GROUP}/v1/namespaces/{NS}/widgets")
    );
    assert_eq!(echo["cn"], "front-proxy-client");
    assert_eq!(echo["user"], json!(["alice"]));
    assert_eq!(
        echo["groups"],
        json!(["system:masters", "system:authenticated"])
    );
    assert_eq!(echo["extraScopes"], json!(["read"]));
    assert_eq!(echo["authorization"], json!([]));
    assert_eq!(echo["impersonate"], json!([]));
    assert_eq!(echo["host"], json!([format!("ext-api.{NS}.svc")]));

    // An upgraded stream (exec-like) is spliced both ways.
    assert_eq!(upgrade_echo(&env).await, "ping-pong");

    // Authorization happens here first: a user without RBAC never reaches the server.
    let (code, _) = raw(
        &client,
        http::Request::get(format!("/apis/{GROUP}/v1/namespaces/{NS}/widgets"))
            .header("Impersonate-User", "bob")
            .body(Vec::new())
            .expect("request"),
    )
    .await;
    assert_eq!(code, 403);

    // Legacy discovery.
    let (_, apis) = get(&client, "/apis").await;
    let group = apis["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["name"] == GROUP)
        .cloned()
        .expect("group listed");
    assert_eq!(
        group["preferredVersion"]["groupVersion"],
        format!("{GROUP}/v1")
    );
    let (code, g) = get(&client, &format!("/apis/{GROUP}")).await;
    assert_eq!((code, g["kind"].as_str()), (200, Some("APIGroup")));
    let (code, list) = get(&client, &format!("/apis/{GROUP}/v1")).await;
    assert_eq!(code, 200);
    assert_eq!(list["resources"][0]["name"], "widgets");

    // Aggregated discovery.
    let item = aggregated_item(&client, "Current").await;
    assert_eq!(item["versions"][0]["resources"][0]["resource"], "widgets");
    assert_eq!(item["versions"][0]["resources"][0]["scope"], "Namespaced");
    assert_eq!(
        item["versions"][0]["resources"][0]["categories"],
        json!(["from-aggregated"]),
        "the server's own aggregated discovery is merged"
    );

    // A group/version skiff serves itself (the computed metrics API), pointed at a service
    // as metrics-server's manifest does: proxied instead.
    let mut metrics = api.get("v1beta1.metrics.k8s.io").await.expect("get");
    let spec = metrics.spec.as_mut().expect("spec");
    spec.service = Some(
        serde_json::from_value(json!({"namespace": NS, "name": "ext-api", "port": 443}))
            .expect("service reference"),
    );
    spec.insecure_skip_tls_verify = Some(true);
    api.replace("v1beta1.metrics.k8s.io", &PostParams::default(), &metrics)
        .await
        .expect("replace");
    wait_available(&api, "v1beta1.metrics.k8s.io", "True (Passed)").await;
    // (Routing follows the configuration cache, a few milliseconds behind the store.)
    let mut body = Value::Null;
    for _ in 0..20 {
        let (code, b) = get(&client, "/apis/metrics.k8s.io/v1beta1/nodes").await;
        assert_eq!(code, 200, "{b}");
        body = b;
        if !body["echo"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(body["echo"]["path"], "/apis/metrics.k8s.io/v1beta1/nodes");

    // The server goes away: the next proxied request fails (503) and triggers a re-check.
    ext.task.abort();
    let _ = ext.task.await;
    let (code, _) = get(
        &client,
        &format!("/apis/{GROUP}/v1/namespaces/{NS}/widgets"),
    )
    .await;
    assert_eq!(code, 503);
    let c = wait_available(&api, "v1.example.skiff.dev", "False (FailedDiscoveryCheck)").await;
    assert!(
        c["message"].as_str().unwrap_or("").starts_with(&format!(
            "failing or missing response from https://ext-api.{NS}.svc:443/apis/{GROUP}/v1"
        )),
        "{c}"
    );
    let (code, _) = get(&client, &format!("/apis/{GROUP}/v1")).await;
    assert_eq!(code, 503, "kubectl: couldn't get resource list");
    aggregated_item(&client, "Stale").await;

    // Deleted: the group leaves discovery.
    api.delete("v1.example.skiff.dev", &DeleteParams::default())
        .await
        .expect("delete");
    for _ in 0..50 {
        let (_, apis) = get(&client, "/apis").await;
        if !apis["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .any(|g| g["name"] == GROUP)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the group stayed in discovery after its APIService was deleted");
}
