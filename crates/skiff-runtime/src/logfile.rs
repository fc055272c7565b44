//! Reading rotated CRI logs with bounded memory: the files of one container oldest first,
//! a reader that starts at the beginning, the end or N lines before the end (found by
//! scanning backwards, never reading the whole file) and follows across rotations.
//!
//! Layout (written by the shim, see `shim::LogWriter`): `container.log` is live,
//! `container.log.1` the newest rotated file, `container.log.<N>` the oldest. Files only
//! ever hold whole records, and rotation happens between records.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Longest record kept: a CRI header plus [`crate::cri::MAX_LINE`] bytes of text, with room.
/// Longer "records" (a corrupt file) are skipped instead of growing a buffer.
pub const MAX_RECORD: usize = crate::cri::MAX_LINE + 4096;

const CHUNK: usize = 64 * 1024;

/// The log files of a container, oldest first, the live file last (if it exists).
pub fn log_files(live: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (live.parent(), live.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut rotated: Vec<(u32, PathBuf)> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    let i: u32 = n.strip_prefix(&prefix)?.parse().ok()?;
                    Some((i, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    if live.exists() {
        out.push(live.to_path_buf());
    }
    out
}

/// Where a [`LogReader`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest record still on disk.
    Beginning,
    /// After the last complete record (only what is written from now on).
    End,
    /// At the first of the last N lines (a line is P records up to and including an F
    /// record; an unfinished last line counts as one).
    TailLines(usize),
}

/// Parses the F/P flag of the record starting at `pos` of `f` (None if malformed).
fn record_is_full(f: &File, pos: u64) -> Option<bool> {
    let mut head = [0u8; 64];
    let n = f.read_at(&mut head, pos).ok()?;
    let head = &head[..n];
    // "<time> <stream> <F|P> "
    let mut parts = head.splitn(4, |b| *b == b' ');
    parts.next()?;
    parts.next()?;
    match parts.next()? {
        b"F" => Some(true),
        b"P" => Some(false),
        _ => None,
    }
}

/// Scans `f` backwards from `end` for record boundaries; calls `visit(start, end)` for each
/// complete record, newest first, until it returns true. Returns the start it stopped at.
fn scan_back(
    f: &File,
    end: u64,
    mut visit: impl FnMut(u64, u64) -> bool,
) -> io::Result<Option<u64>> {
    let mut buf = vec![0u8; CHUNK];
    // `rec_end`: offset just past the newline ending the record being looked for.
    let mut rec_end = end;
    let mut pos = end;
    // Skip the final newline of the last record itself.
    let mut skip_first = true;
    while pos > 0 {
        let len = (pos as usize).min(CHUNK);
        let at = pos - len as u64;
        f.read_exact_at(&mut buf[..len], at)?;
        for i in (0..len).rev() {
            if buf[i] != b'\n' {
                continue;
            }
            let nl = at + i as u64;
            if skip_first && nl + 1 == end {
                skip_first = false;
                continue;
            }
            skip_first = false;
            let start = nl + 1;
            if start < rec_end && visit(start, rec_end) {
                return Ok(Some(start));
            }
            rec_end = start;
        }
        pos = at;
    }
    if rec_end > 0 && visit(0, rec_end) {
        return Ok(Some(0));
    }
    Ok(None)
}

/// Offset just past the last newline of `f` (the end of its last complete record).
fn complete_end(f: &File) -> io::Result<u64> {
    let len = f.metadata()?.len();
    let mut buf = vec![0u8; CHUNK];
    let mut pos = len;
    while pos > 0 {
        let n = (pos as usize).min(CHUNK);
        let at = pos - n as u64;
        f.read_exact_at(&mut buf[..n], at)?;
        if let Some(i) = buf[..n].iter().rposition(|b| *b == b'\n') {
            return Ok(at + i as u64 + 1);
        }
        pos = at;
    }
    Ok(0)
}

/// Reads a container's log across its rotated files, following rotations of the live file.
pub struct LogReader {
    live: PathBuf,
    file: Option<File>,
    ino: Option<(u64, u64)>,
}

fn id_of(f: &File) -> Option<(u64, u64)> {
    f.metadata().ok().map(|m| (m.dev(), m.ino()))
}

impl LogReader {
    pub fn open(live: &Path, start: Start) -> io::Result<Self> {
        let mut r = LogReader {
            live: live.to_path_buf(),
            file: None,
            ino: None,
        };
        let files = log_files(live);
        let opened: Vec<File> = files.iter().filter_map(|p| File::open(p).ok()).collect();
        match start {
            Start::Beginning => {
                if let Some(f) = opened.into_iter().next() {
                    r.set(f, 0)?;
                }
            }
            Start::End => {
                if let Some(f) = opened.into_iter().last() {
                    let end = complete_end(&f)?;
                    r.set(f, end)?;
                }
            }
            Start::TailLines(n) => {
                let mut found: Option<(usize, u64)> = None;
                if n > 0 {
                    let mut count = 0usize;
                    let mut global_end = true;
                    'files: for (i, f) in opened.iter().enumerate().rev() {
                        let end = complete_end(f)?;
                        let mut hit = None;
                        scan_back(f, end, |start, rec_end| {
                            let is_last = global_end;
                            global_end = false;
                            // An F record that is not the very last one starts a line.
                            if !is_last && record_is_full(f, start) == Some(true) {
                                count += 1;
                                if count == n {
                                    hit = Some(rec_end);
                                    return true;
                                }
                            }
                            false
                        })?;
                        if let Some(off) = hit {
                            found = Some((i, off));
                            break 'files;
                        }
                    }
                    if found.is_none() {
                        found = Some((0, 0)); // fewer lines than asked for: everything
                    }
                } else if let Some(last) = opened.len().checked_sub(1) {
                    found = Some((last, complete_end(&opened[last])?));
                }
                if let Some((i, off)) = found {
                    if let Some(f) = opened.into_iter().nth(i) {
                        r.set(f, off)?;
                    }
                }
            }
        }
        Ok(r)
    }

    fn set(&mut self, mut f: File, offset: u64) -> io::Result<()> {
        use std::io::Seek;
        f.seek(io::SeekFrom::Start(offset))?;
        self.ino = id_of(&f);
        self.file = Some(f);
        Ok(())
    }

    /// The file after the one being read, if the live file rotated past it.
    fn next_file(&self) -> Option<File> {
        let files = log_files(&self.live);
        let ids: Vec<Option<(u64, u64)>> = files
            .iter()
            .map(|p| fs::metadata(p).ok().map(|m| (m.dev(), m.ino())))
            .collect();
        let next = match ids.iter().position(|i| *i == self.ino && i.is_some()) {
            Some(i) if i + 1 < files.len() => i + 1,
            Some(_) => return None, // still the live file
            None => 0,              // rotated out while we read it: go on with the oldest
        };
        let f = File::open(&files[next]).ok()?;
        (id_of(&f) == ids[next]).then_some(f)
    }

    /// Reads what is there; 0 means "nothing more right now" (the caller may wait and retry).
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.file.is_none() {
                // No log file existed yet: pick up the live one once it appears.
                match File::open(&self.live) {
                    Ok(f) => self.set(f, 0)?,
                    Err(_) => return Ok(0),
                }
            }
            let Some(f) = self.file.as_mut() else {
                return Ok(0);
            };
            let n = f.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            let Some(next) = self.next_file() else {
                return Ok(0);
            };
            // The writer is done with this file (it rotated): drain what it wrote last.
            if let Some(f) = self.file.as_mut() {
                let n = f.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
            }
            self.set(next, 0)?;
        }
    }
}

