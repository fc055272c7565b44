//! `skiff lb`: the agent's API server load balancer run on its own (for kubectl on machines
//! without an agent). Plain TCP backends stand in for API servers (no --ca-file: TCP checks).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Greets each connection with `tag`, then echoes, until `down` is set (then it stops
/// accepting and closes what it holds).
fn backend(tag: u8) -> (u16, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let down = Arc::new(AtomicBool::new(false));
    let d = down.clone();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !d.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let d = d.clone();
                    std::thread::spawn(move || {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
                        if s.write_all(&[tag]).is_err() {
                            return;
                        }
                        let mut buf = [0u8; 64];
                        while !d.load(Ordering::SeqCst) {
                            match s.read(&mut buf) {
                                Ok(0) => return,
                                Ok(n) => {
                                    if s.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                                Err(_) => return,
                            }
                        }
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (port, down)
}

struct Lb(Child);

impl Drop for Lb {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn who(port: u16) -> Option<u8> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).ok()?;
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut tag = [0u8; 1];
    c.read_exact(&mut tag).ok()?;
    Some(tag[0])
}

#[test]
fn skiff_lb_forwards_to_a_live_server_and_fails_over() {
    let (a, a_down) = backend(b'a');
    let (b, b_down) = backend(b'b');
    let listen = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listen.local_addr().unwrap().port();
    drop(listen);
    let mut child = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args([
            "lb",
            "--server",
            &format!("https://127.0.0.1:{a},https://127.0.0.1:{b}"),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn skiff lb");
    let stdout = child.stdout.take().unwrap();
    let lb = Lb(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), format!("https://127.0.0.1:{port}"));
    assert_eq!(who(port), Some(b'a'));
    a_down.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match who(port) {
            Some(b'b') => break,
            other => assert!(Instant::now() < deadline, "still {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    b_down.store(true, Ordering::SeqCst);
    drop(lb);
}

#[test]
fn skiff_lb_needs_server_urls() {
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(["lb", "--server", "ftp/x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expected https://host:port"), "{err}");
}
