//! `skiff agent`: a node agent joining a cluster with the node token, and the node settings the
//! agent embedded in `skiff server` shares with it.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

#[derive(Args, Clone)]
pub struct NodeArgs {
    /// This node's name (default: the machine's hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The address the API server and other nodes reach this node on.
    #[arg(long, default_value = "127.0.0.1")]
    pub node_ip: Ipv4Addr,
    /// Where provisioned volumes (the local-path StorageClass) live on this node
    /// (default: `<data-dir>/storage`); published on the Node for the provisioner.
    #[arg(long)]
    pub storage_root: Option<PathBuf>,
    /// Port of the agent API (logs, exec) on the node IP; 0 picks a free port.
    #[arg(long, default_value_t = 0)]
    pub agent_port: u16,
    /// Duration of this node's Lease; the agent renews it (and the node status) every quarter
    /// of it. The server's --node-monitor-grace-period must be longer.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(i32).range(4..=3600))]
    pub node_lease_duration_seconds: i32,
    /// Never contact remote image registries: pods use images already in this node's store
    /// (or on a registry on this machine). For air-gapped nodes.
    #[arg(long)]
    pub offline: bool,
    /// A container's log is rotated once it would grow past this size (kubelet's flag;
    /// a quantity like 10Mi, 512Ki or 1G).
    #[arg(long, default_value = "10Mi", value_parser = parse_log_size)]
    pub container_log_max_size: u64,
    /// Log files kept per container, the live one included (kubelet's flag; at least 2).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub container_log_max_files: u32,
    /// PIDs one pod may use, all its containers together (kubelet's flag); -1 for no limit.
    #[arg(long, default_value_t = skiff_agent::DEFAULT_POD_MAX_PIDS, allow_negative_numbers = true)]
    pub pod_max_pids: i64,
    /// PIDs kept for the node: all pods together get at most pid_max minus this (the
    /// kubelet's --system-reserved=pid=N); 0 for no node-wide limit.
    #[arg(long, default_value_t = skiff_agent::DEFAULT_SYSTEM_RESERVED_PIDS)]
    pub system_reserved_pids: i64,
}

/// A Kubernetes quantity of bytes ("10Mi", "1G", "65536"), read by the shared parser; at
/// least 16Ki, so a full CRI record always fits in one file.
fn parse_log_size(text: &str) -> Result<u64, String> {
    use skiff_semantics::Quantity;
    let t = text.trim();
    // skiff accepted "K" before it used the shared parser; upstream spells it "k".
    let t = t
        .strip_suffix('K')
        .map_or_else(|| t.to_string(), |n| format!("{n}k"));
    let q = Quantity::parse(&t)
        .map_err(|e| format!("invalid size {text:?}: expected a quantity like 10Mi ({e})"))?;
    if q.is_negative() {
        return Err(format!("invalid size {text:?}: must not be negative"));
    }
    if q > Quantity::new(i128::from(i64::MAX), 0) {
        return Err(format!("invalid size {text:?}: too large"));
    }
    let v = u64::try_from(q.value()).map_err(|_| format!("invalid size {text:?}: too large"))?;
    if v < 16 << 10 {
        return Err(format!("invalid size {text:?}: must be at least 16Ki"));
    }
    Ok(v)
}

#[derive(Args)]
pub struct AgentArgs {
    /// The API servers, e.g. https://10.0.0.1:6443 (comma-separated, or repeated). The agent
    /// reaches them through its local load balancer on --lb-port, learns the others from the
    /// `kubernetes` Service's endpoints and keeps these as fall-backs.
    #[arg(long, required = true, value_delimiter = ',')]
    pub server: Vec<String>,
    /// Port of the agent's API server load balancer on 127.0.0.1; every API client of the
    /// agent and its pods' API relay go through it. Default 6444 (k3s's), or a free port when
    /// 6444 is taken (another agent on this machine); 0 always picks a free port.
    #[arg(long)]
    pub lb_port: Option<u16>,
    /// File holding the node token (the server writes it to `<data-dir>/node-token`).
    #[arg(long)]
    pub token_file: PathBuf,
    /// The cluster CA certificate (the server's `<data-dir>/server/tls/ca.crt`).
    #[arg(long)]
    pub ca_file: PathBuf,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Args)]
pub struct LbArgs {
    /// The API servers (comma-separated or repeated), e.g.
    /// https://10.0.0.1:6443,https://10.0.0.2:6443.
    #[arg(long, required = true, value_delimiter = ',')]
    pub server: Vec<String>,
    /// Where kubectl connects: point a kubeconfig at https://<this address>.
    #[arg(long, default_value = "127.0.0.1:6444")]
    pub listen: SocketAddr,
    /// The cluster CA certificate: health checks become TLS GET /readyz verified against it
    /// (without it, a TCP connect).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
}

