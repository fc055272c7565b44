//! `skiff image …`: thin printing over `skiff_image::ImageStore`, plus the build runner that
//! executes RUN steps in real containers through `skiff-runtime`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use skiff_image::{BuildOptions, BuildRunner, ImageStore, RunStep};
use skiff_runtime::{ContainerSpec, NetworkMode, Runtime};

use crate::container_cmd::{open_runtime, parse_user_numeric};
use crate::progress::TermProgress;
use crate::units::{ago, human_size};

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Build an image from a Containerfile: one layer per COPY, ADD and RUN.
    Build(BuildArgs),
    /// Pull an image from a registry (OCI distribution; loopback registries over plain HTTP).
    /// Logins come from docker's config.json ($DOCKER_CONFIG or ~/.docker).
    Pull {
        /// e.g. `nginx:1.27`, `ghcr.io/org/app:v2`, `127.0.0.1:5000/web:v1`.
        reference: String,
    },
    /// Import a docker-archive, an oci-archive or a plain rootfs tarball.
    Import {
        file: PathBuf,
        /// Name the image NAME:TAG (required for a rootfs tarball).
        #[arg(short = 't', long = "tag")]
        tag: Option<String>,
    },
    /// List images.
    #[command(alias = "list")]
    Ls {
        /// Only print image IDs.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show the layers of an image and the instructions that made them.
    History {
        reference: String,
        /// Do not truncate the instruction column.
        #[arg(long)]
        no_trunc: bool,
    },
    /// Print an image's details as JSON.
    Inspect {
        #[arg(required = true)]
        references: Vec<String>,
    },
    /// Remove images; layers no other image uses are deleted.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        references: Vec<String>,
        /// Remove even if stopped containers still refer to the image.
        #[arg(short, long)]
        force: bool,
    },
    /// Write images to an archive (OCI layout that `docker load` also reads).
    Save {
        #[arg(short, long)]
        output: PathBuf,
        #[arg(required = true)]
        references: Vec<String>,
    },
}

#[derive(Args)]
pub struct BuildArgs {
    /// NAME:TAG of the result.
    #[arg(short = 't', long = "tag")]
    tag: String,
    /// The Containerfile (default: DIR/Containerfile, then DIR/Dockerfile).
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Set a build-time variable (ARG).
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    build_args: Vec<String>,
    /// Do not use the build cache.
    #[arg(long)]
    no_cache: bool,
    /// Network for RUN steps: none (default) or host.
    #[arg(long, default_value = "none")]
    network: String,
    /// The build context directory.
    context: PathBuf,
}

/// The login for `reference`'s registry in docker's config.json, if any.
fn docker_login(reference: &str) -> Option<skiff_image::Credentials> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")))?;
    let json = std::fs::read(dir.join("config.json")).ok()?;
    skiff_image::credentials_from_docker_config(&json, &skiff_image::registry_of(reference)?)
}

pub fn open_store(data_dir: &Path) -> anyhow::Result<ImageStore> {
    let root = data_dir.join("images");
    ImageStore::open(&root).with_context(|| format!("cannot open image store {}", root.display()))
}

