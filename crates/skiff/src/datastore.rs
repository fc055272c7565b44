//! Choosing and opening the datastore: SQLite in the data dir by default, an etcd cluster with
//! `--datastore-endpoint` (k3s's flag names). `skiff datastore …` commands live here too.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

/// Where cluster state lives (shared by `skiff server` and `skiff datastore`).
#[derive(Args, Clone, Debug)]
pub struct DatastoreArgs {
    /// etcd client URLs (comma-separated, e.g. https://10.0.0.1:2379,https://10.0.0.2:2379);
    /// unset = SQLite at `<data-dir>/server/state.db`.
    #[arg(long, value_delimiter = ',')]
    pub datastore_endpoint: Vec<String>,
    /// CA bundle verifying the etcd members' certificates.
    #[arg(long)]
    pub datastore_cafile: Option<PathBuf>,
    /// Client certificate for etcd.
    #[arg(long)]
    pub datastore_certfile: Option<PathBuf>,
    /// Client key for etcd.
    #[arg(long)]
    pub datastore_keyfile: Option<PathBuf>,
    /// SQLite only: size quota in bytes (default 2 GiB, etcd's; 0 = none). Past it writes
    /// fail with "database space exceeded" until deletes and compaction free space (etcd has
    /// its own `--quota-backend-bytes`).
    #[arg(long, value_name = "BYTES")]
    pub datastore_quota_bytes: Option<u64>,
    /// How often the server compacts the datastore's history, keeping one interval and at
    /// least 1000 revisions (kube-apiserver's --etcd-compaction-interval; `5m`, `30s`, or
    /// seconds; 0 = never).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_interval)]
    pub datastore_compaction_interval: Duration,
}

/// Default of `--datastore-compaction-interval` (kube-apiserver's).
const DEFAULT_COMPACTION_INTERVAL: Duration = Duration::from_secs(300);

impl Default for DatastoreArgs {
    fn default() -> Self {
        DatastoreArgs {
            datastore_endpoint: Vec::new(),
            datastore_cafile: None,
            datastore_certfile: None,
            datastore_keyfile: None,
            datastore_quota_bytes: None,
            datastore_compaction_interval: DEFAULT_COMPACTION_INTERVAL,
        }
    }
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.trim().parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    crate::kubeconfig_cmd::parse_ttl(text).map_err(|_| {
        format!("invalid interval {text:?}: use seconds or a number with a unit (s, m, h), like 5m")
    })
}

/// Opens the configured backend.
pub async fn open(
    data_dir: &Path,
    args: &DatastoreArgs,
) -> anyhow::Result<Arc<dyn skiff_store::Store>> {
    if args.datastore_endpoint.is_empty() {
        let db = data_dir.join("server").join("state.db");
        let options = skiff_store::SqliteOptions {
            quota_bytes: args
                .datastore_quota_bytes
                .unwrap_or(skiff_store::DEFAULT_QUOTA_BYTES),
            ..Default::default()
        };
        let store = skiff_store::SqliteStore::open_with(&db, options)
            .with_context(|| format!("opening {}", db.display()))?;
        return Ok(Arc::new(store));
    }
    if args.datastore_quota_bytes.is_some() {
        tracing::warn!("--datastore-quota-bytes applies to SQLite only; etcd uses its own --quota-backend-bytes");
    }
    let options = skiff_store::EtcdOptions {
        endpoints: args.datastore_endpoint.clone(),
        ca_file: args.datastore_cafile.clone(),
        cert_file: args.datastore_certfile.clone(),
        key_file: args.datastore_keyfile.clone(),
    };
    skiff_store::etcd::connect(options).await.with_context(|| {
        format!(
            "connecting to etcd at {}",
            args.datastore_endpoint.join(",")
        )
    })
}

