//! A small EST (RFC 7030) client over rustls with ring, trusting only the given roots.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use iomt_core::wire::{CsrRequirements, decode_csrattrs, parse_certs_only};
use reqwest::{StatusCode, header};
use rustls_pki_types::CertificateDer;

use crate::bound::{BoundError, BoundPost};
use crate::error::ClientError;
use iomt_core::channel_binding::Exporter;

/// Connect and whole-request timeouts.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response accepted (a certs-only PKCS#7 with a few certificates is a few KiB).
const RESPONSE_LIMIT: usize = 256 * 1024;

/// An EST endpoint and the trust to reach it.
pub struct EstClient {
    http: reqwest::Client,
    /// The same TLS configuration, for requests that must know their connection (RFC 9266).
    tls: std::sync::Arc<rustls::ClientConfig>,
    server: String,
    base: String,
    ca_cert_name: String,
}

impl EstClient {
    /// A client for `server` (e.g. `https://ca.example:8443`) trusting only `root`, optionally
    /// presenting a client certificate chain (for `simplereenroll`).
    pub fn new(
        server: &str,
        root: &CertificateDer<'static>,
        ca_cert_name: &str,
        identity: Option<crate::tls::ClientIdentity>,
    ) -> Result<EstClient, ClientError> {
        EstClient::trusting(server, std::slice::from_ref(root), ca_cert_name, identity)
    }

