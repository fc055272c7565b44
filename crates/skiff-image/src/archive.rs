//! Archive import (docker-archive, oci-archive, plain rootfs tarball) and export (`save`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, HistoryBuilder, ImageConfiguration, ImageConfigurationBuilder,
    ImageIndex, ImageManifest, ImageManifestBuilder, MediaType, Os, RootFsBuilder,
};

use crate::reference::Reference;
use crate::store::{json_err, parse_digest, Txn, REF_NAME};
use crate::unpack::{detect, normalize_entry_path, Compression};
use crate::util::{canonical_json, hash_file, now_rfc3339, HashWriter, IoCtx};
use crate::{ImageError, ImageStore, ImageSummary, Progress, Result};

const CONTAINERD_NAME: &str = "io.containerd.image.name";
pub(crate) const DEFAULT_PATH: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn invalid(path: &Path, message: impl Into<String>) -> ImageError {
    ImageError::InvalidArchive {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Opens an archive, transparently un-gzipping it.
fn open_archive(path: &Path) -> Result<Box<dyn Read>> {
    let f = File::open(path).ctx(|| format!("opening {}", path.display()))?;
    let mut r = BufReader::with_capacity(256 * 1024, f);
    let magic = r.fill_buf().ctx(|| format!("reading {}", path.display()))?;
    match detect(magic) {
        Some(Compression::Gzip) => Ok(Box::new(flate2::read::MultiGzDecoder::new(r))),
        Some(Compression::None) => Ok(Box::new(r)),
        None => Err(invalid(path, "zstd-compressed archives are not supported")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Docker,
    Oci,
    Rootfs,
}

/// Pass 1: which kind of archive is this? Also catches truncated/corrupt tars early.
fn detect_format(path: &Path) -> Result<Format> {
    let bad = |e: io::Error| invalid(path, e.to_string());
    let mut ar = tar::Archive::new(open_archive(path)?);
    let mut names = HashSet::new();
    let mut any = false;
    for entry in ar.entries().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        any = true;
        let p = entry.path().map_err(bad)?.into_owned();
        if let Ok(Some(rel)) = normalize_entry_path(&p) {
            if rel.components().count() == 1 {
                names.insert(rel.to_string_lossy().into_owned());
            }
        }
    }
    if !any {
        return Err(invalid(path, "empty or not a tar archive"));
    }
    Ok(
        if names.contains("oci-layout") && names.contains("index.json") {
            Format::Oci
        } else if names.contains("manifest.json") {
            Format::Docker
        } else {
            Format::Rootfs
        },
    )
}

struct Spooled {
    file: PathBuf,
    digest: String,
    size: u64,
}

/// Pass 2 for image archives: every regular file copied into `dir` and hashed.
struct Spool {
    archive: PathBuf,
    files: HashMap<String, Spooled>,
    links: HashMap<String, String>,
}

impl Spool {
    fn read(path: &Path, dir: &Path, progress: &dyn Progress) -> Result<Spool> {
        let bad = |e: io::Error| invalid(path, e.to_string());
        let total = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        progress.start(&format!("reading {}", path.display()), total);
        let mut ar = tar::Archive::new(open_archive(path)?);
        let mut files = HashMap::new();
        let mut links = HashMap::new();
        for (i, entry) in ar.entries().map_err(bad)?.enumerate() {
            let mut entry = entry.map_err(bad)?;
            let raw = entry.path().map_err(bad)?.into_owned();
            let Some(rel) = normalize_entry_path(&raw)? else {
                continue;
            };
            let key = rel.to_string_lossy().into_owned();
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let size = entry.header().entry_size().map_err(bad)?;
                    let file = dir.join(format!("{i}"));
                    let out = File::create(&file).ctx(|| format!("creating {}", file.display()))?;
                    let mut w = HashWriter::new(out);
                    let n = io::copy(&mut entry, &mut w).map_err(bad)?;
                    if n != size {
                        return Err(invalid(path, format!("truncated entry {key}")));
                    }
                    progress.advance(n);
                    files.insert(
                        key,
                        Spooled {
                            file,
                            digest: w.digest(),
                            size: n,
                        },
                    );
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let is_sym = entry.header().entry_type() == tar::EntryType::Symlink;
                    let Some(target) = entry.link_name().map_err(bad)? else {
                        continue;
                    };
                    // Symlinks are relative to their directory, hardlinks to the archive root.
                    let joined = if is_sym && !target.is_absolute() {
                        rel.parent().unwrap_or(Path::new("")).join(&target)
                    } else {
                        target.into_owned()
                    };
                    if let Some(t) = lexical_normalize(&joined) {
                        links.insert(key, t);
                    }
                }
                _ => {}
            }
        }
        progress.finish();
        Ok(Spool {
            archive: path.to_path_buf(),
            files,
            links,
        })
    }

    fn get(&self, name: &str) -> Result<&Spooled> {
        let mut key = lexical_normalize(Path::new(name))
            .ok_or_else(|| invalid(&self.archive, format!("bad path {name:?}")))?;
        for _ in 0..16 {
            if let Some(f) = self.files.get(&key) {
                return Ok(f);
            }
            match self.links.get(&key) {
                Some(t) => key = t.clone(),
                None => break,
            }
        }
        Err(invalid(&self.archive, format!("missing file {name}")))
    }

    fn read_json(&self, name: &str) -> Result<Vec<u8>> {
        let s = self.get(name)?;
        if s.size > 64 << 20 {
            return Err(invalid(&self.archive, format!("{name} is too large")));
        }
        fs::read(&s.file).ctx(|| format!("reading spooled {name}"))
    }

    /// The blob for `desc`, verified against its digest and size.
    fn blob(&self, desc: &Descriptor, what: &str) -> Result<&Spooled> {
        let digest = desc.digest();
        let name = format!("blobs/{}/{}", digest.algorithm(), digest.digest());
        let s = self.get(&name)?;
        if s.digest != digest.to_string() {
            return Err(ImageError::DigestMismatch {
                what: format!("{what} {name}"),
                expected: digest.to_string(),
                actual: s.digest.clone(),
            });
        }
        if s.size != desc.size() {
            return Err(invalid(
                &self.archive,
                format!(
                    "{what} {name}: size {} but descriptor says {}",
                    s.size,
                    desc.size()
                ),
            ));
        }
        Ok(s)
    }
}

/// Normalizes "a/./b/../c" to "a/c"; None if it climbs above the root.
fn lexical_normalize(p: &Path) -> Option<String> {
    let mut out: Vec<&std::ffi::OsStr> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::ParentDir => {
                out.pop()?;
            }
            _ => {}
        }
    }
    Some(
        out.iter()
            .map(|s| s.to_string_lossy())
            .collect::<Vec<_>>()
            .join("/"),
    )
}

