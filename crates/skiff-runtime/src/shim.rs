//! The per-container supervisor, run as `skiff shim --data-dir D <id>`.
//!
//! It must stay single-threaded: libcontainer forks/clones and deadlocks when that happens
//! in a multi-threaded process. It detaches (forks, the first process exits so the caller
//! reaps it at once), mounts the overlay rootfs, creates and starts the container with
//! libcontainer, reports "started <pid>" or "error <msg>" on the sync socket, copies the
//! container's stdout/stderr (or its terminal) into the CRI log and to the clients of its
//! attach socket (stdin, resizes, the exit code: see the `attach` module), all from one poll
//! loop, reaps the container's init (a child of the
//! shim), reads the OOM-kill counter, deletes the container (cgroup, state), unmounts the
//! rootfs, writes exit.json and, for auto-remove containers, deletes the container dir.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::fcntl::{fcntl, FcntlArg, FdFlag, FlockArg, OFlag};
use nix::mount::{mount, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::socket::{send, MsgFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, getpid, pipe2, read, setsid, ForkResult, Pid};

use crate::attach::{Hub, StdinSink};
use crate::cri::{format_cri_line, now_rfc3339_nano, LineSplitter};
use crate::store::{
    append_line, external_work_dir, lock_file, proc_start_time, read_json, write_json_atomic,
    write_state_json, CDir, Layout, StoredSpec, StoredState,
};
use crate::{cleanup, exit_info, lc_error, ContainerSpec, Result, RuntimeError, Stream};

/// Environment variable carrying the inherited fd number of the sync socket.
pub const SYNC_FD_ENV: &str = "_SKIFF_SHIM_SYNC_FD";

/// overlayfs mount data must fit in one page.
const MAX_MOUNT_DATA: usize = 4000;

/// Entry point of `skiff shim --data-dir D ID`. Never returns.
///
/// The calling process must be single-threaded (no async runtime started yet).
pub fn main(data_dir: &Path, id: &str) -> ! {
    let mut reporter = Reporter {
        fd: take_sync_fd(),
        started: false,
    };
    // Detach: the caller reaps this first process immediately; the child is reparented to
    // init (or a subreaper) and keeps running when the caller exits.
    // SAFETY: the shim is single-threaded here, so fork is sound.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => std::process::exit(0),
        Ok(ForkResult::Child) => {}
        Err(e) => {
            reporter.error(&format!("shim: fork: {e}"));
            std::process::exit(1)
        }
    }
    let _ = setsid();
    // Like any daemon: keep no directory busy, and give containers docker's umask.
    let _ = std::env::set_current_dir("/");
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let layout = Layout {
        data_dir: fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf()),
    };
    let cdir = CDir(layout.container(id));
    match run(&layout, id, &cdir, &mut reporter) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            let msg = e.to_string();
            append_line(&cdir.shim_log(), &format!("error: {msg}"));
            reporter.error(&msg);
            std::process::exit(1)
        }
    }
}

/// Reports the start result to the waiting caller exactly once ("started PID" or "error
/// MSG", one line). After "started" the socket stays open as a wake-up channel: one byte
/// after each batch of log writes, and closed once exit.json is written (the caller waits
/// on it instead of inotify, see `watch::DirWatch::shim`).
struct Reporter {
    fd: Option<OwnedFd>,
    started: bool,
}

impl Reporter {
    fn send_line(&mut self, msg: &str) {
        if let Some(fd) = &self.fd {
            let line = format!("{}\n", msg.replace('\n', " "));
            // MSG_NOSIGNAL: the caller may have given up; never die of SIGPIPE for it.
            let _ = send(fd.as_raw_fd(), line.as_bytes(), MsgFlags::MSG_NOSIGNAL);
        }
    }
    fn started(&mut self, pid: i32) {
        self.send_line(&format!("started {pid}"));
        self.started = true;
    }
    fn error(&mut self, msg: &str) {
        if !self.started {
            self.send_line(&format!("error {msg}"));
            self.fd = None;
        }
    }
    /// Best effort, never blocks: a full buffer already means a wake-up is pending, and a
    /// caller that went away (EPIPE) gets no more.
    fn wake(&mut self) {
        if let Some(fd) = &self.fd {
            let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT;
            match send(fd.as_raw_fd(), b".", flags) {
                Ok(_) | Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
                Err(_) => self.fd = None,
            }
        }
    }
    /// Closes the channel: the caller's next wait returns at once.
    fn finish(&mut self) {
        self.fd = None;
    }
    fn raw_fd(&self) -> Option<RawFd> {
        self.fd.as_ref().map(|f| f.as_raw_fd())
    }
}

