//! The storage suite: each test takes a `&dyn Store`, so every backend runs the same checks.

use super::*;

mod attestation;
mod console;
mod facts;
mod group_commit;
mod invariants;
mod inventory;
mod sqlite_migration;
use attestation::*;
use console::*;
use facts::*;
use group_commit::*;
use invariants::*;
use inventory::*;

fn device(serial: &str) -> Device {
    Device {
        serial: serial.into(),
        product: "example-infusion-pump".into(),
        gtin: "00850000000017".into(),
        lot: Some("L1".into()),
        status: DeviceStatus::Active,
        registered_at: 1_000,
    }
}

fn event(action: &str) -> AuditEvent {
    AuditEvent {
        at: 1_000,
        actor: "test".into(),
        action: action.into(),
        object: "o".into(),
        details: "{}".into(),
    }
}

fn token(hash: u8, serial: &str) -> TokenRecord {
    TokenRecord {
        token_hash: vec![hash; 32],
        device_serial: serial.into(),
        created_at: 1_000,
        expires_at: 2_000,
        used_at: None,
        revoked_at: None,
    }
}

fn issuance(serial: &str, device_serial: &str, token_hash: Option<Vec<u8>>) -> Issuance {
    Issuance {
        certificate: CertificateRecord {
            serial: serial.into(),
            issuer: "basic".into(),
            device_serial: device_serial.into(),
            product: "example-infusion-pump".into(),
            policy_oid: "1.2.3".into(),
            not_before: 1_000,
            not_after: 5_000,
            // A key of its own: one key certifies one device.
            spki_sha256: serial.as_bytes().to_vec(),
            der: vec![0x30, 0x00],
            status: CertificateStatus::Valid,
            authorized_by: "token".into(),
            supersedes: None,
            issued_at: 1_500,
        },
        consume_token: token_hash,
        station_quota: None,
        initial: false,
        attestation: None,
        audit: event("certificate.issued"),
    }
}

async fn register_is_all_or_nothing(store: &dyn Store) {
    store
        .register_devices(&[device("IP20000001")], &[])
        .await
        .unwrap();
    let err = store
        .register_devices(&[device("IP20000002"), device("IP20000001")], &[event("x")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::DeviceExists(ref s) if s == "IP20000001"),
        "{err}"
    );
    assert!(store.device("IP20000002").await.unwrap().is_none());
    assert!(store.audit_events().await.unwrap().is_empty());
    assert_eq!(
        store
            .registered_serials(&["IP20000001".into(), "IP20000009".into()])
            .await
            .unwrap(),
        vec!["IP20000001".to_owned()]
    );
}

/// Registers `serial` with the token whose hash is `[n; 32]`.
async fn register_with_token(store: &dyn Store, serial: &str, n: u8) {
    store
        .register_devices(&[device(serial)], &[])
        .await
        .unwrap();
    store.create_tokens(&[token(n, serial)], &[]).await.unwrap();
}

async fn token_is_consumed_once(store: &dyn Store) {
    register_with_token(store, "IP20000001", 1).await;
    store
        .commit_issuance(&issuance("aa01", "IP20000001", Some(vec![1; 32])), 1_500)
        .await
        .unwrap();
    let err = store
        .commit_issuance(&issuance("aa02", "IP20000001", Some(vec![1; 32])), 1_600)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::TokenNotConsumable), "{err}");
    // The refused issuance left nothing behind.
    assert!(store.certificate("aa02").await.unwrap().is_none());
    assert_eq!(store.audit_events().await.unwrap().len(), 1);
    assert_eq!(
        store.token(&[1; 32]).await.unwrap().unwrap().used_at,
        Some(1_500)
    );
}

async fn expired_token_is_not_consumed(store: &dyn Store) {
    store
        .register_devices(&[device("IP20000001")], &[])
        .await
        .unwrap();
    store
        .create_tokens(&[token(2, "IP20000001")], &[])
        .await
        .unwrap();
    let err = store
        .commit_issuance(&issuance("bb01", "IP20000001", Some(vec![2; 32])), 2_000)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::TokenNotConsumable), "{err}");
    assert!(store.certificate("bb01").await.unwrap().is_none());
}

