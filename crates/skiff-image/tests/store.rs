//! End-to-end tests of the image store through its public API (run as root: snapshots use
//! mknod and trusted.* xattrs).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use skiff_image::*;

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn tar_files(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn config_json(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "test layer"}],
        "container_config": {"Hostname": "ignored"},
    }))
    .unwrap()
}

/// A docker-archive with one uncompressed layer.
fn docker_archive(dir: &Path, layer: &[u8], tags: &[&str]) -> (PathBuf, String) {
    let config = config_json(&[sha(layer)]);
    let id = sha(&config);
    let hexid = id.trim_start_matches("sha256:");
    let manifest = serde_json::json!([{
        "Config": format!("{hexid}.json"),
        "RepoTags": tags,
        "Layers": ["0123abcd/layer.tar"],
    }]);
    let archive = tar_files(&[
        (&format!("{hexid}.json"), &config),
        ("0123abcd/layer.tar", layer),
        ("manifest.json", &serde_json::to_vec(&manifest).unwrap()),
    ]);
    let p = dir.join("docker.tar");
    fs::write(&p, archive).unwrap();
    (p, id)
}

/// An oci-archive with one gzip layer; `corrupt` flips a byte in the layer blob.
fn oci_archive(dir: &Path, layer: &[u8], ref_name: &str, corrupt: bool) -> (PathBuf, String) {
    let gz = gzip(layer);
    let config = config_json(&[sha(layer)]);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(&gz), "size": gz.len()}],
    }))
    .unwrap();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha(&manifest), "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": ref_name},
        }],
    }))
    .unwrap();
    let mut layer_blob = gz.clone();
    if corrupt {
        let n = layer_blob.len() / 2;
        layer_blob[n] ^= 0xff;
    }
    let blob = |b: &[u8]| format!("blobs/sha256/{}", sha(b).trim_start_matches("sha256:"));
    let archive = tar_files(&[
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("index.json", &index),
        (&blob(&manifest), &manifest),
        (&blob(&config), &config),
        (&blob(&gz), &layer_blob),
    ]);
    let p = dir.join("oci.tar");
    fs::write(&p, archive).unwrap();
    (p, sha(&config))
}

/// Every path under `root` with size, to compare store states.
fn listing(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let m = fs::symlink_metadata(&p).unwrap();
            out.insert(format!(
                "{} {}",
                p.strip_prefix(root).unwrap().display(),
                if m.is_dir() { 0 } else { m.len() }
            ));
            if m.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    walk(root, root, &mut out);
    out
}

fn blobs(store: &ImageStore) -> BTreeSet<String> {
    fs::read_dir(store.root().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn new_store() -> (tempfile::TempDir, ImageStore) {
    let t = tempfile::tempdir().unwrap();
    let s = ImageStore::open(t.path().join("images")).unwrap();
    (t, s)
}

#[test]
#[ignore = "needs root: unpacking chowns files to the image's owners"]
fn docker_archive_import() {
    let (t, store) = new_store();
    let layer = tar_files(&[("etc/hello.txt", b"hello\n")]);
    let (archive, id) = docker_archive(t.path(), &layer, &["docker.io/library/demo:1"]);
    let got = store.import(&archive, None, &NoProgress).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].name.as_str(), got[0].tag.as_str()),
        ("docker.io/library/demo", "1")
    );
    assert_eq!(got[0].id, id);
    assert_eq!(got[0].size, layer.len() as u64);
    // Short Docker Hub names find it too.
    let r = store.resolve("demo:1").unwrap();
    assert_eq!(r.id, id);
    assert_eq!(r.layers.len(), 1);
    assert_eq!(
        fs::read(r.layers[0].join("etc/hello.txt")).unwrap(),
        b"hello\n"
    );
    assert_eq!(
        r.layers[0],
        store
            .root()
            .join("snapshots")
            .join(sha(&layer).trim_start_matches("sha256:"))
    );
    assert_eq!(r.config.cmd().clone().unwrap(), vec!["/bin/sh"]);
    // A tag replaces the archive's names.
    let got = store
        .import(&archive, Some("mine:v2"), &NoProgress)
        .unwrap();
    assert_eq!(got[0].name, "mine");
    assert_eq!(store.list().unwrap().len(), 2);
}

