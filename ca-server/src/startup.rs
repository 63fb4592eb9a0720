//! `Application`: binds both listeners first (port 0 in tests), exposes the real addresses,
//! then serves EST over rustls HTTPS and the public endpoints over plain HTTP until stopped
//! (both through `listener::serve`, with the configured timeouts and connection caps).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use iomt_core::policy::PolicySet;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::api;
use crate::audit::Checkpointer;
use crate::auth::failures::FailureAudit;
use crate::auth::operator::Authenticator;
use crate::auth::session::Sessions;
use crate::authority::Authority;
use crate::config::{ConfigError, Settings};
use crate::https_cert::{CurrentCert, HttpsRenewal};
use crate::listener::{ConnectionLimits, Listener, Transport, stopped};
use crate::operations::{AuditAtStart, Gauges, GenerationError, Health, Lifecycle, Overviews};
use crate::pki::{CaHandle, CaMaterial, PkiError, PublicUrls};
use crate::revocation::Revocation;
use crate::storage::{CommitObserver, StoreError};
use crate::telemetry::Metrics;
use crate::tls::{TlsSetupError, server_config};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("policies: {0}")]
    Policy(#[from] iomt_core::policy::PolicyError),
    #[error("CA material: {0}")]
    Pki(#[from] PkiError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("TLS: {0}")]
    Tls(#[from] TlsSetupError),
    #[error("revocation: {0}")]
    Revocation(#[from] crate::revocation::RevocationError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Audit(#[from] crate::audit::GuardError),
    #[error("CA generations: {0}")]
    Generations(#[from] GenerationError),
}

/// A bound, ready-to-run CA server.
pub struct Application {
    https: TcpListener,
    http: TcpListener,
    https_addr: SocketAddr,
    http_addr: SocketAddr,
    /// The metrics listener, its address and routes, when `metrics_listen` is set.
    metrics: Option<(TcpListener, SocketAddr, Router)>,
    tls: TlsAcceptor,
    est: Router,
    public: Router,
    authority: Arc<Authority>,
    revocation: Arc<Revocation>,
    checkpointer: Option<Arc<Checkpointer>>,
    /// Picks up CA rollovers and retires generations (every replica runs it).
    lifecycle: Arc<Lifecycle>,
    /// Renews the HTTPS certificate before it expires and after a root rollover.
    https_renewal: Arc<HttpsRenewal>,
    limits: ConnectionLimits,
}

/// How often CRLs and OCSP responder certificates are checked for renewal.
const REFRESH_INTERVAL: Duration = Duration::from_secs(600);

/// Binds a listener and reports the address it really got (port 0 picks one).
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartupError> {
    let listener =
        crate::listener::bind(addr).map_err(|source| StartupError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| StartupError::Bind { addr, source })?;
    Ok((listener, local))
}

impl Application {
    /// Loads policies, CA material and the database, and binds both listeners.
    pub async fn build(settings: &Settings) -> Result<Application, StartupError> {
        let policies = Arc::new(PolicySet::load_dir(&settings.data_dir.join("policies"))?);
        if !settings.config.evaluation {
            policies.ensure_production_ready()?;
        }
        // Keys first: a wrong passphrase or PIN stops here, before the database is touched.
        let (dir, access) = (settings.data_dir.clone(), settings.key_access.clone());
        tokio::task::spawn_blocking(move || CaMaterial::check_unlock(&dir, &access))
            .await
            .map_err(|e| GenerationError::Task(e.to_string()))??;
        let store = crate::storage::open_with_priority(
            &settings.database_url(),
            settings.config.storage.driver_priority(),
        )
        .await?;
        // Every generation recorded in the database (G1 adopted from the data directory).
        let handle = CaHandle::new(Arc::new(
            crate::operations::generations::load(
                &settings.data_dir,
                &settings.key_access,
                store.as_ref(),
            )
            .await?,
        ));
        let ca = handle.current();
        let trail = crate::audit::guard_at_start(store.as_ref(), &ca.root_der).await?;
        tracing::info!(
            events = trail.events,
            checkpoints = trail.checkpoints.len(),
            head = ?trail.head_hash,
            "audit trail verified"
        );
        let audit = AuditAtStart {
            events: trail.events,
            head_hash: trail.head_hash,
        };
        let metrics = Arc::new(Metrics::new());
        crate::operations::policy_changes::record(&policies, store.as_ref()).await?;
        let checkpointer = Checkpointer::new(
            store.clone(),
            ca.clone(),
            settings.config.audit.checkpoint_interval(),
        )
        .map(Arc::new);
        if let Some(checkpointer) = &checkpointer {
            checkpointer.checkpoint_now().await;
        }
        let current_cert = Arc::new(
            CurrentCert::new(ca.tls_chain.clone(), ca.tls_key.clone_key())
                .map_err(TlsSetupError::Certificate)?,
        );
        let tls = TlsAcceptor::from(server_config(&ca, current_cert.clone())?);
        let https_renewal = Arc::new(HttpsRenewal::new(
            settings,
            store.clone(),
            handle.clone(),
            current_cert,
        ));
        let urls = PublicUrls::new(&settings.config.public_url);
        let revocation = Arc::new(
            Revocation::new(handle.clone(), store.clone(), policies.clone())?
                .with_metrics(metrics.clone()),
        );
        let observer: Arc<dyn CommitObserver> = metrics.clone();
        let lifecycle = Arc::new(Lifecycle::new(
            settings,
            store.clone(),
            handle.clone(),
            revocation.clone(),
            policies.clone(),
        ));
        let authority = Arc::new(Authority::observed(
            policies.clone(),
            handle.clone(),
            store.clone(),
            urls,
            Some(observer),
        ));
        let health = Arc::new(Health::new(
            store.clone(),
            handle.clone(),
            revocation.clone(),
            audit.clone(),
            metrics.clone(),
        ));
        let gauges = Arc::new(Gauges::new(
            store.clone(),
            handle.clone(),
            revocation.clone(),
            metrics.clone(),
        ));
        let bootstrap_key = settings
            .config
            .admin_token_sha256
            .as_deref()
            .and_then(|h| hex::decode(h).ok());
        let admin = api::AdminState {
            authority: authority.clone(),
            revocation: revocation.clone(),
            authenticator: Arc::new(Authenticator::new(store.clone(), &ca, bootstrap_key)),
            failures: Arc::new(FailureAudit::new(store.clone())),
            recalls: Arc::new(crate::operations::Recalls::new(
                store.clone(),
                revocation.clone(),
                policies.clone(),
            )),
            inventory: Arc::new(crate::operations::Inventory::new(store.clone(), policies)),
        };
        let console = api::ConsoleState {
            sessions: Arc::new(Sessions::new(
                store.clone(),
                Duration::from_secs(settings.config.console.idle_timeout_secs),
                Duration::from_secs(settings.config.console.max_session_secs),
            )),
            overviews: Arc::new(Overviews::new(
                store.clone(),
                handle.clone(),
                revocation.clone(),
                admin.inventory.clone(),
                audit,
            )),
            running: Default::default(),
            admin: admin.clone(),
        };

        let limits = settings.config.limits;
        let connections = ConnectionLimits::from_config(&limits);
        tracing::info!(
            max_connections = connections.max_connections,
            header_timeout_secs = limits.header_timeout_secs,
            "listener limits (per listener)"
        );
        let body_timeout = limits.body_timeout();
        let (https, https_addr) = bind(settings.listen()?).await?;
        let (http, http_addr) = bind(settings.http_listen()?).await?;
        let metrics_listener = match settings.metrics_listen()? {
            Some(addr) => {
                let (socket, local) = bind(addr).await?;
                tracing::info!(addr = %local, "metrics at /metrics");
                Some((socket, local, api::metrics_router(gauges)))
            }
            None => None,
        };
        Ok(Application {
            https,
            http,
            https_addr,
            http_addr,
            metrics: metrics_listener,
            tls,
            est: api::est_router(authority.clone(), metrics.clone(), body_timeout)
                .merge(api::admin_router(admin, metrics.clone(), body_timeout))
                .merge(api::console_router(console, metrics.clone(), body_timeout)),
            public: api::public_router(
                handle,
                revocation.clone(),
                store.clone(),
                health,
                metrics,
                body_timeout,
            ),
            revocation,
            checkpointer,
            lifecycle,
            https_renewal,
            authority,
            limits: connections,
        })
    }

    /// The bound HTTPS address (the real port when configured with port 0).
    pub fn https_addr(&self) -> SocketAddr {
        self.https_addr
    }

    /// The bound plain-HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The bound metrics address, when metrics are on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, addr, _)| *addr)
    }

    /// The authority (tests and the CLI use its store and policies).
    pub fn authority(&self) -> Arc<Authority> {
        self.authority.clone()
    }

    /// The revocation service (CRL, OCSP).
    pub fn revocation(&self) -> Arc<Revocation> {
        self.revocation.clone()
    }

    /// The CA lifecycle task (tests tick it to pick up a rollover at once).
    pub fn lifecycle(&self) -> Arc<Lifecycle> {
        self.lifecycle.clone()
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let mut refresh_stop = stop_rx.clone();
        let revocation = self.revocation.clone();
        tokio::spawn(async move {
            loop {
                if let Err(error) = revocation.refresh().await {
                    tracing::error!(%error, "CRL/OCSP refresh failed; retrying at the next interval");
                }
                tokio::select! {
                    () = tokio::time::sleep(REFRESH_INTERVAL) => {}
                    () = stopped(&mut refresh_stop) => break,
                }
            }
        });
        if let Some(checkpointer) = &self.checkpointer {
            tokio::spawn(checkpointer.clone().run(stop_rx.clone()));
        }
        tokio::spawn(self.lifecycle.clone().run(stop_rx.clone()));
        tokio::spawn(self.https_renewal.clone().run(stop_rx.clone()));
        let metrics = self.metrics.map(|(socket, _, router)| {
            crate::listener::serve(
                Listener {
                    name: "metrics",
                    socket,
                    transport: Transport::Plain,
                    router,
                    limits: self.limits,
                },
                stop_rx.clone(),
            )
        });
        let metrics = async move {
            match metrics {
                Some(serving) => serving.await,
                None => Ok(()),
            }
        };
        let public = crate::listener::serve(
            Listener {
                name: "http",
                socket: self.http,
                transport: Transport::Plain,
                router: self.public,
                limits: self.limits,
            },
            stop_rx.clone(),
        );
        let https = crate::listener::serve(
            Listener {
                name: "https",
                socket: self.https,
                transport: Transport::Tls(self.tls),
                router: self.est,
                limits: self.limits,
            },
            stop_rx,
        );
        let (public, https, metrics) = tokio::join!(public, https, metrics);
        // Every request has been answered: the last events this process wrote get covered.
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.checkpoint_now().await;
        }
        public.and(https).and(metrics)
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
