//! Docker-like container commands (`run`, `ps`, `logs`, `exec`, `stop`, `rm`) over
//! `skiff_runtime::Runtime`, and the hidden `shim` entry point.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use skiff_runtime::{ContainerSpec, ExecOptions, Runtime, RuntimeConfig, Status, Stream};

use crate::image_cmd::{open_store, parse_network, short_id};
use crate::units::{ago, parse_cpus, parse_size};

#[derive(Args)]
pub struct RunArgs {
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Run in the background and print the container ID.
    #[arg(short, long)]
    detach: bool,
    /// Name the container.
    #[arg(long)]
    name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to copy it from here).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// User to run as: UID[:GID] or a name from the image's /etc/passwd.
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// Memory limit, e.g. 64m.
    #[arg(short = 'm', long)]
    memory: Option<String>,
    /// CPU limit in CPUs, e.g. 0.5.
    #[arg(long)]
    cpus: Option<String>,
    /// Maximum number of processes.
    #[arg(long)]
    pids_limit: Option<i64>,
    /// none (default, loopback only) or host.
    #[arg(long, default_value = "none")]
    network: String,
    /// Container hostname (default: the short container ID).
    #[arg(long)]
    hostname: Option<String>,
    /// Override the image's ENTRYPOINT.
    #[arg(long)]
    entrypoint: Option<String>,
    /// Mount the root filesystem read-only.
    #[arg(long)]
    read_only: bool,
    /// Keep the container's stdin open (and, in the foreground, send ours to it).
    #[arg(short, long)]
    interactive: bool,
    /// Give the container a terminal.
    #[arg(short, long)]
    tty: bool,
    /// Image to run.
    image: String,
    /// Command and arguments (replace the image's CMD).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args)]
pub struct PsArgs {
    /// Show all containers, not only running ones.
    #[arg(short, long)]
    all: bool,
    /// Only print container IDs.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Keep following the log until the container exits.
    #[arg(short, long)]
    follow: bool,
    container: String,
}

#[derive(Args)]
pub struct ExecArgs {
    /// Keep stdin open and pass it to the command.
    #[arg(short, long)]
    interactive: bool,
    /// Extra environment (KEY=VALUE).
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir")]
    workdir: Option<String>,
    /// UID[:GID] to run as.
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    container: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Args)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(short = 't', long = "time", default_value_t = 10)]
    time: u64,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct RmArgs {
    /// Kill a running container first.
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Args)]
pub struct ShimArgs {
    /// Container ID.
    id: String,
    /// Everything else the runtime passes to its shim.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
}

pub fn open_runtime(data_dir: &Path) -> anyhow::Result<Runtime> {
    let shim_exe = std::env::current_exe().context("cannot find the skiff executable")?;
    Ok(Runtime::new(RuntimeConfig {
        data_dir: data_dir.to_path_buf(),
        shim_exe,
    })?)
}

