//! `KeyStore`: creates and finds CA keys, either sealed files in `DIR/ca/` or keys inside a
//! PKCS#11 token (listed in `DIR/ca/pkcs11.toml`). The HTTPS listener's key is always a sealed
//! file: rustls needs it in memory, but it is still encrypted at rest.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use iomt_core::files::{PRIVATE, write_new};
use rcgen::{KeyPair, SignatureAlgorithm};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

use super::custody::KeyAccess;
use super::error::PkiError;
use super::pkcs11::{TOKEN_CONFIG, Token, TokenConfig};
use super::sealed::{KeyVault, Passphrase, SEALED_TAG};
use super::signer::CaKey;
use crate::storage::KeyCustody;

/// Where new PKCS#11 keys go at `init`.
#[derive(Debug, Clone)]
pub struct TokenOptions {
    /// The PKCS#11 module (e.g. /usr/lib/softhsm/libsofthsm2.so).
    pub module: PathBuf,
    /// The token's label.
    pub token: String,
}

/// A token logged in to for `init`, before any key is generated.
#[derive(Debug)]
pub struct PendingToken(Arc<Token>, TokenConfig);

/// The CA's key custody for one run.
#[derive(Debug)]
pub struct KeyStore {
    vault: KeyVault,
    token: Option<(Arc<Token>, TokenConfig)>,
}

/// The file holding the key of the CA (or TLS certificate) `name`.
pub fn key_path(ca_dir: &Path, name: &str) -> PathBuf {
    ca_dir.join(format!("{name}.key.pem"))
}

