//! skiff-runtime owns containers on one host: an overlayfs rootfs (image layers read-only as
//! lowerdirs + one writable upper dir), namespaces, cgroups (v1 and v2), capabilities, seccomp,
//! masked /proc paths and a minimal /dev, all through youki's `libcontainer`. Each container is
//! created and supervised by its own single-threaded `skiff shim` process (libcontainer deadlocks
//! when driven concurrently from a multi-threaded process), which owns the container's stdio,
//! writes CRI-format logs, records the exit status and OOM kills, and outlives its parent.
//!
//! CONTRACT (the `skiff` binary is written against these signatures; keep them):
//!
//! ```ignore
//! let rt = Runtime::new(RuntimeConfig { data_dir, shim_exe })?;
//! rt.create_and_start(spec)?           -> ContainerInfo   (returns once the process runs)
//! rt.list()?                           -> Vec<ContainerInfo>
//! rt.get("name-or-id-prefix")?         -> ContainerInfo
//! rt.wait(&id)?                        -> ExitInfo        (blocks until exited)
//! rt.logs(&id, follow, |line| ...)?    -> ()              (CRI lines, parsed)
//! rt.exec(&id, &ExecOptions{..})?      -> i32             (exit code; stdio inherited)
//! rt.stop(&id, grace)?                 -> ()
//! rt.remove(&id, force)?               -> ()
//! skiff_runtime::shim::main(&data_dir, &id) -> !      (entry of `skiff shim`)
//! ```
//!
//! How it fits together:
//! - State is plain files under `<data_dir>/containers/<id>/` (see the `store` module); any
//!   process with a `Runtime` on the same data dir sees the same containers, and the caller
//!   never holds container state in memory, so the node agent can restart freely.
//! - `create_and_start` spawns `shim_exe shim --data-dir D ID` in a new session, passing a
//!   socket (fd number in [`shim::SYNC_FD_ENV`]) on which the shim answers "started PID" or
//!   "error MSG". The shim forks once so it is never the caller's child.
//! - Cgroups live at `/skiff-<hash of data dir>/<id>` (or `…/pod<uid>/<id>` for a pod's
//!   containers, whose `pids.max` is pod-wide) in every hierarchy, so two data dirs never
//!   collide; the shim (or `remove`) deletes them, and the parent when it is empty. Removal
//!   never trusts state files to find processes: it kills through the cgroup tree.
//! - The shim forks a guardian before creating the container: if the shim dies (even by
//!   SIGKILL) the guardian kills the container's cgroup and records exit 137.
//! - Logs rotate (`container.log`, `.1` … `.N-1`); [`logfile`] reads them with bounded memory.
//! - Only `exec` (and `remove` of a container whose shim died) calls libcontainer in the
//!   caller's process; both fork, so call them from a single-threaded process.

pub mod attach;
pub mod cgroups;
mod cleanup;
pub mod cri;
mod exec;
pub mod logfile;
pub mod shim;
pub mod spec;
mod store;
mod watch;

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, signal, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitStatus};

pub use cgroups::PodCgroup;
pub use cleanup::leftover_cgroups;
pub use cri::{format_cri_line, parse_cri_line};

use store::{
    io_err, lock_file, read_json, same_process_alive, write_json_atomic, write_state_json, CDir,
    Layout, StoredSpec, StoredState,
};

