//! CRI log format (what kubelet and `kubectl logs` read):
//! `<RFC3339Nano UTC> <stdout|stderr> <F|P> <text>\n`.
//!
//! F marks a line that ended with a newline, P a fragment (a line longer than
//! [`MAX_LINE`] split into pieces, or trailing output without a final newline), so the
//! original byte stream is exactly the concatenation of `text` plus "\n" after each F.

use crate::{LogLine, Stream};

/// Lines longer than this are split into P fragments (containerd uses 16 KiB too).
pub const MAX_LINE: usize = 16 * 1024;

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Current time as RFC 3339 with nanoseconds in UTC (fixed width, so lines sort as text).
pub fn now_rfc3339_nano() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.9fZ")
        .to_string()
}

/// One CRI log line including the trailing newline. `text` must not contain '\n'.
pub fn format_cri_line(time: &str, stream: Stream, full: bool, text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(time.len() + text.len() + 12);
    out.extend_from_slice(time.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if full { b" F " } else { b" P " });
    out.extend_from_slice(text);
    out.push(b'\n');
    out
}

/// Parses one CRI log line (with or without its trailing newline); None if malformed.
pub fn parse_cri_line(line: &[u8]) -> Option<LogLine> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let full = match parts.next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    // An empty full line is written as "<time> stdout F " but tolerate a missing space.
    let text = parts.next().unwrap_or_default().to_vec();
    if time.is_empty() {
        return None;
    }
    Some(LogLine {
        time: time.to_string(),
        stream,
        full,
        text,
    })
}

/// Splits a byte stream into CRI lines. Keeps the unterminated tail between reads.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes read from the stream; returns (full, text) records ready to be written.
    pub fn push(&mut self, data: &[u8]) -> Vec<(bool, Vec<u8>)> {
        let mut out = Vec::new();
        for &b in data {
            if b == b'\n' {
                out.push((true, std::mem::take(&mut self.pending)));
            } else {
                self.pending.push(b);
                if self.pending.len() >= MAX_LINE {
                    out.push((false, std::mem::take(&mut self.pending)));
                }
            }
        }
        out
    }

    /// At EOF: whatever is left without a newline becomes a final P record.
    pub fn finish(&mut self) -> Option<(bool, Vec<u8>)> {
        if self.pending.is_empty() {
            None
        } else {
            Some((false, std::mem::take(&mut self.pending)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_parse_roundtrip_both_streams() {
        let t = "2024-01-02T03:04:05.123456789Z";
        let l = format_cri_line(t, Stream::Stdout, true, b"hello world");
        assert_eq!(l, b"2024-01-02T03:04:05.123456789Z stdout F hello world\n");
        let p = parse_cri_line(&l).unwrap();
        assert_eq!(p.time, t);
        assert_eq!(p.stream, Stream::Stdout);
        assert!(p.full);
        assert_eq!(p.text, b"hello world");

        let l = format_cri_line(t, Stream::Stderr, false, b"part");
        assert_eq!(l, b"2024-01-02T03:04:05.123456789Z stderr P part\n");
        let p = parse_cri_line(&l).unwrap();
        assert_eq!(p.stream, Stream::Stderr);
        assert!(!p.full);
        assert_eq!(p.text, b"part");
    }

    #[test]
    fn empty_line_and_spaces_in_text() {
        let l = format_cri_line("T", Stream::Stdout, true, b"");
        let p = parse_cri_line(&l).unwrap();
        assert!(p.full);
        assert!(p.text.is_empty());
        let p = parse_cri_line(b"T stdout F  a  b ").unwrap();
        assert_eq!(p.text, b" a  b ");
    }

    #[test]
    fn parse_rejects_garbage() {
        assert!(parse_cri_line(b"").is_none());
        assert!(parse_cri_line(b"T stdin F x").is_none());
        assert!(parse_cri_line(b"T stdout X x").is_none());
        assert!(parse_cri_line(b"T stdout").is_none());
    }

    #[test]
    fn splitter_full_partial_and_tail() {
        let mut s = LineSplitter::default();
        let recs = s.push(b"a\nbc");
        assert_eq!(recs, vec![(true, b"a".to_vec())]);
        let recs = s.push(b"d\n\n");
        assert_eq!(recs, vec![(true, b"bcd".to_vec()), (true, Vec::new())]);
        s.push(b"tail");
        assert_eq!(s.finish(), Some((false, b"tail".to_vec())));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn splitter_splits_long_lines() {
        let mut s = LineSplitter::default();
        let mut data = vec![b'x'; MAX_LINE * 2 + 10];
        data.push(b'\n');
        let recs = s.push(&data);
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0], (false, vec![b'x'; MAX_LINE]));
        assert_eq!(recs[1], (false, vec![b'x'; MAX_LINE]));
        assert_eq!(recs[2], (true, vec![b'x'; 10]));
        // Exactly MAX_LINE then newline: one P and an empty F (the bytes stay exact).
        let mut data = vec![b'y'; MAX_LINE];
        data.push(b'\n');
        let recs = s.push(&data);
        assert_eq!(
            recs,
            vec![(false, vec![b'y'; MAX_LINE]), (true, Vec::new())]
        );
    }

    #[test]
    fn timestamp_shape() {
        let t = now_rfc3339_nano();
        assert_eq!(t.len(), 30, "{t}");
        assert!(t.ends_with('Z'));
        assert!(t.parse::<jiff::Timestamp>().is_ok());
    }
}
