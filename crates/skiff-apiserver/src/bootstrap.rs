//! Servers of one cluster share their identity through the datastore, as k3s does: the cluster
//! CA, the front-proxy (requestheader) CA, the ServiceAccount signing key, the admin and node
//! tokens and the Secrets encryption configuration ([`SHARED_FILES`]) are kept, encrypted, under
//! `/bootstrap/<first 12 hex digits of sha256(token)>`.
//!
//! * The value is JSON `{"salt", "nonce", "data"}` (base64): `data` is AES-256-GCM over the JSON
//!   `{"files": {path: base64}}`, with a key derived from the token by PBKDF2-HMAC-SHA256
//!   ([`PBKDF2_ITERATIONS`], a random salt per write) and the store key as authenticated data.
//! * [`run`] happens before `Server::bind`: with the key present, the files are written into this
//!   server's data dir (0600); absent and no other `/bootstrap/` key either, this is the first
//!   server: it makes (or loads) its material and creates the key. A create that loses the race
//!   to a peer takes the peer's copy. A key of another token means a wrong token: a clear error,
//!   never a second CA.
//! * Serving certificates stay per server (own SANs), signed by the shared CA.
//! * [`publish`] updates the shared copy from the local files (after `secrets-encrypt
//!   rotate-keys`, or when encryption is turned on later).

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Value};
use sha2::Digest;
use skiff_store::{ListOptions, Store, StoreError};

/// Store keys of the shared bootstrap data.
pub const PREFIX: &str = "/bootstrap/";
/// PBKDF2 rounds deriving the encryption key from the token.
pub const PBKDF2_ITERATIONS: u32 = 100_000;
const SALT_LEN: usize = 16;
/// A generous bound on the stored value (a few PEM files and small JSON documents).
const MAX_VALUE: usize = 1 << 20;

/// Files every server of a cluster shares, relative to the data dir.
pub const SHARED_FILES: &[&str] = &[
    "server/tls/ca.crt",
    "server/tls/ca.key",
    "server/tls/front-proxy-ca.crt",
    "server/tls/front-proxy-ca.key",
    "server/service-account.key",
    "server/admin-token",
    "node-token",
    ENCRYPTION_CONFIG,
];
/// The only shared file that may change after the first start (key rotation); the shared copy
/// wins over a local one.
const ENCRYPTION_CONFIG: &str = "server/cred/encryption-config.json";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("the datastore already holds the bootstrap data of a cluster with another token: this server's token is wrong (use the first server's <data-dir>/node-token with --token or --token-file)")]
    WrongToken,
    #[error("the datastore already holds a cluster: pass its token with --token or --token-file (the first server's <data-dir>/node-token)")]
    NoToken,
    #[error("the given token differs from the one this data dir already uses ({0}); a server keeps its cluster's token")]
    TokenMismatch(PathBuf),
    #[error("the token is empty or has whitespace or control characters")]
    BadToken,
    #[error("cannot decrypt the cluster's bootstrap data {0} with this token (wrong token or damaged data)")]
    Decrypt(String),
    #[error("the cluster's bootstrap data {key} is damaged: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("{0} differs from the cluster's copy: this data dir belongs to another cluster (move its server/ and node-token away to join this one)")]
    Conflict(PathBuf),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("the system random source failed")]
    Random,
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Server(#[from] crate::ServerError),
    #[error(transparent)]
    Encryption(#[from] crate::encryption::EncryptionError),
}

/// How this server got its shared material.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// First server: its material is now the cluster's.
    Created,
    /// The material came from the datastore.
    Joined,
    /// First server, but the datastore is full: the material stays local until a later start
    /// shares it (a single server works; joining servers wait for that start).
    NotShared,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub outcome: Outcome,
    /// The store key holding the shared data.
    pub key: String,
    /// Shared files written into the data dir from the datastore (relative paths).
    pub written: Vec<String>,
}

/// The store key for `token`.
pub fn key_for(token: &str) -> String {
    let digest = sha2::Sha256::digest(token.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{PREFIX}{hex}")
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BootstrapError {
    let context = context.into();
    move |source| BootstrapError::Io { context, source }
}

fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, BootstrapError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(format!("reading {}", path.display()))(e)),
    }
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), BootstrapError> {
    if let Some(dir) = path.parent() {
        crate::private_dir(dir)?;
    }
    skiff_client::fs::write_private(path, data).map_err(io(format!("writing {}", path.display())))
}