/// One image found in an archive, ready to be stored.
struct Candidate {
    names: Vec<Reference>,
    /// Name-less tags (OCI ref.name holding only a tag).
    bare_tag: Option<String>,
    manifest_bytes: Vec<u8>,
    manifest_media_type: MediaType,
    config: ImageConfiguration,
    config_file: PathBuf,
    config_digest: String,
    /// (spooled file, digest, uncompressed digest, what)
    layers: Vec<(PathBuf, String, String, String)>,
}

pub(crate) fn import(
    store: &ImageStore,
    file: &Path,
    tag: Option<&str>,
    progress: &dyn Progress,
) -> Result<Vec<ImageSummary>> {
    let tag = tag.map(Reference::parse).transpose()?;
    let format = detect_format(file)?;
    let spool_dir = tempfile::Builder::new()
        .prefix("import-")
        .tempdir_in(store.tmp_dir())
        .ctx(|| "creating import temp dir")?;
    let mut txn = Txn::new(store);
    let mut tags: Vec<(Reference, Descriptor)> = Vec::new();

    if format == Format::Rootfs {
        let tag = tag.ok_or_else(|| {
            ImageError::Other(format!(
                "{} is a plain rootfs tarball (no manifest.json or oci-layout); give it a name with -t NAME:TAG",
                file.display()
            ))
        })?;
        let copy = spool_dir.path().join("layer");
        fs::copy(file, &copy).ctx(|| format!("copying {}", file.display()))?;
        let (digest, size) = hash_file(&copy)?;
        let compressed = {
            let mut head = [0u8; 4];
            let n = File::open(&copy)
                .and_then(|mut f| f.read(&mut head))
                .unwrap_or(0);
            detect(&head[..n]) == Some(Compression::Gzip)
        };
        let diff_id = txn.unpack(&copy, None, &format!("{}", file.display()), progress)?;
        let file_name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let now = now_rfc3339();
        let config = ImageConfigurationBuilder::default()
            .created(now.clone())
            .architecture(Arch::Amd64)
            .os(Os::Linux)
            .config(
                ConfigBuilder::default()
                    .env(vec![DEFAULT_PATH.to_string()])
                    .build()
                    .map_err(oci("config"))?,
            )
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(vec![diff_id])
                    .build()
                    .map_err(oci("rootfs"))?,
            )
            .history(vec![HistoryBuilder::default()
                .created(now)
                .created_by(format!("imported from {file_name}"))
                .build()
                .map_err(oci("history"))?])
            .build()
            .map_err(oci("image config"))?;
        let media = if compressed {
            MediaType::ImageLayerGzip
        } else {
            MediaType::ImageLayer
        };
        txn.commit_blob_file(&copy, &digest)?;
        let layer = Descriptor::new(media, size, parse_digest(&digest)?);
        let desc = store_image(&mut txn, &config, vec![layer])?;
        tags.push((tag, desc));
    } else {
        let spool = Spool::read(file, spool_dir.path(), progress)?;
        let mut cands = if format == Format::Oci {
            oci_candidates(&spool)?
        } else {
            docker_candidates(&spool)?
        };
        if cands.is_empty() {
            return Err(invalid(file, "archive holds no images"));
        }
        if let Some(t) = &tag {
            if cands.len() != 1 {
                return Err(ImageError::Other(format!(
                    "{} holds {} images; a tag can only name one",
                    file.display(),
                    cands.len()
                )));
            }
            cands[0].names = vec![t.clone()];
        }
        for c in &cands {
            if c.names.is_empty() {
                let hint = c
                    .bare_tag
                    .as_deref()
                    .map(|t| format!(" (only tag {t:?})"))
                    .unwrap_or_default();
                return Err(ImageError::Other(format!(
                    "image {} in {} has no name{hint}; give one with -t NAME:TAG",
                    c.config_digest,
                    file.display()
                )));
            }
        }
        // Verify and unpack every layer before anything becomes visible.
        for c in &cands {
            let diff_ids = c.config.rootfs().diff_ids();
            if diff_ids.len() != c.layers.len() {
                return Err(invalid(
                    file,
                    format!(
                        "image {} has {} layers but {} diff_ids",
                        c.config_digest,
                        c.layers.len(),
                        diff_ids.len()
                    ),
                ));
            }
            for (l, diff_id) in c.layers.iter().zip(diff_ids) {
                if l.2 != *diff_id {
                    return Err(ImageError::DigestMismatch {
                        what: format!("{} (uncompressed content vs config diff_ids)", l.3),
                        expected: diff_id.clone(),
                        actual: l.2.clone(),
                    });
                }
                txn.unpack(&l.0, Some(diff_id), &l.3, progress)?;
            }
        }
        for c in &cands {
            for (f, digest, _, _) in &c.layers {
                txn.commit_blob_file(f, digest)?;
            }
            txn.commit_blob_file(&c.config_file, &c.config_digest)?;
            let mdigest = txn.put_blob(&c.manifest_bytes)?;
            let desc = Descriptor::new(
                c.manifest_media_type.clone(),
                c.manifest_bytes.len() as u64,
                parse_digest(&mdigest)?,
            );
            for n in &c.names {
                tags.push((n.clone(), desc.clone()));
            }
        }
    }
    store.set_tags(&tags)?;
    txn.commit();
    let mut out = Vec::new();
    for (r, d) in &tags {
        out.push(store.summary(&store.load_image(r, d)?));
    }
    Ok(out)
}

