//! `GET|POST /exec/{ns}/{pod}/{container}?command=…`: runs `skiff --data-dir D exec [-i] --
//! <id> CMD…` as a child process and serves it as a remote-command session (WebSocket or SPDY,
//! see [`super::remotecommand`]).

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequest, Path, Request, State};
use axum::response::Response;
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::remotecommand::{self as rc, Outcome, Process, Protocol, STDERR, STDOUT};
use super::{bad_request, query_flag, query_pairs, status_response, ApiState};

struct ExecRequest {
    container_id: String,
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

pub(crate) async fn handle(
    State(st): State<Arc<ApiState>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let pairs = query_pairs(req.uri());
    let command: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if command.is_empty() {
        return bad_request("you must specify at least one command for the container");
    }
    let tty = query_flag(&pairs, "tty");
    if !["stdin", "stdout", "stderr"]
        .iter()
        .any(|f| query_flag(&pairs, f))
    {
        return bad_request("you must specify at least 1 of stdin, stdout, stderr");
    }
    let cref = match st.index.lookup(&ns, &pod, Some(&container), false) {
        Ok(c) => c,
        Err(m) => return bad_request(&m),
    };
    if !cref.running {
        return bad_request(&format!(
            "container {container} in pod {pod} is not running"
        ));
    }
    let exec = ExecRequest {
        container_id: cref.container_id,
        command: command.clone(),
        stdin: query_flag(&pairs, "stdin"),
        stdout: query_flag(&pairs, "stdout"),
        // With a TTY stderr is merged into stdout (like upstream).
        stderr: query_flag(&pairs, "stderr") && !tty,
        tty,
    };
    let session = rc::Request {
        command,
        stdin: exec.stdin,
        stdout: exec.stdout,
        stderr: exec.stderr,
        tty,
        report_exit_code: true,
    };
    let start = move || start(&st, &exec).map_err(|e| format!("starting exec: {e}"));
    upgrade(req, session, start).await
}

/// Answers the upgrade (WebSocket or SPDY) and serves the session on the upgraded connection.
pub(crate) async fn upgrade<F>(req: Request, session: rc::Request, start: F) -> Response
where
    F: FnOnce() -> Result<Process, String> + Send + 'static,
{
    if rc::wants_websocket(req.headers()) {
        let ws = match WebSocketUpgrade::from_request(req, &()).await {
            Ok(ws) => ws.protocols(rc::WS_PROTOCOLS.iter().copied()),
            Err(e) => return bad_request(&format!("bad WebSocket upgrade: {e}")),
        };
        // No subprotocol offered = the original channel protocol (like upstream).
        let proto = ws
            .selected_protocol()
            .and_then(|p| p.to_str().ok())
            .and_then(Protocol::parse)
            .unwrap_or(Protocol {
                version: 1,
                base64: false,
            });
        return ws.on_upgrade(move |socket| rc::serve_websocket(socket, proto, session, start));
    }
    if rc::wants_spdy(req.headers()) {
        let chosen = match rc::negotiate_spdy(req.headers(), rc::SPDY_PROTOCOLS) {
            Ok(c) => c,
            Err((code, msg)) => {
                let reason = if code == 403 {
                    "Forbidden"
                } else {
                    "BadRequest"
                };
                return status_response(code, reason, &msg);
            }
        };
        let Some(proto) = Protocol::parse(&chosen) else {
            return bad_request("unsupported protocol");
        };
        let mut req = req;
        let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
            return bad_request("this connection cannot be upgraded");
        };
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(io) => {
                    rc::serve_spdy(hyper_util::rt::TokioIo::new(io), proto, session, start).await
                }
                Err(err) => tracing::debug!(%err, "SPDY upgrade failed"),
            }
        });
        return rc::spdy_switching(&chosen);
    }
    bad_request("Upgrade request required: use a WebSocket (v5.channel.k8s.io) or SPDY/3.1")
}

/// The child and its stdio, piped or on a pty.
struct Running {
    child: tokio::process::Child,
    /// Output chunks tagged with their channel; closes when every reader hit EOF.
    out_rx: mpsc::Receiver<(u8, Bytes)>,
    /// Input for the child's stdin (dropped = stdin closed).
    stdin_tx: Option<mpsc::Sender<Bytes>>,
    /// The pty master (for resizes).
    pty: Option<Arc<OwnedFd>>,
}

