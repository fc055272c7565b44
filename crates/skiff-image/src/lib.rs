//! skiff-image owns images on disk: an OCI image layout under `<data-dir>/images` with
//! content-addressed, verified blobs; name:tag references; each layer unpacked once into a
//! read-only snapshot shared by every image and container; archive import/export; and
//! `Containerfile` builds (one layer per filesystem-changing instruction, with a build cache).
//!
//! API (the `skiff` binary is written against these signatures; keep them):
//!
//! ```ignore
//! let store = ImageStore::open(data_dir.join("images"))?;
//! store.import(path, Some("web:v1"), &progress)?           -> Vec<ImageSummary>
//! store.build(&BuildOptions{..}, &runner, &progress)?       -> BuildResult
//! store.list()?                                             -> Vec<ImageSummary>
//! store.history("web:v1")?                                  -> Vec<HistoryEntry>
//! store.inspect("web:v1")?                                  -> serde_json::Value
//! store.resolve("web:v1")?                                  -> ResolvedImage (layers unpacked)
//! store.remove("web:v1")?                                   -> RemoveReport
//! store.save(&["web:v1"], out_path)?                        -> ()
//! ```
//!
//! Layout under the store root:
//! - `oci-layout`, `index.json` (an OCI image layout; each manifest descriptor carries
//!   `org.opencontainers.image.ref.name` = "name:tag": this is the tag map), `blobs/sha256/<hex>`
//!   (manifests, configs, layers; verified on write and on read of JSON blobs).
//! - `snapshots/<diff_id hex>/`: each layer unpacked once, overlay whiteouts in place, used
//!   directly as an overlay lowerdir (the extraction safety policy is documented in `src/unpack.rs`).
//! - `layers/<diff_id hex>.json`: uncompressed layer size. `cache/<key>.json`: build cache.
//! - `tmp/`: temp files and dirs (same filesystem, so finished files are renamed into place).
//! - `lock`: flock held while index.json is rewritten and during `remove`.
//!
//! Every write is temp + fsync + rename; failed imports and builds tag nothing and imports
//! also delete the blobs and snapshots they created.

use std::path::{Path, PathBuf};

mod archive;
mod beneath;
mod build;
mod layer;
mod pull;
pub use beneath::read_image_file;
pub use pull::{credentials_from_docker_config, registry_is_loopback, registry_of, Credentials};
pub mod reference;
mod store;
mod unpack;
mod util;

pub use reference::Reference;

/// Errors of the image store. Every message names what and where.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image {0:?} not found")]
    NotFound(String),
    #[error("invalid image reference {0:?}: {1}")]
    InvalidReference(String, String),
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("unsafe archive entry {path:?}: {reason}")]
    UnsafeEntry { path: String, reason: String },
    #[error("{file}:{line}: {message}")]
    Build {
        file: String,
        line: usize,
        message: String,
    },
    #[error("invalid archive {path}: {message}")]
    InvalidArchive { path: PathBuf, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, ImageError>;

/// One tagged image, as `skiff image ls` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageSummary {
    /// Repository name, e.g. "web" or "docker.io/library/nginx".
    pub name: String,
    pub tag: String,
    /// Config digest, `sha256:<hex>` (the image ID, as docker defines it).
    pub id: String,
    /// Manifest digest, `sha256:<hex>`.
    pub manifest_digest: String,
    /// RFC 3339 creation time from the image config, if any.
    pub created: Option<String>,
    /// Sum of uncompressed layer sizes in bytes.
    pub size: u64,
}

/// One row of `skiff image history`, newest first (like `docker history`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryEntry {
    pub created: Option<String>,
    pub created_by: String,
    /// Uncompressed layer size; 0 for config-only steps.
    pub size: u64,
    pub empty_layer: bool,
    /// diff_id of the layer this entry made, if it made one.
    pub layer: Option<String>,
    pub comment: Option<String>,
}

/// What a container needs to run an image.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    pub name: String,
    pub tag: String,
    pub id: String,
    /// Unpacked layer snapshot directories, bottom (base) layer first: overlay lowerdirs.
    pub layers: Vec<PathBuf>,
    /// The runtime config of the image (Env, Cmd, Entrypoint, WorkingDir, User, ...).
    pub config: oci_spec::image::Config,
}

#[derive(Debug, Clone, Default)]
pub struct RemoveReport {
    pub untagged: Vec<String>,
    /// Blobs (and snapshots) deleted because nothing references them any more.
    pub deleted: Vec<String>,
}

pub struct BuildOptions {
    /// "name:tag" to tag the result with.
    pub tag: String,
    /// Build context directory.
    pub context: PathBuf,
    /// Containerfile path (default `<context>/Containerfile`, falling back to `Dockerfile`).
    pub file: Option<PathBuf>,
    /// --build-arg KEY=VALUE pairs.
    pub build_args: Vec<(String, String)>,
    /// Disable the build cache.
    pub no_cache: bool,
}

