//! A SPDY/3.1 server: the framer ([`Decoder`], [`Encoder`]) and a session ([`serve`]) that hands
//! every stream the client opens to the caller. kubectl speaks SPDY for port-forward (inside a
//! WebSocket or after a plain `Upgrade: SPDY/3.1`) and as the exec/attach fallback; no SPDY
//! crate is maintained, so this is written from the SPDY/3.1 draft.
//!
//! Header blocks are one zlib stream per direction, primed with the draft's dictionary.
//! Flow control: every stream starts with a 64 KiB receive window and we send WINDOW_UPDATE as
//! the application consumes data. We do not *wait* on the peer's window: client-go's SPDY
//! library (spdystream) never sends WINDOW_UPDATE, so a sender that honoured the window would
//! stall kubectl after 64 KiB. Memory stays bounded because each stream's inbound queue is
//! bounded and the session reader blocks (TCP back-pressure) when it is full.

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// The SPDY/3 header compression dictionary (draft-mbelshe-httpbis-spdy-00 §2.6.10.1).
pub(crate) const DICTIONARY: &[u8] = include_bytes!("spdy3_dictionary.bin");

const VERSION: u16 = 3;
/// Largest frame payload we accept (the wire allows 16 MiB; client-go writes ≤ 32 KiB).
pub(crate) const MAX_FRAME: usize = 1 << 20;
/// Largest decompressed header block (name/value pairs are tiny in Kubernetes' use).
pub(crate) const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// Initial per-stream window (SPDY/3 default).
pub(crate) const INITIAL_WINDOW: u32 = 64 * 1024;
/// Streams one session may have open at once (kubectl uses 2 per forwarded connection).
const MAX_STREAMS: usize = 1024;
/// Chunks queued per stream towards the application.
const STREAM_QUEUE: usize = 8;

const FLAG_FIN: u8 = 0x01;
const FLAG_UNIDIRECTIONAL: u8 = 0x02;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status codes.
pub(crate) const PROTOCOL_ERROR: u32 = 1;
pub(crate) const INVALID_STREAM: u32 = 2;
pub(crate) const REFUSED_STREAM: u32 = 3;
pub(crate) const FLOW_CONTROL_ERROR: u32 = 7;
pub(crate) const STREAM_IN_USE: u32 = 8;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpdyError {
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    #[error("SPDY frame of {0} bytes is too large")]
    TooLarge(usize),
    #[error("malformed SPDY {0} frame")]
    Malformed(&'static str),
    #[error("SPDY header block: {0}")]
    Headers(String),
}

pub type Headers = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream: u32,
        fin: bool,
        data: Bytes,
    },
    SynStream {
        stream: u32,
        associated: u32,
        priority: u8,
        fin: bool,
        unidirectional: bool,
        headers: Headers,
    },
    SynReply {
        stream: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream: u32,
        status: u32,
    },
    Settings {
        clear: bool,
        /// (flags, id, value)
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good: u32,
        status: u32,
    },
    Headers {
        stream: u32,
        fin: bool,
        headers: Headers,
    },
    WindowUpdate {
        stream: u32,
        delta: u32,
    },
}

/// The first value of header `name` (SPDY/3 names are lower case; values may hold several
/// NUL-separated values).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.split('\0').next().unwrap_or(""))
}

