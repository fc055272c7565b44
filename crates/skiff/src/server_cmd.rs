//! `skiff server`: the API server plus the controllers and scheduler (as in-process API clients;
//! the node agent joins them in a later issue).
//! State lives in `<data-dir>/server/state.db` (SQLite); TLS material and tokens next to it.

use std::path::{Path, PathBuf};
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
    /// How often each HorizontalPodAutoscaler is synced (kube-controller-manager's flag), e.g.
    /// `15s`, `2s`.
    #[arg(long, default_value = "15s", value_parser = parse_seconds)]
    pub horizontal_pod_autoscaler_sync_period: Duration,
    /// tolerationSeconds given to pods for the not-ready/unreachable NoExecute taints.
    #[arg(long, default_value_t = 300)]
    pub default_toleration_seconds: i64,
    /// The pod network: every node gets a /24 of it.
    #[arg(long, default_value = "100.64.0.0/16", value_parser = parse_cidr)]
    pub cluster_cidr: skiff_semantics::cidr::Ipv4Net,
    /// Do not run a node agent in this process (a control-plane-only server).
    #[arg(long)]
    pub no_agent: bool,
    /// Encrypt Secrets at rest (AES-GCM, key in <data-dir>/server/cred); once enabled it stays
    /// on. Rotate with `skiff secrets-encrypt rotate-keys`.
    #[arg(long)]
    pub secrets_encryption: bool,
    /// Most non-mutating requests in flight (0 = no limit); more get 429.
    #[arg(long, default_value_t = skiff_apiserver::DEFAULT_MAX_REQUESTS_INFLIGHT)]
    pub max_requests_inflight: usize,
    /// Most mutating requests in flight (0 = no limit); more get 429.
    #[arg(long, default_value_t = skiff_apiserver::DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT)]
    pub max_mutating_requests_inflight: usize,
    /// `iss` of ServiceAccount tokens and the audience the API accepts them for.
    #[arg(long, default_value = skiff_apiserver::serviceaccount::DEFAULT_ISSUER)]
    pub service_account_issuer: String,
    /// Do not create the default `local-path` StorageClass at startup (like k3s's
    /// `--disable local-storage`), e.g. to install another provisioner under that name.
    #[arg(long)]
    pub disable_default_storage_class: bool,
    /// Most open API connections (0 = half the open-file limit). At the cap, the oldest
    /// connection without a request in flight is dropped for a new one.
    #[arg(long, default_value_t = 0)]
    pub max_connections: usize,
    /// Run the controllers and the scheduler only while this server holds their Leases
    /// (`kube-system/kube-controller-manager`, `kube-system/kube-scheduler`), so several
    /// servers can share one datastore. `--leader-elect=false` always runs them.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true",
        action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// How long a non-leader waits after the last observed Lease change before taking over.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader retries renewing before it stops its loops and campaigns again.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// Time between attempts to acquire or renew a Lease.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub leader_elect_retry_period: Duration,
    #[command(flatten)]
    pub datastore: crate::datastore::DatastoreArgs,
    /// The cluster token: servers joining a cluster pass the first server's
    /// `<data-dir>/node-token`; unset, the data dir's own, or a new one on a first server.
    #[arg(
        long,
        env = "SKIFF_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// A file holding the cluster token (see --token).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// How often a datastore snapshot is taken (e.g. `12h`, `30m`, `90s`; 0 = never). With
    /// several servers, the one holding the `kube-system/skiff-snapshot` Lease takes it.
    #[arg(long, default_value = "12h", value_parser = parse_interval)]
    pub snapshot_interval: Duration,
    /// Scheduled snapshots kept (older ones are deleted).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_retention: u64,
    /// Where scheduled snapshots go (default `<data-dir>/server/snapshots`).
    #[arg(long)]
    pub snapshot_dir: Option<PathBuf>,
    #[command(flatten)]
    pub node: crate::agent_cmd::NodeArgs,
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (connections and watches are file
/// descriptors) and returns the resulting soft limit.
fn raise_nofile_limit() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!("cannot raise the open-file limit from {soft} to {hard}: {e}");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(e) => {
            tracing::warn!("cannot read the open-file limit: {e}");
            1024
        }
    }
}

