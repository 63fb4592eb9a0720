//! Key-custody helpers: scanning a data directory for private keys in clear, snapshots of a
//! directory to prove a refused operation changed nothing, and the offline root ceremony.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run_tool;

/// The start of every EC PKCS#8 PrivateKeyInfo: version 0, AlgorithmIdentifier ecPublicKey.
const EC_PKCS8_PREFIX: &[u8] = &[
    0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
];

/// Every regular file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Panics if any file under `dir` holds a private key in clear: an unencrypted PEM private key
/// block (PKCS#8, SEC1, PKCS#1), or raw EC PKCS#8 DER, directly or inside any PEM block.
pub fn assert_no_clear_private_key(dir: &Path) {
    for path in files_under(dir) {
        let bytes = std::fs::read(&path).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        for line in text.lines() {
            if line.starts_with("-----BEGIN ")
                && line.ends_with("PRIVATE KEY-----")
                && !line.contains("ENCRYPTED")
            {
                panic!("{}: clear private key block `{line}`", path.display());
            }
        }
        assert!(
            !contains(&bytes, EC_PKCS8_PREFIX),
            "{}: raw PKCS#8 private key",
            path.display()
        );
        if let Ok(blocks) = pem::parse_many(&bytes) {
            for block in blocks {
                assert!(
                    !contains(block.contents(), EC_PKCS8_PREFIX),
                    "{}: PKCS#8 private key inside a `{}` block",
                    path.display(),
                    block.tag()
                );
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir` with its contents (to compare before and after).
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    if !dir.exists() {
        return BTreeMap::new();
    }
    files_under(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("read");
            (p, bytes)
        })
        .collect()
}

/// The offline root ceremony as the README gives it: openssl creates the root from the generated
/// profile, signs the CSRs with the generated script (which also records them in `index.txt` and
/// makes the root's pre-signed OCSP responses `<name>.ocsp.der` beside the certificates in
/// `root_dir/signed`) and issues the root CRL `root_dir/root.crl.pem`.
pub fn offline_root(csr_dir: &Path, root_dir: &Path) {
    let openssl = |args: &[&str]| {
        run_tool(Command::new("openssl").current_dir(csr_dir).args(args));
    };
    let root_key = root_dir.join("root.key");
    let root_crt = root_dir.join("root.crt.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-384",
        "-out",
        root_key.to_str().expect("utf-8"),
    ]);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        root_key.to_str().expect("utf-8"),
        "-sha384",
        "-days",
        "5475",
        "-subj",
        "/C=US/O=Example Offline Root/CN=IoMT Root CA G1",
        "-config",
        "openssl.cnf",
        "-extensions",
        "root",
        "-out",
        root_crt.to_str().expect("utf-8"),
    ]);
    run_tool(Command::new("sh").current_dir(csr_dir).args([
        "sign-with-openssl.sh",
        root_crt.to_str().expect("utf-8"),
        root_key.to_str().expect("utf-8"),
        root_dir.join("signed").to_str().expect("utf-8"),
    ]));
    openssl(&[
        "ca",
        "-config",
        "openssl.cnf",
        "-gencrl",
        "-keyfile",
        root_key.to_str().expect("utf-8"),
        "-cert",
        root_crt.to_str().expect("utf-8"),
        "-out",
        root_dir.join("root.crl.pem").to_str().expect("utf-8"),
    ]);
}
