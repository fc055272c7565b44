//! Attaching to a running container's stdio through its shim.
//!
//! The shim listens on `<data_dir>/containers/<id>/attach.sock` (0600, removed when the shim
//! exits). Protocol (the agent's attach endpoint is written against it; keep it stable):
//!
//! 1. The client connects and writes one JSON line: `{"stdin":bool,"stdout":bool,"stderr":bool}\n`.
//! 2. Both directions then carry frames `[kind u8][len u32 big-endian][payload]`:
//!    - `0` stdin data (client → shim)
//!    - `1` stdout, `2` stderr (shim → client; a tty container only has stdout)
//!    - `3` exit (shim → client): payload is the exit code in decimal ASCII; sent once the
//!      container has exited, then the shim closes the connection
//!    - `4` resize (client → shim): payload JSON `{"Width":u16,"Height":u16}` (tty only)
//!    - `5` stdin close (client → shim): with `stdinOnce` the container's stdin is closed
//!      (a tty gets EOT, ^D); without it the container keeps its stdin open
//!
//! Frames from a client carry at most [`MAX_FRAME`] payload bytes. Every attached client gets
//! the same output; one that does not read fast enough (more than [`CLIENT_OUT_LIMIT`] bytes
//! pending) is disconnected so it never slows the container or its log.

use std::collections::VecDeque;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::sys::socket::{send, MsgFlags};

pub const FRAME_STDIN: u8 = 0;
pub const FRAME_STDOUT: u8 = 1;
pub const FRAME_STDERR: u8 = 2;
pub const FRAME_EXIT: u8 = 3;
pub const FRAME_RESIZE: u8 = 4;
pub const FRAME_CLOSE_STDIN: u8 = 5;

/// Largest payload of one frame a client may send (larger: the client is disconnected).
pub const MAX_FRAME: usize = 1 << 20;
/// Output queued for one client before it is disconnected as too slow (a reader descheduled
/// for a moment must survive a fast writer; at most MAX_CLIENTS × this is ever queued).
pub const CLIENT_OUT_LIMIT: usize = 8 << 20;
/// Longest handshake line accepted.
const MAX_HELLO: usize = 1024;
/// Stdin bytes buffered towards the container; clients are not read while it is full.
const STDIN_LIMIT: usize = 256 << 10;
/// Attached clients at once; more are refused (closed at once).
pub const MAX_CLIENTS: usize = 16;

/// The handshake line: which streams the client wants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AttachOptions {
    #[serde(default)]
    pub stdin: bool,
    #[serde(default)]
    pub stdout: bool,
    #[serde(default)]
    pub stderr: bool,
}

/// Payload of a resize frame (upstream's TerminalSize field names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// Where the shim of container `id` serves attach connections.
pub fn attach_socket_path(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("containers").join(id).join("attach.sock")
}

/// Connects to the attach socket of container `id` and sends the handshake. Paths longer
/// than a sockaddr_un allows are reached through `/proc/self/fd/<dir fd>/attach.sock`.
pub fn connect(data_dir: &Path, id: &str, opts: &AttachOptions) -> io::Result<UnixStream> {
    let path = attach_socket_path(data_dir, id);
    let mut sock = if path.as_os_str().len() < 100 {
        UnixStream::connect(&path)?
    } else {
        let dir = fs::File::open(data_dir.join("containers").join(id))?;
        UnixStream::connect(format!("/proc/self/fd/{}/attach.sock", dir.as_raw_fd()))?
    };
    let mut hello = serde_json::to_vec(opts).map_err(io::Error::other)?;
    hello.push(b'\n');
    sock.write_all(&hello)?;
    Ok(sock)
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut buf = Vec::with_capacity(5 + payload.len());
    buf.push(kind);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf)
}

/// Reads one frame; `None` at a clean EOF between frames. Payloads over `max` are an error.
pub fn read_frame(r: &mut impl Read, max: usize) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds {max}"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((head[0], payload)))
}

fn frame_bytes(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + payload.len());
    v.push(kind);
    // Output chunks come from 64 KiB reads, far below u32::MAX.
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

// ---------------------------------------------------------------------------------------
// Shim side: single-threaded, driven by the shim's poll loop.