async fn token_for_unknown_device_is_refused(store: &dyn Store) {
    let err = store
        .create_tokens(&[token(3, "IP29999999")], &[])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownDevice(_)), "{err}");
}

async fn issued_certificate_is_found_by_key_and_device(store: &dyn Store) {
    store
        .register_devices(&[device("IP20000001")], &[])
        .await
        .unwrap();
    store
        .commit_issuance(&issuance("cc01", "IP20000001", None), 1_500)
        .await
        .unwrap();
    assert_eq!(
        store.key_holders(b"cc01").await.unwrap(),
        vec!["IP20000001".to_owned()]
    );
    let certs = store.certificates_for_device("IP20000001").await.unwrap();
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0], issuance("cc01", "IP20000001", None).certificate);
    let err = store
        .commit_issuance(&issuance("cc01", "IP20000001", None), 1_500)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::SerialCollision(_)), "{err}");
}

async fn certificate_is_superseded_at_most_once(store: &dyn Store) {
    store
        .register_devices(&[device("IP20000001")], &[])
        .await
        .unwrap();
    store
        .commit_issuance(&issuance("dd01", "IP20000001", None), 1_500)
        .await
        .unwrap();
    let mut renewal = issuance("dd02", "IP20000001", None);
    renewal.certificate.supersedes = Some("dd01".into());
    store.commit_issuance(&renewal, 1_600).await.unwrap();
    assert_eq!(
        store.successor("dd01").await.unwrap().unwrap().serial,
        "dd02"
    );
    assert!(store.successor("dd02").await.unwrap().is_none());
    let mut second = issuance("dd03", "IP20000001", None);
    second.certificate.supersedes = Some("dd01".into());
    let err = store.commit_issuance(&second, 1_700).await.unwrap_err();
    assert!(
        matches!(err, StoreError::AlreadySuperseded(ref s) if s == "dd01"),
        "{err}"
    );
    assert!(store.certificate("dd03").await.unwrap().is_none());
}

async fn status_changes_are_stored(store: &dyn Store) {
    store
        .register_devices(&[device("IP20000001")], &[])
        .await
        .unwrap();
    store
        .commit_issuance(&issuance("ee01", "IP20000001", None), 1_500)
        .await
        .unwrap();
    assert!(
        store
            .set_status(
                "ee01",
                CertificateStatus::Revoked,
                Some("keyCompromise"),
                1_600
            )
            .await
            .unwrap()
    );
    assert_eq!(
        store.certificate("ee01").await.unwrap().unwrap().status,
        CertificateStatus::Revoked
    );
    assert!(
        !store
            .set_status("ff99", CertificateStatus::Revoked, None, 1_600)
            .await
            .unwrap()
    );
}

async fn audit_events_are_chained(store: &dyn Store) {
    store.append_audit(&[event("a"), event("b")]).await.unwrap();
    store.append_audit(&[event("c")]).await.unwrap();
    let events = store.audit_events().await.unwrap();
    assert_eq!(events.len(), 3);
    let mut prev = Vec::new();
    for stored in &events {
        assert_eq!(stored.prev_hash, prev);
        assert_eq!(stored.hash, chain_hash(&prev, &stored.event));
        prev = stored.hash.clone();
    }
}

async fn checkpoints_are_kept_once_per_head_and_the_head_is_the_newest_event(store: &dyn Store) {
    assert_eq!(store.audit_head().await.unwrap(), None);
    assert_eq!(store.latest_checkpoint().await.unwrap(), None);
    store.append_audit(&[event("a"), event("b")]).await.unwrap();
    let events = store.audit_events().await.unwrap();
    let head = store.audit_head().await.unwrap().unwrap();
    assert_eq!((head.seq, &head.hash), (2, &events[1].hash));
    let checkpoint = |seq: i64, signature: u8| StoredCheckpoint {
        seq,
        head_hash: events[(seq - 1) as usize].hash.clone(),
        at: 1_000 + seq,
        signature: vec![signature; 8],
        signer_der: vec![0x30, 0x00],
    };
    assert!(store.add_checkpoint(&checkpoint(1, 1)).await.unwrap());
    assert!(store.add_checkpoint(&checkpoint(2, 2)).await.unwrap());
    // A second replica signing the same head keeps the first checkpoint.
    assert!(!store.add_checkpoint(&checkpoint(2, 9)).await.unwrap());
    assert_eq!(
        store.latest_checkpoint().await.unwrap(),
        Some(checkpoint(2, 2))
    );
    assert_eq!(
        store.checkpoints().await.unwrap(),
        vec![checkpoint(1, 1), checkpoint(2, 2)]
    );
}