#[test]
#[ignore = "needs root: unpacking chowns files to the image's owners"]
fn oci_archive_import_and_id_lookup() {
    let (t, store) = new_store();
    let layer = tar_files(&[("a.txt", b"A")]);
    let (archive, id) = oci_archive(t.path(), &layer, "web:v1", false);
    let got = store.import(&archive, None, &NoProgress).unwrap();
    assert_eq!((got[0].name.as_str(), got[0].tag.as_str()), ("web", "v1"));
    assert_eq!(got[0].id, id);
    let hex = id.trim_start_matches("sha256:");
    for r in [id.as_str(), &hex[..8], &format!("sha256:{}", &hex[..6])] {
        assert_eq!(store.inspect(r).unwrap()["Id"], id, "lookup by {r}");
    }
    let inspect = store.inspect("web:v1").unwrap();
    assert_eq!(inspect["RepoTags"], serde_json::json!(["web:v1"]));
    assert_eq!(
        inspect["RootFS"]["Layers"],
        serde_json::json!([sha(&layer)])
    );
    assert_eq!(inspect["Config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    assert!(matches!(
        store.inspect("nope:v1"),
        Err(ImageError::NotFound(_))
    ));
    assert!(matches!(
        store.inspect("Bad:Ref"),
        Err(ImageError::InvalidReference(..))
    ));

    // A bare-tag ref.name needs an explicit name.
    let (t2, store2) = new_store();
    let (archive, _) = oci_archive(t2.path(), &layer, "v1", false);
    let err = store2.import(&archive, None, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("-t"), "{err}");
    assert_eq!(
        store2.import(&archive, Some("x:y"), &NoProgress).unwrap()[0].name,
        "x"
    );
}