/// Tells the guardian the shim is done (exit.json written): it exits without killing.
fn goodbye(guardian: Option<OwnedFd>) {
    if let Some(fd) = guardian {
        let _ = nix::unistd::write(&fd, b"x");
    }
}

/// Forks the guardian: it blocks on a pipe whose only write end this shim holds. EOF without
/// a goodbye byte means the shim died (even by SIGKILL): the guardian then SIGKILLs every
/// process in the container's cgroup (frozen first), cleans up like the shim would and
/// records exit 137, so the container never outlives its supervisor.
fn spawn_guardian(
    layout: &Layout,
    id: &str,
    cdir: &CDir,
    spec: &ContainerSpec,
    reporter_fd: Option<RawFd>,
) -> Option<(OwnedFd, i32)> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC).ok()?;
    // SAFETY: the shim is single-threaded, so fork is sound.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => {
            drop(r);
            Some((w, child.as_raw()))
        }
        Ok(ForkResult::Child) => {
            drop(w);
            if let Some(fd) = reporter_fd {
                // The caller must see the shim's end of the socket close with the shim.
                let _ = nix::unistd::close(fd);
            }
            let _ = nix::sys::prctl::set_name(c"skiff-guard");
            let mut b = [0u8; 1];
            let died = loop {
                match read(r.as_raw_fd(), &mut b) {
                    Ok(0) => break true,
                    Ok(_) => break false,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => break false,
                }
            };
            if died {
                guard_cleanup(layout, id, cdir, spec);
            }
            std::process::exit(0)
        }
        Err(e) => {
            append_line(
                &cdir.shim_log(),
                &format!("fork of the guardian failed: {e}"),
            );
            None
        }
    }
}

/// What the guardian does once the shim died: the container dies too, nothing is left.
fn guard_cleanup(layout: &Layout, id: &str, cdir: &CDir, spec: &ContainerSpec) {
    let cg = crate::spec::container_cgroups_path(&layout.data_dir, spec, id);
    if !crate::cgroups::kill_tree(&cg, std::time::Duration::from_secs(10)) {
        append_line(&cdir.shim_log(), "guardian: processes survived SIGKILL");
    }
    if cdir.exit().exists() {
        return; // the shim got as far as recording the exit
    }
    append_line(
        &cdir.shim_log(),
        "shim died: the guardian killed the container with it",
    );
    cleanup::delete_stopped(layout, id, &cg);
    cleanup::leftovers(layout, id, cdir, spec);
    let exit = exit_info(None, Some(9), false, now_rfc3339_nano());
    if write_json_atomic(&cdir.exit(), &exit).is_ok() && spec.auto_remove {
        let _lock = lock_file(&cdir.wait_lock(), FlockArg::LockExclusive);
        cleanup::remove_dir(&cdir.0);
    }
}

