//! The fleet inventory's reads and token revocation, on every backend.

use super::*;

/// Three pumps (two in lot L1, one in L2, one of L1 disabled) and a monitor; certificates in
/// every state. Returns nothing: the tests read it back.
async fn fleet(store: &dyn Store) {
    let mut devices = vec![
        device("IP20000001"),
        device("IP20000002"),
        device("IP20000003"),
    ];
    devices[1].status = DeviceStatus::Disabled;
    devices[2].lot = Some("L2".into());
    let mut monitor = device("PM70000001");
    monitor.product = "example-patient-monitor".into();
    devices.push(monitor);
    store.register_devices(&devices, &[]).await.unwrap();
    // IP…1: an old certificate superseded by a valid one expiring soon (t = 5_000).
    let mut old = issuance("c001", "IP20000001", None);
    old.certificate.issued_at = 1_100;
    store.commit_issuance(&old, 1_100).await.unwrap();
    let mut renewed = issuance("c002", "IP20000001", None);
    renewed.certificate.supersedes = Some("c001".into());
    store.commit_issuance(&renewed, 1_500).await.unwrap();
    // IP…3: held. The monitor: valid for long, and a revoked one.
    store
        .commit_issuance(&issuance("c003", "IP20000003", None), 1_500)
        .await
        .unwrap();
    store
        .set_status(
            "c003",
            CertificateStatus::OnHold,
            Some("certificateHold"),
            1_600,
        )
        .await
        .unwrap();
    let mut long = issuance("c004", "PM70000001", None);
    long.certificate.product = "example-patient-monitor".into();
    long.certificate.not_after = 100_000_000;
    store.commit_issuance(&long, 1_500).await.unwrap();
    let mut revoked = issuance("c005", "PM70000001", None);
    revoked.certificate.product = "example-patient-monitor".into();
    revoked.certificate.issued_at = 1_400;
    store.commit_issuance(&revoked, 1_500).await.unwrap();
    store
        .set_status(
            "c005",
            CertificateStatus::Revoked,
            Some("keyCompromise"),
            1_600,
        )
        .await
        .unwrap();
}

pub(super) async fn inventory_counts_devices_and_certificates_by_product_and_status(
    store: &dyn Store,
) {
    fleet(store).await;
    // At t = 2_000 the c00x certificates (not_after 5_000) expire within 30 days.
    let devices = store.device_counts(2_000).await.unwrap();
    let pump = |status| {
        devices
            .iter()
            .find(|d| d.product == "example-infusion-pump" && d.status == status)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        (
            pump(DeviceStatus::Active).devices,
            pump(DeviceStatus::Active).enrolled
        ),
        (2, 1)
    );
    assert_eq!(pump(DeviceStatus::Disabled).devices, 1);
    let monitor = devices
        .iter()
        .find(|d| d.product == "example-patient-monitor")
        .unwrap();
    assert_eq!((monitor.devices, monitor.enrolled), (1, 1));

    let certificates = store.certificate_counts(2_000).await.unwrap();
    let row = |product: &str, status| {
        certificates
            .iter()
            .find(|c| c.product == product && c.status == status)
            .cloned()
            .unwrap()
    };
    let valid_pumps = row("example-infusion-pump", CertificateStatus::Valid);
    assert_eq!(
        (
            valid_pumps.unexpired,
            valid_pumps.expiring_30_days,
            valid_pumps.expiring_90_days
        ),
        (2, 2, 2),
        "c001 and c002 are both still valid (renewal does not revoke)"
    );
    assert_eq!(
        row("example-infusion-pump", CertificateStatus::OnHold).unexpired,
        1
    );
    let monitors = row("example-patient-monitor", CertificateStatus::Valid);
    assert_eq!((monitors.unexpired, monitors.expiring_90_days), (1, 0));
    assert_eq!(
        row("example-patient-monitor", CertificateStatus::Revoked).unexpired,
        1
    );
    // Later, the short ones have expired.
    let later = store.certificate_counts(6_000).await.unwrap();
    let pumps = later
        .iter()
        .find(|c| c.product == "example-infusion-pump" && c.status == CertificateStatus::Valid)
        .unwrap();
    assert_eq!(
        (pumps.unexpired, pumps.expired, pumps.expiring_30_days),
        (0, 2, 0)
    );
}

