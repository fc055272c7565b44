//! The streaming verbs with the real kubectl against a real cluster (root): port-forward over
//! kubectl's default (WebSocket tunnelling SPDY) and plain SPDY, exec over SPDY, and cp.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{build_web_images, free_port, Cluster};
use sha2::{Digest, Sha256};

/// A pod running a persistent echo server on 9000 and httpd on 8080 (nothing listens on 9001).
fn echo_pod(c: &Cluster, name: &str) {
    c.ok(&[
        "run",
        name,
        "--image=web:v1",
        "--labels=app=echo",
        "--command",
        "--",
        "sh",
        "-c",
        "mkdir -p /www && echo hello > /www/index.html && httpd -p 8080 -h /www && exec nc -ll -p 9000 -e cat",
    ]);
    c.ok(&[
        "wait",
        "--for=condition=Ready",
        &format!("pod/{name}"),
        "--timeout=120s",
    ]);
}

/// `kubectl port-forward <target> <local>:<remote>…` in the background, once it listens.
struct Forward {
    child: Child,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Forward {
    fn start(c: &Cluster, websockets: bool, target: &str, ports: &[(u16, u16)]) -> Forward {
        let mut args = vec!["port-forward".to_string(), target.to_string()];
        args.extend(ports.iter().map(|(l, r)| format!("{l}:{r}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = c.kubectl_command("kubectl", &args);
        cmd.env(
            "KUBECTL_PORT_FORWARD_WEBSOCKETS",
            if websockets { "true" } else { "false" },
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl port-forward");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let errors = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = errors.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("lock").push_str(&(line + "\n"));
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let want = ports.len();
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen < want {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.starts_with("Forwarding from 127.0.0.1:") => seen += 1,
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "kubectl port-forward never listened: {}",
                        errors.lock().expect("lock")
                    );
                }
            }
        }
        Forward {
            child,
            stderr: errors,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deterministic non-repeating bytes (xorshift), so corruption and reordering show.
fn fill(state: &mut u64, buf: &mut [u8]) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let b = state.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
}

/// Sends `total` bytes through the echo server at 127.0.0.1:`port` and reads them back;
/// returns (sha256 sent, sha256 received, bytes received, seconds).
fn echo(port: u16, total: usize, seed: u64) -> (Vec<u8>, Vec<u8>, usize, f64) {
    echo_to("127.0.0.1", port, total, seed)
}

fn echo_to(ip: &str, port: u16, total: usize, seed: u64) -> (Vec<u8>, Vec<u8>, usize, f64) {
    let start = Instant::now();
    let stream = TcpStream::connect((ip, port)).expect("connect to the echo server");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let sender = std::thread::spawn(move || {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut state = seed | 1;
        let mut left = total;
        while left > 0 {
            let n = left.min(buf.len());
            fill(&mut state, &mut buf[..n]);
            h.update(&buf[..n]);
            writer.write_all(&buf[..n]).expect("send");
            left -= n;
        }
        writer.shutdown(Shutdown::Write).expect("half-close");
        h.finalize().to_vec()
    });
    let mut reader = stream;
    let mut h = Sha256::new();
    let mut got = 0;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                got += n;
            }
            Err(e) => panic!("reading the echo after {got} bytes: {e}"),
        }
    }
    let sent = sender.join().expect("sender");
    (
        sent,
        h.finalize().to_vec(),
        got,
        start.elapsed().as_secs_f64(),
    )
}

/// 100 parallel HTTP requests to ip:port (busybox nc cannot take 100 at once; httpd can);
/// the failures.
fn parallel_gets(ip: &str, port: u16) -> Vec<String> {
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let ip = ip.to_string();
            std::thread::spawn(move || slow_get(&ip, port))
        })
        .collect();
    let mut bad = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        match h.join().expect("connection thread") {
            Some(body) if body.contains("200 OK") && body.contains("hello") => {}
            other => bad.push(format!("connection {i}: {other:?}")),
        }
    }
    bad
}