async fn policy_events_are_the_policy_loads_and_changes_in_order(store: &dyn Store) {
    let policy = |action: &str, object: &str| AuditEvent {
        action: action.into(),
        object: object.into(),
        ..event("x")
    };
    store
        .append_audit(&[
            policy("policy.loaded", "policy:a.toml"),
            event("certificate.issued"),
            policy("policy.changed", "policy:a.toml"),
            policy("policy.loaded", "policy:b.toml"),
        ])
        .await
        .unwrap();
    let events = store.policy_events().await.unwrap();
    let seen: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.event.action.as_str(), e.event.object.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("policy.loaded", "policy:a.toml"),
            ("policy.changed", "policy:a.toml"),
            ("policy.loaded", "policy:b.toml"),
        ]
    );
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
}

fn station(name: &str) -> Station {
    Station {
        name: name.into(),
        products: vec![
            "example-patient-monitor".into(),
            "example-infusion-pump".into(),
        ],
        rate_limit_per_hour: Some(2),
        status: StationStatus::Active,
        created_at: 1_000,
        token: Some(StationToken {
            hash: vec![9; 32],
            expires_at: 2_000,
            used_at: None,
        }),
    }
}

fn station_issuance(serial: &str, station: &str) -> StationIssuance {
    StationIssuance {
        certificate: StationCertificate {
            serial: serial.into(),
            station: station.into(),
            not_before: 1_000,
            not_after: 9_000,
            spki_sha256: vec![8; 32],
            der: vec![0x30, 0x00],
            revoked: false,
            issued_at: 1_500,
        },
        issuer: "station".into(),
        token_hash: vec![9; 32],
        audit: event("station.certificate_issued"),
    }
}

async fn station_is_stored_once_and_its_token_consumed_once(store: &dyn Store) {
    store
        .create_station(&station("st1"), &event("station.created"))
        .await
        .unwrap();
    assert!(matches!(
        store.create_station(&station("st1"), &event("x")).await,
        Err(StoreError::StationExists(_))
    ));
    let loaded = store.station("st1").await.unwrap().unwrap();
    assert_eq!(loaded.products, station("st1").products);
    assert_eq!(loaded.rate_limit_per_hour, Some(2));
    store
        .commit_station_certificate(&station_issuance("5a01", "st1"), 1_500)
        .await
        .unwrap();
    assert!(matches!(
        store
            .commit_station_certificate(&station_issuance("5a02", "st1"), 1_600)
            .await,
        Err(StoreError::TokenNotConsumable)
    ));
    assert!(store.station_certificate("5a02").await.unwrap().is_none());
    let stored = store.station_certificate("5a01").await.unwrap().unwrap();
    assert!(!stored.revoked);
    let (joined, owner) = store.station_by_certificate("5a01").await.unwrap().unwrap();
    assert_eq!(joined, stored);
    assert_eq!(owner.name, "st1");
    assert_eq!(owner.products, loaded.products);
    assert!(
        owner.token.unwrap().used_at.is_some(),
        "the token was consumed"
    );
    assert!(
        store
            .station_by_certificate("5a02")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.stations().await.unwrap().len(), 1);
}

