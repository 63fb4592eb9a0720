//! Requests made durable before they are sent, so a client killed at any moment sends the *same*
//! request again on its next run instead of a new key the CA would refuse as a second identity.
//!
//! A staged request is one file (mode 0600): the purpose (`enroll <serial>`, `renew <serial of
//! the certificate it renews>`, `station <serial>`), the new private key and its CSR, as PEM
//! blocks. A device keeps one in `DIR/staging/request.pem`; a station one per device in
//! `OUT/.staging/<serial>.pem`. The file is written and fsynced before the request leaves, and
//! removed only once the issued credential is installed. The CA answers a repeated request from
//! the same party with the same key with the certificate it already issued. A key made in the
//! device's TPM is staged as its TSS2 blobs (`DIR/staging/tpm-key.pem`) and attested afresh on
//! each attempt.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use iomt_core::files::{PRIVATE, create_private_dir, sync_dir, write_atomic};
use rcgen::KeyPair;
use tokio::sync::oneshot;

use crate::error::ClientError;

/// The staging directory inside a device's credential directory.
pub const STAGING_DIR: &str = "staging";
/// The staged request of a device.
pub const REQUEST_FILE: &str = "request.pem";
/// The staged TPM key of a device enrolling with `--tpm`.
pub const TPM_KEY_FILE: &str = "tpm-key.pem";
/// The staging directory inside a station's output directory (one file per device).
pub const BATCH_STAGING_DIR: &str = ".staging";
/// The most requests made durable by one `syncfs` in a batch.
const MAX_GROUP: usize = 512;

const PURPOSE_TAG: &str = "IOMT STAGED REQUEST";
const KEY_TAG: &str = "PRIVATE KEY";
const CSR_TAG: &str = "CERTIFICATE REQUEST";
const TPM_KEY_TAG: &str = "TSS2 PRIVATE KEY";

/// What a staged request is for; a request is only ever resent for the same purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// First enrollment of this device serial with a one-time token.
    Enroll(String),
    /// Re-enrollment from the certificate with this (hex) serial.
    Renew(String),
    /// Enrollment of this device serial by a manufacturing station.
    Station(String),
}

impl Purpose {
    fn text(&self) -> String {
        match self {
            Purpose::Enroll(s) => format!("enroll {s}"),
            Purpose::Renew(s) => format!("renew {s}"),
            Purpose::Station(s) => format!("station {s}"),
        }
    }

    fn parse(text: &str) -> Option<Purpose> {
        let (kind, value) = text.split_once(' ')?;
        let value = value.to_owned();
        match kind {
            "enroll" => Some(Purpose::Enroll(value)),
            "renew" => Some(Purpose::Renew(value)),
            "station" => Some(Purpose::Station(value)),
            _ => None,
        }
    }
}

/// A request staged before sending: its purpose, key and CSR.
pub struct Staged {
    pub purpose: Purpose,
    pub key: KeyPair,
    pub csr_der: Vec<u8>,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged")
            .field("purpose", &self.purpose)
            .field("key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Staged {
    /// The file contents: purpose, key and CSR as PEM blocks.
    pub fn encode(&self) -> String {
        let blocks = [
            pem::Pem::new(PURPOSE_TAG, self.purpose.text().into_bytes()),
            pem::Pem::new(KEY_TAG, self.key.serialize_der()),
            pem::Pem::new(CSR_TAG, self.csr_der.clone()),
        ];
        pem::encode_many(&blocks)
    }

    /// Parses [`Staged::encode`]'s output; `None` for anything else (a torn or foreign file).
    pub fn decode(text: &[u8]) -> Option<Staged> {
        let blocks = pem::parse_many(text).ok()?;
        let find = |tag: &str| blocks.iter().find(|b| b.tag() == tag).map(|b| b.contents());
        let purpose = Purpose::parse(std::str::from_utf8(find(PURPOSE_TAG)?).ok()?)?;
        let key_pem = pem::encode(&pem::Pem::new(KEY_TAG, find(KEY_TAG)?.to_vec()));
        let key = KeyPair::from_pem(&key_pem).ok()?;
        Some(Staged {
            purpose,
            key,
            csr_der: find(CSR_TAG)?.to_vec(),
        })
    }
}

/// A key made in the device's TPM (`--tpm`) and staged before its first request: its purpose
/// and its TSS2 PRIVATE KEY blobs (no key in the clear). Unlike a software request, no CSR is
/// kept: each attempt certifies the same key over a fresh challenge and binds the CSR to its
/// own connection, and the CA answers a repeat for that key with the certificate it issued.
pub struct StagedTpmKey {
    pub purpose: Purpose,
    /// The `-----BEGIN TSS2 PRIVATE KEY-----` file.
    pub tss2_pem: String,
}

impl StagedTpmKey {
    fn encode(&self) -> String {
        pem::encode(&pem::Pem::new(
            PURPOSE_TAG,
            self.purpose.text().into_bytes(),
        )) + &self.tss2_pem
    }