/// Errors of the runtime. Every message names the container and what failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("no such container: {0}")]
    NotFound(String),
    #[error("container name {0:?} is already in use by container {1}")]
    NameInUse(String, String),
    #[error("container {0} is running: stop it first or use force")]
    Running(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("invalid container spec: {0}")]
    InvalidSpec(String),
    #[error("container {id} failed to start: {message}")]
    StartFailed { id: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl RuntimeError {
    /// The command to run or exec does not exist in the container (shells and docker exit 127).
    pub fn is_command_not_found(&self) -> bool {
        match self {
            RuntimeError::StartFailed { message, .. } | RuntimeError::Other(message) => {
                message.contains("executable file not found")
            }
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

pub struct RuntimeConfig {
    /// `--data-dir`; containers live in `<data_dir>/containers/<id>/`.
    pub data_dir: PathBuf,
    /// The `skiff` executable to start as `skiff shim --data-dir D <id>`.
    pub shim_exe: PathBuf,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub enum NetworkMode {
    /// A new, empty network namespace (loopback only).
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// Join an existing network namespace (a pod sandbox), e.g. /var/run/netns/x.
    Path(PathBuf),
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub readonly: bool,
}

/// Everything needed to create one container.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ContainerSpec {
    /// Unique name; generated when None.
    pub name: Option<String>,
    /// Image reference as the user gave it (shown by `ps`).
    pub image: String,
    /// Image ID (config digest), so `image rm` can refuse images in use.
    pub image_id: String,
    /// Layer snapshot dirs, bottom first (overlay lowerdirs).
    pub lowers: Vec<PathBuf>,
    /// Use this dir as the writable layer instead of the container's own (image build RUN).
    pub upper: Option<PathBuf>,
    /// Full argv (entrypoint + cmd already combined).
    pub args: Vec<String>,
    /// KEY=VALUE.
    pub env: Vec<String>,
    /// Working directory inside the container ("/" if empty); created if missing.
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub hostname: Option<String>,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// CPU limit in CPUs (0.5 = half a CPU): cfs quota/period.
    pub cpus: Option<f64>,
    /// Relative CPU weight (cgroup v1 shares).
    pub cpu_shares: Option<u64>,
    pub pids_limit: Option<i64>,
    pub network: NetworkMode,
    pub mounts: Vec<BindMount>,
    pub readonly_rootfs: bool,
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// Remove the container (dir, rootfs) as soon as it exits.
    pub auto_remove: bool,
    /// Create the container's cgroup below this pod cgroup (pod-wide PID limit).
    #[serde(default)]
    pub pod_cgroup: Option<PodCgroup>,
    /// Rotate container.log once it would grow past this many bytes (default
    /// [`DEFAULT_LOG_MAX_SIZE`]), like the kubelet's `--container-log-max-size`.
    #[serde(default)]
    pub log_max_size: Option<u64>,
    /// Keep at most this many log files, the live one included (default
    /// [`DEFAULT_LOG_MAX_FILES`], at least 2), like `--container-log-max-files`.
    #[serde(default)]
    pub log_max_files: Option<u32>,
    /// Keep the container's stdin open for attached clients (a pipe, or the terminal).
    #[serde(default)]
    pub stdin: bool,
    /// Close stdin once the first attach session's stdin ends (pod `stdinOnce`).
    #[serde(default)]
    pub stdin_once: bool,
    /// Give the container a terminal as stdin/stdout/stderr (its output is logged as stdout).
    #[serde(default)]
    pub tty: bool,
}

/// The kubelet's defaults for `--container-log-max-size` (10Mi) and `--container-log-max-files`.
pub const DEFAULT_LOG_MAX_SIZE: u64 = 10 << 20;
pub const DEFAULT_LOG_MAX_FILES: u32 = 5;

/// Existing namespaces a container joins (pod sandboxes share IPC and UTS between containers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinNamespaces {
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    /// No new PID namespace: the container sees the host's processes (pod `hostPID`).
    pub host_pid: bool,
    /// The host's IPC namespace instead of a new or joined one (pod `hostIPC`); wins over `ipc`.
    pub host_ipc: bool,
    /// Join this PID namespace (an ephemeral container's target, `/proc/<pid>/ns/pid`);
    /// ignored with `host_pid`.
    pub pid: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Exited,
    /// The shim died without recording an exit.
    Unknown,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ExitInfo {
    /// Exit code; 128+N when killed by signal N (137 for SIGKILL and OOM kills).
    pub code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    /// RFC 3339.
    pub finished_at: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ContainerInfo {
    /// 64 hex characters.
    pub id: String,
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub args: Vec<String>,
    pub status: Status,
    /// RFC 3339.
    pub created: String,
    pub started_at: Option<String>,
    /// Host PID of the container's init process while it runs.
    pub pid: Option<i32>,
    pub shim_pid: Option<i32>,
    pub exit: Option<ExitInfo>,
    /// Path of the CRI-format log file.
    pub log_path: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One parsed CRI log line: `<RFC3339Nano> stdout|stderr F|P <text>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub time: String,
    pub stream: Stream,
    /// true for F (full line, a newline followed), false for P (partial).
    pub full: bool,
    pub text: Vec<u8>,
}

pub struct ExecOptions {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    /// Pass this process's stdin to the command (else /dev/null).
    pub stdin: bool,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// How long `create_and_start` waits for the shim to report.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for exit.json after SIGKILL.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(25);
/// Fallback re-check while waiting on inotify: catches a shim that died without writing.
const SLOW_POLL: Duration = Duration::from_millis(250);

pub struct Runtime {
    config: RuntimeConfig,
    layout: Layout,
    /// Shared locks on wait.lock of auto-remove containers this process started, taken
    /// before the shim runs so a quick exit cannot remove exit.json before `wait` reads it.
    held: Mutex<HashMap<String, Flock<File>>>,
    /// Our end of the sync socket of shims this process started: the shim wakes it after
    /// log writes and closes its end once exit.json is written (see [`watch::DirWatch`]).
    notify: Mutex<HashMap<String, OwnedFd>>,
}

/// Exit record from a wait status: 128+N for signal N; OOM-killed and killed by a signal is
/// reported as 137 (the kernel's OOM killer sends SIGKILL).
pub fn exit_info(
    code: Option<i32>,
    signal: Option<i32>,
    oom_killed: bool,
    finished_at: String,
) -> ExitInfo {
    let code = match (code, signal) {
        (_, Some(_)) if oom_killed => 137,
        (_, Some(s)) => 128 + s,
        (Some(c), None) => c,
        // The shim could not reap the process: unknown outcome.
        (None, None) => 255,
    };
    ExitInfo {
        code,
        signal,
        oom_killed,
        finished_at,
    }
}

/// A libcontainer error with its whole source chain (the top level alone is often vague).
pub(crate) fn lc_error(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        src = s.source();
    }
    msg
}

/// Rewrites libcontainer's "executable not found" into docker's wording.
pub(crate) fn friendly_start_error(msg: &str) -> String {
    // libcontainer: "executable 'foo' not found in $PATH"
    if let Some(start) = msg.find("executable '") {
        let rest = &msg[start + "executable '".len()..];
        if let Some(end) = rest.find("' not found") {
            let exe = &rest[..end];
            return format!("exec: \"{exe}\": executable file not found in $PATH");
        }
    }
    msg.to_string()
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(io_err(format!("setting the mode of {}", path.display())))
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nimble", "proud", "quiet", "rapid", "sharp", "tidy", "vivid", "witty", "young", "zesty",
];
const NOUNS: &[&str] = &[
    "otter", "heron", "badger", "falcon", "lynx", "marten", "osprey", "puffin", "raven", "seal",
    "tern", "walrus", "wren", "yak", "zebra", "ibis", "koala", "lemur", "newt", "orca",
];

fn generate_name() -> String {
    use rand::seq::SliceRandom;
    let mut rng = rand::thread_rng();
    format!(
        "skiff_{}_{}_{}",
        ADJECTIVES.choose(&mut rng).unwrap_or(&"odd"),
        NOUNS.choose(&mut rng).unwrap_or(&"boat"),
        random_hex(2)
    )
}

/// Docker's rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Self> {
        let dir = &config.data_dir;
        for d in [dir.join("containers"), dir.join("runtime")] {
            fs::create_dir_all(&d).map_err(io_err(format!("creating {}", d.display())))?;
        }
        let data_dir =
            fs::canonicalize(dir).map_err(io_err(format!("resolving {}", dir.display())))?;
        set_mode(&data_dir.join("containers"), 0o700)?;
        Ok(Self {
            config,
            layout: Layout { data_dir },
            held: Mutex::new(HashMap::new()),
            notify: Mutex::new(HashMap::new()),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    fn cdir(&self, id: &str) -> CDir {
        CDir(self.layout.container(id))
    }

    /// Creates the container and starts its shim; returns once the process runs, or
    /// `StartFailed` (with everything cleaned up) when it could not be started.
    ///
    /// For `auto_remove` containers this `Runtime` keeps the exit record alive until
    /// [`Runtime::wait`] (or `remove`, or dropping the `Runtime`), so a container that exits
    /// at once cannot vanish before the caller learns its exit code.
    pub fn create_and_start(&self, spec: ContainerSpec) -> Result<ContainerInfo> {
        self.create_and_start_joined(spec, &JoinNamespaces::default())
    }

    /// Like [`Runtime::create_and_start`], but the container joins existing IPC/UTS
    /// namespaces (a pod sandbox's) instead of getting new ones.
    pub fn create_and_start_joined(
        &self,
        spec: ContainerSpec,
        join: &JoinNamespaces,
    ) -> Result<ContainerInfo> {
        if let Some(n) = &spec.name {
            if !valid_name(n) {
                return Err(RuntimeError::InvalidSpec(format!(
                    "invalid container name {n:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                )));
            }
        }
        for l in &spec.lowers {
            if !l.is_dir() {
                return Err(RuntimeError::InvalidSpec(format!(
                    "layer dir {} does not exist",
                    l.display()
                )));
            }
        }
        let id = random_hex(32);
        let cdir = self.cdir(&id);
        // Validates the spec before anything touches the disk.
        if let Some(pc) = &spec.pod_cgroup {
            if !cgroups::valid_pod_cgroup_name(&pc.name) {
                return Err(RuntimeError::InvalidSpec(format!(
                    "invalid pod cgroup name {:?}",
                    pc.name
                )));
            }
        }
        let mut oci = spec::build_oci_spec(
            &spec,
            &id,
            &cdir.rootfs(),
            &spec::container_cgroups_path(&self.layout.data_dir, &spec, &id),
        )?;
        spec::join_namespaces(&mut oci, join)?;

        {
            let _lock = lock_file(&self.layout.names_lock(), FlockArg::LockExclusive)?;
            let existing = self.load_all_specs();
            let name = match &spec.name {
                Some(n) => {
                    if let Some(other) = existing.iter().find(|s| &s.name == n) {
                        return Err(RuntimeError::NameInUse(n.clone(), other.id.clone()));
                    }
                    n.clone()
                }
                None => loop {
                    let n = generate_name();
                    if !existing.iter().any(|s| s.name == n) {
                        break n;
                    }
                },
            };
            fs::create_dir_all(&cdir.0)
                .map_err(io_err(format!("creating {}", cdir.0.display())))?;
            // Logs and state are for root only (logs may hold secrets).
            set_mode(&cdir.0, 0o700)?;
            let stored = StoredSpec {
                id: id.clone(),
                name: name.clone(),
                created: cri::now_rfc3339_nano(),
                spec: spec.clone(),
            };
            if let Err(e) = write_json_atomic(&cdir.spec(), &stored) {
                cleanup::remove_dir(&cdir.0);
                return Err(e);
            }
        }

        match self.spawn_shim(&id, &cdir, &oci, spec.auto_remove) {
            Ok(_pid) => self.info(&id),
            Err(e) => {
                self.held_lock(&id);
                let _ = self.remove(&id, true);
                Err(e)
            }
        }
    }

    fn spawn_shim(
        &self,
        id: &str,
        cdir: &CDir,
        oci: &oci_spec::runtime::Spec,
        auto_remove: bool,
    ) -> Result<i32> {
        let bundle = cdir.bundle();
        fs::create_dir_all(&bundle).map_err(io_err(format!("creating {}", bundle.display())))?;
        oci.save(bundle.join("config.json"))
            .map_err(|e| RuntimeError::Other(format!("writing OCI config of {id}: {e}")))?;
        write_state_json(&cdir.state(), &StoredState::default())?;
        shim::open_log(&cdir.log()).map_err(io_err("creating container.log"))?;
        if auto_remove {
            let lock = lock_file(&cdir.wait_lock(), FlockArg::LockShared)?;
            self.held
                .lock()
                .map_err(|_| RuntimeError::Other("lock poisoned".into()))?
                .insert(id.to_string(), lock);
        }

        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (ours, theirs): (OwnedFd, OwnedFd) = socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| RuntimeError::Other(format!("socketpair: {e}")))?;
        let child_fd = theirs.as_raw_fd();
        let mut cmd = Command::new(&self.config.shim_exe);
        cmd.arg("shim")
            .arg("--data-dir")
            .arg(&self.layout.data_dir)
            .arg(id)
            .env(shim::SYNC_FD_ENV, child_fd.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (setsid, fcntl) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                nix::fcntl::fcntl(
                    child_fd,
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
                )
                .map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| RuntimeError::StartFailed {
            id: id.to_string(),
            message: format!("spawning shim {}: {e}", self.config.shim_exe.display()),
        })?;
        drop(theirs);
        // The shim forks at once and its first process exits: reap it (no zombie).
        let _ = child.wait();

        let reply = read_reply(&ours, START_TIMEOUT);
        match reply {
            Ok(line) => {
                if let Some(pid) = line.strip_prefix("started ") {
                    let pid = pid.trim().parse().map_err(|_| RuntimeError::StartFailed {
                        id: id.to_string(),
                        message: format!("bad reply from shim: {line:?}"),
                    })?;
                    if let Ok(mut n) = self.notify.lock() {
                        n.insert(id.to_string(), ours);
                    }
                    return Ok(pid);
                }
                let message = line
                    .strip_prefix("error ")
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("bad reply from shim: {line:?}"));
                let message = message
                    .strip_prefix(&format!("container {id} failed to start: "))
                    .map(str::to_string)
                    .unwrap_or(message);
                Err(RuntimeError::StartFailed {
                    id: id.to_string(),
                    message,
                })
            }
            Err(message) => {
                let log = fs::read_to_string(cdir.shim_log()).unwrap_or_default();
                Err(RuntimeError::StartFailed {
                    id: id.to_string(),
                    message: format!("{message} {}", log.trim()),
                })
            }
        }
    }

    fn held_lock(&self, id: &str) {
        if let Ok(mut h) = self.held.lock() {
            h.remove(id);
        }
    }

    fn forget_shim(&self, id: &str) {
        if let Ok(mut n) = self.notify.lock() {
            n.remove(id);
        }
    }

    /// Wake-ups for changes of container `id`: from its shim when we started it, else inotify.
    fn watch(&self, id: &str) -> watch::DirWatch {
        let sock = self
            .notify
            .lock()
            .ok()
            .and_then(|n| n.get(id).and_then(|fd| fd.try_clone().ok()));
        match sock {
            Some(sock) => watch::DirWatch::shim(sock),
            None => watch::DirWatch::new(&self.cdir(id).0),
        }
    }

    fn load_all_specs(&self) -> Vec<StoredSpec> {
        let Ok(rd) = fs::read_dir(self.layout.containers()) else {
            return Vec::new();
        };
        let mut out: Vec<StoredSpec> = rd
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| {
                read_json::<StoredSpec>(&e.path().join("spec.json"))
                    .ok()
                    .flatten()
            })
            .collect();
        out.sort_by(|a, b| a.created.cmp(&b.created));
        out
    }

    fn info(&self, id: &str) -> Result<ContainerInfo> {
        let cdir = self.cdir(id);
        let stored: StoredSpec =
            read_json(&cdir.spec())?.ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        Ok(self.info_of(stored))
    }

    fn info_of(&self, stored: StoredSpec) -> ContainerInfo {
        let cdir = self.cdir(&stored.id);
        let state: StoredState = read_json(&cdir.state()).ok().flatten().unwrap_or_default();
        let exit: Option<ExitInfo> = read_json(&cdir.exit()).ok().flatten();
        let shim_alive = same_process_alive(state.shim_pid, state.shim_start);
        // The shim died and its guardian is killing the container and recording the exit.
        let guard_busy =
            !shim_alive && exit.is_none() && same_process_alive(state.guard_pid, state.guard_start);
        let status = if exit.is_some() {
            Status::Exited
        } else if shim_alive || guard_busy {
            if state.pid.is_some() {
                Status::Running
            } else {
                Status::Created
            }
        } else if state.shim_pid.is_none() {
            Status::Created
        } else {
            Status::Unknown
        };
        let pid = if status == Status::Running && same_process_alive(state.pid, state.pid_start) {
            state.pid
        } else {
            None
        };
        ContainerInfo {
            id: stored.id,
            name: stored.name,
            image: stored.spec.image,
            image_id: stored.spec.image_id,
            args: stored.spec.args,
            status,
            created: stored.created,
            started_at: state.started_at,
            pid,
            shim_pid: if shim_alive { state.shim_pid } else { None },
            exit,
            log_path: cdir.log(),
        }
    }

    /// Attaches to the stdio of running container `id` (full id) through its shim; see
    /// [`attach`] for the frame protocol spoken on the returned stream.
    pub fn attach(
        &self,
        id: &str,
        opts: &attach::AttachOptions,
    ) -> Result<std::os::unix::net::UnixStream> {
        let info = self.info(id)?;
        if info.status != Status::Running {
            return Err(RuntimeError::Other(format!(
                "container {id} is not running: cannot attach"
            )));
        }
        attach::connect(&self.layout.data_dir, &info.id, opts)
            .map_err(io_err(format!("attaching to container {id}")))
    }

    /// All containers, oldest first.
    pub fn list(&self) -> Result<Vec<ContainerInfo>> {
        Ok(self
            .load_all_specs()
            .into_iter()
            .map(|s| self.info_of(s))
            .collect())
    }

    /// By full id, name, or unique id prefix.
    pub fn get(&self, q: &str) -> Result<ContainerInfo> {
        if q.is_empty() {
            return Err(RuntimeError::NotFound(q.to_string()));
        }
        // A full id (what `run`, `wait` and `rm` pass around) is read directly instead of
        // loading every container's spec.json.
        if q.len() == 64 && q.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Ok(Some(s)) = read_json::<StoredSpec>(&self.cdir(q).spec()) {
                return Ok(self.info_of(s));
            }
        }
        let all = self.load_all_specs();
        if let Some(s) = all.iter().find(|s| s.id == q || s.name == q) {
            return Ok(self.info_of(s.clone()));
        }
        let matches: Vec<&StoredSpec> = all.iter().filter(|s| s.id.starts_with(q)).collect();
        match matches.as_slice() {
            [one] => Ok(self.info_of((*one).clone())),
            [] => Err(RuntimeError::NotFound(q.to_string())),
            _ => Err(RuntimeError::Other(format!(
                "{q:?} matches {} containers: use more of the id",
                matches.len()
            ))),
        }
    }

    /// Blocks until the container has exited (and the shim has cleaned up).
    pub fn wait(&self, id: &str) -> Result<ExitInfo> {
        let info = self.get(id)?;
        let held = self.held.lock().ok().and_then(|mut h| h.remove(&info.id));
        let cdir = self.cdir(&info.id);
        // Hold wait.lock shared so an auto-remove shim keeps exit.json until we read it.
        let _lock = match held {
            Some(l) => Some(l),
            None => lock_file(&cdir.wait_lock(), FlockArg::LockShared).ok(),
        };
        let watch = self.watch(&info.id);
        loop {
            if let Some(exit) = read_json::<ExitInfo>(&cdir.exit())? {
                self.forget_shim(&info.id);
                return Ok(exit);
            }
            if !cdir.0.exists() {
                return Err(RuntimeError::NotFound(info.id));
            }
            let now = self.info(&info.id)?;
            if now.status == Status::Unknown {
                return Err(RuntimeError::Other(format!(
                    "shim of container {} died without recording an exit status",
                    info.id
                )));
            }
            watch.wait(SLOW_POLL);
        }
    }

    /// Calls `f` for every log line (rotated files first); with `follow`, keeps reading,
    /// across rotations, until the container has exited and the log is drained.
    pub fn logs(
        &self,
        id: &str,
        follow: bool,
        mut f: impl FnMut(&LogLine) -> std::io::Result<()>,
    ) -> Result<()> {
        let info = self.get(id)?;
        let io = |e: std::io::Error| RuntimeError::Io {
            context: format!("logs of {}", info.id),
            source: e,
        };
        let reader =
            logfile::LogReader::open(&info.log_path, logfile::Start::Beginning).map_err(io)?;
        let mut records = logfile::RecordReader::new(reader);
        let watch = follow.then(|| self.watch(&info.id));
        loop {
            if let Some(rec) = records.next_record().map_err(io)? {
                if let Some(line) = parse_cri_line(&rec) {
                    f(&line).map_err(io)?;
                }
                continue;
            }
            if !follow {
                return Ok(());
            }
            // Nothing new: done once the container exited and the log is drained.
            let exited = match self.info(&info.id) {
                Ok(i) => matches!(i.status, Status::Exited | Status::Unknown),
                Err(_) => true,
            };
            if exited {
                while let Some(rec) = records.next_record().map_err(io)? {
                    if let Some(line) = parse_cri_line(&rec) {
                        f(&line).map_err(io)?;
                    }
                }
                if let Some(line) = parse_cri_line(&records.rest()) {
                    f(&line).map_err(io)?;
                }
                return Ok(());
            }
            if let Some(watch) = &watch {
                watch.wait(SLOW_POLL);
            }
        }
    }

    /// Runs a command inside the running container (its namespaces, cgroup, capabilities
    /// and seccomp profile); stdout/stderr are the caller's. The caller must be
    /// single-threaded (libcontainer forks). Returns the exit code (128+N for signal N).
    pub fn exec(&self, id: &str, opts: &ExecOptions) -> Result<i32> {
        let info = self.get(id)?;
        if info.status != Status::Running || info.pid.is_none() {
            return Err(RuntimeError::NotRunning(info.id));
        }
        if opts.args.is_empty() {
            return Err(RuntimeError::InvalidSpec("exec: no command given".into()));
        }
        let cdir = self.cdir(&info.id);
        let bundle = cdir.bundle().join("config.json");
        let oci = oci_spec::runtime::Spec::load(&bundle).map_err(|e| {
            RuntimeError::Other(format!(
                "exec in {}: reading {}: {e}",
                info.id,
                bundle.display()
            ))
        })?;
        // Like `runc exec --process`: the exec'd process is the container's own process spec
        // (capabilities, no_new_privs, rlimits, user and groups, AppArmor/SELinux labels) with
        // only argv, env, cwd (and an explicit user) replaced.
        let process = exec::exec_process(&oci, opts)
            .map_err(|m| RuntimeError::Other(format!("exec in {}: {m}", info.id)))?;
        let seccomp = oci.linux().as_ref().and_then(|l| l.seccomp().clone());
        let process_file = cdir.0.join(format!(".exec-{}.json", random_hex(8)));
        write_json_atomic(&process_file, &process)?;
        let _remove = exec::RemoveOnDrop(process_file.clone());
        let mut b = ContainerBuilder::new(info.id.clone(), SyscallType::default())
            .with_root_path(self.layout.runtime_root())
            .map_err(|e| RuntimeError::Other(lc_error(&e)))?
            // libcontainer's tenant builder drops the container's seccomp profile: the
            // executor installs it as the very last step before execve.
            .with_executor(exec::SeccompExecutor { seccomp });
        if !opts.stdin {
            let null = File::open("/dev/null").map_err(io_err("opening /dev/null"))?;
            b = b.with_stdin(null);
        }
        let b = b
            .as_tenant()
            .with_process(Some(process_file.clone()))
            .with_detach(false);
        // Ignored signals survive exec: give the command a default SIGPIPE (Rust ignores it).
        // SAFETY: restoring/setting dispositions without handler code.
        let old = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
        let built = b.build();
        if let Ok(old) = old {
            // SAFETY: as above, puts back what was there.
            unsafe {
                let _ = signal(Signal::SIGPIPE, old);
            }
        }
        let pid = built.map_err(|e| {
            RuntimeError::Other(format!(
                "exec in {}: {}",
                info.id,
                friendly_start_error(&lc_error(&e))
            ))
        })?;
        loop {
            match waitpid(pid, None) {
                Ok(WaitStatus::Exited(_, c)) => return Ok(c),
                Ok(WaitStatus::Signaled(_, s, _)) => return Ok(128 + s as i32),
                Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    return Err(RuntimeError::Other(format!(
                        "waiting for exec in {}: {e}",
                        info.id
                    )))
                }
            }
        }
    }

    /// Sends `sig` to the container's init if it is still the process we started.
    fn signal_init(&self, id: &str, sig: Signal) -> bool {
        let state: StoredState = read_json(&self.cdir(id).state())
            .ok()
            .flatten()
            .unwrap_or_default();
        match state.pid {
            Some(pid) if same_process_alive(state.pid, state.pid_start) => {
                kill(nix::unistd::Pid::from_raw(pid), sig).is_ok()
            }
            _ => false,
        }
    }

    fn init_alive(&self, id: &str) -> bool {
        let state: StoredState = read_json(&self.cdir(id).state())
            .ok()
            .flatten()
            .unwrap_or_default();
        same_process_alive(state.pid, state.pid_start)
    }

    /// Waits until exit.json exists (true) or the timeout passes / the shim is gone (false).
    fn wait_exited(&self, id: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let watch = self.watch(id);
        loop {
            match self.info(id) {
                Ok(i) if i.status == Status::Exited => return true,
                Ok(i) if i.status == Status::Unknown => return false,
                Err(_) => return true, // auto-removed
                _ => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            watch.wait(SLOW_POLL.min(deadline - now));
        }
    }

    /// SIGTERM, up to `grace` for the process to exit, then SIGKILL. Ok if not running.
    pub fn stop(&self, id: &str, grace: Duration) -> Result<()> {
        let info = self.get(id)?;
        if matches!(info.status, Status::Exited) {
            return Ok(());
        }
        let id = info.id;
        if !self.signal_init(&id, Signal::SIGTERM) && info.status != Status::Running {
            return Ok(());
        }
        if self.wait_exited(&id, grace) {
            return Ok(());
        }
        self.signal_init(&id, Signal::SIGKILL);
        if self.wait_exited(&id, KILL_TIMEOUT) {
            return Ok(());
        }
        match self.info(&id) {
            Ok(i) if i.status == Status::Running => Err(RuntimeError::Other(format!(
                "container {id} did not exit after SIGKILL"
            ))),
            _ => Ok(()),
        }
    }

    /// Kills every process in pod cgroup `name` (whatever the containers' state files say),
    /// removes the containers whose cgroups were below it (also those whose spec.json is
    /// unreadable) and the pod cgroup itself. Ok if it does not exist.
    pub fn remove_pod_cgroup(&self, name: &str) -> Result<()> {
        if !cgroups::valid_pod_cgroup_name(name) {
            return Err(RuntimeError::InvalidSpec(format!(
                "invalid pod cgroup name {name:?}"
            )));
        }
        let rel = format!("{}/{name}", spec::cgroup_parent(&self.layout.data_dir));
        let ids = cgroups::children(&rel);
        if !cgroups::kill_tree(&rel, KILL_TIMEOUT) {
            return Err(RuntimeError::Other(format!(
                "processes of pod cgroup {name} survived SIGKILL"
            )));
        }
        for id in ids.iter().filter(|id| valid_name(id)) {
            if self.cdir(id).0.exists() {
                self.purge_container(id);
            }
        }
        let _lock = lock_file(&self.layout.cgroup_lock(), FlockArg::LockShared)?;
        if !cgroups::remove_tree(&rel) {
            return Err(RuntimeError::Other(format!(
                "could not remove pod cgroup {rel}"
            )));
        }
        drop(_lock);
        cleanup::remove_cgroup_parent(&self.layout);
        Ok(())
    }

    /// Names of the pod cgroups of this data dir.
    pub fn pod_cgroups(&self) -> Vec<String> {
        cgroups::children(&spec::cgroup_parent(&self.layout.data_dir))
            .into_iter()
            .filter(|n| n.starts_with("pod"))
            .collect()
    }

    /// Removes container `id` by force, also when its spec.json or state.json is corrupt.
    fn purge_container(&self, id: &str) {
        let cdir = self.cdir(id);
        // A shim still cleaning up after its (killed) container would write into the dir
        // while it is removed: let it finish, or kill it (its pid is verified by start time).
        if let Ok(Some(state)) = read_json::<StoredState>(&cdir.state()) {
            let deadline = Instant::now() + KILL_TIMEOUT;
            while same_process_alive(state.shim_pid, state.shim_start) {
                if Instant::now() >= deadline {
                    if let Some(pid) = state.shim_pid {
                        let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
                    }
                    break;
                }
                std::thread::sleep(POLL);
            }
        }
        if self.remove(id, true).is_ok() {
            return;
        }
        let no_spec = ContainerSpec::default();
        for _ in 0..10 {
            cleanup::leftovers(&self.layout, id, &cdir, &no_spec);
            if cleanup::remove_dir(&cdir.0) {
                return;
            }
            std::thread::sleep(POLL);
        }
    }

    /// For `skiff reset`: SIGKILLs every process in every cgroup of this data dir (every
    /// hierarchy, whatever the state files say), removes every container dir (also those
    /// with corrupt state), every libcontainer state dir and every cgroup.
    pub fn purge_all(&self) -> Result<()> {
        let parent = spec::cgroup_parent(&self.layout.data_dir);
        let killed = cgroups::kill_tree(&parent, KILL_TIMEOUT);
        let ids: Vec<String> = fs::read_dir(self.layout.containers())
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        for id in ids {
            self.purge_container(&id);
        }
        if let Ok(rd) = fs::read_dir(self.layout.runtime_root()) {
            for e in rd.flatten() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
        let removed = cgroups::remove_tree(&parent);
        match (killed, removed) {
            (true, true) => Ok(()),
            (false, _) => Err(RuntimeError::Other(format!(
                "processes in cgroup {parent} survived SIGKILL"
            ))),
            (_, false) => Err(RuntimeError::Other(format!(
                "could not remove every cgroup below {parent}"
            ))),
        }
    }

    /// Removes an exited container (force: kill it first). Leaves no mounts, cgroups,
    /// libcontainer state or directories behind.
    pub fn remove(&self, id: &str, force: bool) -> Result<()> {
        let info = self.get(id)?;
        let id = info.id;
        self.held_lock(&id);
        if matches!(info.status, Status::Running | Status::Created) && info.shim_pid.is_some() {
            if !force {
                return Err(RuntimeError::Running(id));
            }
            self.signal_init(&id, Signal::SIGKILL);
            if !self.wait_exited(&id, KILL_TIMEOUT) {
                // The shim is stuck; it is ours (verified start time): kill it too.
                let state: StoredState = read_json(&self.cdir(&id).state())?.unwrap_or_default();
                if let Some(pid) = state.shim_pid {
                    if same_process_alive(state.shim_pid, state.shim_start) {
                        let _ = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
                self.signal_init(&id, Signal::SIGKILL);
            }
        } else if info.status == Status::Unknown && self.init_alive(&id) {
            // The shim died but the workload still runs (orphaned).
            if !force {
                return Err(RuntimeError::Running(id));
            }
            self.signal_init(&id, Signal::SIGKILL);
            let deadline = Instant::now() + KILL_TIMEOUT;
            while self.init_alive(&id) && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
        }
        self.forget_shim(&id);
        let cdir = self.cdir(&id);
        let stored: Option<StoredSpec> = read_json(&cdir.spec())?;
        if let Some(stored) = &stored {
            // Whatever state.json says: nothing of the container may outlive its removal.
            let cg = spec::container_cgroups_path(&self.layout.data_dir, &stored.spec, &id);
            if !cgroups::kill_tree(&cg, KILL_TIMEOUT) {
                return Err(RuntimeError::Other(format!(
                    "processes of container {id} survived SIGKILL"
                )));
            }
            cleanup::leftovers(&self.layout, &id, &cdir, &stored.spec);
        }
        if !cleanup::remove_dir(&cdir.0) {
            return Err(RuntimeError::Other(format!(
                "could not remove {} (rootfs still mounted?)",
                cdir.0.display()
            )));
        }
        Ok(())
    }
}

/// Reads one line from the shim within `timeout`.
fn read_reply(sock: &OwnedFd, timeout: Duration) -> std::result::Result<String, String> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("shim did not report within {}s", timeout.as_secs()));
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(format!("poll on shim socket: {e}")),
        }
        let mut chunk = [0u8; 4096];
        match nix::unistd::read(sock.as_raw_fd(), &mut chunk) {
            Ok(0) => {
                return Err(format!(
                    "shim exited without reporting{}",
                    if buf.is_empty() { "" } else { " a full line" }
                ))
            }
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    return Ok(String::from_utf8_lossy(&buf[..i]).into_owned());
                }
            }
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => continue,
            Err(e) => return Err(format!("reading shim socket: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_mapping() {
        let e = exit_info(Some(3), None, false, "t".into());
        assert_eq!((e.code, e.signal, e.oom_killed), (3, None, false));
        let e = exit_info(None, Some(15), false, "t".into());
        assert_eq!((e.code, e.signal), (143, Some(15)));
        let e = exit_info(None, Some(9), false, "t".into());
        assert_eq!(e.code, 137);
        let e = exit_info(None, Some(9), true, "t".into());
        assert_eq!((e.code, e.oom_killed), (137, true));
        // A shell whose child was OOM-killed exits 137 itself; its own code is kept.
        let e = exit_info(Some(137), None, true, "t".into());
        assert_eq!((e.code, e.oom_killed), (137, true));
        let e = exit_info(Some(0), None, true, "t".into());
        assert_eq!((e.code, e.oom_killed), (0, true));
    }

    #[test]
    fn runtime_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Runtime>();
    }

    #[test]
    fn names() {
        assert!(valid_name("web-1.a_b"));
        assert!(!valid_name("-x"));
        assert!(!valid_name(""));
        assert!(!valid_name("a/b"));
        let n = generate_name();
        assert!(n.starts_with("skiff_") && valid_name(&n), "{n}");
        assert_eq!(random_hex(32).len(), 64);
    }

    #[test]
    fn friendly_errors() {
        let m = friendly_start_error("x: executable 'foo' not found in $PATH");
        assert!(
            m.starts_with("exec: \"foo\": executable file not found in $PATH"),
            "{m}"
        );
        assert_eq!(friendly_start_error("other"), "other");
    }
}
