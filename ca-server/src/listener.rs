//! The accept loop both listeners share: a connection cap per listener (kept well under the
//! open-file limit), the TLS handshake timeout (HTTPS), the header timeout that also closes idle
//! keep-alive connections, and accept errors such as `EMFILE` survived with a rate-limited
//! warning and a short pause, so one listener running out never stops the other.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::response::Response;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::{Service, ServiceExt};

use crate::config::Limits;
use crate::tls::{ChannelBinding, UnverifiedClientChain};

/// File descriptors kept free for everything that is not a client connection: the database
/// (SQLite file, WAL and shared memory, or the PostgreSQL pool), key and policy files, logs,
/// the listeners themselves.
pub const RESERVED_FDS: u64 = 256;
/// Upper bound of the derived per-listener cap (an unlimited or huge `RLIMIT_NOFILE`).
const CAP_CEILING: usize = 32_768;
/// Pause after an accept error that is not about one connection (`EMFILE`, `ENFILE`, `ENOBUFS`).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// At most one warning of each kind per listener in this interval.
const WARN_INTERVAL: Duration = Duration::from_secs(10);
/// Time in-flight requests get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Connections the kernel queues for a listener while it is at its cap (tokio's default is 128;
/// Linux caps the value at `net.core.somaxconn`, 4,096 by default).
const BACKLOG: u32 = 1024;

/// Binds a listening socket with a [`BACKLOG`]-deep accept queue, so clients beyond the cap wait
/// in the queue instead of having their SYNs dropped and retried seconds later.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// What one listener enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub handshake_timeout: Duration,
    /// Headers must arrive within this; an idle keep-alive connection is closed after it.
    pub header_timeout: Duration,
    /// Connections served at once; further ones wait in the kernel's backlog.
    pub max_connections: usize,
}

impl ConnectionLimits {
    /// The configured limits, the cap derived from this process's `RLIMIT_NOFILE` soft limit.
    pub fn from_config(limits: &Limits) -> ConnectionLimits {
        let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        ConnectionLimits {
            handshake_timeout: limits.handshake_timeout(),
            header_timeout: limits.header_timeout(),
            max_connections: connection_cap(nofile, limits.max_connections),
        }
    }
}

/// Connections per listener: half of what the open-file limit leaves after [`RESERVED_FDS`]
/// (two listeners share it), or the configured value when that is lower. `None` is unlimited.
pub fn connection_cap(nofile_soft: Option<u64>, configured: Option<usize>) -> usize {
    let derived = match nofile_soft {
        None => CAP_CEILING,
        Some(soft) => {
            let usable = soft.saturating_sub(RESERVED_FDS).max(soft / 2);
            usize::try_from(usable / 2)
                .unwrap_or(CAP_CEILING)
                .clamp(1, CAP_CEILING)
        }
    };
    configured.map_or(derived, |wanted| wanted.clamp(1, derived))
}

/// How a listener turns an accepted TCP stream into HTTP/1.1.
#[derive(Clone)]
pub enum Transport {
    /// Plain HTTP (the public revocation and AIA endpoints).
    Plain,
    /// rustls; the client's certificate chain, if any, and the connection's channel binding go
    /// into each request's extensions.
    Tls(TlsAcceptor),
}

/// A listener ready to serve: its socket, transport, routes and limits.
pub struct Listener {
    /// Names the listener in logs (`https`, `http`).
    pub name: &'static str,
    pub socket: TcpListener,
    pub transport: Transport,
    pub router: Router,
    pub limits: ConnectionLimits,
}