    fn decode(text: &[u8]) -> Option<StagedTpmKey> {
        let blocks = pem::parse_many(text).ok()?;
        let purpose = blocks.iter().find(|b| b.tag() == PURPOSE_TAG)?;
        let key = blocks.iter().find(|b| b.tag() == TPM_KEY_TAG)?;
        Some(StagedTpmKey {
            purpose: Purpose::parse(std::str::from_utf8(purpose.contents()).ok()?)?,
            tss2_pem: pem::encode(key),
        })
    }
}

/// The staged request file of the credential directory `dir`.
pub fn request_path(dir: &Path) -> PathBuf {
    dir.join(STAGING_DIR).join(REQUEST_FILE)
}

/// The staged TPM key file of the credential directory `dir`.
pub fn tpm_key_path(dir: &Path) -> PathBuf {
    dir.join(STAGING_DIR).join(TPM_KEY_FILE)
}

/// Makes `staged` durable in `dir` (created 0700 if missing) before it is sent.
pub fn stage(dir: &Path, staged: &Staged) -> Result<(), ClientError> {
    write_staged(dir, REQUEST_FILE, &staged.encode())?;
    tracing::debug!(purpose = ?staged.purpose, "request staged");
    Ok(())
}

/// Makes the TPM key `staged` durable in `dir` before its first request leaves.
pub fn stage_tpm_key(dir: &Path, staged: &StagedTpmKey) -> Result<(), ClientError> {
    write_staged(dir, TPM_KEY_FILE, &staged.encode())?;
    tracing::debug!(purpose = ?staged.purpose, "TPM key staged");
    Ok(())
}

fn write_staged(dir: &Path, file: &str, text: &str) -> Result<(), ClientError> {
    let staging = dir.join(STAGING_DIR);
    let fresh_dir = !dir.exists();
    create_private_dir(&staging).map_err(ClientError::io(&staging))?;
    if fresh_dir && let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent).map_err(ClientError::io(parent))?;
    }
    sync_dir(dir).map_err(ClientError::io(dir))?;
    let path = staging.join(file);
    write_atomic(&path, text.as_bytes(), PRIVATE).map_err(ClientError::io(&path))
}

/// The staged request in `dir`, if any. An unreadable one is removed (it was never complete,
/// since it is written atomically, so it was never sent).
pub fn load(dir: &Path) -> Result<Option<Staged>, ClientError> {
    load_file(&request_path(dir), Staged::decode)
}

/// The staged TPM key in `dir`, if any (an unreadable one is removed, as by [`load`]).
pub fn load_tpm_key(dir: &Path) -> Result<Option<StagedTpmKey>, ClientError> {
    load_file(&tpm_key_path(dir), StagedTpmKey::decode)
}

/// Removes the staged request and TPM key of `dir` (after its credential is installed, or when
/// they are stale).
pub fn clear(dir: &Path) {
    remove(&request_path(dir));
    remove(&tpm_key_path(dir));
}

