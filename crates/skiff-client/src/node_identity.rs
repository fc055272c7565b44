//! A node's own identity: the join token only bootstraps. The agent exchanges it once for a
//! client certificate `CN=system:node:<name>, O=system:nodes` signed by the cluster CA (POST
//! [`PATH`], as k3s agents get their kubelet client certificate), keeps it in its data dir
//! (0600) next to a kubeconfig that points at it, and uses it for every API call. The
//! certificate is renewed at two thirds of its life — checked at start, then by
//! [`NodeIdentity::run`] — authenticating with the certificate itself (the join token only
//! when that no longer works). The API client from [`NodeIdentity::client`] always sends the
//! current certificate, so nothing that holds it needs rebuilding after a renewal. Like k3s,
//! the agent also keeps a random node password (`node-password`): with the join token, the
//! server issues the identity of a node whose Node object exists only to the machine that
//! presented the same password before.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::node_cert::NodeCert;

/// Where agents ask for their client certificate.
pub const PATH: &str = "/v1-skiff/node-client-cert";

/// The user name of node `name`'s identity.
pub fn node_user(name: &str) -> String {
    format!("system:node:{name}")
}

/// The request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeClientCertRequest {
    pub node_name: String,
    /// Requested lifetime (like a CSR's `spec.expirationSeconds`); the server caps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_seconds: Option<u64>,
    /// The node's own secret (k3s's node password): with the join token, a name whose Node
    /// exists is issued only to the machine that first claimed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_password: Option<String>,
}

/// Asks the API server behind `client` (the join token, or the node's current certificate)
/// for a client certificate for node `node_name`.
pub async fn request(
    client: &kube::Client,
    node_name: &str,
    expiration_seconds: Option<u64>,
    node_password: Option<&str>,
) -> Result<NodeCert, kube::Error> {
    let body = NodeClientCertRequest {
        node_name: node_name.to_string(),
        expiration_seconds,
        node_password: node_password.map(str::to_string),
    };
    let body = serde_json::to_vec(&body).map_err(kube::Error::SerdeError)?;
    let req = http::Request::post(PATH)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .map_err(kube::Error::HttpError)?;
    client.request::<NodeCert>(req).await
}

/// Errors establishing or renewing the identity.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Client(#[from] crate::Error),
    #[error("requesting the node client certificate: {0}")]
    Request(#[from] kube::Error),
    #[error("the issued certificate is unusable: {0}")]
    BadCert(String),
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> IdentityError {
    move |source| IdentityError::Io { context, source }
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub common_name: String,
    pub organizations: Vec<String>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

impl CertInfo {
    /// Parses the first certificate of a PEM text.
    pub fn parse(pem: &str) -> Option<Self> {
        let der = rustls_pemfile::certs(&mut pem.as_bytes()).next()?.ok()?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
        let subject = cert.subject();
        let common_name = subject
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
            .unwrap_or("")
            .to_string();
        let organizations: Vec<String> = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok())
            .map(str::to_string)
            .collect();
        let info = CertInfo {
            common_name,
            organizations,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        };
        Some(info)
    }

    /// When the certificate is due for renewal: two thirds into its life (Unix seconds).
    pub fn renew_at(&self) -> i64 {
        let life = (self.not_after - self.not_before).max(0);
        self.not_before + life * 2 / 3
    }
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The files of a node identity in the agent's directory.
#[derive(Debug, Clone)]
pub struct Files {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A kubeconfig using them (for kubectl on the node, and tests).
    pub kubeconfig: PathBuf,
    /// The node password, created on first join.
    pub password: PathBuf,
}

impl Files {
    pub fn in_dir(dir: &Path) -> Self {
        Files {
            cert: dir.join("client-node.crt"),
            key: dir.join("client-node.key"),
            kubeconfig: dir.join("node.kubeconfig"),
            password: dir.join("node-password"),
        }
    }
}

/// How to reach the API server and who to be.
#[derive(Clone)]
pub struct IdentityOptions {
    pub server: String,
    pub ca_pem: Vec<u8>,
    pub join_token: String,
    pub node_name: String,
    /// Where the certificate, key and kubeconfig live (the agent's state dir).
    pub dir: PathBuf,
    /// Ask for this lifetime instead of the server's default (tests).
    pub expiration_seconds: Option<u64>,
}

/// A `tower::Service` that sends every request with the client of the current certificate.
#[derive(Clone)]
struct Current(Arc<RwLock<kube::Client>>);

impl Current {
    fn get(&self) -> kube::Client {
        match self.0.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, client: kube::Client) {
        match self.0.write() {
            Ok(mut c) => *c = client,
            Err(poisoned) => *poisoned.into_inner() = client,
        }
    }
}

impl tower::Service<http::Request<kube::client::Body>> for Current {
    type Response = http::Response<kube::client::Body>;
    type Error = kube::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, kube::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), kube::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<kube::client::Body>) -> Self::Future {
        let client = self.get();
        Box::pin(async move { client.send(req).await })
    }
}

