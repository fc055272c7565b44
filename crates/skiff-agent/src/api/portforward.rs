//! `GET|POST /portForward/{ns}/{pod}`: TCP connections into the pod's network namespace,
//! dialed to localhost:<port> there (like the kubelet with containerd), over:
//!
//! - WebSocket `SPDY/3.1+portforward.k8s.io` (kubectl ≥ 1.31's default): binary messages carry
//!   a raw SPDY/3.1 byte stream, served like the plain SPDY upgrade below.
//! - plain SPDY/3.1 (`X-Stream-Protocol-Version: portforward.k8s.io`): per forwarded connection
//!   the client opens an `error` and a `data` stream, both with `port` and `requestID` headers.
//! - WebSocket `v4.channel.k8s.io` (and its base64 and pre-v4 variants; the Python client's
//!   protocol): one connection per port of the `ports` query parameter, data on channel 2i,
//!   errors on 2i+1, each channel's first server message being the port (2 bytes, little endian).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequest, Path, Request, State};
use axum::response::Response;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::remotecommand::{self as rc, normal_close, ws_decode, ws_frame};
use super::{bad_request, query_pairs, spdy, status_response, ApiState};

const TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
const SPDY_PROTOCOL: &str = "portforward.k8s.io";
const WS_PROTOCOLS: &[&str] = &[
    TUNNEL,
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Read size towards the client (client-go reads in 32 KiB chunks too).
const CHUNK: usize = 32 * 1024;
/// Connections whose error or data stream is still missing, per SPDY connection.
const MAX_PENDING_PAIRS: usize = 1024;
/// Ports one WebSocket (channel protocol) may forward (channel numbers are a byte).
const MAX_WS_PORTS: usize = 127;

/// Where the connections go: the pod's network namespace.
#[derive(Clone)]
struct Target {
    netns: PathBuf,
    /// `name_namespace`, for upstream's error text.
    pod: String,
}

pub(crate) async fn handle(
    State(st): State<Arc<ApiState>>,
    Path((ns, pod)): Path<(String, String)>,
    req: Request,
) -> Response {
    let netns = match st.index.pod_netns(&ns, &pod) {
        Ok(p) => p,
        Err(m) => return bad_request(&m),
    };
    let target = Target {
        netns,
        pod: format!("{pod}_{ns}"),
    };
    if rc::wants_websocket(req.headers()) {
        let pairs = query_pairs(req.uri());
        let mut ports = Vec::new();
        for v in pairs.iter().filter(|(k, _)| k == "ports" || k == "port") {
            for p in v.1.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                match p.parse::<u16>() {
                    Ok(n) if n > 0 => ports.push(n),
                    _ => {
                        return bad_request(&format!(
                            "unable to parse \"{p}\" as a port: invalid port"
                        ))
                    }
                }
            }
        }
        let ws = match WebSocketUpgrade::from_request(req, &()).await {
            Ok(ws) => ws.protocols(WS_PROTOCOLS.iter().copied()),
            Err(e) => return bad_request(&format!("bad WebSocket upgrade: {e}")),
        };
        let proto = ws
            .selected_protocol()
            .and_then(|p| p.to_str().ok())
            .unwrap_or("channel.k8s.io")
            .to_string();
        if proto == TUNNEL {
            return ws.on_upgrade(move |socket| async move {
                serve_spdy(WsBytes::spawn(socket), target).await
            });
        }
        if ports.is_empty() {
            return bad_request("query parameter \"port\" is required");
        }
        if ports.len() > MAX_WS_PORTS {
            return bad_request("too many ports");
        }
        let base64 = proto.contains("base64");
        return ws.on_upgrade(move |socket| serve_channels(socket, base64, ports, target));
    }
    if rc::wants_spdy(req.headers()) {
        let chosen = match rc::negotiate_spdy(req.headers(), &[SPDY_PROTOCOL]) {
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
        let mut req = req;
        let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
            return bad_request("this connection cannot be upgraded");
        };
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(io) => serve_spdy(hyper_util::rt::TokioIo::new(io), target).await,
                Err(err) => tracing::debug!(%err, "SPDY upgrade failed"),
            }
        });
        return rc::spdy_switching(&chosen);
    }
    bad_request("Upgrade request required: use a WebSocket or SPDY/3.1")
}

