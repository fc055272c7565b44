//! Remote command sessions (exec and attach), one core over every transport Kubernetes
//! clients use:
//!
//! - WebSocket, subprotocols `v5.channel.k8s.io`, `v4.channel.k8s.io`,
//!   `v4.base64.channel.k8s.io`, `channel.k8s.io`, `base64.channel.k8s.io` (upstream's list).
//!   Binary protocols: each message is `[channel][bytes]`, in BINARY or TEXT frames (the Python
//!   client writes stdin as TEXT). base64 protocols: TEXT frames `'0'+channel` then base64.
//!   Channels: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize, 255 close (v5: `[255, 0]` is
//!   stdin EOF).
//! - SPDY/3.1 (`X-Stream-Protocol-Version` v5/v4/v3/v2/`channel.k8s.io`): one SPDY stream per
//!   channel, named by its `streamType` header (error, stdin, stdout, stderr, resize).
//!
//! The error channel ends the session: v4 and later carry a metav1 Status JSON (exit codes as
//! `NonZeroExitCode`); older versions carry the error text, nothing on success.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use base64::Engine;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::spdy;

pub(crate) const STDIN: u8 = 0;
pub(crate) const STDOUT: u8 = 1;
pub(crate) const STDERR: u8 = 2;
pub(crate) const ERROR: u8 = 3;
pub(crate) const RESIZE: u8 = 4;
const CLOSE: u8 = 255;
/// After the process exited, how long to wait for its output to drain (a background process
/// inside the container may hold the pipes open forever).
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// How long a SPDY client has to open the streams it asked for.
const STREAM_WAIT: Duration = Duration::from_secs(30);

/// The WebSocket subprotocols we accept, best first.
pub(crate) const WS_PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];
/// The SPDY `X-Stream-Protocol-Version`s we accept, best first.
pub(crate) const SPDY_PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Protocol {
    /// 1..=5
    pub version: u8,
    pub base64: bool,
}

impl Protocol {
    /// Parses a WebSocket subprotocol or SPDY protocol version; "" is the original protocol.
    pub(crate) fn parse(name: &str) -> Option<Protocol> {
        let (version, base64) = match name {
            "" | "channel.k8s.io" => (1, false),
            "base64.channel.k8s.io" => (1, true),
            "v2.channel.k8s.io" => (2, false),
            "v3.channel.k8s.io" => (3, false),
            "v4.channel.k8s.io" => (4, false),
            "v4.base64.channel.k8s.io" => (4, true),
            "v5.channel.k8s.io" => (5, false),
            _ => return None,
        };
        Some(Protocol { version, base64 })
    }
}

/// What the session's client sends.
#[derive(Debug)]
pub(crate) enum Input {
    Stdin(Bytes),
    StdinEof,
    Resize(Bytes),
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Exit(i32),
    /// The process could not run (or the attach failed): an internal error message.
    Error(String),
}

/// Applies a terminal resize to the process.
pub(crate) type Resize = Box<dyn Fn(&[u8]) + Send>;

/// The far side of a session: an exec'd child or an attached container.
pub(crate) struct Process {
    /// Output tagged with its channel (stdout/stderr); closes when all output ended.
    pub out: mpsc::Receiver<(u8, Bytes)>,
    /// Input for stdin (dropped = stdin closed).
    pub stdin: Option<mpsc::Sender<Bytes>>,
    /// Applies a terminal resize (`{"Width":…,"Height":…}`).
    pub resize: Option<Resize>,
    /// The exit.
    pub exit: oneshot::Receiver<Outcome>,
    /// Dropping this stops the process (the client went away).
    pub _stop: Option<oneshot::Sender<()>>,
}

/// What the session asked for, for the error messages.
pub(crate) struct Request {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
    /// Exec reports exit codes; attach (like the CRI's) reports success when the container ends.
    pub report_exit_code: bool,
}

