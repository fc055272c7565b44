//! Attaching to containers through the shim's attach socket (needs root): stdin, several
//! clients, a terminal with resizes, exit codes, and slow clients. The test binary doubles as
//! the shim, like lib_runtime.

mod support;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use skiff_runtime::attach::{
    self, AttachOptions, FRAME_CLOSE_STDIN, FRAME_EXIT, FRAME_RESIZE, FRAME_STDERR, FRAME_STDIN,
    FRAME_STDOUT,
};
use skiff_runtime::{ContainerSpec, Runtime, RuntimeConfig, Stream};

const APPLETS: &[&str] = &["sh", "cat", "echo", "sleep", "stty", "head", "dd", "tr"];

fn main() {
    let tests: &[(&str, fn())] = &[
        ("stdin_reaches_container_and_two_clients", stdin_two_clients),
        ("tty_resize_and_exit_code", tty_resize_and_exit_code),
        ("stdin_stays_open_without_stdin_once", stdin_without_once),
        ("slow_client_does_not_block", slow_client_does_not_block),
        ("no_shim_fd_reaches_the_container", no_shim_fd_leaks),
        (
            "reader_that_keeps_up_gets_every_byte",
            reader_gets_every_byte,
        ),
        ("half_closed_client_still_gets_output", half_closed_client),
    ];
    support::main(tests);
}

struct Env {
    _dir: tempfile::TempDir,
    rt: Runtime,
    lower: PathBuf,
    data: PathBuf,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let lower = dir.path().join("layer");
        support::busybox_layer(&lower, APPLETS);
        let data = dir.path().join("data");
        let rt = Runtime::new(RuntimeConfig {
            data_dir: data.clone(),
            shim_exe: std::env::current_exe().unwrap(),
        })
        .unwrap();
        Env {
            _dir: dir,
            rt,
            lower,
            data,
        }
    }

    fn spec(&self, args: &[&str]) -> ContainerSpec {
        ContainerSpec {
            image: "bb:1".into(),
            image_id: "sha256:test".into(),
            lowers: vec![self.lower.clone()],
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn stdout_log(&self, id: &str) -> String {
        let mut out = String::new();
        self.rt
            .logs(id, false, |l| {
                if l.stream == Stream::Stdout {
                    out.push_str(&String::from_utf8_lossy(&l.text));
                    if l.full {
                        out.push('\n');
                    }
                }
                Ok(())
            })
            .unwrap();
        out
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Ok(list) = self.rt.list() {
            for c in list {
                let _ = self.rt.remove(&c.id, true);
            }
        }
        if std::thread::panicking() {
            return;
        }
        let data = std::fs::canonicalize(&self.data).unwrap();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = self._dir.path().to_string_lossy().to_string();
        assert!(
            !mounts.lines().any(|l| l.contains(&root)),
            "leftover mounts"
        );
        assert!(
            skiff_runtime::leftover_cgroups(&data).is_empty(),
            "leftover cgroups"
        );
        let runtime_left: Vec<_> = std::fs::read_dir(data.join("runtime")).unwrap().collect();
        assert!(runtime_left.is_empty(), "leftover libcontainer state");
    }
}

/// A synchronous attach client that collects output until a wanted string or the exit frame.
struct Client {
    sock: UnixStream,
    out: Vec<u8>,
    err: Vec<u8>,
    exit: Option<i32>,
}

impl Client {
    fn new(rt: &Runtime, id: &str, opts: AttachOptions) -> Self {
        let sock = rt.attach(id, &opts).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Client {
            sock,
            out: Vec::new(),
            err: Vec::new(),
            exit: None,
        }
    }

    fn send(&mut self, kind: u8, payload: &[u8]) {
        attach::write_frame(&mut self.sock, kind, payload).unwrap();
    }

    /// Reads frames until `done` holds; panics after 20 s.
    fn read_until(&mut self, done: impl Fn(&Client) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out; out={:?}",
                self.text()
            );
            match attach::read_frame(&mut self.sock, 1 << 20).unwrap() {
                Some((FRAME_STDOUT, p)) => self.out.extend(p),
                Some((FRAME_STDERR, p)) => self.err.extend(p),
                Some((FRAME_EXIT, p)) => {
                    self.exit = Some(String::from_utf8(p).unwrap().parse().unwrap())
                }
                Some((k, _)) => panic!("unexpected frame kind {k}"),
                None => {
                    assert!(done(self), "EOF before done; out={:?}", self.text());
                    return;
                }
            }
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out).into_owned()
    }

    fn wait_exit(&mut self) -> i32 {
        self.read_until(|c| c.exit.is_some());
        // The shim closes the connection after the exit frame.
        let mut rest = Vec::new();
        let _ = self.sock.read_to_end(&mut rest);
        self.exit.unwrap_or(-1)
    }
}

