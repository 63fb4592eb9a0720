//! The HTTPS listener's rustls configuration: our TLS certificate, and an optional client
//! certificate (stations and devices present one; token clients don't).
//!
//! The handshake proves the client holds the key of the certificate it presents; whether that
//! certificate is acceptable (ours, unexpired or inside the policy's grace, not revoked) is
//! decided per request by the authority, so a refusal is a clear HTTP error instead of a TLS
//! alert, and an expired-but-in-grace device can still re-enroll.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::https_cert::CurrentCert;
use crate::pki::CaMaterial;

/// The client certificate chain a TLS peer presented, if any (stations, devices, operators).
/// **Unverified:** the handshake only proved possession of the leaf's key
/// ([`DeferredChainVerifier`]); every route that relies on it verifies the chain itself.
#[derive(Debug, Clone, Default)]
pub struct UnverifiedClientChain(pub Option<Arc<Vec<CertificateDer<'static>>>>);

impl UnverifiedClientChain {
    /// The presented chain, leaf first; `None` when the client sent no certificate.
    pub fn presented(&self) -> Option<&[CertificateDer<'static>]> {
        self.0
            .as_deref()
            .map(Vec::as_slice)
            .filter(|chain| !chain.is_empty())
    }
}

/// The connection's RFC 9266 `tls-exporter` value (label `EXPORTER-Channel-Binding`, empty
/// context, 32 bytes), which a channel-bound CSR carries in its challengePassword. `None` on a
/// TLS 1.2 connection: RFC 9266 §3 binds TLS 1.2 only with extended master secret, which this
/// CA does not check, so only TLS 1.3 connections have a binding.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChannelBinding(pub Option<iomt_core::channel_binding::Exporter>);

impl ChannelBinding {
    /// The exporter of an established server connection.
    pub fn of(connection: &rustls::ServerConnection) -> ChannelBinding {
        use iomt_core::channel_binding::{EXPORTER_LABEL, EXPORTER_LEN};
        if connection.protocol_version() != Some(rustls::ProtocolVersion::TLSv1_3) {
            return ChannelBinding(None);
        }
        ChannelBinding(
            connection
                .export_keying_material([0u8; EXPORTER_LEN], EXPORTER_LABEL, None)
                .ok(),
        )
    }
}

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("the root certificate is not a usable trust anchor: {0}")]
    TrustAnchor(rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("server certificate or key rejected: {0}")]
    Certificate(rustls::Error),
}

/// Builds the server config; ring is the only crypto provider. The server certificate comes
/// from `current` at each handshake, so a renewal needs no new config.
pub fn server_config(
    ca: &CaMaterial,
    current: Arc<CurrentCert>,
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.root_der.clone())
        .map_err(TlsSetupError::TrustAnchor)?;
    let webpki = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let verifier = Arc::new(DeferredChainVerifier { inner: webpki });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::Certificate)?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(current);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts any client certificate chain at the TLS layer, but still verifies the handshake
/// signature with the presented key (proof of possession). Every route that uses the client
/// identity must verify the chain itself, as `Authority::reenroll` does.
#[derive(Debug)]
struct DeferredChainVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for DeferredChainVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
