//! CA keys inside a PKCS#11 token (an HSM, or SoftHSM2 in tests): generated there as
//! non-extractable EC keys, found again by their CKA_ID, and used through CKM_ECDSA over a
//! digest computed here (the signature comes back as r||s and is re-encoded as DER).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use rcgen::{PublicKeyData, SignatureAlgorithm, SigningKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use super::error::PkiError;

/// `DIR/ca/pkcs11.toml`: where the CA keys of a token-backed CA live.
pub const TOKEN_CONFIG: &str = "pkcs11.toml";

/// The contents of `DIR/ca/pkcs11.toml` (no secrets: the PIN is read from `pin_file`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The PKCS#11 module (shared library).
    pub module: PathBuf,
    /// The token's label.
    pub token: String,
    /// The file the user PIN was read from at `init`; `serve` reads it again unless told otherwise.
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
    /// CA name → CKA_ID (hex) of its key pair in the token.
    pub keys: BTreeMap<String, String>,
}

/// Curve OIDs (DER) for CKA_EC_PARAMS.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// A logged-in session with one token, shared by its keys.
pub struct Token {
    label: String,
    session: Mutex<Session>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("label", &self.label).finish()
    }
}

/// One initialized context per module for the life of the process: C_Initialize may only be
/// called once, and several CAs (tests, `init` then `serve`) may use the same module.
fn context(module: &Path) -> Result<Pkcs11, PkiError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut contexts = CONTEXTS
        .get_or_init(Default::default)
        .lock()
        .map_err(|_| PkiError::Pkcs11("the module table is poisoned".into()))?;
    if let Some(context) = contexts.get(module) {
        return Ok(context.clone());
    }
    let context = Pkcs11::new(module)
        .map_err(|e| PkiError::Pkcs11(format!("cannot load module {}: {e}", module.display())))?;
    match context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(ck("C_Initialize", e)),
    }
    contexts.insert(module.to_path_buf(), context.clone());
    Ok(context)
}

fn ck(operation: &str, error: CkError) -> PkiError {
    PkiError::Pkcs11(format!("{operation}: {error}"))
}

impl Token {
    /// Opens the token labelled `label` in `module` and logs in as the user.
    pub fn open(module: &Path, label: &str, pin: &str) -> Result<Arc<Token>, PkiError> {
        let context = context(module)?;
        let slots = context
            .get_slots_with_token()
            .map_err(|e| ck("C_GetSlotList", e))?;
        let slot = slots
            .into_iter()
            .find(|slot| {
                context
                    .get_token_info(*slot)
                    .is_ok_and(|info| info.label().trim_end() == label)
            })
            .ok_or_else(|| PkiError::NoToken {
                module: module.to_path_buf(),
                label: label.to_owned(),
            })?;
        let session = context
            .open_rw_session(slot)
            .map_err(|e| ck("C_OpenSession", e))?;
        match session.login(UserType::User, Some(&AuthPin::from(pin.to_owned()))) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(RvError::PinIncorrect | RvError::PinInvalid, _)) => {
                return Err(PkiError::WrongPin(label.to_owned()));
            }
            Err(e) => return Err(ck("C_Login", e)),
        }
        Ok(Arc::new(Token {
            label: label.to_owned(),
            session: Mutex::new(session),
        }))
    }

    fn session(&self) -> Result<std::sync::MutexGuard<'_, Session>, PkiError> {
        self.session
            .lock()
            .map_err(|_| PkiError::Pkcs11("the session lock is poisoned".into()))
    }

    /// Generates a non-extractable EC key pair for the CA `name`; returns it and its CKA_ID (hex).
    pub fn generate(
        self: &Arc<Self>,
        name: &str,
        alg: &'static SignatureAlgorithm,
    ) -> Result<(TokenKey, String), PkiError> {
        let params = if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
            P384_PARAMS
        } else if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
            P256_PARAMS
        } else {
            return Err(PkiError::Pkcs11(
                "only ECDSA P-256 and P-384 keys are supported".into(),
            ));
        };
        let mut id = [0u8; 16];
        SystemRandom::new()
            .fill(&mut id)
            .map_err(|_| PkiError::Random("the system random generator failed".into()))?;
        let label = format!("iomt-ca-{name}").into_bytes();
        let public = [
            Attribute::Token(true),
            Attribute::Verify(true),
            Attribute::EcParams(params.to_vec()),
            Attribute::Id(id.to_vec()),
            Attribute::Label(label.clone()),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Id(id.to_vec()),
            Attribute::Label(label),
        ];
        self.session()?
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .map_err(|e| ck("C_GenerateKeyPair", e))?;
        let id = hex::encode(id);
        Ok((self.key(&id)?, id))
    }

    /// The key pair whose CKA_ID is `id` (hex).
    pub fn key(self: &Arc<Self>, id: &str) -> Result<TokenKey, PkiError> {
        let raw_id =
            hex::decode(id).map_err(|_| PkiError::Pkcs11(format!("key id `{id}` is not hex")))?;
        let session = self.session()?;
        let find = |class: ObjectClass| {
            session
                .find_objects(&[
                    Attribute::Class(class),
                    Attribute::KeyType(KeyType::EC),
                    Attribute::Id(raw_id.clone()),
                ])
                .map_err(|e| ck("C_FindObjects", e))?
                .into_iter()
                .next()
                .ok_or_else(|| PkiError::NoTokenKey {
                    token: self.label.clone(),
                    id: id.to_owned(),
                })
        };
        let private = find(ObjectClass::PRIVATE_KEY)?;
        let public = find(ObjectClass::PUBLIC_KEY)?;
        let attributes = session
            .get_attributes(public, &[AttributeType::EcParams, AttributeType::EcPoint])
            .map_err(|e| ck("C_GetAttributeValue", e))?;
        let (mut params, mut point) = (None, None);
        for attribute in attributes {
            match attribute {
                Attribute::EcParams(p) => params = Some(p),
                Attribute::EcPoint(p) => point = Some(p),
                _ => {}
            }
        }
        let (alg, point_len): (&'static SignatureAlgorithm, usize) = match params.as_deref() {
            Some(P256_PARAMS) => (&rcgen::PKCS_ECDSA_P256_SHA256, 65),
            Some(P384_PARAMS) => (&rcgen::PKCS_ECDSA_P384_SHA384, 97),
            _ => {
                return Err(PkiError::Pkcs11(format!(
                    "key {id} is not on P-256 or P-384"
                )));
            }
        };
        let point = point.unwrap_or_default();
        // CKA_EC_POINT is a DER OCTET STRING around the uncompressed point (some modules omit it).
        let point = match point.as_slice() {
            [0x04, len, rest @ ..] if usize::from(*len) == point_len && rest.len() == point_len => {
                rest.to_vec()
            }
            raw if raw.len() == point_len && raw[0] == 0x04 => raw.to_vec(),
            _ => return Err(PkiError::Pkcs11(format!("key {id}: unreadable EC point"))),
        };
        drop(session);
        Ok(TokenKey {
            token: self.clone(),
            handle: private,
            public: point,
            alg,
        })
    }
}

