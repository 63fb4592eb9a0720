//! The group-commit writer: one task owns issuance writes. Requests queue their issuance and
//! wait; the writer takes everything queued (up to [`MAX_BATCH`]), commits it in one durable
//! transaction and wakes each request with its own verdict. While one commit is waiting for the
//! disk the next batch fills up, so throughput grows with load instead of being capped at one
//! fsync per certificate. Nobody is answered before the commit that holds their record.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::batch::MAX_BATCH;
use super::{Issuance, Store, StoreError};

/// Issuances waiting to be written, at most this many (then requests wait to queue).
const QUEUE_DEPTH: usize = 4 * MAX_BATCH;

/// One queued issuance and where its verdict goes.
struct Pending {
    issuance: Issuance,
    verdict: oneshot::Sender<Result<(), StoreError>>,
}

/// Handle to the writer task; cheap to share.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Pending>,
}

impl GroupCommit {
    /// Starts the writer on the current tokio runtime.
    pub fn start(store: Arc<dyn Store>) -> GroupCommit {
        let (queue, pending) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(write_batches(store, pending));
        GroupCommit { queue }
    }

    /// Queues an issuance and returns once the transaction holding it has committed (or failed).
    pub async fn commit(&self, issuance: Issuance) -> Result<(), StoreError> {
        let (verdict, answer) = oneshot::channel();
        self.queue
            .send(Pending { issuance, verdict })
            .await
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }
}

/// The writer loop: runs until every handle is dropped.
async fn write_batches(store: Arc<dyn Store>, mut queue: mpsc::Receiver<Pending>) {
    let mut pending = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut pending, MAX_BATCH).await > 0 {
        let (batch, verdicts): (Vec<Issuance>, Vec<_>) =
            pending.drain(..).map(|p| (p.issuance, p.verdict)).unzip();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let results = store.commit_issuances(&batch, now).await;
        tracing::debug!(size = batch.len(), "issuance batch committed");
        for (verdict, result) in verdicts.into_iter().zip(results) {
            // A request that gave up (client gone) no longer listens; its record stands.
            let _ = verdict.send(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{
        AuditEvent, CertificateRecord, CertificateStatus, Device, DeviceStatus, SqliteStore,
        TokenRecord, chain_hash,
    };

    fn issuance(n: usize, token: u8) -> Issuance {
        Issuance {
            certificate: CertificateRecord {
                serial: format!("{n:04x}"),
                issuer: "basic".into(),
                device_serial: format!("IP2{:07}", usize::from(token)),
                product: "example-infusion-pump".into(),
                policy_oid: "1.2.3".into(),
                not_before: 1_000,
                not_after: i64::MAX,
                spki_sha256: vec![token; 32],
                der: vec![0x30, 0x00],
                status: CertificateStatus::Valid,
                authorized_by: "token".into(),
                supersedes: None,
                issued_at: 1_000,
            },
            consume_token: Some(vec![token; 32]),
            station_quota: None,
            audit: AuditEvent {
                at: 1_000,
                actor: "test".into(),
                action: "certificate.issued".into(),
                object: format!("certificate:{n:04x}"),
                details: "{}".into(),
            },
        }
    }

    /// 128 concurrent requests for 64 tokens, each token presented twice: exactly one request
    /// per token gets a certificate, and the audit chain stays whole across batches.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_each_get_their_own_verdict() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("ca.db")).await.unwrap());
        let tokens: Vec<u8> = (1..=64).collect();
        let devices: Vec<Device> = tokens
            .iter()
            .map(|t| Device {
                serial: format!("IP2{:07}", usize::from(*t)),
                product: "example-infusion-pump".into(),
                gtin: "00850000000017".into(),
                lot: None,
                status: DeviceStatus::Active,
                registered_at: 1_000,
            })
            .collect();
        store.register_devices(&devices, &[]).await.unwrap();
        let records: Vec<TokenRecord> = tokens
            .iter()
            .map(|t| TokenRecord {
                token_hash: vec![*t; 32],
                device_serial: format!("IP2{:07}", usize::from(*t)),
                created_at: 1_000,
                expires_at: i64::MAX,
                used_at: None,
            })
            .collect();
        store.create_tokens(&records, &[]).await.unwrap();

        let writer = GroupCommit::start(store.clone());
        let requests: Vec<_> = (0..128)
            .map(|n| {
                let writer = writer.clone();
                let token = tokens[n % 64];
                tokio::spawn(async move { writer.commit(issuance(n, token)).await })
            })
            .collect();
        let mut issued = 0;
        for request in requests {
            match request.await.unwrap() {
                Ok(()) => issued += 1,
                Err(StoreError::TokenNotConsumable) => {}
                Err(other) => panic!("unexpected verdict: {other}"),
            }
        }
        assert_eq!(issued, 64);
        let events = store.audit_events().await.unwrap();
        assert_eq!(events.len(), 64);
        let mut prev = Vec::new();
        for stored in &events {
            assert_eq!(stored.hash, chain_hash(&prev, &stored.event));
            prev = stored.hash.clone();
        }
    }
}
