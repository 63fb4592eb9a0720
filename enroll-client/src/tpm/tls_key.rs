//! The TPM device key as the key of a rustls client certificate: the handshake's
//! CertificateVerify is signed inside the TPM (ECDSA P-256, SHA-256), so renewals over mutual
//! TLS never need the private key outside it. The key is loaded for each signature and flushed
//! after it, leaving the TPM's few object slots to the attestation of the next key. A TPM
//! signature takes milliseconds; the client makes one handshake per renewal, so it is signed
//! on the connecting task.

use std::sync::Arc;

use rustls::client::ResolvesClientCert;
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};
use rustls_pki_types::CertificateDer;

use super::{Tpm, TpmKey};

/// A saved TPM key (its `TSS2 PRIVATE KEY` text) and the TPM that can load it.
#[derive(Debug, Clone)]
pub struct TpmKeyFile {
    pub tpm: Arc<Tpm>,
    pub pem: Vec<u8>,
}

/// A rustls signing key whose private half is in the TPM.
#[derive(Debug)]
struct TpmSigningKey(TpmKeyFile);

impl SigningKey for TpmSigningKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| Box::new(TpmSigner(self.0.clone())) as Box<dyn Signer>)
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

#[derive(Debug)]
struct TpmSigner(TpmKeyFile);

impl Signer for TpmSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        TpmKey::load_in(&self.0.tpm, &self.0.pem)
            .and_then(|key| key.sign_sha256(message))
            .map_err(|e| rustls::Error::General(format!("the TPM could not sign: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP256_SHA256
    }
}

/// Always presents the one certificate chain whose key is in the TPM.
#[derive(Debug)]
pub struct TpmClientCert(Arc<CertifiedKey>);

impl TpmClientCert {
    pub fn new(chain: Vec<CertificateDer<'static>>, key: TpmKeyFile) -> TpmClientCert {
        TpmClientCert(Arc::new(CertifiedKey::new(
            chain,
            Arc::new(TpmSigningKey(key)),
        )))
    }
}

impl ResolvesClientCert for TpmClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        sigschemes
            .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