#[derive(Debug, Clone)]
pub struct BuildResult {
    pub image: ImageSummary,
    /// Steps answered from the build cache.
    pub cached_steps: usize,
    /// Steps executed (layers or config entries created).
    pub executed_steps: usize,
}

/// One RUN instruction to execute in a container on the layers so far.
pub struct RunStep<'a> {
    /// Snapshot dirs of the layers so far, bottom first (overlay lowerdirs). May be empty (FROM scratch).
    pub lowers: &'a [PathBuf],
    /// An empty directory to use as the overlay upper dir; after the run its content (overlay
    /// whiteouts included) becomes the new layer.
    pub upper: &'a Path,
    /// The full argv, e.g. ["/bin/sh", "-c", "echo hi > /x"].
    pub args: &'a [String],
    /// KEY=VALUE environment.
    pub env: &'a [String],
    pub workdir: &'a str,
    /// USER value ("" = root), `uid[:gid]` or names resolved by the runner.
    pub user: &'a str,
}

/// Executes RUN steps; implemented by the binary on top of skiff-runtime, so this crate does not
/// depend on the runtime. Returns the process exit code.
pub trait BuildRunner {
    fn run(
        &self,
        step: &RunStep<'_>,
    ) -> std::result::Result<i32, Box<dyn std::error::Error + Send + Sync>>;
}

/// Progress reporting for long work; the binary shows indicatif bars on a terminal.
pub trait Progress {
    /// A new phase with a known total (bytes or items), e.g. "unpacking sha256:ab12".
    fn start(&self, _label: &str, _total: u64) {}
    fn advance(&self, _delta: u64) {}
    fn finish(&self) {}
    /// A line of build output ("STEP 3/7: RUN ...", "--> Using cache sha256:...").
    fn message(&self, _line: &str) {}
}

/// A Progress that reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root` (normally `<data-dir>/images`).
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        Self::open_impl(root.as_ref())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Imports a docker-archive, oci-archive or plain rootfs tarball (each optionally gzipped).
    /// `tag` names the result (required for rootfs tarballs; with archives it replaces their
    /// names and needs exactly one image). All layers are verified and unpacked before anything
    /// is tagged; on error the store is unchanged. Returns the tags created.
    pub fn import(
        &self,
        file: &Path,
        tag: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<Vec<ImageSummary>> {
        archive::import(self, file, tag, progress)
    }

    /// Pulls `reference` from its registry (OCI distribution API) and tags it under that
    /// name. Every blob is checked against its digest; on error the store is unchanged.
    pub async fn pull(
        &self,
        reference: &str,
        credentials: Option<&Credentials>,
        progress: &(dyn Progress + Sync),
    ) -> Result<ImageSummary> {
        pull::pull(self, reference, credentials, progress).await
    }

    /// Builds a Containerfile; see [`BuildOptions`]. Nothing is tagged on error.
    pub fn build(
        &self,
        opts: &BuildOptions,
        runner: &dyn BuildRunner,
        progress: &dyn Progress,
    ) -> Result<BuildResult> {
        build::build(self, opts, runner, progress)
    }

    /// Every tag in the store, sorted by name:tag.
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        self.list_impl()
    }

    /// The image's history, newest first, with layer sizes.
    pub fn history(&self, reference: &str) -> Result<Vec<HistoryEntry>> {
        self.history_impl(reference)
    }

    /// A docker-inspect-like document: Id, RepoTags, ManifestDigest, Created, Architecture, Os,
    /// Config, RootFS{Type,Layers}, Size, History.
    pub fn inspect(&self, reference: &str) -> Result<serde_json::Value> {
        self.inspect_impl(reference)
    }

    /// Unpacks the image's layers if needed and returns their snapshot dirs (bottom first) and
    /// the runtime config.
    pub fn resolve(&self, reference: &str) -> Result<ResolvedImage> {
        self.resolve_impl(reference, &NoProgress)
    }

    /// Like [`ImageStore::resolve`], reporting unpack progress.
    pub fn resolve_with_progress(
        &self,
        reference: &str,
        progress: &dyn Progress,
    ) -> Result<ResolvedImage> {
        self.resolve_impl(reference, progress)
    }

    /// Untags `reference` (a name:tag, or an image ID/prefix: then every tag of that image) and
    /// deletes manifest/config/layer blobs and snapshots no remaining tag references.
    pub fn remove(&self, reference: &str) -> Result<RemoveReport> {
        self.remove_impl(reference)
    }

    /// Writes `references` to `out` as one tar that is both an oci-archive and a docker-archive.
    pub fn save(&self, references: &[&str], out: &Path) -> Result<()> {
        archive::save(self, references, out)
    }
}