fn take_sync_fd() -> Option<OwnedFd> {
    let fd: RawFd = std::env::var(SYNC_FD_ENV).ok()?.parse().ok()?;
    std::env::remove_var(SYNC_FD_ENV);
    if fd < 3 {
        return None;
    }
    // Only accept a socket: a stale variable must not make us write into a random file.
    let st = nix::sys::stat::fstat(fd).ok()?;
    if st.st_mode & nix::libc::S_IFMT != nix::libc::S_IFSOCK {
        return None;
    }
    let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
    // SAFETY: the caller passed us this fd for our exclusive use.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn run(layout: &Layout, id: &str, cdir: &CDir, reporter: &mut Reporter) -> Result<()> {
    let stored: StoredSpec =
        read_json(&cdir.spec())?.ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
    let me = getpid().as_raw();
    // Forked before the container exists, so it holds nothing of it: if this shim dies
    // without saying goodbye (kill -9), the guardian kills the container through its cgroup.
    let (guardian, guard_pid) =
        match spawn_guardian(layout, id, cdir, &stored.spec, reporter.raw_fd()) {
            Some((fd, pid)) => (Some(fd), Some(pid)),
            None => (None, None),
        };
    let mut state = StoredState {
        shim_pid: Some(me),
        shim_start: proc_start_time(me),
        guard_pid,
        guard_start: guard_pid.and_then(proc_start_time),
        ..Default::default()
    };
    if let Err(e) = write_state_json(&cdir.state(), &state) {
        goodbye(guardian);
        return Err(e);
    }
    let started =
        mount_rootfs(cdir, &stored.spec).and_then(|()| start(layout, id, cdir, &stored.spec));
    let Started {
        container,
        pid,
        output,
        stdin,
        master,
    } = match started {
        Ok(v) => v,
        Err(e) => {
            cleanup::leftovers(layout, id, cdir, &stored.spec);
            goodbye(guardian);
            return Err(e);
        }
    };
    state.pid = Some(pid.as_raw());
    state.pid_start = proc_start_time(pid.as_raw());
    state.started_at = Some(now_rfc3339_nano());
    if let Err(e) = write_state_json(&cdir.state(), &state) {
        append_line(&cdir.shim_log(), &format!("error: {e}"));
    }
    // Bound before "started" is reported, so the socket exists once the caller returns.
    let mut hub = match Hub::bind(
        crate::attach::attach_socket_path(&layout.data_dir, id),
        stdin,
        stored.spec.stdin_once,
        master,
    ) {
        Ok(h) => Some(h),
        Err(e) => {
            append_line(&cdir.shim_log(), &format!("attach socket: {e}"));
            None
        }
    };
    reporter.started(pid.as_raw());

    let rotation = Rotation {
        max_size: stored
            .spec
            .log_max_size
            .unwrap_or(crate::DEFAULT_LOG_MAX_SIZE)
            .max(1),
        max_files: stored
            .spec
            .log_max_files
            .unwrap_or(crate::DEFAULT_LOG_MAX_FILES)
            .max(2),
    };
    if let Err(e) = pump_logs(&cdir.log(), rotation, output, hub.as_mut(), reporter) {
        append_line(&cdir.shim_log(), &format!("log copy failed: {e}"));
    }
    let status = loop {
        match waitpid(pid, None) {
            Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => break Some(s),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                append_line(&cdir.shim_log(), &format!("waitpid {pid}: {e}"));
                break None;
            }
        }
    };
    let cgroups_path = crate::spec::container_cgroups_path(&layout.data_dir, &stored.spec, id);
    let oom_killed = oom_kill_count(&cgroups_path) > 0;
    let (code, sig) = match status {
        Some(WaitStatus::Exited(_, c)) => (Some(c), None),
        Some(WaitStatus::Signaled(_, s, _)) => (None, Some(s as i32)),
        _ => (None, None),
    };
    let exit = exit_info(code, sig, oom_killed, now_rfc3339_nano());

    // The init is reaped: delete cgroups and libcontainer state without libcontainer's
    // cgroup manager (see cleanup::delete_stopped); libcontainer only if that fell short.
    if !cleanup::delete_stopped(layout, id, &cgroups_path) {
        delete_container(container, cdir);
    }
    cleanup::leftovers(layout, id, cdir, &stored.spec);
    let written = write_json_atomic(&cdir.exit(), &exit);
    if let Some(h) = hub.as_mut() {
        h.finish(exit.code, std::time::Duration::from_secs(2));
    }
    drop(hub);
    goodbye(guardian);
    written?;
    reporter.finish();

    if stored.spec.auto_remove {
        // Waiters hold wait.lock shared until they have read exit.json.
        let _lock = lock_file(&cdir.wait_lock(), FlockArg::LockExclusive);
        cleanup::remove_dir(&cdir.0);
    }
    Ok(())
}

