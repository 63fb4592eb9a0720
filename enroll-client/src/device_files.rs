//! Durable device folders for batch provisioning, written in groups. A station provisions
//! thousands of devices a shift; fsyncing every file of every device (five syncs each) made the
//! disk, not the CA, the line's pace. Here one thread takes every finished device queued while
//! the previous group was syncing, writes each into a private staging directory, makes the
//! whole group durable with one `syncfs`, renames each folder into place and syncs the output
//! directory once. The guarantee per device is unchanged: `OUT/<serial>/` appears only complete
//! and durable, and a device is reported done only after its rename is durable.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use iomt_core::files::{PRIVATE, PUBLIC, sync_dir};
use rcgen::KeyPair;
use rustls_pki_types::CertificateDer;
use tokio::sync::oneshot;

use crate::error::ClientError;
use crate::keystore::{self, CERT_FILE, CHAIN_FILE, KEY_FILE};
use crate::trust::TRUST_FILE;

/// The most devices made durable by one `syncfs`.
const MAX_GROUP: usize = 512;

/// The file of the optional PKCS#12 bundle in a device folder.
pub const PKCS12_FILE: &str = "device.p12";
/// PBKDF2 iterations for the bundle's encryption and MAC keys (OpenSSL's default for PKCS#12):
/// the password protects the key on its way to the injection tool, and each device costs
/// about a millisecond of the station's CPU at this count.
const PKCS12_ITERATIONS: u32 = 2048;

/// The files of one device: PEM always, PKCS#12 when a password was given.
pub struct DeviceFiles {
    key_pem: String,
    cert_pem: String,
    chain_pem: String,
    pkcs12: Option<Vec<u8>>,
    /// The device's `trust.pem` (the roots it trusts), shared by a batch.
    trust_pem: Option<std::sync::Arc<str>>,
}

impl DeviceFiles {
    /// The device's key, its certificate, and the chain up to the root; with `pkcs12_password`
    /// also a PKCS#12 bundle of all three (millisecond work: call it off the async workers).
    pub fn new(
        key: &KeyPair,
        leaf: &[u8],
        chain: &[CertificateDer<'static>],
        pkcs12_password: Option<&str>,
    ) -> Result<DeviceFiles, ClientError> {
        Ok(DeviceFiles {
            key_pem: key.serialize_pem(),
            cert_pem: keystore::certificates_pem([leaf]),
            chain_pem: keystore::certificates_pem(chain.iter().map(|c| c.as_ref())),
            pkcs12: pkcs12_password
                .map(|password| pkcs12_bundle(key, leaf, chain, password))
                .transpose()?,
            trust_pem: None,
        })
    }

    /// Also writes `trust_pem` as the device's `trust.pem`.
    pub fn with_trust(mut self, trust_pem: std::sync::Arc<str>) -> DeviceFiles {
        self.trust_pem = Some(trust_pem);
        self
    }
}

/// Reads the bundle password: the file's first line, at least 8 characters.
pub fn read_pkcs12_password(path: &Path) -> Result<String, ClientError> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    let password = text.lines().next().unwrap_or_default().to_owned();
    if password.chars().count() < 8 {
        return Err(ClientError::Local(format!(
            "{}: the PKCS#12 password must be at least 8 characters on the first line",
            path.display()
        )));
    }
    Ok(password)
}