/// GET / with patient timeouts: 100 simultaneous SYNs overflow httpd's small listen backlog
/// and the kernel retries the dropped ones after 1 s, 3 s, … (direct connections too).
fn slow_get(ip: &str, port: u16) -> Option<String> {
    let addr = format!("{ip}:{port}").parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(30)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

fn forward_checks(c: &Cluster, websockets: bool, pod: &str) {
    let (lp, refused) = (free_port(), free_port());
    let web = free_port();
    let fwd = Forward::start(
        c,
        websockets,
        pod,
        &[(lp, 9000), (refused, 9001), (web, 8080)],
    );

    // 1 GiB each way, digests intact (SKIFF_PF_BYTES overrides, for quick runs).
    let total = std::env::var("SKIFF_PF_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1usize << 30);
    let (sent, got, n, secs) = echo(lp, total, 0x5eed);
    assert_eq!(n, total, "echoed bytes");
    assert_eq!(sent, got, "sha256 of what went through");
    eprintln!(
        "port-forward (websockets={websockets}): {total} bytes echoed in {secs:.1}s ({:.1} MiB/s each way)",
        total as f64 / secs / 1048576.0
    );

    // 100 parallel connections, all answered.
    let bad = parallel_gets("127.0.0.1", web);
    assert!(bad.is_empty(), "{bad:?}\n{}", fwd.stderr());

    // A port nobody listens on: the connection ends and kubectl reports upstream's error.
    let mut s = TcpStream::connect(("127.0.0.1", refused)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut buf = [0u8; 16];
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fwd.stderr().contains("connection refused") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let err = fwd.stderr();
    assert!(
        err.contains("error forwarding port 9001 to pod") && err.contains("connection refused"),
        "{err}"
    );
    eprintln!("kubectl after the refused port: {err}");
}

#[test]
#[ignore = "needs root: a cluster whose agent runs pods (namespaces, cgroups, CNI, nftables)"]
fn port_forward_over_websocket_and_spdy() {
    assert!(nix::unistd::geteuid().is_root(), "cluster tests need root");
    let c = Cluster::start();
    build_web_images(&c);
    echo_pod(&c, "echo");
    let ip = c.ok(&["get", "pod", "echo", "-o", "jsonpath={.status.podIP}"]);
    let direct = parallel_gets(&ip, 8080);
    assert!(direct.is_empty(), "direct: {direct:?}");
    forward_checks(&c, true, "pod/echo");
    forward_checks(&c, false, "pod/echo");

    // The Python client: exec with TEXT-frame stdin, port-forward over the channel protocol.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python_streaming.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(c.kubeconfig())
        .arg("echo")
        .output()
        .expect("python3");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("python streaming ok"),
        "python client failed (pip install kubernetes):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // svc/x and deploy/x are resolved to a pod by kubectl.
    c.ok(&[
        "create",
        "deployment",
        "echod",
        "--image=web:v1",
        "--",
        "nc",
        "-ll",
        "-p",
        "9000",
        "-e",
        "cat",
    ]);
    c.ok(&["rollout", "status", "deployment/echod", "--timeout=120s"]);
    c.ok(&["create", "service", "clusterip", "echo", "--tcp=9100:9000"]);
    for target in ["deploy/echod", "svc/echo"] {
        let lp = free_port();
        let remote = if target.starts_with("svc") {
            9100
        } else {
            9000
        };
        let _fwd = Forward::start(&c, true, target, &[(lp, remote)]);
        let (sent, got, n, _) = echo(lp, 100_000, 7);
        assert_eq!((n, &sent), (100_000, &got), "{target}");
    }
}

#[test]
#[ignore = "needs root: a cluster whose agent runs pods (namespaces, cgroups, CNI, nftables)"]
fn exec_over_spdy_and_cp_both_ways() {
    assert!(nix::unistd::geteuid().is_root(), "cluster tests need root");
    let c = Cluster::start();
    build_web_images(&c);
    echo_pod(&c, "box");
    let spdy = |args: &[&str]| {
        let mut cmd = c.kubectl_command("kubectl", args);
        cmd.env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false");
        let out = cmd.output().expect("kubectl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = spdy(&["exec", "box", "--", "sh", "-c", "echo out; echo err >&2"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "out\n", "err\n"));
    let (code, _, err) = spdy(&["exec", "box", "--", "sh", "-c", "exit 7"]);
    assert_eq!(code, 7, "{err}");
    assert!(err.contains("command terminated with exit code 7"), "{err}");
    // stdin over SPDY (the stdin stream's FIN ends cat).
    let mut cmd = c.kubectl_command("kubectl", &["exec", "-i", "box", "--", "cat"]);
    cmd.env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl exec -i");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"through spdy\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through spdy\n");

    // A terminal over SPDY: kubectl sends the size on the resize stream (`script` gives it a
    // pty of 40x100).
    let kc = c.kubeconfig();
    let inner = format!(
        "stty rows 40 cols 100; KUBECONFIG={} HOME={} KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false kubectl exec -it box -- sh -c 'sleep 1; stty size'",
        kc.display(),
        c.dir.path().join("home").display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("40 100"), "{text}");

    // kubectl cp drives tar through exec: 100 MB in and back out, same digest.
    let dir = c.dir.path().join("cp");
    std::fs::create_dir_all(&dir).expect("dir");
    let src = dir.join("in.bin");
    let mut data = vec![0u8; 100 * 1000 * 1000];
    fill(&mut 0xc0ffee, &mut data);
    std::fs::write(&src, &data).expect("write");
    let want = Sha256::digest(&data).to_vec();
    drop(data);
    let start = Instant::now();
    c.ok(&["cp", src.to_str().expect("path"), "box:/www/in.bin"]);
    let up = start.elapsed().as_secs_f64();
    let sum = c.ok(&["exec", "box", "--", "sha256sum", "/www/in.bin"]);
    let hex: String = want.iter().map(|b| format!("{b:02x}")).collect();
    assert!(sum.starts_with(&hex), "{sum} vs {hex}");
    let back = dir.join("back.bin");
    let start = Instant::now();
    c.ok(&["cp", "box:/www/in.bin", back.to_str().expect("path")]);
    let down = start.elapsed().as_secs_f64();
    let got = Sha256::digest(std::fs::read(&back).expect("read back")).to_vec();
    assert_eq!(got, want, "digest after the round trip");
    eprintln!("kubectl cp 100 MB: in {up:.1}s, out {down:.1}s");
    c.ok(&["exec", "box", "--", "rm", "/www/in.bin"]);
}

/// Attach to a real container through the API server, the agent and the shim's attach socket:
/// `kubectl run -i --rm` (stdin piped, output back, pod deleted), `kubectl attach -it` to a
/// running shell with a terminal (size and input arrive), and `kubectl debug -it` into a pod.
#[test]
#[ignore = "needs root: a cluster whose agent runs pods (namespaces, cgroups, CNI, nftables)"]
fn attach_run_interactive_and_debug() {
    assert!(nix::unistd::geteuid().is_root(), "cluster tests need root");
    let c = Cluster::start();
    build_web_images(&c);

    // kubectl run -i --rm: the pod reads what we type, and is deleted afterwards.
    let mut cmd = c.kubectl_command(
        "kubectl",
        &[
            "run",
            "once",
            "-i",
            "--rm",
            "--restart=Never",
            "--image=web:v1",
            "--command",
            "--",
            "sh",
            "-c",
            "read x; echo got $x",
        ],
    );
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl run -i");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"hello\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("got hello"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.kubectl(&["get", "pod", "once"]).0 == 0 {
        assert!(Instant::now() < deadline, "--rm left the pod behind");
        std::thread::sleep(Duration::from_millis(500));
    }

    // A pod with stdin and a terminal; kubectl attach -it (under `script` for a pty of 30x90).
    c.ok(&[
        "run",
        "shell",
        "-i",
        "-t",
        "--attach=false",
        "--restart=Never",
        "--image=web:v1",
        "--command",
        "--",
        "sh",
    ]);
    c.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/shell",
        "--timeout=120s",
    ]);
    let kc = c.kubeconfig();
    let home = c.dir.path().join("home");
    // `script` gives kubectl a pty of 30x90; what we write to script's stdin is typed into it.
    let inner = format!(
        "stty rows 30 cols 90; KUBECONFIG={} HOME={} kubectl attach -it shell",
        kc.display(),
        home.display()
    );
    let mut child = std::process::Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script");
    let mut typing = child.stdin.take().expect("stdin");
    std::thread::sleep(Duration::from_secs(3));
    typing.write_all(b"stty size; exit 5\n").expect("type");
    let out = child.wait_with_output().expect("wait");
    drop(typing);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("30 90"),
        "attach -it did not carry the size: {text}"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let code = c.ok(&[
            "get",
            "pod",
            "shell",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.terminated.exitCode}",
        ]);
        if code.trim() == "5" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "shell never exited 5 ({code}): {text}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // kubectl debug -it: an ephemeral container in the target's PID namespace.
    echo_pod(&c, "target");
    let mut cmd = c.kubectl_command(
        "kubectl",
        &[
            "debug",
            "-i",
            "target",
            "--image=web:v1",
            "--target=target",
            "--container=dbg",
            "--",
            "sh",
            "-c",
            "read x; ps; echo $x",
        ],
    );
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl debug -i");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"debugged\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("debugged") && text.contains("nc -ll"),
        "debug did not see the target's processes: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
