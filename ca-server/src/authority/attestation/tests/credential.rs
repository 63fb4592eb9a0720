//! MakeCredential checked by opening the credential the way a TPM does (TPM 2.0 Part 1 §24.6,
//! with a software RSA EK). The end-to-end suite opens it with a real TPM (swtpm,
//! `tpm2_activatecredential`).

use aes::cipher::{BlockCipherEncrypt, KeyInit};
use iomt_core::attestation::{HashAlg, ObjectAttributes, Public, PublicKey, SymmetricDef};
use rsa::traits::PublicKeyParts;

use super::*;

fn software_ek() -> (rsa::RsaPrivateKey, Public) {
    let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key");
    let public = Public {
        raw: Vec::new(),
        name_alg: HashAlg::Sha256,
        attributes: ObjectAttributes(
            ObjectAttributes::FIXED_TPM
                | ObjectAttributes::FIXED_PARENT
                | ObjectAttributes::SENSITIVE_DATA_ORIGIN
                | ObjectAttributes::RESTRICTED
                | ObjectAttributes::DECRYPT,
        ),
        auth_policy: Vec::new(),
        symmetric: Some(SymmetricDef { key_bits: 128 }),
        scheme: None,
        key: PublicKey::Rsa {
            bits: 2048,
            exponent: 65537,
            modulus: private.n().to_bytes_be(),
        },
    };
    (private, public)
}

/// TPM2_ActivateCredential in software: the secret, or `None` when the integrity check fails.
fn activate(private: &rsa::RsaPrivateKey, name: &[u8], blob: &CredentialBlob) -> Option<Vec<u8>> {
    let seed = private
        .decrypt(
            rsa::Oaep::new_with_label::<sha2::Sha256, _>("IDENTITY\0"),
            &blob.encrypted_secret[2..],
        )
        .ok()?;
    let id_object = &blob.id_object[2..];
    let hmac_len = usize::from(u16::from_be_bytes([id_object[0], id_object[1]]));
    let (integrity, enc_identity) = id_object[2..].split_at(hmac_len);
    let hmac_key = kdfa(HashAlg::Sha256, &seed, b"INTEGRITY", &[], &[], 32);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &hmac_key);
    ring::hmac::verify(&key, &[enc_identity, name].concat(), integrity).ok()?;
    let sym = kdfa(HashAlg::Sha256, &seed, b"STORAGE", name, &[], 16);
    let cipher = aes::Aes128::new_from_slice(&sym).ok()?;
    let mut plain = enc_identity.to_vec();
    let mut feedback = aes::Block::default();
    for chunk in plain.chunks_mut(16) {
        let mut keystream = feedback;
        cipher.encrypt_block(&mut keystream);
        let cipher_block = chunk.to_vec();
        for (byte, k) in chunk.iter_mut().zip(keystream.iter()) {
            *byte ^= k;
        }
        if cipher_block.len() == 16 {
            feedback.copy_from_slice(&cipher_block);
        }
    }
    let len = usize::from(u16::from_be_bytes([plain[0], plain[1]]));
    Some(plain[2..2 + len].to_vec())
}

#[test]
fn the_credential_opens_for_the_named_object_only() {
    let (private, ek) = software_ek();
    let name = [&[0x00, 0x0b][..], &[7u8; 32]].concat();
    let secret = [42u8; 32];
    let blob = make_credential(&ek, &name, &secret).expect("credential");
    assert_eq!(activate(&private, &name, &blob), Some(secret.to_vec()));
    let other = [&[0x00, 0x0b][..], &[8u8; 32]].concat();
    assert_eq!(activate(&private, &other, &blob), None);
}

#[test]
fn each_credential_uses_a_fresh_seed() {
    let (_, ek) = software_ek();
    let name = [0u8; 34];
    let a = make_credential(&ek, &name, &[1; 32]).expect("a");
    let b = make_credential(&ek, &name, &[1; 32]).expect("b");
    assert_ne!(a.encrypted_secret, b.encrypted_secret);
    assert_ne!(a.id_object, b.id_object);
}

#[test]
fn a_signing_key_or_an_ecc_ek_is_refused() {
    let (_, mut ek) = software_ek();
    ek.attributes = ObjectAttributes(ObjectAttributes::SIGN);
    assert_eq!(
        make_credential(&ek, &[0; 34], &[0; 32]),
        Err(CredentialError::NotAStorageKey)
    );
    let (_, mut ecc) = software_ek();
    ecc.key = PublicKey::Ecc {
        curve: iomt_core::attestation::EccCurve::P384,
        x: vec![1; 48],
        y: vec![2; 48],
    };
    assert_eq!(
        make_credential(&ecc, &[0; 34], &[0; 32]),
        Err(CredentialError::UnsupportedEk)
    );
}

#[test]
fn kdfa_output_has_the_asked_length_and_depends_on_every_input() {
    let base = kdfa(HashAlg::Sha256, b"key", b"STORAGE", b"u", b"v", 48);
    assert_eq!(base.len(), 48);
    // The output size is an input of every block: a shorter output is not a prefix.
    let short = kdfa(HashAlg::Sha256, b"key", b"STORAGE", b"u", b"v", 16);
    assert_ne!(short[..], base[..16]);
    for other in [
        kdfa(HashAlg::Sha256, b"kex", b"STORAGE", b"u", b"v", 48),
        kdfa(HashAlg::Sha256, b"key", b"INTEGRITY", b"u", b"v", 48),
        kdfa(HashAlg::Sha256, b"key", b"STORAGE", b"x", b"v", 48),
        kdfa(HashAlg::Sha256, b"key", b"STORAGE", b"u", b"x", 48),
        kdfa(HashAlg::Sha384, b"key", b"STORAGE", b"u", b"v", 48),
    ] {
        assert_ne!(other, base);
    }
}
