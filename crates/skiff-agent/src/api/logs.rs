//! `GET /containerLogs/{ns}/{pod}/{container}`: the container's CRI log file rendered as plain
//! text like the kubelet does (P records joined up to their F record, optional timestamps,
//! tailLines/sinceSeconds/limitBytes), streamed while following.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
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
    uri: http::Uri,
) -> Response {
    let pairs = query_pairs(&uri);
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
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
    });
    Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| bad_request("building the response"))
}

/// One reconstructed log line (with its trailing newline, if it had one).
struct Line {
    time: String,
    text: Vec<u8>,
}

/// Turns CRI records into lines: P records are joined until their F record.
#[derive(Default)]
struct Assembler {
    raw: Vec<u8>,
    partial: Option<Line>,
}

impl Assembler {
    fn push(&mut self, data: &[u8], out: &mut Vec<Line>) {
        self.raw.extend_from_slice(data);
        let mut start = 0;
        while let Some(pos) = self.raw[start..].iter().position(|b| *b == b'\n') {
            let record = &self.raw[start..start + pos];
            start += pos + 1;
            let Some(rec) = skiff_runtime::parse_cri_line(record) else {
                continue;
            };
            let line = self.partial.get_or_insert_with(|| Line {
                time: rec.time.clone(),
                text: Vec::new(),
            });
            line.text.extend_from_slice(&rec.text);
            if rec.full {
                line.text.push(b'\n');
                if let Some(l) = self.partial.take() {
                    out.push(l);
                }
            }
        }
        self.raw.drain(..start);
    }

    /// At the very end: whatever is still partial (an unterminated last record).
    fn finish(&mut self, out: &mut Vec<Line>) {
        if !self.raw.is_empty() {
            let raw = std::mem::take(&mut self.raw);
            if let Some(rec) = skiff_runtime::parse_cri_line(&raw) {
                let line = self.partial.get_or_insert_with(|| Line {
                    time: rec.time.clone(),
                    text: Vec::new(),
                });
                line.text.extend_from_slice(&rec.text);
            }
        }
        if let Some(l) = self.partial.take() {
            out.push(l);
        }
    }
}

/// Writes lines to the client; false once the client went away or the byte limit was hit.
struct Sink<'a> {
    tx: &'a mpsc::Sender<Bytes>,
    opts: &'a LogOptions,
    written: u64,
}

impl Sink<'_> {
    fn keep(&self, line: &Line) -> bool {
        match self.opts.since {
            None => true,
            Some(since) => line
                .time
                .parse::<jiff::Timestamp>()
                .map_or(true, |t| t >= since),
        }
    }

    fn send(&mut self, lines: Vec<Line>) -> bool {
        let mut buf = Vec::new();
        for line in lines {
            if self.opts.timestamps {
                buf.extend_from_slice(line.time.as_bytes());
                buf.push(b' ');
            }
            buf.extend_from_slice(&line.text);
        }
        if buf.is_empty() {
            return !self.tx.is_closed();
        }
        let mut done = false;
        if let Some(limit) = self.opts.limit_bytes {
            let room = limit.saturating_sub(self.written) as usize;
            if buf.len() >= room {
                buf.truncate(room);
                done = true;
            }
        }
        self.written += buf.len() as u64;
        if !buf.is_empty() && self.tx.blocking_send(Bytes::from(buf)).is_err() {
            return false;
        }
        !done
    }
}

fn read_more(file: &mut Option<File>, buf: &mut Vec<u8>) -> usize {
    buf.clear();
    match file {
        Some(f) => f.read_to_end(buf).unwrap_or(0),
        None => 0,
    }
}

/// The whole log request: the existing content (tail/since applied), then with `follow` new
/// lines until `still_running` says the container is gone (and the file is drained).
fn stream(
    path: &std::path::Path,
    opts: &LogOptions,
    follow: bool,
    still_running: impl Fn() -> bool,
    tx: &mpsc::Sender<Bytes>,
) {
    let mut file = File::open(path).ok();
    let mut asm = Assembler::default();
    let mut sink = Sink {
        tx,
        opts,
        written: 0,
    };
    let mut buf = Vec::new();
    // Existing content: tailLines needs the last N lines, so collect before sending.
    let mut lines = Vec::new();
    read_more(&mut file, &mut buf);
    asm.push(&buf, &mut lines);
    if !follow {
        asm.finish(&mut lines);
    }
    let mut lines: VecDeque<Line> = lines.into_iter().filter(|l| sink.keep(l)).collect();
    if let Some(n) = opts.tail_lines {
        while lines.len() > n {
            lines.pop_front();
        }
    }
    if !sink.send(lines.into()) || !follow {
        return;
    }
    let mut last_check = Instant::now();
    loop {
        let n = read_more(&mut file, &mut buf);
        if n > 0 {
            let mut out = Vec::new();
            asm.push(&buf, &mut out);
            if !sink.send(out) {
                return;
            }
            continue;
        }
        if tx.is_closed() {
            return;
        }
        if last_check.elapsed() >= POLL {
            last_check = Instant::now();
            if !still_running() {
                // The container is gone: drain what it wrote last, then end the stream.
                let mut out = Vec::new();
                read_more(&mut file, &mut buf);
                asm.push(&buf, &mut out);
                asm.finish(&mut out);
                sink.send(out);
                return;
            }
            // A log file that did not exist yet when the request came in.
            if file.is_none() {
                file = File::open(path).ok();
            }
        }
        std::thread::sleep(POLL / 4);
    }
}
