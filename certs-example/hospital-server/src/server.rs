//! `HospitalServer`: binds first (port 0 works), then accepts mutual-TLS connections with the
//! verifier built from the current CRLs, decides about each device, answers with one line, and
//! refreshes the CRLs in the background before their nextUpdate.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, broadcast};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::crl::{HeldCrls, refresh_delay};
use crate::decision::{Decision, RejectReason};
use crate::error::HospitalError;
use crate::identity::{DeviceIdentity, PolicyOid};
use crate::tls::TlsMaterial;

/// A TLS handshake must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After the handshake, the client's request head is waited for this long (then answered anyway).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The request head is read up to this size and otherwise ignored.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// On shutdown, connections in flight get this long to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Decisions buffered for a slow subscriber.
const DECISION_BUFFER: usize = 256;

/// What the server needs; plain data, parsed at the boundary.
#[derive(Debug, Clone)]
pub struct HospitalConfig {
    /// Where to listen (`127.0.0.1:0` picks a free port; see [`HospitalServer::local_addr`]).
    pub listen: SocketAddr,
    /// The IoMT root certificate (PEM): the only trust anchor for device certificates.
    pub ca_cert: PathBuf,
    /// This server's own certificate chain (PEM), presented to devices.
    pub cert: PathBuf,
    /// The private key of `cert` (PEM).
    pub key: PathBuf,
    /// The CRL URLs, copied from the certificates' CRL distribution points: the issuing CA's
    /// CRL(s) and the root's CRL (which covers the issuing CAs).
    pub crl_urls: Vec<String>,
    /// The level policy OIDs accepted (e.g. only High, `1.3.6.1.4.1.32473.7.1.3`).
    pub accept_policies: Vec<PolicyOid>,
}

/// The hospital's mutual-TLS server. Share it in an `Arc` to refresh CRLs or subscribe to
/// decisions while [`HospitalServer::run_until`] runs.
pub struct HospitalServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    shared: Arc<Shared>,
}

/// State shared by the accept loop, the connections and the CRL refresher.
struct Shared {
    tls: TlsMaterial,
    client: reqwest::Client,
    crl_urls: Vec<String>,
    /// Locked for a whole refresh, so refreshes apply in order.
    crls: Mutex<HeldCrls>,
    /// The configuration new connections use; replaced after each refresh.
    current: RwLock<Arc<ServerConfig>>,
    accepted: Vec<PolicyOid>,
    decisions: broadcast::Sender<Decision>,
}

impl HospitalServer {
    /// Loads the TLS material, fetches every CRL (any failure stops start-up: without its CRL a
    /// device could not be checked), builds the verifier and binds the listener.
    pub async fn bind(config: HospitalConfig) -> Result<HospitalServer, HospitalError> {
        if config.crl_urls.is_empty() {
            return Err(HospitalError::NoCrlUrl);
        }
        if config.accept_policies.is_empty() {
            return Err(HospitalError::NoAcceptedPolicy);
        }
        let tls = TlsMaterial::load(&config.ca_cert, &config.cert, &config.key)?;
        let client = tls.crl_client()?;
        let mut crls = HeldCrls::default();
        let failures = crls.fetch_all(&client, &config.crl_urls).await;
        if !failures.is_empty() {
            return Err(HospitalError::CrlRefresh(failures));
        }
        let current = tls.server_config(crls.ders())?;
        log_crls(&crls);
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| HospitalError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| HospitalError::Bind {
                addr: config.listen,
                source,
            })?;
        let (decisions, _) = broadcast::channel(DECISION_BUFFER);
        Ok(HospitalServer {
            listener,
            local_addr,
            shared: Arc::new(Shared {
                tls,
                client,
                crl_urls: config.crl_urls,
                crls: Mutex::new(crls),
                current: RwLock::new(current),
                accepted: config.accept_policies,
                decisions,
            }),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Every decision from now on (in addition to the log lines).
    pub fn subscribe(&self) -> broadcast::Receiver<Decision> {
        self.shared.decisions.subscribe()
    }

    /// Fetches every CRL now and rebuilds the verifier. A URL that fails keeps the CRL held for
    /// it, and the failures are returned; new connections use the result at once.
    pub async fn refresh_crls(&self) -> Result<(), HospitalError> {
        self.shared.refresh().await
    }

    /// Accepts connections and refreshes CRLs until `shutdown` completes, then gives connections
    /// in flight a few seconds to finish.
    pub async fn run_until(&self, shutdown: impl Future<Output = ()>) {
        let refresher = refresh_loop(self.shared.clone());
        tokio::pin!(shutdown, refresher);
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                () = &mut refresher => {} // never completes: it loops until dropped
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        connections.spawn(serve_connection(self.shared.clone(), stream, peer));
                    }
                    Err(error) => {
                        // Out of file descriptors and the like: wait a little instead of spinning.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            connections.shutdown().await;
        }
    }
}

impl std::fmt::Debug for HospitalServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HospitalServer")
            .field("local_addr", &self.local_addr)
            .field("crl_urls", &self.shared.crl_urls)
            .field("accepted", &self.shared.accepted)
            .finish_non_exhaustive()
    }
}

