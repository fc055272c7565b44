//! `GET /exec/{ns}/{pod}/{container}?command=…`: a WebSocket session (`v5.channel.k8s.io` or
//! `v4.channel.k8s.io`) running `skiff --data-dir D exec [-i] -- <id> CMD…` as a child process.
//! Binary messages carry a channel byte: 0 stdin, 1 stdout, 2 stderr, 3 the final metav1
//! Status, 4 terminal resize, 255 close-stream (v5; `[255, 0]` = stdin EOF).

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{bad_request, query_flag, query_pairs, ApiState};

const V5: &str = "v5.channel.k8s.io";
const V4: &str = "v4.channel.k8s.io";
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;
/// After the child exited, how long to wait for its output pipes to drain (a background
/// process inside the container may hold them open forever).
const DRAIN_GRACE: Duration = Duration::from_secs(1);

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
    uri: http::Uri,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let pairs = query_pairs(&uri);
    let command: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if command.is_empty() {
        return bad_request("you must specify at least one command for the container");
    }
    let tty = query_flag(&pairs, "tty");
    let req = ExecRequest {
        container_id: String::new(),
        command,
        stdin: query_flag(&pairs, "stdin"),
        stdout: query_flag(&pairs, "stdout"),
        // With a TTY stderr is merged into stdout (like upstream).
        stderr: query_flag(&pairs, "stderr") && !tty,
        tty,
    };
    let cref = match st.index.lookup(&ns, &pod, Some(&container), false) {
        Ok(c) => c,
        Err(m) => return bad_request(&m),
    };
    if !cref.running {
        return bad_request(&format!(
            "container {container} in pod {pod} is not running"
        ));
    }
    let ws = match ws {
        Ok(ws) => ws.protocols([V5, V4]),
        Err(_) => {
            return bad_request(&format!(
                "exec needs a WebSocket upgrade with subprotocol {V5} or {V4}"
            ))
        }
    };
    let Some(proto) = ws.selected_protocol().cloned() else {
        return bad_request(&format!("unsupported exec subprotocol: use {V5} or {V4}"));
    };
    let v5 = proto.as_bytes() == V5.as_bytes();
    let req = ExecRequest {
        container_id: cref.container_id,
        ..req
    };
    ws.on_upgrade(move |socket| async move {
        session(socket, st, req, v5).await;
    })
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

fn resize(pty: &OwnedFd, data: &[u8]) {
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

fn final_status(code: i32, command: &[String]) -> serde_json::Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({"metadata": {}, "status": "Failure",
        "message": format!("command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
}

/// A close frame with code 1000: client-go treats a close without a code (1005) as an error.
fn normal_close() -> Message {
    Message::Close(Some(axum::extract::ws::CloseFrame {
        code: axum::extract::ws::close_code::NORMAL,
        reason: "".into(),
    }))
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(Bytes::from(v))
}

async fn session(socket: WebSocket, st: Arc<ApiState>, req: ExecRequest, v5: bool) {
    let (mut tx, mut rx) = socket.split();
    let started = if req.tty {
        start_tty(&st, &req)
    } else {
        start_piped(&st, &req)
    };
    let mut run = match started {
        Ok(r) => r,
        Err(err) => {
            let status = json!({"metadata": {}, "status": "Failure", "reason": "InternalError",
                "message": format!("starting {}: {err}", st.skiff_exe.display())});
            let _ = tx.send(frame(ERROR, status.to_string().as_bytes())).await;
            let _ = tx.send(normal_close()).await;
            return;
        }
    };
    let mut code: Option<i32> = None;
    let mut outputs_done = false;
    let drain_deadline = tokio::time::sleep(Duration::from_secs(u64::MAX / 4));
    tokio::pin!(drain_deadline);
    loop {
        if code.is_some() && outputs_done {
            break;
        }
        tokio::select! {
            msg = rx.next() => match msg {
                Some(Ok(Message::Binary(data))) => match data.first() {
                    Some(&STDIN) => {
                        if let Some(stdin) = &run.stdin_tx {
                            if stdin.send(data.slice(1..)).await.is_err() {
                                run.stdin_tx = None;
                            }
                        }
                    }
                    Some(&RESIZE) => {
                        if let Some(pty) = &run.pty {
                            resize(pty, &data[1..]);
                        }
                    }
                    Some(&CLOSE) if v5 && data.get(1) == Some(&STDIN) => run.stdin_tx = None,
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    // The client went away: nobody is left to see the output.
                    let _ = run.child.start_kill();
                    let _ = run.child.wait().await;
                    return;
                }
                Some(Ok(_)) => {}
            },
            out = run.out_rx.recv(), if !outputs_done => match out {
                Some((channel, data)) => {
                    if tx.send(frame(channel, &data)).await.is_err() {
                        let _ = run.child.start_kill();
                        let _ = run.child.wait().await;
                        return;
                    }
                }
                None => outputs_done = true,
            },
            status = run.child.wait(), if code.is_none() => {
                code = Some(status.map(exit_code).unwrap_or(1));
                run.stdin_tx = None;
                drain_deadline.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
            },
            _ = &mut drain_deadline, if code.is_some() => outputs_done = true,
        }
    }
    let status = final_status(code.unwrap_or(1), &req.command);
    let _ = tx.send(frame(ERROR, status.to_string().as_bytes())).await;
    let _ = tx.send(normal_close()).await;
    let _ = tx.flush().await;
}
