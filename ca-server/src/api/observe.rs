//! What every request leaves behind: its latency and status in the metrics (per declared
//! route, so a path parameter never makes a new series), and for EST certificate requests one
//! counter per outcome and one log line per refusal (stable code, endpoint, authorization kind,
//! device serial; never a token, key or CSR).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiError;
use crate::authority::Issued;
use crate::telemetry::Metrics;

/// Middleware: records each response's latency and status under its route.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    metrics.response(&endpoint, response.status().as_u16(), started.elapsed());
    response
}

/// How an EST certificate request was authorized (a metrics label and a log field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationKind {
    /// Neither credential was presented.
    None,
    /// The device's current certificate (`simplereenroll`).
    Reenrollment,
    /// A manufacturing station's client certificate.
    Station,
    /// HTTP Basic `serial:one-time-token`.
    Token,
}

impl AuthorizationKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizationKind::None => "none",
            AuthorizationKind::Reenrollment => "reenrollment",
            AuthorizationKind::Station => "station",
            AuthorizationKind::Token => "token",
        }
    }
}

/// Counts an EST certificate request's outcome and logs a refusal on one line.
pub fn certificate_request(
    metrics: &Metrics,
    endpoint: &'static str,
    authorization: AuthorizationKind,
    device: Option<&str>,
    result: &Result<Issued, ApiError>,
) {
    match result {
        Ok(issued) => metrics.certificate_request(
            authorization.as_str(),
            &issued.issuer,
            &issued.product,
            "issued",
        ),
        Err(error) => {
            metrics.certificate_request(
                authorization.as_str(),
                "unknown",
                "unknown",
                error.code.as_str(),
            );
            // The device serial is what the client claimed (HTTP Basic user, or the CSR's
            // subject serialNumber), escaped so a client cannot break the line.
            let device = device.unwrap_or("-").escape_debug().to_string();
            tracing::warn!(
                code = error.code.as_str(),
                status = error.status.as_u16(),
                endpoint,
                authorization = authorization.as_str(),
                device = %device,
                "request refused"
            );
        }
    }
}
