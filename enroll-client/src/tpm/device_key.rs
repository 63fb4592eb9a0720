//! A device key held by the TPM: created under the SRK, saved as a [`LoadableKey`], loaded back,
//! and used as an rcgen signing key (ECDSA P-256 with SHA-256, DER signature from the TPM's r, s).

use std::sync::Arc;

use der::asn1::UintRef;
use der::{Encode, Sequence};
use tss_esapi::Context;
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::handles::KeyHandle;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::structures::{Digest, HashcheckTicket, Private, Public, Signature, SignatureScheme};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;

use super::connection::Tpm;
use super::templates;
use super::tss2_pem::{LoadableKey, OWNER_PARENT, Tss2PemError};

/// Why the TPM could not make, load or use the device key.
#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    #[error("TCTI `{tcti}`: {source}")]
    Tcti {
        tcti: String,
        source: tss_esapi::Error,
    },
    #[error("TPM {step}: {source}")]
    Tpm {
        step: &'static str,
        source: tss_esapi::Error,
    },
    #[error("key file: {0}")]
    KeyFile(#[from] Tss2PemError),
    #[error("the key file's parent {0:#010x} is not the owner SRK")]
    Parent(u32),
    #[error("the TPM key is not an ECC P-256 key")]
    NotP256,
    #[error("attestation out of order: {0}")]
    Sequence(&'static str),
    #[error("the attestation evidence cannot be encoded: {0}")]
    Evidence(String),
}

pub(super) fn tpm_step(step: &'static str) -> impl FnOnce(tss_esapi::Error) -> TpmError {
    move |source| TpmError::Tpm { step, source }
}

/// The device key loaded in a TPM, with the connection that reaches it.
pub struct TpmKey {
    tpm: Arc<Tpm>,
    handle: KeyHandle,
    loadable: LoadableKey,
    /// Uncompressed SEC1 point 04 || x || y.
    point: Vec<u8>,
}

impl std::fmt::Debug for TpmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmKey").finish_non_exhaustive()
    }
}

fn srk(context: &mut Context) -> Result<KeyHandle, TpmError> {
    let template = templates::srk().map_err(tpm_step("SRK template"))?;
    context
        .execute_with_nullauth_session(|ctx| {
            ctx.create_primary(Hierarchy::Owner, template, None, None, None, None)
        })
        .map(|primary| primary.key_handle)
        .map_err(tpm_step("CreatePrimary (SRK)"))
}

pub(super) fn tpm2b(body: Vec<u8>) -> Vec<u8> {
    let size = u16::try_from(body.len()).unwrap_or(u16::MAX).to_be_bytes();
    [size.as_slice(), &body].concat()
}

pub(super) fn body_of(tpm2b: &[u8]) -> Result<&[u8], TpmError> {
    match tpm2b {
        [high, low, body @ ..] if usize::from(u16::from_be_bytes([*high, *low])) == body.len() => {
            Ok(body)
        }
        _ => Err(Tss2PemError::Der("a TPM2B blob's size does not match".into()).into()),
    }
}

fn point_of(public: &Public) -> Result<Vec<u8>, TpmError> {
    let Public::Ecc { unique, .. } = public else {
        return Err(TpmError::NotP256);
    };
    let (x, y) = (unique.x().value(), unique.y().value());
    if x.len() != 32 || y.len() != 32 {
        return Err(TpmError::NotP256);
    }
    Ok([&[0x04][..], x, y].concat())
}

impl TpmKey {
    /// Creates a new device key in the TPM reached by `tcti` and loads it.
    pub fn create(tcti: &str) -> Result<TpmKey, TpmError> {
        Self::create_in(&Tpm::open(tcti)?)
    }

    /// Loads a saved key (the TSS2 PRIVATE KEY of `key.pem`) into the TPM reached by `tcti`.
    pub fn load(tcti: &str, pem_text: &[u8]) -> Result<TpmKey, TpmError> {
        Self::load_in(&Tpm::open(tcti)?, pem_text)
    }

    /// Creates a new device key in `tpm` and loads it.
    pub fn create_in(tpm: &Arc<Tpm>) -> Result<TpmKey, TpmError> {
        let mut context = tpm.lock();
        let parent = srk(&mut context)?;
        let template = templates::device_key().map_err(tpm_step("key template"))?;
        let created = context
            .execute_with_nullauth_session(|ctx| {
                ctx.create(parent, template, None, None, None, None)
            })
            .map_err(tpm_step("Create"))?;
        let loadable = LoadableKey {
            parent: OWNER_PARENT,
            public: tpm2b(
                created
                    .out_public
                    .marshall()
                    .map_err(tpm_step("marshal public"))?,
            ),
            private: tpm2b(created.out_private.value().to_vec()),
        };
        let handle = load_under(&mut context, parent, &loadable)?;
        drop(context);
        Self::loaded(tpm, handle, loadable)
    }

