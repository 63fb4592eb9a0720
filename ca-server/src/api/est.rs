//! EST (RFC 7030) handlers: `cacerts`, `csrattrs`, `simpleenroll` (token or station),
//! `simplereenroll`. Parse, call, render.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
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

/// The media type of a CSR (RFC 7030 §4.2.1).
const PKCS10: &str = "application/pkcs10";

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
pub async fn simpleenroll(request: EstRequest, body: Body) -> Result<Response, ApiError> {
    enroll(&request, None, body).await
}

/// `POST <label>/simpleenroll`.
pub async fn simpleenroll_labeled(
    request: EstRequest,
    Path(label): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    enroll(&request, Some(&label), body).await
}

/// `POST simplereenroll` without a label.
pub async fn simplereenroll(request: EstRequest, body: Body) -> Result<Response, ApiError> {
    reenroll(&request, None, body).await
}

/// `POST <label>/simplereenroll`.
pub async fn simplereenroll_labeled(
    request: EstRequest,
    Path(label): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    reenroll(&request, Some(&label), body).await
}

/// HTTP Basic `serial:token` authorizes with a one-time token; otherwise a client certificate
/// is taken as a manufacturing station's. The outcome is counted and a refusal logged.
async fn enroll(
    request: &EstRequest,
    label: Option<&str>,
    body: Body,
) -> Result<Response, ApiError> {
    let authority = &request.authority;
    let basic = request
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_basic);
    let station_chain = request.peer.presented();
    let kind = match (&basic, station_chain) {
        (Some(_), _) => AuthorizationKind::Token,
        (None, Some(_)) => AuthorizationKind::Station,
        (None, None) => AuthorizationKind::None,
    };
    let mut device = basic.as_ref().map(|credential| credential.serial.clone());
    let issued = async {
        require_content_type(&request.headers, PKCS10)?;
        if let Some(credential) = basic {
            let csr_der = read_csr(body).await?;
            return authority
                .enroll_with_token(TokenEnrollment {
                    label,
                    serial: &credential.serial,
                    token: &credential.token,
                    csr_der: &csr_der,
                    channel_binding: request.binding.as_ref(),
                })
                .await
                .map_err(ApiError::from_token_route);
        }
        let Some(chain) = station_chain else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::AuthRequired,
                "send HTTP Basic credentials `<device serial>:<one-time token>`, or present a station certificate",
            ));
        };
        let csr_der = read_csr(body).await?;
        let result = authority
            .enroll_by_station(StationEnrollment {
                label,
                peer_chain: chain,
                csr_der: &csr_der,
                channel_binding: request.binding.as_ref(),
            })
            .await
            .map_err(ApiError::from);
        device = refused_device(&result, &csr_der);
        result
    }
    .await;
    observe::certificate_request(
        &request.metrics,
        "simpleenroll",
        kind,
        device.as_deref(),
        &issued,
    );
    certs_only_response(&[&issued?.certificate.der])
}

/// Re-enrollment with the current certificate as the TLS client certificate.
async fn reenroll(
    request: &EstRequest,
    label: Option<&str>,
    body: Body,
) -> Result<Response, ApiError> {
    let mut device = None;
    let issued = async {
        require_content_type(&request.headers, PKCS10)?;
        let csr_der = read_csr(body).await?;
        let result = request
            .authority
            .reenroll(Reenrollment {
                label,
                peer_chain: request.peer.0.as_deref().map(Vec::as_slice),
                csr_der: &csr_der,
                channel_binding: request.binding.as_ref(),
            })
            .await
            .map_err(ApiError::from);
        device = refused_device(&result, &csr_der);
        result
    }
    .await;
    let kind = AuthorizationKind::Reenrollment;
    observe::certificate_request(
        &request.metrics,
        "simplereenroll",
        kind,
        device.as_deref(),
        &issued,
    );
    certs_only_response(&[&issued?.certificate.der])
}

/// What an enrollment handler reads besides its label and body: the authority, where outcomes
/// are counted, the request's headers, and what the TLS connection it arrived on says about its
/// client.
pub struct EstRequest {
    authority: Arc<Authority>,
    metrics: Arc<Metrics>,
    headers: HeaderMap,
    /// The client's certificate chain as presented (verified by the route that relies on it).
    peer: UnverifiedClientChain,
    /// The connection's `tls-exporter` value; `None` without one (TLS 1.2, or no TLS listener
    /// set the extension), which a required channel binding then refuses.
    binding: Option<iomt_core::channel_binding::Exporter>,
}

impl FromRequestParts<Arc<Authority>> for EstRequest {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        authority: &Arc<Authority>,
    ) -> Result<EstRequest, ApiError> {
        let metrics = parts
            .extensions
            .get::<Arc<Metrics>>()
            .cloned()
            .ok_or_else(|| {
                tracing::error!("EST route mounted without its metrics");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::ServerInternal,
                    "the CA is misconfigured",
                )
            })?;
        Ok(EstRequest {
            authority: authority.clone(),
            metrics,
            headers: parts.headers.clone(),
            peer: parts
                .extensions
                .get::<UnverifiedClientChain>()
                .cloned()
                .unwrap_or_default(),
            binding: parts
                .extensions
                .get::<ChannelBinding>()
                .and_then(|ChannelBinding(exporter)| *exporter),
        })
    }
}

/// The body, read and base64-decoded.
async fn read_csr(body: Body) -> Result<Vec<u8>, ApiError> {
    decode_base64_body(read_body(body).await?)
}

/// The device serial a refused CSR names (unverified: for the log line only); `None` when the
/// request succeeded, whose certificate names its device.
fn refused_device<T>(result: &Result<T, ApiError>, csr_der: &[u8]) -> Option<String> {
    result.as_ref().err()?;
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
