//! Registry pull (the OCI distribution API, through `oci-client`): a reference is resolved to
//! this platform's manifest (linux/amd64 out of an index), then the config and every layer are
//! downloaded into the store's temp dir, each checked against its digest, and committed like
//! an import: layers unpacked into snapshots (checked against the config's diff_ids), blobs
//! renamed into place, the tag written last. On any error the store is unchanged.
//!
//! Registries on localhost / 127.0.0.0/8 are spoken to over plain HTTP, as docker does; all
//! others over HTTPS with the system's roots. Credentials (user/password, as docker's
//! config.json or a `kubernetes.io/dockerconfigjson` Secret carry them) are used for basic
//! auth or to get a bearer token; without them, anonymous access.

use std::fs::File;
use std::path::PathBuf;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::secrets::RegistryAuth;
use oci_spec::image::{Descriptor, ImageConfiguration, MediaType};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::reference::Reference;
use crate::store::{parse_digest, Txn};
use crate::{ImageError, ImageStore, ImageSummary, Progress, Result};

/// Manifest media types we accept (OCI and docker schema 2, single-platform).
const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

fn pull_err<'a>(
    what: &str,
    reference: &'a str,
) -> impl FnOnce(oci_client::errors::OciDistributionError) -> ImageError + 'a {
    let what = what.to_string();
    move |e| ImageError::Other(format!("pulling {reference}: {what}: {e}"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Registries docker treats as insecure by default: plain HTTP for them.
fn plain_http_hosts(registry: &str) -> Vec<String> {
    let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
    let local = host == "localhost"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    if local {
        vec![registry.to_string()]
    } else {
        Vec::new()
    }
}

/// A registry login.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The registry host a reference pulls from (`index.docker.io` for Docker Hub names).
pub fn registry_of(reference: &str) -> Option<String> {
    reference
        .parse::<oci_client::Reference>()
        .ok()
        .map(|r| r.resolve_registry().to_string())
}

/// A docker config key (`https://index.docker.io/v1/`, `ghcr.io`, `127.0.0.1:5000`) as a bare
/// registry host.
fn config_key_host(key: &str) -> String {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    match host {
        "docker.io" | "registry-1.docker.io" => "index.docker.io".to_string(),
        h => h.to_string(),
    }
}

/// The login for `registry` in a docker `config.json` / `.dockerconfigjson` (`{"auths": {…}}`)
/// or a legacy `.dockercfg` (the map itself): `auth` (base64 `user:password`) or
/// `username` + `password`.
pub fn credentials_from_docker_config(json: &[u8], registry: &str) -> Option<Credentials> {
    use base64::Engine;
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    let auths = v.get("auths").unwrap_or(&v).as_object()?;
    let want = config_key_host(registry);
    let entry = auths
        .iter()
        .find(|(k, _)| config_key_host(k) == want)
        .map(|(_, e)| e)?;
    if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (username, password) = text.split_once(':')?;
        return Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        });
    }
    Some(Credentials {
        username: entry.get("username")?.as_str()?.to_string(),
        password: entry.get("password")?.as_str()?.to_string(),
    })
}

/// Whether `reference` names a registry on this machine (localhost, 127.0.0.0/8): the only
/// ones an offline node still pulls from.
pub fn registry_is_loopback(reference: &str) -> bool {
    reference
        .parse::<oci_client::Reference>()
        .is_ok_and(|r| !plain_http_hosts(r.resolve_registry()).is_empty())
}

/// A downloaded blob: its temp file and verified digest.
struct Fetched {
    file: PathBuf,
    digest: String,
    size: u64,
}

async fn fetch_blob(
    client: &oci_client::Client,
    image: &oci_client::Reference,
    desc: &OciDescriptor,
    dir: &std::path::Path,
    reference: &str,
) -> Result<Fetched> {
    let name = desc.digest.replace(':', "-");
    let path = dir.join(name);
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| ImageError::Other(format!("creating {}: {e}", path.display())))?;
    client
        .pull_blob(image, desc, &mut file)
        .await
        .map_err(pull_err(&format!("blob {}", desc.digest), reference))?;
    file.flush()
        .await
        .map_err(|e| ImageError::Other(format!("writing {}: {e}", path.display())))?;
    drop(file);
    let (actual, size) = crate::util::hash_file(&path)?;
    if actual != desc.digest {
        return Err(ImageError::DigestMismatch {
            what: format!("blob {} of {reference}", desc.digest),
            expected: desc.digest.clone(),
            actual,
        });
    }
    Ok(Fetched {
        file: path,
        digest: actual,
        size,
    })
}

