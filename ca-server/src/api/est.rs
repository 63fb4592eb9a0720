//! EST (RFC 7030) handlers: `cacerts`, `csrattrs`, `simpleenroll` (token or station),
//! `simplereenroll`. Parse, call, render.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::error::{ApiError, ErrorCode};
use super::observe::{self, AuthorizationKind};
use crate::auth::token::parse_basic;
use crate::authority::{Authority, Csr, Reenrollment, StationEnrollment, TokenEnrollment};
use crate::telemetry::Metrics;
use crate::tls::{ChannelBinding, UnverifiedClientChain};

/// Largest EST request body accepted (a P-384 CSR is under 1 KiB; RSA-4096 about 2 KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

/// `GET cacerts` without a label.
pub async fn cacerts(State(authority): State<Arc<Authority>>) -> Result<Response, ApiError> {
    render_cacerts(&authority, None)
}

/// `GET <label>/cacerts`.
pub async fn cacerts_labeled(
    State(authority): State<Arc<Authority>>,
    Path(label): Path<String>,
) -> Result<Response, ApiError> {
    render_cacerts(&authority, Some(&label))
}

fn render_cacerts(authority: &Authority, label: Option<&str>) -> Result<Response, ApiError> {
    let certs = authority.ca_certificates(label)?;
    let ders: Vec<&[u8]> = certs.iter().map(|c| c.as_ref()).collect();
    certs_only_response(&ders)
}

/// `GET csrattrs` without a label.
pub async fn csrattrs(State(authority): State<Arc<Authority>>) -> Result<Response, ApiError> {
    render_csrattrs(&authority, None)
}

/// `GET <label>/csrattrs`.
pub async fn csrattrs_labeled(
    State(authority): State<Arc<Authority>>,
    Path(label): Path<String>,
) -> Result<Response, ApiError> {
    render_csrattrs(&authority, Some(&label))
}

fn render_csrattrs(authority: &Authority, label: Option<&str>) -> Result<Response, ApiError> {
    let requirements = authority.csr_requirements(label)?;
    let der = iomt_core::wire::encode_csrattrs(&requirements).map_err(|e| internal_encoding(&e))?;
    Ok(base64_response("application/csrattrs", &der))
}

/// `POST simpleenroll` without a label.
pub async fn simpleenroll(
    State(authority): State<Arc<Authority>>,
    Extension(metrics): Extension<Arc<Metrics>>,
    Extension(peer): Extension<UnverifiedClientChain>,
    binding: Option<Extension<ChannelBinding>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let connection = Connection::new(&peer, binding);
    enroll(&authority, &metrics, None, &connection, &headers, body).await
}

/// `POST <label>/simpleenroll`.
pub async fn simpleenroll_labeled(
    State(authority): State<Arc<Authority>>,
    Extension(metrics): Extension<Arc<Metrics>>,
    Path(label): Path<String>,
    Extension(peer): Extension<UnverifiedClientChain>,
    binding: Option<Extension<ChannelBinding>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let connection = Connection::new(&peer, binding);
    enroll(
        &authority,
        &metrics,
        Some(&label),
        &connection,
        &headers,
        body,
    )
    .await
}

/// HTTP Basic `serial:token` authorizes with a one-time token; otherwise a client certificate
/// is taken as a manufacturing station's. The outcome is counted and a refusal logged.
async fn enroll(
    authority: &Authority,
    metrics: &Metrics,
    label: Option<&str>,
    connection: &Connection<'_>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let peer = connection.peer;
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_basic);
    let station_chain = peer.presented();
    let (kind, mut device) = match (&basic, station_chain) {
        (Some(credential), _) => (AuthorizationKind::Token, Some(credential.serial.clone())),
        (None, Some(_)) => (AuthorizationKind::Station, None),
        (None, None) => (AuthorizationKind::None, None),
    };
    let issued = match require_content_type(headers, "application/pkcs10") {
        Err(error) => Err(error),
        Ok(()) => match (basic, station_chain) {
            (Some(credential), _) => match read_csr(body).await {
                Err(error) => Err(error),
                Ok(csr_der) => authority
                    .enroll_with_token(TokenEnrollment {
                        label,
                        serial: &credential.serial,
                        token: &credential.token,
                        csr_der: &csr_der,
                        channel_binding: connection.binding.as_ref(),
                    })
                    .await
                    .map_err(ApiError::from_token_route),
            },
            (None, Some(chain)) => match read_csr(body).await {
                Err(error) => Err(error),
                Ok(csr_der) => {
                    let result = authority
                        .enroll_by_station(StationEnrollment {
                            label,
                            peer_chain: chain,
                            csr_der: &csr_der,
                            channel_binding: connection.binding.as_ref(),
                        })
                        .await
                        .map_err(ApiError::from);
                    if result.is_err() {
                        device = claimed_device(&csr_der);
                    }
                    result
                }
            },
            (None, None) => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::AuthRequired,
                "send HTTP Basic credentials `<device serial>:<one-time token>`, or present a station certificate",
            )),
        },
    };
    observe::certificate_request(metrics, "simpleenroll", kind, device.as_deref(), &issued);
    certs_only_response(&[&issued?.certificate.der])
}