/// A node's certificate-based identity.
pub struct NodeIdentity {
    opts: IdentityOptions,
    files: Files,
    password: String,
    current: Current,
    /// The current certificate's validity.
    info: RwLock<CertInfo>,
    client: kube::Client,
}

impl NodeIdentity {
    /// Loads the kept certificate when it is for this node, still accepted and not due for
    /// renewal; otherwise exchanges the join token for a new one.
    pub async fn establish(opts: IdentityOptions) -> Result<Arc<Self>, IdentityError> {
        private_dir(&opts.dir)?;
        let files = Files::in_dir(&opts.dir);
        let password = node_password(&files.password)?;
        let kept = read_kept(&files, &opts.node_name);
        let mut chosen = None;
        if let Some((cert, key, info)) = kept.clone() {
            let client = crate::config::with_client_cert(&opts.server, &opts.ca_pem, &cert, &key)?;
            // An authenticated read the node may always do: 401 means the cluster no longer
            // accepts the certificate (a new CA, say); anything else keeps it.
            let probe: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
            match probe.get_opt(&opts.node_name).await {
                Err(kube::Error::Api(ae)) if ae.code == 401 => {
                    tracing::info!(node = %opts.node_name, "the kept node certificate is no longer accepted")
                }
                Err(e) if !matches!(e, kube::Error::Api(_)) => {
                    tracing::debug!(node = %opts.node_name, "probing the kept node certificate: {e}")
                }
                _ => chosen = Some((client, info)),
            }
        }
        let (client, info) = match chosen {
            Some(c) => c,
            None => match mint_with_token(&opts, &files, &password).await {
                Ok(c) => c,
                // The server may be briefly unreachable: start with the kept certificate.
                Err(e) => match kept {
                    Some((cert, key, info)) => {
                        tracing::warn!(node = %opts.node_name, "renewing the node certificate: {e}");
                        (
                            crate::config::with_client_cert(
                                &opts.server,
                                &opts.ca_pem,
                                &cert,
                                &key,
                            )?,
                            info,
                        )
                    }
                    None => return Err(e),
                },
            },
        };
        write_kubeconfig(&opts, &files)?;
        let current = Current(Arc::new(RwLock::new(client)));
        let rotating = kube::Client::new(current.clone(), "default");
        Ok(Arc::new(NodeIdentity {
            opts,
            files,
            password,
            current,
            info: RwLock::new(info),
            client: rotating,
        }))
    }

    /// The API client: always the current certificate.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    pub fn files(&self) -> &Files {
        &self.files
    }

    /// The current certificate's validity.
    pub fn cert_info(&self) -> CertInfo {
        match self.info.read() {
            Ok(i) => i.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Renews now: asks with the current certificate, falling back to the join token when the
    /// certificate is refused; the new certificate replaces the files and the client's.
    pub async fn renew(&self) -> Result<(), IdentityError> {
        let issued = match request(
            &self.current.get(),
            &self.opts.node_name,
            self.opts.expiration_seconds,
            Some(&self.password),
        )
        .await
        {
            Ok(c) => c,
            Err(kube::Error::Api(ae)) if ae.code == 401 || ae.code == 403 => {
                let token = crate::config::with_token(
                    &self.opts.server,
                    &self.opts.ca_pem,
                    &self.opts.join_token,
                )?;
                request(
                    &token,
                    &self.opts.node_name,
                    self.opts.expiration_seconds,
                    Some(&self.password),
                )
                .await?
            }
            Err(e) => return Err(e.into()),
        };
        let (client, info) = install(&self.opts, &self.files, issued)?;
        self.current.set(client);
        match self.info.write() {
            Ok(mut i) => *i = info,
            Err(p) => *p.into_inner() = info,
        }
        Ok(())
    }

    /// Renews the certificate at two thirds of its life, until `stop` completes; a failed
    /// renewal is retried every 30 s.
    pub async fn run(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let wait = (self.cert_info().renew_at() - now_unix()).max(0) as u64;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(wait)) => {}
                _ = &mut stop => return,
            }
            match self.renew().await {
                Ok(()) => {
                    let info = self.cert_info();
                    tracing::info!(node = %self.opts.node_name, expires = info.not_after, "renewed the node client certificate");
                }
                Err(e) => {
                    tracing::warn!(node = %self.opts.node_name, "renewing the node client certificate: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                        _ = &mut stop => return,
                    }
                }
            }
        }
    }
}

fn private_dir(dir: &Path) -> Result<(), IdentityError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("restricting {}", dir.display())))
}