/// Opens the store for a `skiff datastore` command, turning SQLite's "in use" lock error into
/// what the user should do.
async fn open_for(
    data_dir: &Path,
    args: &DatastoreArgs,
    why: &str,
) -> anyhow::Result<Arc<dyn skiff_store::Store>> {
    match open(data_dir, args).await {
        Ok(store) => Ok(store),
        Err(e) if args.datastore_endpoint.is_empty() && sqlite_in_use(&e) => Err(anyhow::anyhow!(
            "{}/server/state.db is in use by a running `skiff server`: {why}",
            data_dir.display()
        )),
        Err(e) => Err(e),
    }
}

/// The datastore in words, for error messages.
fn describe(data_dir: &Path, args: &DatastoreArgs) -> String {
    if args.datastore_endpoint.is_empty() {
        data_dir
            .join("server")
            .join("state.db")
            .display()
            .to_string()
    } else {
        format!("etcd at {}", args.datastore_endpoint.join(","))
    }
}

fn sqlite_in_use(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<skiff_store::StoreError>()
            .is_some_and(|s| s.to_string().contains("already in use"))
    })
}

#[derive(clap::Subcommand)]
pub enum DatastoreCommand {
    /// Show the datastore's backend, revision, size, quota, alarms, members and warnings.
    Status(StatusArgs),
    /// Save, list, restore and prune snapshots of the whole datastore.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Copy this data dir's SQLite state into an etcd cluster (the server must be stopped).
    Migrate(MigrateArgs),
}

#[derive(Args)]
pub struct StatusArgs {
    /// Output format: a table (default) or json.
    #[arg(short = 'o', long, value_parser = ["table", "json"], default_value = "table")]
    pub output: String,
    #[command(flatten)]
    pub datastore: DatastoreArgs,
}

#[derive(clap::Subcommand)]
pub enum SnapshotCommand {
    /// Write a consistent snapshot of every key to `<dir>/<name>-<host>-<UTC time>.db`.
    Save {
        /// File name prefix.
        #[arg(long, default_value = DEFAULT_SNAPSHOT_NAME)]
        name: String,
        /// Directory (default `<data-dir>/server/snapshots`).
        #[arg(long)]
        dir: Option<PathBuf>,
        #[command(flatten)]
        datastore: DatastoreArgs,
    },
    /// List the snapshots in the directory, newest first.
    Ls {
        /// Directory (default `<data-dir>/server/snapshots`).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Output format: a table (default) or json.
        #[arg(short = 'o', long, value_parser = ["table", "json"], default_value = "table")]
        output: String,
    },
    /// Replace the whole datastore with a snapshot's content. Stop every server first.
    Restore {
        /// The snapshot file.
        file: PathBuf,
        #[command(flatten)]
        datastore: DatastoreArgs,
    },
    /// Delete all but the newest `--retention` snapshots named `<name>-…`.
    Prune {
        /// How many to keep.
        #[arg(long, default_value_t = 5)]
        retention: usize,
        /// File name prefix.
        #[arg(long, default_value = DEFAULT_SNAPSHOT_NAME)]
        name: String,
        /// Directory (default `<data-dir>/server/snapshots`).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct MigrateArgs {
    /// Copy even when etcd already holds `/registry/` keys (they are replaced).
    #[arg(long)]
    pub force: bool,
    /// The target etcd cluster (`--datastore-endpoint` is required).
    #[command(flatten)]
    pub datastore: DatastoreArgs,
}

/// Prefix of snapshot file names (`skiff datastore snapshot save`, scheduled snapshots).
pub const DEFAULT_SNAPSHOT_NAME: &str = "snapshot";

/// The default snapshot directory of a data dir.
pub fn default_snapshot_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("snapshots")
}

/// `<dir>/<name>-<host>-<YYYYmmddTHHMMSSZ>.db` (a counter is added if it exists).
pub fn snapshot_path(dir: &Path, name: &str) -> PathBuf {
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".into());
    let stamp = jiff::Timestamp::now()
        .strftime("%Y%m%dT%H%M%SZ")
        .to_string();
    let base = format!("{name}-{host}-{stamp}");
    let mut path = dir.join(format!("{base}.db"));
    let mut n = 1;
    while path.exists() {
        path = dir.join(format!("{base}-{n}.db"));
        n += 1;
    }
    path
}

