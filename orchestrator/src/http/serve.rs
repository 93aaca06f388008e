//! The HTTP listener's own limits, which a router cannot set: how long a client may take to send
//! its headers (also between requests on a kept-alive connection), how long a request may take,
//! how large a body may be, and how many connections are open (in all, and from one address).
//! A client over a limit is cut off, so idle or slow connections cannot starve the firewalls
//! that poll the lists, nor grow Parapet's memory.
//!
//! With TLS settings the listener speaks HTTPS only, and asks for (without requiring) a client
//! certificate when a client CA is set; each request carries its [`Connection`].

use std::{collections::HashMap, io, net::IpAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    http::{Request, StatusCode},
};
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::ServiceExt as _;
use tower_http::{limit::RequestBodyLimitLayer, timeout::TimeoutLayer};

use super::Connection;
use crate::severable::Severable;

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
    tls: Option<TlsAcceptor>,
    limits: Limits,
    stop: CancellationToken,
    cut: CancellationToken,
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
        let stream = Severable::new(stream, &cut);
        let service = service.clone();
        let stop = stop.clone();
        let tls = tls.clone();
        connections.spawn(async move {
            let _place = place;
            let secure = tls.is_some();
            let (io, certificate) = match tls {
                None => (Io::Plain(stream), None),
                // the handshake is held to the time a request's headers have
                Some(tls) => {
                    match tokio::time::timeout(limits.header_timeout, tls.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let leaf = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .map(|c| c.to_vec());
                            (Io::Tls(Box::new(stream)), leaf)
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    }
                }
            };
            let connection = Connection {
                peer,
                certificate,
                tls: secure,
            };
            let service =
                service.map_request(move |mut request: Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(connection.clone());
                    request
                });
            let service = hyper_util::service::TowerToHyperService::new(service);
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(io), service);
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

/// A connection's stream, plain or TLS.
enum Io {
    Plain(Severable<tokio::net::TcpStream>),
    Tls(Box<tokio_rustls::server::TlsStream<Severable<tokio::net::TcpStream>>>),
}

impl tokio::io::AsyncRead for Io {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Io {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Io::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => std::pin::Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The TLS settings of an HTTP listener: its certificate and key, and the CA whose client
/// certificates it accepts (optional for the client: a token will do).
pub fn tls(settings: &crate::config::TlsConfig) -> anyhow::Result<TlsAcceptor> {
    use anyhow::Context as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_file_iter(&settings.cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| {
            format!(
                "cannot read certificates from `{}`",
                settings.cert.display()
            )
        })?;
    let key = PrivateKeyDer::from_pem_file(&settings.key).with_context(|| {
        format!(
            "cannot read a private key from `{}`",
            settings.key.display()
        )
    })?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = match &settings.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("cannot read `{}`", ca.display()))?
            {
                roots.add(cert.with_context(|| format!("`{}`", ca.display()))?)?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .allow_unauthenticated()
                    .build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    }
    .with_single_cert(certs, key)
    .context("the HTTP listener's certificate and key")?;
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
