//! SHA-256 fingerprints of certificates, in the two notations operators meet: lowercase hex
//! (how operator certificates are enrolled and named in the audit trail) and colon-separated
//! uppercase hex (what `openssl x509 -fingerprint -sha256` prints).

use ring::digest::{SHA256, digest};

/// SHA-256 of `der`, lowercase hex without separators.
pub fn sha256_hex(der: &[u8]) -> String {
    hex::encode(digest(&SHA256, der))
}

/// SHA-256 of `der`, colon-separated uppercase hex, as openssl prints it.
pub fn sha256_colon_hex(der: &[u8]) -> String {
    digest(&SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_notations_spell_the_same_digest() {
        let hex = sha256_hex(b"abc");
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_colon_hex(b"abc")
                .replace(':', "")
                .to_ascii_lowercase(),
            hex
        );
        assert!(sha256_colon_hex(b"abc").starts_with("BA:78:16:BF"));
    }
}
