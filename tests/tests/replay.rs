//! One request, one answer: a request the CA committed but whose answer was lost, repeated by
//! the same party for the same device with the same key, gets the same certificate again
//! (token, station, and re-enrollment from the just-superseded certificate); a different key is
//! still refused. And a device may renew right after its initial enrollment.

use std::path::PathBuf;

use enroll_client::keystore;
use iomt_tests::{PUMP, TestApp, p256_csr};

const PKCS10: &str = "application/pkcs10";

/// Status, error code and body of an EST answer.
type Answer = (u16, String, String);

async fn answer(request: reqwest::RequestBuilder, csr: &[u8]) -> Answer {
    let response = request
        .header("content-type", PKCS10)
        .body(TestApp::est_body(csr))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let code = response
        .headers()
        .get("x-error-code")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, code, response.text().await.unwrap())
}

fn url(app: &TestApp, operation: &str) -> String {
    format!("{}/.well-known/est/{operation}", app.server_url())
}

/// How many audit events of `action` the trail holds.
async fn audited(app: &TestApp, action: &str) -> usize {
    let events = app.authority.store().audit_events().await.unwrap();
    events.iter().filter(|e| e.event.action == action).count()
}

#[tokio::test]
async fn same_token_and_key_repeated_after_commit_get_the_same_certificate() {
    let app = TestApp::spawn().await;
    let token = app.pump_with_token("IP20000001").await;
    let (_, csr) = p256_csr("IP20000001");
    let client = app.http_client();
    let send = |csr: Vec<u8>| {
        let request = client
            .post(url(&app, "simpleenroll"))
            .basic_auth("IP20000001", Some(&token));
        async move { answer(request, &csr).await }
    };

    let first = send(csr.clone()).await;
    assert_eq!((first.0, first.1.as_str()), (200, ""));
    let again = send(csr.clone()).await;
    assert_eq!(again, first, "the same certificate, answered again");
    assert_eq!(app.certificates("IP20000001").await.len(), 1);
    assert_eq!(audited(&app, "certificate.resent").await, 1);

    // The used token with another key is a second enrollment: refused, nothing written.
    let (_, other) = p256_csr("IP20000001");
    let refused = send(other).await;
    assert_eq!((refused.0, refused.1.as_str()), (401, "auth.token_used"));
    assert_eq!(app.certificates("IP20000001").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_request_sent_twenty_times_at_once_gets_one_certificate_twenty_times() {
    let app = TestApp::spawn().await;
    let token = app.pump_with_token("IP20000002").await;
    let (_, csr) = p256_csr("IP20000002");
    let client = app.http_client();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let request = client
            .post(url(&app, "simpleenroll"))
            .basic_auth("IP20000002", Some(&token));
        let csr = csr.clone();
        tasks.spawn(async move { answer(request, &csr).await });
    }
    let answers = tasks.join_all().await;
    assert!(answers.iter().all(|a| a.0 == 200), "{answers:?}");
    assert!(
        answers.iter().all(|a| a.2 == answers[0].2),
        "one certificate"
    );
    assert_eq!(app.certificates("IP20000002").await.len(), 1);
    assert_eq!(audited(&app, "certificate.resent").await, 19);
}

/// A station with its own enrolled key, for pumps.
async fn pump_station(app: &TestApp) -> PathBuf {
    let token = app
        .cli(&["station", "create", "--name", "st1", "--products", PUMP])
        .await
        .expect("station create");
    let dir = app.dir.path().join("station");
    app.enroll("st1", token.trim(), &dir)
        .await
        .expect("station");
    dir
}

#[tokio::test]
async fn same_station_and_key_repeated_get_the_same_certificate() {
    let app = TestApp::spawn().await;
    let station = pump_station(&app).await;
    app.register("IP20000003", PUMP).await;
    let client = app.client_with_identity(&keystore::load(&station).unwrap());
    let (_, csr) = p256_csr("IP20000003");
    let first = answer(client.post(url(&app, "simpleenroll")), &csr).await;
    assert_eq!(first.0, 200, "{first:?}");
    let again = answer(client.post(url(&app, "simpleenroll")), &csr).await;
    assert_eq!(again, first);
    let hour = ca_server::storage::StationQuota::window_of(
        time::OffsetDateTime::now_utc().unix_timestamp(),
    );
    let usage = app
        .authority
        .store()
        .station_usage("st1", hour)
        .await
        .unwrap();
    assert_eq!(
        usage, 1,
        "a resend is not counted against the station's hour"
    );

    let (_, other) = p256_csr("IP20000003");
    let refused = answer(client.post(url(&app, "simpleenroll")), &other).await;
    assert_eq!(
        (refused.0, refused.1.as_str()),
        (409, "device.already_enrolled")
    );
    // Another party (the device's token) with the same key is not the same request either.
    let token = app.token("IP20000003").await;
    let by_token = answer(
        app.http_client()
            .post(url(&app, "simpleenroll"))
            .basic_auth("IP20000003", Some(&token)),
        &csr,
    )
    .await;
    assert_eq!(
        (by_token.0, by_token.1.as_str()),
        (403, "csr.duplicate_key")
    );
    assert!(!app.token_used(&token).await);
}

#[tokio::test]
async fn renewal_never_installed_is_answered_again_from_the_superseded_certificate() {
    let app = TestApp::spawn().await;
    let token = app.pump_with_token("IP20000004").await;
    let dir = app.dir.path().join("device");
    app.enroll("IP20000004", &token, &dir).await.unwrap();
    let current = app.client_with_identity(&keystore::load(&dir).unwrap());

    // Right after the initial enrollment: the interval counts between re-enrollments.
    let (_, csr) = p256_csr("IP20000004");
    let renewed = answer(current.post(url(&app, "simplereenroll")), &csr).await;
    assert_eq!(renewed.0, 200, "{renewed:?}");

    // The device never installed it and asks again with its old certificate and the new key.
    let again = answer(current.post(url(&app, "simplereenroll")), &csr).await;
    assert_eq!(again, renewed);
    assert_eq!(app.certificates("IP20000004").await.len(), 2);
    assert_eq!(audited(&app, "certificate.resent").await, 1);

    // A different key from the superseded certificate is refused as before.
    let (_, other) = p256_csr("IP20000004");
    let refused = answer(current.post(url(&app, "simplereenroll")), &other).await;
    assert_eq!(
        (refused.0, refused.1.as_str()),
        (409, "reenroll.superseded")
    );
    assert_eq!(app.certificates("IP20000004").await.len(), 2);
}

#[tokio::test]
async fn renewal_of_a_renewed_certificate_waits_for_the_policy_interval() {
    let app = TestApp::spawn().await;
    let token = app.pump_with_token("IP20000005").await;
    let dir = app.dir.path().join("device");
    app.enroll("IP20000005", &token, &dir).await.unwrap();
    let schedule = enroll_client::rotation::Schedule {
        window_percent: 70,
        jitter_percent: 0,
    };
    enroll_client::rotation::renew(&app.est_server(), &dir, schedule, true)
        .await
        .expect("renew right after enroll");
    let renewed = app.client_with_identity(&keystore::load(&dir).unwrap());
    let (_, csr) = p256_csr("IP20000005");
    let too_soon = answer(renewed.post(url(&app, "simplereenroll")), &csr).await;
    assert_eq!(
        (too_soon.0, too_soon.1.as_str()),
        (429, "reenroll.too_soon")
    );
}
