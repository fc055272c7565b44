//! The on-disk store: blobs, index.json (name:tag -> manifest), snapshots, queries and removal.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::image::{
    Descriptor, Digest, ImageConfiguration, ImageIndex, ImageManifest, MediaType,
};

use crate::reference::{aliases, id_prefix, Reference};
use crate::unpack::{extract_layer, open_layer};
use crate::util::{
    atomic_write, canonical_json, digest_hex, read_file, sha256_digest, sync_dir, IoCtx,
};
use crate::{
    HistoryEntry, ImageError, ImageStore, ImageSummary, Progress, RemoveReport, ResolvedImage,
    Result,
};

pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The tag an image stored only under `name@digest` lists with (as `docker images` does).
const NO_TAG: &str = "<none>";

/// An image as loaded from the store.
#[derive(Debug, Clone)]
pub(crate) struct Image {
    pub reference: Reference,
    pub manifest_digest: String,
    pub manifest: ImageManifest,
    pub config_digest: String,
    pub config: ImageConfiguration,
}

impl Image {
    /// (layer blob digest, diff_id) pairs, bottom first.
    pub fn layers(&self) -> Result<Vec<(String, String)>> {
        let diff_ids = self.config.rootfs().diff_ids();
        if diff_ids.len() != self.manifest.layers().len() {
            return Err(ImageError::Other(format!(
                "image {}: manifest has {} layers but config has {} diff_ids",
                self.reference,
                self.manifest.layers().len(),
                diff_ids.len()
            )));
        }
        Ok(self
            .manifest
            .layers()
            .iter()
            .zip(diff_ids)
            .map(|(d, id)| (d.digest().to_string(), id.clone()))
            .collect())
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LayerMeta {
    size: u64,
}

/// Exclusive lock on `root/lock`, released on drop.
pub(crate) struct StoreLock(#[allow(dead_code)] nix::fcntl::Flock<File>);

pub(crate) fn parse_digest(s: &str) -> Result<Digest> {
    Digest::from_str(s).map_err(|e| ImageError::Other(format!("bad digest {s:?}: {e}")))
}

pub(crate) fn json_err(what: &str) -> impl FnOnce(oci_spec::OciSpecError) -> ImageError + '_ {
    move |e| ImageError::Other(format!("parsing {what}: {e}"))
}

impl ImageStore {
    pub(crate) fn open_impl(root: &Path) -> Result<Self> {
        let root = root.to_path_buf();
        for d in ["blobs/sha256", "tmp", "snapshots", "cache", "layers"] {
            let p = root.join(d);
            fs::create_dir_all(&p).ctx(|| format!("creating {}", p.display()))?;
        }
        let store = ImageStore { root };
        store.clean_stale();
        let layout = store.root.join("oci-layout");
        if !layout.exists() {
            atomic_write(
                &store.tmp_dir(),
                &layout,
                br#"{"imageLayoutVersion":"1.0.0"}"#,
            )?;
        }
        if !store.index_path().exists() {
            let _lock = store.lock()?;
            if !store.index_path().exists() {
                store.write_index(&[])?;
            }
        }
        Ok(store)
    }

    /// Removes leftovers of crashed processes: temp files and half-unpacked or half-deleted
    /// snapshots older than an hour (younger ones may belong to a running skiff).
    fn clean_stale(&self) {
        let old = |p: &Path| {
            fs::symlink_metadata(p)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > std::time::Duration::from_secs(3600))
        };
        let remove = |p: &Path| {
            let _ = if fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
                fs::remove_dir_all(p)
            } else {
                fs::remove_file(p)
            };
        };
        for (dir, only_marked) in [(self.tmp_dir(), false), (self.root.join("snapshots"), true)] {
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let marked = name.contains(".tmp-") || name.contains(".del-");
                if (!only_marked || marked) && old(&e.path()) {
                    remove(&e.path());
                }
            }
        }
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    pub(crate) fn snapshot_dir(&self, diff_id: &str) -> Result<PathBuf> {
        Ok(self.root.join("snapshots").join(digest_hex(diff_id)?))
    }