/// Parses frames from bytes; owns the inbound zlib stream.
pub struct Decoder {
    z: Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Decoder {
            z: Decompress::new(true),
        }
    }

    /// The next complete frame at the front of `buf` (consumed), or None if more bytes are
    /// needed. Unknown control frame types are skipped, as the draft requires.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        loop {
            if buf.len() < 8 {
                return Ok(None);
            }
            let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
            if len > MAX_FRAME {
                return Err(SpdyError::TooLarge(len));
            }
            if buf.len() < 8 + len {
                buf.reserve(8 + len - buf.len());
                return Ok(None);
            }
            let head = buf.split_to(8);
            let mut body = buf.split_to(len).freeze();
            let flags = head[4];
            let fin = flags & FLAG_FIN != 0;
            if head[0] & 0x80 == 0 {
                let stream = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
                return Ok(Some(Frame::Data {
                    stream,
                    fin,
                    data: body,
                }));
            }
            let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
            if version != VERSION {
                return Err(SpdyError::Version(version));
            }
            let kind = u16::from_be_bytes([head[2], head[3]]);
            let need = |n: usize, what: &'static str| {
                if len < n {
                    Err(SpdyError::Malformed(what))
                } else {
                    Ok(())
                }
            };
            let frame = match kind {
                TYPE_SYN_STREAM => {
                    need(10, "SYN_STREAM")?;
                    let stream = body.get_u32() & 0x7fff_ffff;
                    let associated = body.get_u32() & 0x7fff_ffff;
                    let priority = body.get_u8() >> 5;
                    let _slot = body.get_u8();
                    let headers = self.headers(&body)?;
                    Frame::SynStream {
                        stream,
                        associated,
                        priority,
                        fin,
                        unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                        headers,
                    }
                }
                TYPE_SYN_REPLY | TYPE_HEADERS => {
                    need(4, "SYN_REPLY")?;
                    let stream = body.get_u32() & 0x7fff_ffff;
                    let headers = self.headers(&body)?;
                    if kind == TYPE_SYN_REPLY {
                        Frame::SynReply {
                            stream,
                            fin,
                            headers,
                        }
                    } else {
                        Frame::Headers {
                            stream,
                            fin,
                            headers,
                        }
                    }
                }
                TYPE_RST_STREAM => {
                    need(8, "RST_STREAM")?;
                    Frame::RstStream {
                        stream: body.get_u32() & 0x7fff_ffff,
                        status: body.get_u32(),
                    }
                }
                TYPE_SETTINGS => {
                    need(4, "SETTINGS")?;
                    let n = body.get_u32() as usize;
                    if body.len() != n.saturating_mul(8) {
                        return Err(SpdyError::Malformed("SETTINGS"));
                    }
                    let mut entries = Vec::with_capacity(n);
                    for _ in 0..n {
                        let fid = body.get_u32();
                        entries.push(((fid >> 24) as u8, fid & 0x00ff_ffff, body.get_u32()));
                    }
                    Frame::Settings {
                        clear: flags & FLAG_FIN != 0,
                        entries,
                    }
                }
                TYPE_PING => {
                    need(4, "PING")?;
                    Frame::Ping { id: body.get_u32() }
                }
                TYPE_GOAWAY => {
                    need(8, "GOAWAY")?;
                    Frame::GoAway {
                        last_good: body.get_u32() & 0x7fff_ffff,
                        status: body.get_u32(),
                    }
                }
                TYPE_WINDOW_UPDATE => {
                    need(8, "WINDOW_UPDATE")?;
                    Frame::WindowUpdate {
                        stream: body.get_u32() & 0x7fff_ffff,
                        delta: body.get_u32() & 0x7fff_ffff,
                    }
                }
                // NOOP, CREDENTIAL and unknown types: ignored.
                _ => continue,
            };
            return Ok(Some(frame));
        }
    }

    fn headers(&mut self, compressed: &[u8]) -> Result<Headers, SpdyError> {
        let raw = self.inflate(compressed)?;
        parse_header_block(&raw)
    }

    fn inflate(&mut self, input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out: Vec<u8> = Vec::with_capacity((input.len() * 4).clamp(256, MAX_HEADER_BLOCK));
        let mut pos = 0;
        let mut retried = false;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(SpdyError::TooLarge(out.len()));
                }
                out.reserve(out.len().min(MAX_HEADER_BLOCK - out.len()).max(256));
            }
            let (in_before, out_before) = (self.z.total_in(), out.len());
            match self
                .z
                .decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| SpdyError::Headers(e.to_string()))?;
                }
                Err(e) => return Err(SpdyError::Headers(e.to_string())),
            }
            let consumed = (self.z.total_in() - in_before) as usize;
            pos += consumed;
            let produced = out.len() - out_before;
            if pos >= input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if consumed == 0 && produced == 0 && out.len() < out.capacity() {
                // Needed the dictionary (retry once) or the block is truncated.
                if self.z.total_in() == 0 && !retried {
                    retried = true;
                    continue;
                }
                return Err(SpdyError::Headers("truncated header block".into()));
            }
        }
    }
}

