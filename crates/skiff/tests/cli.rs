//! CLI behaviour on bad input (clear one-line errors, nothing changed) and the web example built
//! from its Containerfile and served over HTTP. Root only: CI runs these for real.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Skiff;

#[test]
#[ignore = "needs root: real containers and image builds (namespaces, overlayfs)"]
fn invalid_memory_size_is_rejected_before_anything_changes() {
    let s = Skiff::with_busybox();
    let err = s.fails(&["run", "--memory", "12q", "bb:1", "true"]);
    assert!(
        err.contains("12q"),
        "error should name the bad value: {err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one-line error: {err}");
    assert_eq!(
        s.ok(&["ps", "-aq"]).trim(),
        "",
        "no container may be created"
    );
}

#[test]
#[ignore = "needs root: real containers and image builds (namespaces, overlayfs)"]
fn missing_image_is_a_clear_error() {
    let s = Skiff::new();
    let err = s.fails(&["run", "nope:1", "true"]);
    assert!(err.contains("nope"), "{err}");
    assert!(err.contains("not found"), "{err}");
}

#[test]
#[ignore = "needs root: real containers and image builds (namespaces, overlayfs)"]
fn container_names_are_unique() {
    let s = Skiff::with_busybox();
    s.ok(&["run", "-d", "--name", "one", "bb:1", "sleep", "30"]);
    let err = s.fails(&["run", "-d", "--name", "one", "bb:1", "sleep", "30"]);
    assert!(err.contains("already in use"), "{err}");
    assert_eq!(s.ok(&["ps", "-aq"]).split_whitespace().count(), 1);
}

#[test]
#[ignore = "needs root: real containers and image builds (namespaces, overlayfs)"]
fn unknown_instruction_names_file_and_line_and_tags_nothing() {
    let s = Skiff::new();
    let ctx = s.dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hello"), "hi\n").unwrap();
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\nCOPY hello /hello\nFROBNICATE now\n",
    )
    .unwrap();
    let err = s.fails(&["image", "build", "-t", "bad:1", ctx.to_str().unwrap()]);
    assert!(err.contains("Containerfile"), "{err}");
    assert!(err.contains(":3"), "should name line 3: {err}");
    assert!(
        !s.ok(&["image", "ls"]).contains("bad"),
        "nothing may be tagged"
    );
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn http_get(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}

#[test]
#[ignore = "needs root: real containers and image builds (namespaces, overlayfs)"]
fn web_example_builds_in_layers_and_serves_its_version() {
    let s = Skiff::new();
    let ctx = s.dir.path().join("web");
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/web");
    std::fs::create_dir_all(ctx.join("app")).unwrap();
    std::fs::copy(src.join("Containerfile"), ctx.join("Containerfile")).unwrap();
    std::fs::copy(src.join("app/start.sh"), ctx.join("app/start.sh")).unwrap();
    std::fs::copy("/bin/busybox", ctx.join("busybox")).unwrap();
    let ctx_str = ctx.to_str().unwrap();

    s.ok(&[
        "image",
        "build",
        "-t",
        "web:v1",
        "--build-arg",
        "VERSION=v1",
        ctx_str,
    ]);
    s.ok(&[
        "image",
        "build",
        "-t",
        "web:v2",
        "--build-arg",
        "VERSION=v2",
        ctx_str,
    ]);
    let history = s.ok(&["image", "history", "--no-trunc", "web:v2"]);
    for needle in ["COPY", "RUN", "ENV", "CMD", "EXPOSE"] {
        assert!(
            history.contains(needle),
            "history lacks {needle}:\n{history}"
        );
    }
    // base, package, app, env: four filesystem layers shared by v1 and v2 except the env one.
    let v1: serde_json::Value =
        serde_json::from_str(&s.ok(&["image", "inspect", "web:v1"])).unwrap();
    let v2: serde_json::Value =
        serde_json::from_str(&s.ok(&["image", "inspect", "web:v2"])).unwrap();
    let layers = |v: &serde_json::Value| {
        v[0]["RootFS"]["Layers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(layers(&v1).len(), 4, "{v1:#}");
    assert_eq!(
        layers(&v1)[..3],
        layers(&v2)[..3],
        "base, package and app layers are shared"
    );
    assert_ne!(layers(&v1)[3], layers(&v2)[3]);

    let port = free_port().to_string();
    s.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "host",
        "-e",
        &format!("PORT={port}"),
        "web:v2",
    ]);
    let port: u16 = port.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        if let Some(body) = http_get(port).filter(|b| b.contains("200")) {
            break body;
        }
        assert!(Instant::now() < deadline, "web never answered on {port}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(body.contains("web v2 on "), "{body}");

    // The start script traps TERM, so a stop is graceful: well before the 10 s grace, code 0.
    let started = Instant::now();
    s.ok(&["stop", "-t", "10", "web"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        started.elapsed()
    );
    let ps = s.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited (0)"), "{ps}");
}