fn delete_container(mut container: Container, cdir: &CDir) {
    if let Err(e) = container.delete(true) {
        append_line(
            &cdir.shim_log(),
            &format!("libcontainer delete: {}", lc_error(&e)),
        );
    }
}

/// Mounts the overlay rootfs: image layers as lowerdirs (topmost first), one upper dir.
fn mount_rootfs(cdir: &CDir, spec: &ContainerSpec) -> Result<()> {
    let rootfs = cdir.rootfs();
    let (upper, work) = match &spec.upper {
        Some(u) => (u.clone(), external_work_dir(u)),
        None => (cdir.upper(), cdir.work()),
    };
    let mut lowers: Vec<PathBuf> = spec.lowers.iter().rev().cloned().collect();
    if lowers.is_empty() {
        lowers.push(cdir.empty_lower());
    }
    for d in [&rootfs, &upper, &work, &lowers[0]] {
        fs::create_dir_all(d).map_err(crate::store::io_err(format!("creating {}", d.display())))?;
    }
    let data = overlay_options(&lowers, &upper, &work)?;
    mount(
        Some("overlay"),
        &rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| RuntimeError::Io {
        context: format!("mounting overlay rootfs at {} ({data})", rootfs.display()),
        source: e.into(),
    })?;
    create_workdir(&rootfs, &spec.cwd)
}

/// Creates the working directory in the rootfs like docker does. Stops at existing
/// symlinks instead of following them (they could point outside the rootfs); libcontainer
/// resolves those inside the container.
fn create_workdir(rootfs: &Path, cwd: &str) -> Result<()> {
    let mut p = rootfs.to_path_buf();
    for comp in Path::new(cwd).components() {
        let std::path::Component::Normal(c) = comp else {
            continue;
        };
        p.push(c);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => return Ok(()),
            Err(_) => {
                fs::create_dir(&p)
                    .map_err(crate::store::io_err(format!("creating working dir {cwd}")))?;
            }
        }
    }
    Ok(())
}

pub(crate) fn overlay_options(lowers: &[PathBuf], upper: &Path, work: &Path) -> Result<String> {
    let mut parts = Vec::with_capacity(lowers.len() + 2);
    for p in lowers.iter().map(PathBuf::as_path).chain([upper, work]) {
        let s = p
            .to_str()
            .ok_or_else(|| RuntimeError::InvalidSpec(format!("non UTF-8 path {p:?}")))?;
        if s.contains([',', ':', '\\']) {
            return Err(RuntimeError::InvalidSpec(format!(
                "path {s:?} contains a character overlayfs cannot take (',', ':' or '\\')"
            )));
        }
        parts.push(s);
    }
    let n = lowers.len();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        parts[..n].join(":"),
        parts[n],
        parts[n + 1]
    );
    if data.len() > MAX_MOUNT_DATA {
        return Err(RuntimeError::InvalidSpec(format!(
            "overlay mount options are {} bytes (more than {MAX_MOUNT_DATA}): too many layers ({n}) or too long paths",
            data.len()
        )));
    }
    Ok(data)
}

/// The container's output as the shim reads it.
enum Output {
    Pipes {
        out: OwnedFd,
        err: OwnedFd,
    },
    /// The pty master: everything the container writes, as stdout.
    Tty(OwnedFd),
}

struct Started {
    container: Container,
    pid: Pid,
    output: Output,
    stdin: Option<StdinSink>,
    /// The pty master's fd number (owned by `output`), for resizes.
    master: Option<RawFd>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    pipe2(OFlag::O_CLOEXEC).map_err(|e| RuntimeError::Other(format!("pipe: {e}")))
}

