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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio_rustls::rustls;

    use super::*;

    /// A server config for a fresh self-signed 127.0.0.1 certificate, and a client trusting it.
    fn tls_pair() -> (TlsAcceptor, tokio_rustls::TlsConnector) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (
            TlsAcceptor::from(Arc::new(server)),
            tokio_rustls::TlsConnector::from(Arc::new(client)),
        )
    }

    fn options() -> HttpsOptions {
        HttpsOptions {
            name: "test",
            handshake_timeout: Duration::from_secs(5),
            accept_backoff: Duration::from_millis(10),
            drain_timeout: Duration::from_millis(200),
        }
    }

    async fn dial(
        connector: &tokio_rustls::TlsConnector,
        addr: SocketAddr,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        connector.connect(name, tcp).await
    }

    #[tokio::test]
    async fn admits_handshakes_refuses_and_drains_on_shutdown() {
        let (acceptor, connector) = tls_pair();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let offered = Arc::new(AtomicUsize::new(0));
        let handshaken = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn({
            let (offered, handshaken) = (offered.clone(), handshaken.clone());
            async move {
                serve_https(
                    listener,
                    acceptor,
                    options(),
                    async {
                        let _ = stopped.await;
                    },
                    // Every second connection is refused.
                    move |_| (offered.fetch_add(1, Ordering::SeqCst) % 2 == 0).then_some(()),
                    move |hs, _, ()| {
                        let handshaken = handshaken.clone();
                        async move {
                            if hs.await.is_some() {
                                handshaken.fetch_add(1, Ordering::SeqCst);
                                // Holds the connection open: only the drain ends it.
                                std::future::pending::<()>().await;
                            }
                        }
                    },
                )
                .await
            }
        });

        let _kept = dial(&connector, addr).await.expect("admitted");
        assert!(dial(&connector, addr).await.is_err(), "refused connection");
        let _kept2 = dial(&connector, addr).await.expect("admitted again");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while handshaken.load(Ordering::SeqCst) < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "handshakes not seen"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(offered.load(Ordering::SeqCst), 3);

        // Shutdown ends the loop although two connections never finish: the drain aborts them.
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .expect("drained within the drain timeout")
            .unwrap();
    }
}