/// `skiff lb`: the agent's API server load balancer on its own, for kubectl on machines that
/// run no agent (no root, no data dir).
pub fn run_lb(args: LbArgs) -> anyhow::Result<ExitCode> {
    for s in &args.server {
        anyhow::ensure!(
            skiff_agent::lb::server_addr(s.trim()).is_some(),
            "--server {s:?}: expected https://host:port"
        );
    }
    let mut config = skiff_agent::lb::LbConfig::new(args.listen, None);
    if let Some(path) = &args.ca_file {
        config.ca_pem =
            Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let lb = skiff_agent::lb::LoadBalancer::start(config, &args.server, stopped)
            .await
            .context("starting the load balancer")?;
        println!("{}", lb.url());
        crate::server_cmd::shutdown_signal().await;
        let _ = stop.send(true);
        Ok(ExitCode::SUCCESS)
    })
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.trim().to_lowercase())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "skiff-node".to_string())
}

pub fn agent_config(
    data_dir: &Path,
    node: &NodeArgs,
    token: String,
    server: &str,
) -> anyhow::Result<skiff_agent::AgentConfig> {
    Ok(skiff_agent::AgentConfig {
        data_dir: data_dir.to_path_buf(),
        node_name: node.node_name.clone().unwrap_or_else(hostname),
        node_ip: node.node_ip,
        api_listen: SocketAddr::from((node.node_ip, node.agent_port)),
        api_token: token,
        skiff_exe: std::env::current_exe().context("cannot find the skiff executable")?,
        lease_duration_seconds: node.node_lease_duration_seconds,
        offline: node.offline,
        sync_frequency: std::time::Duration::from_secs(60),
        housekeeping_interval: std::time::Duration::from_secs(10),
        limits: skiff_agent::NodeLimits {
            container_log_max_size: node.container_log_max_size,
            container_log_max_files: node.container_log_max_files,
            pod_max_pids: node.pod_max_pids,
            system_reserved_pids: node.system_reserved_pids.max(0),
        },
        api_server: Some(
            skiff_agent::relay::authority(server)
                .with_context(|| format!("--server {server:?}: expected https://host:port"))?,
        ),
        storage_root: node.storage_root.clone(),
    })
}

/// The node's own identity: exchanges the join token for the node's client certificate (or
/// reuses the one kept in `<data-dir>/agent/pki/`) and keeps renewing it until `stop`. The
/// returned client authenticates as `system:node:<name>`.
pub async fn node_identity(
    data_dir: &Path,
    server: &str,
    ca_pem: &[u8],
    token: &str,
    node_name: &str,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<kube::Client> {
    use skiff_client::node_identity::IdentityError;
    use skiff_client::node_identity::{IdentityOptions, NodeIdentity};
    let opts = IdentityOptions {
        server: server.to_string(),
        ca_pem: ca_pem.to_vec(),
        join_token: token.to_string(),
        node_name: node_name.to_string(),
        dir: data_dir.join("agent").join("pki"),
        expiration_seconds: None,
    };
    let identity = loop {
        match NodeIdentity::establish(opts.clone()).await {
            Ok(identity) => break identity,
            // The server may not be up yet; a refusal (bad token, bad name) is final.
            Err(IdentityError::Request(kube::Error::Api(ae))) if ae.code < 500 => {
                anyhow::bail!("getting the node\'s client certificate: {}", ae.message)
            }
            Err(e @ (IdentityError::Request(_) | IdentityError::Client(_))) => {
                tracing::warn!("getting the node\'s client certificate (retrying): {e}");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e).context("getting the node\'s client certificate"),
        }
    };
    let client = identity.client();
    tokio::spawn(identity.run(stop));
    Ok(client)
}

/// The node agent needs root (namespaces, mounts, cgroups); say why it cannot run otherwise.
pub fn check_can_run_agent() -> anyhow::Result<()> {
    anyhow::ensure!(
        nix::unistd::geteuid().is_root(),
        "the node agent needs root (namespaces, overlay mounts, cgroups)"
    );
    Ok(())
}

pub fn run(data_dir: &Path, args: AgentArgs) -> anyhow::Result<ExitCode> {
    check_can_run_agent()?;
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("reading {}", args.token_file.display()))?
        .trim()
        .to_string();
    let ca = std::fs::read(&args.ca_file)
        .with_context(|| format!("reading {}", args.ca_file.display()))?;
    for s in &args.server {
        anyhow::ensure!(
            skiff_agent::relay::authority(s.trim()).is_some(),
            "--server {s:?}: expected https://host:port"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        // Every API client below dials the servers through this local load balancer.
        let lb = start_lb(data_dir, &ca, &args.server, args.lb_port, stopped.clone()).await?;
        let server = lb.url();
        let config = agent_config(data_dir, &args.node, token.clone(), &server)?;
        let client = node_identity(
            data_dir,
            &server,
            &ca,
            &token,
            &config.node_name,
            crate::server_cmd::wait_for(stopped.clone()),
        )
        .await?;
        tokio::spawn(skiff_agent::lb::follow_endpoints(
            client.clone(),
            lb,
            stopped,
        ));
        let result = skiff_agent::run(client, config, crate::server_cmd::shutdown_signal()).await;
        let _ = stop.send(true);
        result.context("node agent")?;
        Ok(ExitCode::SUCCESS)
    })
}