pub fn run(data_dir: &Path, args: RunArgs) -> anyhow::Result<ExitCode> {
    // Validate every flag before touching any state.
    let memory = args.memory.as_deref().map(parse_size).transpose()?;
    if let Some(bytes) = memory {
        if bytes < 6 << 20 {
            bail!("invalid --memory: the minimum is 6m");
        }
    }
    let cpus = args.cpus.as_deref().map(parse_cpus).transpose()?;
    if let Some(pids) = args.pids_limit {
        if pids < 1 {
            bail!("invalid --pids-limit {pids}: must be at least 1");
        }
    }
    let network = parse_network(&args.network)?;

    let store = open_store(data_dir)?;
    let image = store.resolve(&args.image)?;
    let config = &image.config;

    let entrypoint: Vec<String> = match &args.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => config.entrypoint().clone().unwrap_or_default(),
    };
    let cmd: Vec<String> = if !args.command.is_empty() {
        args.command.clone()
    } else if args.entrypoint.is_some() {
        Vec::new()
    } else {
        config.cmd().clone().unwrap_or_default()
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        bail!(
            "no command specified: image {} has no CMD or ENTRYPOINT",
            args.image
        );
    }

    let env = merge_env(config.env().clone().unwrap_or_default(), &args.env)?;
    let cwd = args
        .workdir
        .clone()
        .or_else(|| config.working_dir().clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_string());
    if !cwd.starts_with('/') {
        bail!("invalid --workdir {cwd:?}: must be an absolute path");
    }
    let user = args
        .user
        .clone()
        .or_else(|| config.user().clone())
        .unwrap_or_default();
    let (uid, gid) = if user.is_empty() {
        (0, 0)
    } else {
        parse_user_numeric(&user, &image.layers)?
    };

    let runtime = open_runtime(data_dir)?;
    let spec = ContainerSpec {
        name: args.name.clone(),
        image: format!("{}:{}", image.name, image.tag),
        image_id: image.id.clone(),
        lowers: image.layers.clone(),
        args: argv,
        env,
        cwd,
        uid,
        gid,
        hostname: args.hostname.clone(),
        memory,
        cpus,
        pids_limit: args.pids_limit,
        network,
        readonly_rootfs: args.read_only,
        // In the foreground we remove after draining the log; detached, the shim does it.
        auto_remove: args.rm && args.detach,
        stdin: args.interactive,
        tty: args.tty,
        ..Default::default()
    };
    let info = runtime.create_and_start(spec)?;
    if args.detach {
        println!("{}", info.id);
        return Ok(ExitCode::SUCCESS);
    }
    if args.tty {
        // A terminal's output goes through the attach socket (a log only has whole lines);
        // Ctrl-C is a byte for the container's terminal, so no signal forwarding.
        let attached = crate::attach_cmd::session(&runtime, &info.id, args.interactive, true);
        let exit = runtime.wait(&info.id);
        if args.rm {
            runtime.remove(&info.id, true)?;
        }
        attached?;
        return Ok(ExitCode::from(exit?.code.clamp(0, 255) as u8));
    }
    if let Some(pid) = info.pid {
        forward_signals(pid)?;
    }
    if args.interactive {
        // Output comes from the log (nothing is missed); the socket carries only our stdin.
        let runtime = open_runtime(data_dir)?;
        let id = info.id.clone();
        std::thread::spawn(move || crate::attach_cmd::session(&runtime, &id, true, false));
    }
    let streamed = stream_logs(&runtime, &info.id, true);
    let exit = runtime.wait(&info.id);
    if args.rm {
        runtime.remove(&info.id, true)?;
    }
    streamed?;
    let exit = exit?;
    Ok(ExitCode::from(exit.code.clamp(0, 255) as u8))
}

/// Like `docker run`'s signal proxy: SIGINT/SIGTERM/SIGHUP sent to a foreground `skiff run` go
/// to the container's init process, so Ctrl-C stops the workload and we still report its exit.
fn forward_signals(container_pid: i32) -> anyhow::Result<()> {
    use nix::sys::signal::{kill, SigSet, Signal};
    let mut set = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(sig);
    }
    // Blocked here, so only the waiting thread ever receives them.
    set.thread_block().context("cannot block signals")?;
    std::thread::spawn(move || {
        while let Ok(sig) = set.wait() {
            let _ = kill(nix::unistd::Pid::from_raw(container_pid), sig);
        }
    });
    Ok(())
}

/// Image ENV first, then `-e` overrides by key; `-e KEY` copies KEY from this environment.
fn merge_env(mut env: Vec<String>, overrides: &[String]) -> anyhow::Result<Vec<String>> {
    for item in overrides {
        let entry = if item.contains('=') {
            item.clone()
        } else {
            match std::env::var(item) {
                Ok(v) => format!("{item}={v}"),
                Err(_) => continue,
            }
        };
        let key = entry.split('=').next().unwrap_or_default().to_string();
        if key.is_empty() {
            bail!("invalid --env {item:?}: expected KEY=VALUE");
        }
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(entry);
    }
    Ok(env)
}

/// Resolves `user[:group]` to numeric IDs, reading names from the topmost layer's
/// /etc/passwd and /etc/group (images built FROM scratch often have neither).
pub fn parse_user_numeric(user: &str, layers: &[PathBuf]) -> anyhow::Result<(u32, u32)> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let (uid, primary_gid) = match u.parse::<u32>() {
        Ok(uid) => {
            let gid = lookup(layers, "etc/passwd", |f| f.get(2) == Some(&u))
                .and_then(|f| f.get(3).and_then(|g| g.parse().ok()));
            (uid, gid.unwrap_or(uid))
        }
        Err(_) => {
            let fields =
                lookup(layers, "etc/passwd", |f| f.first() == Some(&u)).with_context(|| {
                    format!("unable to find user {u}: no matching entries in passwd file")
                })?;
            let uid = fields.get(2).and_then(|v| v.parse().ok());
            let gid = fields.get(3).and_then(|v| v.parse().ok());
            match (uid, gid) {
                (Some(uid), Some(gid)) => (uid, gid),
                _ => bail!("malformed passwd entry for user {u}"),
            }
        }
    };
    let gid = match g {
        None => primary_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup(layers, "etc/group", |f| f.first() == Some(&g))
                .and_then(|f| f.get(2).and_then(|v| v.parse().ok()))
                .with_context(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        },
    };
    Ok((uid, gid))
}

