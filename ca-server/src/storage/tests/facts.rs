//! The one-query read of an enrollment decision returns what the single lookups would.

use super::*;

pub(super) async fn enrollment_facts_gather_device_token_key_and_held_certificate(
    store: &dyn Store,
) {
    let query = |serial: &str, token: Option<&[u8]>, spki: Option<&[u8]>| FactsQuery {
        serial: serial.into(),
        token_hash: token.map(<[u8]>::to_vec),
        spki_sha256: spki.map(<[u8]>::to_vec),
        now: 1_600,
    };
    let facts = |query: FactsQuery| async move {
        store.enrollment_facts(&[query]).await.unwrap().remove(0)
    };
    let nothing = facts(query("IP20000001", Some(&[1; 32]), Some(&[7; 32]))).await;
    assert_eq!(nothing, EnrollmentFacts::default());

    store
        .register_devices(&[device("IP20000001"), device("IP20000002")], &[])
        .await
        .unwrap();
    store
        .create_tokens(&[token(1, "IP20000001")], &[])
        .await
        .unwrap();
    let fresh = facts(query("IP20000001", Some(&[1; 32]), Some(&[7; 32]))).await;
    assert_eq!(fresh.device, store.device("IP20000001").await.unwrap());
    assert_eq!(fresh.token, store.token(&[1; 32]).await.unwrap());
    assert_eq!(
        (fresh.key_holder, fresh.held, fresh.is_station),
        (None, None, false)
    );

    // IP20000001 now holds a certificate for key `f1` (the fixture's key), valid until 5_000.
    store
        .commit_issuance(&issuance("f1", "IP20000001", Some(vec![1; 32])), 1_500)
        .await
        .unwrap();
    let enrolled = facts(query("IP20000001", Some(&[1; 32]), Some(b"f1"))).await;
    assert_eq!(enrolled.token.unwrap().used_at, Some(1_500));
    assert_eq!(enrolled.key_holder.as_deref(), Some("IP20000001"));
    assert_eq!(
        enrolled.held,
        Some(HeldCertificate {
            serial: "f1".into(),
            authorized_by: "token".into()
        })
    );
    // Another device asking with the same key sees the holder, but holds nothing itself; a
    // token that is not presented is not looked up.
    let other = facts(query("IP20000002", None, Some(b"f1"))).await;
    assert_eq!(other.key_holder.as_deref(), Some("IP20000001"));
    assert_eq!((other.held, other.token), (None, None));

    // Revoked or expired certificates are no longer held.
    store
        .set_status("f1", CertificateStatus::Revoked, None, 1_550)
        .await
        .unwrap();
    let revoked = facts(query("IP20000001", None, None)).await;
    assert_eq!((revoked.held, revoked.key_holder), (None, None));

    store
        .create_station(&station("st1"), &event("station.created"))
        .await
        .unwrap();
    let station = facts(query("st1", None, None)).await;
    assert!(station.is_station && station.device.is_none());

    // Several lookups in one query answer in order, each as if asked alone.
    let queries = [
        query("st1", None, None),
        query("IP20000002", None, Some(b"f1")),
        query("IP29999999", Some(&[1; 32]), None),
        query("IP20000001", Some(&[1; 32]), Some(b"f1")),
    ];
    let together = store.enrollment_facts(&queries).await.unwrap();
    let mut alone = Vec::new();
    for q in &queries {
        alone.push(facts(q.clone()).await);
    }
    assert_eq!(together, alone);
    assert!(together[0].is_station);
    assert_eq!(together[2].device, None);
    assert_eq!(
        together[2].token.as_ref().unwrap().device_serial,
        "IP20000001"
    );
}

pub(super) async fn certificate_states_answer_in_order_with_revocation_details(store: &dyn Store) {
    store
        .register_devices(&[device("IP20000001")], &[])
        .await
        .unwrap();
    for serial in ["s1", "s2"] {
        store
            .commit_issuance(&issuance(serial, "IP20000001", None), 1_500)
            .await
            .unwrap();
    }
    store
        .set_status(
            "s2",
            CertificateStatus::Revoked,
            Some("keyCompromise"),
            1_600,
        )
        .await
        .unwrap();
    let asked: Vec<String> = ["s2", "zz", "s1", "s2"].map(String::from).to_vec();
    let states = store.certificate_states(&asked).await.unwrap();
    assert_eq!(states.len(), 4);
    let revoked = states[0].as_ref().unwrap();
    assert_eq!(
        (
            revoked.status,
            revoked.revoked_at,
            revoked.reason.as_deref()
        ),
        (
            CertificateStatus::Revoked,
            Some(1_600),
            Some("keyCompromise")
        )
    );
    assert_eq!(revoked.issuer, "basic");
    assert!(states[1].is_none());
    assert_eq!(states[2].as_ref().unwrap().status, CertificateStatus::Valid);
    assert_eq!(states[3], states[0]);
    assert!(store.certificate_states(&[]).await.unwrap().is_empty());
}
