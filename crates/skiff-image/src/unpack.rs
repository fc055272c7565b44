//! Safe extraction of layer tars into overlay-ready snapshot directories.
//!
//! Policy (the whole layer is rejected with [`ImageError::UnsafeEntry`] on the first violation,
//! and the partial snapshot is deleted by the caller):
//! - Entry paths are made relative: leading `/` and `./` are dropped (absolute paths inside a
//!   layer mean "from the layer root"). Any `..` component is refused.
//! - Nothing is ever written through a symlink: every parent component of an entry must be a real
//!   directory (checked with `symlink_metadata`); files are created with `O_NOFOLLOW|O_EXCL`
//!   after removing whatever the same layer put there before.
//! - Symlink targets are stored verbatim (absolute ones like `/bin/busybox` are normal and are
//!   resolved inside the container root at runtime), but a target that climbs above the layer
//!   root when resolved lexically from the entry's directory (absolute targets from the root) is
//!   refused.
//! - Hardlink targets are archive paths; they must normalize inside the layer, exist already,
//!   not be directories, and not be reached through symlinked parents.
//! - Block/char devices and fifos are refused ("device nodes are not allowed").
//! - OCI whiteouts become overlayfs whiteouts: `.wh.<name>` -> char device 0/0 `<name>`;
//!   `.wh..wh..opq` -> xattr `trusted.overlay.opaque=y` on its directory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag};
use nix::sys::time::TimeSpec;

use crate::util::{HashReader, IoCtx};
use crate::{ImageError, Result};

pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
pub(crate) const WHITEOUT_PREFIX: &str = ".wh.";
pub(crate) const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Compression of a layer blob, detected from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
}

/// Opens a layer blob as an uncompressed tar stream.
pub(crate) fn open_layer(path: &Path) -> Result<(Box<dyn Read>, Compression)> {
    let f = File::open(path).ctx(|| format!("opening layer {}", path.display()))?;
    let mut r = BufReader::with_capacity(256 * 1024, f);
    let magic = r
        .fill_buf()
        .ctx(|| format!("reading layer {}", path.display()))?;
    match detect(magic) {
        Some(Compression::Gzip) => Ok((
            Box::new(flate2::read::MultiGzDecoder::new(r)),
            Compression::Gzip,
        )),
        Some(Compression::None) => Ok((Box::new(r), Compression::None)),
        None => Err(ImageError::Other(format!(
            "layer {} is zstd-compressed, which is not supported",
            path.display()
        ))),
    }
}

/// `None` means zstd (unsupported).
pub(crate) fn detect(magic: &[u8]) -> Option<Compression> {
    if magic.starts_with(&[0x1f, 0x8b]) {
        Some(Compression::Gzip)
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        None
    } else {
        Some(Compression::None)
    }
}