pub fn run(data_dir: &Path, args: ServerArgs) -> anyhow::Result<ExitCode> {
    let timings = skiff_controllers::leaderelection::Timings {
        lease_duration: args.leader_elect_lease_duration,
        renew_deadline: args.leader_elect_renew_deadline,
        retry_period: args.leader_elect_retry_period,
    };
    if args.leader_elect {
        timings
            .validate()
            .context("invalid --leader-elect-* flags")?;
    }
    let nofile = raise_nofile_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let server_dir = data_dir.join("server");
        crate::private_dir(data_dir)?;
        crate::private_dir(&server_dir)?;
        let store = crate::datastore::open(data_dir, &args.datastore).await?;
        warn_about_datastore(store.as_ref()).await;
        let token = cluster_token(&args)?;
        let bootstrap_started = std::time::Instant::now();
        let joined = skiff_apiserver::bootstrap::run(
            data_dir,
            token.as_deref(),
            args.secrets_encryption,
            store.as_ref(),
        )
        .await
        .context("sharing the cluster CA and keys through the datastore")?;
        tracing::info!(
            outcome = ?joined.outcome,
            key = %joined.key,
            written = ?joined.written,
            elapsed_ms = bootstrap_started.elapsed().as_millis(),
            "cluster bootstrap data"
        );
        let raw_store = store.clone();
        let store = skiff_apiserver::encryption::wrap(data_dir, args.secrets_encryption, store)
            .context("setting up secrets encryption")?;
        // Keep about five minutes of history for watches and continue tokens, like etcd's
        // default compaction in Kubernetes.
        let interval = args.datastore.datastore_compaction_interval;
        let _compactor = (!interval.is_zero())
            .then(|| skiff_store::spawn_compactor(store.clone(), interval, 1000));
        let mut config = skiff_apiserver::ServerConfig::new(data_dir, args.listen);
        config.extra_sans = args.tls_san;
        // Listening on every address: advertise the node's (upstream picks the host's).
        if args.listen.ip().is_unspecified() && !args.node.node_ip.is_loopback() {
            config.advertise_address = Some(args.node.node_ip);
        }
        config.default_toleration_seconds = args.default_toleration_seconds;
        config.max_requests_inflight = args.max_requests_inflight;
        config.max_mutating_requests_inflight = args.max_mutating_requests_inflight;
        config.service_account_issuer = args.service_account_issuer;
        config.default_storage_class = !args.disable_default_storage_class;
        // Half the descriptors for API connections; the rest for the store, agent and shims.
        config.max_connections = if args.max_connections > 0 {
            args.max_connections
        } else {
            usize::try_from(nofile / 2).unwrap_or(usize::MAX).max(64)
        };
        let server = skiff_apiserver::Server::bind(config, store)
            .await
            .context("starting the API server")?;
        tracing::info!(
            kubeconfig = %server.kubeconfig_path().display(),
            "API server ready at https://{}",
            server.local_addr()
        );
        // Controllers and the scheduler talk to the server like any client, through HTTPS, each
        // with its own least-privileged identity (bound by the bootstrap RBAC policy).
        let url = format!("https://{}", server.local_addr());
        let ca_pem = server
            .ca_pem()
            .context("the server has no cluster CA")?
            .to_string();
        let component = |user: &str| -> anyhow::Result<kube::Client> {
            let cert = server
                .component_cert(user, &[])
                .with_context(|| format!("issuing the client certificate of {user}"))?;
            skiff_client::config::with_client_cert(
                &url,
                ca_pem.as_bytes(),
                &cert.cert_pem,
                &cert.key_pem,
            )
            .with_context(|| format!("creating the API client of {user}"))
        };
        let controllers_client = component(skiff_apiserver::auth::user::users::CONTROLLER_MANAGER)?;
        let scheduler_client = component(skiff_apiserver::auth::user::users::SCHEDULER)?;
        let options = skiff_controllers::Options {
            node_monitor_grace_period: Duration::from_secs(args.node_monitor_grace_period),
            default_toleration_seconds: args.default_toleration_seconds,
            cluster_cidr: args.cluster_cidr,
            root_ca_pem: Some(ca_pem.clone()),
            hpa_sync_period: args.horizontal_pod_autoscaler_sync_period,
            ..Default::default()
        };
        // One signal stops everything; each part gets its own view of it.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        });
        // The API server stops after the controllers released their Leases through it (so a
        // peer takes over at once), or after a bound if that hangs.
        let (controllers_done_tx, controllers_done) = tokio::sync::oneshot::channel::<()>();
        let server_stopped = {
            let stopped = stopped.clone();
            let elect = args.leader_elect;
            async move {
                wait_for(stopped).await;
                if elect {
                    let _ = tokio::time::timeout(Duration::from_secs(5), controllers_done).await;
                }
            }
        };
        let controllers = if args.leader_elect {
            let identity = skiff_controllers::leaderelection::default_identity();
            tracing::info!(%identity, "leader election on: the controllers and the scheduler run while this server holds their Leases");
            let (_leadership, run) = skiff_controllers::run_elected(
                controllers_client,
                scheduler_client,
                options,
                skiff_controllers::LeaderElect { identity, timings },
                wait_for(stopped.clone()),
            );
            tokio::spawn(async move {
                let result = run.await;
                let _ = controllers_done_tx.send(());
                result
            })
        } else {
            tokio::spawn(skiff_controllers::run_as(
                controllers_client,
                scheduler_client,
                options,
                wait_for(stopped.clone()),
            ))
        };
        // ComponentStatus: the scheduler and the controller manager run in the controllers
        // task; they are healthy while it runs, leading or standing by (as upstream, a
        // healthy non-leader reports healthy).
        let running = controllers.abort_handle();
        for component in ["scheduler", "controller-manager"] {
            let running = running.clone();
            server.state().register_component(
                component,
                Arc::new(move || {
                    if running.is_finished() {
                        Err("the controllers task has stopped".to_string())
                    } else {
                        Ok(())
                    }
                }),
            );
        }
        let agent = if args.no_agent {
            None
        } else if let Err(e) = crate::agent_cmd::check_can_run_agent() {
            tracing::warn!("running without a node agent: {e:#}");
            None
        } else {
            let token = std::fs::read_to_string(data_dir.join("node-token"))
                .context("reading the node token")?
                .trim()
                .to_string();
            let ca = std::fs::read(data_dir.join("server/tls/ca.crt"))
                .context("reading the cluster CA")?;
            let url = url.clone();
            let config = crate::agent_cmd::agent_config(data_dir, &args.node, token.clone(), &url)?;
            let data_dir_owned = data_dir.to_path_buf();
            let state = server.state();
            // The server is not serving yet: the agent joins (exchanging the join token for
            // its certificate) in the background once it is.
            let stop = stopped.clone();
            Some(tokio::spawn(async move {
                let node = config.node_name.clone();
                let client = crate::agent_cmd::node_identity(
                    data_dir_owned.as_path(),
                    &url,
                    &ca,
                    &token,
                    &node,
                    wait_for(stop.clone()),
                )
                .await?;
                // This process's API server reaches its own agent in memory (see agent_client).
                let publish = |router| state.register_local_agent(&node, router);
                skiff_agent::run_publishing(client, config, publish, wait_for(stop))
                    .await
                    .map_err(anyhow::Error::from)
            }))
        };
        if !args.snapshot_interval.is_zero() {
            let admin = server
                .component_cert(
                    skiff_apiserver::auth::user::users::ADMIN,
                    &[skiff_apiserver::auth::user::groups::MASTERS.to_string()],
                )
                .context("issuing the snapshot task's client certificate")?;
            let client = skiff_client::config::with_client_cert(
                &url,
                ca_pem.as_bytes(),
                &admin.cert_pem,
                &admin.key_pem,
            )
            .context("creating the snapshot task's API client")?;
            let host = nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "localhost".into());
            tokio::spawn(snapshot_loop(Snapshots {
                store: raw_store,
                client,
                dir: args
                    .snapshot_dir
                    .clone()
                    .unwrap_or_else(|| crate::datastore::default_snapshot_dir(data_dir)),
                interval: args.snapshot_interval,
                retention: usize::try_from(args.snapshot_retention).unwrap_or(usize::MAX),
                identity: format!("{host}_{}", server.local_addr()),
                stop: stopped.clone(),
            }));
        }
        let served = server.run(server_stopped).await;
        if let Some(agent) = agent {
            if let Ok(Err(e)) = agent.await {
                tracing::error!("node agent stopped with an error: {e:#}");
            }
        }
        if let Ok(Err(e)) = controllers.await {
            tracing::warn!("controllers stopped with an error: {e}");
        }
        served.context("serving")?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The token from --token or --token-file.
