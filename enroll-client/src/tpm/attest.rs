//! The TPM's side of an attested enrollment (the CA's is `ca-server/src/authority/attestation/`):
//!
//! 1. [`Attestor::start`]: the endorsement key (recreated from the TCG default RSA-2048
//!    template, so it is the key the EK certificate in NV certifies), that certificate, and a
//!    fresh attestation key (restricted ECDSA P-256 signing key under the EK). The CA gets the
//!    three and answers with a credential sealed to the EK and the AK's name.
//! 2. [`Attestor::activate`]: the TPM opens that credential, which it does only when the AK is
//!    resident beside the EK: the secret inside is the CA's single-use challenge.
//! 3. [`Attestor::certify`]: `TPM2_Certify` of the device key by the AK, the challenge as
//!    qualifying data, packed as the CSR's evidence attribute.
//!
//! Credential activation (rather than a manufacturer IAK certificate) proves the AK and the EK
//! share a TPM because almost no TPM, swtpm included, carries an IAK certificate, while every
//! TPM with an EK certificate can activate a credential.

use tss_esapi::Context;
use tss_esapi::abstraction::{AsymmetricAlgorithmSelection, ak, ek};
use tss_esapi::attributes::SessionAttributesBuilder;
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{AuthHandle, KeyHandle, ObjectHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, SignatureSchemeAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Data, EncryptedSecret, IdObject, Private, Public, SignatureScheme, SymmetricDefinition,
};
use tss_esapi::traits::Marshall;

use super::device_key::{TpmError, TpmKey, body_of, tpm_step as tpm, tpm2b};

/// The EK this client attests with (the CA seals credentials to RSA EKs).
const EK_ALGORITHM: AsymmetricAlgorithmSelection =
    AsymmetricAlgorithmSelection::Rsa(RsaKeyBits::Rsa2048);
/// The TCG-reserved persistent handle of the RSA EK.
const PERSISTENT_EK: u32 = 0x8101_0001;

/// What the CA needs to make a challenge: the TPM's identity and its attestation key.
#[derive(Debug, Clone)]
pub struct TpmIdentity {
    /// The EK certificate (DER), as stored in the TPM's NV index.
    pub ek_certificate: Vec<u8>,
    /// The EK's `TPM2B_PUBLIC`.
    pub ek_public: Vec<u8>,
    /// The AK's `TPM2B_PUBLIC`.
    pub ak_public: Vec<u8>,
}

/// The credential the CA sealed to the EK and the AK's name (`POST /attestation/challenge`).
#[derive(Debug, Clone)]
pub struct SealedCredential {
    /// `TPM2B_ID_OBJECT`.
    pub id_object: Vec<u8>,
    /// `TPM2B_ENCRYPTED_SECRET`.
    pub encrypted_secret: Vec<u8>,
}

/// The attestation of one device key, in the key's own TPM connection. The TPM has three
/// object slots and no resource manager in front of swtpm, and the TLS handshake of the
/// challenge request may load the current key: so the EK and AK are loaded only while a step
/// needs them (key, EK, AK at most).
pub struct Attestor<'k> {
    key: &'k TpmKey,
    ak_private: Private,
    ak_public: Public,
    /// The AK, once loaded to activate the credential (flushed after the certify).
    ak: Option<KeyHandle>,
    identity: TpmIdentity,
}

impl std::fmt::Debug for Attestor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attestor").finish_non_exhaustive()
    }
}

