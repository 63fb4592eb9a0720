//! Group commit: a batch writes what it may in one transaction and refuses the rest precisely.

use super::*;

fn with_supersedes(serial: &str, old: &str) -> Issuance {
    let mut renewal = issuance(serial, "IP20000001", None);
    renewal.certificate.supersedes = Some(old.into());
    renewal
}

fn assert_chain_intact(events: &[StoredAuditEvent]) {
    let mut prev = Vec::new();
    for stored in events {
        assert_eq!(stored.prev_hash, prev, "event {} links back", stored.seq);
        assert_eq!(stored.hash, chain_hash(&prev, &stored.event));
        prev = stored.hash.clone();
    }
}

pub(super) async fn batch_writes_the_admitted_and_refuses_the_rest(store: &dyn Store) {
    store
        .register_devices(&[device("IP20000001"), device("IP20000002")], &[])
        .await
        .unwrap();
    store
        .create_tokens(&[token(1, "IP20000001"), token(2, "IP20000002")], &[])
        .await
        .unwrap();
    store
        .commit_issuance(&issuance("a0", "IP20000001", None), 1_400)
        .await
        .unwrap();
    store
        .commit_issuance(&with_supersedes("a1", "a0"), 1_400)
        .await
        .unwrap();
    let batch = [
        issuance("b1", "IP20000001", Some(vec![1; 32])),
        issuance("b2", "IP20000001", Some(vec![1; 32])), // same token again in the batch
        issuance("b3", "IP20000002", Some(vec![9; 32])), // unknown token
        with_supersedes("b4", "a0"),                     // superseded before the batch
        with_supersedes("b5", "a1"),
        with_supersedes("b6", "a1"), // superseded earlier in the batch
        issuance("b7", "IP20000002", Some(vec![2; 32])),
    ];
    let verdicts = store.commit_issuances(&batch, 1_500).await;
    let refused: Vec<String> = verdicts
        .iter()
        .map(|v| {
            v.as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default()
        })
        .collect();
    assert!(
        verdicts[0].is_ok() && verdicts[4].is_ok() && verdicts[6].is_ok(),
        "{refused:?}"
    );
    assert!(matches!(verdicts[1], Err(StoreError::TokenNotConsumable)));
    assert!(matches!(verdicts[2], Err(StoreError::TokenNotConsumable)));
    assert!(matches!(verdicts[3], Err(StoreError::AlreadySuperseded(ref s)) if s == "a0"));
    assert!(matches!(verdicts[5], Err(StoreError::AlreadySuperseded(ref s)) if s == "a1"));
    for (serial, stored) in [
        ("b1", true),
        ("b2", false),
        ("b3", false),
        ("b4", false),
        ("b5", true),
        ("b6", false),
        ("b7", true),
    ] {
        assert_eq!(
            store.certificate(serial).await.unwrap().is_some(),
            stored,
            "{serial}"
        );
    }
    assert_eq!(store.successor("a1").await.unwrap().unwrap().serial, "b5");
    assert_eq!(
        store.token(&[1; 32]).await.unwrap().unwrap().used_at,
        Some(1_500)
    );
    assert_eq!(
        store.token(&[2; 32]).await.unwrap().unwrap().used_at,
        Some(1_500)
    );
    // One event per stored certificate, chained in batch order after the earlier ones.
    let events = store.audit_events().await.unwrap();
    assert_eq!(events.len(), 2 + 3);
    assert_chain_intact(&events);
}

pub(super) async fn batch_counts_station_quota_per_issuance(store: &dyn Store) {
    store
        .create_station(&station("st1"), &event("station.created"))
        .await
        .unwrap();
    let serials = ["IP20000001", "IP20000002", "IP20000003"];
    let devices: Vec<Device> = serials.iter().map(|s| device(s)).collect();
    store.register_devices(&devices, &[]).await.unwrap();
    let quota = StationQuota {
        station: "st1".into(),
        window_start: 7_200,
        limit: 2,
    };
    let batch: Vec<Issuance> = serials
        .iter()
        .enumerate()
        .map(|(n, device)| {
            let mut request = issuance(&format!("c{n}"), device, None);
            request.station_quota = Some(quota.clone());
            request
        })
        .collect();
    let verdicts = store.commit_issuances(&batch, 7_300).await;
    assert!(verdicts[0].is_ok() && verdicts[1].is_ok());
    assert!(matches!(
        verdicts[2],
        Err(StoreError::StationRateLimited { ref station }) if station == "st1"
    ));
    assert_eq!(store.station_usage("st1", 7_200).await.unwrap(), 2);
    assert!(store.certificate("c2").await.unwrap().is_none());
}