fn load_file<T>(path: &Path, decode: fn(&[u8]) -> Option<T>) -> Result<Option<T>, ClientError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ClientError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    match decode(&bytes) {
        Some(staged) => Ok(Some(staged)),
        None => {
            tracing::warn!(path = %path.display(), "ignoring an unreadable staged request");
            remove(path);
            Ok(None)
        }
    }
}

fn remove(path: &Path) {
    if let Err(error) = std::fs::remove_file(path)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), %error, "cannot remove a staged request");
    }
}

/// A request waiting to be made durable, and where its outcome goes.
struct Pending {
    serial: String,
    text: String,
    done: oneshot::Sender<Result<(), ClientError>>,
}

/// Stages a batch's requests in `OUT/.staging/`, made durable in groups (one `syncfs` for every
/// request queued while the previous group was syncing), as [`crate::device_files`] does for the
/// finished folders. The thread ends when every handle is dropped.
#[derive(Clone)]
pub struct BatchStaging {
    dir: PathBuf,
    queue: mpsc::Sender<Pending>,
}

impl BatchStaging {
    /// Starts the writer for `out/.staging/` (created 0700 and made durable here).
    pub fn start(out: &Path) -> Result<BatchStaging, ClientError> {
        let dir = out.join(BATCH_STAGING_DIR);
        create_private_dir(&dir).map_err(ClientError::io(&dir))?;
        sync_dir(out).map_err(ClientError::io(out))?;
        // Half-written files of a run killed before its group synced were never sent.
        for entry in std::fs::read_dir(&dir)
            .map_err(ClientError::io(&dir))?
            .flatten()
        {
            if entry.file_name().to_string_lossy().ends_with(".tmp") {
                remove(&entry.path());
            }
        }
        let (queue, pending) = mpsc::channel();
        let thread_dir = dir.clone();
        std::thread::Builder::new()
            .name("staging".into())
            .spawn(move || write_groups(&thread_dir, &pending))
            .map_err(|e| ClientError::Local(format!("cannot start the staging writer: {e}")))?;
        Ok(BatchStaging { dir, queue })
    }

    /// The staged request of `serial`, if a previous run left one.
    pub fn load(&self, serial: &str) -> Result<Option<Staged>, ClientError> {
        load_file(&self.path(serial), Staged::decode)
    }

    /// Returns once `staged` is durable under `serial`.
    pub async fn stage(&self, serial: &str, staged: &Staged) -> Result<(), ClientError> {
        let (done, outcome) = oneshot::channel();
        let stopped = || ClientError::Local("the staging writer stopped".into());
        self.queue
            .send(Pending {
                serial: serial.to_owned(),
                text: staged.encode(),
                done,
            })
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }

    /// Removes the staged request of `serial` (its folder is in place, or it was refused).
    pub fn clear(&self, serial: &str) {
        remove(&self.path(serial));
    }

    fn path(&self, serial: &str) -> PathBuf {
        self.dir.join(format!("{serial}.pem"))
    }
}

fn write_groups(dir: &Path, pending: &mpsc::Receiver<Pending>) {
    while let Ok(first) = pending.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP
            && let Ok(next) = pending.try_recv()
        {
            group.push(next);
        }
        let written: Vec<(Pending, Result<PathBuf, ClientError>)> = group
            .into_iter()
            .map(|request| {
                let tmp = dir.join(format!("{}.pem.tmp", request.serial));
                let outcome = write_unsynced(&tmp, request.text.as_bytes())
                    .map(|()| tmp.clone())
                    .map_err(ClientError::io(&tmp));
                (request, outcome)
            })
            .collect();
        let synced = sync_filesystem(dir);
        let renamed: Vec<(Pending, Result<(), ClientError>)> = written
            .into_iter()
            .map(|(request, tmp)| {
                let outcome = match (&synced, tmp) {
                    (Err(e), _) => Err(ClientError::Local(e.to_string())),
                    (Ok(()), Err(e)) => Err(e),
                    (Ok(()), Ok(tmp)) => {
                        let target = dir.join(format!("{}.pem", request.serial));
                        std::fs::rename(&tmp, &target).map_err(ClientError::io(&target))
                    }
                };
                (request, outcome)
            })
            .collect();
        let dir_synced = sync_dir(dir).map_err(ClientError::io(dir));
        for (request, outcome) in renamed {
            let outcome = match (&dir_synced, outcome) {
                (Err(e), Ok(())) => Err(ClientError::Local(e.to_string())),
                (_, outcome) => outcome,
            };
            let _ = request.done.send(outcome);
        }
    }
}