fn cluster_token(args: &ServerArgs) -> anyhow::Result<Option<String>> {
    if let Some(t) = &args.token {
        return Ok(Some(t.trim().to_string()));
    }
    let Some(path) = &args.token_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the token file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        anyhow::bail!("the token file {} is empty", path.display());
    }
    Ok(Some(token.to_string()))
}

/// Logs the datastore's own warnings (one etcd member, an even member count, near its quota).
async fn warn_about_datastore(store: &dyn skiff_store::Store) {
    match store.status().await {
        Ok(status) => {
            for w in &status.warnings {
                tracing::warn!(backend = %status.backend, "datastore: {w}");
            }
        }
        Err(e) => tracing::warn!("cannot read the datastore status: {e}"),
    }
}

/// The scheduled-snapshot task's inputs.
struct Snapshots {
    store: Arc<dyn skiff_store::Store>,
    client: kube::Client,
    dir: PathBuf,
    interval: Duration,
    retention: usize,
    identity: String,
    stop: tokio::sync::watch::Receiver<bool>,
}

/// The Lease naming the server that took the last scheduled snapshot.
const SNAPSHOT_LEASE: &str = "skiff-snapshot";

/// Every interval: the server that claims the snapshot Lease saves a snapshot and prunes the
/// older ones (so several servers on one etcd take one snapshot per interval, not one each).
async fn snapshot_loop(s: Snapshots) {
    let start = tokio::time::Instant::now() + s.interval;
    let mut ticker = tokio::time::interval_at(start, s.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = wait_for(s.stop.clone()) => return,
        }
        match claim_snapshot_lease(&s.client, &s.identity, s.interval).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!("another server takes this snapshot");
                continue;
            }
            Err(e) => {
                tracing::warn!("scheduled snapshot skipped: cannot claim its Lease: {e}");
                continue;
            }
        }
        let name = crate::datastore::DEFAULT_SNAPSHOT_NAME;
        match crate::datastore::save_snapshot(s.store.as_ref(), &s.dir, name).await {
            Ok(info) => tracing::info!(
                path = %info.path.display(),
                revision = info.revision,
                keys = info.keys,
                "scheduled datastore snapshot saved"
            ),
            Err(e) => {
                tracing::warn!("scheduled datastore snapshot failed: {e:#}");
                continue;
            }
        }
        match crate::datastore::prune_snapshots(&s.dir, name, s.retention) {
            Ok(deleted) => {
                for p in deleted {
                    tracing::info!(path = %p.display(), "old snapshot deleted");
                }
            }
            Err(e) => tracing::warn!("pruning snapshots: {e:#}"),
        }
    }
}