/// Key, leaf and chain (leaf first, root last) as one password-protected PKCS#12, with the
/// device certificate's SHA-256 as the local key id.
fn pkcs12_bundle(
    key: &KeyPair,
    leaf: &[u8],
    chain: &[CertificateDer<'static>],
    password: &str,
) -> Result<Vec<u8>, ClientError> {
    let failed = |e: p12_keystore::error::Error| ClientError::Local(format!("PKCS#12: {e}"));
    let private_key = p12_keystore::PrivateKey::from_der(&key.serialize_der()).map_err(failed)?;
    let certificates = std::iter::once(leaf)
        .chain(chain.iter().map(|c| c.as_ref()))
        .map(p12_keystore::Certificate::from_der)
        .collect::<Result<Vec<_>, _>>()
        .map_err(failed)?;
    let key_id = ring::digest::digest(&ring::digest::SHA256, leaf);
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry(
        "device",
        p12_keystore::KeyStoreEntry::PrivateKeyChain(p12_keystore::PrivateKeyChain::new(
            key_id.as_ref(),
            private_key,
            certificates,
        )),
    );
    store
        .writer(password)
        .encryption_iterations(PKCS12_ITERATIONS)
        .mac_iterations(PKCS12_ITERATIONS)
        .write()
        .map_err(failed)
}

/// A device waiting to be written, and where its outcome goes.
struct Pending {
    serial: String,
    files: DeviceFiles,
    done: oneshot::Sender<Result<(), ClientError>>,
}

/// Handle to the writer thread; the thread ends when every handle is dropped.
#[derive(Clone)]
pub struct GroupWriter {
    queue: mpsc::Sender<Pending>,
}

impl GroupWriter {
    /// Starts the writer for the output directory `out` (which must exist).
    pub fn start(out: PathBuf) -> Result<GroupWriter, ClientError> {
        let (queue, pending) = mpsc::channel();
        std::thread::Builder::new()
            .name("device-files".into())
            .spawn(move || write_groups(&out, &pending))
            .map_err(|e| ClientError::Local(format!("cannot start the file writer: {e}")))?;
        Ok(GroupWriter { queue })
    }

    /// Queues a device's files; returns once `OUT/<serial>/` is in place and durable.
    pub async fn write(&self, serial: &str, files: DeviceFiles) -> Result<(), ClientError> {
        let (done, outcome) = oneshot::channel();
        let stopped = || ClientError::Local("the file writer stopped".into());
        self.queue
            .send(Pending {
                serial: serial.to_owned(),
                files,
                done,
            })
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

fn write_groups(out: &Path, pending: &mpsc::Receiver<Pending>) {
    while let Ok(first) = pending.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP
            && let Ok(next) = pending.try_recv()
        {
            group.push(next);
        }
        write_group(out, group);
    }
}

/// Writes a group and tells each device its outcome.
fn write_group(out: &Path, group: Vec<Pending>) {
    // 1. Every device into its staging directory, unsynced.
    let staged: Vec<(Pending, Result<PathBuf, ClientError>)> = group
        .into_iter()
        .map(|device| {
            let staging = stage(out, &device.serial, &device.files);
            (device, staging)
        })
        .collect();
    // 2. One sync makes every staged file and directory durable.
    if let Err(error) = sync_filesystem(out) {
        for (device, _) in staged {
            let _ = device.done.send(Err(ClientError::Local(error.to_string())));
        }
        return;
    }
    // 3. Each complete folder into place, then the renames made durable together.
    let renamed: Vec<(Pending, Result<(), ClientError>)> = staged
        .into_iter()
        .map(|(device, staging)| {
            let outcome = staging.and_then(|staging| {
                let target = out.join(&device.serial);
                std::fs::rename(&staging, &target).map_err(io_error(&target))
            });
            (device, outcome)
        })
        .collect();
    let synced = sync_dir(out).map_err(io_error(out));
    for (device, outcome) in renamed {
        let outcome = match (&synced, outcome) {
            (Err(error), Ok(())) => Err(ClientError::Local(error.to_string())),
            (_, outcome) => outcome,
        };
        let _ = device.done.send(outcome);
    }
}

/// Writes one device's files into `OUT/.<serial>.partial/` (replacing a leftover of an
/// interrupted run) and returns that directory.
fn stage(out: &Path, serial: &str, files: &DeviceFiles) -> Result<PathBuf, ClientError> {
    let staging = out.join(format!(".{serial}.partial"));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io_error(&staging))?;
    }
    iomt_core::files::create_private_dir(&staging).map_err(ClientError::io(&staging))?;
    let pems = [
        (KEY_FILE, files.key_pem.as_bytes(), PRIVATE),
        (CERT_FILE, files.cert_pem.as_bytes(), PUBLIC),
        (CHAIN_FILE, files.chain_pem.as_bytes(), PUBLIC),
    ];
    let bundle = files
        .pkcs12
        .as_deref()
        .map(|der| (PKCS12_FILE, der, PRIVATE));
    let trust = files
        .trust_pem
        .as_deref()
        .map(|pem| (TRUST_FILE, pem.as_bytes(), PUBLIC));
    for (name, contents, mode) in pems.into_iter().chain(bundle).chain(trust) {
        let path = staging.join(name);
        write_unsynced(&path, contents, mode).map_err(io_error(&path))?;
    }
    Ok(staging)
}

/// Creates a new file with `mode` (never following or replacing an existing one).
fn write_unsynced(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?
        .write_all(contents)
}

/// Flushes every dirty page and inode of the filesystem holding `dir` and waits for the disk.
fn sync_filesystem(dir: &Path) -> Result<(), ClientError> {
    let handle = File::open(dir).map_err(io_error(dir))?;
    rustix::fs::syncfs(&handle).map_err(|errno| ClientError::Io {
        path: dir.to_path_buf(),
        source: errno.into(),
    })
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ClientError + use<> {
    let path = path.to_path_buf();
    move |source| ClientError::Io { path, source }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn files() -> DeviceFiles {
        let key = KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["x".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        DeviceFiles::new(&key, cert.der(), &[cert.der().clone()], None).expect("files")
    }

    #[tokio::test]
    async fn a_group_lands_complete_and_a_failing_device_fails_alone() {
        let out = tempfile::tempdir().expect("tempdir");
        // Leftover of an interrupted run, and a folder that blocks one device's rename.
        std::fs::create_dir(out.path().join(".IP20000002.partial")).expect("leftover");
        std::fs::create_dir_all(out.path().join("IP20000003/keep")).expect("blocker");
        let writer = GroupWriter::start(out.path().to_path_buf()).expect("writer");
        let (a, b, c) = tokio::join!(
            writer.write("IP20000001", files()),
            writer.write("IP20000002", files()),
            writer.write("IP20000003", files()),
        );
        a.expect("first device");
        b.expect("second device, over its leftover");
        assert!(c.is_err(), "the blocked device reports its failure");
        for serial in ["IP20000001", "IP20000002"] {
            let dir = out.path().join(serial);
            let mode = |name| {
                std::fs::metadata(dir.join(name))
                    .expect("file")
                    .permissions()
                    .mode()
                    & 0o777
            };
            assert_eq!(mode(KEY_FILE), 0o600);
            assert_eq!(mode(CERT_FILE), 0o644);
            let chain = std::fs::read_to_string(dir.join(CHAIN_FILE)).expect("chain");
            assert!(chain.starts_with("-----BEGIN CERTIFICATE-----"));
        }
        assert!(!out.path().join(".IP20000002.partial").exists());
    }

    #[test]
    fn pkcs12_password_is_the_first_line_and_not_too_short() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pw");
        std::fs::write(&path, "correct horse\nignored\n").expect("write");
        assert_eq!(
            read_pkcs12_password(&path).expect("password"),
            "correct horse"
        );
        std::fs::write(&path, "short\n").expect("write");
        assert!(read_pkcs12_password(&path).is_err());
    }
}
