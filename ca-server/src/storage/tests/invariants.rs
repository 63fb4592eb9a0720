//! The CA's invariants at commit: one key, one device; one valid initial certificate per
//! device. Decided under the write lock, within a batch and across batches, so concurrent
//! requests cannot both slip past a read made before the commit.

use super::*;

/// An initial enrollment of `device` for key `key`, consuming token `[token; 32]`.
fn initial(serial: &str, device: &str, key: &[u8], token: u8) -> Issuance {
    let mut request = issuance(serial, device, Some(vec![token; 32]));
    request.certificate.spki_sha256 = key.to_vec();
    request.initial = true;
    request
}

async fn register_three(store: &dyn Store) {
    for (n, serial) in ["IP20000001", "IP20000002", "IP20000003"]
        .iter()
        .enumerate()
    {
        register_with_token(store, serial, n as u8 + 1).await;
    }
}

/// The token of an issuance refused at commit stays unused.
async fn assert_unused(store: &dyn Store, token: u8) {
    let record = store.token(&[token; 32]).await.unwrap().unwrap();
    assert_eq!(record.used_at, None, "token {token} must stay unused");
}

pub(super) async fn one_key_certifies_one_device_within_a_batch(store: &dyn Store) {
    register_three(store).await;
    let batch = [
        initial("k1", "IP20000001", b"shared", 1),
        initial("k2", "IP20000002", b"shared", 2),
        initial("k3", "IP20000003", b"own", 3),
    ];
    let verdicts = store.commit_issuances(&batch, 1_500).await;
    assert!(verdicts[0].is_ok() && verdicts[2].is_ok(), "{verdicts:?}");
    assert!(
        matches!(&verdicts[1], Err(StoreError::KeyHeld { holder }) if holder == "IP20000001"),
        "{verdicts:?}"
    );
    assert!(store.certificate("k2").await.unwrap().is_none());
    assert_unused(store, 2).await;
}

pub(super) async fn one_key_certifies_one_device_across_batches(store: &dyn Store) {
    register_three(store).await;
    store
        .commit_issuance(&initial("k1", "IP20000001", b"shared", 1), 1_500)
        .await
        .unwrap();
    let refused = store
        .commit_issuance(&initial("k2", "IP20000002", b"shared", 2), 1_500)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, StoreError::KeyHeld { holder } if holder == "IP20000001"),
        "{refused}"
    );
    assert_unused(store, 2).await;
    // A revoked certificate still holds its key: a compromised key never certifies again.
    store
        .set_status("k1", CertificateStatus::Revoked, None, 1_550)
        .await
        .unwrap();
    assert!(matches!(
        store
            .commit_issuance(&initial("k3", "IP20000003", b"shared", 3), 1_600)
            .await,
        Err(StoreError::KeyHeld { .. })
    ));
    // A renewal of another device with that key is refused as well.
    let mut renewal = issuance("k4", "IP20000002", None);
    renewal.certificate.spki_sha256 = b"shared".to_vec();
    assert!(matches!(
        store.commit_issuance(&renewal, 1_600).await,
        Err(StoreError::KeyHeld { .. })
    ));
}

pub(super) async fn second_initial_certificate_of_a_device_is_refused(store: &dyn Store) {
    register_three(store).await;
    store
        .create_tokens(&[token(9, "IP20000001")], &[])
        .await
        .unwrap();
    // Two initial enrollments of one device in one batch (its token and a station): one wins.
    let mut by_station = initial("d2", "IP20000001", b"key-2", 0);
    by_station.consume_token = None;
    by_station.certificate.authorized_by = "station:st1".into();
    let batch = [initial("d1", "IP20000001", b"key-1", 1), by_station];
    let verdicts = store.commit_issuances(&batch, 1_500).await;
    assert!(verdicts[0].is_ok(), "{verdicts:?}");
    assert!(
        matches!(&verdicts[1], Err(StoreError::DeviceHoldsCertificate(d)) if d == "IP20000001"),
        "{verdicts:?}"
    );
    // A later one, with another token of the device, is refused and its token left unused.
    assert!(matches!(
        store
            .commit_issuance(&initial("d3", "IP20000001", b"key-3", 9), 1_600)
            .await,
        Err(StoreError::DeviceHoldsCertificate(_))
    ));
    assert_unused(store, 9).await;
    // A renewal is not an initial enrollment.
    let mut renewal = issuance("d4", "IP20000001", None);
    renewal.certificate.supersedes = Some("d1".into());
    store.commit_issuance(&renewal, 1_600).await.unwrap();
    // Once every certificate is revoked (re-provisioning), the device may enroll again.
    store
        .change_status_many(
            &["d1".into(), "d4".into()],
            CertificateStatus::Revoked,
            None,
            1_700,
            &[],
        )
        .await
        .unwrap();
    store
        .commit_issuance(&initial("d5", "IP20000001", b"key-5", 9), 1_800)
        .await
        .unwrap();
}
