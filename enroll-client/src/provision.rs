//! Batch provisioning on a manufacturing station: for every serial, a key generated here, a CSR,
//! `simpleenroll` authorized by the station's certificate, the chain verified, and the
//! device's files written as one directory (`OUT/<serial>/`, renamed into place complete), with
//! the roots the station trusts as the device's `trust.pem` (like `enroll`): a new root in
//! `cacerts` is taken up first, only through its NewWithOld link (`crate::trust`), into the
//! station's own `trust.pem`, so provisioned devices follow root rollovers too.
//! Resumable: serials whose complete directory exists are skipped, and each device's key and CSR
//! are staged durably (`OUT/.staging/<serial>.pem`) before its request leaves, so a station killed
//! at any moment sends the same request again on its next run and gets the same certificate.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::KeyPair;
use rustls_pki_types::CertificateDer;

use crate::chain::{read_root, verify_chain, verify_leaf};
use crate::client_identity::client_identity;
use crate::csr::{build_csr, generate_key};
use crate::device_files::{DeviceFiles, GroupWriter};
use crate::enroll::{Server, refuses_csr};
use crate::error::ClientError;
use crate::est::EstClient;
use crate::keystore::{self, CERT_FILE, CHAIN_FILE, KEY_FILE};
use crate::staging::{BatchStaging, Purpose, Staged};
use crate::trust::Trust;

/// How often a device is retried after a transient failure (CA unreachable, 5xx, 429).
const ATTEMPTS: u32 = 4;
/// The longest `Retry-After` a batch waits for; longer means the station's hour is spent.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(30);

/// What a batch run needs.
#[derive(Debug, Clone)]
pub struct ProvisionRequest {
    pub server: Server,
    /// The station's own credential directory (written by `enroll-client enroll`).
    pub station: PathBuf,
    /// One serial per line; blank lines and `#` comments are ignored.
    pub serials: PathBuf,
    pub out: PathBuf,
    pub concurrency: usize,
    /// Also write `device.p12` (key, certificate, chain) protected by this password.
    pub pkcs12_password: Option<String>,
    /// Draw a progress bar (rate and ETA) on the terminal.
    pub progress: bool,
}

/// One device that could not be provisioned, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub serial: String,
    pub reason: String,
}

/// What a batch run did.
#[derive(Debug, Clone, Default)]
pub struct ProvisionReport {
    pub done: usize,
    /// Serials already provisioned by an earlier run.
    pub skipped: usize,
    pub failed: Vec<Failure>,
    pub elapsed: Duration,
}

/// Everything the workers share.
struct Batch {
    client: EstClient,
    label: Option<String>,
    /// The roots the station trusts (`--ca-cert`, its `trust.pem`, any root taken up through
    /// a link in `ca_certs`).
    trust: Trust,
    /// `trust`'s roots as every device's `trust.pem`.
    trust_pem: Arc<str>,
    ca_certs: Vec<Vec<u8>>,
    requirements: iomt_core::wire::CsrRequirements,
    ca_name: String,
    /// The issuing CA a leaf of this batch was verified through, and the root above it.
    verified_issuer: Mutex<Option<(CertificateDer<'static>, CertificateDer<'static>)>>,
    /// Writes finished devices' folders, made durable in groups.
    files: GroupWriter,
    /// Makes each device's key and CSR durable before its request is sent.
    staging: BatchStaging,
    pkcs12_password: Option<Arc<str>>,
}

/// Reads the serials file: trimmed, without blanks, comments and repeats, in file order.
pub fn read_serials(path: &Path) -> Result<Vec<String>, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClientError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut seen = HashSet::new();
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter(|serial| seen.insert(serial.to_string()))
        .map(str::to_owned)
        .collect())
}

/// True when `serial` was provisioned by an earlier run: its folder holds the key, certificate
/// and chain (it is only ever renamed into place complete and durable).
fn already_done(out: &Path, serial: &str) -> bool {
    let folder = out.join(serial);
    [KEY_FILE, CERT_FILE, CHAIN_FILE]
        .iter()
        .all(|name| folder.join(name).is_file())
}

/// Provisions every serial not yet done; per-device failures are collected, not fatal.
pub async fn provision(request: &ProvisionRequest) -> Result<ProvisionReport, ClientError> {
    let started = Instant::now();
    let root = read_root(&request.server.ca_cert)?;
    let station = keystore::load(&request.station)?;
    let ca_name = request.server.ca_cert.display().to_string();
    let mut trust = Trust::load(&root, &request.station)?;
    let client = EstClient::trusting(
        &request.server.url,
        trust.roots(),
        &ca_name,
        Some(client_identity(&station, None)?),
    )?;
    let label = request.server.label.clone();
    let ca_certs = client.cacerts(label.as_deref()).await?;
    trust.update(&ca_certs)?;
    let trust_pem = Arc::from(keystore::certificates_pem(
        trust.roots().iter().map(|r| r.as_ref()),
    ));
    let requirements = client.csrattrs(label.as_deref()).await?;
    iomt_core::files::create_private_dir(&request.out).map_err(ClientError::io(&request.out))?;

    let serials = read_serials(&request.serials)?;
    let pending: Vec<String> = serials
        .iter()
        .filter(|serial| !already_done(&request.out, serial))
        .cloned()
        .collect();
    let skipped = serials.len() - pending.len();
    let staging = BatchStaging::start(&request.out)?;
    for serial in serials.iter().filter(|s| already_done(&request.out, s)) {
        staging.clear(serial); // a run killed after the folder landed, before the clean-up
    }

    let bar = progress_bar(pending.len(), request.progress);
    let batch = Arc::new(Batch {
        client,
        label,
        trust,
        trust_pem,
        ca_certs,
        requirements,
        ca_name,
        verified_issuer: Mutex::new(None),
        files: GroupWriter::start(request.out.clone())?,
        staging,
        pkcs12_password: request.pkcs12_password.as_deref().map(Arc::from),
    });
    let queue = Arc::new(Mutex::new(pending.into_iter()));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..request.concurrency.max(1) {
        let (batch, queue, failures, bar) =
            (batch.clone(), queue.clone(), failures.clone(), bar.clone());
        workers.spawn(async move {
            let mut done = 0usize;
            loop {
                // The lock is held only to take the next serial.
                let next: Option<String> = queue.lock().ok().and_then(|mut q| q.next());
                let Some(serial) = next else { break };
                match provision_one(&batch, &serial).await {
                    Ok(()) => done += 1,
                    Err(error) => {
                        bar.println(format!("{serial}: {error}"));
                        if let Ok(mut list) = failures.lock() {
                            list.push(Failure {
                                serial,
                                reason: error.to_string(),
                            });
                        }
                    }
                }
                bar.inc(1);
            }
            done
        });
    }
    let mut done = 0;
    while let Some(joined) = workers.join_next().await {
        done += joined.map_err(|e| ClientError::Local(format!("worker failed: {e}")))?;
    }
    bar.finish_and_clear();
    let mut failed = failures.lock().map(|list| list.clone()).unwrap_or_default();
    failed.sort_by(|a, b| a.serial.cmp(&b.serial));
    Ok(ProvisionReport {
        done,
        skipped,
        failed,
        elapsed: started.elapsed(),
    })
}

