//! The API relay: how pods reach the API server. Every agent listens on its pod bridge's
//! address (the pods' gateway, an ephemeral port) and splices each connection to the API server
//! the way the agent itself reaches it (the agent's load balancer; 127.0.0.1 for the agent
//! embedded in `skiff server`). The service proxy sends the `default/kubernetes` ClusterIP to this relay
//! instead of the address in the Service's EndpointSlice, so pods reach the API whatever it
//! listens on, loopback included, while the node's other loopback services stay out of reach
//! (nothing is DNATed to 127.0.0.1 and route_localnet opens nothing new). TLS passes through
//! untouched: pods authenticate to the API server, not to the relay.
//! A joined agent's upstream is its load balancer ([`crate::lb`]), so pods fail over between API
//! servers with it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// Connections relayed at once; more wait in the listen backlog.
pub(crate) const MAX_CONNECTIONS: usize = 1024;
/// Connections one source address (one pod) may hold, so a single pod cannot take every slot
/// and cut its neighbours off the API; more are closed at once.
const MAX_PER_SOURCE: usize = 128;
/// How long to try reaching the API server for one pod connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `listen` (IP_FREEBIND: the bridge and its address appear with the first pod).
pub fn bind(listen: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.set_freebind_v4(true)?;
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&listen.into())?;
    sock.listen(256)?;
    TcpListener::from_std(sock.into())
}

/// `host:port` of an `https://host:port[/path]` URL (default port 443).
pub fn authority(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let host_port = rest.split('/').next().filter(|h| !h.is_empty())?;
    let has_port = match host_port.rsplit_once(':') {
        // `[::1]` alone has colons but no port.
        Some((h, p)) => !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':'),
        None => false,
    };
    Some(if has_port {
        host_port.to_string()
    } else {
        format!("{host_port}:443")
    })
}

/// Relays connections accepted on `listener` to `upstream` (`host:port`) until `stop` turns
/// true. Connections in flight are dropped with the task.
pub async fn serve(
    listener: TcpListener,
    upstream: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let upstream: Arc<str> = upstream.into();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let per_source: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stop.changed() => {
                if *stop.borrow() { return; }
                continue;
            }
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => {
                if *stop.borrow() { return; }
                continue;
            }
        };
        // Reap finished connections so the set does not grow.
        while tasks.try_join_next().is_some() {}
        match accepted {
            Ok((client, peer)) => {
                let Some(source) = SourceSlot::take(&per_source, peer.ip()) else {
                    tracing::debug!(%peer, "API relay: too many connections from this address");
                    continue;
                };
                let upstream = upstream.clone();
                tasks.spawn(async move {
                    let _permit = permit;
                    let _source = source;
                    if let Err(e) = relay(client, &upstream).await {
                        tracing::debug!(%peer, %upstream, "API relay connection: {e}");
                    }
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("API relay accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One connection's share of its source address's quota, given back on drop.
struct SourceSlot {
    counts: Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl SourceSlot {
    fn take(counts: &Arc<std::sync::Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr) -> Option<Self> {
        let mut map = counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= MAX_PER_SOURCE {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

async fn relay(mut client: TcpStream, upstream: &str) -> std::io::Result<()> {
    let mut server = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    tokio::io::copy_bidirectional(&mut client, &mut server).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn authority_of_urls() {
        assert_eq!(
            authority("https://127.0.0.1:6443").as_deref(),
            Some("127.0.0.1:6443")
        );
        assert_eq!(
            authority("https://10.0.0.1:6443/").as_deref(),
            Some("10.0.0.1:6443")
        );
        assert_eq!(
            authority("https://api.example").as_deref(),
            Some("api.example:443")
        );
        assert_eq!(authority("https://[::1]").as_deref(), Some("[::1]:443"));
        assert_eq!(
            authority("https://[::1]:6443").as_deref(),
            Some("[::1]:6443")
        );
        assert_eq!(authority("http://x:1"), None);
        assert_eq!(authority("https://"), None);
    }

    #[test]
    fn one_source_cannot_take_every_slot() {
        let counts = Arc::default();
        let a: IpAddr = "100.64.0.5".parse().unwrap();
        let b: IpAddr = "100.64.0.6".parse().unwrap();
        let held: Vec<SourceSlot> = (0..MAX_PER_SOURCE)
            .map(|_| SourceSlot::take(&counts, a).unwrap())
            .collect();
        assert!(SourceSlot::take(&counts, a).is_none());
        // Another pod still gets in.
        assert!(SourceSlot::take(&counts, b).is_some());
        drop(held);
        assert!(SourceSlot::take(&counts, a).is_some());
        assert!(counts.lock().unwrap().get(&a).is_none_or(|n| *n <= 1));
    }

    #[tokio::test]
    async fn splices_both_directions_and_stops() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(serve(listener, echo_addr.to_string(), stop_rx));
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("relay stops")
            .unwrap();
    }
}