/// The kept certificate and key when they are for this node and not yet due for renewal.
fn read_kept(files: &Files, node: &str) -> Option<(String, String, CertInfo)> {
    let cert = std::fs::read_to_string(&files.cert).ok()?;
    let key = std::fs::read_to_string(&files.key).ok()?;
    let info = CertInfo::parse(&cert)?;
    let ok = info.common_name == node_user(node)
        && info.organizations.iter().any(|o| o == "system:nodes")
        && now_unix() < info.renew_at();
    ok.then_some((cert, key, info))
}

/// The node password kept in `path`, created (32 random bytes, hex) on first use.
fn node_password(path: &Path) -> Result<String, IdentityError> {
    use std::io::Read;
    match std::fs::read_to_string(path) {
        Ok(p) if !p.trim().is_empty() => return Ok(p.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(io("reading /dev/urandom".to_string()))?;
    let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    crate::fs::write_private(path, format!("{password}\n").as_bytes())
        .map_err(io(format!("writing {}", path.display())))?;
    Ok(password)
}

async fn mint_with_token(
    opts: &IdentityOptions,
    files: &Files,
    password: &str,
) -> Result<(kube::Client, CertInfo), IdentityError> {
    let token = crate::config::with_token(&opts.server, &opts.ca_pem, &opts.join_token)?;
    let issued = request(
        &token,
        &opts.node_name,
        opts.expiration_seconds,
        Some(password),
    )
    .await?;
    install(opts, files, issued)
}

/// Checks an issued certificate, writes it (key first) and builds its client.
fn install(
    opts: &IdentityOptions,
    files: &Files,
    issued: NodeCert,
) -> Result<(kube::Client, CertInfo), IdentityError> {
    let info = CertInfo::parse(&issued.cert)
        .ok_or_else(|| IdentityError::BadCert("not a PEM certificate".into()))?;
    if info.common_name != node_user(&opts.node_name) {
        return Err(IdentityError::BadCert(format!(
            "issued for {:?}, not {:?}",
            info.common_name,
            node_user(&opts.node_name)
        )));
    }
    let client =
        crate::config::with_client_cert(&opts.server, &opts.ca_pem, &issued.cert, &issued.key)?;
    crate::fs::write_private(&files.key, issued.key.as_bytes())
        .map_err(io(format!("writing {}", files.key.display())))?;
    crate::fs::write_private(&files.cert, issued.cert.as_bytes())
        .map_err(io(format!("writing {}", files.cert.display())))?;
    Ok((client, info))
}

/// A kubeconfig for the node's identity that points at the kept files (as k3s's
/// `kubelet.kubeconfig`), so it stays current across renewals.
fn write_kubeconfig(opts: &IdentityOptions, files: &Files) -> Result<(), IdentityError> {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(&opts.ca_pem);
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    client-certificate: {cert}\n    client-key: {key}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: {user}\ncurrent-context: skiff\npreferences: {{}}\n",
        server = opts.server,
        user = node_user(&opts.node_name),
        cert = files.cert.display(),
        key = files.key.display(),
    );
    crate::fs::write_private(&files.kubeconfig, text.as_bytes())
        .map_err(io(format!("writing {}", files.kubeconfig.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_shape() {
        let req = NodeClientCertRequest {
            node_name: "n1".into(),
            expiration_seconds: None,
            node_password: None,
        };
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            serde_json::json!({"nodeName": "n1"})
        );
    }

    #[test]
    fn renewal_is_due_at_two_thirds_of_the_life() {
        let info = CertInfo {
            common_name: "system:node:n1".into(),
            organizations: vec!["system:nodes".into()],
            not_before: 1000,
            not_after: 4000,
        };
        assert_eq!(info.renew_at(), 3000);
    }

    #[test]
    fn kept_certificates_must_be_this_nodes_and_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::in_dir(dir.path());
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let write = |cn: &str, lived: i64, left: i64| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            let mut dn = rcgen::DistinguishedName::new();
            dn.push(rcgen::DnType::CommonName, cn);
            dn.push(rcgen::DnType::OrganizationName, "system:nodes");
            p.distinguished_name = dn;
            let now = time::OffsetDateTime::now_utc();
            p.not_before = now - time::Duration::seconds(lived);
            p.not_after = now + time::Duration::seconds(left);
            let cert = p.signed_by(&key, &issuer).unwrap();
            std::fs::write(&files.cert, cert.pem()).unwrap();
            std::fs::write(&files.key, key.serialize_pem()).unwrap();
        };
        write("system:node:n1", 100, 10_000);
        let (_, _, info) = read_kept(&files, "n1").expect("fresh certificate kept");
        assert_eq!(info.common_name, "system:node:n1");
        assert!(
            read_kept(&files, "n2").is_none(),
            "another node's certificate"
        );
        // Two thirds into its life: renewed.
        write("system:node:n1", 7_000, 3_000);
        assert!(read_kept(&files, "n1").is_none());
    }
}