/// `[n u32][len u32 name][len u32 value]…`
pub fn parse_header_block(mut raw: &[u8]) -> Result<Headers, SpdyError> {
    let bad = || SpdyError::Headers("malformed name/value block".into());
    if raw.len() < 4 {
        return Err(bad());
    }
    let n = raw.get_u32() as usize;
    // Each pair takes at least 8 bytes: a count beyond that is a lie.
    if n > raw.len() / 8 {
        return Err(bad());
    }
    let mut out = Vec::with_capacity(n);
    let string = |raw: &mut &[u8]| -> Result<String, SpdyError> {
        if raw.len() < 4 {
            return Err(bad());
        }
        let l = raw.get_u32() as usize;
        if raw.len() < l {
            return Err(bad());
        }
        let s = String::from_utf8(raw[..l].to_vec()).map_err(|_| bad())?;
        raw.advance(l);
        Ok(s)
    };
    for _ in 0..n {
        let k = string(&mut raw)?;
        let v = string(&mut raw)?;
        if k.is_empty() {
            return Err(bad());
        }
        out.push((k.to_ascii_lowercase(), v));
    }
    Ok(out)
}

pub fn header_block(headers: &Headers) -> Vec<u8> {
    let mut raw = Vec::new();
    raw.put_u32(headers.len() as u32);
    for (k, v) in headers {
        raw.put_u32(k.len() as u32);
        raw.put_slice(k.to_ascii_lowercase().as_bytes());
        raw.put_u32(v.len() as u32);
        raw.put_slice(v.as_bytes());
    }
    raw
}

/// Serializes frames; owns the outbound zlib stream.
pub struct Encoder {
    z: Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    pub fn new() -> Self {
        let mut z = Compress::new(Compression::default(), true);
        // A fresh compressor accepts a dictionary; failing here would only cost compression.
        let _ = z.set_dictionary(DICTIONARY);
        Encoder { z }
    }

    fn deflate(&mut self, raw: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut pos = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(1024);
            }
            let before = self.z.total_in();
            self.z
                .compress_vec(&raw[pos..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Headers(e.to_string()))?;
            pos += (self.z.total_in() - before) as usize;
            if pos >= raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), SpdyError> {
        let control = |out: &mut BytesMut, kind: u16, flags: u8, body: &[u8]| {
            out.put_u16(0x8000 | VERSION);
            out.put_u16(kind);
            out.put_u32((u32::from(flags) << 24) | body.len() as u32);
            out.put_slice(body);
        };
        match frame {
            Frame::Data { stream, fin, data } => {
                if data.len() > MAX_FRAME {
                    return Err(SpdyError::TooLarge(data.len()));
                }
                out.put_u32(stream & 0x7fff_ffff);
                out.put_u32((u32::from(u8::from(*fin)) << 24) | data.len() as u32);
                out.put_slice(data);
            }
            Frame::SynStream {
                stream,
                associated,
                priority,
                fin,
                unidirectional,
                headers,
            } => {
                let mut body = Vec::new();
                body.put_u32(*stream);
                body.put_u32(*associated);
                body.put_u8(priority << 5);
                body.put_u8(0);
                body.extend(self.deflate(&header_block(headers))?);
                let flags = u8::from(*fin)
                    | if *unidirectional {
                        FLAG_UNIDIRECTIONAL
                    } else {
                        0
                    };
                control(out, TYPE_SYN_STREAM, flags, &body);
            }
            Frame::SynReply {
                stream,
                fin,
                headers,
            }
            | Frame::Headers {
                stream,
                fin,
                headers,
            } => {
                let kind = if matches!(frame, Frame::SynReply { .. }) {
                    TYPE_SYN_REPLY
                } else {
                    TYPE_HEADERS
                };
                let mut body = Vec::new();
                body.put_u32(*stream);
                body.extend(self.deflate(&header_block(headers))?);
                control(out, kind, u8::from(*fin), &body);
            }
            Frame::RstStream { stream, status } => {
                let mut body = Vec::new();
                body.put_u32(*stream);
                body.put_u32(*status);
                control(out, TYPE_RST_STREAM, 0, &body);
            }
            Frame::Settings { clear, entries } => {
                let mut body = Vec::new();
                body.put_u32(entries.len() as u32);
                for (f, id, v) in entries {
                    body.put_u32((u32::from(*f) << 24) | (id & 0x00ff_ffff));
                    body.put_u32(*v);
                }
                control(out, TYPE_SETTINGS, u8::from(*clear), &body);
            }
            Frame::Ping { id } => control(out, TYPE_PING, 0, &id.to_be_bytes()),
            Frame::GoAway { last_good, status } => {
                let mut body = Vec::new();
                body.put_u32(*last_good);
                body.put_u32(*status);
                control(out, TYPE_GOAWAY, 0, &body);
            }
            Frame::WindowUpdate { stream, delta } => {
                let mut body = Vec::new();
                body.put_u32(*stream);
                body.put_u32(*delta);
                control(out, TYPE_WINDOW_UPDATE, 0, &body);
            }
        }
        Ok(())
    }
}