async fn station_quota_is_enforced_inside_the_issuance(store: &dyn Store) {
    store
        .create_station(&station("st1"), &event("station.created"))
        .await
        .unwrap();
    let devices: Vec<Device> = ["IP20000001", "IP20000002", "IP20000003"]
        .iter()
        .map(|s| device(s))
        .collect();
    store.register_devices(&devices, &[]).await.unwrap();
    let quota = StationQuota {
        station: "st1".into(),
        window_start: StationQuota::window_of(7_300),
        limit: 2,
    };
    assert_eq!(quota.window_start, 7_200);
    for (serial, device) in [("ee01", "IP20000001"), ("ee02", "IP20000002")] {
        let mut request = issuance(serial, device, None);
        request.station_quota = Some(quota.clone());
        store.commit_issuance(&request, 7_300).await.unwrap();
    }
    assert_eq!(store.station_usage("st1", 7_200).await.unwrap(), 2);
    let mut third = issuance("ee03", "IP20000003", None);
    third.station_quota = Some(quota.clone());
    assert!(matches!(
        store.commit_issuance(&third, 7_300).await,
        Err(StoreError::StationRateLimited { .. })
    ));
    assert!(
        store.certificate("ee03").await.unwrap().is_none(),
        "nothing stored"
    );
    // The next hour starts a new count.
    third.station_quota = Some(StationQuota {
        window_start: 10_800,
        ..quota
    });
    store.commit_issuance(&third, 10_900).await.unwrap();
}

async fn disabled_station_certificates_reach_the_station_crl(store: &dyn Store) {
    store
        .create_station(&station("st1"), &event("station.created"))
        .await
        .unwrap();
    store
        .commit_station_certificate(&station_issuance("5a01", "st1"), 1_500)
        .await
        .unwrap();
    let revoked = store
        .disable_station("st1", 1_700, &event("station.disabled"))
        .await
        .unwrap();
    assert_eq!(revoked, ["5a01"]);
    let loaded = store.station("st1").await.unwrap().unwrap();
    assert_eq!(loaded.status, StationStatus::Disabled);
    assert!(loaded.token.is_none());
    let snapshot = store.crl_snapshot("station").await.unwrap();
    assert_eq!(snapshot.entries.len(), 1);
    assert_eq!(snapshot.entries[0].serial, "5a01");
    assert_eq!(
        snapshot.entries[0].reason.as_deref(),
        Some("cessationOfOperation")
    );
    assert!(
        store
            .crl_snapshot("basic")
            .await
            .unwrap()
            .entries
            .is_empty()
    );
    assert!(store.revocation_of("5a01").await.unwrap().is_some());
    assert!(matches!(
        store.disable_station("nope", 1_700, &event("x")).await,
        Err(StoreError::UnknownStation(_))
    ));
}

fn certificate(serial: &str, device: &str, not_after: i64) -> Issuance {
    let mut issued = issuance(serial, device, None);
    issued.certificate.not_after = not_after;
    issued.certificate.spki_sha256 = serial.as_bytes().to_vec();
    issued
}

