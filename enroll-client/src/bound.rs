//! One HTTP/1.1 POST whose body is bound to its TLS 1.3 connection (RFC 9266 `tls-exporter`):
//! the connection is opened first, its exporter value handed to the caller, who builds the body
//! with it (a CSR carrying it in `challengePassword`, [`challenge_password_attribute`]), and the
//! body is sent on that same connection. The CA compares the value in the CSR with its own side
//! of the connection, so a CSR relayed onto another connection is refused.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use iomt_core::channel_binding::{self, EXPORTER_LABEL, EXPORTER_LEN, Exporter};
use reqwest::Url;
use rustls::ProtocolVersion;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::error::ClientError;

/// TCP connect and TLS handshake, together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Sending the request and reading the whole answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body accepted (a certs-only PKCS#7 with a few certificates is a few KiB).
pub const RESPONSE_LIMIT: usize = 256 * 1024;

/// What to POST, apart from the body.
#[derive(Debug, Clone, Copy)]
pub struct BoundPost<'a> {
    /// `https://host[:port]/path`, e.g. `https://ca.example:8443/.well-known/est/simpleenroll`.
    pub url: &'a str,
    /// The body's media type, e.g. `application/pkcs10`.
    pub content_type: &'a str,
    /// The whole `Authorization` header value (`Basic …`), if any. Never logged.
    pub authorization: Option<&'a str>,
}

/// The CA's answer.
#[derive(Debug, Clone)]
pub struct BoundResponse {
    pub status: StatusCode,
    /// Every response header (`Content-Type`, `X-Error-Code`, `Retry-After`, …).
    pub headers: HeaderMap,
    /// The body, at most [`RESPONSE_LIMIT`] bytes.
    pub body: Vec<u8>,
}

impl BoundResponse {
    /// The `Content-Type` header, if it is text.
    pub fn content_type(&self) -> Option<&str> {
        self.header(header::CONTENT_TYPE.as_str())
    }

    /// The CA's stable error code (`X-Error-Code`), if it sent one.
    pub fn error_code(&self) -> Option<&str> {
        self.header("x-error-code")
    }

    /// `Retry-After` in seconds, when it is a number.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.header(header::RETRY_AFTER.as_str())?
            .trim()
            .parse()
            .ok()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why a bound POST did not get an answer. `E` is the body builder's own error.
#[derive(Debug, thiserror::Error)]
pub enum BoundError<E> {
    /// The URL is not `https://host[:port]/…`.
    #[error("`{url}` is not an https:// URL with a host: {reason}")]
    BadUrl { url: String, reason: String },
    /// TCP connect failed.
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        authority: String,
        source: std::io::Error,
    },
    /// The TLS handshake failed (an untrusted CA certificate shows up here).
    #[error("TLS handshake with {authority} failed: {source}")]
    Handshake {
        authority: String,
        source: std::io::Error,
    },
    /// The server negotiated TLS 1.2, which has no `tls-exporter` binding (RFC 9266 §3).
    #[error("{authority} negotiated {version:?}; channel binding needs TLS 1.3")]
    NotTls13 {
        authority: String,
        version: Option<ProtocolVersion>,
    },
    /// rustls could not export keying material.
    #[error("the TLS exporter is unavailable: {0}")]
    Exporter(rustls::Error),
    /// The caller's body builder failed; nothing was sent.
    #[error("building the request body failed: {0}")]
    Body(E),
    /// The request could not be built (a header value with forbidden characters).
    #[error("the request cannot be built: {0}")]
    Request(hyper::http::Error),
    /// HTTP on the connection failed.
    #[error("HTTP exchange with {authority} failed: {source}")]
    Http {
        authority: String,
        source: hyper::Error,
    },
    /// No complete answer within the time limit of that stage.
    #[error("{stage} with {authority} timed out after {} s", after.as_secs())]
    Timeout {
        authority: String,
        stage: &'static str,
        after: Duration,
    },
    /// The answer is larger than [`RESPONSE_LIMIT`]; reading stopped there.
    #[error("the answer from {authority} is larger than {RESPONSE_LIMIT} bytes")]
    TooLarge { authority: String },
    /// The answer's body could not be read.
    #[error("reading the answer from {authority} failed: {reason}")]
    BodyRead { authority: String, reason: String },
}