const ALL: AttachOptions = AttachOptions {
    stdin: true,
    stdout: true,
    stderr: true,
};
const OUT_ONLY: AttachOptions = AttachOptions {
    stdin: false,
    stdout: true,
    stderr: true,
};

fn stdin_two_clients() {
    let e = Env::new();
    let mut spec = e.spec(&["sh", "-c", "cat; echo done >&2; exit 7"]);
    spec.stdin = true;
    spec.stdin_once = true;
    let info = e.rt.create_and_start(spec).unwrap();
    let sock = attach::attach_socket_path(&std::fs::canonicalize(&e.data).unwrap(), &info.id);
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "attach socket mode {mode:o}");

    let mut a = Client::new(&e.rt, &info.id, ALL);
    let mut b = Client::new(&e.rt, &info.id, OUT_ONLY);
    // b's handshake must be processed before output is produced.
    std::thread::sleep(Duration::from_millis(200));
    a.send(FRAME_STDIN, b"hello\n");
    a.read_until(|c| c.text().contains("hello\n"));
    b.read_until(|c| c.text().contains("hello\n"));
    // Stdin from a client that did not ask for stdin is ignored.
    b.send(FRAME_STDIN, b"ignored\n");
    a.send(FRAME_STDIN, b"world\n");
    a.read_until(|c| c.text().contains("world\n"));
    a.send(FRAME_CLOSE_STDIN, b"");
    assert_eq!(a.wait_exit(), 7);
    assert_eq!(b.wait_exit(), 7);
    assert_eq!(a.text(), "hello\nworld\n");
    assert_eq!(b.text(), "hello\nworld\n");
    assert_eq!(String::from_utf8_lossy(&b.err), "done\n");
    let exit = e.rt.wait(&info.id).unwrap();
    assert_eq!(exit.code, 7);
    assert_eq!(e.stdout_log(&info.id), "hello\nworld\n");
    assert!(!sock.exists(), "attach socket left behind");
}

