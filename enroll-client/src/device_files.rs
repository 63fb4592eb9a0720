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

/// The most devices made durable by one `syncfs`.
const MAX_GROUP: usize = 512;

/// The PEM files of one device.
pub struct DeviceFiles {
    key_pem: String,
    cert_pem: String,
    chain_pem: String,
}

impl DeviceFiles {
    /// The device's key, its certificate, and the chain up to the root.
    pub fn new(key: &KeyPair, leaf: &[u8], chain: &[CertificateDer<'static>]) -> DeviceFiles {
        DeviceFiles {
            key_pem: key.serialize_pem(),
            cert_pem: keystore::certificates_pem([leaf]),
            chain_pem: keystore::certificates_pem(chain.iter().map(|c| c.as_ref())),
        }
    }
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
    crate::provision::create_dir(&staging)?;
    for (name, contents, mode) in [
        (KEY_FILE, &files.key_pem, PRIVATE),
        (CERT_FILE, &files.cert_pem, PUBLIC),
        (CHAIN_FILE, &files.chain_pem, PUBLIC),
    ] {
        let path = staging.join(name);
        write_unsynced(&path, contents.as_bytes(), mode).map_err(io_error(&path))?;
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
        DeviceFiles::new(&key, cert.der(), &[cert.der().clone()])
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
}
