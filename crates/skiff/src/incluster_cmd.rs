//! `skiff in-cluster list-pods` (hidden): a real in-cluster API client for tests, so the
//! ServiceAccount token, the `kubernetes` Service and the node's API relay are exercised by
//! kube-rs's own in-cluster configuration (KUBERNETES_SERVICE_HOST/PORT, the mounted token,
//! ca.crt and namespace), the way an operator in a pod would. It ships as the same binary
//! rather than a second target: nothing more to build, and a test image only needs this file.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

#[derive(Args)]
pub struct InClusterArgs {
    #[command(subcommand)]
    command: InClusterCommand,
}

#[derive(Subcommand)]
enum InClusterCommand {
    /// List the pods of a namespace (default: the pod's own) and print their names.
    ListPods {
        #[arg(long, short)]
        namespace: Option<String>,
    },
}

/// Exit codes a test can tell apart: 0 listed, 3 forbidden (403), 4 unauthorized (401),
/// 1 anything else.
pub fn run(args: InClusterArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let config = kube::Config::incluster().context("in-cluster configuration")?;
        let InClusterCommand::ListPods { namespace } = args.command;
        let namespace = namespace.unwrap_or_else(|| config.default_namespace.clone());
        let client = kube::Client::try_from(config).context("creating the API client")?;
        let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
            kube::Api::namespaced(client, &namespace);
        match api.list(&Default::default()).await {
            Ok(list) => {
                for pod in list.items {
                    println!("pod/{}", pod.metadata.name.unwrap_or_default());
                }
                println!("listed pods in {namespace}");
                Ok(ExitCode::SUCCESS)
            }
            Err(kube::Error::Api(status)) => {
                println!(
                    "Error from server ({}): {} (code {})",
                    status.reason, status.message, status.code
                );
                Ok(ExitCode::from(match status.code {
                    403 => 3,
                    401 => 4,
                    _ => 1,
                }))
            }
            Err(e) => {
                println!("error: {e}");
                Ok(ExitCode::from(1))
            }
        }
    })
}