fn unsafe_entry(path: &Path, reason: &str) -> ImageError {
    ImageError::UnsafeEntry {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Makes an archive path relative to the layer root; `Ok(None)` is the root itself.
pub(crate) fn normalize_entry_path(raw: &Path) -> Result<Option<PathBuf>> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir => return Err(unsafe_entry(raw, "path contains '..'")),
            Component::Prefix(_) => return Err(unsafe_entry(raw, "unsupported path prefix")),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// True if a symlink at `entry` (relative to the root) pointing to `target` stays inside the
/// root when resolved lexically (absolute targets start from the root).
pub(crate) fn symlink_stays_inside(entry: &Path, target: &Path) -> bool {
    let mut depth: usize = if target.is_absolute() {
        0
    } else {
        entry.parent().map(|p| p.components().count()).unwrap_or(0)
    };
    for c in target.components() {
        match c {
            Component::ParentDir => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => return false,
            },
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    true
}

/// Makes sure every parent of `rel` under `root` is a real directory, creating missing ones.
fn prepare_parents(root: &Path, rel: &Path, create: bool) -> Result<()> {
    let mut cur = root.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    for c in parent.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => {
                return Err(unsafe_entry(
                    rel,
                    &format!(
                        "parent {} is not a directory (writing through symlinks is refused)",
                        cur.strip_prefix(root).unwrap_or(&cur).display()
                    ),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::create_dir(&cur).ctx(|| format!("creating {}", cur.display()))?;
                fs::set_permissions(&cur, fs::Permissions::from_mode(0o755))
                    .ctx(|| format!("chmod {}", cur.display()))?;
            }
            Err(e) => {
                return Err(ImageError::Io {
                    context: format!("inspecting {}", cur.display()),
                    source: e,
                })
            }
        }
    }
    Ok(())
}

/// Removes whatever is at `path` (never following symlinks).
fn remove_existing(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => {
            fs::remove_dir_all(path).ctx(|| format!("removing {}", path.display()))
        }
        Ok(_) => fs::remove_file(path).ctx(|| format!("removing {}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ImageError::Io {
            context: format!("inspecting {}", path.display()),
            source: e,
        }),
    }
}

fn set_mtime(path: &Path, mtime: u64) -> Result<()> {
    let t = TimeSpec::new(mtime.min(i64::MAX as u64) as i64, 0);
    nix::sys::stat::utimensat(
        None,
        path,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| ImageError::Io {
        context: format!("setting mtime of {}", path.display()),
        source: e.into(),
    })
}

fn set_owner_mode(path: &Path, uid: u64, gid: u64, mode: Option<u32>) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(uid as u32), Some(gid as u32))
        .ctx(|| format!("chown {}", path.display()))?;
    // chmod after chown: chown clears setuid/setgid bits.
    if let Some(mode) = mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .ctx(|| format!("chmod {}", path.display()))?;
    }
    Ok(())
}

/// Creates an overlay whiteout (char device 0/0) at `path`.
pub(crate) fn make_whiteout(path: &Path) -> Result<()> {
    nix::sys::stat::mknod(
        path,
        SFlag::S_IFCHR,
        Mode::empty(),
        nix::sys::stat::makedev(0, 0),
    )
    .map_err(|e| ImageError::Io {
        context: format!("creating whiteout {}", path.display()),
        source: e.into(),
    })
}