fn valid_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= 512 && token.chars().all(|c| c.is_ascii_graphic())
}

/// The token: the given one, else the data dir's `node-token`; a given token must match a
/// stored one.
fn resolve_token(data_dir: &Path, given: Option<&str>) -> Result<Option<String>, BootstrapError> {
    let path = data_dir.join("node-token");
    let local = read_opt(&path)?
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .filter(|t| !t.is_empty());
    let given = given.map(str::trim);
    if let Some(g) = given {
        if !valid_token(g) {
            return Err(BootstrapError::BadToken);
        }
    }
    match (given, local) {
        (Some(g), Some(l)) if g != l => Err(BootstrapError::TokenMismatch(path)),
        (Some(g), _) => Ok(Some(g.to_string())),
        (None, l) => Ok(l),
    }
}

fn derive_key(token: &str, salt: &[u8]) -> Result<LessSafeKey, BootstrapError> {
    let mut key = [0u8; 32];
    let rounds = NonZeroU32::new(PBKDF2_ITERATIONS).ok_or(BootstrapError::Random)?;
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt,
        token.as_bytes(),
        &mut key,
    );
    let unbound = UnboundKey::new(&AES_256_GCM, &key).map_err(|_| BootstrapError::Random)?;
    Ok(LessSafeKey::new(unbound))
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// Seals `files` (relative path → content) for `key`.
fn seal(
    token: &str,
    key: &str,
    files: &std::collections::BTreeMap<String, Vec<u8>>,
) -> Result<Vec<u8>, BootstrapError> {
    let rng = SystemRandom::new();
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut salt).map_err(|_| BootstrapError::Random)?;
    rng.fill(&mut nonce).map_err(|_| BootstrapError::Random)?;
    let doc: serde_json::Map<String, Value> = files
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(b64().encode(v))))
        .collect();
    let mut data =
        serde_json::to_vec(&json!({ "files": doc })).map_err(|e| BootstrapError::Corrupt {
            key: key.to_string(),
            reason: e.to_string(),
        })?;
    derive_key(token, &salt)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(key.as_bytes()),
            &mut data,
        )
        .map_err(|_| BootstrapError::Random)?;
    let value = json!({
        "salt": b64().encode(salt),
        "nonce": b64().encode(nonce),
        "data": b64().encode(&data),
    });
    serde_json::to_vec(&value).map_err(|e| BootstrapError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

/// Opens a stored value into relative path → content.
fn open(
    token: &str,
    key: &str,
    value: &[u8],
) -> Result<std::collections::BTreeMap<String, Vec<u8>>, BootstrapError> {
    let corrupt = |reason: &str| BootstrapError::Corrupt {
        key: key.to_string(),
        reason: reason.to_string(),
    };
    if value.len() > MAX_VALUE {
        return Err(corrupt("too large"));
    }
    let doc: Value = serde_json::from_slice(value).map_err(|e| corrupt(&e.to_string()))?;
    let field = |name: &str| -> Result<Vec<u8>, BootstrapError> {
        let text = doc
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| corrupt(&format!("no {name}")))?;
        b64()
            .decode(text)
            .map_err(|_| corrupt(&format!("{name} is not base64")))
    };
    let (salt, nonce, mut data) = (field("salt")?, field("nonce")?, field("data")?);
    let nonce: [u8; NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| corrupt("the nonce has the wrong length"))?;
    let plain = derive_key(token, &salt)?
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(key.as_bytes()),
            &mut data,
        )
        .map_err(|_| BootstrapError::Decrypt(key.to_string()))?;
    let doc: Value = serde_json::from_slice(plain).map_err(|e| corrupt(&e.to_string()))?;
    let files = doc
        .get("files")
        .and_then(Value::as_object)
        .ok_or_else(|| corrupt("no files"))?;
    let mut out = std::collections::BTreeMap::new();
    for (path, content) in files {
        // Only the known files: a stored path can never point outside the data dir.
        if !SHARED_FILES.contains(&path.as_str()) {
            continue;
        }
        let content = content
            .as_str()
            .and_then(|c| b64().decode(c).ok())
            .ok_or_else(|| corrupt(&format!("{path} is not base64")))?;
        out.insert(path.clone(), content);
    }
    Ok(out)
}