fn lookup(
    layers: &[PathBuf],
    file: &str,
    matches: impl Fn(&[&str]) -> bool,
) -> Option<Vec<String>> {
    let path = layers
        .iter()
        .rev()
        .map(|l| l.join(file))
        .find(|p| p.is_file())?;
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        matches(&fields).then(|| fields.iter().map(|s| s.to_string()).collect())
    })
}

/// Copies a container's log to our stdout/stderr, as the container wrote it.
pub fn stream_logs(runtime: &Runtime, id: &str, follow: bool) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    runtime.logs(id, follow, |line| {
        let result = match line.stream {
            Stream::Stdout => write_line(&mut stdout.lock(), line),
            Stream::Stderr => write_line(&mut stderr.lock(), line),
        };
        // A closed pipe (e.g. `| head`) is not an error of the container.
        match result {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    })?;
    Ok(())
}

fn write_line(out: &mut impl Write, line: &skiff_runtime::LogLine) -> std::io::Result<()> {
    out.write_all(&line.text)?;
    if line.full {
        out.write_all(b"\n")?;
    }
    out.flush()
}

pub fn ps(data_dir: &Path, args: PsArgs) -> anyhow::Result<()> {
    let runtime = open_runtime(data_dir)?;
    let mut containers = runtime.list()?;
    containers.sort_by(|a, b| b.created.cmp(&a.created));
    if !args.quiet {
        println!(
            "{:<14} {:<24} {:<30} {:<16} {:<28} NAMES",
            "CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS"
        );
    }
    for c in containers {
        if !args.all && c.status != Status::Running {
            continue;
        }
        if args.quiet {
            println!("{}", short_id(&c.id));
            continue;
        }
        let command = format!("\"{}\"", c.args.join(" "));
        let command = if command.chars().count() > 30 {
            format!("{}…\"", command.chars().take(27).collect::<String>())
        } else {
            command
        };
        let status = match (&c.status, &c.exit) {
            (Status::Running, _) => format!(
                "Up {}",
                ago(c.started_at.as_deref()).trim_end_matches(" ago")
            ),
            (Status::Exited, Some(exit)) => format!(
                "Exited ({}){} {}",
                exit.code,
                if exit.oom_killed { " OOMKilled" } else { "" },
                ago(Some(&exit.finished_at))
            ),
            (Status::Created, _) => "Created".to_string(),
            _ => "Unknown".to_string(),
        };
        println!(
            "{:<14} {:<24} {:<30} {:<16} {:<28} {}",
            short_id(&c.id),
            c.image,
            command,
            ago(Some(&c.created)),
            status,
            c.name
        );
    }
    Ok(())
}

pub fn logs(data_dir: &Path, args: LogsArgs) -> anyhow::Result<()> {
    let runtime = open_runtime(data_dir)?;
    let info = runtime.get(&args.container)?;
    stream_logs(&runtime, &info.id, args.follow)
}

pub fn exec(data_dir: &Path, args: ExecArgs) -> anyhow::Result<ExitCode> {
    let runtime = open_runtime(data_dir)?;
    let info = runtime.get(&args.container)?;
    let (uid, gid) = match &args.user {
        Some(user) => {
            let (uid, gid) = parse_user_numeric(user, &[])?;
            (Some(uid), Some(gid))
        }
        None => (None, None),
    };
    let code = runtime.exec(
        &info.id,
        &ExecOptions {
            args: args.command,
            env: args.env,
            cwd: args.workdir,
            stdin: args.interactive,
            uid,
            gid,
        },
    )?;
    Ok(ExitCode::from(code.clamp(0, 255) as u8))
}

pub fn stop(data_dir: &Path, args: StopArgs) -> anyhow::Result<()> {
    let runtime = open_runtime(data_dir)?;
    for name in &args.containers {
        let info = runtime.get(name)?;
        runtime.stop(&info.id, Duration::from_secs(args.time))?;
        println!("{name}");
    }
    Ok(())
}

pub fn rm(data_dir: &Path, args: RmArgs) -> anyhow::Result<()> {
    let runtime = open_runtime(data_dir)?;
    for name in &args.containers {
        let info = runtime.get(name)?;
        runtime.remove(&info.id, args.force)?;
        println!("{name}");
    }
    Ok(())
}

pub fn shim(data_dir: &Path, args: ShimArgs) -> anyhow::Result<ExitCode> {
    let _ = &args.rest;
    skiff_runtime::shim::main(data_dir, &args.id)
}