impl<E: std::fmt::Display> BoundError<E> {
    /// The client error (and exit code) this failure stands for; `ca_cert` names the trusted
    /// root for a TLS trust failure.
    pub fn into_client_error(self, ca_cert: &str) -> ClientError {
        let reason = self.to_string();
        match self {
            BoundError::Connect { authority, .. }
            | BoundError::Http { authority, .. }
            | BoundError::Timeout { authority, .. } => ClientError::Unreachable {
                url: authority,
                reason,
            },
            BoundError::Handshake { source, .. } if is_certificate_error(&source) => {
                ClientError::TlsTrust {
                    ca_cert: ca_cert.to_owned(),
                    reason,
                }
            }
            BoundError::Handshake { authority, .. } | BoundError::NotTls13 { authority, .. } => {
                ClientError::Unreachable {
                    url: authority,
                    reason,
                }
            }
            BoundError::TooLarge { .. } | BoundError::BodyRead { .. } => {
                ClientError::BadResponse(reason)
            }
            BoundError::BadUrl { .. }
            | BoundError::Exporter(_)
            | BoundError::Body(_)
            | BoundError::Request(_) => ClientError::Local(reason),
        }
    }
}

fn is_certificate_error(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| {
            matches!(
                e,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            )
        })
}

/// The rcgen attribute that carries `exporter` in a CSR: PKCS#9 challengePassword, one
/// PrintableString with the exporter in standard padded base64. Pass it to
/// `CertificateParams::serialize_request_with_attributes`.
pub fn challenge_password_attribute(exporter: &[u8; EXPORTER_LEN]) -> rcgen::Attribute {
    rcgen::Attribute {
        oid: channel_binding::CHALLENGE_PASSWORD_ARCS,
        values: channel_binding::attribute_values_der(exporter),
    }
}

/// Opens a TLS 1.3 connection to `request.url` with `config`, reads its `tls-exporter` value
/// (label `EXPORTER-Channel-Binding`, empty context, 32 bytes), builds the body with
/// `build_body(exporter)` and sends it as one HTTP/1.1 POST on that connection. Any HTTP
/// status is an answer (`Ok`); only a transport failure is an error. Connect and handshake get
/// 10 s, the exchange 30 s; the body is read up to [`RESPONSE_LIMIT`].
pub async fn post<E, F>(
    config: Arc<rustls::ClientConfig>,
    request: BoundPost<'_>,
    build_body: F,
) -> Result<BoundResponse, BoundError<E>>
where
    F: FnOnce(Exporter) -> Result<Vec<u8>, E>,
{
    let target = Target::parse(request.url)?;
    let authority = target.authority.clone();
    let timeout = |stage, after| BoundError::Timeout {
        authority: authority.clone(),
        stage,
        after,
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect(config, &target))
        .await
        .map_err(|_| timeout("connecting", CONNECT_TIMEOUT))??;
    let connection = stream.get_ref().1;
    let version = connection.protocol_version();
    if version != Some(ProtocolVersion::TLSv1_3) {
        return Err(BoundError::NotTls13 {
            authority: authority.clone(),
            version,
        });
    }
    let exporter = connection
        .export_keying_material([0u8; EXPORTER_LEN], EXPORTER_LABEL, None)
        .map_err(BoundError::Exporter)?;
    let body = build_body(exporter).map_err(BoundError::Body)?;
    let http_request = build_request(&target, request, body).map_err(BoundError::Request)?;
    tokio::time::timeout(REQUEST_TIMEOUT, exchange(stream, http_request, &authority))
        .await
        .map_err(|_| timeout("the request", REQUEST_TIMEOUT))?
}

/// Where the POST goes.
struct Target {
    server_name: ServerName<'static>,
    /// `host:port`, for connecting, the `Host` header and messages.
    authority: String,
    /// Path and query.
    path: String,
}

impl Target {
    fn parse<E>(url: &str) -> Result<Target, BoundError<E>> {
        let bad = |reason: &str| BoundError::BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let parsed = Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if parsed.scheme() != "https" {
            return Err(bad("the scheme must be https"));
        }
        let port = parsed.port_or_known_default().unwrap_or(443);
        // `host_str` keeps an IPv6 address in brackets, as the authority needs it.
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = match bare.parse::<std::net::IpAddr>() {
            Ok(ip) => ServerName::IpAddress(ip.into()),
            Err(_) => ServerName::try_from(bare.to_owned()).map_err(|e| bad(&e.to_string()))?,
        };
        let mut path = parsed.path().to_owned();
        if let Some(query) = parsed.query() {
            path.push('?');
            path.push_str(query);
        }
        Ok(Target {
            server_name,
            authority: format!("{host}:{port}"),
            path,
        })
    }
}