/// The shared files present in the data dir.
fn collect(data_dir: &Path) -> Result<std::collections::BTreeMap<String, Vec<u8>>, BootstrapError> {
    let mut files = std::collections::BTreeMap::new();
    for rel in SHARED_FILES {
        if let Some(content) = read_opt(&data_dir.join(rel))? {
            files.insert(rel.to_string(), content);
        }
    }
    Ok(files)
}

/// Creates (or loads) this server's own material: what the first server shares.
fn ensure_local(
    data_dir: &Path,
    token: &str,
    secrets_encryption: bool,
) -> Result<(), BootstrapError> {
    let server_dir = data_dir.join("server");
    crate::private_dir(&server_dir)?;
    let node_token = data_dir.join("node-token");
    if read_opt(&node_token)?.is_none() {
        write_private(&node_token, format!("{token}\n").as_bytes())?;
    }
    crate::tls::ensure_ca(&server_dir.join("tls"))?;
    crate::aggregator::certs::ensure_ca(&server_dir.join("tls"))?;
    crate::serviceaccount::jwt::SigningKey::load_or_create(
        &server_dir.join("service-account.key"),
    )?;
    crate::auth::Tokens::ensure(data_dir)?;
    crate::encryption::Config::ensure(data_dir, secrets_encryption)?;
    Ok(())
}

/// Writes the shared files into the data dir. Identity files (CAs, keys, tokens) that exist
/// with other content are a conflict, unless `replace_own` (this start made them and lost the
/// race to a peer); the encryption configuration follows the shared copy.
fn apply(
    data_dir: &Path,
    files: &std::collections::BTreeMap<String, Vec<u8>>,
    replace_own: bool,
) -> Result<Vec<String>, BootstrapError> {
    // Check everything first so a conflict leaves the data dir untouched.
    for (rel, content) in files.iter().filter(|_| !replace_own) {
        let path = data_dir.join(rel);
        if rel != ENCRYPTION_CONFIG {
            if let Some(local) = read_opt(&path)? {
                let same = if rel == "node-token" || rel == "server/admin-token" {
                    String::from_utf8_lossy(&local).trim()
                        == String::from_utf8_lossy(content).trim()
                } else {
                    local == *content
                };
                if !same {
                    return Err(BootstrapError::Conflict(path));
                }
            }
        }
    }
    let mut written = Vec::new();
    for (rel, content) in files {
        let path = data_dir.join(rel);
        if read_opt(&path)?.is_some_and(|l| l == *content) {
            continue;
        }
        if rel == "server/tls/ca.crt" {
            // A serving certificate from another CA must be re-issued by the shared one.
            let tls = data_dir.join("server").join("tls");
            let _ = std::fs::remove_file(tls.join("server.crt"));
            let _ = std::fs::remove_file(tls.join("server.sans"));
        }
        write_private(&path, content)?;
        written.push(rel.clone());
    }
    Ok(written)
}