fn progress_bar(len: usize, visible: bool) -> indicatif::ProgressBar {
    if !visible {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} devices  {per_sec}  ETA {eta}  {msg}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

impl Batch {
    /// Verifies a device's certificate: the first one up to the root, the others against the
    /// issuing CA that first one was verified through (the same CA signs the whole batch).
    fn verify(
        &self,
        leaf: &[u8],
        key: &KeyPair,
    ) -> Result<Vec<CertificateDer<'static>>, ClientError> {
        let known = self.verified_issuer.lock().ok().and_then(|v| v.clone());
        if let Some((issuer, root)) = known
            && verify_leaf(leaf, key, &issuer, &[], &self.ca_name).is_ok()
        {
            return Ok(vec![issuer, root]);
        }
        let root = self.trust.root_for(leaf, &self.ca_certs);
        let chain = verify_chain(leaf, &self.ca_certs, root, key, &self.ca_name)?;
        if let Ok(mut verified) = self.verified_issuer.lock() {
            *verified = chain.first().map(|issuer| (issuer.clone(), root.clone()));
        }
        Ok(chain)
    }
}

/// One device: key, CSR, enrollment (retrying transient failures), verification, files.
async fn provision_one(batch: &Batch, serial: &str) -> Result<(), ClientError> {
    let purpose = Purpose::Station(serial.to_owned());
    let staged = match batch.staging.load(serial)? {
        Some(staged) if staged.purpose == purpose => staged,
        _ => {
            let key = generate_key(&batch.requirements)?;
            let csr_der = build_csr(&key, serial)?;
            let staged = Staged {
                purpose,
                key,
                csr_der,
            };
            batch.staging.stage(serial, &staged).await?;
            staged
        }
    };
    let Staged { key, csr_der, .. } = staged;
    let issued = enroll_with_retries(batch, &csr_der)
        .await
        .inspect_err(|error| {
            if refuses_csr(error) {
                batch.staging.clear(serial); // refused for its key or subject: a new key next run
            }
        })?;
    let leaf = issued
        .first()
        .ok_or_else(|| ClientError::BadResponse("the CA returned no certificate".into()))?;
    let chain = batch.verify(leaf, &key)?;
    let files = match batch.pkcs12_password.clone() {
        None => DeviceFiles::new(&key, leaf, &chain, None)?.with_trust(batch.trust_pem.clone()),
        // Key derivation for the bundle is millisecond work: off the async workers.
        Some(password) => {
            let leaf = leaf.clone();
            tokio::task::spawn_blocking(move || {
                DeviceFiles::new(&key, &leaf, &chain, Some(&password))
            })
            .await
            .map_err(|e| ClientError::Local(format!("PKCS#12 worker failed: {e}")))??
            .with_trust(batch.trust_pem.clone())
        }
    };
    batch.files.write(serial, files).await?;
    batch.staging.clear(serial);
    Ok(())
}

/// `simpleenroll` as the station, retrying transient failures (unreachable, 5xx, a short 429).
async fn enroll_with_retries(batch: &Batch, csr_der: &[u8]) -> Result<Vec<Vec<u8>>, ClientError> {
    let mut attempt = 1;
    loop {
        let error = match batch
            .client
            .simpleenroll_as_station(batch.label.as_deref(), csr_der)
            .await
        {
            Ok(issued) => return Ok(issued),
            Err(error) if attempt >= ATTEMPTS => return Err(error),
            Err(error) => error,
        };
        let wait = match &error {
            ClientError::TooSoon {
                retry_after_secs, ..
            } if Duration::from_secs(*retry_after_secs) <= MAX_RETRY_WAIT => {
                Duration::from_secs(*retry_after_secs)
            }
            ClientError::Unreachable { .. } => Duration::from_millis(250 << attempt),
            ClientError::Server { status, .. } if *status >= 500 => {
                Duration::from_millis(250 << attempt)
            }
            _ => return Err(error),
        };
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_file_skips_blanks_comments_and_repeats() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serials.txt");
        std::fs::write(&path, "# lot 7\nA1\n\n  A2  \nA1\n# end\nA3\n").unwrap();
        assert_eq!(read_serials(&path).unwrap(), ["A1", "A2", "A3"]);
    }
}