fn write_unsynced(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PRIVATE)
        .open(path)?
        .write_all(contents)
}

fn sync_filesystem(dir: &Path) -> Result<(), ClientError> {
    let handle = File::open(dir).map_err(ClientError::io(dir))?;
    rustix::fs::syncfs(&handle).map_err(|errno| ClientError::Io {
        path: dir.to_path_buf(),
        source: errno.into(),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn staged(purpose: Purpose) -> Staged {
        let key = KeyPair::generate().expect("key");
        let csr_der = crate::csr::build_csr(&key, "IP20000001").expect("csr");
        Staged {
            purpose,
            key,
            csr_der,
        }
    }

    #[test]
    fn a_staged_request_reads_back_the_same_and_private() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("device");
        let request = staged(Purpose::Renew("41ab".into()));
        stage(&dir, &request).expect("stage");
        let back = load(&dir).expect("load").expect("staged");
        assert_eq!(back.purpose, request.purpose);
        assert_eq!(back.csr_der, request.csr_der);
        assert_eq!(back.key.serialize_der(), request.key.serialize_der());
        let mode = std::fs::metadata(request_path(&dir))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!format!("{back:?}").contains("PRIVATE"));
        clear(&dir);
        assert!(load(&dir).expect("load").is_none());
    }

    #[test]
    fn a_staged_tpm_key_reads_back_beside_a_software_request_and_clears_with_it() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("device");
        let tss2_pem = pem::encode(&pem::Pem::new(
            TPM_KEY_TAG,
            vec![0x30, 0x03, 0x02, 0x01, 0x07],
        ));
        let key = StagedTpmKey {
            purpose: Purpose::Enroll("VT90000001".into()),
            tss2_pem: tss2_pem.clone(),
        };
        stage_tpm_key(&dir, &key).expect("stage");
        stage(&dir, &staged(Purpose::Renew("41ab".into()))).expect("stage software");
        let back = load_tpm_key(&dir).expect("load").expect("staged");
        assert_eq!(back.purpose, key.purpose);
        assert_eq!(back.tss2_pem, tss2_pem);
        assert!(
            load(&dir).expect("load").is_some(),
            "the other file is its own"
        );
        let mode = std::fs::metadata(tpm_key_path(&dir))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        clear(&dir);
        assert!(load_tpm_key(&dir).expect("load").is_none());
        assert!(load(&dir).expect("load").is_none());
    }

    #[test]
    fn a_torn_staged_request_is_dropped() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join(STAGING_DIR)).expect("dir");
        std::fs::write(request_path(root.path()), "-----BEGIN IOMT").expect("write");
        assert!(load(root.path()).expect("load").is_none());
        assert!(!request_path(root.path()).exists());
    }

    #[tokio::test]
    async fn a_batch_stages_each_device_durably() {
        let out = tempfile::tempdir().expect("tempdir");
        let staging = BatchStaging::start(out.path()).expect("start");
        let (a, b) = (
            staged(Purpose::Station("A1".into())),
            staged(Purpose::Station("A2".into())),
        );
        let (ra, rb) = tokio::join!(staging.stage("A1", &a), staging.stage("A2", &b));
        ra.expect("A1");
        rb.expect("A2");
        assert_eq!(
            staging.load("A2").expect("load").expect("A2").csr_der,
            b.csr_der
        );
        staging.clear("A1");
        assert!(staging.load("A1").expect("load").is_none());
    }
}
