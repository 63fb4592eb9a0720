//! The group-commit writer and the batched enrollment reader. Requests queue their issuance
//! (or their lookup) and wait; one task takes everything queued, writes it in one durable
//! transaction (or reads it with one query) and wakes each request with its own answer. While
//! one commit waits for the disk the next batch fills up, so throughput grows with load instead
//! of being capped at one fsync per certificate. Nobody is answered before the commit that
//! holds their record.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::batch::MAX_BATCH;
use super::batcher::Batcher;
use super::{CertificateState, EnrollmentFacts, FactsQuery, Issuance, Store, StoreError};

/// Read batches served at once (each on its own pooled connection).
const READERS: usize = 2;

/// Told about every group commit and batched read, so the process can report batch sizes,
/// commit latency and database errors (the metrics implement it; storage imports nothing
/// above itself).
pub trait CommitObserver: Send + Sync + 'static {
    /// A batch of `size` issuances was committed, or failed to be, in `elapsed`;
    /// `database_errors` of its verdicts were database failures (not refusals).
    fn committed(&self, size: usize, elapsed: Duration, database_errors: usize);
    /// A batched read answered `database_errors` lookups with a database failure.
    fn read(&self, database_errors: usize);
}

/// Counts the verdicts that are database failures rather than decisions.
fn database_errors<T>(verdicts: &[Result<T, StoreError>]) -> usize {
    verdicts
        .iter()
        .filter(|v| {
            v.as_ref()
                .err()
                .is_some_and(StoreError::is_database_failure)
        })
        .count()
}

/// Handle to the issuance writer; cheap to share.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    writer: Batcher<Issuance, Result<(), StoreError>>,
    reader: Batcher<FactsQuery, Result<EnrollmentFacts, StoreError>>,
}

impl GroupCommit {
    /// Starts the writer and the reader on the current tokio runtime.
    pub fn start(store: Arc<dyn Store>) -> GroupCommit {
        GroupCommit::start_observed(store, None)
    }

    /// Like [`GroupCommit::start`], telling `observer` about every batch.
    pub fn start_observed(
        store: Arc<dyn Store>,
        observer: Option<Arc<dyn CommitObserver>>,
    ) -> GroupCommit {
        let write_store = store.clone();
        let write_observer = observer.clone();
        let writer = Batcher::start(MAX_BATCH, 1, move |batch: Vec<Issuance>| {
            let store = write_store.clone();
            let observer = write_observer.clone();
            async move {
                let started = Instant::now();
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                let verdicts = store.commit_issuances(&batch, now).await;
                tracing::debug!(size = batch.len(), "issuance batch committed");
                if let Some(observer) = observer {
                    observer.committed(batch.len(), started.elapsed(), database_errors(&verdicts));
                }
                verdicts
            }
        });
        let reader = Batcher::start(MAX_BATCH, READERS, move |queries: Vec<FactsQuery>| {
            let store = store.clone();
            let observer = observer.clone();
            async move {
                let answers = read_each_on_failure(store.as_ref(), &queries).await;
                if let Some(observer) = observer {
                    observer.read(database_errors(&answers));
                }
                answers
            }
        });
        GroupCommit { writer, reader }
    }

    /// Queues an issuance and returns once the transaction holding it has committed (or failed).
    pub async fn commit(&self, issuance: Issuance) -> Result<(), StoreError> {
        self.writer
            .call(issuance)
            .await
            .unwrap_or(Err(StoreError::WriterStopped))
    }

    /// What an enrollment decision reads, looked up together with concurrent requests'.
    pub async fn facts(&self, query: FactsQuery) -> Result<EnrollmentFacts, StoreError> {
        self.reader
            .call(query)
            .await
            .unwrap_or(Err(StoreError::WriterStopped))
    }
}

/// Batched certificate-state lookups for OCSP: every status asked while the previous query ran
/// is read with the next one, so a responder's per-answer database cost is a share of one
/// round trip. The state is read from the database every time: a revocation shows at once.
#[derive(Debug, Clone)]
pub struct StatusReader {
    reader: Batcher<String, Result<Option<CertificateState>, StoreError>>,
}

impl StatusReader {
    /// Starts the reader on the current tokio runtime.
    pub fn start(store: Arc<dyn Store>) -> StatusReader {
        let reader = Batcher::start(MAX_BATCH, READERS, move |serials: Vec<String>| {
            let store = store.clone();
            async move { read_each_on_failure(store.as_ref(), &serials).await }
        });
        StatusReader { reader }
    }

    /// The issuer and revocation state of a certificate (`None`: not on record).
    pub async fn state(&self, serial: String) -> Result<Option<CertificateState>, StoreError> {
        self.reader
            .call(serial)
            .await
            .unwrap_or(Err(StoreError::WriterStopped))
    }
}

/// What a store's batched read returns.
type ReadFuture<'a, A> = Pin<Box<dyn Future<Output = Result<Vec<A>, StoreError>> + Send + 'a>>;

/// A lookup the store answers for a whole batch with one query, one answer per lookup.
trait BatchRead: Sized + Sync {
    type Answer: Default + Send;
    fn read<'a>(store: &'a dyn Store, batch: &'a [Self]) -> ReadFuture<'a, Self::Answer>;
}

impl BatchRead for FactsQuery {
    type Answer = EnrollmentFacts;
    fn read<'a>(store: &'a dyn Store, batch: &'a [Self]) -> ReadFuture<'a, EnrollmentFacts> {
        store.enrollment_facts(batch)
    }
}

/// A certificate serial, for its state.
impl BatchRead for String {
    type Answer = Option<CertificateState>;
    fn read<'a>(store: &'a dyn Store, batch: &'a [Self]) -> ReadFuture<'a, Self::Answer> {
        store.certificate_states(batch)
    }
}

/// One read for the whole batch; if it fails, one read per lookup so each gets its own error.
async fn read_each_on_failure<Q: BatchRead>(
    store: &dyn Store,
    queries: &[Q],
) -> Vec<Result<Q::Answer, StoreError>> {
    if queries.len() > 1 {
        match Q::read(store, queries).await {
            Ok(answers) => return answers.into_iter().map(Ok).collect(),
            Err(error) => tracing::warn!(%error, "batched read failed; reading one by one"),
        }
    }
    let mut answers = Vec::with_capacity(queries.len());
    for query in queries {
        let one = Q::read(store, std::slice::from_ref(query)).await;
        answers.push(one.map(|mut answer| answer.pop().unwrap_or_default()));
    }
    answers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{
        AuditAction, AuditEvent, CertificateRecord, CertificateStatus, Device, DeviceStatus,
        SqliteStore, TokenRecord, chain_hash,
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
            initial: false,
            attestation: None,
            audit: AuditEvent {
                at: 1_000,
                actor: "test".into(),
                action: AuditAction::CertificateIssued.into(),
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
                revoked_at: None,
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