/// Runs `p` against the client's `input` (closed = the client went away) and `output`.
/// Returns how the process ended, or None if the client went away first.
pub(crate) async fn run(
    mut p: Process,
    mut input: mpsc::Receiver<Input>,
    output: mpsc::Sender<(u8, Bytes)>,
) -> Option<Outcome> {
    let mut outcome: Option<Outcome> = None;
    let mut outputs_done = false;
    let mut input_open = true;
    let drain = tokio::time::sleep(Duration::from_secs(u64::MAX / 4));
    tokio::pin!(drain);
    loop {
        if outcome.is_some() && outputs_done {
            return outcome;
        }
        tokio::select! {
            msg = input.recv(), if input_open => match msg {
                Some(Input::Stdin(data)) => {
                    if let Some(stdin) = &p.stdin {
                        if stdin.send(data).await.is_err() {
                            p.stdin = None;
                        }
                    }
                }
                Some(Input::StdinEof) => p.stdin = None,
                Some(Input::Resize(data)) => {
                    if let Some(resize) = &p.resize {
                        resize(&data);
                    }
                }
                None => {
                    if outcome.is_some() {
                        // Already finished: let the output drain for nobody.
                        input_open = false;
                        continue;
                    }
                    // The client went away: nobody is left to see the output.
                    return None;
                }
            },
            out = p.out.recv(), if !outputs_done => match out {
                Some(chunk) => {
                    if output.send(chunk).await.is_err() {
                        return None;
                    }
                }
                None => outputs_done = true,
            },
            o = &mut p.exit, if outcome.is_none() => {
                outcome = Some(o.unwrap_or_else(|_| Outcome::Error("the process vanished".into())));
                p.stdin = None;
                drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_GRACE);
            },
            _ = &mut drain, if outcome.is_some() => outputs_done = true,
        }
    }
}

