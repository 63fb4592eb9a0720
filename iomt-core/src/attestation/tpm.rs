//! The TPM 2.0 structures of key attestation (Library Part 2, big-endian, size-prefixed
//! `TPM2B_*` fields): `TPMS_ATTEST` of a certify, `TPMT_SIGNATURE`, `TPMT_PUBLIC`, and the TPM
//! name of a public area. Only what a verifier needs is interpreted; every length is checked
//! against the bytes present and against [`MAX_TPM_STRUCTURE`].

use super::AttestationError;

/// The largest TPM structure accepted (a `TPMT_PUBLIC` of an RSA-4096 key is about 600 bytes;
/// `TPMS_ATTEST` of a certify about 150).
pub const MAX_TPM_STRUCTURE: usize = 2048;
/// `TPMS_ATTEST.magic` of an attestation the TPM produced itself (Part 2 §6.2).
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
/// `TPMI_ST_ATTEST` of a `TPM2_Certify` (Part 2 §6.9).
pub const TPM_ST_ATTEST_CERTIFY: u16 = 0x8017;

const ALG_RSA: u16 = 0x0001;
const ALG_SHA256: u16 = 0x000b;
const ALG_SHA384: u16 = 0x000c;
const ALG_NULL: u16 = 0x0010;
const ALG_RSASSA: u16 = 0x0014;
const ALG_ECDSA: u16 = 0x0018;
const ALG_ECDAA: u16 = 0x001a;
const ALG_ECC: u16 = 0x0023;
const ALG_AES: u16 = 0x0006;
const ALG_CFB: u16 = 0x0043;
const ECC_NIST_P256: u16 = 0x0003;
const ECC_NIST_P384: u16 = 0x0004;

/// A hash algorithm the verifier computes (`TPMI_ALG_HASH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    Sha256,
    Sha384,
}

impl HashAlg {
    fn from_id(structure: &'static str, alg: u16) -> Result<HashAlg, AttestationError> {
        match alg {
            ALG_SHA256 => Ok(HashAlg::Sha256),
            ALG_SHA384 => Ok(HashAlg::Sha384),
            alg => Err(AttestationError::UnsupportedAlgorithm { structure, alg }),
        }
    }

    /// The TPM algorithm identifier.
    pub fn id(self) -> u16 {
        match self {
            HashAlg::Sha256 => ALG_SHA256,
            HashAlg::Sha384 => ALG_SHA384,
        }
    }

    /// The digest size in octets.
    pub fn size(self) -> usize {
        self.ring().output_len()
    }

    /// The ring digest algorithm.
    pub fn ring(self) -> &'static ring::digest::Algorithm {
        match self {
            HashAlg::Sha256 => &ring::digest::SHA256,
            HashAlg::Sha384 => &ring::digest::SHA384,
        }
    }

    /// The ring HMAC algorithm (KDFa, the credential's integrity HMAC).
    pub fn hmac(self) -> ring::hmac::Algorithm {
        match self {
            HashAlg::Sha256 => ring::hmac::HMAC_SHA256,
            HashAlg::Sha384 => ring::hmac::HMAC_SHA384,
        }
    }
}

/// `TPMA_OBJECT` (Part 2 §8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectAttributes(pub u32);

impl ObjectAttributes {
    pub const FIXED_TPM: u32 = 1 << 1;
    pub const FIXED_PARENT: u32 = 1 << 4;
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    pub const RESTRICTED: u32 = 1 << 16;
    pub const DECRYPT: u32 = 1 << 17;
    pub const SIGN: u32 = 1 << 18;

    /// True when every bit of `mask` is set.
    pub fn has(self, mask: u32) -> bool {
        self.0 & mask == mask
    }
}

/// A named elliptic curve (`TPMI_ECC_CURVE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EccCurve {
    P256,
    P384,
}

impl EccCurve {
    /// The size of a coordinate in octets.
    pub fn coordinate_size(self) -> usize {
        match self {
            EccCurve::P256 => 32,
            EccCurve::P384 => 48,
        }
    }
}