impl KeyStore {
    /// Logs in to the token a new CA will use, before `init` creates anything (a wrong PIN
    /// then changes nothing).
    pub fn login_for_init(
        options: &TokenOptions,
        access: &KeyAccess,
    ) -> Result<PendingToken, PkiError> {
        let pin = access.pin(None)?;
        let token = Token::open(&options.module, &options.token, &pin)?;
        let config = TokenConfig {
            module: options.module.clone(),
            token: options.token.clone(),
            pin_file: access
                .pin_file
                .as_ref()
                .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())),
            keys: Default::default(),
        };
        Ok(PendingToken(token, config))
    }

    /// A key store for a new CA (`init`): sealed files, plus the token when there is one.
    pub fn create(
        passphrase: Passphrase,
        token: Option<PendingToken>,
    ) -> Result<KeyStore, PkiError> {
        Ok(KeyStore {
            vault: KeyVault::new(passphrase)?,
            token: token.map(|t| (t.0, t.1)),
        })
    }

    /// True when the CA keys live in a PKCS#11 token.
    pub fn in_token(&self) -> bool {
        self.token.is_some()
    }

    /// The key store of an existing CA in `dir`.
    pub fn open(dir: &Path, access: &KeyAccess) -> Result<KeyStore, PkiError> {
        let passphrase = access.passphrase(dir)?;
        let config_path = dir.join("ca").join(TOKEN_CONFIG);
        let token = if config_path.exists() {
            let text =
                std::fs::read_to_string(&config_path).map_err(|e| PkiError::io(&config_path, e))?;
            let config: TokenConfig = toml::from_str(&text).map_err(|e| PkiError::Invalid {
                path: config_path.clone(),
                reason: e.to_string(),
            })?;
            let pin = access.pin(config.pin_file.as_deref())?;
            let token = Token::open(&config.module, &config.token, &pin)?;
            Some((token, config))
        } else {
            None
        };
        Ok(KeyStore {
            vault: KeyVault::new(passphrase)?,
            token,
        })
    }

    /// Generates the signing key of the CA `name`: in the token when there is one, otherwise
    /// sealed into `ca_dir/<name>.key.pem`.
    pub fn generate(
        &mut self,
        ca_dir: &Path,
        name: &str,
        alg: &'static SignatureAlgorithm,
    ) -> Result<CaKey, PkiError> {
        if let Some((token, config)) = &mut self.token {
            let (key, id) = token.generate(name, alg)?;
            config.keys.insert(name.to_owned(), id);
            return Ok(CaKey::Token(key));
        }
        self.generate_file(ca_dir, name, alg)
            .map(|k| CaKey::File(Box::new(k)))
    }

    /// Generates a key that always lives in a sealed file (the HTTPS listener's).
    pub fn generate_file(
        &self,
        ca_dir: &Path,
        name: &str,
        alg: &'static SignatureAlgorithm,
    ) -> Result<KeyPair, PkiError> {
        let key = KeyPair::generate_for(alg)?;
        let der = Zeroizing::new(key.serialize_der());
        let pem_text = Zeroizing::new(self.vault.seal(name, &der)?);
        let path = key_path(ca_dir, name);
        write_new(&path, pem_text.as_bytes(), PRIVATE).map_err(|e| PkiError::io(&path, e))?;
        Ok(key)
    }

    /// Generates a key and seals it under the CA passphrase without writing it anywhere: the
    /// caller writes the sealed PEM (the renewed HTTPS key, `pki::tls_cert`).
    pub fn generate_sealed(
        &self,
        name: &str,
        alg: &'static SignatureAlgorithm,
    ) -> Result<(KeyPair, Zeroizing<String>), PkiError> {
        let key = KeyPair::generate_for(alg)?;
        let der = Zeroizing::new(key.serialize_der());
        let sealed = Zeroizing::new(self.vault.seal(name, &der)?);
        Ok((key, sealed))
    }

    /// Generates the key of a new CA generation (`ca rollover`) in the same custody as the
    /// others, without touching the data directory: in the token when there is one (returning
    /// its CKA_ID), otherwise sealed under the CA passphrase (returning the sealed PEM). The
    /// caller stores the reference with the generation's record.
    pub fn generate_detached(
        &self,
        name: &str,
        alg: &'static SignatureAlgorithm,
    ) -> Result<(CaKey, KeyCustody, Vec<u8>), PkiError> {
        if let Some((token, _)) = &self.token {
            let (key, id) = token.generate(name, alg)?;
            return Ok((CaKey::Token(key), KeyCustody::Pkcs11, id.into_bytes()));
        }
        let key = KeyPair::generate_for(alg)?;
        let der = Zeroizing::new(key.serialize_der());
        let sealed = self.vault.seal(name, &der)?;
        Ok((
            CaKey::File(Box::new(key)),
            KeyCustody::Sealed,
            sealed.into_bytes(),
        ))
    }

    /// The key of a generation recorded in the database ([`KeyStore::generate_detached`]).
    pub fn load_stored(
        &self,
        name: &str,
        custody: KeyCustody,
        key: Option<&[u8]>,
    ) -> Result<CaKey, PkiError> {
        let place = PathBuf::from(format!("<database>/{name}"));
        let bad = |reason: &str| PkiError::Invalid {
            path: place.clone(),
            reason: reason.to_owned(),
        };
        let key = key.ok_or_else(|| bad("the generation has no key reference"))?;
        match custody {
            KeyCustody::Pkcs11 => {
                let (token, _) = self.token.as_ref().ok_or_else(|| {
                    bad("the key is in a PKCS#11 token, but this CA has no DIR/ca/pkcs11.toml")
                })?;
                let id = std::str::from_utf8(key).map_err(|_| bad("the CKA_ID is not text"))?;
                token.key(id).map(CaKey::Token)
            }
            KeyCustody::Sealed => {
                let block = pem::parse(key).map_err(|e| bad(&e.to_string()))?;
                if block.tag() != SEALED_TAG {
                    return Err(bad("the stored key is not sealed"));
                }
                let der = self.vault.open(&place, name, &block)?;
                let pair = KeyPair::try_from(der.as_slice()).map_err(|e| bad(&e.to_string()))?;
                Ok(CaKey::File(Box::new(pair)))
            }
            KeyCustody::DataDir => Err(bad("the key is in the data directory, not the database")),
        }
    }

    /// Writes `ca_dir/pkcs11.toml` when the keys are in a token (end of `init`).
    pub fn finish(&self, ca_dir: &Path) -> Result<(), PkiError> {
        if let Some((_, config)) = &self.token {
            let path = ca_dir.join(TOKEN_CONFIG);
            let text = toml::to_string(config).map_err(|e| PkiError::Invalid {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            write_new(&path, text.as_bytes(), iomt_core::files::PUBLIC)
                .map_err(|e| PkiError::io(&path, e))?;
        }
        Ok(())
    }

    /// The signing key of the CA `name`, or `None` when this CA does not hold it (an offline
    /// root).
    pub fn load(&self, ca_dir: &Path, name: &str) -> Result<Option<CaKey>, PkiError> {
        if let Some((token, config)) = &self.token {
            return match config.keys.get(name) {
                Some(id) => token.key(id).map(|k| Some(CaKey::Token(k))),
                None => Ok(None),
            };
        }
        if !key_path(ca_dir, name).exists() {
            return Ok(None);
        }
        self.load_file(ca_dir, name)
            .map(|k| Some(CaKey::File(Box::new(k))))
    }

    /// The key sealed in `ca_dir/<name>.key.pem`.
    pub fn load_file(&self, ca_dir: &Path, name: &str) -> Result<KeyPair, PkiError> {
        let path = key_path(ca_dir, name);
        let der = self.unseal(&path, name)?;
        KeyPair::try_from(der.as_slice()).map_err(|e| PkiError::Invalid {
            path,
            reason: e.to_string(),
        })
    }

    /// The HTTPS listener's key (PKCS#8) for rustls.
    pub fn load_tls(&self, ca_dir: &Path, name: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
        let der = self.unseal(&key_path(ca_dir, name), name)?;
        Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.to_vec())))
    }

    /// PKCS#8 DER of a key file: sealed (normal) or clear (a CA created before sealing, loaded
    /// with a warning so old data directories keep working).
    fn unseal(&self, path: &Path, name: &str) -> Result<Zeroizing<Vec<u8>>, PkiError> {
        let text =
            Zeroizing::new(std::fs::read_to_string(path).map_err(|e| PkiError::io(path, e))?);
        let block = pem::parse(text.as_bytes()).map_err(|e| PkiError::Invalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        match block.tag() {
            SEALED_TAG => self.vault.open(path, name, &block),
            "PRIVATE KEY" => {
                tracing::warn!(
                    path = %path.display(),
                    "CA key stored in CLEAR (created by an older version); re-create the CA to seal it"
                );
                Ok(Zeroizing::new(block.into_contents()))
            }
            other => Err(PkiError::Invalid {
                path: path.to_path_buf(),
                reason: format!("unexpected PEM block `{other}`"),
            }),
        }
    }
}
