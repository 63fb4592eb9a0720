//! The device's current credential as the client identity of a mutual-TLS request (renewal,
//! station enrollment): the certificate with its issuing CA, and the key, in software or
//! loaded into the TPM that signs the handshakes.

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::ClientError;
use crate::keystore::Credential;
use crate::tls::{ClientIdentity, ClientKey};
use crate::tpm::tss2_pem::is_tss2_pem;
use crate::tpm::{Tpm, TpmKey, TpmKeyFile};

/// The current certificate chain (leaf, issuing CA) and key, for the TLS client certificate.
/// A `TSS2 PRIVATE KEY` is loaded into `tpm` (the device's `--tpm`), which signs the handshakes.
pub(crate) fn client_identity(
    current: &Credential,
    tpm: Option<&Arc<Tpm>>,
) -> Result<ClientIdentity, ClientError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        ClientError::Local(format!("the current {what} cannot be read: {e}"))
    };
    let mut chain: Vec<CertificateDer<'static>> = pem::parse_many(&current.cert_pem)
        .map_err(|e| bad("certificate", &e))?
        .into_iter()
        .map(|p| CertificateDer::from(p.into_contents()))
        .collect();
    // chain.pem holds the issuing CA then the root; the server needs only the issuing CA.
    if let Some(issuing) = pem::parse_many(&current.chain_pem)
        .map_err(|e| bad("chain", &e))?
        .into_iter()
        .next()
    {
        chain.push(CertificateDer::from(issuing.into_contents()));
    }
    if chain.is_empty() {
        return Err(ClientError::Local(
            "the current certificate file is empty".into(),
        ));
    }
    if is_tss2_pem(current.key_pem.as_bytes()) {
        let tpm = tpm.ok_or_else(|| {
            ClientError::Local(
                "key.pem is a TPM key (TSS2 PRIVATE KEY): pass --tpm TCTI to use it".into(),
            )
        })?;
        // Loaded once here so that a key file this TPM cannot load fails now, not mid-handshake.
        drop(TpmKey::load_in(tpm, current.key_pem.as_bytes())?);
        return Ok(ClientIdentity {
            chain,
            key: ClientKey::Tpm(TpmKeyFile {
                tpm: tpm.clone(),
                pem: current.key_pem.as_bytes().to_vec(),
            }),
        });
    }
    let key = pem::parse(&current.key_pem).map_err(|e| bad("key", &e))?;
    let key = PrivateKeyDer::try_from(key.into_contents()).map_err(|e| bad("key", &e))?;
    Ok(ClientIdentity {
        chain,
        key: ClientKey::Software(key),
    })
}

pub(crate) fn subject_serial(cert: &CertificateDer<'_>) -> Result<String, ClientError> {
    let (_, parsed) = X509Certificate::from_der(cert)
        .map_err(|e| ClientError::Local(format!("current certificate: {e}")))?;
    parsed
        .subject()
        .iter_attributes()
        .find(|a| a.attr_type().to_id_string() == "2.5.4.5")
        .and_then(|a| a.as_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| {
            ClientError::Local("the current certificate has no subject serialNumber".into())
        })
}