/// The public key of a `TPMT_PUBLIC` (its `unique` field, with the parameters it needs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// `TPMS_ECC_POINT`, coordinates as the TPM gives them (big-endian, may be shorter).
    Ecc {
        curve: EccCurve,
        x: Vec<u8>,
        y: Vec<u8>,
    },
    /// The modulus; `exponent` 0 in the TPM means 65537 and is given here as 65537.
    Rsa {
        bits: u16,
        exponent: u32,
        modulus: Vec<u8>,
    },
}

impl PublicKey {
    /// The uncompressed SEC 1 point of an ECC key, coordinates left-padded to the curve size;
    /// `None` for an RSA key or a coordinate longer than the curve allows.
    pub fn sec1_uncompressed(&self) -> Option<Vec<u8>> {
        let PublicKey::Ecc { curve, x, y } = self else {
            return None;
        };
        let size = curve.coordinate_size();
        if x.len() > size || y.len() > size {
            return None;
        }
        let mut point = vec![0x04];
        for coordinate in [x, y] {
            point.extend(std::iter::repeat_n(0, size - coordinate.len()));
            point.extend_from_slice(coordinate);
        }
        Some(point)
    }
}

/// `TPMT_SYM_DEF_OBJECT` of a storage key (an EK): the symmetric cipher of its credential
/// protection. Only AES in CFB mode is defined for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymmetricDef {
    pub key_bits: u16,
}

/// A parsed `TPMT_PUBLIC` with its exact bytes (the name is computed over them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Public {
    /// The marshalled `TPMT_PUBLIC`, as received.
    pub raw: Vec<u8>,
    pub name_alg: HashAlg,
    pub attributes: ObjectAttributes,
    pub auth_policy: Vec<u8>,
    /// The symmetric definition of a storage (restricted decryption) key; `None` when NULL.
    pub symmetric: Option<SymmetricDef>,
    /// The signing scheme and its hash, when the key fixes one (`None` when NULL).
    pub scheme: Option<(u16, HashAlg)>,
    pub key: PublicKey,
}

impl Public {
    /// Parses a `TPMT_PUBLIC` that fills `bytes` exactly.
    pub fn parse(bytes: &[u8]) -> Result<Public, AttestationError> {
        const S: &str = "TPMT_PUBLIC";
        check_size(S, bytes.len())?;
        let mut r = Reader::new(S, bytes);
        let kind = r.u16()?;
        let name_alg = HashAlg::from_id(S, r.u16()?)?;
        let attributes = ObjectAttributes(r.u32()?);
        let auth_policy = r.tpm2b()?.to_vec();
        let symmetric = read_symmetric(&mut r)?;
        let (scheme, key) = match kind {
            ALG_ECC => {
                let scheme = read_scheme(&mut r)?;
                let curve = match r.u16()? {
                    ECC_NIST_P256 => EccCurve::P256,
                    ECC_NIST_P384 => EccCurve::P384,
                    alg => {
                        return Err(AttestationError::UnsupportedAlgorithm { structure: S, alg });
                    }
                };
                // TPMT_KDF_SCHEME: NULL, or a scheme with its hash.
                if r.u16()? != ALG_NULL {
                    r.u16()?;
                }
                let x = r.tpm2b()?.to_vec();
                let y = r.tpm2b()?.to_vec();
                (scheme, PublicKey::Ecc { curve, x, y })
            }
            ALG_RSA => {
                let scheme = read_scheme(&mut r)?;
                let bits = r.u16()?;
                let exponent = match r.u32()? {
                    0 => 65537,
                    e => e,
                };
                let modulus = r.tpm2b()?.to_vec();
                (
                    scheme,
                    PublicKey::Rsa {
                        bits,
                        exponent,
                        modulus,
                    },
                )
            }
            alg => return Err(AttestationError::UnsupportedAlgorithm { structure: S, alg }),
        };
        r.finish()?;
        Ok(Public {
            raw: bytes.to_vec(),
            name_alg,
            attributes,
            auth_policy,
            symmetric,
            scheme,
            key,
        })
    }

