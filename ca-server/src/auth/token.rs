//! One-time enrollment tokens: generation, hashing and the HTTP Basic credential.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SecureRandom;

/// Random bytes in a token: 256 bits, twice the profile's 128-bit minimum.
const TOKEN_BYTES: usize = 32;

/// A freshly generated token: the secret for the operator and the hash for the database.
pub struct NewToken {
    /// The secret, shown once and never stored or logged.
    pub secret: String,
    pub hash: Vec<u8>,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewToken { secret: <redacted>, .. }")
    }
}

/// Entropy of generated tokens, in bits (checked against the policy's minimum).
pub const TOKEN_ENTROPY_BITS: u32 = (TOKEN_BYTES * 8) as u32;

/// Generates a token from the system CSPRNG.
pub fn generate() -> Result<NewToken, ring::error::Unspecified> {
    let mut bytes = [0u8; TOKEN_BYTES];
    ring::rand::SystemRandom::new().fill(&mut bytes)?;
    let secret = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash(&secret);
    Ok(NewToken { secret, hash })
}

/// SHA-256 of a token. Tokens carry 256 random bits, so a fast hash is enough: there is
/// nothing to brute-force that a KDF would slow down.
pub fn hash(secret: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, secret.as_bytes())
        .as_ref()
        .to_vec()
}

/// A `serial:token` pair from an `Authorization: Basic` header.
pub struct BasicCredential {
    pub serial: String,
    pub token: String,
}

impl std::fmt::Debug for BasicCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredential")
            .field("serial", &self.serial)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Parses `Basic base64(serial:token)`; `None` when the header is not a Basic credential.
pub fn parse_basic(header: &str) -> Option<BasicCredential> {
    let (scheme, value) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(value.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (serial, token) = text.split_once(':')?;
    Some(BasicCredential {
        serial: serial.to_owned(),
        token: token.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_distinct_and_hash_consistently() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.secret.len(), 43);
        assert_eq!(hash(&a.secret), a.hash);
        assert!(!format!("{a:?}").contains(&a.secret));
    }

    #[test]
    fn parse_basic_splits_serial_and_token() {
        let header = format!("Basic {}", STANDARD.encode("IP20000001:abc:def"));
        let credential = parse_basic(&header).unwrap();
        assert_eq!(credential.serial, "IP20000001");
        assert_eq!(credential.token, "abc:def");
        assert!(parse_basic("Bearer xyz").is_none());
        assert!(parse_basic("Basic !!!").is_none());
    }
}
