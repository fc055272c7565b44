//! Bearer-token authentication: an admin token (written into `<data-dir>/kubeconfig.yaml`) and a
//! node token (`<data-dir>/node-token`, for agents joining), both created once and kept.

use std::net::SocketAddr;
use std::path::Path;

use base64::Engine;
use rand::RngCore;

use crate::{io_err, ServerError};

/// Who a request authenticated as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    Admin,
    Node,
}

/// The accepted bearer tokens.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub admin: String,
    pub node: String,
}

fn random_token() -> String {
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

impl Tokens {
    /// Loads the tokens from the data dir, creating them on first start.
    pub fn ensure(data_dir: &Path) -> Result<Self, ServerError> {
        let admin = load_or_create(&data_dir.join("server").join("admin-token"))?;
        let node = load_or_create(&data_dir.join("node-token"))?;
        Ok(Self { admin, node })
    }

    /// Checks `Authorization: Bearer <token>`.
    pub fn authenticate(&self, headers: &http::HeaderMap) -> Option<Identity> {
        let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))?
            .trim();
        if ct_eq(token, &self.admin) {
            Some(Identity::Admin)
        } else if ct_eq(token, &self.node) {
            Some(Identity::Node)
        } else {
            None
        }
    }
}

// Constant-time comparison so token checks do not leak prefix matches through timing.
fn ct_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Writes the admin kubeconfig (cluster, user and context all named `skiff`).
pub(crate) fn write_kubeconfig(
    path: &Path,
    addr: SocketAddr,
    ca_pem: &str,
    token: &str,
) -> Result<(), ServerError> {
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: https://{host}:{port}\n    certificate-authority-data: {ca}\nusers:\n- name: skiff\n  user:\n    token: {token}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: skiff\ncurrent-context: skiff\npreferences: {{}}\n",
        port = addr.port()
    );
    write_file(path, &text)
}