fn tty_resize_and_exit_code() {
    let e = Env::new();
    let mut spec = e.spec(&[
        "sh",
        "-c",
        "read x; stty size; [ -t 0 ] && echo is-a-tty; read y; echo got-$y; exit 3",
    ]);
    spec.stdin = true;
    spec.stdin_once = true;
    spec.tty = true;
    let info = e.rt.create_and_start(spec).unwrap();
    let mut c = Client::new(&e.rt, &info.id, ALL);
    c.send(FRAME_RESIZE, br#"{"Width":123,"Height":45}"#);
    c.send(FRAME_STDIN, b"go\n");
    c.read_until(|c| c.text().contains("is-a-tty"));
    assert!(c.text().contains("45 123"), "{:?}", c.text());
    c.send(FRAME_RESIZE, br#"{"Width":90,"Height":30}"#);
    c.send(FRAME_STDIN, b"more\n");
    assert_eq!(c.wait_exit(), 3);
    // A terminal turns "\n" into "\r\n"; it all arrives as stdout, and in the log too.
    assert!(c.text().contains("got-more\r\n"), "{:?}", c.text());
    assert!(c.err.is_empty());
    let log = e.stdout_log(&info.id);
    assert!(log.contains("45 123"), "{log:?}");
    assert!(log.contains("got-more"), "{log:?}");
    assert_eq!(e.rt.wait(&info.id).unwrap().code, 3);
}

fn stdin_without_once() {
    let e = Env::new();
    let mut spec = e.spec(&["sh", "-c", "read a; echo a=$a; read b; echo b=$b"]);
    spec.stdin = true;
    let info = e.rt.create_and_start(spec).unwrap();
    {
        let mut c = Client::new(&e.rt, &info.id, ALL);
        c.send(FRAME_STDIN, b"one\n");
        c.read_until(|c| c.text().contains("a=one"));
        // Without stdinOnce the container keeps its stdin after this session ends.
        c.send(FRAME_CLOSE_STDIN, b"");
    }
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        e.rt.get(&info.id).unwrap().status,
        skiff_runtime::Status::Running
    );
    let mut c = Client::new(&e.rt, &info.id, ALL);
    c.send(FRAME_STDIN, b"two\n");
    assert_eq!(c.wait_exit(), 0);
    assert_eq!(c.text(), "b=two\n");
    assert_eq!(e.stdout_log(&info.id), "a=one\nb=two\n");
}

fn slow_client_does_not_block() {
    let e = Env::new();
    let mut spec = e.spec(&[
        "sh",
        "-c",
        "sleep 0.3; head -c 30000000 /dev/zero | tr '\\0' 'x'; echo; echo end",
    ]);
    spec.log_max_size = Some(200 << 20);
    let info = e.rt.create_and_start(spec).unwrap();
    // Attached but never reading: the shim must cut it off rather than stall the container.
    let stalled = e.rt.attach(&info.id, &OUT_ONLY).unwrap();
    let t = Instant::now();
    let exit = e.rt.wait(&info.id).unwrap();
    assert_eq!(exit.code, 0);
    assert!(t.elapsed() < Duration::from_secs(60));
    let log = e.stdout_log(&info.id);
    assert!(
        log.ends_with("\nend\n"),
        "log tail: {:?}",
        &log[log.len().saturating_sub(20)..]
    );
    assert_eq!(log.len(), 30_000_000 + "\nend\n".len());
    let shim_log = std::fs::canonicalize(&e.data)
        .unwrap()
        .join("containers")
        .join(&info.id)
        .join("shim.log");
    let notes = std::fs::read_to_string(shim_log).unwrap_or_default();
    assert!(notes.contains("did not keep up"), "{notes:?}");
    drop(stalled);
}

/// The container holds only its stdio: not the attach or console socket, not the stdin pipe's
/// write end (or it would never see EOF).
fn no_shim_fd_leaks() {
    let e = Env::new();
    for tty in [false, true] {
        let mut spec = e.spec(&["sh", "-c", "cd /proc/self/fd && echo *"]);
        spec.stdin = true;
        spec.tty = tty;
        let info = e.rt.create_and_start(spec).unwrap();
        assert_eq!(e.rt.wait(&info.id).unwrap().code, 0);
        // The glob runs in the shell itself: 0-2 plus the directory it reads (3).
        let out = e.stdout_log(&info.id);
        assert_eq!(out.trim_end_matches(['\r', '\n']), "0 1 2 3", "tty={tty}");
        e.rt.remove(&info.id, false).unwrap();
    }
}

/// A client that reads as fast as it can gets the whole stream (16 MiB, so a reader descheduled
/// for a moment on a busy machine stays within the 8 MiB it may lag), identical to the log; prints
/// the throughput with and without it attached.
fn reader_gets_every_byte() {
    const N: usize = 16 << 20;
    let e = Env::new();
    let cmd = format!("sleep 0.3; head -c {N} /dev/zero | tr '\\0' 'y'");
    let mut spec = e.spec(&["sh", "-c", &cmd]);
    spec.log_max_size = Some(256 << 20);
    let t = Instant::now();
    let info = e.rt.create_and_start(spec.clone()).unwrap();
    e.rt.wait(&info.id).unwrap();
    let alone = t.elapsed();
    let t = Instant::now();
    let info = e.rt.create_and_start(spec).unwrap();
    let mut c = Client::new(&e.rt, &info.id, OUT_ONLY);
    let code = c.wait_exit();
    let attached = t.elapsed();
    assert_eq!(code, 0);
    assert_eq!(c.out.len(), N, "the attached reader lost bytes");
    assert!(c.out.iter().all(|b| *b == b'y'));
    assert_eq!(
        e.stdout_log(&info.id).len(),
        N,
        "the log has every byte too"
    );
    let mib = (N >> 20) as f64;
    eprintln!(
        "    {mib} MiB: {:.0} MiB/s logged alone, {:.0} MiB/s logged + attached",
        mib / alone.as_secs_f64(),
        mib / attached.as_secs_f64()
    );
}

/// A client that shuts down its sending side (like `nc -N`) ends its stdin but still gets
/// the output and the exit code.
fn half_closed_client() {
    let e = Env::new();
    let mut spec = e.spec(&["sh", "-c", "cat; echo eof-seen; exit 9"]);
    spec.stdin = true;
    spec.stdin_once = true;
    let info = e.rt.create_and_start(spec).unwrap();
    let mut c = Client::new(&e.rt, &info.id, ALL);
    c.send(FRAME_STDIN, b"last words\n");
    c.sock.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(c.wait_exit(), 9);
    assert_eq!(c.text(), "last words\neof-seen\n");
}
