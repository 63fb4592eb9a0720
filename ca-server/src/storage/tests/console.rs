//! Console sessions and the console's reads, on every backend.

use super::*;

fn session(id: u8, last_seen_at: i64) -> ConsoleSession {
    ConsoleSession {
        id_sha256: vec![id; 32],
        operator: "qa".into(),
        kind: OperatorKind::ApiKey,
        role: Role::Auditor,
        lookup: "0123456789abcdef".into(),
        created_at: last_seen_at,
        last_seen_at,
    }
}

/// A session is found while fresh (and touched), never after its idle limit, and deleted once;
/// sign-in and sign-out are chained into the audit trail.
pub(super) async fn sessions_expire_when_idle_and_are_deleted_once(store: &dyn Store) {
    store
        .create_session(&session(1, 1_000), &event("console.signed_in"))
        .await
        .unwrap();
    store
        .create_session(&session(2, 1_000), &event("console.signed_in"))
        .await
        .unwrap();
    // Seen at 1_000; idle limit 100 s: alive at 1_050, touched to 1_050.
    let found = store.touch_session(&[1; 32], 950, 1_050).await.unwrap();
    assert_eq!(found.map(|s| s.last_seen_at), Some(1_050));
    // At 1_140 it was seen 90 s ago: still alive. Session 2 (seen at 1_000) is not.
    assert!(
        store
            .touch_session(&[1; 32], 1_040, 1_140)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .touch_session(&[2; 32], 1_040, 1_140)
            .await
            .unwrap()
            .is_none()
    );
    // An expired session is not revived by a later, laxer look either: it was not touched.
    assert!(
        store
            .touch_session(&[9; 32], 0, 1_140)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.delete_idle_sessions(1_040).await.unwrap(), 1);
    assert!(
        store
            .touch_session(&[2; 32], 0, 1_150)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .delete_session(&[1; 32], &event("console.signed_out"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_session(&[1; 32], &event("console.signed_out"))
            .await
            .unwrap()
    );
    assert!(
        store
            .touch_session(&[1; 32], 0, 1_200)
            .await
            .unwrap()
            .is_none()
    );
    let actions: Vec<String> = store
        .audit_events()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event.action)
        .collect();
    assert_eq!(
        actions,
        [
            "console.signed_in",
            "console.signed_in",
            "console.signed_out"
        ]
    );
}

/// Issuance per hour groups by hour, product and channel; expiry per day counts valid
/// certificates only; each station's last issuance and a device's audit events are found.
pub(super) async fn console_reads_group_issuance_expiry_and_events(store: &dyn Store) {
    store
        .register_devices(&[device("IP20000001"), device("IP20000002")], &[])
        .await
        .unwrap();
    let mut a = issuance("c001", "IP20000001", None);
    a.certificate.issued_at = 7_200 + 10;
    a.certificate.not_after = 86_400 * 3 + 5;
    a.certificate.authorized_by = "station:line1".into();
    let mut b = issuance("c002", "IP20000001", None);
    b.certificate.issued_at = 7_200 + 20;
    b.certificate.supersedes = Some("c001".into());
    b.certificate.not_after = 86_400 * 3 + 50;
    b.certificate.authorized_by = "certificate:c001".into();
    let mut c = issuance("c003", "IP20000002", None);
    c.certificate.issued_at = 3_600 * 5;
    c.certificate.not_after = 86_400 * 4 + 1;
    c.certificate.authorized_by = "station:line1".into();
    for issued in [&a, &b, &c] {
        store.commit_issuance(issued, 1_500).await.unwrap();
    }
    store
        .set_status(
            "c003",
            CertificateStatus::Revoked,
            Some("keyCompromise"),
            20_000,
        )
        .await
        .unwrap();
    let hours = store.issued_per_hour(3_600).await.unwrap();
    let rows: Vec<(i64, &str, u64)> = hours
        .iter()
        .map(|h| (h.hour, h.channel.as_str(), h.certificates))
        .collect();
    assert_eq!(
        rows,
        [
            (7_200, "renewal", 1),
            (7_200, "station:line1", 1),
            (18_000, "station:line1", 1)
        ]
    );
    assert!(hours.iter().all(|h| h.product == "example-infusion-pump"));
    assert_eq!(store.issued_per_hour(10_000).await.unwrap().len(), 1);
    let days = store.expiring_per_day(0, 86_400 * 10).await.unwrap();
    assert_eq!(days.len(), 1, "{days:?}");
    assert_eq!((days[0].day, days[0].certificates), (86_400 * 3, 2));
    assert_eq!(
        store.station_last_issued().await.unwrap(),
        [("line1".to_owned(), 18_000)]
    );
    let mut about = event("certificate.revoked");
    about.object = "certificate:c003".into();
    let mut other = event("device.registered");
    other.object = "device:IP20000001".into();
    store.append_audit(&[about, other]).await.unwrap();
    let events = store
        .audit_events_about(&["device:IP20000002".into(), "certificate:c003".into()], 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.object, "certificate:c003");
    assert!(store.audit_events_about(&[], 10).await.unwrap().is_empty());
}
