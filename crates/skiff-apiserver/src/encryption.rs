//! Secrets encryption at rest (k3s's `--secrets-encryption`), with upstream's
//! EncryptionConfiguration `aesgcm` provider semantics:
//!
//! * The keys live in `<data-dir>/server/cred/encryption-config.json` (0600, dir 0700), an
//!   upstream `EncryptionConfiguration` for `secrets` with an `aesgcm` provider (32-byte keys,
//!   base64) and an `identity` provider. The first provider writes: `aesgcm` first = encrypt
//!   with its first key; `identity` first = store plaintext.
//! * A stored value is `k8s:enc:aesgcm:v1:<key name>:` + 12-byte random nonce + AES-256-GCM
//!   ciphertext and tag; the storage key is the authenticated data, so a value cannot be moved
//!   to another Secret. Reads try the key the prefix names; a value without the prefix is read
//!   as plaintext (identity), so Secrets written before encryption was enabled stay readable.
//! * [`EncryptedStore`] wraps any [`Store`]: Secrets are sealed on create/update and opened on
//!   get, list, delete and watch; every other key passes through untouched.
//! * [`rotate_keys`] adds a new key, makes it current, rewrites every Secret under it and then
//!   drops the old keys (k3s's `secrets-encrypt rotate-keys`).
//!
//! AES-GCM is ring's (already in the build through rustls).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{json, Value};
use skiff_store::{
    Event, KeyValue, ListOptions, ListResult, Result as StoreResult, Store, StoreError, Watch,
};

/// Keys under this prefix are Secrets.
pub const SECRETS_PREFIX: &str = "/registry/core/secrets/";
const AESGCM_PREFIX: &[u8] = b"k8s:enc:aesgcm:v1:";
const ENC_PREFIX: &[u8] = b"k8s:enc:";

#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("invalid encryption configuration {path}: {reason}")]
    BadConfig { path: PathBuf, reason: String },
    #[error("secrets encryption is not enabled (no {0})")]
    NotEnabled(PathBuf),
    #[error("generating a key: the system random source failed")]
    Random,
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// The configuration file under a data dir.
pub fn config_path(data_dir: &Path) -> PathBuf {
    data_dir
        .join("server")
        .join("cred")
        .join("encryption-config.json")
}

/// The keys and which provider writes.
#[derive(Clone)]
pub struct Config {
    /// (name, 32-byte key), the current one first.
    pub keys: Vec<(String, [u8; 32])>,
    /// aesgcm is the first provider (encrypt writes); false = identity first.
    pub encrypt: bool,
}

