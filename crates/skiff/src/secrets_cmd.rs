//! `skiff secrets-encrypt`: k3s's commands for Secrets encryption at rest. They work on the
//! data dir directly, so the server must be stopped (the store's lock refuses otherwise).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Show whether Secrets are encrypted, the current key and how many Secrets each key holds.
    Status {
        #[command(flatten)]
        datastore: crate::datastore::DatastoreArgs,
    },
    /// Add a new key, make it current, re-encrypt every Secret under it and drop the old keys.
    /// With several servers: stop them all, rotate on one, start them (they take the new key
    /// from the datastore).
    RotateKeys {
        #[command(flatten)]
        datastore: crate::datastore::DatastoreArgs,
    },
}

async fn open_store(
    data_dir: &Path,
    datastore: &crate::datastore::DatastoreArgs,
) -> anyhow::Result<Arc<dyn skiff_store::Store>> {
    if !datastore.datastore_endpoint.is_empty() {
        return crate::datastore::open(data_dir, datastore).await;
    }
    let db = data_dir.join("server").join("state.db");
    let store = skiff_store::SqliteStore::open(&db).with_context(|| {
        format!(
            "opening {} (stop `skiff server` first: key rotation rewrites the database)",
            db.display()
        )
    })?;
    Ok(Arc::new(store))
}

pub fn run(data_dir: &Path, cmd: SecretsCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let datastore = match &cmd {
            SecretsCommand::Status { datastore } | SecretsCommand::RotateKeys { datastore } => {
                datastore.clone()
            }
        };
        let store = open_store(data_dir, &datastore).await?;
        match cmd {
            SecretsCommand::Status { .. } => {
                let s = skiff_apiserver::encryption::status(data_dir, store.as_ref()).await?;
                println!(
                    "Encryption Status: {}",
                    if s.enabled { "Enabled" } else { "Disabled" }
                );
                if let Some(k) = &s.current_key {
                    println!("Current Key: {k}");
                }
                for (key, n) in &s.secrets_by_key {
                    println!("Secrets under {key}: {n}");
                }
            }
            SecretsCommand::RotateKeys { .. } => {
                let (name, n) =
                    skiff_apiserver::encryption::rotate_keys(data_dir, store.clone()).await?;
                println!("rotated to key {name}: re-encrypted {n} secrets; old keys removed");
                // Other servers of the cluster take the new key from the datastore at start.
                if skiff_apiserver::bootstrap::publish_local(data_dir, store.as_ref())
                    .await
                    .context("sharing the new key through the datastore")?
                {
                    println!("the cluster's shared copy now holds the new key: restart the other servers");
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