/// Takes a snapshot into `dir` (created 0700).
pub async fn save_snapshot(
    store: &dyn skiff_store::Store,
    dir: &Path,
    name: &str,
) -> anyhow::Result<skiff_store::SnapshotInfo> {
    if name.is_empty() || name.contains('/') {
        anyhow::bail!("invalid snapshot name {name:?}");
    }
    crate::private_dir(dir)?;
    let dest = snapshot_path(dir, name);
    store
        .snapshot(&dest)
        .await
        .with_context(|| format!("saving snapshot {}", dest.display()))
}

/// A snapshot file in a directory.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SnapshotFile {
    pub name: String,
    pub path: PathBuf,
    pub size_bytes: u64,
    /// Unix seconds of its last modification.
    pub modified_unix: i64,
}

/// The `.db` files of `dir`, newest first (a missing dir is empty).
pub fn list_snapshots(dir: &Path) -> anyhow::Result<Vec<SnapshotFile>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() || !name.ends_with(".db") || name.starts_with('.') {
            continue;
        }
        let modified_unix = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        out.push(SnapshotFile {
            name,
            path: entry.path(),
            size_bytes: meta.len(),
            modified_unix,
        });
    }
    out.sort_by(|a, b| {
        b.modified_unix
            .cmp(&a.modified_unix)
            .then(b.name.cmp(&a.name))
    });
    Ok(out)
}

/// Deletes all but the newest `retention` snapshots named `<name>-…` (and files a backend wrote
/// next to them, `<file>.*`); returns the deleted paths.
pub fn prune_snapshots(dir: &Path, name: &str, retention: usize) -> anyhow::Result<Vec<PathBuf>> {
    let prefix = format!("{name}-");
    let mut deleted = Vec::new();
    let ours = list_snapshots(dir)?
        .into_iter()
        .filter(|s| s.name.starts_with(&prefix));
    for old in ours.skip(retention) {
        std::fs::remove_file(&old.path)
            .with_context(|| format!("deleting {}", old.path.display()))?;
        if let Ok(entries) = std::fs::read_dir(dir) {
            let side = format!("{}.", old.name);
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&side) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        deleted.push(old.path);
    }
    Ok(deleted)
}

fn unix_time(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| secs.to_string())
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A quantile of a histogram: the upper bound of the bucket holding it.
fn quantile(h: &skiff_store::Histogram, q: f64) -> Option<f64> {
    if h.count == 0 {
        return None;
    }
    let target = (h.count as f64 * q).ceil() as u64;
    let mut seen = 0;
    for (i, c) in h.counts.iter().enumerate() {
        seen += c;
        if seen >= target {
            return Some(h.bounds.get(i).copied().unwrap_or(f64::INFINITY));
        }
    }
    None
}

fn status_json(s: &skiff_store::StoreStatus) -> serde_json::Value {
    let h = &s.commit_latency;
    serde_json::json!({
        "backend": s.backend,
        "endpoint": s.endpoint,
        "revision": s.revision,
        "compactRevision": s.compact_revision,
        "dbSizeBytes": s.db_size_bytes,
        "dbSizeInUseBytes": s.db_size_in_use_bytes,
        "walSizeBytes": s.wal_size_bytes,
        "quotaBytes": s.quota_bytes,
        "alarms": s.alarms,
        "keys": s.keys,
        "compactions": s.compactions,
        "lastCompactionUnix": s.last_compaction_unix,
        "commitLatency": {
            "count": h.count,
            "sumSeconds": h.sum_seconds,
            "bounds": h.bounds.iter().map(|b| if b.is_finite() { serde_json::json!(b) } else { serde_json::Value::Null }).collect::<Vec<_>>(),
            "counts": h.counts,
        },
        "members": s.members.iter().map(|m| serde_json::json!({
            "name": m.name,
            "id": format!("{:x}", m.id),
            "clientURLs": m.client_urls,
            "healthy": m.healthy,
            "leader": m.is_leader,
            "dbSizeBytes": m.db_size_bytes,
            "error": m.error,
        })).collect::<Vec<_>>(),
        "warnings": s.warnings,
    })
}