/// The bootstrap step of `skiff server`, before `Server::bind` (and before the encryption
/// wrapper reads its configuration): see the module docs. `store` is the raw store.
pub async fn run(
    data_dir: &Path,
    token: Option<&str>,
    secrets_encryption: bool,
    store: &dyn Store,
) -> Result<Report, BootstrapError> {
    crate::private_dir(data_dir)?;
    let token = resolve_token(data_dir, token)?;
    let token = match token {
        Some(t) => t,
        None => {
            if !others(store, "").await?.is_empty() {
                return Err(BootstrapError::NoToken);
            }
            crate::auth::random_token()
        }
    };
    let key = key_for(&token);
    let mut made_own = false;
    // At most a few rounds: a lost create race re-reads the winner's value.
    for _ in 0..3 {
        if let Some(kv) = store.get(&key).await? {
            let files = open(&token, &key, &kv.value)?;
            let had_encryption = files.contains_key(ENCRYPTION_CONFIG);
            let written = apply(data_dir, &files, made_own)?;
            // Encryption turned on after the cluster was created (or a local configuration the
            // cluster lacks): it becomes the cluster's.
            if !had_encryption
                && (secrets_encryption || read_opt(&data_dir.join(ENCRYPTION_CONFIG))?.is_some())
            {
                crate::encryption::Config::ensure(data_dir, secrets_encryption)?;
                publish(data_dir, &token, store).await?;
                tracing::warn!("secrets encryption is now part of the shared cluster configuration: restart the other servers so they use its key");
            }
            return Ok(Report {
                outcome: Outcome::Joined,
                key,
                written,
            });
        }
        if !others(store, &key).await?.is_empty() {
            return Err(BootstrapError::WrongToken);
        }
        ensure_local(data_dir, &token, secrets_encryption)?;
        made_own = true;
        let value = seal(&token, &key, &collect(data_dir)?)?;
        match store.create(&key, value).await {
            Ok(created) => {
                // Two first servers with different tokens: the older key wins, the newer
                // steps back so the cluster never has two CAs.
                let rivals = others(store, &key).await?;
                if rivals
                    .iter()
                    .any(|kv| kv.create_revision < created.create_revision)
                {
                    let _ = store.delete(&key, Some(created.mod_revision)).await;
                    return Err(BootstrapError::WrongToken);
                }
                return Ok(Report {
                    outcome: Outcome::Created,
                    key,
                    written: Vec::new(),
                });
            }
            Err(StoreError::AlreadyExists(_)) => continue,
            // A single server must still start on a full disk (reads and deletes free space).
            Err(e @ (StoreError::Full(_) | StoreError::SpaceExceeded(_))) => {
                tracing::warn!("cluster bootstrap data not shared yet: {e}");
                return Ok(Report {
                    outcome: Outcome::NotShared,
                    key,
                    written: Vec::new(),
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(BootstrapError::Store(StoreError::Unavailable(format!(
        "{key} keeps changing while being read"
    ))))
}

/// The `/bootstrap/` keys other than `key`.
async fn others(
    store: &dyn Store,
    key: &str,
) -> Result<Vec<skiff_store::KeyValue>, BootstrapError> {
    let list = store
        .list(
            PREFIX,
            &ListOptions {
                limit: 16,
                ..Default::default()
            },
        )
        .await?;
    Ok(list.items.into_iter().filter(|kv| kv.key != key).collect())
}

/// Replaces the shared copy with this data dir's shared files (after `secrets-encrypt
/// rotate-keys`). The token is the data dir's `node-token`; the key must exist.
pub async fn publish(
    data_dir: &Path,
    token: &str,
    store: &dyn Store,
) -> Result<(), BootstrapError> {
    let key = key_for(token);
    for _ in 0..3 {
        let Some(kv) = store.get(&key).await? else {
            return Err(BootstrapError::Corrupt {
                key,
                reason: "missing (start a server first)".into(),
            });
        };
        // Proves the token before overwriting.
        let mut files = open(token, &key, &kv.value)?;
        files.extend(collect(data_dir)?);
        let value = seal(token, &key, &files)?;
        match store.update(&key, value, kv.mod_revision).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(BootstrapError::Store(StoreError::Unavailable(format!(
        "{key} keeps changing while being updated"
    ))))
}

/// Publishes the data dir's shared files when the data dir holds a token and the datastore a
/// bootstrap key for it; a no-op otherwise (a data dir whose server never started).
pub async fn publish_local(data_dir: &Path, store: &dyn Store) -> Result<bool, BootstrapError> {
    let Some(token) = resolve_token(data_dir, None)? else {
        return Ok(false);
    };
    if store.get(&key_for(&token)).await?.is_none() {
        return Ok(false);
    }
    publish(data_dir, &token, store).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_and_reject_other_tokens_and_keys() {
        let mut files = std::collections::BTreeMap::new();
        files.insert("server/tls/ca.crt".to_string(), b"CA".to_vec());
        files.insert("../../etc/passwd".to_string(), b"x".to_vec());
        let key = key_for("t1");
        let sealed = seal("t1", &key, &files).unwrap();
        let opened = open("t1", &key, &sealed).unwrap();
        assert_eq!(opened.get("server/tls/ca.crt").unwrap(), b"CA");
        assert!(!opened.contains_key("../../etc/passwd"));
        assert!(matches!(
            open("t2", &key, &sealed),
            Err(BootstrapError::Decrypt(_))
        ));
        assert!(matches!(
            open("t1", "/bootstrap/other", &sealed),
            Err(BootstrapError::Decrypt(_))
        ));
        assert_eq!(key_for("t1").len(), PREFIX.len() + 12);
    }
}
