//! `GET /containerLogs/{ns}/{pod}/{container}`: the container's CRI log file rendered as plain
//! text like the kubelet does (P records joined up to their F record, optional timestamps,
//! tailLines/sinceSeconds/limitBytes), streamed while following. With a WebSocket upgrade
//! (upstream's `binary.k8s.io` / `base64.binary.k8s.io`) each chunk is one message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{FromRequest, Path, Request, State};
use axum::response::Response;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::{bad_request, query_flag, query_get, query_pairs, ApiState};

/// How often a follow looks for new log data (and whether the container is still running).
const POLL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Default)]
pub(crate) struct LogOptions {
    pub follow: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    /// Only lines at or after this instant.
    pub since: Option<jiff::Timestamp>,
    pub limit_bytes: Option<u64>,
}

fn parse_opts(pairs: &[(String, String)]) -> Result<LogOptions, String> {
    let num = |name: &str| -> Result<Option<i64>, String> {
        match query_get(pairs, name).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| format!("invalid value for {name}: {v:?}")),
        }
    };
    let tail_lines = match num("tailLines")? {
        Some(n) if n < 0 => return Err("tailLines must be greater than or equal to 0".into()),
        n => n.map(|n| n as usize),
    };
    let since = match num("sinceSeconds")? {
        Some(n) if n < 1 => return Err("sinceSeconds must be greater than 0".into()),
        Some(n) => Some(
            jiff::Timestamp::now()
                .checked_sub(jiff::SignedDuration::from_secs(n))
                .unwrap_or(jiff::Timestamp::MIN),
        ),
        None => None,
    };
    let limit_bytes = match num("limitBytes")? {
        Some(n) if n < 1 => return Err("limitBytes must be greater than 0".into()),
        n => n.map(|n| n as u64),
    };
    Ok(LogOptions {
        follow: query_flag(pairs, "follow"),
        timestamps: query_flag(pairs, "timestamps"),
        tail_lines,
        since,
        limit_bytes,
    })
}