impl Config {
    /// Loads the configuration; None when the file does not exist.
    pub fn load(data_dir: &Path) -> Result<Option<Config>, EncryptionError> {
        let path = config_path(data_dir);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(EncryptionError::Io {
                    context: format!("reading {}", path.display()),
                    source,
                })
            }
        };
        let bad = |reason: &str| EncryptionError::BadConfig {
            path: path.clone(),
            reason: reason.to_string(),
        };
        let doc: Value = serde_json::from_slice(&text).map_err(|e| bad(&e.to_string()))?;
        let resources = doc
            .get("resources")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no resources"))?;
        let entry = resources
            .iter()
            .find(|r| {
                r.get("resources")
                    .and_then(Value::as_array)
                    .is_some_and(|l| l.iter().any(|x| x == "secrets"))
            })
            .ok_or_else(|| bad("no entry for secrets"))?;
        let providers = entry
            .get("providers")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no providers"))?;
        let mut keys = Vec::new();
        let mut encrypt = None;
        for p in providers {
            if let Some(list) = p.pointer("/aesgcm/keys").and_then(Value::as_array) {
                encrypt.get_or_insert(true);
                for k in list {
                    let name = k.get("name").and_then(Value::as_str).unwrap_or("");
                    let secret = k.get("secret").and_then(Value::as_str).unwrap_or("");
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(secret)
                        .map_err(|_| bad("a key secret is not base64"))?;
                    let key: [u8; 32] = raw
                        .try_into()
                        .map_err(|_| bad("aesgcm keys must be 32 bytes"))?;
                    if name.is_empty() || name.contains(':') {
                        return Err(bad("key names must be non-empty and without ':'"));
                    }
                    keys.push((name.to_string(), key));
                }
            } else if p.get("identity").is_some() {
                encrypt.get_or_insert(false);
            } else {
                return Err(bad("only the aesgcm and identity providers are supported"));
            }
        }
        let encrypt = encrypt.unwrap_or(false);
        if encrypt && keys.is_empty() {
            return Err(bad("the aesgcm provider has no keys"));
        }
        Ok(Some(Config { keys, encrypt }))
    }

    /// Writes the configuration (0600, atomically) as an upstream EncryptionConfiguration.
    pub fn save(&self, data_dir: &Path) -> Result<(), EncryptionError> {
        let path = config_path(data_dir);
        if let Some(dir) = path.parent() {
            crate::private_dir(dir).map_err(|e| EncryptionError::Io {
                context: format!("creating {}", dir.display()),
                source: std::io::Error::other(e.to_string()),
            })?;
        }
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|(name, k)| {
                json!({"name": name, "secret": base64::engine::general_purpose::STANDARD.encode(k)})
            })
            .collect();
        let aesgcm = json!({"aesgcm": {"keys": keys}});
        let identity = json!({"identity": {}});
        let providers = if self.encrypt {
            vec![aesgcm, identity]
        } else {
            vec![identity, aesgcm]
        };
        let doc = json!({
            "kind": "EncryptionConfiguration",
            "apiVersion": "apiserver.config.k8s.io/v1",
            "resources": [{"resources": ["secrets"], "providers": providers}],
        });
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
        crate::auth::write_file(&path, &text).map_err(|e| EncryptionError::Io {
            context: format!("writing {}", path.display()),
            source: std::io::Error::other(e.to_string()),
        })
    }

    /// A fresh random key named like k3s's (`aesgcmkey-<time>`).
    pub fn new_key() -> Result<(String, [u8; 32]), EncryptionError> {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| EncryptionError::Random)?;
        let now = jiff::Timestamp::now();
        // No ':' allowed (it ends the name in the stored prefix).
        let name = format!(
            "aesgcmkey-{}-{:03}",
            now.strftime("%Y-%m-%dT%H%M%SZ"),
            now.subsec_millisecond()
        );
        Ok((name, key))
    }

    /// Loads the configuration, creating one with a new current key when `enable` is set.
    /// None: not enabled and never configured.
    pub fn ensure(data_dir: &Path, enable: bool) -> Result<Option<Config>, EncryptionError> {
        match Config::load(data_dir)? {
            Some(c) if !enable || (c.encrypt && !c.keys.is_empty()) => Ok(Some(c)),
            Some(mut c) => {
                if c.keys.is_empty() {
                    c.keys.push(Config::new_key()?);
                }
                c.encrypt = true;
                c.save(data_dir)?;
                Ok(Some(c))
            }
            None if enable => {
                let c = Config {
                    keys: vec![Config::new_key()?],
                    encrypt: true,
                };
                c.save(data_dir)?;
                Ok(Some(c))
            }
            None => Ok(None),
        }
    }
}

/// Seals and opens Secret values.
pub struct Transformer {
    keys: Vec<(String, LessSafeKey)>,
    encrypt: bool,
    rng: SystemRandom,
}