pub(super) async fn devices_are_listed_by_filter_with_their_newest_certificate_and_paged(
    store: &dyn Store,
) {
    fleet(store).await;
    let all = |after: Option<&str>, limit| DeviceQuery {
        product: None,
        lot: None,
        status: None,
        after: after.map(str::to_owned),
        limit,
    };
    let first = store.devices_page(&all(None, 2)).await.unwrap();
    let serials: Vec<&str> = first.iter().map(|d| d.device.serial.as_str()).collect();
    assert_eq!(serials, ["IP20000001", "IP20000002"]);
    let newest = first[0].certificate.clone().unwrap();
    assert_eq!(
        (newest.serial.as_str(), newest.status),
        ("c002", CertificateStatus::Valid)
    );
    assert_eq!(first[1].certificate, None, "IP20000002 never enrolled");
    let rest = store
        .devices_page(&all(Some("IP20000002"), 2))
        .await
        .unwrap();
    let serials: Vec<&str> = rest.iter().map(|d| d.device.serial.as_str()).collect();
    assert_eq!(serials, ["IP20000003", "PM70000001"]);
    assert_eq!(
        rest[0].certificate.as_ref().unwrap().status,
        CertificateStatus::OnHold
    );
    assert_eq!(
        rest[1].certificate.as_ref().unwrap().serial,
        "c004",
        "newest by issue time"
    );

    let filtered = store
        .devices_page(&DeviceQuery {
            product: Some("example-infusion-pump".into()),
            lot: Some("L1".into()),
            status: Some(DeviceStatus::Active),
            after: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0].device.serial, "IP20000001");
}

pub(super) async fn tokens_are_revoked_once_and_a_revoked_token_is_never_consumed(
    store: &dyn Store,
) {
    register_with_token(store, "IP20000001", 1).await;
    let mut used = token(2, "IP20000001");
    used.created_at = 900;
    store.create_tokens(&[used], &[]).await.unwrap();
    store
        .commit_issuance(&issuance("aa01", "IP20000001", Some(vec![2; 32])), 1_100)
        .await
        .unwrap();
    let before = store.audit_events().await.unwrap().len();

    assert_eq!(
        store
            .revoke_tokens("IP20000001", 1_200, &event("token.revoked"))
            .await
            .unwrap(),
        1
    );
    let tokens = store.device_tokens("IP20000001").await.unwrap();
    assert_eq!(tokens.len(), 2);
    assert_eq!(
        (tokens[0].revoked_at, tokens[0].used_at),
        (Some(1_200), None),
        "newest first"
    );
    assert_eq!(tokens[1].revoked_at, None, "a used token stays as it was");
    let events = store.audit_events().await.unwrap();
    assert_eq!(events.len(), before + 1);
    assert!(
        events
            .last()
            .unwrap()
            .event
            .details
            .contains(r#""tokens":1"#)
    );

    // Once more: nothing left to revoke, nothing audited.
    assert_eq!(
        store
            .revoke_tokens("IP20000001", 1_300, &event("token.revoked"))
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.audit_events().await.unwrap().len(), before + 1);

    // The revoked token is refused at commit, and nothing is stored.
    let err = store
        .commit_issuance(&issuance("aa02", "IP20000001", Some(vec![1; 32])), 1_400)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::TokenNotConsumable), "{err}");
    assert!(store.certificate("aa02").await.unwrap().is_none());
    // Devices of others are untouched, unknown ones have none.
    assert!(store.device_tokens("IP29999999").await.unwrap().is_empty());
}

pub(super) async fn station_activity_sums_the_quota_windows_since_a_time(store: &dyn Store) {
    store
        .create_station(&station("st1"), &event("station.created"))
        .await
        .unwrap();
    store
        .create_station(&station("st2"), &event("station.created"))
        .await
        .unwrap();
    let devices: Vec<Device> = ["IP20000001", "IP20000002", "IP20000003"]
        .iter()
        .map(|s| device(s))
        .collect();
    store.register_devices(&devices, &[]).await.unwrap();
    for (serial, device, at) in [
        ("ee01", "IP20000001", 3_700),
        ("ee02", "IP20000002", 7_300),
        ("ee03", "IP20000003", 7_400),
    ] {
        let mut request = issuance(serial, device, None);
        request.station_quota = Some(StationQuota {
            station: "st1".into(),
            window_start: StationQuota::window_of(at),
            limit: 10,
        });
        store.commit_issuance(&request, at).await.unwrap();
    }
    let activity = store.station_activity(7_200).await.unwrap();
    let issued: Vec<(&str, u64)> = activity
        .iter()
        .map(|a| (a.station.as_str(), a.issued))
        .collect();
    assert_eq!(issued, [("st1", 2), ("st2", 0)]);
    assert_eq!(store.station_activity(0).await.unwrap()[0].issued, 3);
}