fn start(layout: &Layout, id: &str, cdir: &CDir, spec: &ContainerSpec) -> Result<Started> {
    let root = layout.runtime_root();
    fs::create_dir_all(&root)
        .map_err(crate::store::io_err(format!("creating {}", root.display())))?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    // Non-tty stdin: a pipe whose write end the shim keeps (attached clients write into it).
    let (stdin_r, stdin_w): (OwnedFd, Option<OwnedFd>) = if spec.stdin && !spec.tty {
        let (r, w) = pipe()?;
        (r, Some(w))
    } else {
        let devnull = File::open("/dev/null").map_err(crate::store::io_err("opening /dev/null"))?;
        (devnull.into(), None)
    };
    // A tty container's init makes the pty in its own devpts and sends us the master here.
    let console = if spec.tty {
        Some(ConsoleSocket::bind(&cdir.0.join("console.sock"))?)
    } else {
        None
    };

    // The Rust runtime ignores SIGPIPE and ignored signals survive exec: give the container
    // the default disposition (the shim itself only writes to files and uses MSG_NOSIGNAL).
    // SAFETY: setting a default disposition installs no handler code.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
    }

    // Shared lock: a concurrently exiting shim must not rmdir the cgroup parent while
    // libcontainer creates our cgroup below it.
    let cg_lock = lock_file(&layout.cgroup_lock(), FlockArg::LockShared)?;
    if let Some(pc) = &spec.pod_cgroup {
        crate::cgroups::ensure_pod_cgroup(&crate::spec::cgroup_parent(&layout.data_dir), pc)?;
    }
    let built = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_root_path(&root)
        .and_then(|b| {
            b.with_console_socket(console.as_ref().map(|c| c.path.clone()))
                .with_stdin(stdin_r)
                .with_stdout(out_w)
                .with_stderr(err_w)
                .as_init(cdir.bundle())
                .with_systemd(false)
                .with_detach(true)
                .build()
        });
    drop(cg_lock);
    // The init is cloned: the shim itself must survive writing to a stdin pipe or socket
    // whose reader is gone.
    // SAFETY: ignoring a signal installs no handler code.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigIgn);
    }
    let mut container = built.map_err(|e| start_error(id, &e))?;
    let master = match console.map(|c| c.receive_master()) {
        None => None,
        Some(Ok(m)) => Some(m),
        Some(Err(e)) => {
            delete_container(container, cdir);
            return Err(RuntimeError::StartFailed {
                id: id.to_string(),
                message: format!("receiving the terminal from the container: {e}"),
            });
        }
    };
    if let Err(e) = container.start() {
        let err = start_error(id, &e);
        delete_container(container, cdir);
        return Err(err);
    }
    let pid = match container.pid() {
        Some(p) => p,
        None => {
            delete_container(container, cdir);
            return Err(RuntimeError::StartFailed {
                id: id.to_string(),
                message: "libcontainer reported no init pid".into(),
            });
        }
    };
    let (output, stdin, master_fd) = match master {
        Some(m) => {
            let raw = m.as_raw_fd();
            let stdin = if spec.stdin {
                let dup = m
                    .try_clone()
                    .map_err(crate::store::io_err("duplicating the pty master"))?;
                Some(StdinSink { fd: dup, tty: true })
            } else {
                None
            };
            // Nothing is written to the pipes of a tty container; dropping them is harmless.
            drop((out_r, err_r));
            (Output::Tty(m), stdin, Some(raw))
        }
        None => (
            Output::Pipes {
                out: out_r,
                err: err_r,
            },
            stdin_w.map(|fd| StdinSink { fd, tty: false }),
            None,
        ),
    };
    Ok(Started {
        container,
        pid,
        output,
        stdin,
        master: master_fd,
    })
}