/// Pulls `reference` (e.g. `nginx:1.27`, `registry.example/app:v2`, `127.0.0.1:5000/web:v1`)
/// and tags it under that name.
pub(crate) async fn pull(
    store: &ImageStore,
    reference: &str,
    credentials: Option<&Credentials>,
    progress: &(dyn Progress + Sync),
) -> Result<ImageSummary> {
    // kube's and our clients share one process-wide rustls provider; installing twice is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ours = Reference::parse(reference)?;
    let image: oci_client::Reference = reference.parse().map_err(|e: oci_client::ParseError| {
        ImageError::InvalidReference(reference.to_string(), e.to_string())
    })?;
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(plain_http_hosts(image.resolve_registry())),
        ..Default::default()
    });
    let auth = match credentials {
        Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
        None => RegistryAuth::Anonymous,
    };
    progress.message(&format!("resolving {reference}"));
    // An index resolves to this platform's manifest; then fetch that manifest's exact bytes
    // (by digest), so what we store hashes to what the registry named.
    let (_, digest) = client
        .pull_image_manifest(&image, &auth)
        .await
        .map_err(pull_err("manifest", reference))?;
    if let Some(want) = ours.digest.as_ref().filter(|w| **w != digest) {
        return Err(ImageError::DigestMismatch {
            what: format!("manifest of {reference}"),
            expected: want.clone(),
            actual: digest,
        });
    }
    let pinned = oci_client::Reference::with_digest(
        image.registry().to_string(),
        image.repository().to_string(),
        digest.clone(),
    );
    let (manifest_bytes, _) = client
        .pull_manifest_raw(&pinned, &auth, &MANIFEST_TYPES)
        .await
        .map_err(pull_err("manifest", reference))?;
    if sha256_hex(&manifest_bytes) != digest {
        return Err(ImageError::DigestMismatch {
            what: format!("manifest of {reference}"),
            expected: digest,
            actual: sha256_hex(&manifest_bytes),
        });
    }
    let manifest: OciImageManifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| ImageError::Other(format!("pulling {reference}: bad manifest: {e}")))?;
    if manifest
        .layers
        .iter()
        .any(|l| l.media_type.contains("zstd"))
    {
        return Err(ImageError::Other(format!(
            "pulling {reference}: zstd-compressed layers are not supported"
        )));
    }

    let spool = tempfile::Builder::new()
        .prefix("pull-")
        .tempdir_in(store.tmp_dir())
        .map_err(|e| ImageError::Other(format!("creating a temp dir for the pull: {e}")))?;
    let config = fetch_blob(&client, &pinned, &manifest.config, spool.path(), reference).await?;
    let mut layers = Vec::new();
    let total: i64 = manifest.layers.iter().map(|l| l.size.max(0)).sum();
    progress.start(&format!("downloading {reference}"), total.max(0) as u64);
    for l in &manifest.layers {
        let f = fetch_blob(&client, &pinned, l, spool.path(), reference).await?;
        progress.advance(f.size);
        layers.push((f, l.media_type.clone()));
    }
    progress.finish();

    // Commit (blocking file work): unpack, verify diff_ids, move blobs in, tag.
    let config_json = File::open(&config.file)
        .map_err(|e| ImageError::Other(format!("reading the image config: {e}")))?;
    let image_config = ImageConfiguration::from_reader(config_json)
        .map_err(|e| ImageError::Other(format!("pulling {reference}: bad image config: {e}")))?;
    let diff_ids = image_config.rootfs().diff_ids().clone();
    if diff_ids.len() != layers.len() {
        return Err(ImageError::Other(format!(
            "pulling {reference}: {} layers but {} diff_ids in the config",
            layers.len(),
            diff_ids.len()
        )));
    }
    let mut txn = Txn::new(store);
    for ((f, _), diff_id) in layers.iter().zip(&diff_ids) {
        txn.unpack(&f.file, Some(diff_id), &f.digest, progress)?;
    }
    for (f, _) in &layers {
        txn.commit_blob_file(&f.file, &f.digest)?;
    }
    txn.commit_blob_file(&config.file, &config.digest)?;
    let mdigest = txn.put_blob(&manifest_bytes)?;
    let media = match manifest.media_type.as_deref() {
        Some(t) if t.contains("docker") => MediaType::Other(t.to_string()),
        _ => MediaType::ImageManifest,
    };
    let desc = Descriptor::new(media, manifest_bytes.len() as u64, parse_digest(&mdigest)?);
    store.set_tags(&[(ours.clone(), desc.clone())])?;
    txn.commit();
    Ok(store.summary(&store.load_image(&ours, &desc)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_plain_http() {
        assert_eq!(plain_http_hosts("127.0.0.1:5000"), ["127.0.0.1:5000"]);
        assert_eq!(plain_http_hosts("localhost:5000"), ["localhost:5000"]);
        assert!(plain_http_hosts("registry-1.docker.io").is_empty());
        assert!(plain_http_hosts("10.0.0.1:5000").is_empty());
        assert!(registry_is_loopback("127.0.0.1:5000/web:v1"));
        assert!(!registry_is_loopback("web:v1"));
        assert!(!registry_is_loopback("ghcr.io/org/app:v2"));
    }

    #[test]
    fn docker_config_logins() {
        let cfg = br#"{"auths": {
            "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
            "127.0.0.1:5000": {"username": "u", "password": "p:w"}}}"#;
        let hub = credentials_from_docker_config(cfg, "index.docker.io").expect("hub");
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("hub", "secret")
        );
        let local = credentials_from_docker_config(cfg, "127.0.0.1:5000").expect("local");
        assert_eq!(local.password, "p:w");
        assert!(credentials_from_docker_config(cfg, "ghcr.io").is_none());
        // Legacy .dockercfg: the map without "auths".
        let legacy = br#"{"ghcr.io": {"auth": "YTpi"}}"#;
        assert_eq!(
            credentials_from_docker_config(legacy, "ghcr.io").map(|c| c.username),
            Some("a".to_string())
        );
        assert_eq!(
            registry_of("nginx:1.27").as_deref(),
            Some("index.docker.io")
        );
        assert!(
            !format!("{hub:?}").contains("secret"),
            "passwords are never printed"
        );
    }
}