/// The status as a readable table.
pub fn status_table(s: &skiff_store::StoreStatus) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut row = |k: &str, v: String| {
        let _ = writeln!(out, "{k:<16} {v}");
    };
    row("Backend:", s.backend.clone());
    row("Endpoint:", s.endpoint.clone());
    row("Revision:", s.revision.to_string());
    row("Compacted at:", s.compact_revision.to_string());
    row(
        "DB size:",
        format!(
            "{} ({} in use)",
            bytes(s.db_size_bytes),
            bytes(s.db_size_in_use_bytes)
        ),
    );
    if s.backend == "sqlite" {
        row("WAL size:", bytes(s.wal_size_bytes));
    }
    row(
        "Quota:",
        if s.quota_bytes == 0 {
            "none".into()
        } else {
            bytes(s.quota_bytes)
        },
    );
    row(
        "Keys:",
        s.keys.map_or_else(|| "unknown".into(), |k| k.to_string()),
    );
    row(
        "Compactions:",
        if s.last_compaction_unix > 0 {
            format!(
                "{} (last {})",
                s.compactions,
                unix_time(s.last_compaction_unix)
            )
        } else {
            s.compactions.to_string()
        },
    );
    let h = &s.commit_latency;
    let ms = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{:.1}ms", v * 1000.0));
    row(
        "Commit latency:",
        if h.count == 0 {
            "no commits yet".into()
        } else {
            format!(
                "{} commits, mean {:.1}ms, p50 <= {}, p99 <= {}",
                h.count,
                h.sum_seconds * 1000.0 / h.count as f64,
                ms(quantile(h, 0.5)),
                ms(quantile(h, 0.99))
            )
        },
    );
    row(
        "Alarms:",
        if s.alarms.is_empty() {
            "none".into()
        } else {
            s.alarms.join(", ")
        },
    );
    if !s.members.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<16} {:<18} {:<8} {:<7} {:<10} {:<30} ERROR",
            "MEMBER", "ID", "HEALTHY", "LEADER", "DB SIZE", "CLIENT URLS"
        );
        for m in &s.members {
            let _ = writeln!(
                out,
                "{:<16} {:<18} {:<8} {:<7} {:<10} {:<30} {}",
                m.name,
                format!("{:x}", m.id),
                m.healthy,
                m.is_leader,
                bytes(m.db_size_bytes),
                m.client_urls.join(","),
                m.error.as_deref().unwrap_or("")
            );
        }
    }
    if !s.warnings.is_empty() {
        let _ = writeln!(out, "\nWarnings:");
        for w in &s.warnings {
            let _ = writeln!(out, "  - {w}");
        }
    }
    out
}

/// `skiff datastore …`.
pub fn run(data_dir: &Path, cmd: DatastoreCommand) -> anyhow::Result<std::process::ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(run_async(data_dir, cmd))?;
    Ok(std::process::ExitCode::SUCCESS)
}

const RUNNING_SQLITE: &str = "stop it first (the running server takes the scheduled snapshots: --snapshot-interval; its datastore metrics are on /metrics)";

