//! The load generator's check of the server certificate for the re-enrollment mode, where every
//! request is a fresh handshake. The first handshake verifies the server's chain up to the root
//! (a P-384 signature, about 0.6 ms with ring); later handshakes that present the same
//! certificate for the same name reuse that verdict. Each handshake's own signature is still
//! verified. A fleet of devices does this work on its own CPUs; a load generator sharing the
//! server's two cores would otherwise spend more CPU per handshake than the server does.

use std::sync::{Arc, Mutex};

use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// A [`WebPkiServerVerifier`] that remembers the one certificate it verified.
#[derive(Debug)]
pub struct RememberingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    verified: Mutex<Option<(Vec<u8>, ServerName<'static>)>>,
}

impl RememberingVerifier {
    /// Verifies against `roots`, remembering the last certificate that passed.
    pub fn new(roots: rustls::RootCertStore) -> anyhow::Result<Arc<RememberingVerifier>> {
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crate::setup::provider())
                .build()?;
        Ok(Arc::new(RememberingVerifier {
            inner,
            verified: Mutex::new(None),
        }))
    }
}

impl ServerCertVerifier for RememberingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let remembered = self.verified.lock().ok().is_some_and(|verified| {
            verified.as_ref().is_some_and(|(der, name)| {
                der.as_slice() == end_entity.as_ref() && name == server_name
            })
        });
        if remembered {
            return Ok(ServerCertVerified::assertion());
        }
        let verdict = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if let Ok(mut verified) = self.verified.lock() {
            *verified = Some((end_entity.to_vec(), server_name.to_owned()));
        }
        Ok(verdict)
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

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