#[test]
fn corrupt_layer_is_rejected_and_store_unchanged() {
    let (t, store) = new_store();
    let before = listing(store.root());
    let layer = tar_files(&[("a.txt", b"some content that is long enough to corrupt")]);
    let (archive, _) = oci_archive(t.path(), &layer, "web:v1", true);
    match store.import(&archive, None, &NoProgress) {
        Err(ImageError::DigestMismatch { what, .. }) => assert!(what.contains("layer"), "{what}"),
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert_eq!(listing(store.root()), before);

    // docker-archive whose layer does not match the config's diff_id.
    let (archive, _) = docker_archive(t.path(), &layer, &["web:v1"]);
    let mut bytes = fs::read(&archive).unwrap();
    let pos = bytes.windows(4).position(|w| w == b"some").unwrap();
    bytes[pos] = b'S';
    fs::write(&archive, bytes).unwrap();
    match store.import(&archive, None, &NoProgress) {
        Err(ImageError::DigestMismatch { what, .. }) => {
            assert!(what.contains("layer.tar"), "{what}")
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert_eq!(listing(store.root()), before);
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn truncated_archive_is_rejected() {
    let (t, store) = new_store();
    let before = listing(store.root());
    let layer = tar_files(&[("big", &[9u8; 20000][..])]);
    let (archive, _) = docker_archive(t.path(), &layer, &["web:v1"]);
    let bytes = fs::read(&archive).unwrap();
    for cut in [bytes.len() / 2, 700, bytes.len() - 1100] {
        fs::write(&archive, &bytes[..cut]).unwrap();
        let r = store.import(&archive, None, &NoProgress);
        assert!(
            matches!(r, Err(ImageError::InvalidArchive { .. })),
            "cut at {cut}: {r:?}"
        );
        assert_eq!(listing(store.root()), before);
    }
    // Gzip-compressed and truncated.
    let gz = gzip(&bytes);
    fs::write(&archive, &gz[..gz.len() / 2]).unwrap();
    assert!(matches!(
        store.import(&archive, None, &NoProgress),
        Err(ImageError::InvalidArchive { .. })
    ));
    assert_eq!(listing(store.root()), before);
}

#[test]
#[ignore = "needs root: unpacking chowns files to the image's owners"]
fn rootfs_tarball_import() {
    let (t, store) = new_store();
    let rootfs = gzip(&tar_files(&[
        ("bin/tool", b"#!/bin/sh\n"),
        ("etc/os-release", b"ID=test\n"),
    ]));
    let p = t.path().join("rootfs.tar.gz");
    fs::write(&p, &rootfs).unwrap();
    let err = store.import(&p, None, &NoProgress).unwrap_err();
    assert!(err.to_string().contains("-t NAME:TAG"), "{err}");
    let got = store.import(&p, Some("base:1"), &NoProgress).unwrap();
    assert_eq!(got[0].name, "base");
    let hist = store.history("base:1").unwrap();
    assert_eq!(hist.len(), 1);
    assert_eq!(hist[0].created_by, "imported from rootfs.tar.gz");
    assert!(hist[0].size > 0);
    let r = store.resolve("base:1").unwrap();
    assert_eq!(
        fs::read(r.layers[0].join("etc/os-release")).unwrap(),
        b"ID=test\n"
    );
    let env = r.config.env().clone().unwrap();
    assert_eq!(
        env,
        vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    );
    let inspect = store.inspect("base:1").unwrap();
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Os"], "linux");
}

#[test]
#[ignore = "needs root: unpacking chowns files to the image's owners"]
fn save_import_round_trip() {
    let (t, store) = new_store();
    let layer = tar_files(&[("a.txt", b"A")]);
    let (archive, id) = docker_archive(t.path(), &layer, &["web:v1", "web:latest"]);
    store.import(&archive, None, &NoProgress).unwrap();
    let out = t.path().join("saved.tar");
    store.save(&["web:v1", "web:latest"], &out).unwrap();

    // Both formats are present.
    let mut names = Vec::new();
    let mut manifest_json = Vec::new();
    let mut ar = tar::Archive::new(fs::File::open(&out).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let n = e.path().unwrap().to_string_lossy().into_owned();
        if n == "manifest.json" {
            e.read_to_end(&mut manifest_json).unwrap();
        }
        names.push(n);
    }
    for n in ["oci-layout", "index.json", "manifest.json"] {
        assert!(names.contains(&n.to_string()), "{n} missing in {names:?}");
    }
    let m: serde_json::Value = serde_json::from_slice(&manifest_json).unwrap();
    assert_eq!(
        m[0]["RepoTags"],
        serde_json::json!(["web:v1", "web:latest"])
    );
    assert_eq!(
        m[0]["Config"],
        format!("blobs/sha256/{}", id.trim_start_matches("sha256:"))
    );

    let (_t2, store2) = new_store();
    let got = store2.import(&out, None, &NoProgress).unwrap();
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|s| s.id == id));
    assert_eq!(store2.list().unwrap().len(), 2);
    let r = store2.resolve("web:v1").unwrap();
    assert_eq!(fs::read(r.layers[0].join("a.txt")).unwrap(), b"A");
}

/// A BuildRunner that records calls and lets the test play the container.
struct FakeRunner {
    calls: RefCell<Vec<Vec<String>>>,
    exit: i32,
}

impl BuildRunner for FakeRunner {
    fn run(
        &self,
        step: &RunStep<'_>,
    ) -> std::result::Result<i32, Box<dyn std::error::Error + Send + Sync>> {
        self.calls.borrow_mut().push(step.args.to_vec());
        assert!(
            fs::read_dir(step.upper)?.next().is_none(),
            "upper must start empty"
        );
        assert!(
            step.env.iter().any(|e| e == "GREETING=hi"),
            "{:?}",
            step.env
        );
        // The lowers are the layers so far: the COPY layer is visible.
        assert!(step.lowers.iter().any(|l| l.join("app/data.txt").exists()));
        fs::create_dir_all(step.upper.join("out"))?;
        fs::write(step.upper.join("out/result"), "built\n")?;
        fs::create_dir(step.upper.join("app"))?;
        // Delete app/data.txt the overlay way.
        nix::sys::stat::mknod(
            &step.upper.join("app/data.txt"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )?;
        fs::create_dir(step.upper.join("opaque"))?;
        xattr::set(step.upper.join("opaque"), "trusted.overlay.opaque", b"y")?;
        Ok(self.exit)
    }
}

struct Recorder(RefCell<Vec<String>>);

impl Progress for Recorder {
    fn message(&self, line: &str) {
        self.0.borrow_mut().push(line.to_string());
    }
}

fn context(dir: &Path, containerfile: &str) -> PathBuf {
    let ctx = dir.join("ctx");
    fs::create_dir_all(ctx.join("sub/deep")).unwrap();
    fs::write(ctx.join("data.txt"), "data\n").unwrap();
    fs::write(ctx.join("sub/deep/x.txt"), "x\n").unwrap();
    fs::write(ctx.join("Containerfile"), containerfile).unwrap();
    ctx
}

const CONTAINERFILE: &str = "\
FROM scratch
ARG WHO=world
ENV GREETING=hi TARGET=$WHO
COPY data.txt /app/
COPY --chown=1000:1000 sub /srv/
LABEL maintainer=\"a b\"
RUN make it
CMD [\"/bin/app\", \"--serve\"]
EXPOSE 8080
WORKDIR /work
";

fn layer_entries(store: &ImageStore, blob: &str) -> Vec<(String, tar::EntryType, u64)> {
    let f = fs::File::open(
        store
            .root()
            .join("blobs/sha256")
            .join(blob.trim_start_matches("sha256:")),
    )
    .unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                e.header().entry_type(),
                e.header().uid().unwrap(),
            )
        })
        .collect()
}

#[test]
#[ignore = "needs root: unpacking chowns files to the image's owners"]
fn build_copy_env_run_cmd_and_cache() {
    let (t, store) = new_store();
    let ctx = context(t.path(), CONTAINERFILE);
    let runner = FakeRunner {
        calls: RefCell::new(Vec::new()),
        exit: 0,
    };
    let opts = BuildOptions {
        tag: "app:v1".into(),
        context: ctx.clone(),
        file: None,
        build_args: vec![("WHO".into(), "skiff".into())],
        no_cache: false,
    };
    let res = store.build(&opts, &runner, &NoProgress).unwrap();
    assert_eq!(
        runner.calls.borrow().clone(),
        vec![vec!["/bin/sh".to_string(), "-c".into(), "make it".into()]]
    );
    assert_eq!(res.executed_steps, 9);
    assert_eq!(res.cached_steps, 0);
    assert_eq!(
        (res.image.name.as_str(), res.image.tag.as_str()),
        ("app", "v1")
    );

    let r = store.resolve("app:v1").unwrap();
    // COPY data.txt, COPY sub, RUN; WORKDIR is config-only.
    assert_eq!(r.layers.len(), 3);
    let cfg = &r.config;
    assert_eq!(cfg.cmd().clone().unwrap(), vec!["/bin/app", "--serve"]);
    assert_eq!(
        cfg.env().clone().unwrap(),
        vec!["GREETING=hi", "TARGET=skiff"]
    );
    assert_eq!(cfg.working_dir().as_deref(), Some("/work"));
    assert_eq!(cfg.exposed_ports().clone().unwrap(), vec!["8080/tcp"]);
    assert_eq!(cfg.labels().clone().unwrap()["maintainer"], "a b");

    // Layer contents.
    assert_eq!(
        fs::read(r.layers[0].join("app/data.txt")).unwrap(),
        b"data\n"
    );
    let x = r.layers[1].join("srv/deep/x.txt");
    assert_eq!(fs::read(&x).unwrap(), b"x\n");
    assert_eq!(fs::metadata(&x).unwrap().uid(), 1000);
    let run_layer = &r.layers[2];
    assert_eq!(fs::read(run_layer.join("out/result")).unwrap(), b"built\n");
    let wh = fs::symlink_metadata(run_layer.join("app/data.txt")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_eq!(
        xattr::get(run_layer.join("opaque"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );

    // The RUN layer blob carries OCI whiteouts.
    let inspect = store.inspect("app:v1").unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(
            store
                .root()
                .join("blobs/sha256")
                .join(res.image.manifest_digest.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    let run_blob = manifest["layers"][2]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        manifest["layers"][2]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let entries = layer_entries(&store, &run_blob);
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert!(names.contains(&"app/.wh.data.txt"), "{names:?}");
    assert!(names.contains(&"opaque/.wh..wh..opq"), "{names:?}");
    assert!(names.contains(&"out/result"), "{names:?}");
    assert_eq!(inspect["RootFS"]["Layers"].as_array().unwrap().len(), 3);

    // History: newest first, config-only steps are empty layers.
    let h = store.history("app:v1").unwrap();
    let by: Vec<&str> = h.iter().map(|e| e.created_by.as_str()).collect();
    assert_eq!(h.len(), 9, "{by:?}");
    assert_eq!(by[0], "/bin/sh -c #(nop) WORKDIR /work");
    assert_eq!(by[1], "/bin/sh -c #(nop) EXPOSE 8080/tcp");
    assert_eq!(by[2], "/bin/sh -c #(nop) CMD [\"/bin/app\",\"--serve\"]");
    assert_eq!(by[3], "RUN /bin/sh -c make it");
    assert_eq!(by[4], "/bin/sh -c #(nop) LABEL maintainer=a b");
    assert!(
        by[5].starts_with("/bin/sh -c #(nop) COPY dir:") && by[5].ends_with(" in /srv"),
        "{}",
        by[5]
    );
    assert!(
        by[6].starts_with("/bin/sh -c #(nop) COPY file:") && by[6].ends_with(" in /app"),
        "{}",
        by[6]
    );
    assert_eq!(by[7], "/bin/sh -c #(nop) ENV GREETING=hi TARGET=skiff");
    assert_eq!(by[8], "/bin/sh -c #(nop) ARG WHO");
    for e in &h {
        assert_eq!(e.empty_layer, e.layer.is_none());
        if e.empty_layer {
            assert_eq!(e.size, 0);
        } else {
            assert!(e.size >= 1024, "{e:?}"); // a tar is at least header + trailer
        }
    }
    let total: u64 = h.iter().map(|e| e.size).sum();
    assert_eq!(total, res.image.size);

    // Unchanged rebuild: all cached, same image, no new blobs, no RUN.
    let before = blobs(&store);
    let progress = Recorder(RefCell::new(Vec::new()));
    let res2 = store.build(&opts, &runner, &progress).unwrap();
    let lines = progress.0.borrow().clone();
    assert_eq!(lines[0], "STEP 1/10: FROM scratch");
    assert!(
        lines.contains(&"STEP 7/10: RUN make it".to_string()),
        "{lines:?}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("--> Using cache "))
            .count(),
        9,
        "{lines:?}"
    );
    assert_eq!(res2.image.id, res.image.id);
    assert_eq!(res2.cached_steps, 9);
    assert_eq!(res2.executed_steps, 0);
    assert_eq!(runner.calls.borrow().len(), 1);
    assert_eq!(blobs(&store), before);

    // Changing a build arg invalidates from the ARG on; changing a file from its COPY on.
    fs::write(ctx.join("sub/deep/x.txt"), "changed\n").unwrap();
    let res3 = store.build(&opts, &runner, &NoProgress).unwrap();
    assert_eq!(res3.cached_steps, 3);
    assert_ne!(res3.image.id, res.image.id);
    assert_eq!(runner.calls.borrow().len(), 2);

    // --no-cache runs everything.
    let res4 = store
        .build(
            &BuildOptions {
                no_cache: true,
                ..opts
            },
            &runner,
            &NoProgress,
        )
        .unwrap();
    assert_eq!(res4.cached_steps, 0);
    assert_eq!(runner.calls.borrow().len(), 3);
}

#[test]
#[ignore = "needs root: unpacking chowns files to the image's owners"]
fn build_errors_name_file_and_line() {
    let (t, store) = new_store();
    let runner = FakeRunner {
        calls: RefCell::new(Vec::new()),
        exit: 3,
    };
    let ctx = context(t.path(), "FROM scratch\n\nCOPY missing.txt /x\n");
    let opts = |ctx: &Path| BuildOptions {
        tag: "bad:v1".into(),
        context: ctx.to_path_buf(),
        file: None,
        build_args: vec![],
        no_cache: false,
    };
    match store.build(&opts(&ctx), &runner, &NoProgress) {
        Err(ImageError::Build {
            file,
            line,
            message,
        }) => {
            assert!(file.ends_with("Containerfile"));
            assert_eq!(line, 3);
            assert!(message.contains("missing.txt"), "{message}");
        }
        other => panic!("expected build error, got {:?}", other.map(|r| r.image)),
    }
    fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\nCOPY ../../etc/passwd /x\n",
    )
    .unwrap();
    let err = store
        .build(&opts(&ctx), &runner, &NoProgress)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("outside the build context"),
        "{err}"
    );
    fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\nENV GREETING=hi\nCOPY data.txt /app/\nRUN false\n",
    )
    .unwrap();
    let err = store
        .build(&opts(&ctx), &runner, &NoProgress)
        .err()
        .unwrap();
    assert!(matches!(err, ImageError::Build { line: 4, .. }), "{err}");
    assert!(err.to_string().contains("non-zero code: 3"), "{err}");
    fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\nADD http://example.com/x /x\n",
    )
    .unwrap();
    let err = store
        .build(&opts(&ctx), &runner, &NoProgress)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("remote ADD is not supported"),
        "{err}"
    );
    fs::write(ctx.join("Containerfile"), "FROM nope:v1\n").unwrap();
    assert!(matches!(
        store.build(&opts(&ctx), &runner, &NoProgress),
        Err(ImageError::Build { line: 1, .. })
    ));
    fs::write(ctx.join("Containerfile"), "FROM scratch\nFOO bar\n").unwrap();
    assert!(matches!(
        store.build(&opts(&ctx), &runner, &NoProgress),
        Err(ImageError::Build { line: 2, .. })
    ));
    assert!(store.list().unwrap().is_empty());
}

#[test]
#[ignore = "needs root: unpacking chowns files to the image's owners"]
fn build_from_image_add_archive_and_dest_semantics() {
    let (t, store) = new_store();
    // Base image with /tmp 1777 and a symlink /bin -> usr/bin.
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = |path: &str, mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        b.append_data(&mut h, path, &[][..]).unwrap();
    };
    dir("tmp/", 0o1777);
    dir("usr/bin/", 0o755);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1);
    b.append_link(&mut h, "bin", "usr/bin").unwrap();
    let base = t.path().join("base.tar");
    fs::write(&base, b.into_inner().unwrap()).unwrap();
    store.import(&base, Some("base:1"), &NoProgress).unwrap();

    let ctx = context(t.path(), "FROM base:1\nCOPY data.txt /tmp/\nCOPY data.txt /bin/tool\nADD bundle.tgz /opt/\nCOPY sub/deep/*.txt /glob/\n");
    fs::write(
        ctx.join("bundle.tgz"),
        gzip(&tar_files(&[("inner/file", b"inside")])),
    )
    .unwrap();
    let runner = FakeRunner {
        calls: RefCell::new(Vec::new()),
        exit: 0,
    };
    let opts = BuildOptions {
        tag: "derived:1".into(),
        context: ctx,
        file: None,
        build_args: vec![],
        no_cache: false,
    };
    let res = store.build(&opts, &runner, &NoProgress).unwrap();
    assert_eq!(res.executed_steps, 4);
    let r = store.resolve("derived:1").unwrap();
    assert_eq!(r.layers.len(), 5);
    let tmp = fs::metadata(r.layers[1].join("tmp")).unwrap();
    assert_eq!(
        tmp.mode() & 0o7777,
        0o1777,
        "parent dir keeps its mode from the base"
    );
    assert!(r.layers[1].join("tmp/data.txt").is_file());
    // Copying to /bin/tool goes through the base's /bin -> usr/bin symlink.
    assert!(r.layers[2].join("usr/bin/tool").is_file());
    assert!(!r.layers[2].join("bin").exists());
    assert_eq!(
        fs::read(r.layers[3].join("opt/inner/file")).unwrap(),
        b"inside"
    );
    assert!(r.layers[4].join("glob/x.txt").is_file());
    let h = store.history("derived:1").unwrap();
    assert_eq!(h.last().unwrap().created_by, "imported from base.tar");
}