/// Dials localhost:`port` inside `netns` from a short-lived thread (setns is per thread; a
/// tokio worker must never change namespace) and hands the socket back.
async fn connect_in_netns(netns: PathBuf, port: u16) -> Result<tokio::net::TcpStream, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("portforward-dial".into())
        .spawn(move || {
            let dial = || -> Result<std::net::TcpStream, String> {
                let ns = std::fs::File::open(&netns)
                    .map_err(|e| format!("opening network namespace {}: {e}", netns.display()))?;
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("entering network namespace {}: {e}", netns.display()))?;
                let v4 = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
                let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port);
                let e4 = match std::net::TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
                    Ok(s) => return Ok(s),
                    Err(e) => e,
                };
                let e6 = match std::net::TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT) {
                    Ok(s) => return Ok(s),
                    Err(e) => e,
                };
                Err(format!(
                    "failed to connect to localhost:{port} inside namespace \"{}\", IPv4: dial tcp4 {v4}: connect: {} IPv6 dial tcp6 {v6}: connect: {}",
                    netns.display(),
                    dial_error(&e4),
                    dial_error(&e6)
                ))
            };
            let _ = tx.send(dial());
        });
    if let Err(e) = spawned {
        return Err(format!("starting the dialer thread: {e}"));
    }
    let stream = rx
        .await
        .map_err(|_| "the dialer thread vanished".to_string())??;
    let _ = stream.set_nodelay(true);
    stream
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpStream::from_std(stream))
        .map_err(|e| format!("registering the socket: {e}"))
}

/// Go's wording for the common dial errors (clients print it).
fn dial_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::TimedOut => "i/o timeout".into(),
        _ => e.to_string(),
    }
}

fn forward_error(target: &Target, port: u16, err: &str) -> String {
    format!(
        "error forwarding port {port} to pod {}, uid : {err}",
        target.pod
    )
}

/// Pairs each connection's `error` and `data` streams by `requestID` and forwards them.
async fn serve_spdy<IO>(io: IO, target: Target)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (tx, mut streams) = mpsc::channel(16);
    let conn = tokio::spawn(spdy::serve(io, tx));
    let mut pending: HashMap<String, (Option<spdy::Stream>, Option<spdy::Stream>)> = HashMap::new();
    while let Some(s) = streams.recv().await {
        let kind = spdy::header(&s.headers, "streamtype")
            .unwrap_or("")
            .to_string();
        // Old clients send no requestID: the data stream follows its error stream.
        let id = match spdy::header(&s.headers, "requestid").filter(|r| !r.is_empty()) {
            Some(r) => r.to_string(),
            None if kind == "data" => s.id.saturating_sub(2).to_string(),
            None => s.id.to_string(),
        };
        // Half-open pairs are bounded: a client that never sends the other half gets resets.
        if pending.len() >= MAX_PENDING_PAIRS && !pending.contains_key(&id) {
            s.tx.reset(spdy::REFUSED_STREAM).await;
            continue;
        }
        let entry = pending.entry(id.clone()).or_default();
        match kind.as_str() {
            "error" if entry.0.is_none() => entry.0 = Some(s),
            "data" if entry.1.is_none() => entry.1 = Some(s),
            _ => {
                s.tx.reset(spdy::PROTOCOL_ERROR).await;
                continue;
            }
        }
        let complete = pending
            .get(&id)
            .is_some_and(|(e, d)| e.is_some() && d.is_some());
        if complete {
            if let Some((Some(error), Some(data))) = pending.remove(&id) {
                tokio::spawn(forward_pair(target.clone(), error, data));
            }
        }
    }
    let _ = conn.await;
}

async fn forward_pair(target: Target, error: spdy::Stream, data: spdy::Stream) {
    let port = match spdy::header(&data.headers, "port").map(str::parse::<u16>) {
        Some(Ok(p)) if p > 0 => p,
        other => {
            let raw = spdy::header(&data.headers, "port").unwrap_or("");
            let msg = match other {
                None => "port header is required".to_string(),
                _ => format!("unable to parse \"{raw}\" as a port"),
            };
            error.tx.send(Bytes::from(msg)).await;
            error.tx.close().await;
            data.tx.close().await;
            return;
        }
    };
    let tcp = match connect_in_netns(target.netns.clone(), port).await {
        Ok(t) => t,
        Err(e) => {
            error
                .tx
                .send(Bytes::from(forward_error(&target, port, &e)))
                .await;
            error.tx.close().await;
            data.tx.close().await;
            return;
        }
    };
    let (mut r, mut w) = tcp.into_split();
    let mut from_client = data.rx;
    // Client → pod until the client half-closes (then half-close the pod side).
    let up = tokio::spawn(async move {
        while let Some(b) = from_client.recv().await {
            if w.write_all(&b).await.is_err() {
                return;
            }
        }
        let _ = w.shutdown().await;
    });
    // Pod → client until the pod side ends; then the connection is over for the client.
    let mut buf = vec![0u8; CHUNK];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !data.tx.send(Bytes::copy_from_slice(&buf[..n])).await {
                    break;
                }
            }
        }
    }
    data.tx.close().await;
    error.tx.close().await;
    // The upload side ends on the client's FIN (or when the session goes).
    let _ = up.await;
}

