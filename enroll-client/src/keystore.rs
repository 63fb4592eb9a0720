//! The credential files in `DIR`, replaced as one set.
//!
//! Layout: every credential set lives in its own directory `DIR/generations/<serial>/`
//! (`key.pem` 0600, `cert.pem`, `chain.pem`). `DIR/current` is a symlink to the active set, and
//! `DIR/key.pem`, `DIR/cert.pem`, `DIR/chain.pem` are symlinks through `current`. A new set is
//! written and fsynced in full before one `rename` switches `current`, so a crash at any point
//! leaves either the complete old set or the complete new set in place.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use iomt_core::files::{PRIVATE, PUBLIC, sync_dir, write_new};

use crate::error::ClientError;

/// Names of the files a device's credential is made of.
pub const KEY_FILE: &str = "key.pem";
pub const CERT_FILE: &str = "cert.pem";
pub const CHAIN_FILE: &str = "chain.pem";
const CURRENT: &str = "current";
const GENERATIONS: &str = "generations";

/// A complete credential: PEM texts.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub key_pem: String,
    pub cert_pem: String,
    pub chain_pem: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential { key: <redacted>, .. }")
    }
}

/// The steps of [`store`], in order; tests interrupt the sequence after each one.
pub const STORE_STEPS: usize = 8;

/// Writes `credential` as the new current set, named `generation` (the certificate serial).
pub fn store(
    dir: &Path,
    generation: &str,
    credential: &Credential,
) -> Result<Vec<PathBuf>, ClientError> {
    store_interruptible(dir, generation, credential, None)
}

/// [`store`], stopping with an error before step `stop_before` (0-based) to simulate a crash.
pub fn store_interruptible(
    dir: &Path,
    generation: &str,
    credential: &Credential,
    stop_before: Option<usize>,
) -> Result<Vec<PathBuf>, ClientError> {
    let mut step = 0usize;
    let mut next = |what: &str| -> Result<(), ClientError> {
        if stop_before == Some(step) {
            return Err(ClientError::Local(format!(
                "interrupted before step {step} ({what})"
            )));
        }
        step += 1;
        Ok(())
    };
    create_private_dir(dir)?;
    let generations = dir.join(GENERATIONS);
    create_private_dir(&generations)?;
    let target = generations.join(generation);
    if is_current(dir, generation) {
        // Already switched (e.g. a crash after the switch): only the links may be missing.
        return finish(dir, &generations, generation);
    }
    // A leftover from an interrupted attempt with the same serial is never current; start over.
    if target.exists() && !is_current(dir, generation) {
        std::fs::remove_dir_all(&target).map_err(ClientError::io(&target))?;
    }
    create_private_dir(&target)?;

    next("write key")?;
    write_file(
        &target.join(KEY_FILE),
        credential.key_pem.as_bytes(),
        PRIVATE,
    )?;
    next("write chain")?;
    write_file(
        &target.join(CHAIN_FILE),
        credential.chain_pem.as_bytes(),
        PUBLIC,
    )?;
    next("write certificate")?;
    write_file(
        &target.join(CERT_FILE),
        credential.cert_pem.as_bytes(),
        PUBLIC,
    )?;
    next("sync generation")?;
    sync_dir(&target).map_err(ClientError::io(&target))?;
    sync_dir(&generations).map_err(ClientError::io(&generations))?;
    next("prepare switch")?;
    let tmp = dir.join(".current.tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(Path::new(GENERATIONS).join(generation), &tmp).map_err(ClientError::io(&tmp))?;
    next("switch")?;
    std::fs::rename(&tmp, dir.join(CURRENT)).map_err(ClientError::io(&dir.join(CURRENT)))?;
    sync_dir(dir).map_err(ClientError::io(dir))?;
    next("links")?;
    let files = link_all(dir)?;
    next("cleanup")?;
    prune(&generations, generation, dir)?;
    Ok(files)
}

fn finish(dir: &Path, generations: &Path, generation: &str) -> Result<Vec<PathBuf>, ClientError> {
    let files = link_all(dir)?;
    prune(generations, generation, dir)?;
    Ok(files)
}

fn link_all(dir: &Path) -> Result<Vec<PathBuf>, ClientError> {
    let mut files = Vec::new();
    for name in [KEY_FILE, CERT_FILE, CHAIN_FILE] {
        let link = dir.join(name);
        ensure_link(&link, &Path::new(CURRENT).join(name))?;
        files.push(link);
    }
    sync_dir(dir).map_err(ClientError::io(dir))?;
    Ok(files)
}

/// Reads the current set.
///
/// A folder written flat (`key.pem`, `cert.pem`, `chain.pem` as plain files: a station's
/// `provision` output copied onto the device) is read as it is, until its first renewal
/// [`store`]s the new set in the layout above; `current` is switched before the flat files are
/// replaced by links, so a crash in between still reads one complete set.
pub fn load(dir: &Path) -> Result<Credential, ClientError> {
    let current = match dir.join(CURRENT) {
        current if current.exists() => current,
        _ => dir.to_path_buf(),
    };
    let read = |name: &str| {
        let path = current.join(name);
        std::fs::read_to_string(&path).map_err(ClientError::io(&path))
    };
    Ok(Credential {
        key_pem: read(KEY_FILE)?,
        cert_pem: read(CERT_FILE)?,
        chain_pem: read(CHAIN_FILE)?,
    })
}

/// True when `dir` holds a credential set.
pub fn exists(dir: &Path) -> bool {
    dir.join(CURRENT).join(CERT_FILE).exists() || dir.join(CERT_FILE).is_file()
}

fn is_current(dir: &Path, generation: &str) -> bool {
    std::fs::read_link(dir.join(CURRENT))
        .is_ok_and(|target| target == Path::new(GENERATIONS).join(generation))
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), ClientError> {
    write_new(path, contents, mode).map_err(ClientError::io(path))
}

/// The directory (and missing parents, on first use) with mode 0700.
fn create_private_dir(dir: &Path) -> Result<(), ClientError> {
    iomt_core::files::create_private_dir(dir).map_err(ClientError::io(dir))
}

/// Makes `link` a symlink to `target` (atomically replacing whatever was there).
fn ensure_link(link: &Path, target: &Path) -> Result<(), ClientError> {
    if std::fs::read_link(link).is_ok_and(|t| t == target) {
        return Ok(());
    }
    let tmp = link.with_extension("pem.tmp");
    let _ = std::fs::remove_file(&tmp);
    symlink(target, &tmp).map_err(ClientError::io(&tmp))?;
    std::fs::rename(&tmp, link).map_err(ClientError::io(link))
}

/// Keeps the current set and the one before it (for a manual roll-back); removes the rest.
fn prune(generations: &Path, keep: &str, dir: &Path) -> Result<(), ClientError> {
    let mut others: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(generations)
        .map_err(ClientError::io(generations))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name() != keep)
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    others.sort();
    others.pop(); // the newest other set is the previous credential
    for (_, path) in others {
        if !is_current(
            dir,
            &path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ) {
            let _ = std::fs::remove_dir_all(path);
        }
    }
    Ok(())
}