#[test]
#[ignore = "needs root: unpacking chowns files to the image's owners"]
fn remove_keeps_shared_blobs_and_snapshots() {
    let (t, store) = new_store();
    let base = tar_files(&[("base.txt", b"base")]);
    let p = t.path().join("base.tar");
    fs::write(&p, &base).unwrap();
    store.import(&p, Some("base:1"), &NoProgress).unwrap();
    let ctx = context(t.path(), "FROM base:1\nCOPY data.txt /data.txt\n");
    let runner = FakeRunner {
        calls: RefCell::new(Vec::new()),
        exit: 0,
    };
    let opts = BuildOptions {
        tag: "child:1".into(),
        context: ctx,
        file: None,
        build_args: vec![],
        no_cache: false,
    };
    store.build(&opts, &runner, &NoProgress).unwrap();
    let child = store.resolve("child:1").unwrap();
    let base_img = store.resolve("base:1").unwrap();
    assert_eq!(child.layers[0], base_img.layers[0]);
    let base_blobs = blobs(&store);

    // Removing the base only untags it: the child still uses its layer.
    let rep = store.remove("base:1").unwrap();
    assert_eq!(rep.untagged, vec!["base:1"]);
    assert!(base_img.layers[0].is_dir());
    let left = blobs(&store);
    let base_layer_hex = sha(&base).trim_start_matches("sha256:").to_string();
    assert!(left.contains(&base_layer_hex));
    // The base's own manifest and config went away.
    assert_eq!(rep.deleted.len(), 2, "{:?}", rep.deleted);
    assert!(left.len() < base_blobs.len());

    // Removing the child (by ID prefix) deletes everything, snapshots included.
    let id = store.inspect("child:1").unwrap()["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let rep = store
        .remove(&id.trim_start_matches("sha256:")[..10])
        .unwrap();
    assert_eq!(rep.untagged, vec!["child:1"]);
    assert!(blobs(&store).is_empty(), "{:?}", blobs(&store));
    assert!(!child.layers[0].exists() && !child.layers[1].exists());
    assert_eq!(
        fs::read_dir(store.root().join("snapshots"))
            .unwrap()
            .count(),
        0
    );
    assert!(matches!(
        store.remove("child:1"),
        Err(ImageError::NotFound(_))
    ));
}
