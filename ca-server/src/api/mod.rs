//! HTTP surface: the EST and admin routers and the operator console (HTTPS), and the public
//! revocation/AIA router (plain HTTP).

mod admin;
pub mod attestation;
mod checkpoint;
mod console;
pub mod error;
pub mod error_code;
mod est;
mod health;
mod metrics;
mod observe;
mod public;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::{Extension, Router};
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::authority::Authority;
use crate::operations::Health;
use crate::pki::CaHandle;
use crate::revocation::Revocation;
use crate::storage::Store;
use crate::telemetry::Metrics;

pub use est::BODY_LIMIT;
pub use metrics::metrics_router;

/// Records every response's latency and status in `metrics` (see [`observe::track`]).
fn tracked(router: Router, metrics: Arc<Metrics>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(
        metrics,
        observe::track,
    ))
}

/// The EST routes under `/.well-known/est/`, with and without a label; a request body must
/// arrive within `body_timeout` (config `limits.body_timeout_secs`).
pub fn est_router(
    authority: Arc<Authority>,
    metrics: Arc<Metrics>,
    body_timeout: Duration,
) -> Router {
    let routes = Router::new()
        .route("/.well-known/est/cacerts", get(est::cacerts))
        .route("/.well-known/est/csrattrs", get(est::csrattrs))
        .route("/.well-known/est/simpleenroll", post(est::simpleenroll))
        .route("/.well-known/est/simplereenroll", post(est::simplereenroll))
        .route("/attestation/challenge", post(attestation::challenge))
        .route(
            "/.well-known/est/{label}/cacerts",
            get(est::cacerts_labeled),
        )
        .route(
            "/.well-known/est/{label}/csrattrs",
            get(est::csrattrs_labeled),
        )
        .route(
            "/.well-known/est/{label}/simpleenroll",
            post(est::simpleenroll_labeled),
        )
        .route(
            "/.well-known/est/{label}/simplereenroll",
            post(est::simplereenroll_labeled),
        )
        .with_state(authority)
        .layer(Extension(metrics.clone()))
        .layer(RequestBodyTimeoutLayer::new(body_timeout));
    tracked(routes, metrics).layer(TraceLayer::new_for_http())
}

/// Largest admin API request body (a bulk CSV of devices).
pub const ADMIN_BODY_LIMIT: usize = 8 * 1024 * 1024;

/// The admin routes (HTTPS; API key or operator certificate, with roles).
pub fn admin_router(
    state: admin::AdminState,
    metrics: Arc<Metrics>,
    body_timeout: Duration,
) -> Router {
    let routes = admin::router(state)
        .layer(axum::extract::DefaultBodyLimit::max(ADMIN_BODY_LIMIT))
        .layer(RequestBodyTimeoutLayer::new(body_timeout));
    tracked(routes, metrics).layer(TraceLayer::new_for_http())
}

pub use admin::{AdminState, OPENAPI, Route, routes as admin_routes};
pub use console::{
    Access as ConsoleAccess, CONTENT_SECURITY_POLICY, ConsoleState, routes as console_routes,
};

/// The operator console under `/console/` (HTTPS; a session from an API key or an operator
/// certificate, with the admin API's roles).
pub fn console_router(
    state: ConsoleState,
    metrics: Arc<Metrics>,
    body_timeout: Duration,
) -> Router {
    let routes = console::router(state).layer(RequestBodyTimeoutLayer::new(body_timeout));
    tracked(routes, metrics).layer(TraceLayer::new_for_http())
}

/// The plain-HTTP public routes: CA certificates, CRLs, OCSP, `/healthz` and `/readyz`.
pub fn public_router(
    ca: CaHandle,
    revocation: Arc<Revocation>,
    store: Arc<dyn Store>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    body_timeout: Duration,
) -> Router {
    let audit_routes = Router::new()
        .route("/audit/checkpoint", get(checkpoint::latest))
        .with_state(store);
    let health_routes = Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .with_state(health);
    let revocation_routes = Router::new()
        .route("/crl/{file}", get(public::crl))
        .route("/ocsp/{ca}", post(public::ocsp_post))
        .route("/ocsp/{ca}/{request}", get(public::ocsp_get))
        .with_state(revocation);
    let routes = Router::new()
        .route("/ca/{file}", get(public::ca_certificate))
        .with_state(ca)
        .merge(revocation_routes)
        .merge(audit_routes)
        .merge(health_routes)
        .layer(RequestBodyTimeoutLayer::new(body_timeout));
    tracked(routes, metrics).layer(TraceLayer::new_for_http())
}