async fn certificates_are_searched_by_every_filter_and_paged(store: &dyn Store) {
    let mut other_lot = device("IP20000002");
    other_lot.lot = Some("L2".into());
    store
        .register_devices(&[device("IP20000001"), other_lot], &[])
        .await
        .unwrap();
    for (serial, device, not_after) in [
        ("0a", "IP20000001", 10_000),
        ("0b", "IP20000001", 50_000),
        ("0c", "IP20000002", 20_000),
        ("0d", "IP20000002", 900_000),
    ] {
        store
            .commit_issuance(&certificate(serial, device, not_after), 1_000)
            .await
            .unwrap();
    }
    store
        .set_status("0b", CertificateStatus::Revoked, None, 1_600)
        .await
        .unwrap();
    let serials = |found: Vec<CertificateRecord>| {
        found.into_iter().map(|c| c.serial).collect::<Vec<String>>()
    };
    let all = CertificateQuery {
        limit: 10,
        ..CertificateQuery::default()
    };
    let search = |query: CertificateQuery| async move {
        serials(store.search_certificates(&query).await.unwrap())
    };
    assert_eq!(search(all.clone()).await, ["0a", "0b", "0c", "0d"]);
    let by_device = CertificateQuery {
        device: Some("IP20000002".into()),
        ..all.clone()
    };
    assert_eq!(search(by_device).await, ["0c", "0d"]);
    let by_lot = CertificateQuery {
        lot: Some("L1".into()),
        ..all.clone()
    };
    assert_eq!(search(by_lot).await, ["0a", "0b"]);
    let by_product = CertificateQuery {
        product: Some("other-product".into()),
        ..all.clone()
    };
    assert!(search(by_product).await.is_empty());
    let by_status = CertificateQuery {
        status: Some(CertificateStatus::Revoked),
        ..all.clone()
    };
    assert_eq!(search(by_status).await, ["0b"]);
    let expiring = CertificateQuery {
        not_after_within: Some((15_000, 60_000)),
        ..all.clone()
    };
    assert_eq!(search(expiring).await, ["0b", "0c"]);
    let first_page = CertificateQuery {
        limit: 3,
        ..all.clone()
    };
    assert_eq!(search(first_page).await, ["0a", "0b", "0c"]);
    let next_page = CertificateQuery {
        after: Some("0c".into()),
        limit: 3,
        ..all.clone()
    };
    assert_eq!(search(next_page).await, ["0d"]);
}

fn api_key(name: &str, lookup: &str) -> OperatorRecord {
    OperatorRecord {
        name: name.into(),
        kind: OperatorKind::ApiKey,
        role: Role::Registrar,
        lookup: lookup.into(),
        secret_sha256: Some(vec![9; 32]),
        created_at: 1_000,
        revoked_at: None,
    }
}

async fn operators_are_added_found_and_revoked_once(store: &dyn Store) {
    store
        .add_operator(&api_key("mes", "k1"), &event("apikey.created"))
        .await
        .unwrap();
    let err = store
        .add_operator(&api_key("mes", "k2"), &event("apikey.created"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::OperatorExists(ref n) if n == "mes"),
        "{err}"
    );
    let found = store.operator("k1").await.unwrap().unwrap();
    assert_eq!(found, api_key("mes", "k1"));
    assert!(store.operator("k2").await.unwrap().is_none());
    assert!(
        store
            .revoke_operator("mes", 2_000, &event("apikey.revoked"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .revoke_operator("mes", 3_000, &event("apikey.revoked"))
            .await
            .unwrap()
    );
    let listed = store.operators().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].revoked_at, Some(2_000));
    let actions: Vec<String> = store
        .audit_events()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.action)
        .collect();
    assert_eq!(actions, ["apikey.created", "apikey.revoked"]);
}

async fn audit_pages_continue_after_a_sequence_number(store: &dyn Store) {
    store
        .append_audit(&[event("a"), event("b"), event("c")])
        .await
        .unwrap();
    let first = store.audit_page(0, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    let rest = store.audit_page(first[1].seq, 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].event.action, "c");
}

fn generation(name: &str, ca: &str, number: i64, status: GenerationStatus) -> GenerationRecord {
    GenerationRecord {
        name: name.into(),
        ca: ca.into(),
        generation: number,
        status,
        not_before: Some(1_000),
        not_after: Some(9_000),
        der: Some(vec![0x30, 0x00]),
        custody: KeyCustody::Sealed,
        key: Some(b"sealed".to_vec()),
        created_at: 2_000,
        changed_at: 2_000,
        links: None,
    }
}

