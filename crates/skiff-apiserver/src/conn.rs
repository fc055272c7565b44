//! Connection hardening of the HTTPS listener: a TLS handshake timeout, a header-read timeout,
//! an idle (keep-alive) timeout and a per-listener connection cap.
//!
//! The cap never locks out a real client: when it is reached, a new connection evicts the oldest
//! connection that has no request in flight, preferring ones that never sent a request (still in
//! their handshake or headers) over idle keep-alive ones. Only when every connection is busy is
//! the new one closed.
//! Slowloris connections therefore cost at most the cap in file descriptors and are the first
//! to go, while a client that completes a request promptly is always served.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

/// Timeouts of one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub handshake: Duration,
    pub header: Duration,
    pub idle: Duration,
}

/// What the watchdog of one connection looks at (times are ms since the tracker's epoch;
/// 0 = unset).
pub(crate) struct ConnState {
    epoch: Instant,
    in_flight: AtomicUsize,
    /// A request has been received on it (real clients; slowloris never gets this far).
    served: std::sync::atomic::AtomicBool,
    /// When the headers of the next request started (or the connection was established).
    head_since: AtomicU64,
    /// When the connection last became idle (no request in flight).
    idle_since: AtomicU64,
}

impl ConnState {
    fn now(&self) -> u64 {
        (self.epoch.elapsed().as_millis() as u64).max(1)
    }

    /// The TLS handshake is done: the first request's headers are due within the header
    /// timeout (as Go's ReadHeaderTimeout counts from the connection's start).
    pub(crate) fn established(&self) {
        let now = self.now();
        self.idle_since.store(now, Ordering::SeqCst);
        self.head_since.store(now, Ordering::SeqCst);
    }

    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::SeqCst) == 0 && self.head_since.load(Ordering::SeqCst) == 0
        {
            self.head_since.store(self.now(), Ordering::SeqCst);
        }
    }

    /// Marks a request in flight until the guard (held by its response body) is dropped.
    pub(crate) fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.served.store(true, Ordering::SeqCst);
        self.head_since.store(0, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// Why the connection should be closed now, if it should.
    fn expired(&self, t: &Timeouts) -> Option<&'static str> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let now = self.now();
        let head = self.head_since.load(Ordering::SeqCst);
        if head != 0 {
            return (now.saturating_sub(head) > t.header.as_millis() as u64)
                .then_some("header read timeout");
        }
        let idle = self.idle_since.load(Ordering::SeqCst);
        (idle != 0 && now.saturating_sub(idle) > t.idle.as_millis() as u64)
            .then_some("idle timeout")
    }
}

pub(crate) struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle_since.store(self.0.now(), Ordering::SeqCst);
        }
    }
}

struct Entry {
    state: Arc<ConnState>,
    /// Dropping it (eviction) ends the connection's task.
    _kill: oneshot::Sender<()>,
}

/// The live connections of one listener.
pub(crate) struct Tracker {
    max: usize,
    epoch: Instant,
    inner: Mutex<TrackerInner>,
}

#[derive(Default)]
struct TrackerInner {
    next_id: u64,
    conns: BTreeMap<u64, Entry>,
}

/// A registered connection: its state, the eviction signal and the slot it frees on drop.
pub(crate) struct Admitted {
    pub state: Arc<ConnState>,
    pub killed: oneshot::Receiver<()>,
    pub slot: Slot,
}

pub(crate) struct Slot {
    tracker: Arc<Tracker>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.tracker.lock().conns.remove(&self.id);
    }
}

impl Tracker {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Tracker {
            max: max.max(1),
            epoch: Instant::now(),
            inner: Mutex::new(TrackerInner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TrackerInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().conns.len()
    }

    /// Registers a new connection, evicting the oldest one without a request in flight when
    /// the cap is reached. None: every connection is busy; close the new one.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let mut inner = self.lock();
        if inner.conns.len() >= self.max {
            // Ids grow with accept order, so the first match is the oldest. Connections that
            // never sent a request go before idle keep-alive ones of real clients.
            let idle = |e: &Entry| e.state.in_flight.load(Ordering::SeqCst) == 0;
            let victim = inner
                .conns
                .iter()
                .find(|(_, e)| idle(e) && !e.state.served.load(Ordering::SeqCst))
                .or_else(|| inner.conns.iter().find(|(_, e)| idle(e)))
                .map(|(id, _)| *id)?;
            inner.conns.remove(&victim);
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let state = Arc::new(ConnState {
            epoch: self.epoch,
            in_flight: AtomicUsize::new(0),
            served: Default::default(),
            head_since: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
        });
        let (kill, killed) = oneshot::channel();
        inner.conns.insert(
            id,
            Entry {
                state: state.clone(),
                _kill: kill,
            },
        );
        Some(Admitted {
            state,
            killed,
            slot: Slot {
                tracker: self.clone(),
                id,
            },
        })
    }
}

/// Resolves when the connection has been idle or slow for too long.
pub(crate) async fn watchdog(state: Arc<ConnState>, t: Timeouts) -> &'static str {
    let tick = (t.header.min(t.idle) / 4).clamp(Duration::from_millis(5), Duration::from_secs(1));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Some(why) = state.expired(&t) {
            return why;
        }
    }
}

/// The connection's I/O, noting when request bytes arrive.
pub(crate) struct Tracked<T> {
    pub inner: T,
    pub state: Arc<ConnState>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.state.bytes_read();
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
