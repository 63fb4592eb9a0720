//! `TPM2_MakeCredential` done by the CA (TPM 2.0 Library Part 1 §24, "Credential Protection"):
//! a secret sealed to one EK and one AK name. Only the TPM holding that EK can open it, and it
//! does so only for a loaded object with that name (`TPM2_ActivateCredential`), so a client
//! that gives the secret back proves the AK is resident beside the EK.
//!
//! For an RSA EK (TCG EK profile template L-1, the EK every TPM ships a certificate for): a seed
//! encrypted with RSA-OAEP (label `IDENTITY\0`, the EK's name hash), a symmetric key and an HMAC
//! key derived from the seed with KDFa (SP 800-108 counter mode, HMAC), the secret encrypted
//! with AES-CFB (zero IV) and the result bound to the AK name by the outer HMAC.

use aes::cipher::{BlockCipherEncrypt, KeyInit};
use iomt_core::attestation::{HashAlg, ObjectAttributes, Public, PublicKey};
use ring::rand::{SecureRandom, SystemRandom};

/// What the client hands to `TPM2_ActivateCredential`.
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialBlob {
    /// `TPM2B_ID_OBJECT`: integrity HMAC and encrypted secret.
    pub id_object: Vec<u8>,
    /// `TPM2B_ENCRYPTED_SECRET`: the seed, encrypted to the EK.
    pub encrypted_secret: Vec<u8>,
}

impl std::fmt::Debug for CredentialBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialBlob")
            .field("id_object_len", &self.id_object.len())
            .field("encrypted_secret_len", &self.encrypted_secret.len())
            .finish()
    }
}

/// Why a credential cannot be made for this EK.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("the EK is not a restricted decryption key with an AES-CFB symmetric definition")]
    NotAStorageKey,
    #[error("only RSA endorsement keys are supported for credential activation")]
    UnsupportedEk,
    #[error("the EK's RSA public key is unusable: {0}")]
    BadRsaKey(String),
    #[error("the system random generator failed")]
    Random,
}

/// Seals `secret` (at most the EK name hash's size) to the TPM holding `ek` for the object named
/// `ak_name`.
pub fn make_credential(
    ek: &Public,
    ak_name: &[u8],
    secret: &[u8],
) -> Result<CredentialBlob, CredentialError> {
    let restricted_decrypt = ObjectAttributes::RESTRICTED | ObjectAttributes::DECRYPT;
    let Some(symmetric) = ek
        .symmetric
        .filter(|_| ek.attributes.has(restricted_decrypt))
    else {
        return Err(CredentialError::NotAStorageKey);
    };
    let PublicKey::Rsa {
        exponent, modulus, ..
    } = &ek.key
    else {
        return Err(CredentialError::UnsupportedEk);
    };
    let name_alg = ek.name_alg;
    let mut seed = vec![0u8; name_alg.size()];
    SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| CredentialError::Random)?;
    let encrypted_seed = rsa_oaep_identity(name_alg, modulus, *exponent, &seed)?;

    let key_bytes = usize::from(symmetric.key_bits / 8);
    let sym_key = kdfa(name_alg, &seed, b"STORAGE", ak_name, &[], key_bytes);
    let hmac_key = kdfa(name_alg, &seed, b"INTEGRITY", &[], &[], name_alg.size());

    // The plaintext is a TPM2B_DIGEST holding the secret.
    let mut enc_identity = tpm2b(secret);
    aes_cfb_encrypt(&sym_key, &mut enc_identity).ok_or(CredentialError::NotAStorageKey)?;

    let hmac_key = ring::hmac::Key::new(name_alg.hmac(), &hmac_key);
    let mut context = ring::hmac::Context::with_key(&hmac_key);
    context.update(&enc_identity);
    context.update(ak_name);
    let integrity = context.sign();

    let mut id_object = tpm2b(integrity.as_ref());
    id_object.extend_from_slice(&enc_identity);
    Ok(CredentialBlob {
        id_object: tpm2b(&id_object),
        encrypted_secret: tpm2b(&encrypted_seed),
    })
}

/// RSA-OAEP with the label `IDENTITY\0` and the EK's name hash (Part 1 §B.10.3).
fn rsa_oaep_identity(
    hash: HashAlg,
    modulus: &[u8],
    exponent: u32,
    seed: &[u8],
) -> Result<Vec<u8>, CredentialError> {
    use rsa::{BigUint, Oaep, RsaPublicKey};
    let key = RsaPublicKey::new(BigUint::from_bytes_be(modulus), BigUint::from(exponent))
        .map_err(|e| CredentialError::BadRsaKey(e.to_string()))?;
    let padding = match hash {
        HashAlg::Sha256 => Oaep::new_with_label::<sha2::Sha256, _>("IDENTITY\0"),
        HashAlg::Sha384 => Oaep::new_with_label::<sha2::Sha384, _>("IDENTITY\0"),
    };
    key.encrypt(&mut rsa::rand_core::OsRng, padding, seed)
        .map_err(|e| CredentialError::BadRsaKey(e.to_string()))
}

/// KDFa (Part 1 §11.4.10.2): SP 800-108 counter mode with HMAC, output truncated to `bytes`.
/// The label is followed by its terminating zero octet; `bits` is the output size in bits.
pub(super) fn kdfa(
    hash: HashAlg,
    key: &[u8],
    label: &[u8],
    context_u: &[u8],
    context_v: &[u8],
    bytes: usize,
) -> Vec<u8> {
    let key = ring::hmac::Key::new(hash.hmac(), key);
    let bits = u32::try_from(bytes * 8).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(bytes + hash.size());
    let mut counter: u32 = 1;
    while out.len() < bytes {
        let mut context = ring::hmac::Context::with_key(&key);
        context.update(&counter.to_be_bytes());
        context.update(label);
        context.update(&[0]);
        context.update(context_u);
        context.update(context_v);
        context.update(&bits.to_be_bytes());
        out.extend_from_slice(context.sign().as_ref());
        counter += 1;
    }
    out.truncate(bytes);
    out
}

/// AES-CFB-128 encryption in place with a zero IV (the credential's symmetric protection).
/// `None` when the key is not an AES-128 or AES-256 key.
pub(super) fn aes_cfb_encrypt(key: &[u8], data: &mut [u8]) -> Option<()> {
    match key.len() {
        16 => cfb(&aes::Aes128::new_from_slice(key).ok()?, data),
        32 => cfb(&aes::Aes256::new_from_slice(key).ok()?, data),
        _ => return None,
    }
    Some(())
}

/// CFB with a full-block feedback: each ciphertext block is the next block's cipher input.
fn cfb<C: BlockCipherEncrypt<BlockSize = aes::cipher::consts::U16>>(cipher: &C, data: &mut [u8]) {
    let mut feedback = aes::Block::default();
    for chunk in data.chunks_mut(16) {
        let mut keystream = feedback;
        cipher.encrypt_block(&mut keystream);
        for (byte, k) in chunk.iter_mut().zip(keystream.iter()) {
            *byte ^= k;
        }
        if chunk.len() == 16 {
            feedback.copy_from_slice(chunk);
        }
    }
}

/// A `TPM2B_*`: 2-octet size and the octets (callers keep `data` under 64 KiB).
fn tpm2b(data: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(data.len())
        .unwrap_or(u16::MAX)
        .to_be_bytes()
        .to_vec();
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
#[path = "tests/credential.rs"]
mod tests;
