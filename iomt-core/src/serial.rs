//! `CertSerial`: a certificate serial number in the one spelling the CA stores, prints and looks
//! up: lowercase hex of the DER INTEGER's content octets, no separators. Operators paste serials
//! as openssl prints them (`4F:1A:…`) or as the CA printed them; both parse to the same value.

use std::fmt;
use std::str::FromStr;

/// RFC 5280 §4.1.2.2: a conforming serial is at most 20 octets.
pub const MAX_SERIAL_OCTETS: usize = 20;

/// A certificate serial number, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct CertSerial(String);

/// Why text is not a certificate serial.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertSerialError {
    #[error("a certificate serial is hex digits (colons allowed); `{0}` is not one")]
    NotHex(char),
    #[error("a certificate serial has an even number of hex digits, 2 to 40; this one has {0}")]
    Length(usize),
}

impl CertSerial {
    /// The serial of a parsed certificate (`raw_serial()`, the INTEGER's content octets).
    pub fn from_octets(octets: &[u8]) -> CertSerial {
        CertSerial(hex::encode(octets))
    }

    /// The normalised spelling, as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Gives up the normalised spelling.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl FromStr for CertSerial {
    type Err = CertSerialError;

    fn from_str(text: &str) -> Result<CertSerial, CertSerialError> {
        let mut digits = String::with_capacity(text.len());
        for c in text.chars().filter(|c| *c != ':') {
            if !c.is_ascii_hexdigit() {
                return Err(CertSerialError::NotHex(c));
            }
            digits.push(c.to_ascii_lowercase());
        }
        if digits.is_empty()
            || !digits.len().is_multiple_of(2)
            || digits.len() > 2 * MAX_SERIAL_OCTETS
        {
            return Err(CertSerialError::Length(digits.len()));
        }
        Ok(CertSerial(digits))
    }
}

impl fmt::Display for CertSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssl_and_stored_spellings_are_one_serial() {
        let stored: CertSerial = "4f1a00ff".parse().unwrap();
        assert_eq!("4F:1A:00:FF".parse::<CertSerial>().unwrap(), stored);
        assert_eq!(CertSerial::from_octets(&[0x4f, 0x1a, 0x00, 0xff]), stored);
        assert_eq!(stored.to_string(), "4f1a00ff");
    }

    #[test]
    fn refusals_name_the_problem() {
        for (text, expected) in [
            ("", CertSerialError::Length(0)),
            ("abc", CertSerialError::Length(3)),
            (&"00".repeat(21), CertSerialError::Length(42)),
            ("12 34", CertSerialError::NotHex(' ')),
            ("0x12", CertSerialError::NotHex('x')),
            ("IP20000001", CertSerialError::NotHex('I')),
        ] {
            assert_eq!(text.parse::<CertSerial>(), Err(expected), "{text:?}");
        }
    }
}
