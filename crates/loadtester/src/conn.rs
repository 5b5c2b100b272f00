//! Connection handling of the load tester's HTTP server: a cap on open connections, a
//! header-read timeout and an idle timeout, so that clients holding connections open cannot
//! starve the ones that matter (the kubelet's health check, the controller's webhooks).
//!
//! - A connection that has not sent a complete request head `header_read_timeout` after it
//!   opened, or after it started sending one, is closed (slow or silent clients).
//! - A kept-alive connection with no request for `idle_timeout` is closed.
//! - At `max_connections` open connections, a new one makes room by closing the connection idle
//!   the longest (as nginx reuses idle keep-alive connections); when every connection has a
//!   request in progress, new ones wait in the listen backlog until one ends. Running out of
//!   file descriptors is never how the limit is found: `main` caps the limit below the
//!   process's `RLIMIT_NOFILE`.
//!
//! hyper's own header timeout restarts on every read; this module keeps the times itself: an
//! I/O wrapper notes when bytes arrive while no request is in progress, a service wrapper
//! notes when requests start and end, and one sweeper closes what has outstayed its timeout.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tower::ServiceExt as _;

/// Connection limits of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Longest wait for a complete request head (from the connection's start, or from the
    /// first byte of a request on a kept-alive connection).
    pub header_read_timeout: Duration,
    /// Longest time a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_connections: 1024,
        }
    }
}

/// What is known of one connection; times are milliseconds since the server started.
#[derive(Debug)]
struct Conn {
    epoch: Instant,
    in_flight: AtomicUsize,
    served: AtomicU64,
    /// When the connection last had no request in progress (its start, or a response).
    idle_since: AtomicU64,
    /// 1 + when bytes of a new request head arrived while idle; 0: none since.
    head_started: AtomicU64,
}

impl Conn {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether a timeout has passed at `now`; `None` while a request is in progress.
    fn expired(&self, now: u64, limits: &ConnLimits) -> Option<bool> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let head = self.head_started.load(Ordering::Acquire);
        let waited = |since: u64| Duration::from_millis(now.saturating_sub(since));
        Some(if head > 0 {
            waited(head - 1) > limits.header_read_timeout
        } else if self.served.load(Ordering::Acquire) == 0 {
            waited(self.idle_since.load(Ordering::Acquire)) > limits.header_read_timeout
        } else {
            waited(self.idle_since.load(Ordering::Acquire)) > limits.idle_timeout
        })
    }
}

/// The open connections.
#[derive(Debug, Default)]
struct Table {
    conns: Mutex<HashMap<u64, (Arc<Conn>, tokio::task::AbortHandle)>>,
    freed: Notify,
}

