//! TLS channel binding (RFC 9266 `tls-exporter`) as this CA's CSRs carry it: the exporter value
//! of the TLS 1.3 connection a CSR is POSTed on, base64 (standard, padded) in the PKCS#10
//! `challengePassword` attribute, where RFC 7030 §3.5 puts `tls-unique`. The CSR is signed by
//! the device key, so the binding is too: a CSR relayed onto another connection does not match.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The exporter label RFC 9266 §2 registers for `tls-exporter`.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";
/// Length of a `tls-exporter` value in bytes (RFC 9266 §2).
pub const EXPORTER_LEN: usize = 32;
/// PKCS#9 challengePassword (1.2.840.113549.1.9.7), as arcs (rcgen's attribute form).
pub const CHALLENGE_PASSWORD_ARCS: &[u64] = &[1, 2, 840, 113549, 1, 9, 7];
/// PKCS#9 challengePassword as a dotted string.
pub const CHALLENGE_PASSWORD: &str = "1.2.840.113549.1.9.7";
/// PKCS#9 `ub-challenge-password`: the longest challengePassword accepted, in characters.
pub const MAX_CHALLENGE_PASSWORD: usize = 255;

/// A connection's `tls-exporter` value.
pub type Exporter = [u8; EXPORTER_LEN];

/// The challengePassword text that carries `exporter`: 44 characters of standard base64, all
/// in the PrintableString alphabet.
pub fn encode(exporter: &Exporter) -> String {
    STANDARD.encode(exporter)
}

/// The exporter a challengePassword text carries, or `None` when it is not the standard,
/// padded base64 of exactly [`EXPORTER_LEN`] bytes.
pub fn decode(text: &str) -> Option<Exporter> {
    let bytes = STANDARD.decode(text).ok()?;
    Exporter::try_from(bytes.as_slice()).ok()
}

/// The DER of the challengePassword attribute's value SET: one PrintableString with
/// [`encode`]`(exporter)`.
pub fn attribute_values_der(exporter: &Exporter) -> Vec<u8> {
    let text = encode(exporter);
    // 44 bytes: short-form lengths for the string and for the SET around it.
    let mut der = vec![0x31, (text.len() + 2) as u8, 0x13, text.len() as u8];
    der.extend_from_slice(text.as_bytes());
    der
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode_is_the_identity() {
        let exporter: Exporter = std::array::from_fn(|i| (i * 7 + 3) as u8);
        let text = encode(&exporter);
        assert_eq!(text.len(), 44);
        assert_eq!(decode(&text), Some(exporter));
    }

    #[test]
    fn decode_refuses_anything_but_padded_base64_of_32_bytes() {
        let exporter = [0xFBu8; EXPORTER_LEN];
        let text = encode(&exporter);
        let unpadded = text.trim_end_matches('=');
        let short = STANDARD.encode([1u8; 31]);
        let long = STANDARD.encode([1u8; 33]);
        for (case, value) in [
            ("unpadded", unpadded),
            ("31 bytes", short.as_str()),
            ("33 bytes", long.as_str()),
            ("not base64", "s3cret"),
            ("empty", ""),
            (
                "url-safe alphabet",
                &text.replace('+', "-").replace('/', "_"),
            ),
        ] {
            if value != text {
                assert_eq!(decode(value), None, "{case}");
            }
        }
    }

    #[test]
    fn attribute_values_are_one_printable_string_in_a_set() {
        let exporter = [0xFBu8; EXPORTER_LEN];
        let der = attribute_values_der(&exporter);
        assert_eq!(der[0], 0x31);
        assert_eq!(der[1] as usize, der.len() - 2);
        assert_eq!(der[2], 0x13);
        assert_eq!(&der[4..], encode(&exporter).as_bytes());
        assert!(
            encode(&exporter)
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
        );
    }
}