/// The listening end of libcontainer's console socket (bound through the container dir, so
/// a long data dir cannot overflow sockaddr_un), removed when dropped.
struct ConsoleSocket {
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    fn bind(path: &Path) -> Result<Self> {
        let _ = fs::remove_file(path);
        let dir = path.parent().unwrap_or(Path::new("/"));
        let name = path.file_name().unwrap_or_default();
        let bound = std::env::set_current_dir(dir)
            .and_then(|()| std::os::unix::net::UnixListener::bind(name));
        let _ = std::env::set_current_dir("/");
        let listener = bound.map_err(crate::store::io_err("binding the console socket"))?;
        Ok(ConsoleSocket {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Accepts the container init's connection and takes the pty master it passed.
    fn receive_master(self) -> std::io::Result<OwnedFd> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned};
        let ready = {
            let mut fds = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::from(10_000u16))?
        };
        if ready == 0 {
            return Err(std::io::Error::other("timed out"));
        }
        let (conn, _) = self.listener.accept()?;
        let mut name = [0u8; 64];
        let mut iov = [std::io::IoSliceMut::new(&mut name)];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )?;
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                let mut owned: Vec<OwnedFd> = fds
                    .into_iter()
                    // SAFETY: SCM_RIGHTS just installed these fds in this process.
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
                    .collect();
                if let Some(m) = owned.pop() {
                    let _ = fcntl(m.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
                    return Ok(m);
                }
            }
        }
        Err(std::io::Error::other("no pty master in the message"))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn start_error(id: &str, e: &libcontainer::error::LibcontainerError) -> RuntimeError {
    RuntimeError::StartFailed {
        id: id.to_string(),
        message: crate::friendly_start_error(&lc_error(e)),
    }
}

/// Log rotation settings (the kubelet's `--container-log-max-size`/`-max-files`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rotation {
    pub max_size: u64,
    /// Files kept including the live one (>= 2).
    pub max_files: u32,
}

/// Opens a log file for appending, 0640 (logs may hold secrets; not for every local user).
pub(crate) fn open_log(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// The CRI log with rotation: `container.log` is live; rotated files are `container.log.1`
/// (newest) up to `container.log.<max_files-1>` (oldest). Records of one read are written
/// with one write; no file grows past `max_size` unless a single record is larger.
pub(crate) struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: Rotation,
    pending: Vec<u8>,
}

