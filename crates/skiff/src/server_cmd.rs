//! `skiff server`: the API server plus the controllers and scheduler (as in-process API clients;
//! the node agent joins them in a later issue).
//! State lives in `<data-dir>/server/state.db` (SQLite); TLS material and tokens next to it.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

#[derive(Args)]
pub struct ServerArgs {
    /// Address to serve the Kubernetes API on (HTTPS).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: std::net::SocketAddr,
    /// Extra names or IPs for the serving certificate (repeatable).
    #[arg(long = "tls-san")]
    pub tls_san: Vec<String>,
    /// Seconds without a Lease renewal before a node is marked Unknown and tainted.
    #[arg(long, default_value_t = 50)]
    pub node_monitor_grace_period: u64,
    /// tolerationSeconds given to pods for the not-ready/unreachable NoExecute taints.
    #[arg(long, default_value_t = 300)]
    pub default_toleration_seconds: i64,
}

pub fn run(data_dir: &Path, args: ServerArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let server_dir = data_dir.join("server");
        std::fs::create_dir_all(&server_dir)
            .with_context(|| format!("creating {}", server_dir.display()))?;
        let db = server_dir.join("state.db");
        let store: Arc<dyn skiff_store::Store> = Arc::new(
            skiff_store::SqliteStore::open(&db)
                .with_context(|| format!("opening {}", db.display()))?,
        );
        // Keep about five minutes of history for watches and continue tokens, like etcd's
        // default compaction in Kubernetes.
        let _compactor =
            skiff_store::spawn_compactor(store.clone(), Duration::from_secs(300), 1000);
        let mut config = skiff_apiserver::ServerConfig::new(data_dir, args.listen);
        config.extra_sans = args.tls_san;
        config.default_toleration_seconds = args.default_toleration_seconds;
        let server = skiff_apiserver::Server::bind(config, store)
            .await
            .context("starting the API server")?;
        tracing::info!(
            kubeconfig = %server.kubeconfig_path().display(),
            "API server ready at https://{}",
            server.local_addr()
        );
        // Controllers talk to the server like any client: through HTTPS with the admin token.
        let client = kube_client(server.kubeconfig_path()).await?;
        let options = skiff_controllers::Options {
            node_monitor_grace_period: Duration::from_secs(args.node_monitor_grace_period),
            default_toleration_seconds: args.default_toleration_seconds,
            ..Default::default()
        };
        let (stop_controllers, stopped) = tokio::sync::oneshot::channel::<()>();
        let controllers = tokio::spawn(skiff_controllers::run(client, options, async {
            let _ = stopped.await;
        }));
        let served = server.run(shutdown_signal()).await;
        let _ = stop_controllers.send(());
        if let Ok(Err(e)) = controllers.await {
            tracing::warn!("controllers stopped with an error: {e}");
        }
        served.context("serving")?;
        Ok(ExitCode::SUCCESS)
    })
}

async fn kube_client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .context("loading the admin kubeconfig")?;
    kube::Client::try_from(config).context("creating the controllers' API client")
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