fn oci(what: &'static str) -> impl FnOnce(oci_spec::OciSpecError) -> ImageError {
    move |e| ImageError::Other(format!("building {what}: {e}"))
}

/// Writes config + manifest blobs for a new image; returns the manifest descriptor.
pub(crate) fn store_image(
    txn: &mut Txn<'_>,
    config: &ImageConfiguration,
    layers: Vec<Descriptor>,
) -> Result<Descriptor> {
    let config_bytes = canonical_json(config)?;
    let config_digest = txn.put_blob(&config_bytes)?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(
            MediaType::ImageConfig,
            config_bytes.len() as u64,
            parse_digest(&config_digest)?,
        ))
        .layers(layers)
        .build()
        .map_err(oci("manifest"))?;
    let bytes = canonical_json(&manifest)?;
    let digest = txn.put_blob(&bytes)?;
    Ok(Descriptor::new(
        MediaType::ImageManifest,
        bytes.len() as u64,
        parse_digest(&digest)?,
    ))
}

fn is_index(mt: &MediaType) -> bool {
    matches!(mt, MediaType::ImageIndex)
        || mt.to_string() == "application/vnd.docker.distribution.manifest.list.v2+json"
}

fn check_layer_media(mt: &MediaType, what: &str) -> Result<()> {
    if mt.to_string().contains("zstd") {
        return Err(ImageError::Other(format!(
            "{what}: zstd-compressed layers are not supported"
        )));
    }
    Ok(())
}