impl Transformer {
    pub fn new(config: &Config) -> Result<Self, EncryptionError> {
        let keys = config
            .keys
            .iter()
            .map(|(name, k)| {
                UnboundKey::new(&AES_256_GCM, k)
                    .map(|u| (name.clone(), LessSafeKey::new(u)))
                    .map_err(|_| EncryptionError::BadConfig {
                        path: PathBuf::from("encryption-config.json"),
                        reason: format!("key {name} is not a valid AES-256 key"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Transformer {
            keys,
            encrypt: config.encrypt,
            rng: SystemRandom::new(),
        })
    }

    fn applies(key: &str) -> bool {
        key.starts_with(SECRETS_PREFIX)
    }

    /// The value to store for `key`.
    pub fn seal(&self, key: &str, plain: Vec<u8>) -> StoreResult<Vec<u8>> {
        if !self.encrypt || !Self::applies(key) {
            return Ok(plain);
        }
        let Some((name, k)) = self.keys.first() else {
            return Ok(plain);
        };
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| StoreError::Backend("encrypting: no random nonce".into()))?;
        let mut buf = plain;
        k.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(key.as_bytes()),
            &mut buf,
        )
        .map_err(|_| StoreError::Backend(format!("unable to encrypt {key}")))?;
        let mut out = Vec::with_capacity(AESGCM_PREFIX.len() + name.len() + 1 + 12 + buf.len());
        out.extend_from_slice(AESGCM_PREFIX);
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    /// The plaintext of a stored value of `key`.
    pub fn open(&self, key: &str, stored: Vec<u8>) -> StoreResult<Vec<u8>> {
        if !Self::applies(key) {
            return Ok(stored);
        }
        let fail =
            |why: &str| StoreError::Backend(format!("unable to transform key {key:?}: {why}"));
        let Some(rest) = stored.strip_prefix(AESGCM_PREFIX) else {
            if stored.starts_with(ENC_PREFIX) {
                return Err(fail("no matching prefix found"));
            }
            // identity
            return Ok(stored);
        };
        let colon = rest
            .iter()
            .position(|b| *b == b':')
            .ok_or_else(|| fail("no key name"))?;
        let name = std::str::from_utf8(&rest[..colon]).map_err(|_| fail("bad key name"))?;
        let (_, k) = self
            .keys
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| fail(&format!("no key named {name} is configured")))?;
        let body = &rest[colon + 1..];
        if body.len() < NONCE_LEN {
            return Err(fail("the data is too short"));
        }
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| fail("bad nonce"))?;
        let mut buf = sealed.to_vec();
        let plain = k
            .open_in_place(nonce, Aad::from(key.as_bytes()), &mut buf)
            .map_err(|_| fail("cipher: message authentication failed"))?;
        Ok(plain.to_vec())
    }

    /// The name of the key a stored value was sealed with (None = plaintext).
    pub fn key_name(stored: &[u8]) -> Option<String> {
        let rest = stored.strip_prefix(AESGCM_PREFIX)?;
        let colon = rest.iter().position(|b| *b == b':')?;
        String::from_utf8(rest[..colon].to_vec()).ok()
    }
}

/// A [`Store`] that encrypts Secrets at rest.
pub struct EncryptedStore {
    inner: Arc<dyn Store>,
    t: Arc<Transformer>,
}

impl EncryptedStore {
    pub fn new(inner: Arc<dyn Store>, config: &Config) -> Result<Self, EncryptionError> {
        Ok(EncryptedStore {
            inner,
            t: Arc::new(Transformer::new(config)?),
        })
    }

    fn touches_secrets(prefix: &str) -> bool {
        SECRETS_PREFIX.starts_with(prefix) || prefix.starts_with(SECRETS_PREFIX)
    }

    fn open_kv(&self, mut kv: KeyValue) -> StoreResult<KeyValue> {
        kv.value = self.t.open(&kv.key, std::mem::take(&mut kv.value))?;
        Ok(kv)
    }
}

fn open_event(t: &Transformer, mut ev: Event) -> StoreResult<Event> {
    ev.kv.value = t.open(&ev.kv.key, std::mem::take(&mut ev.kv.value))?;
    if let Some(p) = ev.prev.as_mut() {
        p.value = t.open(&p.key, std::mem::take(&mut p.value))?;
    }
    Ok(ev)
}

#[async_trait::async_trait]
impl Store for EncryptedStore {
    async fn get(&self, key: &str) -> StoreResult<Option<KeyValue>> {
        self.inner
            .get(key)
            .await?
            .map(|kv| self.open_kv(kv))
            .transpose()
    }

