//! Registry pull against a small OCI distribution server on loopback (an index pointing at a
//! linux/amd64 manifest, a config and one gzip layer): the image lands unpacked and tagged; a
//! corrupt layer, a wrong diff_id or an unknown tag fail and leave the store unchanged.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use skiff_image::{ImageError, ImageStore, NoProgress};

fn digest(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// name → (content type, bytes) for manifests (by tag and digest) and blobs (by digest).
#[derive(Default)]
struct Registry {
    manifests: HashMap<String, (String, Vec<u8>)>,
    blobs: HashMap<String, Vec<u8>>,
}

fn layer_tar_gz() -> (Vec<u8>, String) {
    let mut tar = tar::Builder::new(Vec::new());
    let data = b"pulled from a registry\n";
    let mut h = tar::Header::new_gnu();
    h.set_path("hello.txt").expect("path");
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    tar.append(&h, &data[..]).expect("append");
    let raw = tar.into_inner().expect("tar");
    let diff_id = digest(&raw);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).expect("gz");
    (gz.finish().expect("gz"), diff_id)
}

/// An image `test/hello:1` whose layer bytes may be tampered with after the manifest is made.
fn registry(corrupt_layer: bool, wrong_diff_id: bool) -> Registry {
    let (layer, mut diff_id) = layer_tar_gz();
    if wrong_diff_id {
        diff_id = digest(b"something else");
    }
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["PATH=/bin"],"Cmd":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}},"history":[{{"created_by":"ADD hello.txt"}}]}}"#
    );
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}]}}"#,
        digest(config.as_bytes()),
        config.len(),
        digest(&layer),
        layer.len()
    );
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
        digest(manifest.as_bytes()),
        manifest.len()
    );
    let mut r = Registry::default();
    let oci_manifest = "application/vnd.oci.image.manifest.v1+json".to_string();
    r.manifests.insert(
        "1".into(),
        (
            "application/vnd.oci.image.index.v1+json".into(),
            index.into_bytes(),
        ),
    );
    r.manifests.insert(
        digest(manifest.as_bytes()),
        (oci_manifest, manifest.into_bytes()),
    );
    r.blobs
        .insert(digest(config.as_bytes()), config.into_bytes());
    let mut served = layer.clone();
    if corrupt_layer {
        let n = served.len() / 2;
        served[n] ^= 0xff;
    }
    r.blobs.insert(digest(&layer), served);
    r
}

async fn v2(State(reg): State<Arc<Registry>>, Path(path): Path<String>) -> Response {
    let not_found = || {
        (
            StatusCode::NOT_FOUND,
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#,
        )
            .into_response()
    };
    let Some((name, rest)) = path
        .split_once("/manifests/")
        .map(|(n, r)| (n, ("m", r)))
        .or_else(|| path.split_once("/blobs/").map(|(n, r)| (n, ("b", r))))
    else {
        return not_found();
    };
    if name != "test/hello" {
        return not_found();
    }
    let (kind, key) = rest;
    let (ctype, body) = match kind {
        "m" => match reg.manifests.get(key) {
            Some((t, b)) => (t.clone(), b.clone()),
            None => return not_found(),
        },
        _ => match reg.blobs.get(key) {
            Some(b) => ("application/octet-stream".to_string(), b.clone()),
            None => return not_found(),
        },
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&ctype) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    (StatusCode::OK, headers, body).into_response()
}

/// Serves `reg` on a free loopback port; returns "127.0.0.1:PORT".
async fn serve(reg: Registry) -> String {
    let app = axum::Router::new()
        .route("/v2/", get(|| async { "{}" }))
        .route("/v2/{*path}", get(v2))
        .with_state(Arc::new(reg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr.to_string()
}

fn blob_count(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir.join("blobs/sha256"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: unpacking chowns files to the image's owners"]
async fn pulls_an_index_to_an_unpacked_tagged_image() {
    let host = serve(registry(false, false)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("store");
    let reference = format!("{host}/test/hello:1");
    let summary = store
        .pull(&reference, None, &NoProgress)
        .await
        .expect("pull");
    assert_eq!(summary.name, format!("{host}/test/hello"));
    assert_eq!(summary.tag, "1");
    let resolved = store.resolve(&reference).expect("resolve");
    assert_eq!(resolved.layers.len(), 1);
    let text = std::fs::read_to_string(resolved.layers[0].join("hello.txt")).expect("layer file");
    assert_eq!(text, "pulled from a registry\n");
    assert_eq!(
        resolved.config.cmd().clone().unwrap_or_default(),
        ["/bin/sh"]
    );
    // Manifest, config and layer blobs are stored, and a second pull changes nothing.
    assert_eq!(blob_count(dir.path()), 3);
    let again = store
        .pull(&reference, None, &NoProgress)
        .await
        .expect("pull again");
    assert_eq!(again.id, summary.id);
    assert_eq!(blob_count(dir.path()), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: unpacking chowns files to the image's owners"]
async fn bad_content_and_unknown_tags_change_nothing() {
    for (corrupt, wrong_diff) in [(true, false), (false, true)] {
        let host = serve(registry(corrupt, wrong_diff)).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ImageStore::open(dir.path()).expect("store");
        let err = store
            .pull(&format!("{host}/test/hello:1"), None, &NoProgress)
            .await
            .expect_err("bad content must fail");
        let msg = err.to_string();
        assert!(
            matches!(err, ImageError::DigestMismatch { .. }) || msg.contains("digest"),
            "corrupt={corrupt} wrong_diff={wrong_diff}: {msg}"
        );
        assert!(store.list().expect("list").is_empty());
        assert_eq!(blob_count(dir.path()), 0, "no blob left behind: {msg}");
        let snapshots = std::fs::read_dir(dir.path().join("snapshots"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(snapshots, 0, "no snapshot left behind");
    }
    let host = serve(registry(false, false)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("store");
    let err = store
        .pull(&format!("{host}/test/hello:2"), None, &NoProgress)
        .await
        .expect_err("unknown tag");
    assert!(err.to_string().contains("test/hello:2"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: unpacking chowns files to the image's owners"]
async fn pulls_by_digest_and_checks_it() {
    let mut reg = registry(false, false);
    let manifest_digest = reg
        .manifests
        .keys()
        .find(|k| k.starts_with("sha256:"))
        .cloned()
        .expect("manifest digest");
    // Another digest that the registry answers with the same (so wrong) bytes.
    let lying = digest(b"not this manifest");
    let bytes = reg.manifests[&manifest_digest].clone();
    reg.manifests.insert(lying.clone(), bytes);
    let host = serve(reg).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(dir.path()).expect("store");

    let reference = format!("{host}/test/hello@{manifest_digest}");
    let summary = store
        .pull(&reference, None, &NoProgress)
        .await
        .expect("pull by digest");
    assert_eq!(summary.name, format!("{host}/test/hello"));
    assert_eq!(summary.tag, "<none>");
    assert_eq!(summary.manifest_digest, manifest_digest);
    let resolved = store.resolve(&reference).expect("resolve by digest");
    assert_eq!(resolved.id, summary.id);
    // Tagged and digest references are different names.
    assert!(store.resolve(&format!("{host}/test/hello:1")).is_err());

    let err = store
        .pull(&format!("{host}/test/hello@{lying}"), None, &NoProgress)
        .await
        .expect_err("a manifest that does not hash to the digest");
    assert!(
        matches!(err, ImageError::DigestMismatch { .. }) || err.to_string().contains("digest"),
        "{err}"
    );
    assert_eq!(store.list().expect("list").len(), 1);
}