/// One stream the client opened: its headers, its inbound data (None = the client's FIN or a
/// reset) and a handle to write back.
pub struct Stream {
    pub id: u32,
    pub headers: Headers,
    pub rx: StreamReader,
    pub tx: StreamWriter,
}

pub struct StreamReader {
    id: u32,
    rx: mpsc::Receiver<Bytes>,
    out: mpsc::Sender<Frame>,
}

impl StreamReader {
    /// The next chunk from the client; None once it half-closed (or reset) the stream.
    pub async fn recv(&mut self) -> Option<Bytes> {
        let data = self.rx.recv().await?;
        // Consumed: give the window back.
        if !data.is_empty() {
            let _ = self
                .out
                .send(Frame::WindowUpdate {
                    stream: self.id,
                    delta: data.len() as u32,
                })
                .await;
        }
        Some(data)
    }
}

#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    out: mpsc::Sender<Frame>,
}

impl StreamWriter {
    /// Sends `data` (in frames of at most 32 KiB); false once the session is gone.
    pub async fn send(&self, mut data: Bytes) -> bool {
        while !data.is_empty() {
            let chunk = data.split_to(data.len().min(32 * 1024));
            let frame = Frame::Data {
                stream: self.id,
                fin: false,
                data: chunk,
            };
            if self.out.send(frame).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Half-closes our side (an empty DATA frame with FIN).
    pub async fn close(&self) {
        let _ = self
            .out
            .send(Frame::Data {
                stream: self.id,
                fin: true,
                data: Bytes::new(),
            })
            .await;
    }

    pub async fn reset(&self, status: u32) {
        let _ = self
            .out
            .send(Frame::RstStream {
                stream: self.id,
                status,
            })
            .await;
    }
}

struct Inbound {
    tx: mpsc::Sender<Bytes>,
    /// Bytes the client may still send before it must wait for our WINDOW_UPDATE; only
    /// enforced for peers that flow-control themselves (see the module doc).
    window: i64,
}

/// Runs a SPDY server session over `io` until the client goes away. Every stream the client
/// opens is answered with SYN_REPLY and sent on `streams`; the session ends when `io` ends or
/// `streams`' receiver is dropped.
pub async fn serve<IO>(io: IO, streams: mpsc::Sender<Stream>)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let (out_tx, mut out_rx) = mpsc::channel::<Frame>(64);
    let writer = tokio::spawn(async move {
        let mut enc = Encoder::new();
        let mut buf = BytesMut::with_capacity(64 * 1024);
        while let Some(frame) = out_rx.recv().await {
            buf.clear();
            if enc.encode(&frame, &mut buf).is_err() {
                break;
            }
            // Batch what is already queued into one write.
            while buf.len() < 256 * 1024 {
                match out_rx.try_recv() {
                    Ok(f) => {
                        if enc.encode(&f, &mut buf).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut inbound: HashMap<u32, Inbound> = HashMap::new();
    let mut dec = Decoder::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut peer_flow_control = false;
    'read: loop {
        loop {
            let frame = match dec.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(err) => {
                    tracing::debug!(%err, "bad SPDY frame, ending the session");
                    let _ = out_tx
                        .send(Frame::GoAway {
                            last_good: 0,
                            status: PROTOCOL_ERROR,
                        })
                        .await;
                    break 'read;
                }
            };
            match frame {
                Frame::SynStream {
                    stream,
                    fin,
                    headers,
                    ..
                } => {
                    let reply = |status| Frame::RstStream { stream, status };
                    let known = inbound.contains_key(&stream);
                    let count = inbound.len();
                    if stream == 0 || stream % 2 == 0 {
                        let _ = out_tx.send(reply(PROTOCOL_ERROR)).await;
                        continue;
                    }
                    if known {
                        let _ = out_tx.send(reply(STREAM_IN_USE)).await;
                        continue;
                    }
                    if count >= MAX_STREAMS {
                        let _ = out_tx.send(reply(REFUSED_STREAM)).await;
                        continue;
                    }
                    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
                    if !fin {
                        inbound.insert(
                            stream,
                            Inbound {
                                tx,
                                window: i64::from(INITIAL_WINDOW),
                            },
                        );
                    }
                    let reply = Frame::SynReply {
                        stream,
                        fin: false,
                        headers: Vec::new(),
                    };
                    if out_tx.send(reply).await.is_err() {
                        break 'read;
                    }
                    let s = Stream {
                        id: stream,
                        headers,
                        rx: StreamReader {
                            id: stream,
                            rx,
                            out: out_tx.clone(),
                        },
                        tx: StreamWriter {
                            id: stream,
                            out: out_tx.clone(),
                        },
                    };
                    if streams.send(s).await.is_err() {
                        break 'read;
                    }
                }
                Frame::Data { stream, fin, data } => {
                    let target = (|| {
                        let e = inbound.get_mut(&stream)?;
                        e.window -= data.len() as i64;
                        let overflow = peer_flow_control && e.window < 0;
                        let tx = e.tx.clone();
                        if fin || overflow {
                            inbound.remove(&stream);
                        }
                        Some((tx, overflow))
                    })();
                    match target {
                        None => {
                            let _ = out_tx
                                .send(Frame::RstStream {
                                    stream,
                                    status: INVALID_STREAM,
                                })
                                .await;
                        }
                        Some((_, true)) => {
                            let _ = out_tx
                                .send(Frame::RstStream {
                                    stream,
                                    status: FLOW_CONTROL_ERROR,
                                })
                                .await;
                        }
                        Some((tx, false)) => {
                            let len = data.len();
                            if !data.is_empty() && tx.send(data).await.is_err() {
                                // The application is done with this stream: drop the data
                                // but keep the client's window open.
                                let _ = out_tx
                                    .send(Frame::WindowUpdate {
                                        stream,
                                        delta: len as u32,
                                    })
                                    .await;
                            }
                            if let Some(e) = inbound.get_mut(&stream) {
                                e.window += len as i64;
                            }
                        }
                    }
                }
                Frame::RstStream { stream, .. } => {
                    inbound.remove(&stream);
                }
                Frame::Ping { id } => {
                    let _ = out_tx.send(Frame::Ping { id }).await;
                }
                Frame::GoAway { .. } => break 'read,
                Frame::WindowUpdate { .. } => peer_flow_control = true,
                Frame::Headers { stream, fin, .. } => {
                    if fin {
                        inbound.remove(&stream);
                    }
                }
                Frame::Settings { .. } | Frame::SynReply { .. } => {}
            }
        }
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // Dropping every inbound sender ends the streams' readers.
    inbound.clear();
    drop(out_tx);
    drop(streams);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(frames: &[Frame]) {
        let mut enc = Encoder::new();
        let mut dec = Decoder::new();
        let mut buf = BytesMut::new();
        for f in frames {
            enc.encode(f, &mut buf).expect("encode");
        }
        for f in frames {
            assert_eq!(dec.decode(&mut buf).expect("decode").as_ref(), Some(f));
        }
        assert_eq!(dec.decode(&mut buf), Ok(None));
    }

    fn hdrs(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_frame_type_round_trips() {
        roundtrip(&[
            Frame::SynStream {
                stream: 1,
                associated: 0,
                priority: 0,
                fin: false,
                unidirectional: false,
                headers: hdrs(&[("streamtype", "error"), ("port", "80"), ("requestid", "0")]),
            },
            Frame::SynStream {
                stream: 3,
                associated: 0,
                priority: 7,
                fin: true,
                unidirectional: true,
                headers: hdrs(&[("streamtype", "data"), ("port", "80"), ("requestid", "0")]),
            },
            Frame::SynReply {
                stream: 1,
                fin: false,
                headers: Vec::new(),
            },
            Frame::Headers {
                stream: 1,
                fin: true,
                headers: hdrs(&[("a", "b\0c")]),
            },
            Frame::Data {
                stream: 3,
                fin: false,
                data: Bytes::from(vec![7u8; 40_000]),
            },
            Frame::Data {
                stream: 3,
                fin: true,
                data: Bytes::new(),
            },
            Frame::RstStream {
                stream: 5,
                status: 5,
            },
            Frame::Settings {
                clear: false,
                entries: vec![(0, 7, INITIAL_WINDOW)],
            },
            Frame::Ping { id: 42 },
            Frame::GoAway {
                last_good: 3,
                status: 0,
            },
            Frame::WindowUpdate {
                stream: 3,
                delta: 1234,
            },
        ]);
    }

    #[test]
    fn partial_input_waits_for_the_rest() {
        let mut enc = Encoder::new();
        let mut whole = BytesMut::new();
        let f = Frame::Data {
            stream: 1,
            fin: false,
            data: Bytes::from_static(b"hello"),
        };
        enc.encode(&f, &mut whole).expect("encode");
        let mut dec = Decoder::new();
        let mut buf = BytesMut::new();
        for (i, b) in whole.iter().enumerate() {
            buf.put_u8(*b);
            let got = dec.decode(&mut buf).expect("decode");
            if i + 1 < whole.len() {
                assert_eq!(got, None);
            } else {
                assert_eq!(got, Some(f.clone()));
            }
        }
    }

    #[test]
    fn header_blocks_use_the_spdy3_dictionary() {
        assert_eq!(DICTIONARY.len(), 1423);
        // A zlib stream primed with the dictionary (FDICT set, dictid = adler32 of it), as
        // client-go's framer writes it: compress independently of our Encoder.
        let mut z = Compress::new(Compression::best(), true);
        z.set_dictionary(DICTIONARY).expect("dictionary");
        let raw = header_block(&hdrs(&[("streamtype", "stdout"), ("content-type", "x")]));
        let mut compressed = Vec::with_capacity(1024);
        z.compress_vec(&raw, &mut compressed, FlushCompress::Sync)
            .expect("compress");
        assert_eq!(compressed[1] & 0x20, 0x20, "FDICT flag");
        let mut frame = BytesMut::new();
        frame.put_u16(0x8003);
        frame.put_u16(TYPE_SYN_STREAM);
        frame.put_u32(10 + compressed.len() as u32);
        frame.put_u32(1);
        frame.put_u32(0);
        frame.put_u16(0);
        frame.put_slice(&compressed);
        let got = Decoder::new().decode(&mut frame).expect("decode");
        let Some(Frame::SynStream { headers, .. }) = got else {
            panic!("{got:?}");
        };
        assert_eq!(header(&headers, "streamType"), Some("stdout"));
        // Dictionary words compress to almost nothing.
        assert!(compressed.len() < raw.len(), "{compressed:?}");
    }

    #[test]
    fn bad_frames_are_rejected() {
        // SPDY/2.
        let mut b = BytesMut::from(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert_eq!(Decoder::new().decode(&mut b), Err(SpdyError::Version(2)));
        // Too large.
        let mut b = BytesMut::from(&[0, 0, 0, 1, 0, 0x7f, 0, 0][..]);
        assert!(matches!(
            Decoder::new().decode(&mut b),
            Err(SpdyError::TooLarge(_))
        ));
        // RST_STREAM too short.
        let mut b = BytesMut::from(&[0x80, 3, 0, 3, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert_eq!(
            Decoder::new().decode(&mut b),
            Err(SpdyError::Malformed("RST_STREAM"))
        );
        // A header block that is not zlib.
        let mut b = BytesMut::from(&[0x80, 3, 0, 2, 0, 0, 0, 8, 0, 0, 0, 1, 1, 2, 3, 4][..]);
        assert!(matches!(
            Decoder::new().decode(&mut b),
            Err(SpdyError::Headers(_))
        ));
        // A pair count larger than the block.
        assert!(parse_header_block(&[0, 0, 1, 0, 0, 0, 0, 1, b'a']).is_err());
        // Unknown control types are skipped.
        let mut b = BytesMut::from(
            &[
                0x80, 3, 0, 5, 0, 0, 0, 0, 0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 9,
            ][..],
        );
        assert_eq!(
            Decoder::new().decode(&mut b),
            Ok(Some(Frame::Ping { id: 9 }))
        );
    }

    #[tokio::test]
    async fn a_session_replies_echoes_pings_and_delivers_data() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (tx, mut streams) = mpsc::channel(4);
        tokio::spawn(serve(server, tx));
        let (mut crd, mut cwr) = tokio::io::split(client);
        let mut enc = Encoder::new();
        let mut out = BytesMut::new();
        enc.encode(
            &Frame::SynStream {
                stream: 1,
                associated: 0,
                priority: 0,
                fin: false,
                unidirectional: false,
                headers: hdrs(&[("streamtype", "data")]),
            },
            &mut out,
        )
        .expect("encode");
        enc.encode(&Frame::Ping { id: 7 }, &mut out)
            .expect("encode");
        enc.encode(
            &Frame::Data {
                stream: 1,
                fin: true,
                data: Bytes::from_static(b"abc"),
            },
            &mut out,
        )
        .expect("encode");
        cwr.write_all(&out).await.expect("write");
        let mut s = streams.recv().await.expect("stream");
        assert_eq!(header(&s.headers, "streamtype"), Some("data"));
        assert_eq!(s.rx.recv().await.as_deref(), Some(&b"abc"[..]));
        assert_eq!(s.rx.recv().await, None);
        s.tx.send(Bytes::from_static(b"xyz")).await;
        s.tx.close().await;
        let mut dec = Decoder::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        while got.len() < 5 {
            crd.read_buf(&mut buf).await.expect("read");
            while let Some(f) = dec.decode(&mut buf).expect("decode") {
                got.push(f);
            }
        }
        assert!(
            matches!(got[0], Frame::SynReply { stream: 1, .. }),
            "{got:?}"
        );
        assert!(got.contains(&Frame::Ping { id: 7 }), "{got:?}");
        assert!(
            got.contains(&Frame::WindowUpdate {
                stream: 1,
                delta: 3
            }),
            "{got:?}"
        );
        assert!(got.contains(&Frame::Data {
            stream: 1,
            fin: false,
            data: Bytes::from_static(b"xyz")
        }));
        assert!(got.contains(&Frame::Data {
            stream: 1,
            fin: true,
            data: Bytes::new()
        }));
    }
}