    fn layer_meta_path(&self, diff_id: &str) -> Result<PathBuf> {
        Ok(self
            .root
            .join("layers")
            .join(format!("{}.json", digest_hex(diff_id)?)))
    }

    pub(crate) fn lock(&self) -> Result<StoreLock> {
        let path = self.root.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .ctx(|| format!("opening {}", path.display()))?;
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map(StoreLock)
            .map_err(|(_, e)| ImageError::Io {
                context: format!("locking {}", path.display()),
                source: e.into(),
            })
    }

    pub(crate) fn blob_path(&self, digest: &str) -> Result<PathBuf> {
        Ok(self.root.join("blobs/sha256").join(digest_hex(digest)?))
    }

    pub(crate) fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).map(|p| p.is_file()).unwrap_or(false)
    }

    /// Stores `bytes` as a blob; returns its digest.
    pub(crate) fn put_blob(&self, bytes: &[u8]) -> Result<String> {
        let digest = sha256_digest(bytes);
        let path = self.blob_path(&digest)?;
        if !path.exists() {
            atomic_write(&self.tmp_dir(), &path, bytes)?;
        }
        Ok(digest)
    }

    /// Moves a verified temp file (in `root/tmp` or another dir on the same filesystem) into the
    /// blob store under `digest`. The caller has verified the content.
    pub(crate) fn commit_blob_file(&self, tmp: &Path, digest: &str) -> Result<()> {
        let path = self.blob_path(digest)?;
        if path.exists() {
            return Ok(());
        }
        File::open(tmp)
            .and_then(|f| f.sync_all())
            .ctx(|| format!("syncing {}", tmp.display()))?;
        fs::rename(tmp, &path).ctx(|| format!("moving blob into {}", path.display()))?;
        sync_dir(&self.root.join("blobs/sha256"));
        Ok(())
    }

    /// Reads a (small) blob and checks its digest.
    pub(crate) fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(digest)?;
        let bytes = read_file(&path)?;
        let actual = sha256_digest(&bytes);
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                what: format!("blob {}", path.display()),
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// The tag map: (reference, manifest descriptor), sorted by reference.
    pub(crate) fn read_index(&self) -> Result<Vec<(Reference, Descriptor)>> {
        let path = self.index_path();
        let bytes = read_file(&path)?;
        let index = ImageIndex::from_reader(&bytes[..]).map_err(json_err("index.json"))?;
        let mut out = Vec::new();
        for d in index.manifests() {
            let name = d.annotations().as_ref().and_then(|a| a.get(REF_NAME));
            if let Some(r) = name.and_then(|n| Reference::parse(n).ok()) {
                out.push((r, d.clone()));
            }
        }
        out.sort_by_key(|e| e.0.to_string());
        Ok(out)
    }

    /// Writes index.json atomically; call with the store lock held.
    pub(crate) fn write_index(&self, entries: &[(Reference, Descriptor)]) -> Result<()> {
        let mut manifests: Vec<Descriptor> = entries
            .iter()
            .map(|(r, d)| {
                let mut d = d.clone();
                let mut ann = d.annotations().clone().unwrap_or_default();
                ann.insert(REF_NAME.to_string(), r.to_string());
                d.set_annotations(Some(ann));
                d
            })
            .collect();
        manifests.sort_by_key(|d| {
            d.annotations()
                .as_ref()
                .and_then(|a| a.get(REF_NAME).cloned())
                .unwrap_or_default()
        });
        let index = oci_spec::image::ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(manifests)
            .build()
            .map_err(|e| ImageError::Other(format!("building index: {e}")))?;
        atomic_write(
            &self.tmp_dir(),
            &self.index_path(),
            &canonical_json(&index)?,
        )
    }

    /// Points each reference at its manifest (whose blobs must all be present), in one
    /// index.json update.
    pub(crate) fn set_tags(&self, tags: &[(Reference, Descriptor)]) -> Result<()> {
        let _lock = self.lock()?;
        for (_, desc) in tags {
            // A concurrent `remove` may have collected shared blobs after we wrote ours.
            let digest = desc.digest().to_string();
            let manifest = ImageManifest::from_reader(&self.read_blob(&digest)?[..])
                .map_err(json_err("manifest"))?;
            for d in std::iter::once(manifest.config()).chain(manifest.layers()) {
                if !self.has_blob(d.digest().as_ref()) {
                    return Err(ImageError::Other(format!(
                        "blob {} vanished during the operation (concurrent removal?); retry",
                        d.digest()
                    )));
                }
            }
        }
        let mut entries = self.read_index()?;
        entries.retain(|(r, _)| !tags.iter().any(|(t, _)| t == r));
        entries.extend(tags.iter().cloned());
        self.write_index(&entries)
    }

    /// Removes blobs and snapshots an aborted operation created (they are unreferenced).
    pub(crate) fn rollback(&self, blobs: &[String], snapshots: &[String]) {
        for b in blobs {
            if let Ok(p) = self.blob_path(b) {
                let _ = fs::remove_file(p);
            }
        }
        for d in snapshots {
            let _ = self.remove_snapshot(d);
            if let Ok(p) = self.layer_meta_path(d) {
                let _ = fs::remove_file(p);
            }
        }
    }

    pub(crate) fn load_image(&self, reference: &Reference, desc: &Descriptor) -> Result<Image> {
        let manifest_digest = desc.digest().to_string();
        let manifest = ImageManifest::from_reader(&self.read_blob(&manifest_digest)?[..])
            .map_err(json_err("manifest"))?;
        let config_digest = manifest.config().digest().to_string();
        let config = ImageConfiguration::from_reader(&self.read_blob(&config_digest)?[..])
            .map_err(json_err("image config"))?;
        Ok(Image {
            reference: reference.clone(),
            manifest_digest,
            manifest,
            config_digest,
            config,
        })
    }

    /// Finds the index entries a user reference means: a name[:tag] (one entry) or an image ID
    /// or unique ID prefix (every tag of that image).
    pub(crate) fn find_entries(&self, reference: &str) -> Result<Vec<(Reference, Descriptor)>> {
        let entries = self.read_index()?;
        let parsed = Reference::parse(reference);
        if let Ok(r) = &parsed {
            for cand in std::iter::once(r.clone()).chain(aliases(r)) {
                if let Some(e) = entries.iter().find(|(er, _)| *er == cand) {
                    return Ok(vec![e.clone()]);
                }
            }
        }
        if let Some(prefix) = id_prefix(reference) {
            let mut by_id: BTreeMap<String, Vec<(Reference, Descriptor)>> = BTreeMap::new();
            for (r, d) in &entries {
                let m = ImageManifest::from_reader(&self.read_blob(d.digest().as_ref())?[..])
                    .map_err(json_err("manifest"))?;
                let id = m.config().digest().to_string();
                if id.trim_start_matches("sha256:").starts_with(prefix) {
                    by_id.entry(id).or_default().push((r.clone(), d.clone()));
                }
            }
            match by_id.len() {
                0 => {}
                1 => return Ok(by_id.into_values().next().unwrap_or_default()),
                n => {
                    return Err(ImageError::InvalidReference(
                        reference.to_string(),
                        format!("ambiguous image ID prefix ({n} images match)"),
                    ))
                }
            }
        } else {
            parsed?;
        }
        Err(ImageError::NotFound(reference.to_string()))
    }

    pub(crate) fn find_image(&self, reference: &str) -> Result<Image> {
        let entries = self.find_entries(reference)?;
        let (r, d) = entries
            .first()
            .ok_or_else(|| ImageError::NotFound(reference.to_string()))?;
        self.load_image(r, d)
    }

    /// Unpacks a layer into its snapshot dir (once), verifying its diff_id.
    pub(crate) fn ensure_snapshot(
        &self,
        blob: &str,
        diff_id: &str,
        progress: &dyn Progress,
    ) -> Result<PathBuf> {
        let blob_path = self.blob_path(blob)?;
        self.unpack_to_snapshot(
            &blob_path,
            Some(diff_id),
            &format!("layer {blob}"),
            progress,
        )?;
        self.snapshot_dir(diff_id)
    }

    /// Unpacks the layer blob at `blob_path` into `snapshots/<diff_id hex>` unless that exists.
    /// With `expected`, the uncompressed digest must match. Returns (diff_id, created).
    pub(crate) fn unpack_to_snapshot(
        &self,
        blob_path: &Path,
        expected: Option<&str>,
        what: &str,
        progress: &dyn Progress,
    ) -> Result<(String, bool)> {
        if let Some(diff_id) = expected {
            let dir = self.snapshot_dir(diff_id)?;
            if fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                return Ok((diff_id.to_string(), false));
            }
        }
        let snapshots = self.root.join("snapshots");
        let tmp = tempfile::Builder::new()
            .prefix("unpack.tmp-")
            .tempdir_in(&snapshots)
            .ctx(|| format!("creating temp dir in {}", snapshots.display()))?;
        let size = fs::metadata(blob_path).map(|m| m.len()).unwrap_or(0);
        progress.start(&format!("unpacking {what}"), size);
        let result = open_layer(blob_path)
            .and_then(|(reader, _)| extract_layer(reader, tmp.path(), blob_path));
        progress.advance(size);
        progress.finish();
        let (actual, usize_) = result?;
        if let Some(diff_id) = expected {
            if actual != diff_id {
                return Err(ImageError::DigestMismatch {
                    what: format!("{what} (uncompressed content)"),
                    expected: diff_id.to_string(),
                    actual,
                });
            }
        }
        let dir = self.snapshot_dir(&actual)?;
        self.write_layer_meta(&actual, usize_)?;
        if fs::symlink_metadata(&dir).is_ok() {
            return Ok((actual, false));
        }
        let tmp_path = tmp.keep();
        if let Err(e) = fs::rename(&tmp_path, &dir) {
            let _ = fs::remove_dir_all(&tmp_path);
            // Another process may have unpacked the same layer first.
            if !dir.is_dir() {
                return Err(ImageError::Io {
                    context: format!("moving snapshot into {}", dir.display()),
                    source: e,
                });
            }
            return Ok((actual, false));
        }
        sync_dir(&snapshots);
        Ok((actual, true))
    }

    pub(crate) fn write_layer_meta(&self, diff_id: &str, size: u64) -> Result<()> {
        let bytes = canonical_json(&LayerMeta { size })?;
        atomic_write(&self.tmp_dir(), &self.layer_meta_path(diff_id)?, &bytes)
    }

    /// Uncompressed size of a layer (recorded at unpack; the blob size as a fallback).
    pub(crate) fn layer_size(&self, blob: &str, diff_id: &str) -> u64 {
        let from_meta = self
            .layer_meta_path(diff_id)
            .ok()
            .and_then(|p| fs::read(p).ok())
            .and_then(|b| serde_json::from_slice::<LayerMeta>(&b).ok())
            .map(|m| m.size);
        from_meta.unwrap_or_else(|| {
            self.blob_path(blob)
                .ok()
                .and_then(|p| fs::metadata(p).ok())
                .map(|m| m.len())
                .unwrap_or(0)
        })
    }

    pub(crate) fn image_size(&self, image: &Image) -> u64 {
        image
            .layers()
            .map(|ls| ls.iter().map(|(b, d)| self.layer_size(b, d)).sum())
            .unwrap_or(0)
    }

    pub(crate) fn summary(&self, image: &Image) -> ImageSummary {
        ImageSummary {
            name: image.reference.name.clone(),
            tag: image
                .reference
                .tag
                .clone()
                .unwrap_or_else(|| NO_TAG.to_string()),
            id: image.config_digest.clone(),
            manifest_digest: image.manifest_digest.clone(),
            created: image.config.created().clone(),
            size: self.image_size(image),
        }
    }

    pub(crate) fn list_impl(&self) -> Result<Vec<ImageSummary>> {
        let mut out = Vec::new();
        for (r, d) in self.read_index()? {
            out.push(self.summary(&self.load_image(&r, &d)?));
        }
        Ok(out)
    }

    pub(crate) fn history_impl(&self, reference: &str) -> Result<Vec<HistoryEntry>> {
        let image = self.find_image(reference)?;
        let layers = image.layers()?;
        let mut next_layer = layers.iter();
        let mut out = Vec::new();
        let history = image.config.history().clone().unwrap_or_default();
        for h in &history {
            let empty = h.empty_layer().unwrap_or(false);
            let layer = if empty { None } else { next_layer.next() };
            out.push(HistoryEntry {
                created: h.created().clone(),
                created_by: h.created_by().clone().unwrap_or_default(),
                size: layer.map(|(b, d)| self.layer_size(b, d)).unwrap_or(0),
                empty_layer: empty,
                layer: layer.map(|(_, d)| d.clone()),
                comment: h.comment().clone(),
            });
        }
        // Layers without history entries (some tools omit history).
        for (b, d) in next_layer {
            out.push(HistoryEntry {
                created: None,
                created_by: String::new(),
                size: self.layer_size(b, d),
                empty_layer: false,
                layer: Some(d.clone()),
                comment: None,
            });
        }
        out.reverse();
        Ok(out)
    }

    pub(crate) fn inspect_impl(&self, reference: &str) -> Result<serde_json::Value> {
        let entries = self.find_entries(reference)?;
        let (r, d) = entries
            .first()
            .ok_or_else(|| ImageError::NotFound(reference.to_string()))?;
        let image = self.load_image(r, d)?;
        // Every tag pointing at this image, not just the one asked for.
        let mut tags = Vec::new();
        for (r, d) in self.read_index()? {
            if let Ok(m) = ImageManifest::from_reader(&self.read_blob(d.digest().as_ref())?[..]) {
                if m.config().digest().to_string() == image.config_digest {
                    tags.push(r.to_string());
                }
            }
        }
        let cfg = &image.config;
        Ok(serde_json::json!({
            "Id": image.config_digest,
            "RepoTags": tags,
            "ManifestDigest": image.manifest_digest,
            "Created": cfg.created(),
            "Author": cfg.author(),
            "Architecture": cfg.architecture().to_string(),
            "Os": cfg.os().to_string(),
            "Config": cfg.config().clone().map(|c| serde_json::to_value(c).unwrap_or_default()),
            "RootFS": {"Type": "layers", "Layers": cfg.rootfs().diff_ids()},
            "Size": self.image_size(&image),
            "History": cfg.history(),
        }))
    }

    pub(crate) fn resolve_impl(
        &self,
        reference: &str,
        progress: &dyn Progress,
    ) -> Result<ResolvedImage> {
        let image = self.find_image(reference)?;
        let mut dirs = Vec::new();
        for (blob, diff_id) in image.layers()? {
            dirs.push(self.ensure_snapshot(&blob, &diff_id, progress)?);
        }
        Ok(ResolvedImage {
            name: image.reference.name.clone(),
            tag: image
                .reference
                .tag
                .clone()
                .unwrap_or_else(|| NO_TAG.to_string()),
            id: image.config_digest.clone(),
            layers: dirs,
            config: image.config.config().clone().unwrap_or_default(),
        })
    }

    fn referenced(
        &self,
        image: &Image,
        blobs: &mut HashSet<String>,
        diff_ids: &mut HashSet<String>,
    ) {
        blobs.insert(image.manifest_digest.clone());
        blobs.insert(image.config_digest.clone());
        for d in image.manifest.layers() {
            blobs.insert(d.digest().to_string());
        }
        diff_ids.extend(image.config.rootfs().diff_ids().iter().cloned());
    }

    pub(crate) fn remove_impl(&self, reference: &str) -> Result<RemoveReport> {
        let _lock = self.lock()?;
        let targets = self.find_entries(reference)?;
        let mut entries = self.read_index()?;
        let mut report = RemoveReport::default();
        let (mut cand_blobs, mut cand_diffs) = (HashSet::new(), HashSet::new());
        for (r, d) in &targets {
            if let Ok(img) = self.load_image(r, d) {
                self.referenced(&img, &mut cand_blobs, &mut cand_diffs);
            } else {
                cand_blobs.insert(d.digest().to_string());
            }
            report.untagged.push(r.to_string());
        }
        entries.retain(|(r, _)| !targets.iter().any(|(t, _)| t == r));
        self.write_index(&entries)?;

        let (mut keep_blobs, mut keep_diffs) = (HashSet::new(), HashSet::new());
        for (r, d) in &entries {
            let img = self.load_image(r, d)?;
            self.referenced(&img, &mut keep_blobs, &mut keep_diffs);
        }
        let mut blobs: Vec<_> = cand_blobs.difference(&keep_blobs).cloned().collect();
        blobs.sort();
        for b in blobs {
            let p = self.blob_path(&b)?;
            match fs::remove_file(&p) {
                Ok(()) => report.deleted.push(b),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(ImageError::Io {
                        context: format!("removing {}", p.display()),
                        source: e,
                    })
                }
            }
        }
        let mut diffs: Vec<_> = cand_diffs.difference(&keep_diffs).cloned().collect();
        diffs.sort();
        for d in diffs {
            if self.remove_snapshot(&d)? && !report.deleted.contains(&d) {
                report.deleted.push(d.clone());
            }
            let _ = fs::remove_file(self.layer_meta_path(&d)?);
        }
        Ok(report)
    }

    /// Deletes a snapshot dir: first renamed aside (so a half-deleted tree never sits under the
    /// real name), then removed. Returns whether it existed.
    fn remove_snapshot(&self, diff_id: &str) -> Result<bool> {
        let dir = self.snapshot_dir(diff_id)?;
        if fs::symlink_metadata(&dir).is_err() {
            return Ok(false);
        }
        let aside = self.root.join("snapshots").join(format!(
            "{}.del-{}",
            digest_hex(diff_id)?,
            std::process::id()
        ));
        fs::rename(&dir, &aside).ctx(|| format!("moving {} aside", dir.display()))?;
        fs::remove_dir_all(&aside).ctx(|| format!("removing snapshot {}", aside.display()))?;
        Ok(true)
    }
}