    /// A client for `server` trusting only `roots` (the `--ca-cert` root and those in
    /// `DIR/trust.pem`: [`crate::trust::Trust::roots`]), optionally presenting a client
    /// certificate chain.
    pub fn trusting(
        server: &str,
        roots: &[CertificateDer<'static>],
        ca_cert_name: &str,
        identity: Option<crate::tls::ClientIdentity>,
    ) -> Result<EstClient, ClientError> {
        let tls = crate::tls::client_config_trusting(roots, ca_cert_name, identity)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls.clone())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| ClientError::Local(format!("HTTP client: {e}")))?;
        Ok(EstClient {
            http,
            tls: std::sync::Arc::new(tls),
            server: server.trim_end_matches('/').to_owned(),
            base: format!("{}/.well-known/est", server.trim_end_matches('/')),
            ca_cert_name: ca_cert_name.to_owned(),
        })
    }

    fn url(&self, label: Option<&str>, operation: &str) -> String {
        match label {
            Some(label) => format!("{}/{label}/{operation}", self.base),
            None => format!("{}/{operation}", self.base),
        }
    }

    /// `GET cacerts`: the CA certificates (DER).
    pub async fn cacerts(&self, label: Option<&str>) -> Result<Vec<Vec<u8>>, ClientError> {
        let body = self
            .send(self.http.get(self.url(label, "cacerts")), label, "cacerts")
            .await?;
        parse_certs_only(&body).map_err(|e| ClientError::BadResponse(format!("cacerts: {e}")))
    }

    /// `GET csrattrs`: what the CA wants in the CSR (empty when the CA answers 204/404).
    pub async fn csrattrs(&self, label: Option<&str>) -> Result<CsrRequirements, ClientError> {
        let body = self
            .send(
                self.http.get(self.url(label, "csrattrs")),
                label,
                "csrattrs",
            )
            .await?;
        if body.is_empty() {
            return Ok(CsrRequirements::default());
        }
        decode_csrattrs(&body).map_err(|e| ClientError::BadResponse(format!("csrattrs: {e}")))
    }

    /// `POST simpleenroll` with HTTP Basic `serial:token`: the issued certificate(s), DER.
    pub async fn simpleenroll(
        &self,
        label: Option<&str>,
        serial: &str,
        token: &str,
        csr_der: &[u8],
    ) -> Result<Vec<Vec<u8>>, ClientError> {
        let request = self
            .post_csr(label, "simpleenroll", csr_der)
            .basic_auth(serial, Some(token));
        self.certificates(request, label, "simpleenroll").await
    }

    /// `POST simpleenroll` authorized by the client certificate of a manufacturing station
    /// (the device is named by the CSR's serialNumber).
    pub async fn simpleenroll_as_station(
        &self,
        label: Option<&str>,
        csr_der: &[u8],
    ) -> Result<Vec<Vec<u8>>, ClientError> {
        let request = self.post_csr(label, "simpleenroll", csr_der);
        self.certificates(request, label, "simpleenroll").await
    }

    /// `POST simplereenroll`, authorized by the client certificate: the new certificate(s), DER.
    pub async fn simplereenroll(
        &self,
        label: Option<&str>,
        csr_der: &[u8],
    ) -> Result<Vec<Vec<u8>>, ClientError> {
        let request = self.post_csr(label, "simplereenroll", csr_der);
        self.certificates(request, label, "simplereenroll").await
    }

    /// `POST operation` (`simpleenroll` or `simplereenroll`) of a CSR bound to the TLS 1.3
    /// connection it is sent on (RFC 9266): `build_csr` receives that connection's
    /// `tls-exporter` value and returns the CSR (DER) carrying it. Authorized by HTTP Basic
    /// `serial:token` when given, else by this client's certificate. The issued certificate(s),
    /// DER.
    pub async fn bound_enroll<F>(
        &self,
        label: Option<&str>,
        operation: &str,
        basic: Option<(&str, &str)>,
        build_csr: F,
    ) -> Result<Vec<Vec<u8>>, ClientError>
    where
        F: FnOnce(&Exporter) -> Result<Vec<u8>, ClientError>,
    {
        let url = self.url(label, operation);
        let authorization = basic.map(|(serial, token)| {
            format!("Basic {}", STANDARD.encode(format!("{serial}:{token}")))
        });
        let request = BoundPost {
            url: &url,
            content_type: "application/pkcs10",
            authorization: authorization.as_deref(),
        };
        let response = crate::bound::post(self.tls.clone(), request, |exporter| {
            build_csr(&exporter).map(|der| STANDARD.encode(der).into_bytes())
        })
        .await
        .map_err(|error| match error {
            BoundError::Body(local) => local,
            other => other.into_client_error(&self.ca_cert_name),
        })?;
        if let Some(date) = response
            .headers
            .get(header::DATE)
            .and_then(|v| v.to_str().ok())
        {
            crate::clock::record_ca_date(date);
        }
        if !response.status.is_success() {
            let retry_after = response
                .headers
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(crate::clock::parse_retry_after);
            return Err(refusal(response.status, &response.body, retry_after));
        }
        let p7 = decode_base64_body(&response.body, operation)?;
        parse_certs_only(&p7).map_err(|e| ClientError::BadResponse(format!("{operation}: {e}")))
    }

    fn post_csr(
        &self,
        label: Option<&str>,
        operation: &str,
        csr_der: &[u8],
    ) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(label, operation))
            .header(header::CONTENT_TYPE, "application/pkcs10")
            .header("content-transfer-encoding", "base64")
            .body(STANDARD.encode(csr_der))
    }

    async fn certificates(
        &self,
        request: reqwest::RequestBuilder,
        label: Option<&str>,
        operation: &str,
    ) -> Result<Vec<Vec<u8>>, ClientError> {
        let body = self.send(request, label, operation).await?;
        parse_certs_only(&body).map_err(|e| ClientError::BadResponse(format!("{operation}: {e}")))
    }

    /// The TLS configuration (trust and client certificate) of this client.
    pub fn tls_config(&self) -> std::sync::Arc<rustls::ClientConfig> {
        self.tls.clone()
    }

    /// The CA's base URL, `https://host:port`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The URL of an EST operation (for requests sent outside this client).
    pub fn operation_url(&self, label: Option<&str>, operation: &str) -> String {
        self.url(label, operation)
    }

    /// `POST /attestation/challenge` (JSON): the credential sealed to the TPM's EK and AK.
    /// Authorized by `serial:token` when given, else by this client's certificate.
    pub async fn attestation_challenge(
        &self,
        basic: Option<(&str, &str)>,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        let url = format!("{}/attestation/challenge", self.server);
        let mut request = self
            .http
            .post(&url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        if let Some((serial, token)) = basic {
            request = request.basic_auth(serial, Some(token));
        }
        let bytes = self.exchange(request, url, "attestation challenge").await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            ClientError::BadResponse(format!("attestation challenge: not the expected JSON: {e}"))
        })
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        label: Option<&str>,
        operation: &str,
    ) -> Result<Vec<u8>, ClientError> {
        let bytes = self
            .exchange(request, self.url(label, operation), operation)
            .await?;
        if bytes.is_empty() {
            return Ok(bytes);
        }
        decode_base64_body(&bytes, operation)
    }

    /// Sends `request`; the body of a successful answer (empty for 204, and for a csrattrs
    /// 404), or the CA's refusal as a typed error.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        url: String,
        operation: &str,
    ) -> Result<Vec<u8>, ClientError> {
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_error(&url, &e))?;
        let status = response.status();
        if let Some(date) = response
            .headers()
            .get(header::DATE)
            .and_then(|v| v.to_str().ok())
        {
            crate::clock::record_ca_date(date);
        }
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::clock::parse_retry_after);
        let bytes = read_limited(response, RESPONSE_LIMIT)
            .await
            .map_err(|e| match e {
                BodyError::Transport(e) => self.transport_error(&url, &e),
                BodyError::TooLarge { read } => ClientError::BadResponse(format!(
                    "{operation}: the answer is larger than {RESPONSE_LIMIT} bytes \
                     (stopped reading after {read})"
                )),
            })?;
        if status == StatusCode::NO_CONTENT
            || (operation == "csrattrs" && status == StatusCode::NOT_FOUND)
        {
            return Ok(Vec::new());
        }
        if !status.is_success() {
            return Err(refusal(status, &bytes, retry_after));
        }
        Ok(bytes)
    }

    fn transport_error(&self, url: &str, error: &reqwest::Error) -> ClientError {
        let mut source: Option<&dyn std::error::Error> = Some(error);
        while let Some(current) = source {
            // rustls errors arrive directly or wrapped in the io::Error of the TLS stream.
            let tls = current.downcast_ref::<rustls::Error>().or_else(|| {
                current
                    .downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            });
            if let Some(tls) = tls
                && matches!(
                    tls,
                    rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
                )
            {
                return ClientError::TlsTrust {
                    ca_cert: self.ca_cert_name.clone(),
                    reason: tls.to_string(),
                };
            }
            // Some connector layers box the rustls error in a way downcasting cannot see through;
            // rustls's own wording identifies a rejected server certificate.
            let text = current.to_string();
            if text.starts_with("invalid peer certificate") {
                return ClientError::TlsTrust {
                    ca_cert: self.ca_cert_name.clone(),
                    reason: text,
                };
            }
            source = current.source();
        }
        ClientError::Unreachable {
            url: url.to_owned(),
            reason: chain(error),
        }
    }
}