impl Shared {
    async fn refresh(&self) -> Result<(), HospitalError> {
        let mut held = self.crls.lock().await;
        let mut candidate = held.clone();
        let failures = candidate.fetch_all(&self.client, &self.crl_urls).await;
        if failures.len() == self.crl_urls.len() {
            return Err(HospitalError::CrlRefresh(failures));
        }
        let config = self.tls.server_config(candidate.ders())?;
        *held = candidate;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
        log_crls(&held);
        if failures.is_empty() {
            Ok(())
        } else {
            Err(HospitalError::CrlRefresh(failures))
        }
    }

    fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Logs the decision as one line and publishes it to subscribers.
    fn decide(&self, peer: SocketAddr, decision: Decision) {
        match &decision {
            Decision::Accepted(_) => tracing::info!(%peer, "{decision}"),
            Decision::Rejected(_) => tracing::warn!(%peer, "{decision}"),
        }
        // No subscriber is the normal case outside tests.
        let _ = self.decisions.send(decision);
    }
}

/// Refreshes before the earliest nextUpdate (at half the time left, at least every few minutes);
/// a failed refresh keeps the CRLs held and is retried sooner.
async fn refresh_loop(shared: Arc<Shared>) {
    let mut failed = false;
    loop {
        let earliest = shared.crls.lock().await.earliest_next_update();
        tokio::time::sleep(refresh_delay(unix_now(), earliest, failed)).await;
        failed = match shared.refresh().await {
            Ok(()) => false,
            Err(error) => {
                tracing::warn!(%error, "CRL refresh failed; the CRLs held until now stay in use");
                true
            }
        };
    }
}

fn log_crls(crls: &HeldCrls) {
    let next = crls
        .earliest_next_update()
        .map_or_else(|| "none".to_owned(), |t| format!("in {} s", t - unix_now()));
    tracing::info!("CRLs in use: {}, earliest nextUpdate {next}", crls.len());
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// One connection: handshake with the current configuration, decide, answer, close.
async fn serve_connection(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let acceptor = TlsAcceptor::from(shared.config());
    let mut tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            let reason = RejectReason::from_handshake_error(&error);
            shared.decide(peer, Decision::Rejected(reason));
            return;
        }
        Err(_) => {
            let reason = RejectReason::Other(format!(
                "TLS handshake not completed within {} s",
                HANDSHAKE_TIMEOUT.as_secs()
            ));
            shared.decide(peer, Decision::Rejected(reason));
            return;
        }
    };
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first());
    let decision = match leaf.map(|leaf| DeviceIdentity::check(leaf, &shared.accepted)) {
        Some(Ok(identity)) => Decision::Accepted(identity),
        Some(Err(reason)) => Decision::Rejected(reason),
        None => Decision::Rejected(RejectReason::NoCertificate),
    };
    shared.decide(peer, decision.clone());
    if let Err(error) = respond(&mut tls, &decision).await {
        tracing::debug!(%peer, %error, "the answer was not delivered");
    }
}

/// Reads the request head (if any) and answers `200 accepted …` or `403 rejected: …`.
async fn respond(tls: &mut TlsStream<TcpStream>, decision: &Decision) -> std::io::Result<()> {
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while head.len() < MAX_REQUEST_HEAD && !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let status = match decision {
        Decision::Accepted(_) => "200 OK",
        Decision::Rejected(_) => "403 Forbidden",
    };
    let body = format!("{decision}\n");
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(response.as_bytes()).await?;
    tls.shutdown().await
}