impl<'k> Attestor<'k> {
    /// Reads the EK certificate and the EK, and creates a fresh AK under the EK.
    pub fn start(key: &'k TpmKey) -> Result<Attestor<'k>, TpmError> {
        let mut context = key.lock_context();
        let ek_certificate = ek::retrieve_ek_pubcert(&mut context, EK_ALGORITHM).map_err(tpm(
            "reading the RSA-2048 EK certificate from NV 0x01c00002",
        ))?;
        let ek = Endorsement::acquire(&mut context)?;
        let made = (|| {
            let ek_public = public_of(&mut context, ek.handle)?;
            let created = ak::create_ak_2(
                &mut context,
                ek.handle,
                HashingAlgorithm::Sha256,
                AsymmetricAlgorithmSelection::Ecc(EccCurve::NistP256),
                SignatureSchemeAlgorithm::EcDsa,
                None,
                None,
            )
            .map_err(tpm("Create (AK)"))?;
            Ok::<_, TpmError>((ek_public, created))
        })();
        ek.release(&mut context);
        let (ek_public, created) = made?;
        let ak_public = tpm2b(
            created
                .out_public
                .marshall()
                .map_err(tpm("marshal AK public"))?,
        );
        drop(context);
        Ok(Attestor {
            key,
            ak_private: created.out_private,
            ak_public: created.out_public,
            ak: None,
            identity: TpmIdentity {
                ek_certificate,
                ek_public,
                ak_public,
            },
        })
    }

    /// The EK certificate and the EK and AK public areas, for the challenge request.
    pub fn identity(&self) -> &TpmIdentity {
        &self.identity
    }

    /// `TPM2_ActivateCredential`: the CA's secret, which the TPM releases only to the AK the
    /// credential names, resident beside the EK it was sealed to.
    pub fn activate(&mut self, credential: &SealedCredential) -> Result<Vec<u8>, TpmError> {
        let id_object = IdObject::try_from(body_of(&credential.id_object)?.to_vec())
            .map_err(tpm("credential blob"))?;
        let secret = EncryptedSecret::try_from(body_of(&credential.encrypted_secret)?.to_vec())
            .map_err(tpm("encrypted secret"))?;
        let mut context = self.key.lock_context();
        if let Some(stale) = self.ak.take() {
            let _ = context.flush_context(stale.into());
        }
        let ek = Endorsement::acquire(&mut context)?;
        let activated = (|| {
            let ak = ak::load_ak(
                &mut context,
                ek.handle,
                None,
                self.ak_private.clone(),
                self.ak_public.clone(),
            )
            .map_err(tpm("Load (AK)"))?;
            self.ak = Some(ak);
            activate(&mut context, ak, ek.handle, id_object, secret)
        })();
        ek.release(&mut context);
        activated
    }

    /// `TPM2_Certify` of the device key by the AK over `challenge`, as the CSR's evidence
    /// attribute (draft-ietf-lamps-csr-attestation, with the EK certificate). The AK is
    /// flushed afterwards: a challenge is answered once.
    pub fn certify(&mut self, challenge: &[u8]) -> Result<Vec<u8>, TpmError> {
        let ak = self.ak.take().ok_or(TpmError::Sequence(
            "TPM2_Certify before the credential was activated",
        ))?;
        let qualifying = Data::try_from(challenge.to_vec()).map_err(tpm("challenge"))?;
        let mut context = self.key.lock_context();
        let key_handle: ObjectHandle = self.key.handle().into();
        let certified = context.execute_with_sessions(
            (
                Some(AuthSession::Password),
                Some(AuthSession::Password),
                None,
            ),
            |ctx| ctx.certify(key_handle, ak, qualifying, SignatureScheme::Null),
        );
        let _ = context.flush_context(ak.into());
        drop(context);
        let (attest, signature) = certified.map_err(tpm("Certify"))?;
        let attest = attest.marshall().map_err(tpm("marshal TPMS_ATTEST"))?;
        let signature = signature
            .marshall()
            .map_err(tpm("marshal TPMT_SIGNATURE"))?;
        let key_public = body_of(self.key.public_blob())?;
        iomt_core::attestation::encode_evidence(
            &attest,
            &signature,
            key_public,
            &[self.identity.ek_certificate.as_slice()],
        )
        .map_err(|e| TpmError::Evidence(e.to_string()))
    }
}

impl Drop for Attestor<'_> {
    fn drop(&mut self) {
        if let Some(ak) = self.ak.take() {
            let _ = self.key.lock_context().flush_context(ak.into());
        }
    }
}

