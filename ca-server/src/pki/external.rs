//! `init --external-root`: CSRs for the issuing, station and TLS keys, and an OpenSSL
//! configuration (extension sections per PROFILES.md §3, a root profile and a CRL section)
//! so an offline root — `openssl`, or any CA — can sign them for `ca-server ca import`.

use std::fmt::Write as _;
use std::path::Path;

use iomt_core::extensions::key_identifier;
use iomt_core::files::{PUBLIC, write_new};
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, IsCa, PublicKeyData, SanType};

use super::material::PkiError;
use super::signer::CaKey;
use super::{PublicUrls, ROOT_CA};

/// Directory (under the data directory) holding the CSRs and the signing recipe.
pub const CSR_DIR: &str = "csr";
/// The OpenSSL configuration written beside the CSRs.
pub const OPENSSL_CONFIG: &str = "openssl.cnf";
/// The signing script written beside the CSRs.
pub const SIGN_SCRIPT: &str = "sign-with-openssl.sh";

/// One CSR and how the offline root should sign it.
struct Request {
    name: String,
    csr_pem: String,
    days: i64,
    section: String,
}

/// The CSRs collected while `init` walks the hierarchy.
#[derive(Default)]
pub struct CsrSet {
    requests: Vec<Request>,
}

impl CsrSet {
    /// Adds the CSR of `name` (subject and key from `params`/`key`) and its extension section.
    pub fn add(
        &mut self,
        name: &str,
        params: &CertificateParams,
        key: &CaKey,
        days: i64,
        policy_oids: &[String],
        urls: &PublicUrls,
    ) -> Result<(), PkiError> {
        let mut request = CertificateParams::default();
        request.distinguished_name = params.distinguished_name.clone();
        let csr_pem = request.serialize_request(key)?.pem()?;
        let ski = colon_hex(&key_identifier(key.der_bytes()));
        let ekus = params
            .extended_key_usages
            .iter()
            .filter_map(|eku| match eku {
                ExtendedKeyUsagePurpose::ClientAuth => Some("clientAuth".to_owned()),
                ExtendedKeyUsagePurpose::ServerAuth => Some("serverAuth".to_owned()),
                ExtendedKeyUsagePurpose::Other(arcs) => Some(
                    arcs.iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join("."),
                ),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join(",");
        let mut section = format!("[{name}]\n");
        match &params.is_ca {
            IsCa::Ca(_) => {
                section.push_str("basicConstraints = critical,CA:TRUE,pathlen:0\n");
                section.push_str("keyUsage = critical,keyCertSign,cRLSign\n");
                let _ = writeln!(section, "extendedKeyUsage = {ekus}");
                let _ = writeln!(section, "certificatePolicies = {}", policy_oids.join(","));
                let _ = writeln!(section, "crlDistributionPoints = URI:{}", urls.crl(ROOT_CA));
                let _ = writeln!(
                    section,
                    "authorityInfoAccess = caIssuers;URI:{}",
                    urls.ca_cert(ROOT_CA)
                );
            }
            _ => {
                section.push_str("basicConstraints = critical,CA:FALSE\n");
                section.push_str("keyUsage = critical,digitalSignature\n");
                let _ = writeln!(section, "extendedKeyUsage = {ekus}");
                let names = params
                    .subject_alt_names
                    .iter()
                    .filter_map(|san| match san {
                        SanType::DnsName(name) => Some(format!("DNS:{}", name.as_str())),
                        SanType::IpAddress(ip) => Some(format!("IP:{ip}")),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                if !names.is_empty() {
                    let _ = writeln!(section, "subjectAltName = {names}");
                }
            }
        }
        let _ = writeln!(section, "subjectKeyIdentifier = {ski}");
        section.push_str("authorityKeyIdentifier = keyid:always\n");
        self.requests.push(Request {
            name: name.to_owned(),
            csr_pem,
            days,
            section,
        });
        Ok(())
    }

    /// Writes `dir/csr/<name>.csr.pem`, `openssl.cnf` and `sign-with-openssl.sh`.
    pub fn write(&self, dir: &Path) -> Result<(), PkiError> {
        let csr_dir = dir.join(CSR_DIR);
        std::fs::create_dir_all(&csr_dir).map_err(|e| PkiError::io(&csr_dir, e))?;
        let mut config = String::from(
            "# Written by `ca-server init --external-root`: extension profiles (PROFILES.md §3) for the\n\
             # offline root. Sections: root (the root itself), one per CSR, ca/root_ca (the root CRL).\n\n\
             [req]\ndistinguished_name = req_dn\n[req_dn]\n\n\
             [root]\nbasicConstraints = critical,CA:TRUE,pathlen:1\n\
             keyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n\n\
             [ca]\ndefault_ca = root_ca\n[root_ca]\ndatabase = ./index.txt\ncrlnumber = ./crlnumber\n\
             default_md = sha384\ndefault_crl_days = 365\ncrl_extensions = root_crl\n\
             [root_crl]\nauthorityKeyIdentifier = keyid:always\n\n",
        );
        let mut script = format!(
            "#!/bin/sh\n# Run on the offline root, in this directory:\n\
             #   sh {SIGN_SCRIPT} ROOT_CERT ROOT_KEY OUT_DIR\n\
             # Signs every CSR here with the profile of its CA and writes OUT_DIR/<name>.crt.pem.\n\
             set -eu\nmkdir -p \"$3\"\n"
        );
        for request in &self.requests {
            let path = csr_dir.join(format!("{}.csr.pem", request.name));
            write_new(&path, request.csr_pem.as_bytes(), PUBLIC)
                .map_err(|e| PkiError::io(&path, e))?;
            config.push_str(&request.section);
            config.push('\n');
            let _ = writeln!(
                script,
                "openssl x509 -req -in {name}.csr.pem -CA \"$1\" -CAkey \"$2\" -sha384 -days {days} \
                 -set_serial 0x$(openssl rand -hex 16) -extfile {OPENSSL_CONFIG} -extensions {name} \
                 -out \"$3/{name}.crt.pem\"",
                name = request.name,
                days = request.days,
            );
        }
        for (name, text) in [(OPENSSL_CONFIG, config), (SIGN_SCRIPT, script)] {
            let path = csr_dir.join(name);
            write_new(&path, text.as_bytes(), PUBLIC).map_err(|e| PkiError::io(&path, e))?;
        }
        Ok(())
    }
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}
