//! Private keys encrypted at rest: PKCS#8 sealed with AES-256-GCM under a key-encryption key
//! derived from the CA passphrase by PBKDF2-HMAC-SHA256, in a versioned PEM block.
//!
//! ```text
//! -----BEGIN IOMT ENCRYPTED PRIVATE KEY-----
//! Version: 1
//! Kdf: pbkdf2-hmac-sha256
//! Iterations: 600000
//! Salt: <base64, 16 bytes>
//! Cipher: aes-256-gcm
//! Nonce: <base64, 12 bytes>
//!
//! <base64: ciphertext || tag>
//! -----END IOMT ENCRYPTED PRIVATE KEY-----
//! ```
//! The headers and the key's name are the AEAD's associated data, so a file cannot be edited
//! or swapped for another CA's without the open failing. One salt serves every key of a data
//! directory, so a start derives the key-encryption key once, not once per CA.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use super::error::PkiError;

/// PEM label of a sealed key.
pub const SEALED_TAG: &str = "IOMT ENCRYPTED PRIVATE KEY";
/// PBKDF2-HMAC-SHA256 iterations: OWASP's 2023 minimum for this PRF. The cost is paid once per
/// process start (see the module note), about half a second on one core.
pub const PBKDF2_ITERATIONS: u32 = 600_000;
const VERSION: &str = "1";
const KDF: &str = "pbkdf2-hmac-sha256";
const CIPHER: &str = "aes-256-gcm";

/// A CA passphrase. Wiped on drop; never printed.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wraps a passphrase (trailing line breaks are the caller's to strip).
    pub fn new(text: String) -> Passphrase {
        Passphrase(Zeroizing::new(text))
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The passphrase text (for writing the generated passphrase file only).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Length in characters (for the minimum-length check).
    pub fn len(&self) -> usize {
        self.0.chars().count()
    }

    /// True for an empty passphrase.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// A derived key-encryption key for one (salt, iterations) pair.
struct Kek {
    salt: Vec<u8>,
    iterations: u32,
    key: Zeroizing<[u8; 32]>,
}

/// Seals and opens key files with one passphrase; caches derived keys.
pub struct KeyVault {
    passphrase: Passphrase,
    /// Salt for files sealed by this vault.
    salt: [u8; 16],
    keks: Mutex<Vec<Kek>>,
}

impl std::fmt::Debug for KeyVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVault").finish_non_exhaustive()
    }
}

