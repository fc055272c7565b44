//! Writing layer blobs: a gzip-compressed tar built entry by entry, hashed on the fly for both
//! the blob digest (compressed) and the diff_id (uncompressed). Also converts an overlay upper
//! directory (after a RUN) back into an OCI layer with OCI whiteouts.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use tempfile::NamedTempFile;

use crate::unpack::{is_whiteout, OPAQUE_MARKER, OPAQUE_XATTR, WHITEOUT_PREFIX};
use crate::util::{HashWriter, IoCtx};
use crate::{ImageError, Result};

/// Ownership, permissions and time of one entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
}

impl Meta {
    pub fn from_fs(m: &fs::Metadata) -> Self {
        Meta {
            mode: m.mode() & 0o7777,
            uid: m.uid() as u64,
            gid: m.gid() as u64,
            mtime: m.mtime().max(0) as u64,
        }
    }
}

/// A finished layer blob in a temp file, ready to be moved into the blob store.
pub(crate) struct LayerBlob {
    pub file: NamedTempFile,
    /// Digest of the compressed blob.
    pub digest: String,
    pub size: u64,
    pub diff_id: String,
    pub uncompressed_size: u64,
}

type Inner = HashWriter<GzEncoder<HashWriter<File>>>;

pub(crate) struct LayerWriter {
    tar: tar::Builder<Inner>,
    file: NamedTempFile,
}

fn header(kind: tar::EntryType, meta: Meta, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(meta.mode);
    h.set_uid(meta.uid);
    h.set_gid(meta.gid);
    h.set_mtime(meta.mtime);
    h.set_size(size);
    h
}

impl LayerWriter {
    pub fn new(tmp_dir: &Path) -> Result<Self> {
        let file = tempfile::Builder::new()
            .prefix("layer-")
            .tempfile_in(tmp_dir)
            .ctx(|| format!("creating temp file in {}", tmp_dir.display()))?;
        let f = file.reopen().ctx(|| "reopening layer temp file")?;
        let gz = GzEncoder::new(HashWriter::new(f), flate2::Compression::fast());
        let mut tar = tar::Builder::new(HashWriter::new(gz));
        tar.mode(tar::HeaderMode::Complete);
        Ok(LayerWriter { tar, file })
    }

    fn err(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
        move |source| ImageError::Io {
            context: format!("writing layer entry {}", path.display()),
            source,
        }
    }

    pub fn dir(&mut self, path: &Path, meta: Meta) -> Result<()> {
        let mut h = header(tar::EntryType::Directory, meta, 0);
        self.tar
            .append_data(&mut h, path, io::empty())
            .map_err(Self::err(path))
    }

    pub fn file(&mut self, path: &Path, meta: Meta, size: u64, data: impl Read) -> Result<()> {
        let mut h = header(tar::EntryType::Regular, meta, size);
        // Guard against files changing size while we read them: the tar would be corrupt.
        let mut data = data.take(size);
        let mut counted = CountingReader {
            inner: &mut data,
            n: 0,
        };
        self.tar
            .append_data(&mut h, path, &mut counted)
            .map_err(Self::err(path))?;
        if counted.n != size {
            return Err(ImageError::Other(format!(
                "{} changed size while being archived",
                path.display()
            )));
        }
        Ok(())
    }

    pub fn symlink(&mut self, path: &Path, meta: Meta, target: &Path) -> Result<()> {
        let mut h = header(tar::EntryType::Symlink, meta, 0);
        self.tar
            .append_link(&mut h, path, target)
            .map_err(Self::err(path))
    }

    pub fn hardlink(&mut self, path: &Path, meta: Meta, target: &Path) -> Result<()> {
        let mut h = header(tar::EntryType::Link, meta, 0);
        self.tar
            .append_link(&mut h, path, target)
            .map_err(Self::err(path))
    }

    /// An OCI whiteout hiding `path` of lower layers.
    pub fn whiteout(&mut self, path: &Path, mtime: u64) -> Result<()> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let wh = path.with_file_name(format!("{WHITEOUT_PREFIX}{name}"));
        let meta = Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime,
        };
        self.file(&wh, meta, 0, io::empty())
    }

    /// Marks directory `dir` opaque (lower content hidden).
    pub fn opaque(&mut self, dir: &Path, mtime: u64) -> Result<()> {
        let meta = Meta {
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime,
        };
        self.file(&dir.join(OPAQUE_MARKER), meta, 0, io::empty())
    }

    pub fn finish(self) -> Result<LayerBlob> {
        let inner = self.tar.into_inner().ctx(|| "finishing layer tar")?;
        let diff_id = inner.digest();
        let uncompressed_size = inner.count;
        let hw = inner.inner.finish().ctx(|| "finishing layer gzip stream")?;
        let digest = hw.digest();
        let size = hw.count;
        hw.inner.sync_all().ctx(|| "syncing layer temp file")?;
        Ok(LayerBlob {
            file: self.file,
            digest,
            size,
            diff_id,
            uncompressed_size,
        })
    }
}

struct CountingReader<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// Converts an overlay upper directory into layer entries: whiteout devices become `.wh.<name>`,
/// opaque directories get a `.wh..wh..opq` entry, hardlinks inside the dir are kept. Returns
/// paths that were skipped (sockets, fifos, device nodes).
pub(crate) fn add_upper_dir(w: &mut LayerWriter, upper: &Path) -> Result<Vec<PathBuf>> {
    let mut skipped = Vec::new();
    let mut inodes: HashMap<(u64, u64), PathBuf> = HashMap::new();
    walk_upper(w, upper, Path::new(""), &mut inodes, &mut skipped)?;
    Ok(skipped)
}

fn sorted_dir(dir: &Path) -> Result<Vec<std::ffi::OsString>> {
    let mut names = Vec::new();
    for e in fs::read_dir(dir).ctx(|| format!("reading {}", dir.display()))? {
        names.push(e.ctx(|| format!("reading {}", dir.display()))?.file_name());
    }
    names.sort();
    Ok(names)
}

fn walk_upper(
    w: &mut LayerWriter,
    root: &Path,
    rel: &Path,
    inodes: &mut HashMap<(u64, u64), PathBuf>,
    skipped: &mut Vec<PathBuf>,
) -> Result<()> {
    for name in sorted_dir(&root.join(rel))? {
        let p = rel.join(&name);
        let full = root.join(&p);
        let m = fs::symlink_metadata(&full).ctx(|| format!("inspecting {}", full.display()))?;
        let ft = m.file_type();
        let meta = Meta::from_fs(&m);
        if is_whiteout(&m) {
            w.whiteout(&p, meta.mtime)?;
        } else if ft.is_dir() {
            w.dir(&p, meta)?;
            let opaque = xattr::get(&full, OPAQUE_XATTR)
                .ctx(|| format!("reading xattrs of {}", full.display()))?;
            if opaque.as_deref() == Some(b"y") {
                w.opaque(&p, meta.mtime)?;
            }
            walk_upper(w, root, &p, inodes, skipped)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&full).ctx(|| format!("reading link {}", full.display()))?;
            w.symlink(&p, meta, &target)?;
        } else if ft.is_file() {
            if m.nlink() > 1 {
                if let Some(first) = inodes.get(&(m.dev(), m.ino())) {
                    let first = first.clone();
                    w.hardlink(&p, meta, &first)?;
                    continue;
                }
                inodes.insert((m.dev(), m.ino()), p.clone());
            }
            let f = File::open(&full).ctx(|| format!("opening {}", full.display()))?;
            w.file(&p, meta, m.len(), f)?;
        } else {
            skipped.push(p);
        }
    }
    Ok(())
}
