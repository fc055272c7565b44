//! Build contexts can never make COPY/ADD read outside themselves (issue 10 item 10): a
//! symlink to a directory outside the context, reached through a wildcard component
//! (`COPY lin*/secret.txt`), through a plain component, or nested, fails the build, and the
//! secret's bytes never reach a layer blob.

use std::fs;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use skiff_image::*;

struct NoRun;

impl BuildRunner for NoRun {
    fn run(
        &self,
        _step: &RunStep<'_>,
    ) -> std::result::Result<i32, Box<dyn std::error::Error + Send + Sync>> {
        panic!("no RUN in these builds");
    }
}

fn opts(ctx: &Path, tag: &str) -> BuildOptions {
    BuildOptions {
        tag: tag.into(),
        context: ctx.to_path_buf(),
        file: None,
        build_args: vec![],
        no_cache: false,
    }
}

/// Every blob in the store, gunzipped when it is gzip: does any contain `needle`?
fn store_contains(images: &Path, needle: &[u8]) -> bool {
    let mut stack = vec![images.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
                continue;
            }
            if !m.is_file() {
                continue;
            }
            let raw = fs::read(&p).unwrap();
            let mut plain = Vec::new();
            let data = if raw.starts_with(&[0x1f, 0x8b])
                && flate2::read::MultiGzDecoder::new(&raw[..])
                    .read_to_end(&mut plain)
                    .is_ok()
            {
                plain
            } else {
                raw
            };
            if data.windows(needle.len()).any(|w| w == needle) {
                return true;
            }
        }
    }
    false
}

struct Setup {
    _t: tempfile::TempDir,
    ctx: PathBuf,
    images: PathBuf,
    store: ImageStore,
    secret: Vec<u8>,
}

fn setup() -> Setup {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("outside");
    fs::create_dir_all(outside.join("deeper")).unwrap();
    let secret = format!("TOP-SECRET-{}", std::process::id()).into_bytes();
    fs::write(outside.join("secret.txt"), &secret).unwrap();
    fs::write(outside.join("deeper/secret.txt"), &secret).unwrap();
    let ctx = t.path().join("ctx");
    fs::create_dir_all(ctx.join("sub")).unwrap();
    fs::write(ctx.join("ok.txt"), "fine\n").unwrap();
    symlink(&outside, ctx.join("link")).unwrap();
    symlink(&outside, ctx.join("sub/link")).unwrap();
    // A relative link climbing out of the context.
    symlink("../outside", ctx.join("rel")).unwrap();
    let images = t.path().join("images");
    let store = ImageStore::open(&images).unwrap();
    Setup {
        _t: t,
        ctx,
        images,
        store,
        secret,
    }
}

#[test]
#[ignore = "needs root: unpacking chowns files to the image's owners"]
fn copy_through_a_wildcard_symlink_cannot_leave_the_context() {
    let s = setup();
    let attacks = [
        "COPY lin*/secret.txt /x/",
        "COPY l?nk/secret.txt /x/",
        "COPY */secret.txt /x/",
        "COPY */*/secret.txt /x/",
        "COPY sub/lin*/secret.txt /x/",
        "COPY link/secret.txt /x/",
        "COPY re*/secret.txt /x/",
        "COPY ok.txt lin*/deeper /x/",
        "ADD lin*/secret.txt /x/",
    ];
    for (i, step) in attacks.iter().enumerate() {
        fs::write(
            s.ctx.join("Containerfile"),
            format!("FROM scratch\n{step}\n"),
        )
        .unwrap();
        let res = s
            .store
            .build(&opts(&s.ctx, &format!("evil:{i}")), &NoRun, &NoProgress);
        match res {
            Err(ImageError::Build { line, message, .. }) => {
                assert_eq!(line, 2, "{step}: {message}");
                assert!(
                    message.contains("goes through a symlink"),
                    "{step}: {message}"
                );
            }
            other => panic!(
                "{step}: expected a build error, got {:?}",
                other.map(|r| r.image)
            ),
        }
        assert!(
            !store_contains(&s.images, &s.secret),
            "{step}: the secret reached the image store"
        );
    }
    assert!(s.store.list().unwrap().is_empty());

    // A symlink as the last component is copied as a link (its target is not read), and a
    // plain wildcard copy still works.
    fs::write(
        s.ctx.join("Containerfile"),
        "FROM scratch\nCOPY lin* /y/\nCOPY o*.txt /z/\n",
    )
    .unwrap();
    s.store
        .build(&opts(&s.ctx, "fine:v1"), &NoRun, &NoProgress)
        .unwrap();
    assert!(store_contains(&s.images, b"fine\n"));
    assert!(!store_contains(&s.images, &s.secret));
}