/// The error channel's final message for `protocol`, None when nothing is sent.
pub(crate) fn final_message(protocol: Protocol, outcome: &Outcome, req: &Request) -> Option<Bytes> {
    let (status, message) = match outcome {
        Outcome::Exit(0) => (json!({"metadata": {}, "status": "Success"}), None),
        Outcome::Exit(_) if !req.report_exit_code => {
            (json!({"metadata": {}, "status": "Success"}), None)
        }
        Outcome::Exit(code) => {
            let message = format!(
                "command terminated with non-zero exit code: error executing command {:?}, exit code {code}",
                req.command
            );
            (
                json!({"metadata": {}, "status": "Failure", "message": message,
                    "reason": "NonZeroExitCode",
                    "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}}),
                Some(message),
            )
        }
        Outcome::Error(message) => (
            json!({"metadata": {}, "status": "Failure", "message": message,
                "reason": "InternalError", "code": 500}),
            Some(message.clone()),
        ),
    };
    if protocol.version >= 4 {
        Some(Bytes::from(status.to_string()))
    } else {
        message.map(Bytes::from)
    }
}

/// A close frame with code 1000: client-go treats a close without a code (1005) as an error.
pub(crate) fn normal_close() -> Message {
    Message::Close(Some(axum::extract::ws::CloseFrame {
        code: axum::extract::ws::close_code::NORMAL,
        reason: "".into(),
    }))
}

/// One message on channel `channel` in `protocol`'s encoding.
pub(crate) fn ws_frame(base64: bool, channel: u8, data: &[u8]) -> Message {
    if base64 {
        let mut s = String::with_capacity(1 + data.len().div_ceil(3) * 4);
        s.push(char::from(b'0' + channel));
        base64::engine::general_purpose::STANDARD.encode_string(data, &mut s);
        Message::Text(s.into())
    } else {
        let mut v = Vec::with_capacity(data.len() + 1);
        v.push(channel);
        v.extend_from_slice(data);
        Message::Binary(Bytes::from(v))
    }
}

/// A client message as (channel, payload); TEXT frames count like BINARY ones.
pub(crate) fn ws_decode(base64: bool, msg: Message) -> Option<(u8, Bytes)> {
    let raw: Bytes = match msg {
        Message::Binary(b) => b,
        Message::Text(t) => Bytes::copy_from_slice(t.as_str().as_bytes()),
        _ => return None,
    };
    let (&first, rest) = raw.split_first()?;
    if base64 {
        let channel = first.checked_sub(b'0')?;
        let data = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        Some((channel, Bytes::from(data)))
    } else {
        Some((first, raw.slice(1..)))
    }
}

/// Serves a session over a WebSocket: `start` makes the process (an error is reported on the
/// error channel).
pub(crate) async fn serve_websocket(
    socket: WebSocket,
    protocol: Protocol,
    req: Request,
    start: impl FnOnce() -> Result<Process, String>,
) {
    let (mut tx, mut rx) = socket.split();
    let b64 = protocol.base64;
    // Like upstream: one empty message on the lowest writable channel tells the client the
    // session is established.
    let first = if req.stdout {
        STDOUT
    } else if req.stderr {
        STDERR
    } else {
        ERROR
    };
    if tx.send(ws_frame(b64, first, &[])).await.is_err() {
        return;
    }
    let outcome = match start() {
        Err(message) => Some(Outcome::Error(message)),
        Ok(process) => {
            let (in_tx, in_rx) = mpsc::channel(16);
            let (out_tx, mut out_rx) = mpsc::channel::<(u8, Bytes)>(16);
            let v5 = protocol.version >= 5;
            let reader = async move {
                while let Some(msg) = rx.next().await {
                    let msg = match msg {
                        Ok(Message::Close(_)) | Err(_) => return,
                        Ok(m) => m,
                    };
                    let Some((channel, data)) = ws_decode(b64, msg) else {
                        continue;
                    };
                    let input = match channel {
                        STDIN => Input::Stdin(data),
                        RESIZE => Input::Resize(data),
                        CLOSE if v5 && data.first() == Some(&STDIN) => Input::StdinEof,
                        _ => continue,
                    };
                    if in_tx.send(input).await.is_err() {
                        return;
                    }
                }
            };
            let session = run(process, in_rx, out_tx);
            let writer = async {
                while let Some((ch, data)) = out_rx.recv().await {
                    if tx.send(ws_frame(b64, ch, &data)).await.is_err() {
                        return false;
                    }
                }
                true
            };
            // The reader ends when the client closes; the session decides the end otherwise.
            let reader = tokio::spawn(reader);
            let (outcome, _) = tokio::join!(session, writer);
            reader.abort();
            outcome
        }
    };
    let Some(outcome) = outcome else {
        return;
    };
    if let Some(msg) = final_message(protocol, &outcome, &req) {
        let _ = tx.send(ws_frame(b64, ERROR, &msg)).await;
    }
    let _ = tx.send(normal_close()).await;
    let _ = tx.flush().await;
}

/// Serves a session over a SPDY connection: waits for the streams the request implies, then
/// runs the process.
pub(crate) async fn serve_spdy<IO>(
    io: IO,
    protocol: Protocol,
    req: Request,
    start: impl FnOnce() -> Result<Process, String>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    let (streams_tx, mut streams_rx) = mpsc::channel(8);
    let conn = tokio::spawn(spdy::serve(io, streams_tx));
    let mut expected = vec!["error"];
    if req.stdin {
        expected.push("stdin");
    }
    if req.stdout {
        expected.push("stdout");
    }
    if req.stderr {
        expected.push("stderr");
    }
    if req.tty && protocol.version >= 3 {
        expected.push("resize");
    }
    let mut got: Vec<(String, spdy::Stream)> = Vec::new();
    let deadline = tokio::time::sleep(STREAM_WAIT);
    tokio::pin!(deadline);
    while !expected.iter().all(|e| got.iter().any(|(k, _)| k == e)) {
        tokio::select! {
            s = streams_rx.recv() => match s {
                Some(s) => {
                    let kind = spdy::header(&s.headers, "streamtype").unwrap_or("").to_string();
                    got.push((kind, s));
                }
                None => return,
            },
            _ = &mut deadline => {
                tracing::debug!("SPDY client did not open its streams in time");
                conn.abort();
                return;
            }
        }
    }
    let mut take = |name: &str| {
        got.iter()
            .position(|(k, _)| k == name)
            .map(|i| got.swap_remove(i).1)
    };
    let error = take("error");
    let stdin = take("stdin");
    let stdout = take("stdout");
    let stderr = take("stderr");
    let resize = take("resize");
    let writers: Vec<(u8, spdy::StreamWriter)> = [
        (ERROR, error.as_ref()),
        (STDOUT, stdout.as_ref()),
        (STDERR, stderr.as_ref()),
        (STDIN, stdin.as_ref()),
        (RESIZE, resize.as_ref()),
    ]
    .into_iter()
    .filter_map(|(ch, s)| s.map(|s| (ch, s.tx.clone())))
    .collect();
    let outcome = match start() {
        Err(message) => Some(Outcome::Error(message)),
        Ok(process) => {
            let (in_tx, in_rx) = mpsc::channel(16);
            let (out_tx, mut out_rx) = mpsc::channel::<(u8, Bytes)>(16);
            let mut pumps = Vec::new();
            if let Some(mut s) = stdin {
                let in_tx = in_tx.clone();
                pumps.push(tokio::spawn(async move {
                    while let Some(data) = s.rx.recv().await {
                        if in_tx.send(Input::Stdin(data)).await.is_err() {
                            return;
                        }
                    }
                    let _ = in_tx.send(Input::StdinEof).await;
                }));
            }
            if let Some(mut s) = resize {
                let in_tx = in_tx.clone();
                pumps.push(tokio::spawn(async move {
                    // A stream of JSON objects, one per resize.
                    let mut pending: Vec<u8> = Vec::new();
                    while let Some(data) = s.rx.recv().await {
                        pending.extend_from_slice(&data);
                        if pending.len() > 64 * 1024 {
                            return;
                        }
                        let mut it = serde_json::Deserializer::from_slice(&pending)
                            .into_iter::<serde_json::Value>();
                        let mut used = 0;
                        while let Some(Ok(v)) = it.next() {
                            used = it.byte_offset();
                            let _ = in_tx.send(Input::Resize(Bytes::from(v.to_string()))).await;
                        }
                        pending.drain(..used);
                    }
                }));
            }
            // The client went away when the connection ends.
            let gone = async move {
                while streams_rx.recv().await.is_some() {}
                drop(in_tx);
            };
            let gone = tokio::spawn(gone);
            let session = run(process, in_rx, out_tx);
            let out_writers = writers.clone();
            let writer = async move {
                while let Some((ch, data)) = out_rx.recv().await {
                    if let Some((_, w)) = out_writers.iter().find(|(c, _)| *c == ch) {
                        if !w.send(data).await {
                            return;
                        }
                    }
                }
            };
            let (outcome, _) = tokio::join!(session, writer);
            gone.abort();
            for p in pumps {
                p.abort();
            }
            outcome
        }
    };
    if let Some(outcome) = outcome {
        if let Some(msg) = final_message(protocol, &outcome, &req) {
            if let Some((_, w)) = writers.iter().find(|(c, _)| *c == ERROR) {
                w.send(msg).await;
            }
        }
        for (_, w) in &writers {
            w.close().await;
        }
    }
    drop(writers);
    // The client closes the connection once it read everything.
    let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
}

/// Picks the first protocol the client offers (comma-separated, possibly repeated headers)
/// that we support; Err = upstream's 400/403 text.
pub(crate) fn negotiate_spdy(
    headers: &http::HeaderMap,
    supported: &[&str],
) -> Result<String, (u16, String)> {
    let offered: Vec<String> = headers
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    if offered.is_empty() {
        return Err((
            400,
            "unable to upgrade: header X-Stream-Protocol-Version does not exist in request".into(),
        ));
    }
    offered
        .iter()
        .find(|o| supported.contains(&o.as_str()))
        .cloned()
        .ok_or_else(|| {
            (
                403,
                format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {supported:?}"
            ),
            )
        })
}

/// The 101 answer to a SPDY upgrade.
pub(crate) fn spdy_switching(protocol: &str) -> axum::response::Response {
    let mut resp = axum::response::Response::new(axum::body::Body::empty());
    *resp.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("SPDY/3.1"),
    );
    if let Ok(v) = http::HeaderValue::from_str(protocol) {
        h.insert("x-stream-protocol-version", v);
    }
    resp
}

