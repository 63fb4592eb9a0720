//! TLS material: the trusted IoMT root, the server's own certificate and key, the rustls server
//! configuration built from the current CRLs, and the HTTP client that fetches them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    RootCertStore, ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};

use crate::error::HospitalError;

/// What every rebuilt server configuration shares.
pub(crate) struct TlsMaterial {
    provider: Arc<CryptoProvider>,
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl TlsMaterial {
    /// Reads the root(s), the server chain and its key from PEM files.
    pub(crate) fn load(
        ca_cert: &Path,
        cert: &Path,
        key: &Path,
    ) -> Result<TlsMaterial, HospitalError> {
        let mut roots = RootCertStore::empty();
        for root in read_certs(ca_cert)? {
            roots.add(root).map_err(|source| HospitalError::Root {
                path: ca_cert.to_owned(),
                source,
            })?;
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|source| HospitalError::Pem {
            path: key.to_owned(),
            source,
        })?;
        Ok(TlsMaterial {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            roots: Arc::new(roots),
            chain: read_certs(cert)?,
            key,
        })
    }

    /// A server configuration whose client verifier checks the chain to the root, the validity
    /// dates and every certificate of the chain against `crls`. Client authentication is
    /// mandatory, a certificate no CRL covers is refused (unknown status is not allowed), and so
    /// is one whose CRL is past its nextUpdate.
    pub(crate) fn server_config(
        &self,
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) -> Result<Arc<ServerConfig>, HospitalError> {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), self.provider.clone())
                .with_crls(crls)
                .enforce_revocation_expiration()
                .build()
                .map_err(HospitalError::Verifier)?;
        let verifier = Arc::new(ForeignChainIsUnknownIssuer(verifier));
        let config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(HospitalError::Tls)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(HospitalError::Tls)?;
        Ok(Arc::new(config))
    }

    /// The HTTP client for CRLs. Distribution points are plain HTTP (a CRL is signed, so it needs
    /// no transport security); an `https` URL is trusted only under the IoMT root.
    pub(crate) fn crl_client(&self) -> Result<reqwest::Client, HospitalError> {
        let tls = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(HospitalError::Tls)?
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(HospitalError::HttpClient)
    }
}

/// The webpki verifier, with two chain errors made precise:
/// - a chain whose signature does not verify under the trusted key is reported as
///   `UnknownIssuer`: another CA that reuses the trusted CA names (two evaluation CAs are both
///   "IoMT Root CA G1") is found by name and fails on the signature, but it is still another CA
///   (a bad signature over the handshake itself is left as it is);
/// - `UnknownIssuer` for a client that sent its certificate alone is reported as
///   [`IssuingCaMissing`], the usual deployment mistake.
#[derive(Debug)]
struct ForeignChainIsUnknownIssuer(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for ForeignChainIsUnknownIssuer {
    fn offer_client_auth(&self) -> bool {
        self.0.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .verify_client_cert(end_entity, intermediates, now)
            .map_err(|error| match error {
                rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer
                    | CertificateError::BadSignature
                    | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. },
                ) if intermediates.is_empty() => rustls::Error::InvalidCertificate(
                    CertificateError::Other(OtherError(Arc::new(IssuingCaMissing))),
                ),
                rustls::Error::InvalidCertificate(
                    CertificateError::BadSignature
                    | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. },
                ) => rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                other => other,
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The client sent its certificate without the issuing CA certificate, so no path to the root
/// could be built (the verifier trusts only the root).
#[derive(Debug, thiserror::Error)]
#[error("the client sent no issuing CA certificate")]
pub(crate) struct IssuingCaMissing;

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, HospitalError> {
    let pem_error = |source| HospitalError::Pem {
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;
    if certs.is_empty() {
        return Err(HospitalError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}
