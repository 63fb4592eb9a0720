//! The HTTPS listener's rustls configuration: our TLS certificate, and an optional client
//! certificate verified against our root (stations and devices present one; token clients don't).

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;

use crate::pki::CaMaterial;

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

/// Builds the server config; ring is the only crypto provider.
pub fn server_config(ca: &CaMaterial) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.root_der.clone())
        .map_err(TlsSetupError::TrustAnchor)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::Certificate)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(ca.tls_chain.clone(), ca.tls_key.clone_key())
        .map_err(TlsSetupError::Certificate)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