/// The CA's refusal: its stable code and message (the body is `code: message`), typed by status.
pub(crate) fn refusal(status: StatusCode, body: &[u8], retry_after: Option<u64>) -> ClientError {
    let text = String::from_utf8_lossy(body).trim().to_owned();
    let (code, message) = match text.split_once(": ") {
        Some((code, message)) if !code.contains(' ') => (code.to_owned(), message.to_owned()),
        _ => (status.as_str().to_owned(), text),
    };
    match status {
        StatusCode::TOO_MANY_REQUESTS => ClientError::TooSoon {
            retry_after_secs: retry_after.unwrap_or(60),
            message,
        },
        StatusCode::UNAUTHORIZED => ClientError::Unauthorized { code, message },
        StatusCode::FORBIDDEN => ClientError::Forbidden { code, message },
        _ => ClientError::Server {
            status: status.as_u16(),
            code,
            message,
            retry_after_secs: retry_after.filter(|_| status == StatusCode::SERVICE_UNAVAILABLE),
        },
    }
}

/// An EST body: base64 whatever Content-Transfer-Encoding says (RFC 8951), whitespace ignored.
pub(crate) fn decode_base64_body(bytes: &[u8], operation: &str) -> Result<Vec<u8>, ClientError> {
    let compact: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    STANDARD
        .decode(compact)
        .map_err(|e| ClientError::BadResponse(format!("{operation}: body is not base64: {e}")))
}

/// Why a body could not be read.
pub(crate) enum BodyError {
    Transport(reqwest::Error),
    /// More than the limit arrived; reading stopped there (the connection is dropped).
    TooLarge {
        read: usize,
    },
}

/// Reads a response body chunk by chunk, giving up as soon as it passes `limit` bytes (or its
/// `Content-Length` says it will), so a hostile or broken answer cannot grow the client's memory.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    if let Some(length) = response.content_length()
        && length > limit as u64
    {
        return Err(BodyError::TooLarge { read: 0 });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge {
                read: body.len() + chunk.len(),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