async fn generations_roll_over_once_and_retire_once(store: &dyn Store) {
    let g1 = generation("basic", "basic", 1, GenerationStatus::Active);
    store
        .adopt_generations(std::slice::from_ref(&g1))
        .await
        .unwrap();
    // Adopting again (another replica's start) changes nothing.
    let mut changed = g1.clone();
    changed.not_after = Some(1);
    store.adopt_generations(&[changed]).await.unwrap();
    assert_eq!(store.generations().await.unwrap(), vec![g1.clone()]);

    let g2 = generation("basic-g2", "basic", 2, GenerationStatus::Active);
    store
        .activate_generation(&g2, &event("ca.rolled_over"))
        .await
        .unwrap();
    // A second rollover from G1 (a concurrent one that lost) writes nothing.
    let rival = generation("basic-g2b", "basic", 2, GenerationStatus::Active);
    assert!(matches!(
        store
            .activate_generation(&rival, &event("ca.rolled_over"))
            .await,
        Err(StoreError::GenerationConflict { expected: 1, .. })
    ));
    let stored = store.generations().await.unwrap();
    let statuses: Vec<_> = stored.iter().map(|g| (g.name.as_str(), g.status)).collect();
    assert_eq!(
        statuses,
        [
            ("basic", GenerationStatus::Retiring),
            ("basic-g2", GenerationStatus::Active)
        ]
    );
    assert_eq!(stored[1].key.as_deref(), Some(&b"sealed"[..]));

    // Pending (offline root) then activated in place: the pending row is replaced.
    let pending = generation("basic-g3", "basic", 3, GenerationStatus::Pending);
    store
        .add_pending_generation(&pending, &event("ca.rollover_pending"))
        .await
        .unwrap();
    let second = generation("basic-g4", "basic", 4, GenerationStatus::Pending);
    assert!(
        store
            .add_pending_generation(&second, &event("ca.rollover_pending"))
            .await
            .is_err()
    );
    let g3 = generation("basic-g3", "basic", 3, GenerationStatus::Active);
    store
        .activate_generation(&g3, &event("ca.rolled_over"))
        .await
        .unwrap();
    let stored = store.generations().await.unwrap();
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[2].status, GenerationStatus::Active);

    assert!(
        store
            .retire_generation("basic", 3_000, &event("ca.retired"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .retire_generation("basic", 3_001, &event("ca.retired"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .retire_generation("basic-g3", 3_001, &event("ca.retired"))
            .await
            .unwrap()
    );
    let stored = store.generations().await.unwrap();
    assert_eq!(stored[0].status, GenerationStatus::Retired);
    assert_eq!(stored[0].changed_at, 3_000);
}

async fn valid_certificates_are_counted_per_issuer(store: &dyn Store) {
    register_with_token(store, "IP-COUNT-1", 41).await;
    let mut issuance = issuance("c0a1", "IP-COUNT-1", Some(vec![41; 32]));
    issuance.certificate.issuer = "basic-g2".into();
    store.commit_issuance(&issuance, 1_500).await.unwrap();
    let counts = store.valid_by_issuer(1_600).await.unwrap();
    let g2 = counts.iter().find(|c| c.issuer == "basic-g2").unwrap();
    assert_eq!((g2.valid, g2.unexpired), (1, 1));
    assert_eq!(g2.last_not_after, issuance.certificate.not_after);
    assert!(store.has_unexpired("basic-g2", 1_600).await.unwrap());
    assert!(!store.has_unexpired("basic-g7", 1_600).await.unwrap());
    // Past its notAfter nothing is counted.
    let later = store
        .valid_by_issuer(issuance.certificate.not_after)
        .await
        .unwrap();
    assert!(later.iter().all(|c| c.issuer != "basic-g2"));
    assert!(
        !store
            .has_unexpired("basic-g2", issuance.certificate.not_after)
            .await
            .unwrap()
    );
}

macro_rules! storage_suite {
    ($open:expr) => {
        storage_suite!(@tests $open;
            register_is_all_or_nothing,
            tpm_roots_are_added_once_listed_and_removed,
            challenge_is_consumed_once_by_a_committed_issuance,
            expired_or_foreign_challenge_is_not_consumed,
            a_second_tpm_is_refused_and_its_challenge_left_unused,
            one_challenge_serves_one_issuance_of_a_batch,
            expired_challenges_are_purged_when_a_new_one_is_stored,
            token_is_consumed_once,
            expired_token_is_not_consumed,
            token_for_unknown_device_is_refused,
            issued_certificate_is_found_by_key_and_device,
            certificate_is_superseded_at_most_once,
            status_changes_are_stored,
            audit_events_are_chained,
            checkpoints_are_kept_once_per_head_and_the_head_is_the_newest_event,
            policy_events_are_the_policy_loads_and_changes_in_order,
            station_is_stored_once_and_its_token_consumed_once,
            station_quota_is_enforced_inside_the_issuance,
            disabled_station_certificates_reach_the_station_crl,
            certificates_are_searched_by_every_filter_and_paged,
            operators_are_added_found_and_revoked_once,
            audit_pages_continue_after_a_sequence_number,
            batch_writes_the_admitted_and_refuses_the_rest,
            batch_counts_station_quota_per_issuance,
            one_key_certifies_one_device_within_a_batch,
            one_key_certifies_one_device_across_batches,
            second_initial_certificate_of_a_device_is_refused,
            failed_batch_writes_nothing_and_is_retried_one_by_one,
            batch_with_an_unregistered_device_fails_at_commit_and_is_retried,
            batch_refused_whole_writes_nothing_and_the_next_commits,
            consecutive_token_batches_consume_and_chain,
            token_batch_with_one_used_token_refuses_only_it,
            batch_after_an_outside_audit_event_chains_after_it,
            enrollment_facts_gather_device_token_key_and_held_certificate,
            many_certificates_change_state_in_one_transaction,
            certificate_states_answer_in_order_with_revocation_details,
            inventory_counts_devices_and_certificates_by_product_and_status,
            devices_are_listed_by_filter_with_their_newest_certificate_and_paged,
            tokens_are_revoked_once_and_a_revoked_token_is_never_consumed,
            station_activity_sums_the_quota_windows_since_a_time,
            sessions_expire_when_idle_and_are_deleted_once,
            console_reads_group_issuance_expiry_and_events,
            generations_roll_over_once_and_retire_once,
            valid_certificates_are_counted_per_issuer);
    };
    (@tests $open:expr; $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some((_guard, store)) = $open.await else { return };
                super::$name(&store).await;
            }
        )*
    };
}

mod sqlite {
    use super::super::SqliteStore;

    async fn open() -> Option<(tempfile::TempDir, SqliteStore)> {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("ca.db")).await.unwrap();
        Some((dir, store))
    }

    storage_suite!(open());

    fn wal_size(dir: &tempfile::TempDir) -> u64 {
        std::fs::metadata(dir.path().join("ca.db-wal"))
            .map(|m| m.len())
            .unwrap_or(0)
    }

    /// The writer's commits leave checkpointing to the checkpointer; once it has copied the
    /// WAL, the next commit starts the WAL over, so under steady commits the file stops growing
    /// (without the checkpointer it grows by every batch).
    #[tokio::test]
    async fn wal_stops_growing_under_steady_commits() {
        use crate::storage::Store;
        let (dir, store) = open().await.unwrap();
        store
            .register_devices(&[super::device("IP20000001")], &[])
            .await
            .unwrap();
        let mut sizes = Vec::new();
        for round in 0..8 {
            let batch: Vec<_> = (0..40)
                .map(|n| {
                    let mut issuance =
                        super::issuance(&format!("{round:02x}{n:02x}"), "IP20000001", None);
                    issuance.certificate.der = vec![round; 1_000];
                    issuance
                })
                .collect();
            let verdicts = store.commit_issuances(&batch, 1_500).await;
            assert!(verdicts.iter().all(Result::is_ok));
            // Longer than the checkpointer's pause and its work.
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            sizes.push(wal_size(&dir));
        }
        assert!(sizes[1] > 0, "the writer writes through the WAL: {sizes:?}");
        assert!(
            sizes[7] < 2 * sizes[1],
            "the WAL kept growing: {sizes:?} bytes after each round"
        );
        assert_eq!(
            store.certificate("0727").await.unwrap().unwrap().der,
            vec![7; 1_000]
        );
    }
}

mod postgres {
    use super::super::PostgresStore;
    use crate::storage::testing::{TestDatabase, create};

    async fn open() -> Option<(TestDatabase, PostgresStore)> {
        let database = create().await?;
        let store = PostgresStore::connect(&database.url).await.unwrap();
        Some((database, store))
    }

    storage_suite!(open());
}
