//! The TSS2 PRIVATE KEY file (the TSSPRIVKEY ASN.1 of tpm2-tss-engine and tpm2-openssl):
//! `SEQUENCE { type OID 2.23.133.10.1.3, emptyAuth [0] EXPLICIT BOOLEAN, parent INTEGER,
//! pubkey OCTET STRING (TPM2B_PUBLIC), privkey OCTET STRING (TPM2B_PRIVATE) }`.

use der::asn1::{ObjectIdentifier, OctetString};
use der::{Decode, Encode, Sequence};

/// PEM label of the file.
pub const LABEL: &str = "TSS2 PRIVATE KEY";
/// id-loadablekey: a key to load under `parent` with TPM2_Load.
pub const LOADABLE_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.10.1.3");
/// The persistent handle a parent of 0x40000001 (TPM_RH_OWNER) means: the primary recreated in
/// the owner hierarchy from the standard SRK template.
pub const OWNER_PARENT: u32 = 0x4000_0001;

#[derive(Sequence)]
struct TssPrivKey {
    key_type: ObjectIdentifier,
    #[asn1(context_specific = "0", optional = "true")]
    empty_auth: Option<bool>,
    parent: u32,
    pubkey: OctetString,
    privkey: OctetString,
}

/// A loadable key: the marshalled TPM2B_PUBLIC and TPM2B_PRIVATE blobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadableKey {
    pub parent: u32,
    pub public: Vec<u8>,
    pub private: Vec<u8>,
}

/// Why a file is not a TSS2 key this client can load.
#[derive(Debug, thiserror::Error)]
pub enum Tss2PemError {
    #[error("not PEM: {0}")]
    Pem(String),
    #[error("not a {LABEL} block (found {0})")]
    Label(String),
    #[error("TSSPRIVKEY: {0}")]
    Der(String),
    #[error("key type {0} is not a loadable key ({LOADABLE_KEY})")]
    KeyType(ObjectIdentifier),
    #[error("the key has an authorization value; only emptyAuth keys are supported")]
    HasAuth,
}

impl LoadableKey {
    /// The PEM text.
    pub fn to_pem(&self) -> Result<String, Tss2PemError> {
        let der = TssPrivKey {
            key_type: LOADABLE_KEY,
            empty_auth: Some(true),
            parent: self.parent,
            pubkey: octets(&self.public)?,
            privkey: octets(&self.private)?,
        }
        .to_der()
        .map_err(|e| Tss2PemError::Der(e.to_string()))?;
        Ok(pem::encode_config(
            &pem::Pem::new(LABEL, der),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        ))
    }

    /// Parses the PEM text.
    pub fn from_pem(text: &[u8]) -> Result<LoadableKey, Tss2PemError> {
        let block = pem::parse(text).map_err(|e| Tss2PemError::Pem(e.to_string()))?;
        if block.tag() != LABEL {
            return Err(Tss2PemError::Label(block.tag().to_owned()));
        }
        let key =
            TssPrivKey::from_der(block.contents()).map_err(|e| Tss2PemError::Der(e.to_string()))?;
        if key.key_type != LOADABLE_KEY {
            return Err(Tss2PemError::KeyType(key.key_type));
        }
        if key.empty_auth != Some(true) {
            return Err(Tss2PemError::HasAuth);
        }
        Ok(LoadableKey {
            parent: key.parent,
            public: key.pubkey.into_bytes(),
            private: key.privkey.into_bytes(),
        })
    }
}

/// True when `text` is a TSS2 PRIVATE KEY PEM (a key.pem to load into the TPM).
pub fn is_tss2_pem(text: &[u8]) -> bool {
    pem::parse(text).is_ok_and(|block| block.tag() == LABEL)
}

fn octets(bytes: &[u8]) -> Result<OctetString, Tss2PemError> {
    OctetString::new(bytes).map_err(|e| Tss2PemError::Der(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loadable_key_round_trips_through_its_pem() {
        let key = LoadableKey {
            parent: OWNER_PARENT,
            public: vec![0, 3, 1, 2, 3],
            private: vec![0, 2, 9, 9],
        };
        let text = key.to_pem().unwrap();
        assert!(text.starts_with("-----BEGIN TSS2 PRIVATE KEY-----"));
        assert!(is_tss2_pem(text.as_bytes()));
        assert_eq!(LoadableKey::from_pem(text.as_bytes()).unwrap(), key);
        let der = pem::parse(&text).unwrap().into_contents();
        // SEQUENCE, OID 2.23.133.10.1.3, [0] { TRUE }, INTEGER 0x40000001.
        assert_eq!(
            &der[2..20],
            &[
                0x06, 0x06, 0x67, 0x81, 0x05, 0x0a, 0x01, 0x03, 0xa0, 0x03, 0x01, 0x01, 0xff, 0x02,
                0x04, 0x40, 0x00, 0x00
            ]
        );
    }

    #[test]
    fn a_software_key_or_another_type_is_refused() {
        let other = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![0x30, 0x00]));
        assert!(!is_tss2_pem(other.as_bytes()));
        assert!(matches!(
            LoadableKey::from_pem(other.as_bytes()),
            Err(Tss2PemError::Label(_))
        ));
        let garbage = pem::encode(&pem::Pem::new(LABEL, vec![0x30, 0x01, 0x00]));
        assert!(matches!(
            LoadableKey::from_pem(garbage.as_bytes()),
            Err(Tss2PemError::Der(_))
        ));
    }
}