/// Extracts the uncompressed layer tar `reader` into the existing empty directory `dest` and
/// returns (diff_id, uncompressed size) of the stream. `what` names the layer in errors.
pub(crate) fn extract_layer(reader: impl Read, dest: &Path, what: &Path) -> Result<(String, u64)> {
    let bad = |e: io::Error| ImageError::InvalidArchive {
        path: what.to_path_buf(),
        message: e.to_string(),
    };
    fs::set_permissions(dest, fs::Permissions::from_mode(0o755))
        .ctx(|| format!("chmod {}", dest.display()))?;
    let mut hr = HashReader::new(reader);
    {
        let mut archive = tar::Archive::new(&mut hr);
        let mut dir_times: Vec<(PathBuf, u64)> = Vec::new();
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let raw = entry.path().map_err(bad)?.into_owned();
            let header = entry.header();
            let kind = header.entry_type();
            let mode = header.mode().map_err(bad)? & 0o7777;
            let uid = header.uid().map_err(bad)?;
            let gid = header.gid().map_err(bad)?;
            let mtime = header.mtime().map_err(bad)?;
            let size = header.entry_size().map_err(bad)?;
            if matches!(
                kind,
                tar::EntryType::XGlobalHeader
                    | tar::EntryType::XHeader
                    | tar::EntryType::GNULongName
                    | tar::EntryType::GNULongLink
            ) {
                continue;
            }
            let rel = match normalize_entry_path(&raw)? {
                Some(rel) => rel,
                None => {
                    if kind.is_dir() {
                        set_owner_mode(dest, uid, gid, Some(mode))?;
                        dir_times.push((dest.to_path_buf(), mtime));
                    }
                    continue;
                }
            };
            let path = dest.join(&rel);
            let name = rel
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();

            if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
                prepare_parents(dest, &rel, true)?;
                if name == OPAQUE_MARKER {
                    let dir = path.parent().unwrap_or(dest);
                    xattr::set(dir, OPAQUE_XATTR, b"y")
                        .ctx(|| format!("marking {} opaque", dir.display()))?;
                } else {
                    if hidden.is_empty()
                        || hidden == "."
                        || hidden == ".."
                        || hidden.starts_with(WHITEOUT_PREFIX)
                    {
                        return Err(unsafe_entry(&raw, "malformed whiteout"));
                    }
                    let target = path.with_file_name(hidden);
                    remove_existing(&target)?;
                    make_whiteout(&target)?;
                }
                continue;
            }

            prepare_parents(dest, &rel, true)?;
            match kind {
                tar::EntryType::Directory => {
                    match fs::symlink_metadata(&path) {
                        Ok(m) if m.file_type().is_dir() => {}
                        _ => {
                            remove_existing(&path)?;
                            fs::create_dir(&path).ctx(|| format!("creating {}", path.display()))?;
                        }
                    }
                    set_owner_mode(&path, uid, gid, Some(mode))?;
                    dir_times.push((path, mtime));
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    remove_existing(&path)?;
                    let mut f = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .custom_flags(libc_o_nofollow())
                        .open(&path)
                        .ctx(|| format!("creating {}", path.display()))?;
                    let n = io::copy(&mut entry, &mut f).map_err(bad)?;
                    if n != size {
                        return Err(ImageError::InvalidArchive {
                            path: what.to_path_buf(),
                            message: format!("truncated entry {}", raw.display()),
                        });
                    }
                    drop(f);
                    set_owner_mode(&path, uid, gid, Some(mode))?;
                    set_mtime(&path, mtime)?;
                }
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name()
                        .map_err(bad)?
                        .ok_or_else(|| unsafe_entry(&raw, "symlink without target"))?
                        .into_owned();
                    if !symlink_stays_inside(&rel, &target) {
                        return Err(unsafe_entry(
                            &raw,
                            &format!("symlink target {} escapes the layer root", target.display()),
                        ));
                    }
                    remove_existing(&path)?;
                    std::os::unix::fs::symlink(&target, &path)
                        .ctx(|| format!("creating symlink {}", path.display()))?;
                    set_owner_mode(&path, uid, gid, None)?;
                    set_mtime(&path, mtime)?;
                }
                tar::EntryType::Link => {
                    let target = entry
                        .link_name()
                        .map_err(bad)?
                        .ok_or_else(|| unsafe_entry(&raw, "hardlink without target"))?
                        .into_owned();
                    let trel = normalize_entry_path(&target)
                        .map_err(|_| {
                            unsafe_entry(
                                &raw,
                                &format!(
                                    "hardlink target {} escapes the layer root",
                                    target.display()
                                ),
                            )
                        })?
                        .ok_or_else(|| unsafe_entry(&raw, "hardlink to the layer root"))?;
                    prepare_parents(dest, &trel, false).map_err(|_| {
                        unsafe_entry(
                            &raw,
                            &format!(
                                "hardlink target {} is not inside the layer",
                                target.display()
                            ),
                        )
                    })?;
                    let tpath = dest.join(&trel);
                    match fs::symlink_metadata(&tpath) {
                        Ok(m) if !m.file_type().is_dir() => {}
                        _ => {
                            return Err(unsafe_entry(
                                &raw,
                                &format!(
                                    "hardlink target {} is missing or a directory",
                                    target.display()
                                ),
                            ))
                        }
                    }
                    if tpath != path {
                        remove_existing(&path)?;
                        fs::hard_link(&tpath, &path)
                            .ctx(|| format!("linking {}", path.display()))?;
                    }
                }
                tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                    return Err(unsafe_entry(&raw, "device nodes are not allowed"));
                }
                other => {
                    return Err(unsafe_entry(
                        &raw,
                        &format!("unsupported tar entry type {other:?}"),
                    ));
                }
            }
        }
        // Directory mtimes last: creating children changed them.
        for (dir, mtime) in dir_times.iter().rev() {
            set_mtime(dir, *mtime)?;
        }
    }
    hr.finish().map_err(bad)
}

