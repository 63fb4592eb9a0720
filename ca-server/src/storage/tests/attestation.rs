//! TPM roots, attestation challenges and TPM bindings: the challenge is consumed and the device
//! bound only by an issuance that commits; a refused one leaves both as they were.

use super::*;

fn challenge(n: u8, serial: &str, ek: u8) -> ChallengeRecord {
    ChallengeRecord {
        secret_sha256: vec![n; 32],
        device_serial: serial.into(),
        ek_sha256: vec![ek; 32],
        ak_public: vec![1, 2, 3],
        created_at: 1_000,
        expires_at: 2_000,
        used_at: None,
    }
}

fn attested(serial: &str, device: &str, challenge: u8, ek: u8) -> Issuance {
    let mut issuance = issuance(serial, device, None);
    issuance.attestation = Some(AttestationClaim {
        challenge_sha256: vec![challenge; 32],
        ek_sha256: vec![ek; 32],
        hw_serial: format!("00001014:AA:{ek:02X}"),
    });
    issuance
}

/// Registers `devices` and stores one challenge per `(secret byte, device, EK byte)`, made at 0.
async fn seed(store: &dyn Store, devices: &[&str], challenges: &[(u8, &str, u8)]) {
    let devices: Vec<_> = devices.iter().map(|serial| device(serial)).collect();
    store.register_devices(&devices, &[]).await.unwrap();
    for (secret, serial, ek) in challenges {
        store
            .insert_challenge(&challenge(*secret, serial, *ek), 0)
            .await
            .unwrap();
    }
}

/// When the challenge with secret byte `n` was used, if it was.
async fn used_at(store: &dyn Store, n: u8) -> Option<i64> {
    store.challenge(&[n; 32]).await.unwrap().unwrap().used_at
}

/// The TPM `serial` is bound to.
async fn binding(store: &dyn Store, serial: &str) -> TpmBinding {
    store.device_tpm(serial).await.unwrap().expect("a binding")
}

pub(super) async fn tpm_roots_are_added_once_listed_and_removed(store: &dyn Store) {
    let root = |n: u8| TpmRoot {
        sha256: vec![n; 32],
        subject: format!("CN=root {n}"),
        der: vec![0x30, n],
        added_at: 1_000 + i64::from(n),
    };
    let added = store
        .add_tpm_roots(
            &[root(1), root(2)],
            &[event("tpm_root.added"), event("tpm_root.added")],
        )
        .await
        .unwrap();
    assert_eq!(added, vec![vec![1; 32], vec![2; 32]]);
    // Adding again changes nothing and audits nothing.
    let again = store
        .add_tpm_roots(&[root(1)], &[event("tpm_root.added")])
        .await
        .unwrap();
    assert!(again.is_empty());
    assert_eq!(store.audit_events().await.unwrap().len(), 2);
    assert_eq!(store.tpm_roots().await.unwrap(), vec![root(1), root(2)]);
    assert!(
        store
            .remove_tpm_root(&[1; 32], &event("tpm_root.removed"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .remove_tpm_root(&[1; 32], &event("tpm_root.removed"))
            .await
            .unwrap()
    );
    assert_eq!(store.tpm_roots().await.unwrap(), vec![root(2)]);
    assert_eq!(store.audit_events().await.unwrap().len(), 3);
}

pub(super) async fn challenge_is_consumed_once_by_a_committed_issuance(store: &dyn Store) {
    seed(store, &["IP20000001"], &[(7, "IP20000001", 9)]).await;
    store
        .commit_issuance(&attested("aa01", "IP20000001", 7, 9), 1_500)
        .await
        .unwrap();
    let stored = store.challenge(&[7; 32]).await.unwrap().unwrap();
    assert_eq!(stored.used_at, Some(1_500));
    let bound = binding(store, "IP20000001").await;
    assert_eq!((bound.ek_sha256, bound.bound_at), (vec![9; 32], 1_500));
    // Replayed: refused, nothing written.
    let err = store
        .commit_issuance(&attested("aa02", "IP20000001", 7, 9), 1_600)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ChallengeNotConsumable), "{err}");
    assert!(store.certificate("aa02").await.unwrap().is_none());
    assert_eq!(store.audit_events().await.unwrap().len(), 1);
}

pub(super) async fn expired_or_foreign_challenge_is_not_consumed(store: &dyn Store) {
    seed(
        store,
        &["IP20000001", "IP20000002"],
        &[(7, "IP20000001", 9)],
    )
    .await;
    // Another device's challenge.
    let err = store
        .commit_issuance(&attested("aa01", "IP20000002", 7, 9), 1_500)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ChallengeNotConsumable), "{err}");
    // Past its expiry.
    let err = store
        .commit_issuance(&attested("aa02", "IP20000001", 7, 9), 2_000)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ChallengeNotConsumable), "{err}");
    assert_eq!(used_at(store, 7).await, None);
    assert!(store.device_tpm("IP20000001").await.unwrap().is_none());
}

pub(super) async fn a_second_tpm_is_refused_and_its_challenge_left_unused(store: &dyn Store) {
    seed(
        store,
        &["IP20000001"],
        &[
            (1, "IP20000001", 9),
            (2, "IP20000001", 8),
            (3, "IP20000001", 9),
        ],
    )
    .await;
    store
        .commit_issuance(&attested("aa01", "IP20000001", 1, 9), 1_500)
        .await
        .unwrap();
    let err = store
        .commit_issuance(&attested("aa02", "IP20000001", 2, 8), 1_600)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::BoundToOtherTpm { .. }), "{err}");
    assert_eq!(used_at(store, 2).await, None);
    // The same TPM again (a renewal) keeps the first binding.
    store
        .commit_issuance(&attested("aa03", "IP20000001", 3, 9), 1_700)
        .await
        .unwrap();
    assert_eq!(binding(store, "IP20000001").await.bound_at, 1_500);
    // Re-provisioning unbinds; then another TPM may bind.
    let unbound = store.unbind_tpm("IP20000001").await.unwrap().unwrap();
    assert_eq!(unbound.ek_sha256, vec![9; 32]);
    store
        .commit_issuance(&attested("aa04", "IP20000001", 2, 8), 1_800)
        .await
        .unwrap();
    assert_eq!(binding(store, "IP20000001").await.ek_sha256, vec![8; 32]);
}

pub(super) async fn one_challenge_serves_one_issuance_of_a_batch(store: &dyn Store) {
    seed(store, &["IP20000001"], &[(5, "IP20000001", 9)]).await;
    let batch = [
        attested("aa01", "IP20000001", 5, 9),
        attested("aa02", "IP20000001", 5, 9),
    ];
    let verdicts = store.commit_batch(&batch, 1_500).await.unwrap();
    assert!(verdicts[0].is_ok(), "{:?}", verdicts[0]);
    assert!(
        matches!(verdicts[1], Err(StoreError::ChallengeNotConsumable)),
        "{:?}",
        verdicts[1]
    );
    assert!(store.certificate("aa02").await.unwrap().is_none());
}

pub(super) async fn expired_challenges_are_purged_when_a_new_one_is_stored(store: &dyn Store) {
    seed(store, &["IP20000001"], &[(1, "IP20000001", 9)]).await;
    store
        .insert_challenge(&challenge(2, "IP20000001", 9), 2_001)
        .await
        .unwrap();
    assert!(store.challenge(&[1; 32]).await.unwrap().is_none());
    assert!(store.challenge(&[2; 32]).await.unwrap().is_some());
}