/// PEM-encodes DER certificates.
pub fn certificates_pem<'a>(ders: impl IntoIterator<Item = &'a [u8]>) -> String {
    ders.into_iter()
        .map(|der| pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(tag: &str) -> Credential {
        Credential {
            key_pem: format!("key {tag}"),
            cert_pem: format!("cert {tag}"),
            chain_pem: format!("chain {tag}"),
        }
    }

    fn read_links(dir: &Path) -> Credential {
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect("read through link");
        Credential {
            key_pem: read(KEY_FILE),
            cert_pem: read(CERT_FILE),
            chain_pem: read(CHAIN_FILE),
        }
    }

    #[test]
    fn store_switches_the_whole_set() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), "aa", &set("old")).unwrap();
        assert_eq!(read_links(dir.path()), set("old"));
        store(dir.path(), "bb", &set("new")).unwrap();
        assert_eq!(read_links(dir.path()), set("new"));
        assert_eq!(load(dir.path()).unwrap(), set("new"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn interrupted_store_leaves_the_old_or_the_new_set_never_a_mix() {
        for stop in 0..=STORE_STEPS {
            let dir = tempfile::tempdir().unwrap();
            store(dir.path(), "aa", &set("old")).unwrap();
            let result = store_interruptible(dir.path(), "bb", &set("new"), Some(stop));
            let seen = load(dir.path()).unwrap();
            assert!(
                seen == set("old") || seen == set("new"),
                "step {stop}: mixed set {seen:?}"
            );
            if stop < 6 {
                assert_eq!(seen, set("old"), "step {stop}: not switched yet");
            } else {
                assert_eq!(seen, set("new"), "step {stop}: switched");
            }
            if stop == STORE_STEPS {
                assert!(result.is_ok());
            }
            // The next attempt completes from whatever state the crash left.
            store(dir.path(), "bb", &set("new")).unwrap();
            assert_eq!(read_links(dir.path()), set("new"), "step {stop}: recovery");
        }
    }

    fn write_flat(dir: &Path, credential: &Credential) {
        std::fs::write(dir.join(KEY_FILE), &credential.key_pem).unwrap();
        std::fs::write(dir.join(CERT_FILE), &credential.cert_pem).unwrap();
        std::fs::write(dir.join(CHAIN_FILE), &credential.chain_pem).unwrap();
    }

    #[test]
    fn a_flat_folder_is_read_and_its_first_renewal_moves_it_to_the_layout_whole() {
        for stop in 0..=STORE_STEPS {
            let dir = tempfile::tempdir().unwrap();
            write_flat(dir.path(), &set("provisioned"));
            assert!(exists(dir.path()));
            assert_eq!(load(dir.path()).unwrap(), set("provisioned"));
            let _ = store_interruptible(dir.path(), "bb", &set("renewed"), Some(stop));
            let seen = load(dir.path()).unwrap();
            assert!(
                seen == set("provisioned") || seen == set("renewed"),
                "step {stop}: mixed set {seen:?}"
            );
            store(dir.path(), "bb", &set("renewed")).unwrap();
            assert_eq!(read_links(dir.path()), set("renewed"), "step {stop}");
            assert!(
                std::fs::symlink_metadata(dir.path().join(KEY_FILE))
                    .unwrap()
                    .file_type()
                    .is_symlink(),
                "step {stop}: the flat file became a link"
            );
        }
    }

    #[test]
    fn old_generations_are_pruned_to_one_previous() {
        let dir = tempfile::tempdir().unwrap();
        for (i, name) in ["a1", "a2", "a3", "a4"].iter().enumerate() {
            store(dir.path(), name, &set(&i.to_string())).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let left = std::fs::read_dir(dir.path().join(GENERATIONS))
            .unwrap()
            .count();
        assert_eq!(left, 2);
    }
}