/// Serves `listener` until `stop` is set, then gives open connections [`SHUTDOWN_GRACE`].
pub async fn serve(listener: Listener, mut stop: watch::Receiver<bool>) -> std::io::Result<()> {
    let Listener {
        name,
        socket,
        transport,
        router,
        limits,
    } = listener;
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut full = Throttle::default();
    let mut failing = Throttle::default();
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if let Some(suppressed) = full.ready() {
                    tracing::warn!(
                        listener = name,
                        max_connections = limits.max_connections,
                        suppressed,
                        "connection limit reached; new connections wait in the backlog"
                    );
                }
                tokio::select! {
                    permit = slots.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = stopped(&mut stop) => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) if is_per_connection(&error) => {
                    tracing::debug!(listener = name, %error, "connection failed before accept");
                    continue;
                }
                Err(error) => {
                    // EMFILE and kin: keep the loop, let connections close, try again shortly.
                    if let Some(suppressed) = failing.ready() {
                        tracing::warn!(listener = name, %error, suppressed, "accept failed; pausing before the next accept");
                    }
                    tokio::select! {
                        () = tokio::time::sleep(ACCEPT_PAUSE) => continue,
                        () = stopped(&mut stop) => break,
                    }
                }
            },
            () = stopped(&mut stop) => break,
        };
        let watcher = graceful.watcher();
        let transport = transport.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let _slot = permit;
            match transport {
                Transport::Plain => {
                    serve_connection(stream, router, limits, watcher, peer).await;
                }
                Transport::Tls(acceptor) => {
                    let stream = match tokio::time::timeout(
                        limits.handshake_timeout,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(error)) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let chain = UnverifiedClientChain(stream.get_ref().1.peer_certificates().map(
                        |certs| Arc::new(certs.iter().map(|c| c.clone().into_owned()).collect()),
                    ));
                    let binding = ChannelBinding::of(stream.get_ref().1);
                    let service = router.map_request(move |mut request: Request<Incoming>| {
                        request.extensions_mut().insert(chain.clone());
                        request.extensions_mut().insert(binding);
                        request
                    });
                    serve_connection(stream, service, limits, watcher, peer).await;
                }
            }
        });
    }
    drop(socket);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            "connections still open after the shutdown grace period; closing them"
        );
    }
    Ok(())
}

/// HTTP/1.1 on one connection, with the header (and idle keep-alive) timeout.
async fn serve_connection<I, S>(
    io: I,
    service: S,
    limits: ConnectionLimits,
    watcher: Watcher,
    peer: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let connection = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    if let Err(error) = watcher.watch(connection).await {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// Errors about one connection that was already gone when accepted: no reason to pause.
fn is_per_connection(error: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        error.kind(),
        K::ConnectionAborted | K::ConnectionReset | K::Interrupted | K::WouldBlock
    )
}

/// Resolves once the stop flag is set (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Lets one warning through per [`WARN_INTERVAL`] and counts the ones it held back.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// `Some(suppressed since the last warning)` when a warning may be logged now.
    fn ready(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < WARN_INTERVAL => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_cap_keeps_headroom_under_the_open_file_limit() {
        // (soft limit, configured, expected per listener)
        let table = [
            (Some(1024), None, 384),
            (Some(1024), Some(100), 100),
            (Some(1024), Some(5000), 384),
            (Some(65_536), None, 32_640),
            (Some(256), None, 64),
            (Some(1), None, 1),
            (None, None, CAP_CEILING),
            (None, Some(1000), 1000),
        ];
        for (soft, configured, expected) in table {
            assert_eq!(
                connection_cap(soft, configured),
                expected,
                "soft {soft:?}, configured {configured:?}"
            );
        }
        // Both listeners together never reach the limit.
        for soft in [64, 300, 1024, 4096, 20_000] {
            assert!(2 * connection_cap(Some(soft), None) as u64 <= soft);
        }
    }

    #[test]
    fn throttle_lets_one_warning_through_per_interval() {
        let mut throttle = Throttle::default();
        assert_eq!(throttle.ready(), Some(0));
        assert_eq!(throttle.ready(), None);
        assert_eq!(throttle.ready(), None);
        throttle.last = Instant::now().checked_sub(WARN_INTERVAL);
        assert_eq!(throttle.ready(), Some(2));
    }
}
