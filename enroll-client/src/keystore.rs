//! The credential files in `DIR`: `key.pem` (0600), `cert.pem`, `chain.pem`.

use std::path::{Path, PathBuf};

use iomt_core::files::{PRIVATE, PUBLIC, sync_dir, write_atomic};

use crate::error::ClientError;

/// Names of the files a device's credential is made of.
pub const KEY_FILE: &str = "key.pem";
pub const CERT_FILE: &str = "cert.pem";
pub const CHAIN_FILE: &str = "chain.pem";

/// A complete credential to write: PEM texts.
pub struct Credential {
    pub key_pem: String,
    pub cert_pem: String,
    pub chain_pem: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential { key: <redacted>, .. }")
    }
}

/// Writes the credential into `dir` (created 0700 if missing). Each file is replaced
/// atomically; the key goes first and the certificate last, so `cert.pem` only ever names a
/// key that is already on disk.
pub fn store(dir: &Path, credential: &Credential) -> Result<Vec<PathBuf>, ClientError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(ClientError::io(dir))?;
    let files = [
        (KEY_FILE, credential.key_pem.as_bytes(), PRIVATE),
        (CHAIN_FILE, credential.chain_pem.as_bytes(), PUBLIC),
        (CERT_FILE, credential.cert_pem.as_bytes(), PUBLIC),
    ];
    let mut written = Vec::with_capacity(files.len());
    for (name, contents, mode) in files {
        let path = dir.join(name);
        write_atomic(&path, contents, mode).map_err(ClientError::io(&path))?;
        written.push(path);
    }
    sync_dir(dir).map_err(ClientError::io(dir))?;
    Ok(written)
}

/// PEM-encodes DER certificates.
pub fn certificates_pem<'a>(ders: impl IntoIterator<Item = &'a [u8]>) -> String {
    ders.into_iter()
        .map(|der| pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec())))
        .collect()
}