async fn connect<E>(
    config: Arc<rustls::ClientConfig>,
    target: &Target,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, BoundError<E>> {
    let tcp = TcpStream::connect(&target.authority)
        .await
        .map_err(|source| BoundError::Connect {
            authority: target.authority.clone(),
            source,
        })?;
    // Nagle would hold the POST behind the handshake's last flight.
    let _ = tcp.set_nodelay(true);
    TlsConnector::from(config)
        .connect(target.server_name.clone(), tcp)
        .await
        .map_err(|source| BoundError::Handshake {
            authority: target.authority.clone(),
            source,
        })
}

fn build_request(
    target: &Target,
    request: BoundPost<'_>,
    body: Vec<u8>,
) -> Result<hyper::Request<Full<Bytes>>, hyper::http::Error> {
    let mut builder = hyper::Request::builder()
        .method(Method::POST)
        .uri(target.path.as_str())
        .header(header::HOST, target.authority.as_str())
        .header(header::CONTENT_TYPE, request.content_type)
        .header(header::CONNECTION, "close");
    if let Some(authorization) = request.authorization {
        let mut value = HeaderValue::try_from(authorization)?;
        value.set_sensitive(true);
        builder = builder.header(header::AUTHORIZATION, value);
    }
    builder.body(Full::new(Bytes::from(body)))
}

async fn exchange<E>(
    stream: tokio_rustls::client::TlsStream<TcpStream>,
    request: hyper::Request<Full<Bytes>>,
    authority: &str,
) -> Result<BoundResponse, BoundError<E>> {
    let http = |source| BoundError::Http {
        authority: authority.to_owned(),
        source,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http)?;
    // The connection is driven beside the request; it ends with the answer (`Connection: close`)
    // or is aborted when this function returns.
    let driver = AbortOnDrop(tokio::spawn(connection));
    let response = sender.send_request(request).await.map_err(http)?;
    let (parts, body) = response.into_parts();
    let too_large = || BoundError::TooLarge {
        authority: authority.to_owned(),
    };
    if parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|length| length > RESPONSE_LIMIT as u64)
    {
        return Err(too_large());
    }
    let collected = Limited::new(body, RESPONSE_LIMIT)
        .collect()
        .await
        .map_err(|error| {
            if error.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                BoundError::BodyRead {
                    authority: authority.to_owned(),
                    reason: error.to_string(),
                }
            }
        })?;
    drop(driver);
    Ok(BoundResponse {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes().to_vec(),
    })
}

/// Aborts the connection task when the exchange ends, however it ends.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_parse_takes_host_port_and_path() {
        let cases = [
            (
                "https://ca.example:8443/.well-known/est/simpleenroll",
                "ca.example:8443",
                "/.well-known/est/simpleenroll",
            ),
            ("https://ca.example/x?y=1", "ca.example:443", "/x?y=1"),
            ("https://127.0.0.1:9/", "127.0.0.1:9", "/"),
            ("https://[::1]:8443/a", "[::1]:8443", "/a"),
        ];
        for (url, authority, path) in cases {
            let target = Target::parse::<()>(url).unwrap_or_else(|e| panic!("{url}: {e:?}"));
            assert_eq!(target.authority, authority, "{url}");
            assert_eq!(target.path, path, "{url}");
        }
    }

    #[test]
    fn target_parse_refuses_other_schemes_and_garbage() {
        for url in ["http://ca.example/", "ca.example:8443", "https://"] {
            assert!(
                matches!(Target::parse::<()>(url), Err(BoundError::BadUrl { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn challenge_password_attribute_carries_the_exporter_as_printable_base64() {
        let exporter: Exporter = std::array::from_fn(|i| i as u8);
        let attribute = challenge_password_attribute(&exporter);
        assert_eq!(attribute.oid, &[1, 2, 840, 113549, 1, 9, 7]);
        let text = channel_binding::encode(&exporter);
        let mut expected = vec![0x31, 46, 0x13, 44];
        expected.extend_from_slice(text.as_bytes());
        assert_eq!(attribute.values, expected);
        assert_eq!(channel_binding::decode(&text), Some(exporter));
    }

    #[test]
    fn response_accessors_read_the_error_code_and_retry_after() {
        let mut headers = HeaderMap::new();
        headers.insert("x-error-code", HeaderValue::from_static("csr.not_der"));
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("120"));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let response = BoundResponse {
            status: StatusCode::BAD_REQUEST,
            headers,
            body: Vec::new(),
        };
        assert_eq!(response.error_code(), Some("csr.not_der"));
        assert_eq!(response.retry_after_secs(), Some(120));
        assert_eq!(response.content_type(), Some("text/plain"));
    }
}
