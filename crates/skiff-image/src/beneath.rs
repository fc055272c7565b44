//! Opening build-context paths without ever leaving the context: `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)` from a descriptor of the context root (per-component `O_NOFOLLOW`
//! where openat2 is missing). A symlink anywhere on the way, or a `..` that climbs out, fails
//! the open, so a context can never make a build read a file outside it, even if it swaps a
//! directory for a symlink after the COPY sources were listed.

use std::fs::File;
use std::io::{self, Read as _};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// Opens `rel` (relative to `root`) with `flags`; `O_NOFOLLOW` and `O_CLOEXEC` are always added.
/// With `O_PATH` a trailing symlink yields a descriptor of the link itself.
fn open_beneath(root: &Path, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let dir = rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    match rustix::fs::openat2(&dir, rel, flags, Mode::empty(), resolve) {
        Err(rustix::io::Errno::NOSYS) => walk(dir, rel, flags),
        r => Ok(r?),
    }
}

/// Fallback without openat2: one `openat(O_PATH | O_NOFOLLOW | O_DIRECTORY)` per directory.
fn walk(mut dir: OwnedFd, rel: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    let parts: Vec<_> = rel.components().collect();
    let Some((last, parents)) = parts.split_last() else {
        return Ok(dir);
    };
    for c in parents {
        match c {
            Component::Normal(n) => {
                dir = rustix::fs::openat(
                    &dir,
                    *n,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
            }
            Component::CurDir => {}
            _ => return Err(io::Error::from(io::ErrorKind::PermissionDenied)),
        }
    }
    match last {
        Component::Normal(n) => Ok(rustix::fs::openat(&dir, *n, flags, Mode::empty())?),
        Component::CurDir => Ok(rustix::fs::openat(&dir, ".", flags, Mode::empty())?),
        _ => Err(io::Error::from(io::ErrorKind::PermissionDenied)),
    }
}

fn is_missing(e: &io::Error) -> bool {
    let code = e.raw_os_error();
    code == Some(rustix::io::Errno::NOENT.raw_os_error())
        || code == Some(rustix::io::Errno::NOTDIR.raw_os_error())
}

/// `full` relative to `root`, or an error when it is not below it.
fn relative<'a>(root: &Path, full: &'a Path) -> io::Result<&'a Path> {
    full.strip_prefix(root)
        .map_err(|_| io::Error::new(io::ErrorKind::PermissionDenied, "outside the build context"))
}

/// Checks that `rel` exists below `root` with no symlink in its directories (the last
/// component may be a symlink: COPY copies links as links).
pub(crate) fn check(root: &Path, rel: &Path) -> io::Result<()> {
    open_beneath(root, rel, OFlags::PATH).map(drop)
}

/// Opens the regular file `full` (an absolute path below `root`) for reading.
pub(crate) fn open_file(root: &Path, full: &Path) -> io::Result<File> {
    let fd = open_beneath(root, relative(root, full)?, OFlags::RDONLY)?;
    Ok(File::from(fd))
}

/// Checks the directory `full` (an absolute path below `root`) before it is listed.
pub(crate) fn check_dir(root: &Path, full: &Path) -> io::Result<()> {
    open_beneath(
        root,
        relative(root, full)?,
        OFlags::PATH | OFlags::DIRECTORY,
    )
    .map(drop)
}

/// Reads `rel` (e.g. `etc/passwd`) from an image's merged layers (`layers` bottom first, as in
/// [`crate::ResolvedImage::layers`]) the way the overlay would show it, at most `max` bytes:
/// the topmost layer that has it wins, a whiteout hides it (None). A symlink on the way is an
/// error rather than a path out of the image (an image could point `etc/passwd` at a host
/// file).
pub fn read_image_file(layers: &[PathBuf], rel: &str, max: u64) -> io::Result<Option<Vec<u8>>> {
    let rel = Path::new(rel);
    for layer in layers.iter().rev() {
        let fd = match open_beneath(layer, rel, OFlags::PATH) {
            Ok(fd) => fd,
            Err(e) if is_missing(&e) => continue,
            Err(e) => return Err(e),
        };
        let st = rustix::fs::fstat(&fd)?;
        let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
        match kind {
            // Overlay whiteout (0:0 character device): deleted in this layer.
            rustix::fs::FileType::CharacterDevice => return Ok(None),
            rustix::fs::FileType::RegularFile => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a regular file", rel.display()),
                ))
            }
        }
        let f = File::from(open_beneath(layer, rel, OFlags::RDONLY)?);
        let mut buf = Vec::new();
        f.take(max).read_to_end(&mut buf)?;
        return Ok(Some(buf));
    }
    Ok(None)
}
