//! Authentication: who a request is. In order: the client certificate rustls verified against
//! the cluster CA (CN = user, O = groups; the admin kubeconfig, nodes, controllers, minted user
//! kubeconfigs), then a bearer token — the admin token (a static break-glass token file, in
//! `system:masters`), the node join token (which only bootstraps: `system:bootstrap:skiff-node`
//! in `system:bootstrappers`), then the registered [`TokenAuthenticator`]s (ServiceAccount JWTs).
//! No credential at all is 401: anonymous access is off, as in k3s. Impersonation follows in
//! [`impersonate`].

pub mod cert;
pub(crate) mod impersonate;
pub mod mint;
pub mod user;
pub mod x509;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use rand::RngCore;
use skiff_api::ApiError;

pub use user::UserInfo;
use user::{groups, users};

use crate::{io_err, AppState, ServerError};

/// The identity of a connection's verified client certificate, set on every request of the
/// connection as an extension.
#[derive(Debug, Clone)]
pub(crate) struct PeerUser(pub Arc<UserInfo>);

/// A bearer-token authenticator beyond the static tokens (ServiceAccount JWTs).
#[async_trait]
pub trait TokenAuthenticator: Send + Sync {
    /// None: not a token of this kind. Some(Err): one of ours, but rejected (401).
    async fn authenticate_token(
        &self,
        st: &AppState,
        token: &str,
    ) -> Option<Result<UserInfo, ApiError>>;
}

/// The static bearer tokens.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// `server/admin-token`: `system:admin` in `system:masters` (break-glass; kubeconfigs use
    /// client certificates).
    pub admin: String,
    /// `node-token`: joins agents (exchanged for a node certificate).
    pub node: String,
}

pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn load_or_create(path: &Path) -> Result<String, ServerError> {
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => {
            // Tighten a token file an older version left readable.
            write_file(path, &t)?;
            return Ok(t.trim().to_string());
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
    }
    let token = random_token();
    write_file(path, &format!("{token}\n"))?;
    Ok(token)
}

/// Writes a private (0600) file atomically; an identical file is left alone, so a restart on a
/// full disk does not fail here.
pub(crate) fn write_file(path: &Path, data: &str) -> Result<(), ServerError> {
    use std::os::unix::fs::PermissionsExt;
    if let (Ok(old), Ok(meta)) = (std::fs::read(path), std::fs::metadata(path)) {
        if old == data.as_bytes() {
            if meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(io_err(format!("restricting {}", path.display())))?;
            }
            return Ok(());
        }
    }
    skiff_client::fs::write_private(path, data.as_bytes())
        .map_err(io_err(format!("writing {}", path.display())))
}

/// The token of `Authorization: Bearer <token>`.
pub(crate) fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?
        .trim();
    (!token.is_empty()).then_some(token)
}

impl Tokens {
    /// Loads the tokens from the data dir, creating them on first start.
    pub fn ensure(data_dir: &Path) -> Result<Self, ServerError> {
        let admin = load_or_create(&data_dir.join("server").join("admin-token"))?;
        let node = load_or_create(&data_dir.join("node-token"))?;
        Ok(Self { admin, node })
    }

    /// The user of a static token.
    pub(crate) fn user_of(&self, token: &str) -> Option<UserInfo> {
        if ct_eq(token, &self.admin) {
            Some(UserInfo::new(users::ADMIN, &[groups::MASTERS]))
        } else if ct_eq(token, &self.node) {
            Some(UserInfo::new(
                users::NODE_BOOTSTRAP,
                &[groups::BOOTSTRAPPERS],
            ))
        } else {
            None
        }
    }

    /// Whether the request carries the node join token (the node certificate endpoints).
    pub(crate) fn is_node_token(&self, headers: &http::HeaderMap) -> bool {
        bearer(headers).is_some_and(|t| ct_eq(t, &self.node))
    }
}

/// Who sent the request: its verified client certificate, else its bearer token. Err is 401.
pub(crate) async fn authenticate(
    st: &AppState,
    parts: &http::request::Parts,
) -> Result<UserInfo, ApiError> {
    if let Some(PeerUser(user)) = parts.extensions.get::<PeerUser>() {
        return Ok((**user).clone());
    }
    let Some(token) = bearer(&parts.headers) else {
        return Err(ApiError::unauthorized());
    };
    if let Some(user) = st.tokens.user_of(token) {
        return Ok(user);
    }
    for a in &st.token_authenticators {
        if let Some(res) = a.authenticate_token(st, token).await {
            return res;
        }
    }
    Err(ApiError::unauthorized())
}

// Constant-time comparison so token checks do not leak prefix matches through timing.
fn ct_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How a kubeconfig's user authenticates.
pub enum KubeconfigUser<'a> {
    Cert(&'a cert::ClientCert),
    Token(&'a str),
}

/// A kubeconfig text (cluster, user and context all named `name`).
pub fn kubeconfig_text(server: &str, ca_pem: &str, name: &str, user: KubeconfigUser<'_>) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let user = match user {
        KubeconfigUser::Cert(c) => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&c.cert_pem),
            b64(&c.key_pem)
        ),
        KubeconfigUser::Token(t) => format!("    token: {t}\n"),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {name}\n  user:\n{user}contexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\ncurrent-context: {name}\npreferences: {{}}\n",
        ca = b64(ca_pem),
    )
}

/// `https://host:port` for a listen address (loopback for an unspecified one).
pub fn server_url(addr: SocketAddr) -> String {
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    format!("https://{host}:{}", addr.port())
}

/// Writes the admin kubeconfig: a client certificate for `system:admin` in `system:masters`.
pub(crate) fn write_kubeconfig(
    path: &Path,
    addr: SocketAddr,
    ca_pem: &str,
    cert: &cert::ClientCert,
) -> Result<(), ServerError> {
    let text = kubeconfig_text(
        &server_url(addr),
        ca_pem,
        "skiff",
        KubeconfigUser::Cert(cert),
    );
    write_file(path, &text)
}
