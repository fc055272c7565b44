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