/// The endorsement key: the one provisioned at the TCG handle 0x81010001 (tpm2_createek,
/// swtpm_setup), or else recreated from the TCG default RSA-2048 template (the same key, since
/// the endorsement seed makes it).
struct Endorsement {
    handle: KeyHandle,
    persistent: bool,
}

impl Endorsement {
    fn acquire(context: &mut Context) -> Result<Endorsement, TpmError> {
        let persistent = TpmHandle::try_from(PERSISTENT_EK).ok().and_then(|handle| {
            context
                .execute_without_session(|ctx| ctx.tr_from_tpm_public(handle))
                .ok()
        });
        if let Some(handle) = persistent {
            return Ok(Endorsement {
                handle: handle.into(),
                persistent: true,
            });
        }
        let handle = ek::create_ek_object_2(context, EK_ALGORITHM, None)
            .map_err(tpm("CreatePrimary (EK)"))?;
        Ok(Endorsement {
            handle,
            persistent: false,
        })
    }

    fn release(self, context: &mut Context) {
        let mut handle = ObjectHandle::from(self.handle);
        let _ = if self.persistent {
            context.tr_close(&mut handle)
        } else {
            context.flush_context(handle)
        };
    }
}

fn public_of(context: &mut Context, key: KeyHandle) -> Result<Vec<u8>, TpmError> {
    let (public, _, _) = context.read_public(key).map_err(tpm("ReadPublic"))?;
    Ok(tpm2b(public.marshall().map_err(tpm("marshal public"))?))
}

/// ActivateCredential with the AK's (empty) authorization in an HMAC session and the EK's policy
/// (TCG default template: PolicySecret of the endorsement hierarchy) in a policy session.
fn activate(
    context: &mut Context,
    ak: KeyHandle,
    ek: KeyHandle,
    id_object: IdObject,
    secret: EncryptedSecret,
) -> Result<Vec<u8>, TpmError> {
    let (attributes, mask) = SessionAttributesBuilder::new().build();
    let mut start = |kind| {
        let session = context
            .start_auth_session(
                None,
                None,
                None,
                kind,
                SymmetricDefinition::AES_128_CFB,
                HashingAlgorithm::Sha256,
            )
            .map_err(tpm("StartAuthSession"))?
            .ok_or(TpmError::Sequence("StartAuthSession returned no session"))?;
        context
            .tr_sess_set_attributes(session, attributes, mask)
            .map_err(tpm("session attributes"))?;
        Ok::<AuthSession, TpmError>(session)
    };
    let hmac = start(SessionType::Hmac)?;
    let policy = match start(SessionType::Policy) {
        Ok(policy) => policy,
        Err(error) => {
            flush_session(context, hmac);
            return Err(error);
        }
    };
    let result = (|| {
        let policy_session = PolicySession::try_from(policy).map_err(tpm("policy session"))?;
        context
            .execute_with_session(Some(hmac), |ctx| {
                ctx.policy_secret(
                    policy_session,
                    AuthHandle::Endorsement,
                    Default::default(),
                    Default::default(),
                    Default::default(),
                    None,
                )
            })
            .map_err(tpm("PolicySecret (endorsement)"))?;
        context
            .execute_with_sessions((Some(hmac), Some(policy), None), |ctx| {
                ctx.activate_credential(ak, ek, id_object, secret)
            })
            .map(|digest| digest.value().to_vec())
            .map_err(tpm("ActivateCredential"))
    })();
    flush_session(context, hmac);
    flush_session(context, policy);
    result
}

fn flush_session(context: &mut Context, session: AuthSession) {
    let handle = tss_esapi::handles::SessionHandle::from(session);
    let _ = context.flush_context(ObjectHandle::from(handle));
}
