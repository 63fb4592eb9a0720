//! Key-custody helpers: scanning a data directory for private keys in clear, and snapshots of
//! a directory to prove a refused operation changed nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