impl LogWriter {
    pub fn open(path: &Path, rotation: Rotation) -> std::io::Result<Self> {
        let file = open_log(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            rotation,
            pending: Vec::new(),
        })
    }

    pub fn push(&mut self, record: &[u8]) -> std::io::Result<()> {
        let len = (self.pending.len() + record.len()) as u64;
        if self.size + len > self.rotation.max_size && self.size + self.pending.len() as u64 > 0 {
            self.flush()?;
            self.rotate()?;
        }
        self.pending.extend_from_slice(record);
        Ok(())
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            self.file.write_all(&self.pending)?;
            self.size += self.pending.len() as u64;
            self.pending.clear();
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let name = |i: u32| {
            let mut s = self.path.as_os_str().to_owned();
            s.push(format!(".{i}"));
            PathBuf::from(s)
        };
        // rename() replaces the oldest in place; readers holding it open keep reading.
        for i in (1..self.rotation.max_files - 1).rev() {
            match fs::rename(name(i), name(i + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        fs::rename(&self.path, name(1))?;
        self.file = open_log(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Copies the container's output into the CRI log (and to attached clients) until it
/// reaches EOF, serving the attach socket meanwhile.
fn pump_logs(
    log: &Path,
    rotation: Rotation,
    output: Output,
    mut hub: Option<&mut Hub>,
    reporter: &mut Reporter,
) -> std::io::Result<()> {
    let mut file = LogWriter::open(log, rotation)?;
    let mut streams: Vec<(Option<OwnedFd>, Stream, LineSplitter)> = match output {
        Output::Pipes { out, err } => vec![
            (Some(out), Stream::Stdout, LineSplitter::default()),
            (Some(err), Stream::Stderr, LineSplitter::default()),
        ],
        Output::Tty(m) => vec![(Some(m), Stream::Stdout, LineSplitter::default())],
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let open: Vec<usize> = (0..streams.len())
            .filter(|i| streams[*i].0.is_some())
            .collect();
        if open.is_empty() {
            return Ok(());
        }
        let hub_set = hub.as_ref().map(|h| h.poll_set()).unwrap_or_default();
        let mut fds: Vec<nix::libc::pollfd> = open
            .iter()
            .filter_map(|i| streams[*i].0.as_ref())
            .map(|fd| nix::libc::pollfd {
                fd: fd.as_raw_fd(),
                events: nix::libc::POLLIN,
                revents: 0,
            })
            .chain(hub_set.iter().map(|(_, fd, ev)| nix::libc::pollfd {
                fd: *fd,
                events: *ev,
                revents: 0,
            }))
            .collect();
        // SAFETY: fds is a valid, exclusively borrowed array of pollfd of the given length.
        let rc = unsafe { nix::libc::poll(fds.as_mut_ptr(), fds.len() as nix::libc::nfds_t, -1) };
        if rc < 0 {
            match nix::errno::Errno::last() {
                nix::errno::Errno::EINTR => continue,
                e => return Err(e.into()),
            }
        }
        if let Some(h) = hub.as_deref_mut() {
            for (k, (token, _, _)) in hub_set.iter().enumerate() {
                let rev = fds[open.len() + k].revents;
                if rev != 0 {
                    h.ready(*token, rev);
                }
            }
            h.reap();
            for note in h.log_note.drain(..) {
                append_line(&log.with_file_name("shim.log"), &note);
            }
        }
        for (k, &i) in open.iter().enumerate() {
            if fds[k].revents == 0 {
                continue;
            }
            let (fd, stream, splitter) = &mut streams[i];
            let n = match fd.as_ref().map(|fd| read(fd.as_raw_fd(), &mut buf)) {
                Some(Ok(n)) => n,
                Some(Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN)) => continue,
                // EIO: every slave end of the pty is closed, the terminal's EOF.
                Some(Err(_)) | None => 0,
            };
            if n > 0 {
                if let Some(h) = hub.as_deref_mut() {
                    h.output(*stream == Stream::Stderr, &buf[..n]);
                }
            }
            let records = if n == 0 {
                *fd = None;
                splitter.finish().into_iter().collect()
            } else {
                splitter.push(&buf[..n])
            };
            let now = now_rfc3339_nano();
            let wrote = !records.is_empty();
            for (full, text) in records {
                file.push(&format_cri_line(&now, *stream, full, &text))?;
            }
            file.flush()?;
            if wrote {
                reporter.wake();
            }
        }
    }
}

/// OOM kills recorded for the container's memory cgroup (v1 `memory.oom_control`, v2
/// `memory.events`). Must be read before libcontainer deletes the cgroup.
pub(crate) fn oom_kill_count(cgroups_path: &str) -> u64 {
    let rel = cgroups_path.trim_start_matches('/');
    let candidates = [
        Path::new("/sys/fs/cgroup/memory")
            .join(rel)
            .join("memory.oom_control"),
        Path::new("/sys/fs/cgroup").join(rel).join("memory.events"),
    ];
    for p in candidates {
        if let Ok(s) = fs::read_to_string(&p) {
            return parse_oom_kill(&s);
        }
    }
    0
}

pub(crate) fn parse_oom_kill(s: &str) -> u64 {
    s.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_counter_parsing() {
        assert_eq!(
            parse_oom_kill("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"),
            3
        );
        assert_eq!(
            parse_oom_kill("low 0\nhigh 0\nmax 5\noom 2\noom_kill 1\noom_group_kill 0\n"),
            1
        );
        assert_eq!(parse_oom_kill("oom_kill_disable 0\n"), 0);
    }

    #[test]
    fn overlay_option_string() {
        let lowers = vec![PathBuf::from("/l/top"), PathBuf::from("/l/bottom")];
        let s = overlay_options(&lowers, Path::new("/c/upper"), Path::new("/c/work")).unwrap();
        assert_eq!(
            s,
            "lowerdir=/l/top:/l/bottom,upperdir=/c/upper,workdir=/c/work"
        );
        assert!(
            overlay_options(&[PathBuf::from("/a:b")], Path::new("/u"), Path::new("/w")).is_err()
        );
        let many: Vec<PathBuf> = (0..200)
            .map(|i| PathBuf::from(format!("/var/lib/skiff/layers/{i:064}")))
            .collect();
        assert!(matches!(
            overlay_options(&many, Path::new("/u"), Path::new("/w")),
            Err(RuntimeError::InvalidSpec(_))
        ));
    }
}