    /// Parses a `TPM2B_PUBLIC` (a `TPMT_PUBLIC` behind its 2-octet size).
    pub fn parse_tpm2b(bytes: &[u8]) -> Result<Public, AttestationError> {
        Public::parse(unwrap_tpm2b("TPM2B_PUBLIC", bytes)?)
    }

    /// The TPM name of the object: `nameAlg || H_nameAlg(TPMT_PUBLIC)` (Part 1 §16).
    pub fn name(&self) -> Vec<u8> {
        let mut name = self.name_alg.id().to_be_bytes().to_vec();
        name.extend_from_slice(ring::digest::digest(self.name_alg.ring(), &self.raw).as_ref());
        name
    }
}

/// `TPMT_SYM_DEF_OBJECT`: NULL, or AES-CFB with its key size.
fn read_symmetric(r: &mut Reader<'_>) -> Result<Option<SymmetricDef>, AttestationError> {
    match r.u16()? {
        ALG_NULL => Ok(None),
        ALG_AES => {
            let key_bits = r.u16()?;
            match r.u16()? {
                ALG_CFB => Ok(Some(SymmetricDef { key_bits })),
                alg => Err(AttestationError::UnsupportedAlgorithm {
                    structure: r.structure,
                    alg,
                }),
            }
        }
        alg => Err(AttestationError::UnsupportedAlgorithm {
            structure: r.structure,
            alg,
        }),
    }
}

/// `TPMT_ECC_SCHEME` / `TPMT_RSA_SCHEME`: NULL, or a scheme with its hash (ECDAA adds a count).
fn read_scheme(r: &mut Reader<'_>) -> Result<Option<(u16, HashAlg)>, AttestationError> {
    let scheme = r.u16()?;
    if scheme == ALG_NULL {
        return Ok(None);
    }
    let hash = HashAlg::from_id(r.structure, r.u16()?)?;
    if scheme == ALG_ECDAA {
        r.u16()?;
    }
    Ok(Some((scheme, hash)))
}

/// A parsed `TPMS_ATTEST` of a `TPM2_Certify` with its exact bytes (the signature covers them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attest {
    /// The marshalled `TPMS_ATTEST`, as received.
    pub raw: Vec<u8>,
    /// The qualified name of the signing key (the AK).
    pub qualified_signer: Vec<u8>,
    /// `extraData`: the caller's qualifying data (here: the CA's challenge).
    pub extra_data: Vec<u8>,
    pub clock: u64,
    pub reset_count: u32,
    pub restart_count: u32,
    pub safe: bool,
    pub firmware_version: u64,
    /// `TPMS_CERTIFY_INFO.name`: the name of the certified key.
    pub certified_name: Vec<u8>,
    /// `TPMS_CERTIFY_INFO.qualifiedName`.
    pub certified_qualified_name: Vec<u8>,
}

impl Attest {
    /// Parses a `TPMS_ATTEST` that fills `bytes` exactly and attests a certify.
    pub fn parse(bytes: &[u8]) -> Result<Attest, AttestationError> {
        const S: &str = "TPMS_ATTEST";
        check_size(S, bytes.len())?;
        let mut r = Reader::new(S, bytes);
        let magic = r.u32()?;
        if magic != TPM_GENERATED_VALUE {
            return Err(AttestationError::NotTpmGenerated { found: magic });
        }
        let kind = r.u16()?;
        if kind != TPM_ST_ATTEST_CERTIFY {
            return Err(AttestationError::NotCertify { found: kind });
        }
        let qualified_signer = r.tpm2b()?.to_vec();
        let extra_data = r.tpm2b()?.to_vec();
        let clock = r.u64()?;
        let reset_count = r.u32()?;
        let restart_count = r.u32()?;
        let safe = r.u8()? != 0;
        let firmware_version = r.u64()?;
        let certified_name = r.tpm2b()?.to_vec();
        let certified_qualified_name = r.tpm2b()?.to_vec();
        r.finish()?;
        Ok(Attest {
            raw: bytes.to_vec(),
            qualified_signer,
            extra_data,
            clock,
            reset_count,
            restart_count,
            safe,
            firmware_version,
            certified_name,
            certified_qualified_name,
        })
    }

