//! `init --external-root`: CSRs for the issuing, station and TLS keys, and an OpenSSL
//! configuration (extension sections per docs/PROFILE.md §3, a root profile and a CRL section)
//! so an offline root — `openssl`, or any CA — can sign them for `ca-server ca import`; the
//! signing script also records what the root issued in `index.txt` and, with
//! [`ROOT_OCSP_SCRIPT`], makes the root's pre-signed OCSP responses over those certificates.

use std::fmt::Write as _;
use std::path::Path;

use iomt_core::extensions::key_identifier;
use iomt_core::files::{PUBLIC, write_new};
use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, IsCa, PublicKeyData, SanType};

use super::error::PkiError;
use super::signer::CaKey;
use super::{PublicUrls, ROOT_CA};

/// Directory (under the data directory) holding the CSRs and the signing recipe.
pub const CSR_DIR: &str = "csr";
/// The OpenSSL configuration written beside the CSRs.
pub const OPENSSL_CONFIG: &str = "openssl.cnf";
/// The signing script written beside the CSRs.
pub const SIGN_SCRIPT: &str = "sign-with-openssl.sh";
/// The script (beside the CSRs) that makes, or renews, the root's pre-signed OCSP responses.
pub const ROOT_OCSP_SCRIPT: &str = "root-ocsp-with-openssl.sh";
/// How long the pre-signed OCSP responses are valid: the offline root's CRL period
/// (`default_crl_days` in the generated configuration), so one ceremony renews both.
pub const ROOT_OCSP_DAYS: u32 = 365;

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
                    "authorityInfoAccess = OCSP;URI:{},caIssuers;URI:{}",
                    urls.ocsp(ROOT_CA),
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
        self.write_into(&dir.join(CSR_DIR))
    }

    /// Writes `<name>.csr.pem`, `openssl.cnf` and the ceremony scripts into `csr_dir` (`init
    /// --external-root`: `DIR/csr/`; `ca rollover`: `DIR/rollover/<name>/`).
    pub fn write_into(&self, csr_dir: &Path) -> Result<(), PkiError> {
        let csr_dir = csr_dir.to_path_buf();
        std::fs::create_dir_all(&csr_dir).map_err(|e| PkiError::io(&csr_dir, e))?;
        let mut config = format!(
            "# Written by `ca-server init --external-root`: extension profiles (docs/PROFILE.md §3) for the\n\
             # offline root. Sections: root (the root itself), one per CSR, ca/root_ca (the root CRL).\n\n\
             [req]\ndistinguished_name = req_dn\n[req_dn]\n\n\
             [root]\nbasicConstraints = critical,CA:TRUE,pathlen:1\n\
             keyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n\n\
             [ca]\ndefault_ca = root_ca\n[root_ca]\ndatabase = ./index.txt\ncrlnumber = ./crlnumber\n\
             default_md = sha384\ndefault_crl_days = {ROOT_OCSP_DAYS}\ncrl_extensions = root_crl\n\
             [root_crl]\nauthorityKeyIdentifier = keyid:always\n\n",
        );
        let mut script = format!(
            "#!/bin/sh\n# Run on the offline root, in this directory:\n\
             #   sh {SIGN_SCRIPT} ROOT_CERT ROOT_KEY OUT_DIR\n\
             # Signs every CSR here with the profile of its CA and writes OUT_DIR/<name>.crt.pem,\n\
             # records each certificate in index.txt (the root's database: `openssl ca -revoke` and\n\
             # `-gencrl` use it), then makes the root's OCSP responses with {ROOT_OCSP_SCRIPT}.\n\
             # Needs OpenSSL 3.0 or later.\n\
             set -eu\nmkdir -p \"$3\"\ntouch index.txt\n[ -f crlnumber ] || echo 1000 > crlnumber\n\
             {INDEX_ENTRY}"
        );
        let mut names = Vec::new();
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
                 -out \"$3/{name}.crt.pem\"\nindex_entry \"$3/{name}.crt.pem\"",
                name = request.name,
                days = request.days,
            );
            names.push(request.name.as_str());
        }
        let _ = writeln!(script, "sh {ROOT_OCSP_SCRIPT} \"$1\" \"$2\" \"$3\"");
        let ocsp_script = root_ocsp_script(&names);
        for (name, text) in [
            (OPENSSL_CONFIG, config),
            (SIGN_SCRIPT, script),
            (ROOT_OCSP_SCRIPT, ocsp_script),
        ] {
            let path = csr_dir.join(name);
            write_new(&path, text.as_bytes(), PUBLIC).map_err(|e| PkiError::io(&path, e))?;
        }
        Ok(())
    }
}

/// A shell function appending a certificate to the `openssl ca` database (`index.txt`) as valid:
/// `V`, notAfter as UTCTime (the CA certificates end before 2050), no revocation date, serial,
/// file `unknown`, subject.
const INDEX_ENTRY: &str = "index_entry() {\n\
    \x20 end=$(openssl x509 -in \"$1\" -noout -enddate -dateopt iso_8601 \\\n\
    \x20   | sed 's/^notAfter=..\\(..\\)-\\(..\\)-\\(..\\) \\(..\\):\\(..\\):\\(..\\)Z$/\\1\\2\\3\\4\\5\\6Z/')\n\
    \x20 serial=$(openssl x509 -in \"$1\" -noout -serial | cut -d= -f2)\n\
    \x20 subject=$(openssl x509 -in \"$1\" -noout -subject -nameopt compat | sed 's/^subject=//')\n\
    \x20 printf 'V\\t%s\\t\\t%s\\tunknown\\t%s\\n' \"$end\" \"$serial\" \"$subject\" >> index.txt\n\
    }\n";

/// The ceremony script that makes (and, run again, renews) the root's pre-signed OCSP responses.
fn root_ocsp_script(names: &[&str]) -> String {
    format!(
        "#!/bin/sh\n# Run on the offline root, in this directory:\n\
         #   sh {ROOT_OCSP_SCRIPT} ROOT_CERT ROOT_KEY CERTS_DIR [DAYS]\n\
         # For each certificate CERTS_DIR/<name>.crt.pem the root issued, writes CERTS_DIR/<name>.ocsp.der:\n\
         # the root's OCSP response, signed with the root key, status from index.txt (good, or revoked\n\
         # after `openssl ca -config {OPENSSL_CONFIG} -revoke CERT ...`), valid DAYS days (default\n\
         # {ROOT_OCSP_DAYS}: the root CRL's period). Renew both before they expire, then install them\n\
         # online with `ca-server ca install-root-ocsp --from CERTS_DIR`.\n\
         set -eu\ndays=${{4:-{ROOT_OCSP_DAYS}}}\n\
         for name in {names}; do\n\
         \x20 cert=\"$3/$name.crt.pem\"\n\
         \x20 [ -f \"$cert\" ] || continue\n\
         \x20 openssl ocsp -issuer \"$1\" -cert \"$cert\" -no_nonce -reqout \"$3/$name.ocsp-request.der\"\n\
         \x20 openssl ocsp -index index.txt -CA \"$1\" -rsigner \"$1\" -rkey \"$2\" -rmd sha384 -resp_key_id \\\n\
         \x20   -reqin \"$3/$name.ocsp-request.der\" -respout \"$3/$name.ocsp.der\" -ndays \"$days\"\n\
         \x20 rm -f \"$3/$name.ocsp-request.der\"\n\
         done\n",
        names = names.join(" "),
    )
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}
