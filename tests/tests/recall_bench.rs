//! How long a recall of 100,000 devices takes (README "Recalls"). Ignored by default: run with
//! `cargo nextest run -p iomt-tests --test recall_bench --run-ignored only --no-capture`
//! (`RECALL_BENCH_DEVICES=N` for another size). The registry is filled directly through the
//! store (one valid certificate per device, written by the group commit's batch path); the
//! recall itself is the real service: batches of 500, an audit event per certificate, the
//! Basic CRL republished once. Prints figures; asserts only that every certificate was held.

use std::sync::Arc;
use std::time::Instant;

use ca_server::operations::{Batches, RecallRequest, Recalls};
use ca_server::storage::{
    AuditEvent, CertificateRecord, CertificateStatus, Device, DeviceStatus, Issuance, MAX_BATCH,
    RecallAction, RecallQuery,
};
use iomt_core::policy::PolicySet;
use iomt_tests::{PUMP, TestApp};

fn device(i: usize) -> Device {
    Device {
        serial: format!("IP2{i:07}"),
        product: PUMP.to_owned(),
        gtin: "00850000000017".to_owned(),
        lot: Some("LOT-BENCH".to_owned()),
        status: DeviceStatus::Active,
        registered_at: 1_700_000_000,
    }
}

fn issuance(i: usize, now: i64) -> Issuance {
    let serial = format!("7{i:031x}");
    Issuance {
        certificate: CertificateRecord {
            serial: serial.clone(),
            issuer: "basic".to_owned(),
            device_serial: format!("IP2{i:07}"),
            product: PUMP.to_owned(),
            policy_oid: "1.3.6.1.4.1.32473.7.1.1".to_owned(),
            not_before: now - 60,
            not_after: now + 300 * 86_400,
            spki_sha256: ring_free_digest(i),
            der: vec![0x30, 0x00],
            status: CertificateStatus::Valid,
            authorized_by: "token".to_owned(),
            supersedes: None,
            issued_at: now,
        },
        consume_token: None,
        station_quota: None,
        initial: false,
        attestation: None,
        audit: AuditEvent {
            at: now,
            actor: "bench".to_owned(),
            action: "certificate.issued".to_owned(),
            object: format!("certificate:{serial}"),
            details: "{}".to_owned(),
        },
    }
}

/// 32 distinct bytes per device (a stand-in for an SPKI hash).
fn ring_free_digest(i: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; 32];
    bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly"]
async fn recall_of_100k_devices() {
    let count: usize = std::env::var("RECALL_BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let app = TestApp::spawn().await;
    let store = app.authority.shared_store();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let started = Instant::now();
    let devices: Vec<Device> = (0..count).map(device).collect();
    for chunk in devices.chunks(10_000) {
        store.register_devices(chunk, &[]).await.unwrap();
    }
    let issuances: Vec<Issuance> = (0..count).map(|i| issuance(i, now)).collect();
    for chunk in issuances.chunks(MAX_BATCH) {
        for verdict in store.commit_batch(chunk, now).await.unwrap() {
            verdict.unwrap();
        }
    }
    eprintln!(
        "filled {count} devices and certificates in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let policies = PolicySet::load_dir(&app.data_dir().join("policies")).unwrap();
    let recalls = Recalls::new(store.clone(), app.revocation.clone(), Arc::new(policies));
    let request = RecallRequest {
        query: RecallQuery {
            product: PUMP.to_owned(),
            lot: Some("LOT-BENCH".to_owned()),
            registered_before: None,
        },
        action: RecallAction::Hold,
        reason: None,
    };
    let start = Instant::now();
    let plan = recalls.plan(&request).await.unwrap();
    let planned = start.elapsed().as_secs_f64();
    assert_eq!(plan.certificates(), count as u64);
    let start = Instant::now();
    let outcome = recalls
        .run(&request, "operator:bench", Batches::default())
        .await
        .unwrap();
    let held = start.elapsed().as_secs_f64();
    assert_eq!(outcome.recall.certificates, count as u64);
    let start = Instant::now();
    let released = recalls
        .release(outcome.recall.id, "operator:bench")
        .await
        .unwrap();
    let release = start.elapsed().as_secs_f64();
    assert_eq!(released.certificates, count as u64);
    eprintln!(
        "recall of {count} devices: dry run {planned:.2} s; hold {held:.1} s ({:.0} certificates/s, \
         batches of {}, CRL of {count} entries republished once); release {release:.1} s",
        count as f64 / held,
        Batches::default().size,
    );
    app.stop().await;
}
