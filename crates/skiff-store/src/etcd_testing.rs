//! Real etcd clusters for tests (this crate's, the server's HA tests, benches): `etcd` members
//! from Debian's `etcd-server` package on free loopback ports, each with its own data dir,
//! stopped and removed on drop. Nothing here is used by the server itself.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One member: its ports and, while running, its process.
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    tls: bool,
}

/// PEM files for client TLS: members serve `cert`/`key` (with 127.0.0.1 in its SANs) and
/// require client certificates signed by `ca` (`--client-cert-auth`); the same files serve as
/// the client's.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Member {
    pub fn client_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// A cluster of `etcd` processes; dropped = every member killed and its data removed.
pub struct EtcdCluster {
    pub members: Vec<Member>,
    initial_cluster: String,
    token: String,
    tls: Option<TlsFiles>,
    extra_args: Vec<String>,
    _dir: TempDir,
}

/// A private directory removed on drop (no dev-dependency on `tempfile` for users).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port free right now on 127.0.0.1 (the kernel's pick; a race with other binders is
/// possible but unlikely, and shows as a member that fails to start).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl EtcdCluster {
    /// Starts `size` members (named `<name>-0`, …) and waits until every one answers.
    pub fn start(name: &str, size: usize) -> std::io::Result<EtcdCluster> {
        Self::start_with(name, size, None, &[])
    }

    /// Like [`EtcdCluster::start`], with client TLS and client-certificate authentication.
    pub fn start_tls(name: &str, size: usize, tls: TlsFiles) -> std::io::Result<EtcdCluster> {
        Self::start_with(name, size, Some(tls), &[])
    }

    /// The general form: optional client TLS and extra `etcd` flags for every member (e.g.
    /// `--quota-backend-bytes=…`).
    pub fn start_with(
        name: &str,
        size: usize,
        tls: Option<TlsFiles>,
        extra_args: &[&str],
    ) -> std::io::Result<EtcdCluster> {
        let dir = std::env::temp_dir().join(format!(
            "skiff-etcd-{name}-{}-{}",
            std::process::id(),
            free_port()?
        ));
        std::fs::create_dir_all(&dir)?;
        let dir = TempDir(dir);
        let mut members = Vec::new();
        for i in 0..size {
            let member_name = format!("{name}-{i}");
            members.push(Member {
                data_dir: dir.0.join(&member_name),
                log: dir.0.join(format!("{member_name}.log")),
                name: member_name,
                client_port: free_port()?,
                peer_port: free_port()?,
                child: None,
                tls: tls.is_some(),
            });
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = EtcdCluster {
            members,
            initial_cluster,
            token: format!("{name}-{}", std::process::id()),
            tls,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            _dir: dir,
        };
        for i in 0..size {
            cluster.spawn(i)?;
        }
        cluster.wait_healthy(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// Client URLs of every member (running or not), for `--datastore-endpoint`.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::client_url).collect()
    }

    fn spawn(&mut self, i: usize) -> std::io::Result<()> {
        let m = &mut self.members[i];
        let log = std::fs::File::create(&m.log)?;
        let state = if m.data_dir.join("member").exists() {
            "existing"
        } else {
            "new"
        };
        let mut cmd = Command::new("etcd");
        if let Some(t) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&t.cert)
                .arg("--key-file")
                .arg(&t.key)
                .arg("--trusted-ca-file")
                .arg(&t.ca)
                .arg("--client-cert-auth");
        }
        let child = cmd
            .args(&self.extra_args)
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data_dir)
            .arg("--listen-client-urls")
            .arg(m.client_url())
            .arg("--advertise-client-urls")
            .arg(m.client_url())
            .arg("--listen-peer-urls")
            .arg(format!("http://127.0.0.1:{}", m.peer_port))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("http://127.0.0.1:{}", m.peer_port))
            .arg("--initial-cluster")
            .arg(&self.initial_cluster)
            .arg("--initial-cluster-state")
            .arg(state)
            .arg("--initial-cluster-token")
            .arg(&self.token)
            // Tests stop members on purpose: elect fast so they do not wait on defaults.
            .arg("--heartbeat-interval")
            .arg("50")
            .arg("--election-timeout")
            .arg("500")
            .env("ETCD_UNSUPPORTED_ARCH", "")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("starting etcd (install Debian's etcd-server): {e}"),
                )
            })?;
        m.child = Some(child);
        Ok(())
    }

    /// Stops member `i` (SIGKILL when `kill`, else SIGTERM) and waits for it to exit.
    pub fn stop(&mut self, i: usize, kill: bool) {
        if let Some(mut child) = self.members[i].child.take() {
            if kill {
                let _ = child.kill();
            } else if let Ok(pid) = i32::try_from(child.id()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its old data (after [`EtcdCluster::stop`]).
    pub fn restart(&mut self, i: usize) -> std::io::Result<()> {
        if self.members[i].child.is_none() {
            self.spawn(i)?;
        }
        Ok(())
    }

    /// Waits until every running member answers `etcdctl endpoint health`.
    pub fn wait_healthy(&self, timeout: Duration) -> std::io::Result<()> {
        let deadline = Instant::now() + timeout;
        for m in self.members.iter().filter(|m| m.is_running()) {
            loop {
                let mut cmd = Command::new("etcdctl");
                if let Some(t) = &self.tls {
                    cmd.arg("--cacert")
                        .arg(&t.ca)
                        .arg("--cert")
                        .arg(&t.cert)
                        .arg("--key")
                        .arg(&t.key);
                }
                let ok = cmd
                    .env("ETCDCTL_API", "3")
                    .arg("--endpoints")
                    .arg(m.client_url())
                    .arg("--command-timeout=2s")
                    .arg("endpoint")
                    .arg("health")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if ok {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "etcd member {} not healthy; its log:\n{}",
                            m.name,
                            tail(&m.log)
                        ),
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i, true);
        }
    }
}