/// The batch's transaction fails: `serial` (its first certificate) is not stored, the token
/// `[1; 32]` stays unused and the audit trail empty.
async fn assert_batch_fails_whole(store: &dyn Store, batch: &[Issuance], serial: &str) {
    assert!(store.commit_batch(batch, 1_500).await.is_err());
    assert!(store.certificate(serial).await.unwrap().is_none());
    assert_eq!(store.token(&[1; 32]).await.unwrap().unwrap().used_at, None);
    assert!(store.audit_events().await.unwrap().is_empty());
}

pub(super) async fn failed_batch_writes_nothing_and_is_retried_one_by_one(store: &dyn Store) {
    register_with_token(store, "IP20000001", 1).await;
    // Two certificates with one serial: the multi-row insert fails as a whole.
    let batch = [
        issuance("d1", "IP20000001", Some(vec![1; 32])),
        issuance("d1", "IP20000001", None),
    ];
    assert_batch_fails_whole(store, &batch, "d1").await;

    let verdicts = store.commit_issuances(&batch, 1_500).await;
    assert!(verdicts[0].is_ok());
    assert!(matches!(verdicts[1], Err(StoreError::SerialCollision(ref s)) if s == "d1"));
    assert_eq!(
        store.token(&[1; 32]).await.unwrap().unwrap().used_at,
        Some(1_500)
    );
    assert_chain_intact(&store.audit_events().await.unwrap());
}

/// A certificate for a device the registry does not hold breaks a reference that is checked at
/// `COMMIT`: the whole batch is rolled back (the other issuance's token stays unused), and one
/// by one the registered device's certificate is written and the other refused alone.
pub(super) async fn batch_with_an_unregistered_device_fails_at_commit_and_is_retried(
    store: &dyn Store,
) {
    register_with_token(store, "IP20000001", 1).await;
    let batch = [
        issuance("e1", "IP20000001", Some(vec![1; 32])),
        issuance("e2", "IP29999999", None),
    ];
    assert_batch_fails_whole(store, &batch, "e1").await;

    let verdicts = store.commit_issuances(&batch, 1_500).await;
    assert!(verdicts[0].is_ok(), "{verdicts:?}");
    assert!(
        matches!(verdicts[1], Err(StoreError::Database(_))),
        "{verdicts:?}"
    );
    assert!(store.certificate("e1").await.unwrap().is_some());
    assert!(store.certificate("e2").await.unwrap().is_none());
    assert_eq!(
        store.token(&[1; 32]).await.unwrap().unwrap().used_at,
        Some(1_500)
    );
    assert_chain_intact(&store.audit_events().await.unwrap());
}

/// A batch whose every issuance is refused still ends its transaction: nothing is written, and
/// the next batch takes the write lock and commits.
pub(super) async fn batch_refused_whole_writes_nothing_and_the_next_commits(store: &dyn Store) {
    store
        .register_devices(&[device("IP20000001")], &[])
        .await
        .unwrap();
    let refused = [issuance("r1", "IP20000001", Some(vec![7; 32]))]; // no such token
    let verdicts = store.commit_batch(&refused, 1_500).await.unwrap();
    assert!(matches!(verdicts[0], Err(StoreError::TokenNotConsumable)));
    assert!(store.certificate("r1").await.unwrap().is_none());
    assert!(store.audit_events().await.unwrap().is_empty());

    let next = [issuance("r2", "IP20000001", None)];
    assert!(store.commit_batch(&next, 1_600).await.unwrap()[0].is_ok());
    assert!(store.certificate("r2").await.unwrap().is_some());
    assert_chain_intact(&store.audit_events().await.unwrap());
}

/// Devices IP20000001 to -3, each with its token: hash `[n; 32]` for device n.
async fn register_three_with_tokens(store: &dyn Store) {
    let serials = ["IP20000001", "IP20000002", "IP20000003"];
    let devices: Vec<Device> = serials.iter().map(|s| device(s)).collect();
    store.register_devices(&devices, &[]).await.unwrap();
    let tokens: Vec<TokenRecord> = (1u8..=3)
        .map(|n| token(n, serials[usize::from(n) - 1]))
        .collect();
    store.create_tokens(&tokens, &[]).await.unwrap();
}

