//! `CaKey`: the one signing seam for CA keys, whether unsealed from a file or held in a
//! PKCS#11 token. Certificates, CRLs and OCSP responder certificates are all signed through it.

use rcgen::{KeyPair, PublicKeyData, SignatureAlgorithm, SigningKey};

use super::pkcs11::TokenKey;

/// A CA signing key.
pub enum CaKey {
    /// A key unsealed from `DIR/ca/<name>.key.pem` into memory.
    File(Box<KeyPair>),
    /// A non-extractable key inside a PKCS#11 token.
    Token(TokenKey),
}

impl CaKey {
    /// Where the key lives, for messages.
    pub fn custody(&self) -> &'static str {
        match self {
            CaKey::File(_) => "file",
            CaKey::Token(_) => "pkcs11",
        }
    }

    /// True for a key held in this process, whose signatures need no re-verification once the
    /// key was matched to its certificate at load (a token's signatures come from outside).
    pub fn is_in_process(&self) -> bool {
        matches!(self, CaKey::File(_))
    }
}

impl std::fmt::Debug for CaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CaKey({}, <private>)", self.custody())
    }
}

impl PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        match self {
            CaKey::File(key) => key.der_bytes(),
            CaKey::Token(key) => key.der_bytes(),
        }
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        match self {
            CaKey::File(key) => PublicKeyData::algorithm(key.as_ref()),
            CaKey::Token(key) => key.algorithm(),
        }
    }
}

impl SigningKey for CaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        match self {
            CaKey::File(key) => key.sign(msg),
            CaKey::Token(key) => key.sign(msg),
        }
    }
}