fn libc_o_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

/// Checks that `path` is an overlay whiteout (char device 0/0).
pub(crate) fn is_whiteout(m: &fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    m.file_type().is_char_device() && m.rdev() == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h
    }

    /// Writes a raw header path (bypassing the tar crate's `..` checks) so we can test ours.
    fn raw_path(h: &mut tar::Header, p: &str) {
        let name = &mut h.as_old_mut().name;
        name.fill(0);
        name[..p.len()].copy_from_slice(p.as_bytes());
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut h = header(tar::EntryType::Regular, data.len() as u64);
        raw_path(&mut h, path);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, path: &str, target: &str) {
        let mut h = header(kind, 0);
        raw_path(&mut h, path);
        let ln = &mut h.as_old_mut().linkname;
        ln.fill(0);
        ln[..target.len()].copy_from_slice(target.as_bytes());
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
    }

    fn dir(b: &mut tar::Builder<Vec<u8>>, path: &str) {
        let mut h = header(tar::EntryType::Directory, 0);
        h.set_mode(0o755);
        raw_path(&mut h, path);
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
    }

    fn extract(data: &[u8]) -> (tempfile::TempDir, Result<(String, u64)>) {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("root");
        fs::create_dir(&dest).unwrap();
        let r = extract_layer(data, &dest, Path::new("test-layer"));
        (t, r)
    }

    fn assert_unsafe(r: Result<(String, u64)>, needle: &str) {
        match r {
            Err(ImageError::UnsafeEntry { path, reason }) => {
                assert!(
                    path.contains(needle) || reason.contains(needle),
                    "{path}: {reason} should mention {needle}"
                )
            }
            other => panic!("expected UnsafeEntry, got {other:?}"),
        }
    }

    #[test]
    #[ignore = "needs root: chowns unpacked files"]
    fn extracts_files_links_and_metadata() {
        let data = tar_with(|b| {
            dir(b, "./etc/");
            file(b, "/etc/hostname", b"box\n");
            link(b, tar::EntryType::Symlink, "bin/sh", "/bin/busybox");
            link(b, tar::EntryType::Symlink, "etc/rel", "../bin/sh");
            link(b, tar::EntryType::Link, "etc/hostname2", "./etc/hostname");
        });
        let (t, r) = extract(&data);
        let (diff_id, size) = r.unwrap();
        assert_eq!(diff_id, crate::util::sha256_digest(&data));
        assert_eq!(size, data.len() as u64);
        let root = t.path().join("root");
        assert_eq!(fs::read(root.join("etc/hostname")).unwrap(), b"box\n");
        let m = fs::metadata(root.join("etc/hostname")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o644);
        assert_eq!(m.mtime(), 1_600_000_000);
        assert_eq!(m.nlink(), 2);
        assert_eq!(
            fs::read_link(root.join("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        assert_eq!(
            fs::read_link(root.join("etc/rel")).unwrap(),
            Path::new("../bin/sh")
        );
        assert_eq!(fs::metadata(&root).unwrap().mode() & 0o777, 0o755);
    }

    #[test]
    #[ignore = "needs root: chowns unpacked files"]
    fn converts_oci_whiteouts_to_overlay() {
        let data = tar_with(|b| {
            dir(b, "etc/");
            file(b, "etc/.wh.passwd", b"");
            dir(b, "var/");
            file(b, "var/.wh..wh..opq", b"");
        });
        let (t, r) = extract(&data);
        r.unwrap();
        let root = t.path().join("root");
        let m = fs::symlink_metadata(root.join("etc/passwd")).unwrap();
        assert!(is_whiteout(&m));
        assert!(!root.join("etc/.wh.passwd").exists());
        assert_eq!(
            xattr::get(root.join("var"), OPAQUE_XATTR)
                .unwrap()
                .as_deref(),
            Some(&b"y"[..])
        );
        assert!(!root.join("var/.wh..wh..opq").exists());
    }

    #[test]
    fn rejects_dotdot_traversal() {
        let data = tar_with(|b| file(b, "a/../../x", b"evil"));
        let (t, r) = extract(&data);
        assert_unsafe(r, "..");
        assert!(!t.path().join("x").exists());
    }

    #[test]
    fn rejects_symlink_escape() {
        let data = tar_with(|b| link(b, tar::EntryType::Symlink, "a/evil", "../../etc/shadow"));
        let (_t, r) = extract(&data);
        assert_unsafe(r, "escapes");
        let data = tar_with(|b| link(b, tar::EntryType::Symlink, "evil", "/../etc/shadow"));
        assert_unsafe(extract(&data).1, "escapes");
    }

    #[test]
    #[ignore = "needs root: chowns unpacked files"]
    fn rejects_hardlink_escape() {
        let data = tar_with(|b| link(b, tar::EntryType::Link, "evil", "../../etc/shadow"));
        let (_t, r) = extract(&data);
        assert_unsafe(r, "evil");
        // A hardlink whose target path goes through a symlink is refused too.
        let data = tar_with(|b| {
            link(b, tar::EntryType::Symlink, "etc", "/etc");
            link(b, tar::EntryType::Link, "shadow", "etc/shadow");
        });
        assert_unsafe(extract(&data).1, "not inside");
    }

    #[test]
    fn rejects_device_nodes() {
        for kind in [
            tar::EntryType::Char,
            tar::EntryType::Block,
            tar::EntryType::Fifo,
        ] {
            let data = tar_with(|b| {
                let mut h = header(kind, 0);
                raw_path(&mut h, "dev/sda");
                h.set_cksum();
                b.append(&h, &[][..]).unwrap();
            });
            assert_unsafe(extract(&data).1, "device nodes are not allowed");
        }
    }

    #[test]
    #[ignore = "needs root: chowns unpacked files"]
    fn rejects_writing_through_symlinked_dir() {
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().to_str().unwrap().to_string();
        let data = tar_with(|b| {
            // Relative form stays inside, so only the write-through check can stop it.
            link(b, tar::EntryType::Symlink, "lib", "usr/lib");
            file(b, "lib/evil.so", b"x");
        });
        assert_unsafe(extract(&data).1, "symlink");
        let data = tar_with(|b| {
            link(b, tar::EntryType::Symlink, "out", &target);
            file(b, "out/pwned", b"x");
        });
        assert_unsafe(extract(&data).1, "symlink");
        assert!(!outside.path().join("pwned").exists());
    }

    #[test]
    fn truncated_layer_is_invalid() {
        let data = tar_with(|b| file(b, "big", &[7u8; 4096]));
        let cut = &data[..1024];
        let (_t, r) = extract(cut);
        assert!(matches!(r, Err(ImageError::InvalidArchive { .. })), "{r:?}");
    }

    #[test]
    fn symlink_escape_rules() {
        assert!(symlink_stays_inside(
            Path::new("bin/sh"),
            Path::new("/bin/busybox")
        ));
        assert!(symlink_stays_inside(
            Path::new("usr/lib/x"),
            Path::new("../../lib/x")
        ));
        assert!(!symlink_stays_inside(
            Path::new("usr/x"),
            Path::new("../../lib/x")
        ));
        assert!(!symlink_stays_inside(Path::new("x"), Path::new("/../x")));
    }
}