/// A CA key in a token: its handle, public point and algorithm.
pub struct TokenKey {
    token: Arc<Token>,
    handle: ObjectHandle,
    public: Vec<u8>,
    alg: &'static SignatureAlgorithm,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey")
            .field("token", &self.token.label)
            .finish_non_exhaustive()
    }
}

impl PublicKeyData for TokenKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

impl SigningKey for TokenKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let digest_alg = if self.alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
            &ring::digest::SHA384
        } else {
            &ring::digest::SHA256
        };
        let digest = ring::digest::digest(digest_alg, msg);
        let raw = self
            .token
            .session()
            .map_err(|_| rcgen::Error::RemoteKeyError)?
            .sign(&Mechanism::Ecdsa, self.handle, digest.as_ref())
            .map_err(|error| {
                tracing::error!(%error, token = %self.token.label, "PKCS#11 signing failed");
                rcgen::Error::RemoteKeyError
            })?;
        ecdsa_raw_to_der(&raw).ok_or(rcgen::Error::RemoteKeyError)
    }
}

/// `r || s` (PKCS#11 CKM_ECDSA output) → DER `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }`.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let mut body = Vec::with_capacity(raw.len() + 8);
    for half in [r, s] {
        let trimmed = match half.iter().position(|b| *b != 0) {
            Some(first) => &half[first..],
            None => &[0u8][..],
        };
        let pad = trimmed[0] & 0x80 != 0;
        body.push(0x02);
        push_len(&mut body, trimmed.len() + usize::from(pad));
        if pad {
            body.push(0);
        }
        body.extend_from_slice(trimmed);
    }
    let mut der = vec![0x30];
    push_len(&mut der, body.len());
    der.extend(body);
    Some(der)
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        // Signatures of P-384 and below stay under 256 octets.
        out.push(0x81);
        out.push(len as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecdsa_raw_to_der_pads_high_bit_and_trims_zeros() {
        let mut raw = vec![0u8; 64];
        raw[0] = 0x80; // r needs a 0x00 pad
        raw[32] = 0x00;
        raw[33] = 0x01; // s has a leading zero to trim
        let der = ecdsa_raw_to_der(&raw).unwrap();
        assert_eq!(&der[..5], &[0x30, 0x44, 0x02, 0x21, 0x00]);
        assert_eq!(der[4 + 33], 0x02);
        assert_eq!(der[4 + 34], 31);
    }
}
