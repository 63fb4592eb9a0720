//! The client's TLS configuration: only the given roots are trusted (the `--ca-cert` root and
//! those the device took up into `DIR/trust.pem`), certificates are judged by
//! the device clock, and a CA certificate that is merely *not yet* valid by that clock (a device
//! whose clock is behind) is accepted with a warning instead of locking the device out.
//!
//! Why the one tolerance is safe: the chain, signatures, name and usage are still fully checked,
//! and a certificate that is not yet valid is one the CA issued recently, never an old one whose
//! key may have leaked (an *expired* certificate is still refused). A device whose clock is
//! behind could otherwise never reach the CA again after the CA renews its TLS certificate.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::clock::{DeviceClock, human};
use crate::error::ClientError;

/// The key behind a client certificate: a key file, or a key that stays in the TPM.
pub enum ClientKey {
    Software(rustls_pki_types::PrivateKeyDer<'static>),
    Tpm(crate::tpm::TpmKeyFile),
}

/// A client certificate chain (leaf first) and its key, for mutual TLS.
pub struct ClientIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: ClientKey,
}

/// A rustls client configuration trusting only `root`, judging time by the device clock.
pub fn client_config(
    root: &CertificateDer<'static>,
    ca_cert_name: &str,
    identity: Option<ClientIdentity>,
) -> Result<rustls::ClientConfig, ClientError> {
    client_config_trusting(std::slice::from_ref(root), ca_cert_name, identity)
}

/// A rustls client configuration trusting only `roots` (e.g. [`crate::trust::Trust::roots`]:
/// the `--ca-cert` root and every root in `DIR/trust.pem`), judging time by the device clock.
pub fn client_config_trusting(
    roots: &[CertificateDer<'static>],
    ca_cert_name: &str,
    identity: Option<ClientIdentity>,
) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).map_err(|e| {
            ClientError::Local(format!("{ca_cert_name} is not a usable trust anchor: {e}"))
        })?;
    }
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .build()
        .map_err(|e| ClientError::Local(format!("{ca_cert_name}: {e}")))?;
    let verifier = Arc::new(SlowClockTolerant {
        inner,
        provider: provider.clone(),
    });
    let builder = rustls::ClientConfig::builder_with_details(provider, Arc::new(DeviceClock))
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Local(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match identity {
        Some(ClientIdentity {
            chain,
            key: ClientKey::Software(key),
        }) => builder.with_client_auth_cert(chain, key).map_err(|e| {
            ClientError::Local(format!(
                "the current certificate and key cannot be used: {e}"
            ))
        }),
        Some(ClientIdentity {
            chain,
            key: ClientKey::Tpm(key),
        }) => {
            Ok(builder
                .with_client_cert_resolver(Arc::new(crate::tpm::TpmClientCert::new(chain, key))))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

/// WebPKI verification, re-judged at the certificate's own `notBefore` when the only problem is
/// that the device clock says it is not valid yet.
#[derive(Debug)]
struct SlowClockTolerant {
    inner: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for SlowClockTolerant {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let first = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match first {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
            )) => {
                let Some(not_before) = X509Certificate::from_der(end_entity)
                    .ok()
                    .map(|(_, c)| c.validity().not_before.timestamp())
                else {
                    return first;
                };
                let at = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                    not_before.max(0) as u64 + 1,
                ));
                let verified = self.inner.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp_response,
                    at,
                )?;
                let behind = not_before - now.as_secs() as i64;
                tracing::warn!(
                    behind_secs = behind,
                    "the CA's TLS certificate is valid only from {} from now by the device clock: \
                     the device clock is behind; fix the device's time (enable NTP)",
                    human(behind.unsigned_abs())
                );
                Ok(verified)
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
