//! The one HTTPS accept loop of skiff's servers (the API server and the agent API): accept,
//! admit, bounded TLS handshake inside the connection's task, and on shutdown a short drain
//! before the remaining connections (watches, follows, exec sessions) are dropped. What runs on
//! an established connection — HTTP/1.1, timeouts, eviction — is the caller's.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A connection's TLS handshake: the stream, or None when it failed or timed out (logged).
pub type Handshake = Pin<Box<dyn Future<Output = Option<TlsStream<TcpStream>>> + Send>>;

/// How one server accepts.
#[derive(Debug, Clone)]
pub struct HttpsOptions {
    /// Names the server in logs.
    pub name: &'static str,
    /// A client that has not finished its TLS handshake by then is dropped.
    pub handshake_timeout: Duration,
    /// After a failed accept (EMFILE and friends), wait this long instead of spinning.
    pub accept_backoff: Duration,
    /// On shutdown, in-flight connections get this long before they are aborted.
    pub drain_timeout: Duration,
}

/// Serves `listener` until `shutdown` completes, then drains. Each accepted connection is first
/// offered to `admit` (None closes it), then `connection` runs in its own task with the
/// connection's pending handshake.
pub async fn serve_https<A, F, Fut>(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    opts: HttpsOptions,
    shutdown: impl Future<Output = ()>,
    mut admit: impl FnMut(SocketAddr) -> Option<A>,
    connection: F,
) where
    F: Fn(Handshake, SocketAddr, A) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(x) => x,
                    Err(err) => {
                        tracing::warn!(server = opts.name, %err, "accept failed");
                        tokio::time::sleep(opts.accept_backoff).await;
                        continue;
                    }
                };
                let Some(admitted) = admit(peer) else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let handshake = handshake(acceptor.clone(), tcp, peer, opts.name, opts.handshake_timeout);
                conns.spawn(connection(handshake, peer, admitted));
            }
        }
    }
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(opts.drain_timeout, drain)
        .await
        .is_err()
    {
        conns.abort_all();
    }
}

fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    name: &'static str,
    timeout: Duration,
) -> Handshake {
    Box::pin(async move {
        match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => Some(tls),
            Ok(Err(err)) => {
                tracing::debug!(server = name, %peer, %err, "TLS handshake failed");
                None
            }
            Err(_) => {
                tracing::debug!(server = name, %peer, "TLS handshake timed out");
                None
            }
        }
    })
}