/// Takes the snapshot Lease when it is free or expired; false when another server holds it or
/// won the race. It lasts 9/10 of an interval: servers tick at different moments, and the one
/// that took the last snapshot holds it until shortly before its own next tick, so each
/// interval gets one snapshot whatever the offsets between the servers' timers.
async fn claim_snapshot_lease(
    client: &kube::Client,
    identity: &str,
    interval: Duration,
) -> Result<bool, kube::Error> {
    use k8s_openapi::api::coordination::v1::Lease;
    let api: kube::Api<Lease> = kube::Api::namespaced(client.clone(), "kube-system");
    let hold = interval.saturating_mul(9) / 10;
    let duration = i64::try_from(hold.as_secs())
        .unwrap_or(i64::MAX)
        .clamp(1, i64::from(i32::MAX));
    let now = jiff::Timestamp::now();
    let now_text = now.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string();
    let spec = serde_json::json!({
        "holderIdentity": identity,
        "leaseDurationSeconds": duration,
        "acquireTime": now_text,
        "renewTime": now_text,
    });
    let conflict = |e: &kube::Error| matches!(e, kube::Error::Api(s) if s.code == 409);
    let Some(current) = api.get_opt(SNAPSHOT_LEASE).await? else {
        let lease: Lease = serde_json::from_value(serde_json::json!({
            "metadata": {"name": SNAPSHOT_LEASE, "namespace": "kube-system"},
            "spec": spec,
        }))
        .map_err(kube::Error::SerdeError)?;
        return match api.create(&Default::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(e) if conflict(&e) => Ok(false),
            Err(e) => Err(e),
        };
    };
    let value = serde_json::to_value(&current).map_err(kube::Error::SerdeError)?;
    let holder = value
        .pointer("/spec/holderIdentity")
        .and_then(|v| v.as_str());
    let held_for = value
        .pointer("/spec/leaseDurationSeconds")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0);
    let renewed = value
        .pointer("/spec/renewTime")
        .and_then(|v| v.as_str())
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    // Milliseconds: the Lease's whole seconds are too coarse for short intervals.
    let hold_ms = i64::try_from(hold.as_millis())
        .unwrap_or(i64::MAX)
        .max(held_for.saturating_mul(1000));
    let expired =
        renewed.is_none_or(|r| now.as_millisecond().saturating_sub(r.as_millisecond()) >= hold_ms);
    if !expired && holder != Some(identity) {
        return Ok(false);
    }
    let mut lease = value;
    lease["spec"] = spec;
    let lease: Lease = serde_json::from_value(lease).map_err(kube::Error::SerdeError)?;
    match api
        .replace(SNAPSHOT_LEASE, &Default::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if conflict(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A duration like `12h`, `30m`, `90s` or `0` (off).
fn parse_interval(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (e.g. 12h, 30m, 90s, 0)"))?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    n.checked_mul(unit)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
}

fn parse_cidr(text: &str) -> Result<skiff_semantics::cidr::Ipv4Net, String> {
    skiff_semantics::cidr::parse_ipv4_network(text, 8..=24)
        .map_err(|_| format!("invalid CIDR {text:?}: expected an IPv4 network like 100.64.0.0/16"))
}

pub(crate) async fn wait_for(mut stopped: tokio::sync::watch::Receiver<bool>) {
    while !*stopped.borrow() {
        if stopped.changed().await.is_err() {
            return;
        }
    }
}

pub async fn shutdown_signal() {
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

/// A duration: `15s`, `500ms`, `2` (seconds); at least 1 ms.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration (e.g. 15s, 500ms)");
    let d = if let Some(ms) = s.strip_suffix("ms") {
        Duration::from_millis(ms.parse().map_err(|_| bad())?)
    } else {
        Duration::from_secs(
            s.strip_suffix('s')
                .unwrap_or(s)
                .parse()
                .map_err(|_| bad())?,
        )
    };
    if d.is_zero() {
        return Err("the duration must not be zero".into());
    }
    Ok(d)
}

/// A duration in whole seconds with an optional `s` suffix (`15s`, `2`).
fn parse_seconds(s: &str) -> Result<Duration, String> {
    let n: u64 = s
        .strip_suffix('s')
        .unwrap_or(s)
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds (e.g. 15s)"))?;
    if n == 0 {
        return Err("the period must be at least 1s".into());
    }
    Ok(Duration::from_secs(n))
}

#[cfg(test)]
mod tests {
    use super::{parse_cidr, parse_interval};
    use std::time::Duration;

    #[test]
    fn snapshot_interval_flag_takes_units_and_zero() {
        assert_eq!(parse_interval("12h"), Ok(Duration::from_secs(43200)));
        assert_eq!(parse_interval("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_interval("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_interval("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_interval("0"), Ok(Duration::ZERO));
        for bad in ["", "h", "1w", "-1h", "99999999999999999999d"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn leader_elect_flag_defaults_on_and_takes_false() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            server: super::ServerArgs,
        }
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("skiff").chain(args.iter().copied()))
                .map(|c| c.server)
        };
        let default = parse(&[]).expect("defaults");
        assert!(default.leader_elect);
        assert_eq!(
            default.leader_elect_lease_duration,
            std::time::Duration::from_secs(15)
        );
        assert_eq!(
            default.leader_elect_renew_deadline,
            std::time::Duration::from_secs(10)
        );
        assert_eq!(
            default.leader_elect_retry_period,
            std::time::Duration::from_secs(2)
        );
        assert!(parse(&["--leader-elect"]).expect("bare").leader_elect);
        assert!(
            !parse(&["--leader-elect=false"])
                .expect("false")
                .leader_elect
        );
        let short = parse(&[
            "--leader-elect-lease-duration",
            "3s",
            "--leader-elect-renew-deadline=2s",
            "--leader-elect-retry-period=500ms",
        ])
        .expect("short");
        assert_eq!(
            short.leader_elect_retry_period,
            std::time::Duration::from_millis(500)
        );
    }

    #[test]
    fn leader_elect_flags_parse_durations() {
        use std::time::Duration;
        assert_eq!(super::parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(super::parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(
            super::parse_duration("500ms"),
            Ok(Duration::from_millis(500))
        );
        assert!(super::parse_duration("0s").is_err());
        assert!(super::parse_duration("x").is_err());
    }

    #[test]
    fn cluster_cidr_flag_takes_networks_from_slash_8_to_slash_24() {
        let net = parse_cidr("100.64.0.0/16").expect("default");
        assert_eq!(
            (net.network().octets(), net.prefix_len()),
            ([100, 64, 0, 0], 16)
        );
        assert!(parse_cidr("10.0.0.0/8").is_ok());
        assert!(parse_cidr("100.64.42.0/24").is_ok());
        for bad in [
            "100.64.0.0/25",
            "10.0.0.0/7",
            "100.64.0.1/16",
            "100.64.0.0",
            "x/16",
        ] {
            let err = parse_cidr(bad).expect_err(bad);
            assert!(err.contains("expected an IPv4 network"), "{err}");
        }
    }
}
