//! Image commands end to end through the real binary: build -> history -> save -> import, the
//! build cache, and RUN steps executed by the runtime whose deletions (overlay whiteouts turned
//! into OCI whiteouts and back) hide files in later containers. Root only: CI runs these for real.

mod common;

use std::fs;

use common::Skiff;

fn inspect_id(s: &Skiff, reference: &str) -> String {
    let out = s.ok(&["image", "inspect", reference]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("inspect prints JSON");
    let doc = if v.is_array() { v[0].clone() } else { v };
    doc["Id"].as_str().expect("Id").to_string()
}

#[test]
#[ignore = "needs root: image builds and runs (namespaces, overlayfs)"]
fn build_history_save_import_round_trip() {
    let s = Skiff::new();
    let ctx = s.dir.path().join("ctx");
    fs::create_dir_all(ctx.join("site")).unwrap();
    fs::write(ctx.join("site/index.html"), "<h1>hi</h1>\n").unwrap();
    fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\nARG VERSION=1\nENV APP_VERSION=$VERSION\nCOPY site /srv/www/\nCMD [\"/bin/httpd\"]\n",
    )
    .unwrap();
    let ctx_s = ctx.to_str().unwrap();
    let out = s.ok(&[
        "image",
        "build",
        "-t",
        "site:v1",
        "--build-arg",
        "VERSION=2",
        ctx_s,
    ]);
    let id = out.trim().lines().last().unwrap().to_string();
    assert!(
        id.starts_with("sha256:"),
        "build prints the image ID: {out}"
    );
    assert_eq!(inspect_id(&s, "site:v1"), id);

    let history = s.ok(&["image", "history", "--no-trunc", "site:v1"]);
    assert!(history.contains("COPY dir:"), "{history}");
    assert!(history.contains("ENV APP_VERSION=2"), "{history}");
    assert!(history.contains("CMD [\"/bin/httpd\"]"), "{history}");

    // Unchanged rebuild: same image from cache.
    let again = s.ok(&[
        "image",
        "build",
        "-t",
        "site:v1",
        "--build-arg",
        "VERSION=2",
        ctx_s,
    ]);
    assert_eq!(again.trim().lines().last().unwrap(), id);

    let archive = s.dir.path().join("site.tar");
    s.ok(&["image", "save", "-o", archive.to_str().unwrap(), "site:v1"]);
    let other = Skiff::new();
    let loaded = other.ok(&["image", "import", archive.to_str().unwrap()]);
    assert!(loaded.contains("site:v1"), "{loaded}");
    assert_eq!(
        inspect_id(&other, "site:v1"),
        id,
        "save/import keeps the image ID"
    );
    let ls = other.ok(&["image", "ls"]);
    assert!(
        ls.contains("site") && ls.contains(&id["sha256:".len()..][..12]),
        "{ls}"
    );

    // Removing the only tag deletes its blobs.
    let rm = s.ok(&["image", "rm", "site:v1"]);
    assert!(rm.contains("Untagged: site:v1"), "{rm}");
    assert!(!s.ok(&["image", "ls"]).contains("site"));
    let blobs = fs::read_dir(s.data_dir().join("images/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0, "no blobs may remain");
}

#[test]
#[ignore = "needs root: image builds and runs (namespaces, overlayfs)"]
fn run_steps_make_layers_and_whiteouts_hide_files() {
    let s = Skiff::new();
    let ctx = s.dir.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::copy("/bin/busybox", ctx.join("busybox")).unwrap();
    fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\n\
         COPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         RUN echo hi > /hello && rm /bin/ls\n\
         CMD [\"/bin/sh\"]\n",
    )
    .unwrap();
    s.ok(&["image", "build", "-t", "bb:built", ctx.to_str().unwrap()]);

    let history = s.ok(&["image", "history", "--no-trunc", "bb:built"]);
    assert!(
        history.contains("RUN /bin/sh -c echo hi > /hello && rm /bin/ls"),
        "{history}"
    );

    let out = s.ok(&[
        "run",
        "--rm",
        "bb:built",
        "/bin/sh",
        "-c",
        "cat /hello; test -e /bin/ls && echo ls-present || echo ls-gone; test -e /bin/cat && echo cat-present",
    ]);
    assert!(out.contains("hi"), "{out}");
    assert!(
        out.contains("ls-gone"),
        "the whiteout must hide /bin/ls: {out}"
    );
    assert!(out.contains("cat-present"), "{out}");

    // A failing RUN names the file and line and tags nothing.
    fs::write(ctx.join("Containerfile"), "FROM bb:built\nRUN exit 7\n").unwrap();
    let err = s.fails(&["image", "build", "-t", "broken:1", ctx.to_str().unwrap()]);
    assert!(err.contains("Containerfile:2"), "{err}");
    assert!(err.contains('7'), "{err}");
    assert!(!s.ok(&["image", "ls"]).contains("broken"));
}

/// `skiff image pull` from a registry on loopback: the image arrives with the same ID and
/// runs; a second pull is a no-op; an unknown tag is a clear error that changes nothing.
#[test]
#[ignore = "needs root: image builds and runs (namespaces, overlayfs)"]
fn pull_from_a_registry_and_run() {
    let source = Skiff::with_busybox();
    let registry =
        common::cluster::LoopbackRegistry::serve(&source.data_dir(), "bb:1", "tools/bb", "1");
    let s = Skiff::new();
    let reference = format!("{}/tools/bb:1", registry.host);
    let out = s.ok(&["image", "pull", &reference]);
    assert!(
        out.contains(&format!("Pulled image: {}/tools/bb:1", registry.host)),
        "{out}"
    );
    assert_eq!(inspect_id(&s, &reference), inspect_id(&source, "bb:1"));
    let hello = s.ok(&["run", "--rm", &reference, "echo", "pulled and running"]);
    assert_eq!(hello.trim(), "pulled and running");
    s.ok(&["image", "pull", &reference]);
    let listed = s.ok(&["image", "ls"]);
    assert_eq!(listed.matches("tools/bb").count(), 1, "{listed}");
    let err = s.fails(&["image", "pull", &format!("{}/tools/bb:2", registry.host)]);
    assert!(err.contains("tools/bb:2"), "{err}");
    assert_eq!(s.ok(&["image", "ls"]).matches("tools/bb").count(), 1);
}

/// A private registry: `skiff image pull` is refused without a login and succeeds with the one
/// in docker's config.json (`DOCKER_CONFIG`).
#[test]
#[ignore = "needs root: image builds and runs (namespaces, overlayfs)"]
fn pull_from_a_private_registry_with_a_docker_login() {
    let source = Skiff::with_busybox();
    let registry = common::cluster::LoopbackRegistry::serve_with_login(
        &source.data_dir(),
        "bb:1",
        "private/bb",
        "1",
        Some(("puller", "s3cret")),
    );
    let s = Skiff::new();
    let reference = format!("{}/private/bb:1", registry.host);
    let empty = s.dir.path().join("no-login");
    fs::create_dir_all(&empty).expect("dir");
    let out = s
        .command(&["image", "pull", &reference])
        .env("DOCKER_CONFIG", &empty)
        .output()
        .expect("pull");
    assert!(!out.status.success(), "pulled without a login");
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("not authorized") || err.contains("401"),
        "{err}"
    );
    let login = s.dir.path().join("login");
    fs::create_dir_all(&login).expect("dir");
    fs::write(
        login.join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"username": "puller", "password": "s3cret"}}}}}}"#,
            registry.host
        ),
    )
    .expect("config.json");
    let out = s
        .command(&["image", "pull", &reference])
        .env("DOCKER_CONFIG", &login)
        .output()
        .expect("pull");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(inspect_id(&s, &reference), inspect_id(&source, "bb:1"));
}
