//! EST workloads: token `simpleenroll` over keep-alive connections, and `simplereenroll` with
//! a fresh mutual-TLS connection per request; the keys and CSRs they send, made beforehand.

use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request};
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::load::{Transport, Workload};

/// The simpleenroll path.
pub const SIMPLEENROLL: &str = "/.well-known/est/simpleenroll";
/// The simplereenroll path.
pub const SIMPLEREENROLL: &str = "/.well-known/est/simplereenroll";

/// A device's fresh P-256 key (PKCS#8 DER) and its CSR (DER) naming the device serial.
pub struct KeyAndCsr {
    /// PKCS#8 DER of the private key.
    pub key_pkcs8: Vec<u8>,
    /// PKCS#10 DER.
    pub csr: Vec<u8>,
}

/// Generates a key and CSR for each serial on every core.
pub fn keys_and_csrs(serials: &[String]) -> anyhow::Result<Vec<KeyAndCsr>> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = serials.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = serials
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|s| key_and_csr(s)).collect()))
            .collect();
        let mut all = Vec::with_capacity(serials.len());
        for handle in handles {
            let part: anyhow::Result<Vec<KeyAndCsr>> = handle
                .join()
                .map_err(|_| anyhow::anyhow!("a key generation thread panicked"))?;
            all.extend(part?);
        }
        Ok(all)
    })
}

fn key_and_csr(serial: &str) -> anyhow::Result<KeyAndCsr> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let csr = enroll_client::csr::build_csr(&key, serial)?;
    Ok(KeyAndCsr {
        key_pkcs8: key.serialize_der(),
        csr,
    })
}

/// EST request body: base64 of the DER CSR.
fn est_body(csr: &[u8]) -> Bytes {
    Bytes::from(STANDARD.encode(csr))
}

fn host_value(addr: std::net::SocketAddr) -> anyhow::Result<HeaderValue> {
    Ok(HeaderValue::from_str(&addr.to_string())?)
}

/// `simpleenroll` with HTTP Basic `serial:token`, one request per device, on kept-alive
/// connections. Answers can be kept (to enroll devices before another measurement).
pub struct Enroll {
    host: HeaderValue,
    tls: Arc<ClientConfig>,
    bodies: Vec<Bytes>,
    authorizations: Vec<HeaderValue>,
    kept: Option<Mutex<Vec<Option<Bytes>>>>,
}

impl Enroll {
    /// One request per `(serial, token)` with the matching CSR.
    pub fn new(
        addr: std::net::SocketAddr,
        tls: Arc<ClientConfig>,
        credentials: &[(String, String)],
        csrs: &[KeyAndCsr],
        keep_answers: bool,
    ) -> anyhow::Result<Enroll> {
        let authorizations = credentials
            .iter()
            .map(|(serial, token)| {
                let basic = STANDARD.encode(format!("{serial}:{token}"));
                HeaderValue::from_str(&format!("Basic {basic}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Enroll {
            host: host_value(addr)?,
            tls,
            bodies: csrs.iter().map(|c| est_body(&c.csr)).collect(),
            authorizations,
            kept: keep_answers.then(|| Mutex::new(vec![None; credentials.len()])),
        })
    }

    /// The kept answers (base64 PKCS#7), by request index.
    pub fn into_answers(self) -> Vec<Option<Bytes>> {
        self.kept
            .and_then(|kept| kept.into_inner().ok())
            .unwrap_or_default()
    }
}

impl Workload for Enroll {
    fn capacity(&self) -> Option<usize> {
        Some(self.bodies.len().min(self.authorizations.len()))
    }

    fn request(&self, index: usize) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.bodies[index].clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = hyper::Uri::from_static(SIMPLEENROLL);
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/pkcs10"));
        headers.insert(AUTHORIZATION, self.authorizations[index].clone());
        request
    }

    fn check(&self, index: usize, body: &Bytes) -> Result<(), String> {
        if body.is_empty() {
            return Err("empty certificate answer".into());
        }
        if let Some(kept) = &self.kept
            && let Ok(mut kept) = kept.lock()
            && let Some(slot) = kept.get_mut(index)
        {
            *slot = Some(body.clone());
        }
        Ok(())
    }

    fn transport(&self, _: usize) -> Transport {
        Transport::Tls(self.tls.clone())
    }
}

/// The certificate in an EST answer (base64 of a certs-only PKCS#7 holding the leaf).
pub fn certificate_of(answer: &[u8]) -> anyhow::Result<Vec<u8>> {
    let compact: Vec<u8> = answer
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let p7 = STANDARD.decode(compact)?;
    iomt_core::wire::parse_certs_only(&p7)?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("the answer holds no certificate"))
}

/// `simplereenroll`: each request on a new connection authenticated with the device's current
/// certificate and key, carrying a CSR for a new key.
pub struct Reenroll {
    host: HeaderValue,
    identities: Vec<Arc<ClientConfig>>,
    bodies: Vec<Bytes>,
}

impl Reenroll {
    /// One request per device: `current` holds `(certificate, key PKCS#8)`; `next` the new CSRs.
    pub fn new(
        addr: std::net::SocketAddr,
        roots: &rustls::RootCertStore,
        issuing_ca: &CertificateDer<'static>,
        current: Vec<(Vec<u8>, Vec<u8>)>,
        next: &[KeyAndCsr],
    ) -> anyhow::Result<Reenroll> {
        let mut identities = Vec::with_capacity(current.len());
        let verifier = crate::verifier::RememberingVerifier::new(roots.clone())?;
        for (cert, key) in current {
            let chain = vec![CertificateDer::from(cert), issuing_ca.clone()];
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key));
            let config = ClientConfig::builder_with_provider(crate::setup::provider())
                .with_safe_default_protocol_versions()?
                .dangerous()
                .with_custom_certificate_verifier(verifier.clone())
                .with_client_auth_cert(chain, key)?;
            identities.push(Arc::new(config));
        }
        Ok(Reenroll {
            host: host_value(addr)?,
            identities,
            bodies: next.iter().map(|c| est_body(&c.csr)).collect(),
        })
    }
}

impl Workload for Reenroll {
    fn capacity(&self) -> Option<usize> {
        Some(self.identities.len().min(self.bodies.len()))
    }

    fn request(&self, index: usize) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.bodies[index].clone()));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = hyper::Uri::from_static(SIMPLEREENROLL);
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/pkcs10"));
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
        request
    }

    fn check(&self, _: usize, body: &Bytes) -> Result<(), String> {
        if body.is_empty() {
            Err("empty certificate answer".into())
        } else {
            Ok(())
        }
    }

    fn transport(&self, index: usize) -> Transport {
        Transport::Tls(self.identities[index].clone())
    }

    fn fresh_connections(&self) -> bool {
        true
    }
}