/// Tracks blobs and snapshots an operation creates so that a failure removes them again.
pub(crate) struct Txn<'a> {
    store: &'a ImageStore,
    blobs: Vec<String>,
    snapshots: Vec<String>,
    done: bool,
}

impl<'a> Txn<'a> {
    pub fn new(store: &'a ImageStore) -> Self {
        Txn {
            store,
            blobs: Vec::new(),
            snapshots: Vec::new(),
            done: false,
        }
    }

    pub fn put_blob(&mut self, bytes: &[u8]) -> Result<String> {
        let digest = sha256_digest(bytes);
        let existed = self.store.has_blob(&digest);
        self.store.put_blob(bytes)?;
        if !existed {
            self.blobs.push(digest.clone());
        }
        Ok(digest)
    }

    pub fn commit_blob_file(&mut self, tmp: &Path, digest: &str) -> Result<()> {
        let existed = self.store.has_blob(digest);
        self.store.commit_blob_file(tmp, digest)?;
        if !existed {
            self.blobs.push(digest.to_string());
        }
        Ok(())
    }

    pub fn unpack(
        &mut self,
        blob_path: &Path,
        expected: Option<&str>,
        what: &str,
        progress: &dyn Progress,
    ) -> Result<String> {
        let (diff_id, created) = self
            .store
            .unpack_to_snapshot(blob_path, expected, what, progress)?;
        if created {
            self.snapshots.push(diff_id.clone());
        }
        Ok(diff_id)
    }

    /// Keeps everything created so far.
    pub fn commit(mut self) {
        self.done = true;
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.store.rollback(&self.blobs, &self.snapshots);
        }
    }
}