pub(crate) async fn handle(
    State(st): State<Arc<ApiState>>,
    Path((ns, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let pairs = query_pairs(req.uri());
    let opts = match parse_opts(&pairs) {
        Ok(o) => o,
        Err(m) => return bad_request(&m),
    };
    let previous = query_flag(&pairs, "previous");
    let cref = match st.index.lookup(&ns, &pod, Some(&container), previous) {
        Ok(c) => c,
        Err(m) => return bad_request(&m),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let index = st.index.clone();
    // File reads and the follow loop are blocking; one blocking thread per open log stream.
    tokio::task::spawn_blocking(move || {
        let follow = opts.follow && cref.running && !previous;
        let still_running = move || {
            index
                .lookup(&ns, &pod, Some(&container), false)
                .is_ok_and(|c| c.running && c.container_id == cref.container_id)
        };
        stream(&cref.log_path, &opts, follow, still_running, &tx);
    });
    if super::remotecommand::wants_websocket(req.headers()) {
        let ws = match WebSocketUpgrade::from_request(req, &()).await {
            Ok(ws) => ws.protocols(["binary.k8s.io", "base64.binary.k8s.io"]),
            Err(e) => return bad_request(&format!("bad WebSocket upgrade: {e}")),
        };
        let base64 = ws
            .selected_protocol()
            .is_some_and(|p| p.as_bytes() == b"base64.binary.k8s.io");
        return ws.on_upgrade(move |socket| websocket(socket, rx, base64));
    }
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| bad_request("building the response"))
}

/// Sends each chunk as one message, then a normal close; a client that goes away drops `rx`,
/// which ends the log reader.
async fn websocket(socket: axum::extract::ws::WebSocket, mut rx: mpsc::Receiver<Bytes>, b64: bool) {
    use base64::Engine;
    use futures::{SinkExt, StreamExt};
    let (mut tx, mut incoming) = socket.split();
    loop {
        tokio::select! {
            chunk = rx.recv() => {
                let Some(chunk) = chunk else { break };
                let msg = if b64 {
                    Message::Text(base64::engine::general_purpose::STANDARD.encode(&chunk).into())
                } else {
                    Message::Binary(chunk)
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
            msg = incoming.next() => match msg {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = tx.send(super::remotecommand::normal_close()).await;
    let _ = tx.flush().await;
}

/// Renders CRI records as the kubelet does: P records joined up to their F record, the
/// line's timestamp (its first record's) in front with `timestamps`, lines before `since`
/// dropped. Streams: a line is never buffered whole, so memory stays bounded.
#[derive(Default)]
struct Renderer {
    /// The next record starts a line.
    mid_line: bool,
    /// Whether the current line is sent (sinceTime).
    keep: bool,
}

impl Renderer {
    fn push(&mut self, opts: &LogOptions, record: &[u8], out: &mut Vec<u8>) {
        let Some(rec) = skiff_runtime::parse_cri_line(record) else {
            return;
        };
        if !self.mid_line {
            self.keep = match opts.since {
                None => true,
                Some(since) => rec
                    .time
                    .parse::<jiff::Timestamp>()
                    .map_or(true, |t| t >= since),
            };
            if self.keep && opts.timestamps {
                out.extend_from_slice(rec.time.as_bytes());
                out.push(b' ');
            }
        }
        if self.keep {
            out.extend_from_slice(&rec.text);
            if rec.full {
                out.push(b'\n');
            }
        }
        self.mid_line = !rec.full;
    }
}

/// Writes to the client; false once the client went away or the byte limit was hit.
struct Sink<'a> {
    tx: &'a mpsc::Sender<Bytes>,
    opts: &'a LogOptions,
    written: u64,
}

impl Sink<'_> {
    fn send(&mut self, buf: &mut Vec<u8>) -> bool {
        if buf.is_empty() {
            return !self.tx.is_closed();
        }
        let mut data = std::mem::take(buf);
        let mut done = false;
        if let Some(limit) = self.opts.limit_bytes {
            let room = limit.saturating_sub(self.written) as usize;
            if data.len() >= room {
                data.truncate(room);
                done = true;
            }
        }
        self.written += data.len() as u64;
        if !data.is_empty() && self.tx.blocking_send(Bytes::from(data)).is_err() {
            return false;
        }
        !done
    }
}

/// Bytes sent to the client per chunk.
const CHUNK: usize = 64 * 1024;

/// The whole log request: from the start of the rotated logs (or tailLines before the end,
/// found by scanning backwards), sinceSeconds/limitBytes applied while streaming, then with
/// `follow` new lines, across rotations, until `still_running` says the container is gone.
fn stream(
    path: &std::path::Path,
    opts: &LogOptions,
    follow: bool,
    still_running: impl Fn() -> bool,
    tx: &mpsc::Sender<Bytes>,
) {
    use skiff_runtime::logfile::{LogReader, RecordReader, Start};
    let start = match opts.tail_lines {
        Some(n) => Start::TailLines(n),
        None => Start::Beginning,
    };
    let Ok(reader) = LogReader::open(path, start) else {
        return;
    };
    let mut records = RecordReader::new(reader);
    let mut render = Renderer::default();
    let mut sink = Sink {
        tx,
        opts,
        written: 0,
    };
    let mut out = Vec::with_capacity(CHUNK);
    let mut last_check = Instant::now();
    loop {
        match records.next_record() {
            Ok(Some(rec)) => {
                render.push(opts, &rec, &mut out);
                if out.len() >= CHUNK && !sink.send(&mut out) {
                    return;
                }
                continue;
            }
            Ok(None) => {}
            Err(_) => return,
        }
        if !sink.send(&mut out) {
            return;
        }
        if !follow {
            // An unterminated last record (a write in progress) is shown as is.
            let rest = records.rest();
            if !rest.is_empty() {
                render.push(opts, &rest, &mut out);
                sink.send(&mut out);
            }
            return;
        }
        if last_check.elapsed() >= POLL {
            last_check = Instant::now();
            if !still_running() {
                // The container is gone: drain what it wrote last, then end the stream.
                while let Ok(Some(rec)) = records.next_record() {
                    render.push(opts, &rec, &mut out);
                    if out.len() >= CHUNK && !sink.send(&mut out) {
                        return;
                    }
                }
                let rest = records.rest();
                if !rest.is_empty() {
                    render.push(opts, &rest, &mut out);
                }
                sink.send(&mut out);
                return;
            }
        }
        std::thread::sleep(POLL / 8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_runtime::{format_cri_line, Stream};
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn write(path: &std::path::Path, lines: &[(&str, bool, &str)]) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        for (t, full, text) in lines {
            f.write_all(&format_cri_line(t, Stream::Stdout, *full, text.as_bytes()))
                .unwrap();
        }
    }

    fn collect(path: &std::path::Path, opts: LogOptions) -> String {
        let (tx, mut rx) = mpsc::channel(16);
        stream(path, &opts, false, || false, &tx);
        drop(tx);
        let mut out = Vec::new();
        while let Some(b) = rx.blocking_recv() {
            out.extend_from_slice(&b);
        }
        String::from_utf8(out).unwrap()
    }

    const OLD: &str = "2020-01-01T00:00:00.000000000Z";

    #[test]
    fn tail_across_rotation_limit_and_since() {
        let d = tempfile::tempdir().unwrap();
        let live = d.path().join("container.log");
        let rotated = d.path().join("container.log.1");
        write(
            &rotated,
            &[(OLD, true, "a"), (OLD, true, "b"), (OLD, false, "c1-")],
        );
        let now = jiff::Timestamp::now().to_string();
        // "c1-" + "c2" is one line split across the rotation boundary.
        write(
            &live,
            &[(OLD, true, "c2"), (&now, true, "d"), (&now, true, "e")],
        );
        let all = collect(&live, LogOptions::default());
        assert_eq!(all, "a\nb\nc1-c2\nd\ne\n");
        let tail = |n| {
            collect(
                &live,
                LogOptions {
                    tail_lines: Some(n),
                    ..Default::default()
                },
            )
        };
        assert_eq!(tail(1), "e\n");
        assert_eq!(tail(3), "c1-c2\nd\ne\n");
        assert_eq!(tail(4), "b\nc1-c2\nd\ne\n");
        assert_eq!(tail(100), all);
        assert_eq!(tail(0), "");
        let limited = collect(
            &live,
            LogOptions {
                limit_bytes: Some(7),
                ..Default::default()
            },
        );
        assert_eq!(limited, "a\nb\nc1-");
        let since = collect(
            &live,
            LogOptions {
                since: Some(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60)),
                timestamps: true,
                ..Default::default()
            },
        );
        assert_eq!(since, format!("{now} d\n{now} e\n"));
    }

    #[test]
    fn follow_continues_after_rotation() {
        let d = tempfile::tempdir().unwrap();
        let live = d.path().join("container.log");
        write(&live, &[(OLD, true, "1")]);
        let running = std::sync::Arc::new(AtomicBool::new(true));
        let (tx, mut rx) = mpsc::channel(16);
        let (path, r) = (live.clone(), running.clone());
        let t = std::thread::spawn(move || {
            let opts = LogOptions {
                follow: true,
                ..Default::default()
            };
            stream(&path, &opts, true, || r.load(Ordering::SeqCst), &tx);
        });
        let mut got = Vec::new();
        let mut wait_for = |want: &str| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !String::from_utf8_lossy(&got).ends_with(want) {
                assert!(
                    Instant::now() < deadline,
                    "{:?}",
                    String::from_utf8_lossy(&got)
                );
                if let Ok(b) = rx.try_recv() {
                    got.extend_from_slice(&b);
                } else {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        };
        wait_for("1\n");
        write(&live, &[(OLD, true, "2")]);
        // Rotate twice before the follower looks again: .2 is the file it was reading.
        std::fs::rename(&live, d.path().join("container.log.1")).unwrap();
        write(&live, &[(OLD, true, "3")]);
        std::fs::rename(
            d.path().join("container.log.1"),
            d.path().join("container.log.2"),
        )
        .unwrap();
        std::fs::rename(&live, d.path().join("container.log.1")).unwrap();
        write(&live, &[(OLD, true, "4")]);
        wait_for("1\n2\n3\n4\n");
        write(&live, &[(OLD, true, "5")]);
        running.store(false, Ordering::SeqCst);
        t.join().unwrap();
        while let Ok(b) = rx.try_recv() {
            got.extend_from_slice(&b);
        }
        assert_eq!(String::from_utf8_lossy(&got), "1\n2\n3\n4\n5\n");
    }
}