/// `POST simplereenroll` without a label.
pub async fn simplereenroll(
    State(authority): State<Arc<Authority>>,
    Extension(metrics): Extension<Arc<Metrics>>,
    Extension(peer): Extension<UnverifiedClientChain>,
    binding: Option<Extension<ChannelBinding>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let connection = Connection::new(&peer, binding);
    reenroll(&authority, &metrics, None, &connection, &headers, body).await
}

/// `POST <label>/simplereenroll`.
pub async fn simplereenroll_labeled(
    State(authority): State<Arc<Authority>>,
    Extension(metrics): Extension<Arc<Metrics>>,
    Path(label): Path<String>,
    Extension(peer): Extension<UnverifiedClientChain>,
    binding: Option<Extension<ChannelBinding>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let connection = Connection::new(&peer, binding);
    reenroll(
        &authority,
        &metrics,
        Some(&label),
        &connection,
        &headers,
        body,
    )
    .await
}

async fn reenroll(
    authority: &Authority,
    metrics: &Metrics,
    label: Option<&str>,
    connection: &Connection<'_>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let peer = connection.peer;
    let mut device = None;
    let issued = match require_content_type(headers, "application/pkcs10") {
        Err(error) => Err(error),
        Ok(()) => match read_csr(body).await {
            Err(error) => Err(error),
            Ok(csr_der) => {
                let result = authority
                    .reenroll(Reenrollment {
                        label,
                        peer_chain: peer.0.as_deref().map(Vec::as_slice),
                        csr_der: &csr_der,
                        channel_binding: connection.binding.as_ref(),
                    })
                    .await
                    .map_err(ApiError::from);
                if result.is_err() {
                    device = claimed_device(&csr_der);
                }
                result
            }
        },
    };
    let kind = AuthorizationKind::Reenrollment;
    observe::certificate_request(metrics, "simplereenroll", kind, device.as_deref(), &issued);
    certs_only_response(&[&issued?.certificate.der])
}

/// What the TLS connection a request arrived on says about its client.
struct Connection<'a> {
    peer: &'a UnverifiedClientChain,
    /// The connection's `tls-exporter` value; `None` without one (TLS 1.2, or no TLS listener
    /// set the extension), which a required channel binding then refuses.
    binding: Option<iomt_core::channel_binding::Exporter>,
}

impl<'a> Connection<'a> {
    fn new(
        peer: &'a UnverifiedClientChain,
        binding: Option<Extension<ChannelBinding>>,
    ) -> Connection<'a> {
        Connection {
            peer,
            binding: binding.and_then(|Extension(ChannelBinding(exporter))| exporter),
        }
    }
}

/// The body, read and base64-decoded.
async fn read_csr(body: Body) -> Result<Vec<u8>, ApiError> {
    decode_base64_body(read_body(body).await?)
}

/// The device serial a refused CSR names (unverified: for the log line only).
fn claimed_device(csr_der: &[u8]) -> Option<String> {
    Csr::parse(csr_der)
        .ok()
        .and_then(|csr| csr.subject_serial_number().map(str::to_owned))
}

/// Reads the body within [`BODY_LIMIT`]; the body timeout layer bounds the time.
pub(super) async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, BODY_LIMIT).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::EstTooLarge,
                format!("the request body exceeds {BODY_LIMIT} bytes"),
            )
        } else {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::EstBodyIncomplete,
                format!("the request body could not be read: {e}"),
            )
        }
    })
}

pub(super) fn require_content_type(
    headers: &HeaderMap,
    expected: &'static str,
) -> Result<(), ApiError> {
    let actual = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = actual.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::EstContentType,
            format!("Content-Type must be {expected} (got `{actual}`)"),
        ))
    }
}

/// EST bodies are base64 (RFC 8951 §3.2), with or without line breaks: whitespace (spaces, tabs,
/// LF and CRLF) is ignored wherever it appears.
fn decode_base64_body(body: Bytes) -> Result<Vec<u8>, ApiError> {
    let compact: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    STANDARD.decode(&compact).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::CsrNotBase64,
            format!("the body is not base64: {e}"),
        )
    })
}

fn certs_only_response(ders: &[&[u8]]) -> Result<Response, ApiError> {
    let p7 = iomt_core::wire::certs_only(ders).map_err(|e| internal_encoding(&e))?;
    Ok(base64_response(
        "application/pkcs7-mime; smime-type=certs-only",
        &p7,
    ))
}

/// RFC 8951 §3.2: EST answers are RFC 4648 base64, one line with no line breaks (a client
/// built on a strict decoder fails on the 64-column lines of MIME).
fn base64_response(content_type: &'static str, der: &[u8]) -> Response {
    let mut response = STANDARD.encode(der).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        "content-transfer-encoding",
        HeaderValue::from_static("base64"),
    );
    response
}

fn internal_encoding(error: &dyn std::error::Error) -> ApiError {
    tracing::error!(error = %error, "EST encoding failed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::ServerInternal,
        "the CA failed to encode its response",
    )
}

#[cfg(test)]
#[path = "tests/est.rs"]
mod tests;