impl KeyVault {
    /// A vault with a fresh random salt for the files it seals.
    pub fn new(passphrase: Passphrase) -> Result<KeyVault, PkiError> {
        let mut salt = [0u8; 16];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| PkiError::Random("the system random generator failed".into()))?;
        Ok(KeyVault {
            passphrase,
            salt,
            keks: Mutex::new(Vec::new()),
        })
    }

    /// Seals the PKCS#8 DER of the key called `name`; returns the PEM text.
    pub fn seal(&self, name: &str, pkcs8: &[u8]) -> Result<String, PkiError> {
        let mut nonce = [0u8; 12];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| PkiError::Random("the system random generator failed".into()))?;
        let headers = [
            ("Version", VERSION.to_owned()),
            ("Kdf", KDF.to_owned()),
            ("Iterations", PBKDF2_ITERATIONS.to_string()),
            ("Salt", STANDARD.encode(self.salt)),
            ("Cipher", CIPHER.to_owned()),
            ("Nonce", STANDARD.encode(nonce)),
        ];
        let aad = associated_data(name, &headers);
        let key = self.kek(&self.salt, PBKDF2_ITERATIONS)?;
        let mut sealed = pkcs8.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut sealed,
        )
        .map_err(|_| PkiError::Sealing("AES-GCM sealing failed".into()))?;
        let mut block = pem::Pem::new(SEALED_TAG, sealed);
        for (key, value) in &headers {
            block
                .headers_mut()
                .add(key, value)
                .map_err(|e| PkiError::Sealing(e.to_string()))?;
        }
        Ok(pem::encode(&block))
    }

    /// Opens the sealed key `name` read from `path`; returns its PKCS#8 DER (wiped on drop).
    pub fn open(
        &self,
        path: &Path,
        name: &str,
        block: &pem::Pem,
    ) -> Result<Zeroizing<Vec<u8>>, PkiError> {
        let bad = |reason: &str| PkiError::Invalid {
            path: path.to_path_buf(),
            reason: reason.to_owned(),
        };
        let header = |key: &str| {
            block
                .headers()
                .get(key)
                .map(str::to_owned)
                .ok_or_else(|| bad(&format!("sealed key without a `{key}` header")))
        };
        let headers = [
            ("Version", header("Version")?),
            ("Kdf", header("Kdf")?),
            ("Iterations", header("Iterations")?),
            ("Salt", header("Salt")?),
            ("Cipher", header("Cipher")?),
            ("Nonce", header("Nonce")?),
        ];
        if headers[0].1 != VERSION || headers[1].1 != KDF || headers[4].1 != CIPHER {
            return Err(bad(
                "unsupported sealed-key format (expected version 1, pbkdf2-hmac-sha256, aes-256-gcm)",
            ));
        }
        let iterations: u32 = headers[2]
            .1
            .parse()
            .ok()
            .filter(|n| *n >= 100_000)
            .ok_or_else(|| bad("sealed key with a missing or too small iteration count"))?;
        let salt = STANDARD
            .decode(&headers[3].1)
            .map_err(|_| bad("sealed key with a bad salt"))?;
        let nonce: [u8; 12] = STANDARD
            .decode(&headers[5].1)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(|| bad("sealed key with a bad nonce"))?;
        let aad = associated_data(name, &headers);
        let key = self.kek(&salt, iterations)?;
        let mut buffer = Zeroizing::new(block.contents().to_vec());
        let plain_len = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buffer,
            )
            .map_err(|_| PkiError::WrongPassphrase {
                path: path.to_path_buf(),
            })?
            .len();
        buffer.truncate(plain_len);
        Ok(buffer)
    }

    /// The key-encryption key for (salt, iterations), derived once and cached.
    fn kek(&self, salt: &[u8], iterations: u32) -> Result<LessSafeKey, PkiError> {
        let mut keks = self
            .keks
            .lock()
            .map_err(|_| PkiError::Sealing("key cache poisoned".into()))?;
        let position = keks
            .iter()
            .position(|k| k.salt == salt && k.iterations == iterations);
        let index = match position {
            Some(index) => index,
            None => {
                let mut key = Zeroizing::new([0u8; 32]);
                let rounds = NonZeroU32::new(iterations)
                    .ok_or_else(|| PkiError::Sealing("zero PBKDF2 iterations".into()))?;
                ring::pbkdf2::derive(
                    ring::pbkdf2::PBKDF2_HMAC_SHA256,
                    rounds,
                    salt,
                    self.passphrase.bytes(),
                    key.as_mut(),
                );
                keks.push(Kek {
                    salt: salt.to_vec(),
                    iterations,
                    key,
                });
                keks.len() - 1
            }
        };
        let unbound = UnboundKey::new(&AES_256_GCM, keks[index].key.as_ref())
            .map_err(|_| PkiError::Sealing("AES-256-GCM key setup failed".into()))?;
        Ok(LessSafeKey::new(unbound))
    }
}

/// Binds the key's name and every header into the ciphertext.
fn associated_data(name: &str, headers: &[(&str, String)]) -> Vec<u8> {
    let mut aad = format!("iomt-sealed-key|{name}");
    for (key, value) in headers {
        aad.push('|');
        aad.push_str(key);
        aad.push('=');
        aad.push_str(value);
    }
    aad.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_with_wrong_passphrase_is_refused() {
        let vault = KeyVault::new(Passphrase::new("correct horse".into())).unwrap();
        let pem_text = vault.seal("basic", b"secret pkcs8").unwrap();
        assert!(!pem_text.contains("secret"));
        let block = pem::parse(&pem_text).unwrap();
        let opened = vault.open(Path::new("k"), "basic", &block).unwrap();
        assert_eq!(opened.as_slice(), b"secret pkcs8");
        let other = KeyVault::new(Passphrase::new("wrong horse".into())).unwrap();
        assert!(matches!(
            other.open(Path::new("k"), "basic", &block),
            Err(PkiError::WrongPassphrase { .. })
        ));
        // Another CA's name (a swapped file) fails the same way.
        assert!(vault.open(Path::new("k"), "high", &block).is_err());
    }

    #[test]
    fn debug_output_never_shows_the_passphrase() {
        let passphrase = Passphrase::new("correct horse battery".into());
        assert!(!format!("{passphrase:?}").contains("horse"));
        let vault = KeyVault::new(passphrase).unwrap();
        assert!(!format!("{vault:?}").contains("horse"));
    }
}