/// Token batches one after another: each consumes its tokens and extends the audit chain, and
/// a consumed token is refused in a later batch.
pub(super) async fn consecutive_token_batches_consume_and_chain(store: &dyn Store) {
    register_three_with_tokens(store).await;
    let first = [issuance("f1", "IP20000001", Some(vec![1; 32]))];
    assert!(store.commit_batch(&first, 1_500).await.unwrap()[0].is_ok());
    let second = [
        issuance("f2", "IP20000002", Some(vec![2; 32])),
        issuance("f3", "IP20000003", Some(vec![3; 32])),
    ];
    let verdicts = store.commit_batch(&second, 1_600).await.unwrap();
    assert!(verdicts.iter().all(Result::is_ok), "{verdicts:?}");
    for (hash, serial) in [(2u8, "f2"), (3, "f3")] {
        assert_eq!(
            store.token(&[hash; 32]).await.unwrap().unwrap().used_at,
            Some(1_600)
        );
        assert!(store.certificate(serial).await.unwrap().is_some());
    }
    let again = [issuance("f4", "IP20000002", Some(vec![2; 32]))];
    let verdicts = store.commit_batch(&again, 1_700).await.unwrap();
    assert!(matches!(verdicts[0], Err(StoreError::TokenNotConsumable)));
    assert!(store.certificate("f4").await.unwrap().is_none());
    let events = store.audit_events().await.unwrap();
    assert_eq!(events.len(), 3);
    assert_chain_intact(&events);
}

/// A token used up between the enrollment read and the commit: the rest of the batch is still
/// written and that issuance alone is refused, with nothing of it stored.
pub(super) async fn token_batch_with_one_used_token_refuses_only_it(store: &dyn Store) {
    register_three_with_tokens(store).await;
    let first = [issuance("u0", "IP20000002", Some(vec![2; 32]))];
    assert!(store.commit_batch(&first, 1_500).await.unwrap()[0].is_ok());
    let batch = [
        issuance("u1", "IP20000001", Some(vec![1; 32])),
        issuance("u2", "IP20000002", Some(vec![2; 32])), // used by u0
        issuance("u3", "IP20000003", Some(vec![3; 32])),
    ];
    let verdicts = store.commit_batch(&batch, 1_600).await.unwrap();
    assert!(verdicts[0].is_ok() && verdicts[2].is_ok(), "{verdicts:?}");
    assert!(matches!(verdicts[1], Err(StoreError::TokenNotConsumable)));
    assert!(store.certificate("u2").await.unwrap().is_none());
    assert_eq!(
        store.token(&[2; 32]).await.unwrap().unwrap().used_at,
        Some(1_500)
    );
    let events = store.audit_events().await.unwrap();
    assert_eq!(events.len(), 3);
    assert_chain_intact(&events);
}

/// An audit event appended outside the writer (an administrative action) between two batches:
/// the second batch chains after it, not after the head the writer last wrote.
pub(super) async fn batch_after_an_outside_audit_event_chains_after_it(store: &dyn Store) {
    let serials = ["IP20000001", "IP20000002"];
    let devices: Vec<Device> = serials.iter().map(|s| device(s)).collect();
    store.register_devices(&devices, &[]).await.unwrap();
    store
        .create_tokens(&[token(1, serials[0]), token(2, serials[1])], &[])
        .await
        .unwrap();
    let first = [issuance("h1", "IP20000001", Some(vec![1; 32]))];
    assert!(store.commit_batch(&first, 1_500).await.unwrap()[0].is_ok());
    store
        .append_audit(&[event("device.disabled")])
        .await
        .unwrap();
    let second = [issuance("h2", "IP20000002", Some(vec![2; 32]))];
    assert!(store.commit_batch(&second, 1_600).await.unwrap()[0].is_ok());
    let events = store.audit_events().await.unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.event.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "certificate.issued",
            "device.disabled",
            "certificate.issued"
        ]
    );
    assert_chain_intact(&events);
}

pub(super) async fn many_certificates_change_state_in_one_transaction(store: &dyn Store) {
    store
        .register_devices(&[device("IP20000001")], &[])
        .await
        .unwrap();
    let batch: Vec<Issuance> = (0..5)
        .map(|n| issuance(&format!("e{n}"), "IP20000001", None))
        .collect();
    assert!(
        store
            .commit_batch(&batch, 1_500)
            .await
            .unwrap()
            .iter()
            .all(Result::is_ok)
    );
    let serials: Vec<String> = ["e0", "e2", "e4", "ff99"].map(String::from).to_vec();
    store
        .change_status_many(
            &serials,
            CertificateStatus::Revoked,
            Some("keyCompromise"),
            1_700,
            &[event("certificates.revoked")],
        )
        .await
        .unwrap();
    let snapshot = store.crl_snapshot("basic").await.unwrap();
    let listed: Vec<&str> = snapshot.entries.iter().map(|e| e.serial.as_str()).collect();
    assert_eq!(listed, ["e0", "e2", "e4"]);
    assert!(
        snapshot
            .entries
            .iter()
            .all(|e| e.revoked_at == 1_700 && e.reason.as_deref() == Some("keyCompromise"))
    );
    assert_eq!(
        store.certificate("e1").await.unwrap().unwrap().status,
        CertificateStatus::Valid
    );
    let events = store.audit_events().await.unwrap();
    assert_eq!(events.last().unwrap().event.action, "certificates.revoked");
    assert_chain_intact(&events);
}