fn base_command(st: &ApiState, req: &ExecRequest) -> tokio::process::Command {
    crate::skiff_exec(
        &st.skiff_exe,
        &st.data_dir,
        &req.container_id,
        req.stdin || req.tty,
        &req.command,
    )
}

fn spawn_reader<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
    mut r: R,
    channel: u8,
    tx: mpsc::Sender<(u8, Bytes)>,
) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx
                        .send((channel, Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
}

fn spawn_writer<W: tokio::io::AsyncWrite + Unpin + Send + 'static>(
    mut w: W,
) -> mpsc::Sender<Bytes> {
    let (tx, mut rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        while let Some(data) = rx.recv().await {
            if w.write_all(&data).await.is_err() || w.flush().await.is_err() {
                return;
            }
        }
        // Channel closed: dropping `w` closes the child's stdin.
    });
    tx
}

fn start_piped(st: &ApiState, req: &ExecRequest) -> std::io::Result<Running> {
    let mut cmd = base_command(st, req);
    let io = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    cmd.stdin(io(req.stdin))
        .stdout(io(req.stdout))
        .stderr(io(req.stderr));
    let mut child = cmd.spawn()?;
    let (tx, out_rx) = mpsc::channel(16);
    if let Some(out) = child.stdout.take() {
        spawn_reader(out, STDOUT, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        spawn_reader(err, STDERR, tx.clone());
    }
    drop(tx);
    let stdin_tx = child.stdin.take().map(spawn_writer);
    Ok(Running {
        child,
        out_rx,
        stdin_tx,
        pty: None,
    })
}

fn start_tty(st: &ApiState, req: &ExecRequest) -> std::io::Result<Running> {
    let pty = nix::pty::openpty(None, None).map_err(std::io::Error::from)?;
    let mut cmd = base_command(st, req);
    cmd.stdin(Stdio::from(pty.slave.try_clone()?))
        .stdout(Stdio::from(pty.slave.try_clone()?))
        .stderr(Stdio::from(pty.slave.try_clone()?));
    // SAFETY: only async-signal-safe calls (setsid, ioctl) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            // Make the pty the controlling terminal so ^C reaches the foreground process.
            nix::libc::ioctl(0, nix::libc::TIOCSCTTY as _, 0);
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    // Our copies of the slave must go, or reading the master never ends.
    drop(cmd);
    drop(pty.slave);
    let master = Arc::new(pty.master);
    let reader = tokio::fs::File::from_std(std::fs::File::from(master.try_clone()?));
    let writer = tokio::fs::File::from_std(std::fs::File::from(master.try_clone()?));
    let (tx, out_rx) = mpsc::channel(16);
    spawn_reader(reader, STDOUT, tx);
    let stdin_tx = req.stdin.then(|| spawn_writer(writer));
    Ok(Running {
        child,
        out_rx,
        stdin_tx,
        pty: Some(master),
    })
}

pub(crate) fn resize(pty: &OwnedFd, data: &[u8]) {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Size {
        width: u16,
        height: u16,
    }
    let Ok(size) = serde_json::from_slice::<Size>(data) else {
        return;
    };
    let ws = nix::libc::winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer; the fd is our pty master.
    unsafe {
        nix::libc::ioctl(pty.as_raw_fd(), nix::libc::TIOCSWINSZ as _, &ws);
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

/// Turns the running child into a session [`Process`]: a task reaps it (or kills it when the
/// session drops `stop`).
fn into_process(run: Running) -> Process {
    let Running {
        mut child,
        out_rx,
        stdin_tx,
        pty,
    } = run;
    let (exit_tx, exit_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        tokio::select! {
            status = child.wait() => {
                let outcome = match status {
                    Ok(s) => Outcome::Exit(exit_code(s)),
                    Err(e) => Outcome::Error(format!("waiting for the exec process: {e}")),
                };
                let _ = exit_tx.send(outcome);
            }
            _ = stop_rx => {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    });
    let resize = pty.map(|pty| Box::new(move |data: &[u8]| resize(&pty, data)) as Box<_>);
    Process {
        out: out_rx,
        stdin: stdin_tx,
        resize,
        exit: exit_rx,
        _stop: Some(stop_tx),
    }
}

fn start(st: &ApiState, req: &ExecRequest) -> std::io::Result<Process> {
    let run = if req.tty {
        start_tty(st, req)?
    } else {
        start_piped(st, req)?
    };
    Ok(into_process(run))
}