/// Whether the request asks for a WebSocket (else SPDY, if it asks for an upgrade at all).
pub(crate) fn wants_websocket(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

pub(crate) fn wants_spdy(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("spdy/3"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> Request {
        Request {
            command: vec!["sh".into(), "-c".into(), "exit 3".into()],
            stdin: false,
            stdout: true,
            stderr: true,
            tty: false,
            report_exit_code: true,
        }
    }

    #[test]
    fn the_error_channel_matches_the_protocol_version() {
        let v1 = Protocol::parse("channel.k8s.io").expect("v1");
        let v4 = Protocol::parse("v4.base64.channel.k8s.io").expect("v4");
        assert!(v4.base64);
        assert_eq!(final_message(v1, &Outcome::Exit(0), &req()), None);
        let text = final_message(v1, &Outcome::Exit(3), &req()).expect("text");
        assert!(text.starts_with(b"command terminated with non-zero exit code"));
        let status = final_message(v4, &Outcome::Exit(3), &req()).expect("json");
        let v: serde_json::Value = serde_json::from_slice(&status).expect("json");
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "3");
        assert_eq!(
            final_message(v4, &Outcome::Exit(0), &req()).as_deref(),
            Some(&br#"{"metadata":{},"status":"Success"}"#[..])
        );
        assert_eq!(Protocol::parse("v6.channel.k8s.io"), None);
    }

    #[test]
    fn base64_frames_round_trip_and_text_frames_carry_stdin() {
        let m = ws_frame(true, STDOUT, b"hello");
        assert_eq!(m, Message::Text("1aGVsbG8=".into()));
        assert_eq!(
            ws_decode(true, Message::Text("0aGk=".into())),
            Some((STDIN, Bytes::from_static(b"hi")))
        );
        assert_eq!(
            ws_decode(false, Message::Text("\u{0}abc".into())),
            Some((STDIN, Bytes::from_static(b"abc")))
        );
        assert_eq!(ws_decode(true, Message::Text("0!!".into())), None);
    }

    #[test]
    fn spdy_negotiation_picks_the_clients_first_supported_version() {
        let mut h = http::HeaderMap::new();
        h.append(
            "x-stream-protocol-version",
            "v6.channel.k8s.io".parse().unwrap(),
        );
        h.append(
            "x-stream-protocol-version",
            "v4.channel.k8s.io".parse().unwrap(),
        );
        h.append(
            "x-stream-protocol-version",
            "channel.k8s.io".parse().unwrap(),
        );
        assert_eq!(
            negotiate_spdy(&h, SPDY_PROTOCOLS).as_deref(),
            Ok("v4.channel.k8s.io")
        );
        let mut h = http::HeaderMap::new();
        h.append(
            "x-stream-protocol-version",
            "portforward.k8s.io".parse().unwrap(),
        );
        assert_eq!(
            negotiate_spdy(&h, SPDY_PROTOCOLS).map_err(|e| e.0),
            Err(403)
        );
        assert_eq!(
            negotiate_spdy(&http::HeaderMap::new(), SPDY_PROTOCOLS).map_err(|e| e.0),
            Err(400)
        );
    }
}