async fn run_async(data_dir: &Path, cmd: DatastoreCommand) -> anyhow::Result<()> {
    match cmd {
        DatastoreCommand::Status(a) => {
            let store = open_for(data_dir, &a.datastore, RUNNING_SQLITE).await?;
            let status = store.status().await.with_context(|| {
                format!("reading the status of {}", describe(data_dir, &a.datastore))
            })?;
            if a.output == "json" {
                println!("{}", serde_json::to_string_pretty(&status_json(&status))?);
            } else {
                print!("{}", status_table(&status));
            }
        }
        DatastoreCommand::Snapshot(SnapshotCommand::Save {
            name,
            dir,
            datastore,
        }) => {
            let store = open_for(data_dir, &datastore, RUNNING_SQLITE).await?;
            let dir = dir.unwrap_or_else(|| default_snapshot_dir(data_dir));
            let info = save_snapshot(store.as_ref(), &dir, &name).await?;
            println!(
                "saved {} (revision {}, {} keys, {})",
                info.path.display(),
                info.revision,
                info.keys,
                bytes(info.size_bytes)
            );
        }
        DatastoreCommand::Snapshot(SnapshotCommand::Ls { dir, output }) => {
            let dir = dir.unwrap_or_else(|| default_snapshot_dir(data_dir));
            let list = list_snapshots(&dir)?;
            if output == "json" {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!("{:<60} {:<22} SIZE", "NAME", "CREATED");
                for s in &list {
                    println!(
                        "{:<60} {:<22} {}",
                        s.name,
                        unix_time(s.modified_unix),
                        bytes(s.size_bytes)
                    );
                }
            }
        }
        DatastoreCommand::Snapshot(SnapshotCommand::Restore { file, datastore }) => {
            if !file.is_file() {
                anyhow::bail!("snapshot {} does not exist", file.display());
            }
            let why = "stop the server before restoring: a restore replaces the whole database";
            let store = open_for(data_dir, &datastore, why).await?;
            let info = store.restore(&file).await.map_err(|e| {
                let hint = if datastore.datastore_endpoint.is_empty() {
                    ""
                } else {
                    " (stop every skiff server using this etcd cluster first)"
                };
                anyhow::anyhow!("restoring {}: {e}{hint}", file.display())
            })?;
            println!(
                "restored {} (revision {}, {} keys); start the server(s) again",
                file.display(),
                info.revision,
                info.keys
            );
        }
        DatastoreCommand::Snapshot(SnapshotCommand::Prune {
            retention,
            name,
            dir,
        }) => {
            let dir = dir.unwrap_or_else(|| default_snapshot_dir(data_dir));
            for p in prune_snapshots(&dir, &name, retention)? {
                println!("deleted {}", p.display());
            }
        }
        DatastoreCommand::Migrate(a) => migrate(data_dir, &a).await?,
    }
    Ok(())
}

/// SQLite (this data dir) → etcd: a snapshot of the local store restored into etcd.
async fn migrate(data_dir: &Path, a: &MigrateArgs) -> anyhow::Result<()> {
    if a.datastore.datastore_endpoint.is_empty() {
        anyhow::bail!("migrate needs --datastore-endpoint: the etcd cluster to copy into");
    }
    let local = open_for(
        data_dir,
        &DatastoreArgs::default(),
        "stop it before migrating (writes after the copy would be lost)",
    )
    .await?;
    let target = open(data_dir, &a.datastore).await?;
    let existing = target
        .list(
            "/registry/",
            &skiff_store::ListOptions {
                limit: 1,
                ..Default::default()
            },
        )
        .await
        .context("reading the etcd cluster")?;
    if !existing.items.is_empty() && !a.force {
        anyhow::bail!(
            "the etcd cluster already holds cluster state ({} …): refusing to overwrite it (--force replaces it)",
            existing.items[0].key
        );
    }
    let dir = data_dir.join("server");
    let tmp = tempfile_path(&dir, ".migrate-")?;
    let info = local
        .snapshot(&tmp)
        .await
        .context("snapshotting the SQLite datastore");
    let result = match info {
        Ok(_) => target
            .restore(&tmp)
            .await
            .context("restoring into etcd (stop every server using it first)"),
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(&tmp);
    let info = result?;
    println!(
        "migrated {} keys at revision {} into {}; start the server(s) with --datastore-endpoint {}",
        info.keys,
        info.revision,
        a.datastore.datastore_endpoint.join(","),
        a.datastore.datastore_endpoint.join(",")
    );
    Ok(())
}

/// A fresh path in `dir` that does not exist yet.
fn tempfile_path(dir: &Path, prefix: &str) -> anyhow::Result<PathBuf> {
    crate::private_dir(dir)?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let path = dir.join(format!("{prefix}{}-{nanos}.db", std::process::id()));
    if path.exists() {
        anyhow::bail!("{} already exists", path.display());
    }
    Ok(path)
}
