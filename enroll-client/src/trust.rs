//! The device's trusted roots, `DIR/trust.pem`, and root key update (RFC 4210 §4.4): when the
//! CA's `cacerts` presents a root the device does not trust yet, it is accepted only through a
//! NewWithOld link certificate — exactly the new root's subject and key, signed by a root the
//! device already trusts. Then `trust.pem` is replaced atomically with every trusted root and
//! the chain the CA issues under the new root is accepted. A new root without such a link is
//! refused ([`ClientError::UntrustedRoot`], exit 12) and `trust.pem` stays as it was.
//!
//! Without `trust.pem` the device trusts the root given with `--ca-cert` alone. Every
//! connection to the CA trusts the same roots ([`Trust::roots`]: `--ca-cert` and `trust.pem`),
//! so a device that took up a new root still reaches a CA whose HTTPS chain ends at it alone.

use std::path::{Path, PathBuf};

use iomt_core::files::{PUBLIC, write_atomic};
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::ClientError;

/// `DIR/trust.pem`: every root the device trusts (PEM, oldest first).
pub const TRUST_FILE: &str = "trust.pem";

/// The roots a device trusts.
#[derive(Debug, Clone)]
pub struct Trust {
    roots: Vec<CertificateDer<'static>>,
    file: PathBuf,
}

impl Trust {
    /// The roots in `dir/trust.pem`, with `given` (the `--ca-cert` root) first when it is not
    /// among them.
    pub fn load(given: &CertificateDer<'static>, dir: &Path) -> Result<Trust, ClientError> {
        let file = dir.join(TRUST_FILE);
        let mut roots = vec![given.clone()];
        match std::fs::read(&file) {
            Ok(text) => {
                let blocks = pem::parse_many(text).map_err(|e| {
                    ClientError::Local(format!("{}: not PEM certificates: {e}", file.display()))
                })?;
                for block in blocks.into_iter().filter(|b| b.tag() == "CERTIFICATE") {
                    let der = CertificateDer::from(block.into_contents());
                    if !roots.contains(&der) {
                        roots.push(der);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ClientError::io(&file)(e)),
        }
        Ok(Trust { roots, file })
    }

    /// The trusted roots.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// Takes up every root `cacerts` presents that is not trusted yet, each only through a
    /// NewWithOld link in `cacerts` signed by an already trusted root; writes `trust.pem` when
    /// one was added (or when it did not exist yet). Returns the roots added.
    pub fn update(&mut self, cacerts: &[Vec<u8>]) -> Result<Vec<String>, ClientError> {
        let mut added = Vec::new();
        // A link may authenticate a root that authenticates the next one: repeat until stable.
        loop {
            let mut progressed = false;
            let mut refused = None;
            for der in cacerts {
                let Ok((_, cert)) = X509Certificate::from_der(der) else {
                    continue;
                };
                if !is_root(&cert) || self.roots.iter().any(|r| r.as_ref() == der.as_slice()) {
                    continue;
                }
                match self.authenticate(&cert, cacerts) {
                    Ok(()) => {
                        added.push(cert.subject().to_string());
                        self.roots.push(CertificateDer::from(der.clone()));
                        progressed = true;
                    }
                    Err(reason) => refused = Some((cert.subject().to_string(), reason)),
                }
            }
            if progressed {
                continue;
            }
            if let Some((subject, reason)) = refused {
                return Err(ClientError::UntrustedRoot { subject, reason });
            }
            break;
        }
        if !added.is_empty() || !self.file.exists() {
            self.write()?;
        }
        for subject in &added {
            tracing::info!(root = %subject, file = %self.file.display(), "new root accepted through its NewWithOld link certificate");
        }
        Ok(added)
    }

    /// Why `root` is not authenticated by a NewWithOld link in `cacerts`, if it is not.
    fn authenticate(&self, root: &X509Certificate<'_>, cacerts: &[Vec<u8>]) -> Result<(), String> {
        root.verify_signature(None)
            .map_err(|e| format!("its self-signature does not verify ({e})"))?;
        let mut links = 0;
        for der in cacerts {
            let Ok((_, link)) = X509Certificate::from_der(der) else {
                continue;
            };
            if is_root(&link)
                || link.subject().as_raw() != root.subject().as_raw()
                || link.public_key().raw != root.public_key().raw
                || !link.is_ca()
            {
                continue;
            }
            links += 1;
            let signed_by_trusted = self.roots.iter().any(|trusted| {
                X509Certificate::from_der(trusted).is_ok_and(|(_, trusted)| {
                    trusted.subject().as_raw() == link.issuer().as_raw()
                        && link.verify_signature(Some(trusted.public_key())).is_ok()
                })
            });
            if signed_by_trusted {
                return Ok(());
            }
        }
        Err(match links {
            0 => "the CA offers it without a NewWithOld link certificate".to_owned(),
            _ => "no NewWithOld link certificate for it is signed by a trusted root".to_owned(),
        })
    }

    /// The trusted root that `leaf` chains to through its issuer in `cacerts` (by name and
    /// signature), or the first trusted root when none does (the chain check then says why).
    pub fn root_for(&self, leaf: &[u8], cacerts: &[Vec<u8>]) -> &CertificateDer<'static> {
        let issuer = X509Certificate::from_der(leaf).ok().and_then(|(_, leaf)| {
            cacerts.iter().find_map(|der| {
                let (_, ca) = X509Certificate::from_der(der).ok()?;
                (ca.subject().as_raw() == leaf.issuer().as_raw()).then_some(der)
            })
        });
        let found = issuer.and_then(|issuer| {
            let (_, issuer) = X509Certificate::from_der(issuer).ok()?;
            self.roots.iter().find(|root| {
                X509Certificate::from_der(root).is_ok_and(|(_, root)| {
                    root.subject().as_raw() == issuer.issuer().as_raw()
                        && issuer.verify_signature(Some(root.public_key())).is_ok()
                })
            })
        });
        found.unwrap_or(&self.roots[0])
    }

    fn write(&self) -> Result<(), ClientError> {
        if let Some(dir) = self.file.parent().filter(|d| !d.exists()) {
            iomt_core::files::create_private_dir(dir).map_err(ClientError::io(dir))?;
        }
        let text = crate::keystore::certificates_pem(self.roots.iter().map(|r| r.as_ref()));
        write_atomic(&self.file, text.as_bytes(), PUBLIC).map_err(ClientError::io(&self.file))
    }
}

/// A self-issued CA certificate (subject = issuer): a root, not a link.
fn is_root(cert: &X509Certificate<'_>) -> bool {
    cert.is_ca() && cert.subject().as_raw() == cert.issuer().as_raw()
}

#[cfg(test)]
mod tests {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    };

