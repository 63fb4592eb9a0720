//! TPM 2.0 key attestation, verified by the CA before it signs (docs/PROFILE.md §2.3, §6.1):
//!
//! 1. *Challenge* ([`challenge`]): the client sends its EK certificate, EK public area and AK
//!    public area; the EK certificate must chain to a TPM manufacturer root the operator trusts
//!    (`ca-server tpm-roots`) and carry the EK's key; the CA seals a fresh random secret to that
//!    EK and AK name with `TPM2_MakeCredential` ([`credential`]) and stores only its digest.
//! 2. *Evidence* ([`certify`]): the client opens the credential (`TPM2_ActivateCredential`, which
//!    the TPM performs only when the AK is resident beside the EK) and certifies its new key with
//!    the AK, the secret as qualifying data. The CA checks the AK signature, that the secret is
//!    its challenge, that the certified name is the name of the public area given, that this
//!    public area is the CSR's key, and that the key is fixedTPM | fixedParent |
//!    sensitiveDataOrigin (generated in, and never leaving, that TPM).
//!
//! Credential activation binds the AK to the EK (TCG *TPM 2.0 Keys for Device Identity and
//! Attestation* §6, the "OEM creates the AK" flow) without a manufacturer IAK certificate, which
//! most TPMs (and swtpm) do not carry; and the activated secret doubles as the CA's fresh,
//! single-use challenge.

mod admit;
pub mod certify;
pub mod challenge;
pub mod credential;
pub mod ek;

pub use admit::{Attested, requires_attestation};
pub use certify::{CertifiedKey, verify_certify};
pub use challenge::{
    CHALLENGE_TTL_SECS, ChallengeAuthorization, ChallengeRequest, IssuedChallenge, PendingChallenge,
};
pub use credential::{CredentialBlob, CredentialError, make_credential};
pub use ek::{VerifiedEk, verify_ek};

use iomt_core::attestation::AttestationError;

/// Why key attestation evidence was refused. Each variant has its stable `attestation.*` code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestationProblem {
    /// The AK is not a restricted signing key generated in and fixed to the TPM.
    #[error(
        "the attestation key is not a restricted, fixedTPM | fixedParent signing key generated in the TPM"
    )]
    AkNotRestricted,
    /// The certify's qualifying data is no challenge this CA issued (or the AK is not the one
    /// the challenge was sealed for, so it could not be activated).
    #[error("the TPM2_Certify qualifying data is not a challenge this CA issued for this device")]
    ChallengeUnknown,
    /// The challenge expired before the CSR arrived.
    #[error("the attestation challenge expired; request a new one")]
    ChallengeExpired,
    /// The challenge was already used by an issuance.
    #[error("the attestation challenge was already used; request a new one")]
    ChallengeUsed,
    /// The EK cannot be used for credential activation.
    #[error("the endorsement key cannot be used: {0}")]
    EkUnusable(String),
    /// The EK certificate does not chain to a trusted TPM manufacturer root.
    #[error("the EK certificate does not chain to a trusted TPM manufacturer root ({reason})")]
    EkUntrusted { reason: String },
    /// The EK public area is not the key of the EK certificate.
    #[error("the EK public area is not the key certified by the EK certificate")]
    EkMismatch,
    /// The certified key is not the CSR's public key.
    #[error("the attested key is not the CSR's public key")]
    KeyMismatch,
    /// The certified key could be duplicated or was imported.
    #[error(
        "the attested key lacks {missing}: it is not a key generated in, and fixed to, this TPM"
    )]
    KeyNotFixed { missing: &'static str },
    /// The certified name is not the name of the public area given.
    #[error("the attested name is not the name of the public area given in the evidence")]
    NameMismatch,
    /// The evidence does not parse.
    #[error("the attestation evidence is malformed: {0}")]
    Malformed(#[from] AttestationError),
    /// The policy requires evidence and the CSR carries none.
    #[error("this product requires TPM key attestation: the CSR carries no evidence attribute")]
    Missing,
    /// The AK signature over the certify does not verify.
    #[error("the attestation key's signature over TPM2_Certify does not verify")]
    SignatureInvalid,
    /// The device is bound to another TPM.
    #[error(
        "device {serial} is bound to another TPM (EK {bound}); an operator must re-provision it first"
    )]
    TpmMismatch { serial: String, bound: String },
}