struct Client {
    sock: UnixStream,
    opts: Option<AttachOptions>,
    inbuf: Vec<u8>,
    out: VecDeque<u8>,
    dead: bool,
    /// The client shut down its sending side (EOF read): it may still read output.
    read_closed: bool,
    /// This session's stdin ended (close frame or disconnect) and was accounted for.
    stdin_done: bool,
}

/// The container's stdin as the shim holds it.
pub(crate) struct StdinSink {
    /// Write end of the stdin pipe, or a dup of the pty master.
    pub fd: OwnedFd,
    pub tty: bool,
}

/// Attach state of one container: the listener, attached clients, stdin and the terminal.
pub(crate) struct Hub {
    listener: Option<UnixListener>,
    path: PathBuf,
    clients: Vec<Client>,
    stdin: Option<StdinSink>,
    stdin_once: bool,
    stdin_pending: Vec<u8>,
    /// Close stdin once `stdin_pending` is written.
    stdin_closing: bool,
    /// The pty master (resize target) of a tty container.
    master: Option<RawFd>,
    pub log_note: Vec<String>,
}

/// What the shim's poll loop should wait for on one fd, and who it belongs to.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Token {
    Listener,
    Client(usize),
    Stdin,
}

impl Hub {
    /// Binds the attach socket (0600). `master` is the pty master of a tty container.
    pub fn bind(
        path: PathBuf,
        stdin: Option<StdinSink>,
        stdin_once: bool,
        master: Option<RawFd>,
    ) -> io::Result<Self> {
        let _ = fs::remove_file(&path);
        // Bind through the directory (the shim is single-threaded, chdir is safe here): a
        // long data dir must not exceed sockaddr_un's 108 bytes.
        let dir = path.parent().unwrap_or(Path::new("/"));
        let name = path.file_name().unwrap_or_default();
        let old_umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
        let bound = std::env::set_current_dir(dir).and_then(|()| UnixListener::bind(name));
        nix::sys::stat::umask(old_umask);
        let _ = std::env::set_current_dir("/");
        let listener = bound?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        if let Some(s) = &stdin {
            set_nonblocking(s.fd.as_raw_fd())?;
        }
        Ok(Hub {
            listener: Some(listener),
            path,
            clients: Vec::new(),
            stdin,
            stdin_once,
            stdin_pending: Vec::new(),
            stdin_closing: false,
            master,
            log_note: Vec::new(),
        })
    }

    /// Fds to poll, with their events.
    pub fn poll_set(&self) -> Vec<(Token, RawFd, i16)> {
        let mut v = Vec::new();
        if let Some(l) = &self.listener {
            v.push((Token::Listener, l.as_raw_fd(), nix::libc::POLLIN));
        }
        let stdin_full = self.stdin_pending.len() >= STDIN_LIMIT;
        for (i, c) in self.clients.iter().enumerate() {
            let mut ev = 0;
            if !stdin_full && !c.read_closed {
                ev |= nix::libc::POLLIN;
            }
            if !c.out.is_empty() {
                ev |= nix::libc::POLLOUT;
            }
            v.push((Token::Client(i), c.sock.as_raw_fd(), ev));
        }
        if let Some(s) = &self.stdin {
            if !self.stdin_pending.is_empty() {
                v.push((Token::Stdin, s.fd.as_raw_fd(), nix::libc::POLLOUT));
            }
        }
        v
    }

    /// Handles readiness reported by poll for `token`.
    pub fn ready(&mut self, token: Token, revents: i16) {
        match token {
            Token::Listener => self.accept(),
            Token::Client(i) => {
                if revents & nix::libc::POLLIN != 0 {
                    self.read_client(i);
                }
                if revents & nix::libc::POLLOUT != 0 {
                    self.flush_client(i);
                }
                if revents & (nix::libc::POLLHUP | nix::libc::POLLERR) != 0 {
                    // Gone both ways: take what it sent before closing, then drop it.
                    while !self.clients[i].read_closed
                        && !self.clients[i].dead
                        && self.read_client(i)
                    {}
                    self.clients[i].dead = true;
                }
            }
            Token::Stdin => self.flush_stdin(),
        }
    }

