//! Enrollment with the device key in a TPM (`--tpm TCTI`): the key is created in the TPM, the
//! CA's challenge is answered by the TPM (credential activation), and the CSR carries the
//! `TPM2_Certify` evidence of the key (draft-ietf-lamps-csr-attestation) and the RFC 9266
//! `tls-exporter` binding of the connection it is sent on, both under the TPM key's signature.
//!
//! TPM commands take milliseconds and run on the calling task: the client drives one device at
//! a time, and a TPM serves one command at a time anyway.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rcgen::{Attribute, CertificateParams};

use crate::csr::device_subject;
use crate::enroll::{EnrollAuthorization, EnrollRequest};
use crate::error::ClientError;
use crate::est::EstClient;
use crate::tpm::{Attestor, SealedCredential, TpmKey};

/// id-aa-evidence (draft-ietf-lamps-csr-attestation).
const EVIDENCE_ATTRIBUTE: &[u64] = &[1, 2, 840, 113549, 1, 9, 16, 2, 59];

/// Who asks the CA for the challenge.
#[derive(Debug, Clone, Copy)]
pub enum ChallengeAuth<'a> {
    /// The device's one-time token (checked, not consumed, by the challenge).
    Token { serial: &'a str, token: &'a str },
    /// The client certificate of the TLS connection: a station's, or the device's own.
    ClientCertificate,
}

/// A first enrollment of the TPM key `key`: attested, then sent as `request` authorizes, bound
/// to its connection. The issued certificates (DER), not yet verified.
pub async fn enroll(
    client: &EstClient,
    key: &TpmKey,
    request: &EnrollRequest,
) -> Result<Vec<Vec<u8>>, ClientError> {
    let serial = request.serial.as_str();
    let (auth, basic) = match &request.authorization {
        EnrollAuthorization::Token(token) => (
            ChallengeAuth::Token { serial, token },
            Some((serial, token.as_str())),
        ),
        EnrollAuthorization::Station(_) => (ChallengeAuth::ClientCertificate, None),
    };
    let evidence = evidence(client, key, serial, auth).await?;
    let label = request.label.as_deref();
    client
        .bound_enroll(label, "simpleenroll", basic, |exporter| {
            attested_csr(key, serial, &evidence, Some(exporter))
        })
        .await
}

/// A renewal with the new TPM key `key`, over mutual TLS with the current certificate (whose
/// key is in the same TPM), bound to its connection.
pub async fn reenroll(
    client: &EstClient,
    key: &TpmKey,
    serial: &str,
    label: Option<&str>,
) -> Result<Vec<Vec<u8>>, ClientError> {
    let evidence = evidence(client, key, serial, ChallengeAuth::ClientCertificate).await?;
    client
        .bound_enroll(label, "simplereenroll", None, |exporter| {
            attested_csr(key, serial, &evidence, Some(exporter))
        })
        .await
}

/// Asks the CA for a challenge for this TPM, opens it in the TPM and certifies `key` with it:
/// the evidence attribute's value for the CSR.
pub async fn evidence(
    client: &EstClient,
    key: &TpmKey,
    serial: &str,
    auth: ChallengeAuth<'_>,
) -> Result<Vec<u8>, ClientError> {
    let mut attestor = Attestor::start(key)?;
    let identity = attestor.identity();
    let body = serde_json::json!({
        "serial": serial,
        "ek_certificate": STANDARD.encode(&identity.ek_certificate),
        "ek_public": STANDARD.encode(&identity.ek_public),
        "ak_public": STANDARD.encode(&identity.ak_public),
    });
    let basic = match auth {
        ChallengeAuth::Token { serial, token } => Some((serial, token)),
        ChallengeAuth::ClientCertificate => None,
    };
    let answer = client.attestation_challenge(basic, &body).await?;
    let field = |name: &str| {
        answer[name]
            .as_str()
            .and_then(|text| STANDARD.decode(text).ok())
            .ok_or_else(|| {
                ClientError::BadResponse(format!(
                    "attestation challenge: `{name}` is missing or not base64"
                ))
            })
    };
    let credential = SealedCredential {
        id_object: field("id_object")?,
        encrypted_secret: field("encrypted_secret")?,
    };
    let challenge = attestor.activate(&credential)?;
    tracing::debug!(serial, "the TPM activated the CA's credential");
    Ok(attestor.certify(&challenge)?)
}

/// The CSR for `serial`, signed by the TPM key, with the evidence and (when sent on a
/// connection that can report it) that connection's `tls-exporter` value.
pub fn attested_csr(
    key: &TpmKey,
    serial: &str,
    evidence: &[u8],
    binding: Option<&[u8; 32]>,
) -> Result<Vec<u8>, ClientError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = device_subject(serial)?;
    let mut attributes = vec![evidence_attribute(evidence)?];
    if let Some(exporter) = binding {
        attributes.push(crate::bound::challenge_password_attribute(exporter));
    }
    let csr = params
        .serialize_request_with_attributes(key, attributes)
        .map_err(|e| ClientError::Local(format!("CSR: {e}")))?;
    Ok(csr.der().to_vec())
}

/// The CSR attribute carrying `evidence` (an EvidenceBundle, DER) as its one value.
pub fn evidence_attribute(evidence: &[u8]) -> Result<Attribute, ClientError> {
    Ok(Attribute {
        oid: EVIDENCE_ATTRIBUTE,
        values: set_of_one(evidence)?,
    })
}

/// `SET { value }`, DER, for rcgen, which writes an attribute's `values` as given.
fn set_of_one(value: &[u8]) -> Result<Vec<u8>, ClientError> {
    use der::{Decode, Encode};
    let bad = |e: der::Error| ClientError::Local(format!("evidence attribute: {e}"));
    let any = der::Any::from_der(value).map_err(bad)?;
    der::asn1::SetOfVec::try_from(vec![any])
        .and_then(|set| set.to_der())
        .map_err(bad)
}
