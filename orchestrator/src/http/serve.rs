//! The HTTP listener's own limits, which a router cannot set: how long a client may take to send
//! its headers (also between requests on a kept-alive connection), how long a request may take,
//! how large a body may be, and how many connections are open (in all, and from one address).
//! A client over a limit is cut off, so idle or slow connections cannot starve the firewalls
//! that poll the lists, nor grow Parapet's memory.

use std::{collections::HashMap, io, net::IpAddr, sync::Arc, time::Duration};

use axum::{Router, http::StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower_http::{limit::RequestBodyLimitLayer, timeout::TimeoutLayer};

/// The limits of one HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request's headers must have arrived this long after the connection opened, or after
    /// the previous answer on it.
    pub header_timeout: Duration,
    /// A request must be answered within this.
    pub request_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_connections_per_ip: 64,
            max_body_bytes: 1 << 20,
        }
    }
}

/// Open connections, in all and per address.
#[derive(Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// One connection's place; given back when it closes.
struct Place {
    open: Arc<Mutex<Open>>,
    ip: IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self.open.lock();
        open.total -= 1;
        if let Some(n) = open.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.by_ip.remove(&self.ip);
            }
        }
    }
}

/// Serves `router` on `listener` within `limits` until `stop`; then lets the requests in
/// progress finish (the caller bounds how long it waits).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: CancellationToken,
    refused: impl Fn(&'static str) + Send + 'static,
) -> io::Result<()> {
    let service = router
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ));
    let open = Arc::new(Mutex::new(Open::default()));
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // out of descriptors, say: the listener itself is fine; pause a moment
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let ip = peer.ip();
        let place = {
            let mut o = open.lock();
            let mine = o.by_ip.get(&ip).copied().unwrap_or(0);
            if o.total >= limits.max_connections || mine >= limits.max_connections_per_ip {
                None
            } else {
                o.total += 1;
                *o.by_ip.entry(ip).or_insert(0) += 1;
                Some(Place {
                    open: open.clone(),
                    ip,
                })
            }
        };
        let Some(place) = place else {
            // closed at once: nothing is read, nothing kept
            drop(stream);
            refused("http_connections");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(service.clone());
        let stop = stop.clone();
        connections.spawn(async move {
            let _place = place;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}
