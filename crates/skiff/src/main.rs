//! The `skiff` binary: the command line and the wiring between the crates. Image commands go to
//! `skiff-image`, container commands to `skiff-runtime`; `skiff shim` is the per-container
//! supervisor the runtime starts (the same executable, so one binary is all a node needs).

mod agent_cmd;
mod attach_cmd;
mod container_cmd;
mod datastore;
mod image_cmd;
mod incluster_cmd;
mod kubeconfig_cmd;
mod progress;
mod reset_cmd;
mod secrets_cmd;
mod server_cmd;
mod units;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "skiff",
    version,
    about = "A Kubernetes-compatible container orchestrator in one binary"
)]
struct Cli {
    /// Where all state lives: images, containers, runtime state. Two data dirs never collide.
    #[arg(
        long,
        global = true,
        env = "SKIFF_DATA_DIR",
        default_value = "/var/lib/skiff"
    )]
    data_dir: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build, import, list, inspect, save and remove images.
    #[command(subcommand)]
    Image(image_cmd::ImageCommand),
    /// Run a command in a new container (like `docker run`).
    Run(container_cmd::RunArgs),
    /// List containers.
    Ps(container_cmd::PsArgs),
    /// Print a container's logs.
    Logs(container_cmd::LogsArgs),
    /// Run a command in a running container.
    Exec(container_cmd::ExecArgs),
    /// Attach this terminal to a running container's stdin, stdout and stderr.
    Attach(attach_cmd::AttachArgs),
    /// Stop running containers: SIGTERM, then SIGKILL after the grace period.
    Stop(container_cmd::StopArgs),
    /// Remove containers.
    Rm(container_cmd::RmArgs),
    /// Run the cluster on this machine: API server, controllers, scheduler and a node agent.
    Server(Box<server_cmd::ServerArgs>),
    /// Run a node agent that joins a cluster.
    Agent(agent_cmd::AgentArgs),
    /// Forward local connections to whichever API server is up (the agent's load balancer on
    /// its own): point kubectl at it to survive a server's loss. Prints its URL.
    Lb(agent_cmd::LbArgs),
    /// Mint a kubeconfig for a user: a client certificate (CN = user, O = groups) signed by the
    /// cluster CA, valid for --ttl. Run on a server machine (it reads the CA key).
    Kubeconfig(kubeconfig_cmd::KubeconfigArgs),
    /// Secrets encryption at rest: status, key rotation (run while the server is stopped).
    #[command(subcommand, name = "secrets-encrypt")]
    SecretsEncrypt(secrets_cmd::SecretsCommand),
    /// The datastore: status, snapshots (save, ls, restore, prune), SQLite → etcd migration.
    #[command(subcommand)]
    Datastore(datastore::DatastoreCommand),
    /// Remove every container, pod sandbox and the pod network of this data dir.
    Reset,
    /// Print version information.
    Version,
    /// The per-container supervisor started by the runtime (internal).
    #[command(hide = true)]
    Shim(container_cmd::ShimArgs),
    /// An in-cluster API client run inside pods by the tests (internal).
    #[command(hide = true, name = "in-cluster")]
    InCluster(incluster_cmd::InClusterArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The shim must stay single-threaded and quiet; it logs into its container's files.
    if !matches!(cli.command, Command::Shim(_)) {
        init_tracing();
    }
    match dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("skiff: {err:#}");
            // docker's convention: 127 when the command does not exist, 125 for our own errors.
            let not_found = err
                .downcast_ref::<skiff_runtime::RuntimeError>()
                .is_some_and(skiff_runtime::RuntimeError::is_command_not_found);
            ExitCode::from(if not_found { 127 } else { 125 })
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG")
        // libcontainer warns about every cgroup controller it cannot use; only show it on request.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("warn,libcontainer=off,libcgroups=off")
        });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    // Runs inside pods: no data dir of its own.
    let command = match cli.command {
        Command::InCluster(args) => return incluster_cmd::run(args),
        other => other,
    };
    let data_dir = absolute(&cli.data_dir)?;
    match command {
        Command::Image(cmd) => image_cmd::run(&data_dir, cmd).map(|()| ExitCode::SUCCESS),
        Command::Run(args) => container_cmd::run(&data_dir, args),
        Command::Ps(args) => container_cmd::ps(&data_dir, args).map(|()| ExitCode::SUCCESS),
        Command::Logs(args) => container_cmd::logs(&data_dir, args).map(|()| ExitCode::SUCCESS),
        Command::Exec(args) => container_cmd::exec(&data_dir, args),
        Command::Attach(args) => attach_cmd::attach(&data_dir, args),
        Command::Stop(args) => container_cmd::stop(&data_dir, args).map(|()| ExitCode::SUCCESS),
        Command::Rm(args) => container_cmd::rm(&data_dir, args).map(|()| ExitCode::SUCCESS),
        Command::Server(args) => server_cmd::run(&data_dir, *args),
        Command::Agent(args) => agent_cmd::run(&data_dir, args),
        Command::Lb(args) => agent_cmd::run_lb(args),
        Command::Kubeconfig(args) => {
            kubeconfig_cmd::run(&data_dir, args).map(|()| ExitCode::SUCCESS)
        }
        Command::SecretsEncrypt(cmd) => secrets_cmd::run(&data_dir, cmd),
        Command::Datastore(cmd) => datastore::run(&data_dir, cmd),
        Command::Reset => reset_cmd::run(&data_dir),
        Command::Version => {
            println!("skiff {}", env!("CARGO_PKG_VERSION"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Shim(args) => container_cmd::shim(&data_dir, args),
        Command::InCluster(args) => incluster_cmd::run(args),
    }
}

/// Creates `dir` and makes it 0700: it holds the cluster's state and credentials.
pub(crate) fn private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", dir.display()))
}

/// The data dir is handed to shims and baked into mounts, so make it absolute once.
fn absolute(path: &std::path::Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(path)
        .with_context(|| format!("cannot create data dir {}", path.display()))?;
    std::fs::canonicalize(path)
        .with_context(|| format!("cannot resolve data dir {}", path.display()))
}