/// Spooled layer file + its uncompressed digest (computed by streaming through it).
fn layer_of(spool: &Spool, s: &Spooled, what: &str) -> Result<(PathBuf, String, String, String)> {
    let mut head = [0u8; 4];
    let n = File::open(&s.file)
        .and_then(|mut f| f.read(&mut head))
        .ctx(|| format!("reading {what}"))?;
    let diff_id = match detect(&head[..n]) {
        None => {
            return Err(ImageError::Other(format!(
                "{what}: zstd-compressed layers are not supported"
            )))
        }
        Some(Compression::None) => s.digest.clone(),
        Some(Compression::Gzip) => {
            let f = File::open(&s.file).ctx(|| format!("reading {what}"))?;
            let hr =
                crate::util::HashReader::new(flate2::read::MultiGzDecoder::new(BufReader::new(f)));
            hr.finish()
                .map_err(|e| invalid(&spool.archive, format!("{what}: {e}")))?
                .0
        }
    };
    Ok((s.file.clone(), s.digest.clone(), diff_id, what.to_string()))
}

fn oci_candidates(spool: &Spool) -> Result<Vec<Candidate>> {
    let index = ImageIndex::from_reader(&spool.read_json("index.json")?[..])
        .map_err(json_err("index.json"))?;
    let mut out = Vec::new();
    for d in index.manifests() {
        let ann = d.annotations().clone().unwrap_or_default();
        let mut names = Vec::new();
        let mut bare_tag = None;
        if let Some(n) = ann.get(CONTAINERD_NAME) {
            names.push(Reference::parse(n)?);
        } else if let Some(n) = ann.get(REF_NAME) {
            if n.contains(':') || n.contains('/') {
                names.push(Reference::parse(n)?);
            } else {
                bare_tag = Some(n.clone());
            }
        }
        let mut desc = d.clone();
        // Nested index: pick linux/amd64 (or the only entry).
        for _ in 0..4 {
            if !is_index(desc.media_type()) {
                break;
            }
            let s = spool.blob(&desc, "index")?;
            let sub = ImageIndex::from_reader(File::open(&s.file).ctx(|| "reading index")?)
                .map_err(json_err("index"))?;
            let pick = sub
                .manifests()
                .iter()
                .find(|m| {
                    m.platform()
                        .as_ref()
                        .is_some_and(|p| *p.os() == Os::Linux && *p.architecture() == Arch::Amd64)
                })
                .or_else(|| (sub.manifests().len() == 1).then(|| &sub.manifests()[0]))
                .ok_or_else(|| ImageError::Other("archive has no linux/amd64 image".into()))?;
            desc = pick.clone();
        }
        let ms = spool.blob(&desc, "manifest")?;
        let manifest_bytes = fs::read(&ms.file).ctx(|| "reading manifest")?;
        let manifest =
            ImageManifest::from_reader(&manifest_bytes[..]).map_err(json_err("manifest"))?;
        let cs = spool.blob(manifest.config(), "config")?;
        let config =
            ImageConfiguration::from_reader(File::open(&cs.file).ctx(|| "reading config")?)
                .map_err(json_err("image config"))?;
        let mut layers = Vec::new();
        for l in manifest.layers() {
            let what = format!("layer {}", l.digest());
            check_layer_media(l.media_type(), &what)?;
            let s = spool.blob(l, "layer")?;
            layers.push(layer_of(spool, s, &what)?);
        }
        out.push(Candidate {
            names,
            bare_tag,
            manifest_bytes,
            manifest_media_type: desc.media_type().clone(),
            config,
            config_file: cs.file.clone(),
            config_digest: cs.digest.clone(),
            layers,
        });
    }
    Ok(out)
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Checks files named by digest ("blobs/sha256/<hex>", "<hex>.json") against their content.
fn check_named_digest(spool: &Spool, name: &str, s: &Spooled, what: &str) -> Result<()> {
    let base = Path::new(name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let hex = base.strip_suffix(".json").unwrap_or(&base);
    let by_digest =
        name.starts_with("blobs/sha256/") || (base.ends_with(".json") && hex.len() == 64);
    if by_digest && hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let expected = format!("sha256:{hex}");
        if s.digest != expected {
            return Err(ImageError::DigestMismatch {
                what: format!("{what} {name} in {}", spool.archive.display()),
                expected,
                actual: s.digest.clone(),
            });
        }
    }
    Ok(())
}

fn docker_candidates(spool: &Spool) -> Result<Vec<Candidate>> {
    let entries: Vec<DockerManifestEntry> =
        serde_json::from_slice(&spool.read_json("manifest.json")?)
            .map_err(|e| invalid(&spool.archive, format!("manifest.json: {e}")))?;
    let mut out = Vec::new();
    for e in entries {
        let cs = spool.get(&e.config)?;
        check_named_digest(spool, &e.config, cs, "config")?;
        let config =
            ImageConfiguration::from_reader(File::open(&cs.file).ctx(|| "reading config")?)
                .map_err(json_err("image config"))?;
        let mut layers = Vec::new();
        let mut descs = Vec::new();
        for l in &e.layers {
            let s = spool.get(l)?;
            check_named_digest(spool, l, s, "layer")?;
            let what = format!("layer {l}");
            let layer = layer_of(spool, s, &what)?;
            let media = if layer.1 == layer.2 {
                MediaType::ImageLayer
            } else {
                MediaType::ImageLayerGzip
            };
            descs.push(Descriptor::new(media, s.size, parse_digest(&s.digest)?));
            layers.push(layer);
        }
        let config_bytes_len = cs.size;
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(
                MediaType::ImageConfig,
                config_bytes_len,
                parse_digest(&cs.digest)?,
            ))
            .layers(descs)
            .build()
            .map_err(oci("manifest"))?;
        let mut names = Vec::new();
        for t in e.repo_tags.unwrap_or_default() {
            names.push(Reference::parse(&t)?);
        }
        out.push(Candidate {
            names,
            bare_tag: None,
            manifest_bytes: canonical_json(&manifest)?,
            manifest_media_type: MediaType::ImageManifest,
            config,
            config_file: cs.file.clone(),
            config_digest: cs.digest.clone(),
            layers,
        });
    }
    Ok(out)
}

