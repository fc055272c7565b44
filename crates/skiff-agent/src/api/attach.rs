//! `GET|POST /attach/{ns}/{pod}/{container}?stdin=&stdout=&stderr=&tty=`: a remote-command
//! session (see [`super::remotecommand`]) attached to the stdio of the container's main process,
//! through the unix socket its shim serves at `<container dir>/attach.sock`.
//!
//! Socket contract: the client writes one JSON line `{"stdin":b,"stdout":b,"stderr":b}`, then
//! both directions carry frames `[kind u8][len u32 BE][payload]`: 0 stdin, 1 stdout, 2 stderr,
//! 3 exit (decimal exit code, then the shim closes), 4 resize (`{"Width":…,"Height":…}`),
//! 5 stdin closed.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::response::Response;
use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::remotecommand::{self as rc, Outcome, Process, STDERR, STDOUT};
use super::{bad_request, query_flag, query_pairs, ApiState};

const KIND_STDIN: u8 = 0;
const KIND_STDOUT: u8 = 1;
const KIND_STDERR: u8 = 2;
const KIND_EXIT: u8 = 3;
const KIND_RESIZE: u8 = 4;
const KIND_STDIN_CLOSE: u8 = 5;
/// Largest frame we accept from the shim.
const MAX_FRAME: usize = 1 << 20;

pub(crate) async fn handle(
    State(st): State<Arc<ApiState>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let pairs = query_pairs(req.uri());
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
    let session = rc::Request {
        command: Vec::new(),
        stdin: query_flag(&pairs, "stdin"),
        stdout: query_flag(&pairs, "stdout"),
        stderr: query_flag(&pairs, "stderr") && !tty,
        tty,
        // Like the CRI's attach: the session ends cleanly when the container exits.
        report_exit_code: false,
    };
    let path = skiff_runtime::attach::attach_socket_path(&st.data_dir, &cref.container_id);
    let want = (session.stdin, session.stdout, session.stderr);
    // The connection is made before the upgrade is answered, so a container without an attach
    // socket gets a plain error.
    let sock = match connect(&path).await {
        Ok(s) => s,
        Err(e) => {
            return bad_request(&format!(
                "unable to attach to container {container} in pod {pod}: {e}"
            ))
        }
    };
    let start = move || Ok(attach(sock, want));
    super::exec::upgrade(req, session, start).await
}

/// Connects to a unix socket whose path may exceed `sun_path` (108 bytes; data dirs and
/// 64-hex container ids get there): through the `/proc/self/fd` link of its directory.
async fn connect(path: &FsPath) -> std::io::Result<tokio::net::UnixStream> {
    use std::os::fd::AsRawFd;
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::other("not a socket path"));
    };
    let dir = std::fs::File::open(dir)?;
    let short = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name);
    let sock = tokio::net::UnixStream::connect(&short).await;
    drop(dir);
    sock
}

fn frame(kind: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + payload.len());
    b.put_u8(kind);
    b.put_u32(payload.len() as u32);
    b.put_slice(payload);
    b.freeze()
}

/// Speaks the attach socket protocol; the session sees it as a [`Process`].
fn attach(sock: tokio::net::UnixStream, (stdin, stdout, stderr): (bool, bool, bool)) -> Process {
    let (mut rd, mut wr) = sock.into_split();
    let (out_tx, out_rx) = mpsc::channel::<(u8, Bytes)>(16);
    let (exit_tx, exit_rx) = oneshot::channel();
    let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
    // Everything written to the shim goes through one queue (stdin, resizes, stdin close).
    let (to_shim, mut to_shim_rx) = mpsc::channel::<Bytes>(16);
    tokio::spawn(async move {
        let hello = serde_json::json!({"stdin": stdin, "stdout": stdout, "stderr": stderr});
        let mut line = hello.to_string().into_bytes();
        line.push(b'\n');
        if wr.write_all(&line).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                msg = to_shim_rx.recv() => match msg {
                    Some(b) => {
                        if wr.write_all(&b).await.is_err() {
                            return;
                        }
                    }
                    None => return,
                },
                // The session dropped us (client gone): closing the socket detaches.
                _ = &mut stop_rx => return,
            }
        }
    });
    tokio::spawn(async move {
        let outcome = loop {
            let mut head = [0u8; 5];
            if rd.read_exact(&mut head).await.is_err() {
                break Outcome::Error("the container's attach socket closed".into());
            }
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            if len > MAX_FRAME {
                break Outcome::Error(format!("attach frame of {len} bytes is too large"));
            }
            let mut payload = vec![0u8; len];
            if rd.read_exact(&mut payload).await.is_err() {
                break Outcome::Error("the container's attach socket closed".into());
            }
            let channel = match head[0] {
                KIND_STDOUT => STDOUT,
                KIND_STDERR => STDERR,
                KIND_EXIT => {
                    let code = std::str::from_utf8(&payload)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(1);
                    break Outcome::Exit(code);
                }
                _ => continue,
            };
            if out_tx.send((channel, Bytes::from(payload))).await.is_err() {
                return;
            }
        };
        drop(out_tx);
        let _ = exit_tx.send(outcome);
    });
    let stdin_tx = stdin.then(|| {
        let (tx, mut rx) = mpsc::channel::<Bytes>(16);
        let to_shim = to_shim.clone();
        tokio::spawn(async move {
            while let Some(data) = rx.recv().await {
                if to_shim.send(frame(KIND_STDIN, &data)).await.is_err() {
                    return;
                }
            }
            let _ = to_shim.send(frame(KIND_STDIN_CLOSE, &[])).await;
        });
        tx
    });
    let resize_tx = to_shim.clone();
    let resize = Box::new(move |data: &[u8]| {
        let _ = resize_tx.try_send(frame(KIND_RESIZE, data));
    }) as rc::Resize;
    Process {
        out: out_rx,
        stdin: stdin_tx,
        resize: Some(resize),
        exit: exit_rx,
        _stop: Some(stop_tx),
    }
}