    /// Drops clients that went away (call after handling one poll round).
    pub fn reap(&mut self) {
        let mut i = 0;
        while i < self.clients.len() {
            if self.clients[i].dead {
                self.end_stdin_session(i);
                self.clients.remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// Queues container output for every client that asked for that stream.
    pub fn output(&mut self, stderr: bool, data: &[u8]) {
        if self.clients.is_empty() || data.is_empty() {
            return;
        }
        let kind = if stderr { FRAME_STDERR } else { FRAME_STDOUT };
        let frame = frame_bytes(kind, data);
        for c in &mut self.clients {
            let wants = c
                .opts
                .is_some_and(|o| if stderr { o.stderr } else { o.stdout });
            if !wants || c.dead {
                continue;
            }
            if c.out.len() + frame.len() > CLIENT_OUT_LIMIT {
                // A slow reader must not hold the container back: cut it off.
                c.dead = true;
                self.log_note
                    .push("attach: disconnected a client that did not keep up".into());
                continue;
            }
            c.out.extend(&frame);
        }
        for i in 0..self.clients.len() {
            self.flush_client(i);
        }
    }

    /// The container exited: tell every client the code, flush for at most `within`, close.
    pub fn finish(&mut self, code: i32, within: std::time::Duration) {
        self.listener = None;
        let _ = fs::remove_file(&self.path);
        let frame = frame_bytes(FRAME_EXIT, code.to_string().as_bytes());
        for c in &mut self.clients {
            if c.opts.is_some() && !c.dead {
                c.out.extend(&frame);
            }
        }
        let deadline = std::time::Instant::now() + within;
        loop {
            for i in 0..self.clients.len() {
                self.flush_client(i);
            }
            self.clients.retain(|c| !c.dead && !c.out.is_empty());
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if self.clients.is_empty() || left.is_zero() {
                break;
            }
            let mut fds: Vec<nix::libc::pollfd> = self
                .clients
                .iter()
                .map(|c| nix::libc::pollfd {
                    fd: c.sock.as_raw_fd(),
                    events: nix::libc::POLLOUT,
                    revents: 0,
                })
                .collect();
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: fds is a valid, exclusively borrowed array of pollfd of the given length.
            unsafe { nix::libc::poll(fds.as_mut_ptr(), fds.len() as nix::libc::nfds_t, ms) };
        }
        self.clients.clear();
    }

    fn accept(&mut self) {
        let Some(l) = &self.listener else { return };
        loop {
            match l.accept() {
                Ok((sock, _)) => {
                    if self.clients.len() >= MAX_CLIENTS || sock.set_nonblocking(true).is_err() {
                        continue; // dropped: closed at once
                    }
                    self.clients.push(Client {
                        sock,
                        opts: None,
                        inbuf: Vec::new(),
                        out: VecDeque::new(),
                        dead: false,
                        read_closed: false,
                        stdin_done: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// One read (per poll round, so one chatty client cannot starve the loop); false when
    /// nothing was read.
    fn read_client(&mut self, i: usize) -> bool {
        let mut buf = [0u8; 64 * 1024];
        let n = match (&self.clients[i].sock).read(&mut buf) {
            Ok(0) => {
                // A half-close ends the client's input; it still gets output and the exit.
                self.clients[i].read_closed = true;
                self.end_stdin_session(i);
                return false;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(_) => {
                self.clients[i].dead = true;
                return false;
            }
        };
        self.clients[i].inbuf.extend_from_slice(&buf[..n]);
        self.parse_client(i);
        true
    }

    fn parse_client(&mut self, i: usize) {
        loop {
            let c = &mut self.clients[i];
            if c.dead {
                return;
            }
            if c.opts.is_none() {
                let Some(nl) = c.inbuf.iter().position(|b| *b == b'\n') else {
                    if c.inbuf.len() > MAX_HELLO {
                        c.dead = true;
                    }
                    return;
                };
                match serde_json::from_slice::<AttachOptions>(&c.inbuf[..nl]) {
                    Ok(o) => c.opts = Some(o),
                    Err(_) => {
                        c.dead = true;
                        return;
                    }
                }
                c.inbuf.drain(..=nl);
                continue;
            }
            if c.inbuf.len() < 5 {
                return;
            }
            let len = u32::from_be_bytes([c.inbuf[1], c.inbuf[2], c.inbuf[3], c.inbuf[4]]) as usize;
            if len > MAX_FRAME {
                c.dead = true;
                return;
            }
            if c.inbuf.len() < 5 + len {
                return;
            }
            let kind = c.inbuf[0];
            let payload: Vec<u8> = c.inbuf[5..5 + len].to_vec();
            c.inbuf.drain(..5 + len);
            let wants_stdin = c.opts.is_some_and(|o| o.stdin);
            match kind {
                FRAME_STDIN if wants_stdin && !c.stdin_done => self.stdin_data(&payload),
                FRAME_RESIZE => self.resize(&payload),
                FRAME_CLOSE_STDIN => self.end_stdin_session(i),
                _ => {}
            }
        }
    }

    /// A client's stdin ended: with stdinOnce the container's stdin closes (upstream: stdin
    /// is closed after the first attach session ends).
    fn end_stdin_session(&mut self, i: usize) {
        let c = &mut self.clients[i];
        if c.stdin_done || !c.opts.is_some_and(|o| o.stdin) {
            return;
        }
        c.stdin_done = true;
        if self.stdin_once && self.stdin.is_some() {
            if self.stdin.as_ref().is_some_and(|s| s.tty) {
                // A terminal cannot be half-closed: EOT reads as end of input.
                self.stdin_pending.push(0x04);
            }
            self.stdin_closing = true;
            self.flush_stdin();
        }
    }

    fn stdin_data(&mut self, data: &[u8]) {
        if self.stdin.is_none() || self.stdin_closing {
            return;
        }
        self.stdin_pending.extend_from_slice(data);
        self.flush_stdin();
    }

    fn flush_stdin(&mut self) {
        let Some(s) = &self.stdin else {
            self.stdin_pending.clear();
            return;
        };
        while !self.stdin_pending.is_empty() {
            match nix::unistd::write(&s.fd, &self.stdin_pending) {
                Ok(n) => {
                    self.stdin_pending.drain(..n);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(_) => {
                    // The reader is gone (EPIPE: SIGPIPE is ignored in the shim).
                    self.stdin_pending.clear();
                    self.stdin = None;
                    return;
                }
            }
        }
        if self.stdin_closing {
            // Drops the pipe's write end (EOF) or our dup of the pty master (whose other fd
            // keeps carrying output and resizes).
            self.stdin = None;
        }
    }

    fn resize(&mut self, payload: &[u8]) {
        let (Some(m), Ok(size)) = (self.master, serde_json::from_slice::<TerminalSize>(payload))
        else {
            return;
        };
        let ws = nix::libc::winsize {
            ws_row: size.height,
            ws_col: size.width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is valid for the call.
        unsafe { nix::libc::ioctl(m, nix::libc::TIOCSWINSZ, &ws) };
    }

    fn flush_client(&mut self, i: usize) {
        let c = &mut self.clients[i];
        while !c.dead && !c.out.is_empty() {
            let (a, _) = c.out.as_slices();
            let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT;
            match send(c.sock.as_raw_fd(), a, flags) {
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(_) => c.dead = true,
            }
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        if self.listener.is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd, FcntlArg::F_GETFL)?;
    fcntl(
        fd,
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        write_frame(&mut buf, FRAME_STDIN, b"hello").unwrap();
        write_frame(&mut buf, FRAME_CLOSE_STDIN, b"").unwrap();
        assert_eq!(&buf[..5], &[0, 0, 0, 0, 5]);
        let mut r = &buf[..];
        assert_eq!(
            read_frame(&mut r, 16).unwrap(),
            Some((FRAME_STDIN, b"hello".to_vec()))
        );
        assert_eq!(
            read_frame(&mut r, 16).unwrap(),
            Some((FRAME_CLOSE_STDIN, vec![]))
        );
        assert_eq!(read_frame(&mut r, 16).unwrap(), None);
        let mut big = Vec::new();
        write_frame(&mut big, FRAME_STDIN, &[0u8; 32]).unwrap();
        assert!(read_frame(&mut &big[..], 16).is_err());
    }

    #[test]
    fn resize_payload_uses_upstream_names() {
        let s: TerminalSize = serde_json::from_str(r#"{"Width":80,"Height":24}"#).unwrap();
        assert_eq!(
            s,
            TerminalSize {
                width: 80,
                height: 24
            }
        );
    }
}