/// Writes an archive that is both an oci-archive and a docker-archive (like `docker save` since
/// Docker 25): oci-layout, index.json, blobs/sha256/*, manifest.json.
pub(crate) fn save(store: &ImageStore, references: &[&str], out: &Path) -> Result<()> {
    // manifest digest -> (descriptor, tags)
    let mut images: BTreeMap<String, (Descriptor, Vec<Reference>)> = BTreeMap::new();
    let mut order = Vec::new();
    for r in references {
        for (reference, desc) in store.find_entries(r)? {
            let key = desc.digest().to_string();
            let e = images.entry(key.clone()).or_insert_with(|| {
                order.push(key);
                (desc.clone(), Vec::new())
            });
            if !e.1.contains(&reference) {
                e.1.push(reference);
            }
        }
    }
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".skiff-save-")
        .tempfile_in(dir)
        .ctx(|| format!("creating temp file in {}", dir.display()))?;
    let mut tar = tar::Builder::new(io::BufWriter::new(
        tmp.reopen().ctx(|| "reopening temp file")?,
    ));
    let add_bytes = |tar: &mut tar::Builder<_>, name: &str, bytes: &[u8]| -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(bytes.len() as u64);
        h.set_mtime(0);
        tar.append_data(&mut h, name, bytes)
            .ctx(|| format!("writing {name} into {}", out.display()))
    };
    let add_dir = |tar: &mut tar::Builder<io::BufWriter<File>>, name: &str| -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(0);
        tar.append_data(&mut h, name, io::empty())
            .ctx(|| format!("writing {name} into {}", out.display()))
    };
    add_bytes(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add_dir(&mut tar, "blobs/")?;
    add_dir(&mut tar, "blobs/sha256/")?;
    let mut written = HashSet::new();
    let mut index_descs = Vec::new();
    let mut docker_manifest = Vec::new();
    for key in &order {
        let Some((desc, refs)) = images.get(key) else {
            continue;
        };
        let manifest_bytes = store.read_blob(key)?;
        let manifest =
            ImageManifest::from_reader(&manifest_bytes[..]).map_err(json_err("manifest"))?;
        let mut blobs = vec![key.clone(), manifest.config().digest().to_string()];
        blobs.extend(manifest.layers().iter().map(|l| l.digest().to_string()));
        for b in &blobs {
            if !written.insert(b.clone()) {
                continue;
            }
            let path = store.blob_path(b)?;
            let f = File::open(&path).ctx(|| format!("opening blob {}", path.display()))?;
            let len = f
                .metadata()
                .ctx(|| format!("reading {}", path.display()))?
                .len();
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(len);
            h.set_mtime(0);
            let name = format!("blobs/sha256/{}", crate::util::digest_hex(b)?);
            tar.append_data(&mut h, &name, f)
                .ctx(|| format!("writing {name} into {}", out.display()))?;
        }
        for r in refs {
            let mut d = desc.clone();
            let mut ann = HashMap::new();
            ann.insert(REF_NAME.to_string(), r.to_string());
            ann.insert(CONTAINERD_NAME.to_string(), r.to_string());
            d.set_annotations(Some(ann));
            index_descs.push(d);
        }
        let hexname = |d: &str| crate::util::digest_hex(d).map(|h| format!("blobs/sha256/{h}"));
        let mut layers = Vec::new();
        for l in manifest.layers() {
            layers.push(hexname(l.digest().as_ref())?);
        }
        docker_manifest.push(serde_json::json!({
            "Config": hexname(manifest.config().digest().as_ref())?,
            "RepoTags": refs.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            "Layers": layers,
        }));
    }
    let index = oci_spec::image::ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(index_descs)
        .build()
        .map_err(oci("index"))?;
    add_bytes(&mut tar, "index.json", &canonical_json(&index)?)?;
    add_bytes(
        &mut tar,
        "manifest.json",
        &canonical_json(&docker_manifest)?,
    )?;
    let w = tar
        .into_inner()
        .ctx(|| format!("finishing {}", out.display()))?;
    let f = w.into_inner().map_err(|e| ImageError::Io {
        context: format!("writing {}", out.display()),
        source: e.into_error(),
    })?;
    f.sync_all().ctx(|| format!("syncing {}", out.display()))?;
    tmp.persist(out)
        .map_err(|e| e.error)
        .ctx(|| format!("renaming into {}", out.display()))?;
    Ok(())
}
