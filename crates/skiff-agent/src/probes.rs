//! Probe and lifecycle-hook handlers (upstream semantics §3.5): httpGet and tcpSocket against
//! the pod IP, exec through a `skiff exec` child process (Runtime::exec forks and inherits the
//! caller's stdio, so it must not run inside the agent), each bounded by a timeout.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ExecAction, HTTPGetAction, TCPSocketAction};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Resolves a probe port (number or a named container port).
pub fn resolve_port(port: &IntOrString, container: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).ok(),
        IntOrString::String(name) => {
            if let Ok(p) = name.parse::<u16>() {
                return Some(p);
            }
            container
                .ports
                .as_ref()?
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
        }
    }
}

/// HTTP GET: success is a status of 200-399.
pub async fn http_get(
    action: &HTTPGetAction,
    container: &Container,
    pod_ip: IpAddr,
    timeout: Duration,
) -> Result<(), String> {
    let port = resolve_port(&action.port, container).ok_or("invalid port")?;
    let host: IpAddr = match action.host.as_deref() {
        Some(h) if !h.is_empty() => h.parse().map_err(|_| format!("invalid host {h:?}"))?,
        _ => pod_ip,
    };
    if action.scheme.as_deref() == Some("HTTPS") {
        // No TLS client here: an HTTPS endpoint that accepts TCP counts as up.
        return tcp_connect(SocketAddr::new(host, port), timeout).await;
    }
    let path = action.path.clone().unwrap_or_else(|| "/".into());
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for h in action.http_headers.iter().flatten() {
        req.push_str(&format!("{}: {}\r\n", h.name, h.value));
    }
    req.push_str("\r\n");
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(SocketAddr::new(host, port))
            .await
            .map_err(|e| format!("Get \"http://{host}:{port}{path}\": {e}"))?;
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        // The status line is all we need.
        while !buf.contains(&b'\n') && buf.len() < 8192 {
            let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let line = String::from_utf8_lossy(&buf);
        let code: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("malformed HTTP response {:?}", line.lines().next()))?;
        if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {code}"))
        }
    };
    tokio::time::timeout(timeout, fut).await.map_err(|_| {
        "context deadline exceeded (Client.Timeout exceeded while awaiting headers)".to_string()
    })?
}

pub async fn tcp_socket(
    action: &TCPSocketAction,
    container: &Container,
    pod_ip: IpAddr,
    timeout: Duration,
) -> Result<(), String> {
    let port = resolve_port(&action.port, container).ok_or("invalid port")?;
    let host: IpAddr = match action.host.as_deref() {
        Some(h) if !h.is_empty() => h.parse().map_err(|_| format!("invalid host {h:?}"))?,
        _ => pod_ip,
    };
    tcp_connect(SocketAddr::new(host, port), timeout).await
}

async fn tcp_connect(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("dial tcp {addr}: {e}")),
        Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// Runs `action.command` in container `id` via `skiff exec`; success is exit code 0.
pub async fn exec(
    skiff_exe: &Path,
    data_dir: &Path,
    id: &str,
    action: &ExecAction,
    timeout: Duration,
) -> Result<(), String> {
    let cmd = action.command.clone().unwrap_or_default();
    if cmd.is_empty() {
        return Err("exec probe without a command".into());
    }
    let child = crate::skiff_exec(skiff_exe, data_dir, id, false, &cmd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", skiff_exe.display()))?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let mut msg = String::from_utf8_lossy(&out.stdout).into_owned();
            msg.push_str(&String::from_utf8_lossy(&out.stderr));
            Err(format!(
                "command {cmd:?} exited with {}: {}",
                out.status.code().unwrap_or(-1),
                msg.trim()
            ))
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("command {cmd:?} timed out")),
    }
}