impl Table {
    fn len(&self) -> usize {
        self.conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn remove(&self, id: u64) {
        let removed = self
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        if let Some((_, abort)) = removed {
            abort.abort();
            self.freed.notify_one();
        }
    }

    /// Closes the connection idle the longest; false when every connection is busy.
    fn evict_idle(&self) -> bool {
        let victim = {
            let conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
            conns
                .iter()
                .filter(|(_, (c, _))| c.in_flight.load(Ordering::Acquire) == 0)
                .min_by_key(|(_, (c, _))| c.idle_since.load(Ordering::Acquire))
                .map(|(id, _)| *id)
        };
        match victim {
            Some(id) => {
                self.remove(id);
                true
            }
            None => false,
        }
    }

    /// Closes every connection whose timeout has passed.
    fn sweep(&self, limits: &ConnLimits) {
        let expired: Vec<u64> = {
            let conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
            conns
                .iter()
                .filter(|(_, (c, _))| c.expired(c.now(), limits) == Some(true))
                .map(|(id, _)| *id)
                .collect()
        };
        for id in expired {
            self.remove(id);
        }
    }
}

/// The socket, noting when request bytes arrive while no request is in progress.
struct Watched {
    inner: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before
            && this.conn.in_flight.load(Ordering::Acquire) == 0
            && this.conn.head_started.load(Ordering::Acquire) == 0
        {
            this.conn
                .head_started
                .store(this.conn.now() + 1, Ordering::Release);
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// A request in progress; ends (even when the connection is dropped) on drop.
struct InFlight(Arc<Conn>);

impl InFlight {
    fn start(conn: Arc<Conn>) -> Self {
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        conn.head_started.store(0, Ordering::Release);
        InFlight(conn)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.served.fetch_add(1, Ordering::AcqRel);
        self.0.idle_since.store(self.0.now(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Removes a connection from the table when its task ends, however it ends.
struct Leave(Arc<Table>, u64);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.remove(self.1);
    }
}

/// Resolves once `rx` is true (or its sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Serves `router` on `listener` until `shutdown` turns true; then stops accepting, closes idle
/// connections and returns once the requests in progress have been answered.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let table = Arc::new(Table::default());
    let epoch = Instant::now();
    let cap = limits.max_connections.max(1);
    let tick = (limits.header_read_timeout.min(limits.idle_timeout) / 4)
        .clamp(Duration::from_millis(20), Duration::from_secs(1));
    let sweeper = {
        let table = table.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(tick);
            loop {
                every.tick().await;
                table.sweep(&limits);
            }
        })
    };
    let mut next_id: u64 = 0;
    let mut warned_full = false;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stopped(&mut shutdown) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors or a connection reset before it was accepted: wait
                // a little rather than spin.
                tracing::warn!("accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        while table.len() >= cap && !table.evict_idle() {
            if !warned_full {
                tracing::warn!(
                    "{cap} connections with requests in progress: new connections wait (-max-connections)"
                );
                warned_full = true;
            }
            tokio::select! {
                _ = table.freed.notified() => {}
                _ = stopped(&mut shutdown) => break,
            }
        }
        if *shutdown.borrow() {
            break;
        }
        next_id += 1;
        let id = next_id;
        let conn = Arc::new(Conn {
            epoch,
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            idle_since: AtomicU64::new(epoch.elapsed().as_millis() as u64),
            head_started: AtomicU64::new(0),
        });
        let io = TokioIo::new(Watched {
            inner: stream,
            conn: conn.clone(),
        });
        let service = {
            let conn = conn.clone();
            let router = router.clone();
            hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let in_flight = InFlight::start(conn.clone());
                let answer = router.clone().oneshot(req.map(axum::body::Body::new));
                async move {
                    let response = answer.await;
                    drop(in_flight);
                    response
                }
            })
        };
        let mut stop = shutdown.clone();
        // Held while spawning so that the task cannot leave the table before it is in it.
        let mut conns = table.conns.lock().unwrap_or_else(PoisonError::into_inner);
        let leave = Leave(table.clone(), id);
        let task = tokio::spawn(async move {
            let _leave = leave;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(TokioTimer::new()).keep_alive(true);
            // The timeouts are ours (see the module documentation), not hyper's.
            builder.header_read_timeout(Option::<Duration>::None);
            let served = builder.serve_connection(io, service);
            tokio::pin!(served);
            tokio::select! {
                r = served.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!("connection: {e}");
                    }
                }
                _ = stopped(&mut stop) => {
                    served.as_mut().graceful_shutdown();
                    let _ = served.as_mut().await;
                }
            }
        });
        conns.insert(id, (conn, task.abort_handle()));
        drop(conns);
    }
    // Stop: idle connections close now, busy ones after their response (graceful shutdown).
    sweeper.abort();
    loop {
        let notified = table.freed.notified();
        if table.len() == 0 {
            break;
        }
        notified.await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(served: u64, idle_since: u64, head: u64, in_flight: usize) -> Conn {
        Conn {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(in_flight),
            served: AtomicU64::new(served),
            idle_since: AtomicU64::new(idle_since),
            head_started: AtomicU64::new(head),
        }
    }

    #[test]
    fn which_timeout_applies() {
        let limits = ConnLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            max_connections: 10,
        };
        // A new connection that sent nothing: the header timeout.
        assert_eq!(conn(0, 0, 0, 0).expired(9_000, &limits), Some(false));
        assert_eq!(conn(0, 0, 0, 0).expired(11_000, &limits), Some(true));
        // Kept alive after a request: the idle timeout.
        assert_eq!(conn(1, 0, 0, 0).expired(60_000, &limits), Some(false));
        assert_eq!(conn(1, 0, 0, 0).expired(121_000, &limits), Some(true));
        // Bytes of a head since 50 s: the header timeout runs from them.
        assert_eq!(conn(1, 0, 50_001, 0).expired(59_000, &limits), Some(false));
        assert_eq!(conn(1, 0, 50_001, 0).expired(61_000, &limits), Some(true));
        // A request in progress is never timed out here (tasks run for up to -timeout).
        assert_eq!(conn(0, 0, 0, 1).expired(1_000_000, &limits), None);
    }
}
