//! `PkiError`: why CA material could not be created, loaded or used. Every file of `pki/`
//! reports through it, so it sits below them all.

use std::path::{Path, PathBuf};

/// Why the CA material could not be created or loaded.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("certificate extension encoding failed: {0}")]
    Extension(#[from] iomt_core::extensions::ExtensionError),
    #[error("no randomness available: {0}")]
    Random(String),
    #[error(
        "the policy asks for {0} random serial bits; a serial holds at most {max}",
        max = iomt_core::policy::SerialNumberRules::MAX_RANDOM_BITS
    )]
    SerialRandomness(u32),
    #[error("{path}: wrong CA passphrase (or a damaged key file); nothing was changed")]
    WrongPassphrase { path: PathBuf },
    #[error(
        "the CA keys are encrypted and no passphrase was given: use --passphrase-file FILE, \
         IOMT_CA_PASSPHRASE, or run on a terminal to be asked"
    )]
    NoPassphrase,
    #[error("the passphrase must have at least {0} characters")]
    WeakPassphrase(usize),
    #[error("the two passphrases differ")]
    PassphraseMismatch,
    #[error("sealing a key failed: {0}")]
    Sealing(String),
    #[error(
        "the CA keys are in a PKCS#11 token and no PIN was given: use --pkcs11-pin-file FILE or IOMT_PKCS11_PIN"
    )]
    NoPin,
    #[error("PKCS#11 login to token `{0}` failed: wrong PIN; nothing was changed")]
    WrongPin(String),
    #[error("no PKCS#11 token labelled `{label}` in {module}")]
    NoToken { module: PathBuf, label: String },
    #[error("PKCS#11 token `{token}` has no key with id {id}")]
    NoTokenKey { token: String, id: String },
    #[error("PKCS#11: {0}")]
    Pkcs11(String),
    #[error(
        "the CA certificates are not installed yet (init --external-root): have the offline root \
         sign {0}/csr/*.csr.pem, then run `ca-server ca import`"
    )]
    NotImported(String),
}

impl PkiError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> PkiError {
        PkiError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