    /// Parses a `TPM2B_ATTEST` (a `TPMS_ATTEST` behind its 2-octet size).
    pub fn parse_tpm2b(bytes: &[u8]) -> Result<Attest, AttestationError> {
        Attest::parse(unwrap_tpm2b("TPM2B_ATTEST", bytes)?)
    }
}

/// A parsed `TPMT_SIGNATURE`. Attestation keys sign with ECDSA or RSASSA-PKCS1-v1_5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    Ecdsa {
        hash: HashAlg,
        r: Vec<u8>,
        s: Vec<u8>,
    },
    RsaSsa {
        hash: HashAlg,
        signature: Vec<u8>,
    },
}

impl Signature {
    /// Parses a `TPMT_SIGNATURE` that fills `bytes` exactly.
    pub fn parse(bytes: &[u8]) -> Result<Signature, AttestationError> {
        const S: &str = "TPMT_SIGNATURE";
        check_size(S, bytes.len())?;
        let mut r = Reader::new(S, bytes);
        let alg = r.u16()?;
        let signature = match alg {
            ALG_ECDSA => {
                let hash = HashAlg::from_id(S, r.u16()?)?;
                let sig_r = r.tpm2b()?.to_vec();
                let sig_s = r.tpm2b()?.to_vec();
                Signature::Ecdsa {
                    hash,
                    r: sig_r,
                    s: sig_s,
                }
            }
            ALG_RSASSA => {
                let hash = HashAlg::from_id(S, r.u16()?)?;
                Signature::RsaSsa {
                    hash,
                    signature: r.tpm2b()?.to_vec(),
                }
            }
            alg => return Err(AttestationError::UnsupportedAlgorithm { structure: S, alg }),
        };
        r.finish()?;
        Ok(signature)
    }

    /// An ECDSA signature as the fixed-width `r || s` ring verifies, each left-padded to
    /// `size`; `None` for RSA or an integer longer than `size`.
    pub fn ecdsa_fixed(&self, size: usize) -> Option<Vec<u8>> {
        let Signature::Ecdsa { r, s, .. } = self else {
            return None;
        };
        let strip = |v: &[u8]| -> Vec<u8> { v.iter().copied().skip_while(|b| *b == 0).collect() };
        let (r, s) = (strip(r), strip(s));
        if r.len() > size || s.len() > size {
            return None;
        }
        let mut out = Vec::with_capacity(2 * size);
        for part in [r, s] {
            out.extend(std::iter::repeat_n(0, size - part.len()));
            out.extend(part);
        }
        Some(out)
    }
}

fn check_size(structure: &'static str, len: usize) -> Result<(), AttestationError> {
    if len > MAX_TPM_STRUCTURE {
        Err(AttestationError::TooLarge {
            structure,
            len,
            max: MAX_TPM_STRUCTURE,
        })
    } else {
        Ok(())
    }
}

fn unwrap_tpm2b<'a>(
    structure: &'static str,
    bytes: &'a [u8],
) -> Result<&'a [u8], AttestationError> {
    check_size(structure, bytes.len())?;
    let mut r = Reader::new(structure, bytes);
    let inner = r.tpm2b()?;
    r.finish()?;
    Ok(inner)
}

/// A bounds-checked big-endian reader over one structure.
struct Reader<'a> {
    structure: &'static str,
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(structure: &'static str, bytes: &'a [u8]) -> Reader<'a> {
        Reader { structure, bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], AttestationError> {
        if self.bytes.len() < n {
            return Err(AttestationError::Truncated {
                structure: self.structure,
            });
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], AttestationError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, AttestationError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, AttestationError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, AttestationError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, AttestationError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A `TPM2B_*`: a 2-octet size and that many octets.
    fn tpm2b(&mut self) -> Result<&'a [u8], AttestationError> {
        let len = usize::from(self.u16()?);
        self.take(len)
    }

    fn finish(self) -> Result<(), AttestationError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(AttestationError::TrailingBytes {
                structure: self.structure,
                count: self.bytes.len(),
            })
        }
    }
}

#[cfg(test)]
#[path = "tests/tpm.rs"]
mod tests;
