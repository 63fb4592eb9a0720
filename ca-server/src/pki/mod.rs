//! The CA hierarchy (docs/PROFILE.md §3): creating it at `init`, loading it at `serve`, and
//! its generations (`ca rollover`, §3.7).

mod audit_signer;
pub mod custody;
mod error;
mod external;
pub mod fingerprint;
mod generation;
mod hierarchy;
mod import;
mod keystore;
mod later_roots;
mod material;
pub mod pkcs11;
mod profile_check;
mod rollover;
mod root_ocsp;
mod root_rollover;
mod sealed;
mod serial;
mod signer;
mod tls_cert;

pub use audit_signer::{AUDIT_SIGNER, AuditSigner, check_profile as check_audit_signer_profile};
pub use custody::KeyAccess;
pub use error::PkiError;
pub use external::{CSR_DIR, OPENSSL_CONFIG, ROOT_OCSP_DAYS, ROOT_OCSP_SCRIPT, SIGN_SCRIPT};
pub use generation::{CaRole, GenerationId};
pub use hierarchy::{HierarchyParams, create_hierarchy};
pub use import::{
    ImportError, ImportRequest, Imported, ImportedGeneration, import, import_generation,
};
pub use keystore::{KeyStore, PendingToken, TokenOptions};
pub use later_roots::LaterRoot;
pub use material::{
    CaHandle, CaMaterial, EarlierCa, IssuingCa, ROOT_CRL_FILE, ROOT_OCSP_DIR,
    read_cert as read_certificate,
};
pub use profile_check::ProfileViolation;
pub use rollover::{
    NextGeneration, ROLLOVER_DIR, RolloverError, RolloverParams, key_algorithm, make_next,
};
pub use root_ocsp::{CheckedResponse, RootOcspError, install_renewed as install_root_ocsp};
pub use root_rollover::{
    NEW_WITH_OLD_SUFFIX, OLD_WITH_NEW_SUFFIX, make_next_root, write_root_files,
};
pub use sealed::{PBKDF2_ITERATIONS, Passphrase, SEALED_TAG};
pub use serial::{issuance_serial, random_serial};
pub use signer::CaKey;
pub use tls_cert::{RenewedTls, renew_tls_certificate};

use iomt_core::policy::Level;

/// Names of the CA certificates in the data directory (`ca/<name>.crt.pem`).
pub fn issuing_ca_name(level: Level) -> &'static str {
    level.as_str()
}

/// Placeholder OID of the manufacturing-station certificate policy (docs/PROFILE.md §2.9).
pub const STATION_POLICY_OID: &str = "1.3.6.1.4.1.32473.7.4.1";

/// The station CA's name.
pub const STATION_CA: &str = "station";
/// The root CA's name.
pub const ROOT_CA: &str = "root";
/// The HTTPS listener's certificate name.
pub const TLS_CERT: &str = "tls";

/// URLs a certificate points at, derived from the public HTTP base.
#[derive(Debug, Clone)]
pub struct PublicUrls {
    base: String,
}

impl PublicUrls {
    /// URLs under `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> PublicUrls {
        PublicUrls {
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    /// The CRL of the CA called `ca` (`root`, `basic`, ...).
    pub fn crl(&self, ca: &str) -> String {
        format!("{}/crl/{ca}.crl", self.base)
    }

    /// The OCSP responder for certificates issued by `ca`.
    pub fn ocsp(&self, ca: &str) -> String {
        format!("{}/ocsp/{ca}", self.base)
    }

    /// The DER certificate of `ca` (caIssuers).
    pub fn ca_cert(&self, ca: &str) -> String {
        format!("{}/ca/{ca}.cer", self.base)
    }
}

/// 32 random bytes, base64url: generated passphrases.
pub fn random_secret() -> Result<zeroize::Zeroizing<String>, PkiError> {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    ring::rand::SystemRandom::new()
        .fill(bytes.as_mut())
        .map_err(|_| PkiError::Random("the system random generator failed".into()))?;
    Ok(zeroize::Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref()),
    ))
}
