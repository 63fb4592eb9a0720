//! The device key in a TPM 2.0: an ECC P-256 signing key under a storage root key recreated
//! deterministically from the TCG provisioning template, saved as a TSS2 PRIVATE KEY (public and
//! wrapped private blobs only; the private key never leaves the TPM), and loaded back to sign.

mod attest;
mod connection;
mod device_key;
mod templates;
mod tls_key;
pub mod tss2_pem;

pub use attest::{Attestor, SealedCredential, TpmIdentity};
pub use connection::Tpm;
pub use device_key::{TpmError, TpmKey};
pub use tls_key::{TpmClientCert, TpmKeyFile};