/// Splits a [`LogReader`]'s bytes into records (without the newline), memory bounded by
/// [`MAX_RECORD`]. An incomplete last record stays buffered until its newline arrives.
pub struct RecordReader {
    reader: LogReader,
    buf: Vec<u8>,
    start: usize,
    /// Inside an over-long record: drop bytes until the next newline.
    skipping: bool,
}

impl RecordReader {
    pub fn new(reader: LogReader) -> Self {
        RecordReader {
            reader,
            buf: Vec::with_capacity(CHUNK),
            start: 0,
            skipping: false,
        }
    }

    /// The next complete record, or None when nothing more is available right now.
    pub fn next_record(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = self.buf[self.start..].iter().position(|b| *b == b'\n') {
                let rec = self.buf[self.start..self.start + i].to_vec();
                self.start += i + 1;
                if std::mem::take(&mut self.skipping) {
                    continue;
                }
                return Ok(Some(rec));
            }
            // Compact, then read more.
            self.buf.drain(..self.start);
            self.start = 0;
            if self.buf.len() > MAX_RECORD {
                self.buf.clear();
                self.skipping = true;
            }
            let old = self.buf.len();
            self.buf.resize(old + CHUNK, 0);
            let n = self.reader.read(&mut self.buf[old..])?;
            self.buf.truncate(old + n);
            if n == 0 {
                return Ok(None);
            }
        }
    }

    /// What is left without a newline (the container's final partial write, if any).
    pub fn rest(&mut self) -> Vec<u8> {
        let rest = self.buf[self.start..].to_vec();
        self.buf.clear();
        self.start = 0;
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::format_cri_line;
    use crate::shim::{LogWriter, Rotation};
    use crate::Stream;

    fn records(r: &mut RecordReader) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            let l = crate::parse_cri_line(&rec).unwrap();
            out.push(String::from_utf8(l.text).unwrap());
        }
        out
    }

    #[test]
    fn tail_and_follow_across_rotation() {
        let d = tempfile::tempdir().unwrap();
        let live = d.path().join("container.log");
        let rot = Rotation {
            max_size: 1000,
            max_files: 3,
        };
        let mut w = LogWriter::open(&live, rot).unwrap();
        let t = "2024-01-01T00:00:00.000000000Z";
        let mut follower = RecordReader::new(LogReader::open(&live, Start::Beginning).unwrap());
        let mut followed = Vec::new();
        for i in 0..200 {
            w.push(&format_cri_line(
                t,
                Stream::Stdout,
                true,
                format!("line-{i}").as_bytes(),
            ))
            .unwrap();
            w.flush().unwrap();
            if i % 7 == 0 {
                followed.extend(records(&mut follower));
            }
        }
        // A P record then its F: one line of two records.
        w.push(&format_cri_line(t, Stream::Stdout, false, b"part-"))
            .unwrap();
        w.push(&format_cri_line(t, Stream::Stdout, true, b"end"))
            .unwrap();
        w.flush().unwrap();
        followed.extend(records(&mut follower));
        let files = log_files(&live);
        assert_eq!(files.len(), 3, "{files:?}");
        let total: u64 = files.iter().map(|f| fs::metadata(f).unwrap().len()).sum();
        assert!(total <= 3000, "{total}");
        for f in &files {
            assert!(fs::metadata(f).unwrap().len() <= 1000);
        }
        // The follower saw every line exactly once, in order, across rotations.
        let want: Vec<String> = (0..200)
            .map(|i| format!("line-{i}"))
            .chain(["part-".into(), "end".into()])
            .collect();
        assert_eq!(followed, want);

        let mut r = RecordReader::new(LogReader::open(&live, Start::TailLines(1)).unwrap());
        assert_eq!(records(&mut r), vec!["part-", "end"]);
        let mut r = RecordReader::new(LogReader::open(&live, Start::TailLines(3)).unwrap());
        assert_eq!(
            records(&mut r),
            vec!["line-198", "line-199", "part-", "end"]
        );
        // Across the boundary between the live file and container.log.1.
        let live_lines = {
            let mut r = RecordReader::new(LogReader::open(&live, Start::Beginning).unwrap());
            let _ = records(&mut r);
            fs::read_to_string(&live).unwrap().lines().count()
        };
        let n = live_lines + 2;
        let mut r = RecordReader::new(LogReader::open(&live, Start::TailLines(n)).unwrap());
        let got = records(&mut r);
        assert_eq!(got.len(), n + 1, "{got:?}");
        assert_eq!(got.last().unwrap(), "end");
        let mut r = RecordReader::new(LogReader::open(&live, Start::TailLines(0)).unwrap());
        assert!(records(&mut r).is_empty());
        let mut r = RecordReader::new(LogReader::open(&live, Start::End).unwrap());
        assert!(records(&mut r).is_empty());
        w.push(&format_cri_line(t, Stream::Stdout, true, b"new"))
            .unwrap();
        w.flush().unwrap();
        assert_eq!(records(&mut r), vec!["new"]);
        // More lines than exist: everything still on disk.
        let mut r = RecordReader::new(LogReader::open(&live, Start::TailLines(100_000)).unwrap());
        let all = records(&mut r);
        assert_eq!(all.last().unwrap(), "new");
        assert!(all.len() < 200);
    }
}