/// A WebSocket's binary messages as a byte stream (the SPDY tunnel).
struct WsBytes;

impl WsBytes {
    fn spawn(socket: WebSocket) -> tokio::io::DuplexStream {
        let (ours, theirs) = tokio::io::duplex(256 * 1024);
        tokio::spawn(async move {
            let (mut wtx, mut wrx) = socket.split();
            let (mut rd, mut wr) = tokio::io::split(theirs);
            let inbound = async move {
                while let Some(Ok(msg)) = wrx.next().await {
                    match msg {
                        Message::Binary(b) if wr.write_all(&b).await.is_err() => break,
                        Message::Close(_) => break,
                        _ => {}
                    }
                }
                let _ = wr.shutdown().await;
            };
            let outbound = async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let msg = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                            if wtx.send(msg).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = wtx.send(normal_close()).await;
            };
            // Either side ending ends the tunnel.
            tokio::select! {
                _ = inbound => {}
                _ = outbound => {}
            }
        });
        ours
    }
}

/// The channel protocol: one connection per requested port for the WebSocket's lifetime.
async fn serve_channels(socket: WebSocket, base64: bool, ports: Vec<u16>, target: Target) {
    let (mut wtx, mut wrx) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<(u8, Bytes)>(64);
    let mut uploads: Vec<Option<mpsc::Sender<Bytes>>> = Vec::new();
    let mut tasks = Vec::new();
    for (i, port) in ports.iter().copied().enumerate() {
        let data_ch = (i * 2) as u8;
        let err_ch = data_ch + 1;
        let prefix = Bytes::copy_from_slice(&port.to_le_bytes());
        for ch in [data_ch, err_ch] {
            if wtx.send(ws_frame(base64, ch, &prefix)).await.is_err() {
                return;
            }
        }
        let (up_tx, mut up_rx) = mpsc::channel::<Bytes>(8);
        uploads.push(Some(up_tx));
        let out = out_tx.clone();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let tcp = match connect_in_netns(target.netns.clone(), port).await {
                Ok(t) => t,
                Err(e) => {
                    let msg = forward_error(&target, port, &e);
                    let _ = out.send((err_ch, Bytes::from(msg))).await;
                    return;
                }
            };
            let (mut r, mut w) = tcp.into_split();
            let up = tokio::spawn(async move {
                while let Some(b) = up_rx.recv().await {
                    if w.write_all(&b).await.is_err() {
                        return;
                    }
                }
                let _ = w.shutdown().await;
            });
            let mut buf = vec![0u8; CHUNK];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if out
                            .send((data_ch, Bytes::copy_from_slice(&buf[..n])))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
            up.abort();
        }));
    }
    drop(out_tx);
    let reader = async {
        while let Some(Ok(msg)) = wrx.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
            let Some((ch, data)) = ws_decode(base64, msg) else {
                continue;
            };
            // Clients write only on data channels.
            if ch % 2 != 0 {
                continue;
            }
            let Some(slot) = uploads.get_mut(usize::from(ch / 2)) else {
                continue;
            };
            if let Some(tx) = slot {
                if tx.send(data).await.is_err() {
                    *slot = None;
                }
            }
        }
    };
    let writer = async {
        while let Some((ch, data)) = out_rx.recv().await {
            if wtx.send(ws_frame(base64, ch, &data)).await.is_err() {
                return;
            }
        }
        // Every port's connection ended.
        let _ = wtx.send(normal_close()).await;
    };
    tokio::select! {
        _ = reader => {}
        _ = writer => {}
    }
    for t in tasks {
        t.abort();
    }
}