    async fn list(&self, prefix: &str, opts: &ListOptions) -> StoreResult<ListResult> {
        let mut res = self.inner.list(prefix, opts).await?;
        if Self::touches_secrets(prefix) {
            res.items = res
                .items
                .into_iter()
                .map(|kv| self.open_kv(kv))
                .collect::<StoreResult<_>>()?;
        }
        Ok(res)
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> StoreResult<KeyValue> {
        let sealed = self.t.seal(key, value.clone())?;
        let mut kv = self.inner.create(key, sealed).await?;
        kv.value = value;
        Ok(kv)
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: i64) -> StoreResult<KeyValue> {
        let sealed = self.t.seal(key, value.clone())?;
        let mut kv = self.inner.update(key, sealed, expected).await?;
        kv.value = value;
        Ok(kv)
    }

    async fn delete(&self, key: &str, expected: Option<i64>) -> StoreResult<KeyValue> {
        let kv = self.inner.delete(key, expected).await?;
        self.open_kv(kv)
    }

    async fn watch(&self, prefix: &str, from_revision: i64) -> StoreResult<Watch> {
        let mut inner = self.inner.watch(prefix, from_revision).await?;
        if !Self::touches_secrets(prefix) {
            return Ok(inner);
        }
        let (tx, events) = tokio::sync::mpsc::channel(64);
        let t = self.t.clone();
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    ev = inner.events.recv() => ev,
                    _ = tx.closed() => return,
                };
                let Some(ev) = ev else { return };
                if tx.send(ev.and_then(|e| open_event(&t, e))).await.is_err() {
                    return;
                }
            }
        });
        Ok(Watch { events })
    }

    async fn current_revision(&self) -> StoreResult<i64> {
        self.inner.current_revision().await
    }

    async fn compact(&self, revision: i64) -> StoreResult<()> {
        self.inner.compact(revision).await
    }
    async fn status(&self) -> StoreResult<skiff_store::StoreStatus> {
        self.inner.status().await
    }
    // Snapshots keep the ciphertext: a backup is as protected as the store.
    async fn snapshot(&self, dest: &Path) -> StoreResult<skiff_store::SnapshotInfo> {
        self.inner.snapshot(dest).await
    }
    async fn restore(&self, snapshot: &Path) -> StoreResult<skiff_store::SnapshotInfo> {
        self.inner.restore(snapshot).await
    }
}

/// Wraps `store` for the data dir: encrypting when `enable` is set or a configuration exists
/// that says so (once enabled it stays on); None = leave the store as it is.
pub fn wrap(
    data_dir: &Path,
    enable: bool,
    store: Arc<dyn Store>,
) -> Result<Arc<dyn Store>, EncryptionError> {
    match Config::ensure(data_dir, enable)? {
        Some(cfg) => Ok(Arc::new(EncryptedStore::new(store, &cfg)?)),
        None => Ok(store),
    }
}

/// How the stored Secrets are encrypted.
#[derive(Debug, Default)]
pub struct Status {
    pub enabled: bool,
    pub current_key: Option<String>,
    /// (key name or "identity", number of Secrets), sorted.
    pub secrets_by_key: Vec<(String, usize)>,
}

/// Reads the configuration and counts Secrets per key from the raw (unwrapped) store.
pub async fn status(data_dir: &Path, raw: &dyn Store) -> Result<Status, EncryptionError> {
    let cfg = Config::load(data_dir)?;
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    let list = raw.list(SECRETS_PREFIX, &ListOptions::default()).await?;
    for kv in &list.items {
        let name = Transformer::key_name(&kv.value).unwrap_or_else(|| "identity".into());
        *counts.entry(name).or_default() += 1;
    }
    Ok(Status {
        enabled: cfg.as_ref().is_some_and(|c| c.encrypt),
        current_key: cfg
            .as_ref()
            .filter(|c| c.encrypt)
            .and_then(|c| c.keys.first().map(|k| k.0.clone())),
        secrets_by_key: counts.into_iter().collect(),
    })
}

/// Adds a new key, makes it current, re-encrypts every Secret in `raw` under it, compacts away
/// the history (old ciphertexts, earlier plaintext) and drops the old keys. Returns (new key name, Secrets rewritten). The server must not be running (the
/// store's lock makes sure of that).
pub async fn rotate_keys(
    data_dir: &Path,
    raw: Arc<dyn Store>,
) -> Result<(String, usize), EncryptionError> {
    let mut cfg = Config::load(data_dir)?
        .filter(|c| c.encrypt)
        .ok_or_else(|| EncryptionError::NotEnabled(config_path(data_dir)))?;
    let new = Config::new_key()?;
    let name = new.0.clone();
    // Step 1: the new key is current while the old ones can still read.
    cfg.keys.insert(0, new);
    cfg.save(data_dir)?;
    let store = EncryptedStore::new(raw, &cfg)?;
    let list = store.list(SECRETS_PREFIX, &ListOptions::default()).await?;
    let mut n = 0;
    for kv in list.items {
        store.update(&kv.key, kv.value, kv.mod_revision).await?;
        n += 1;
    }
    // Old revisions still hold the old ciphertexts (and plaintext written before encryption
    // was enabled): drop all history. Nothing watches while the server is stopped.
    let current = store.current_revision().await?;
    if current > 0 {
        store.compact(current).await?;
    }
    // Step 2: nothing is sealed with the old keys any more.
    cfg.keys.truncate(1);
    cfg.save(data_dir)?;
    Ok((name, n))
}