pub fn run(data_dir: &Path, cmd: ImageCommand) -> anyhow::Result<()> {
    let store = open_store(data_dir)?;
    match cmd {
        ImageCommand::Build(args) => build(data_dir, &store, args),
        ImageCommand::Pull { reference } => {
            let progress = TermProgress::new();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")?;
            let credentials = docker_login(&reference);
            let image =
                runtime.block_on(store.pull(&reference, credentials.as_ref(), &progress))?;
            println!(
                "Pulled image: {}:{} ({})",
                image.name,
                image.tag,
                short_id(&image.id)
            );
            Ok(())
        }
        ImageCommand::Import { file, tag } => {
            let progress = TermProgress::new();
            let images = store.import(&file, tag.as_deref(), &progress)?;
            for image in images {
                println!(
                    "Loaded image: {}:{} ({})",
                    image.name,
                    image.tag,
                    short_id(&image.id)
                );
            }
            Ok(())
        }
        ImageCommand::Ls { quiet } => {
            let images = store.list()?;
            if quiet {
                for image in images {
                    println!("{}", short_id(&image.id));
                }
                return Ok(());
            }
            println!(
                "{:<40} {:<16} {:<14} {:<16} {:>10}",
                "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"
            );
            for image in images {
                println!(
                    "{:<40} {:<16} {:<14} {:<16} {:>10}",
                    image.name,
                    image.tag,
                    short_id(&image.id),
                    ago(image.created.as_deref()),
                    human_size(image.size)
                );
            }
            Ok(())
        }
        ImageCommand::History {
            reference,
            no_trunc,
        } => {
            let entries = store.history(&reference)?;
            println!(
                "{:<16} {:<16} {:<50} {:>10}  COMMENT",
                "LAYER", "CREATED", "CREATED BY", "SIZE"
            );
            for entry in entries {
                let layer = entry
                    .layer
                    .as_deref()
                    .map(short_id)
                    .unwrap_or_else(|| "<missing>".to_string());
                let layer = if entry.empty_layer {
                    "<config>".to_string()
                } else {
                    layer
                };
                let created_by = if no_trunc {
                    entry.created_by.clone()
                } else {
                    truncate(&entry.created_by, 50)
                };
                println!(
                    "{:<16} {:<16} {:<50} {:>10}  {}",
                    layer,
                    ago(entry.created.as_deref()),
                    created_by,
                    human_size(entry.size),
                    entry.comment.unwrap_or_default()
                );
            }
            Ok(())
        }
        ImageCommand::Inspect { references } => {
            let mut out = Vec::new();
            for reference in &references {
                out.push(store.inspect(reference)?);
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        ImageCommand::Rm { references, force } => {
            let runtime = open_runtime(data_dir)?;
            for reference in &references {
                let resolved = store.resolve(reference)?;
                for container in runtime.list()? {
                    if container.image_id != resolved.id {
                        continue;
                    }
                    let running = container.status == skiff_runtime::Status::Running;
                    if running || !force {
                        bail!(
                            "cannot remove image {reference}: container {} ({}) uses it{}",
                            container.name,
                            short_id(&container.id),
                            if running {
                                " and is running"
                            } else {
                                "; remove it first or use -f"
                            }
                        );
                    }
                }
                let report = store.remove(reference)?;
                for tag in report.untagged {
                    println!("Untagged: {tag}");
                }
                for digest in report.deleted {
                    println!("Deleted: {digest}");
                }
            }
            Ok(())
        }
        ImageCommand::Save { output, references } => {
            let refs: Vec<&str> = references.iter().map(String::as_str).collect();
            store.save(&refs, &output)?;
            Ok(())
        }
    }
}

fn build(data_dir: &Path, store: &ImageStore, args: BuildArgs) -> anyhow::Result<()> {
    let mut build_args = Vec::new();
    for pair in &args.build_args {
        match pair.split_once('=') {
            Some((k, v)) => build_args.push((k.to_string(), v.to_string())),
            None => match std::env::var(pair) {
                Ok(v) => build_args.push((pair.clone(), v)),
                Err(_) => bail!("--build-arg {pair:?}: expected KEY=VALUE"),
            },
        }
    }
    let network = parse_network(&args.network)?;
    let runner = ContainerRunner {
        runtime: open_runtime(data_dir)?,
        network,
    };
    let opts = BuildOptions {
        tag: args.tag,
        context: args.context,
        file: args.file,
        build_args,
        no_cache: args.no_cache,
    };
    let progress = TermProgress::new();
    let started = std::time::Instant::now();
    let result = store.build(&opts, &runner, &progress)?;
    eprintln!(
        "Built {}:{} ({}) in {:.2}s: {} steps run, {} from cache",
        result.image.name,
        result.image.tag,
        short_id(&result.image.id),
        started.elapsed().as_secs_f64(),
        result.executed_steps,
        result.cached_steps
    );
    println!("{}", result.image.id);
    Ok(())
}

pub fn parse_network(text: &str) -> anyhow::Result<NetworkMode> {
    match text {
        "none" => Ok(NetworkMode::None),
        "host" => Ok(NetworkMode::Host),
        other => bail!("invalid network {other:?}: use none or host"),
    }
}

/// Runs a RUN step in a real container on the layers built so far, streaming its output.
struct ContainerRunner {
    runtime: Runtime,
    network: NetworkMode,
}

impl BuildRunner for ContainerRunner {
    fn run(&self, step: &RunStep<'_>) -> Result<i32, Box<dyn std::error::Error + Send + Sync>> {
        let (uid, gid) = if step.user.is_empty() {
            (0, 0)
        } else {
            parse_user_numeric(step.user, step.lowers)?
        };
        let spec = ContainerSpec {
            image: "(build)".to_string(),
            lowers: step.lowers.to_vec(),
            upper: Some(step.upper.to_path_buf()),
            args: step.args.to_vec(),
            env: step.env.to_vec(),
            cwd: step.workdir.to_string(),
            uid,
            gid,
            network: self.network.clone(),
            ..Default::default()
        };
        let info = self.runtime.create_and_start(spec)?;
        let streamed = crate::container_cmd::stream_logs(&self.runtime, &info.id, true);
        let exit = self.runtime.wait(&info.id);
        let removed = self.runtime.remove(&info.id, true);
        streamed?;
        let exit = exit?;
        removed?;
        Ok(exit.code)
    }
}

pub fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('…');
    out
}