    /// Loads a saved key (the TSS2 PRIVATE KEY of `key.pem`) into `tpm`.
    pub fn load_in(tpm: &Arc<Tpm>, pem_text: &[u8]) -> Result<TpmKey, TpmError> {
        let loadable = LoadableKey::from_pem(pem_text)?;
        if loadable.parent != OWNER_PARENT {
            return Err(TpmError::Parent(loadable.parent));
        }
        let mut context = tpm.lock();
        let parent = srk(&mut context)?;
        let handle = load_under(&mut context, parent, &loadable)?;
        drop(context);
        Self::loaded(tpm, handle, loadable)
    }

    fn loaded(
        tpm: &Arc<Tpm>,
        handle: KeyHandle,
        loadable: LoadableKey,
    ) -> Result<TpmKey, TpmError> {
        let public =
            Public::unmarshall(body_of(&loadable.public)?).map_err(tpm_step("unmarshal public"))?;
        let point = match point_of(&public) {
            Ok(point) => point,
            Err(error) => {
                let _ = tpm.lock().flush_context(handle.into());
                return Err(error);
            }
        };
        Ok(TpmKey {
            tpm: tpm.clone(),
            handle,
            loadable,
            point,
        })
    }
}

/// Loads `loadable` under `parent`, then flushes the parent: swtpm has three object slots and
/// no resource manager, and the SRK is not needed again.
fn load_under(
    context: &mut Context,
    parent: KeyHandle,
    loadable: &LoadableKey,
) -> Result<KeyHandle, TpmError> {
    let loaded = (|| {
        let public =
            Public::unmarshall(body_of(&loadable.public)?).map_err(tpm_step("unmarshal public"))?;
        let private = Private::try_from(body_of(&loadable.private)?.to_vec())
            .map_err(tpm_step("private blob"))?;
        context
            .execute_with_nullauth_session(|ctx| ctx.load(parent, private, public))
            .map_err(tpm_step("Load"))
    })();
    let flushed = context
        .flush_context(parent.into())
        .map_err(tpm_step("FlushContext (SRK)"));
    let handle = loaded?;
    flushed?;
    Ok(handle)
}

impl TpmKey {
    /// The `key.pem` text: public and wrapped private blobs, no key material in the clear.
    pub fn to_pem(&self) -> Result<String, TpmError> {
        Ok(self.loadable.to_pem()?)
    }

    /// The TPM connection, for the attestation commands that use the loaded key.
    pub(super) fn lock_context(&self) -> std::sync::MutexGuard<'_, Context> {
        self.tpm.lock()
    }

    /// The TPM this key is loaded in.
    pub fn tpm(&self) -> &Arc<Tpm> {
        &self.tpm
    }

    /// The loaded key's transient handle.
    pub(super) fn handle(&self) -> KeyHandle {
        self.handle
    }

    /// The public key as an uncompressed SEC1 point.
    pub fn public_point(&self) -> &[u8] {
        &self.point
    }

    /// The TPM's TPM2B_PUBLIC of the key, as marshalled in the key file.
    pub fn public_blob(&self) -> &[u8] {
        &self.loadable.public
    }

    /// Signs SHA-256(`message`) in the TPM; the DER ECDSA-Sig-Value.
    pub fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>, TpmError> {
        let hash = ring::digest::digest(&ring::digest::SHA256, message);
        let digest = Digest::try_from(hash.as_ref()).map_err(tpm_step("digest"))?;
        let validation = HashcheckTicket::try_from(TPMT_TK_HASHCHECK {
            tag: TPM2_ST_HASHCHECK,
            hierarchy: TPM2_RH_NULL,
            digest: Default::default(),
        })
        .map_err(tpm_step("null ticket"))?;
        let mut context = self.lock_context();
        let handle = self.handle;
        let signature = context
            .execute_with_nullauth_session(|ctx| {
                ctx.sign(handle, digest, SignatureScheme::Null, validation)
            })
            .map_err(tpm_step("Sign"))?;
        let Signature::EcDsa(signature) = signature else {
            return Err(TpmError::NotP256);
        };
        ecdsa_der(
            signature.signature_r().value(),
            signature.signature_s().value(),
        )
    }
}

impl Drop for TpmKey {
    fn drop(&mut self) {
        let _ = self.tpm.lock().flush_context(self.handle.into());
    }
}

#[derive(Sequence)]
struct EcdsaSigValue<'a> {
    r: UintRef<'a>,
    s: UintRef<'a>,
}

fn ecdsa_der(r: &[u8], s: &[u8]) -> Result<Vec<u8>, TpmError> {
    let bad = |e: der::Error| TpmError::KeyFile(Tss2PemError::Der(e.to_string()));
    EcdsaSigValue {
        r: UintRef::new(r).map_err(bad)?,
        s: UintRef::new(s).map_err(bad)?,
    }
    .to_der()
    .map_err(bad)
}

impl rcgen::PublicKeyData for TpmKey {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for TpmKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.sign_sha256(message).map_err(|error| {
            tracing::error!(%error, "the TPM could not sign");
            rcgen::Error::RemoteKeyError
        })
    }
}