/// The agent's API server load balancer on 127.0.0.1:`port` (default 6444, else any free
/// port when that one is taken).
async fn start_lb(
    data_dir: &Path,
    ca_pem: &[u8],
    servers: &[String],
    port: Option<u16>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<skiff_agent::lb::LoadBalancer> {
    use skiff_agent::lb::{LbConfig, LbError, LoadBalancer, DEFAULT_PORT};
    let config = |port: u16| {
        let mut c = LbConfig::new(
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            Some(lb_state_file(data_dir)),
        );
        // Health checks: TLS GET /readyz, verified against the cluster CA.
        c.ca_pem = Some(ca_pem.to_vec());
        c
    };
    let wanted = port.unwrap_or(DEFAULT_PORT);
    let lb = match LoadBalancer::start(config(wanted), servers, stop.clone()).await {
        Err(LbError::Listen { source, .. })
            if port.is_none() && source.kind() == std::io::ErrorKind::AddrInUse =>
        {
            tracing::warn!(
                "127.0.0.1:{DEFAULT_PORT} is taken (another agent on this machine?): the API \
                 server load balancer listens on a free port instead; set --lb-port to choose"
            );
            LoadBalancer::start(config(0), servers, stop).await
        }
        other => other,
    };
    lb.with_context(|| format!("starting the API server load balancer (--lb-port {wanted})"))
}

/// Where the agent keeps the API servers it learned (see skiff_agent::lb).
pub fn lb_state_file(data_dir: &Path) -> PathBuf {
    data_dir.join("agent").join("api-servers.json")
}

#[cfg(test)]
mod tests {
    use super::{parse_log_size, AgentArgs};

    #[test]
    fn several_servers_and_the_lb_port() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            agent: AgentArgs,
        }
        let base = ["skiff", "--token-file", "t", "--ca-file", "c"];
        let cli = Cli::try_parse_from(base.iter().copied().chain([
            "--server",
            "https://10.0.0.1:6443,https://10.0.0.2:6443",
            "--server",
            "https://10.0.0.3:6443",
        ]))
        .unwrap();
        assert_eq!(
            cli.agent.server,
            [
                "https://10.0.0.1:6443",
                "https://10.0.0.2:6443",
                "https://10.0.0.3:6443"
            ]
        );
        assert_eq!(cli.agent.lb_port, None);
        let cli = Cli::try_parse_from(base.iter().copied().chain([
            "--server",
            "https://h:6443",
            "--lb-port",
            "0",
        ]))
        .unwrap();
        assert_eq!(cli.agent.lb_port, Some(0));
        assert!(Cli::try_parse_from(base).is_err(), "--server is required");
    }

    #[test]
    fn log_sizes() {
        assert_eq!(parse_log_size("10Mi"), Ok(10 << 20));
        assert_eq!(parse_log_size("512Ki"), Ok(512 << 10));
        assert_eq!(parse_log_size("1G"), Ok(1_000_000_000));
        assert_eq!(parse_log_size("65536"), Ok(65536));
        assert!(parse_log_size("1Ki").is_err());
        assert!(parse_log_size("10Xi").is_err());
        assert!(parse_log_size("Mi").is_err());
        assert!(parse_log_size("99999999999999999Gi").is_err());
        assert_eq!(parse_log_size("64K"), Ok(64_000));
        assert_eq!(parse_log_size("1.5Mi"), Ok(3 << 19));
        assert!(parse_log_size("-1Mi").is_err());
    }
}