    use super::*;

    fn root_params(cn: &str) -> CertificateParams {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        params
    }

    /// G1, G2, NewWithOld (G2's name and key signed by G1), and a forgery of it (signed by a
    /// key that is not G1's, under G1's name).
    struct Roots {
        g1: Vec<u8>,
        g2: Vec<u8>,
        link: Vec<u8>,
        forged: Vec<u8>,
    }

    fn roots() -> Roots {
        let (k1, k2, other) = (
            KeyPair::generate().unwrap(),
            KeyPair::generate().unwrap(),
            KeyPair::generate().unwrap(),
        );
        let (p1, p2) = (root_params("Root G1"), root_params("Root G2"));
        let g1 = p1.self_signed(&k1).unwrap().der().to_vec();
        let g2 = p2.self_signed(&k2).unwrap().der().to_vec();
        let link = p2
            .signed_by(&k2, &Issuer::new(p1.clone(), &k1))
            .unwrap()
            .der()
            .to_vec();
        let forged = p2
            .signed_by(&k2, &Issuer::new(p1, &other))
            .unwrap()
            .der()
            .to_vec();
        Roots {
            g1,
            g2,
            link,
            forged,
        }
    }

    #[test]
    fn a_new_root_is_taken_up_only_through_a_link_signed_by_a_trusted_root() {
        let roots = roots();
        let g1 = CertificateDer::from(roots.g1.clone());
        let cases = [
            ("no link", vec![roots.g2.clone(), roots.g1.clone()], false),
            (
                "forged link",
                vec![roots.g2.clone(), roots.g1.clone(), roots.forged.clone()],
                false,
            ),
            (
                "valid link",
                vec![roots.g2.clone(), roots.g1.clone(), roots.link.clone()],
                true,
            ),
        ];
        for (case, cacerts, accepted) in cases {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(TRUST_FILE), "").unwrap();
            let mut trust = Trust::load(&g1, dir.path()).unwrap();
            let result = trust.update(&cacerts);
            let written = std::fs::read_to_string(dir.path().join(TRUST_FILE)).unwrap();
            if accepted {
                assert_eq!(result.unwrap().len(), 1, "{case}");
                let again = Trust::load(&g1, dir.path()).unwrap();
                assert_eq!(again.roots().len(), 2, "{case}: both roots in trust.pem");
                assert_eq!(again.roots()[1].as_ref(), roots.g2.as_slice());
            } else {
                let error = result.unwrap_err();
                assert_eq!(error.exit_code(), 12, "{case}");
                assert!(error.to_string().contains("Root G2"), "{case}: {error}");
                assert!(written.is_empty(), "{case}: trust.pem unchanged");
            }
        }
    }

    #[test]
    fn a_chain_is_verified_against_the_root_that_signed_its_issuer() {
        let (k1, k2, ki) = (
            KeyPair::generate().unwrap(),
            KeyPair::generate().unwrap(),
            KeyPair::generate().unwrap(),
        );
        let (p1, p2) = (root_params("Root G1"), root_params("Root G2"));
        let g1 = CertificateDer::from(p1.self_signed(&k1).unwrap().der().to_vec());
        let g2 = p2.self_signed(&k2).unwrap().der().to_vec();
        let issuing = root_params("Issuing G2");
        let issuing_der = issuing
            .signed_by(&ki, &Issuer::new(p2, &k2))
            .unwrap()
            .der()
            .to_vec();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::default()
            .signed_by(&leaf_key, &Issuer::new(issuing, &ki))
            .unwrap()
            .der()
            .to_vec();
        let dir = tempfile::tempdir().unwrap();
        let mut trust = Trust::load(&g1, dir.path()).unwrap();
        trust.roots.push(CertificateDer::from(g2.clone()));
        let cacerts = [g2.clone(), issuing_der];
        assert_eq!(trust.root_for(&leaf, &cacerts).as_ref(), g2.as_slice());
        // An issuer no trusted root signed: the first root (the check then refuses it).
        assert_eq!(trust.root_for(&leaf, &[]), &g1);
    }
}
