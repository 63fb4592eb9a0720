//! `/metrics` on its own listener, scraped and parsed with an independent Prometheus
//! text-format parser while enrollments run: every scrape parses, and at the end the counters
//! equal the requests made (issued and refused, by code), the group-commit batches add up to
//! the certificates issued, OCSP answers are counted by status, and the scrape-time gauges
//! (CRL age and nextUpdate, CA remaining life, expiring certificates, audit head) are there.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use iomt_core::ocsp::build_request;
use iomt_tests::{PUMP, TestApp, p256_csr};

const DEVICES: usize = 24;
const REFUSED: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_match_the_requests_made_while_scrapes_parse() {
    let app = Arc::new(TestApp::spawn_with_metrics(None).await);
    let devices = app.pumps_with_tokens(1, DEVICES).await;

    // Scrape continuously while the enrollments run; every scrape must parse.
    let running = Arc::new(AtomicBool::new(true));
    let scrapes = Arc::new(AtomicUsize::new(0));
    let scraper = {
        let (app, running, scrapes) = (app.clone(), running.clone(), scrapes.clone());
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                // Families without a sample yet (no request counted) are left out of the text;
                // the gauges are always there.
                let (parsed, _) = app.scrape().await;
                assert!(parsed.documented("iomt_audit_head_sequence"));
                assert_eq!(parsed.value("iomt_database_up", &[]), 1.0);
                scrapes.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let mut tasks = tokio::task::JoinSet::new();
    for (serial, token) in devices.clone() {
        let app = app.clone();
        tasks.spawn(async move {
            let out = app.dir.path().join(format!("out-{serial}"));
            app.enroll(&serial, &token, &out).await.map(|_| ())
        });
    }
    // Refusals: a wrong token for registered devices (answered as an unknown token).
    for (serial, _) in devices.iter().take(REFUSED) {
        let body = TestApp::est_body(&p256_csr(serial).1);
        let (status, code, _) = app
            .post_simpleenroll(serial, "not-the-token", "application/pkcs10", body)
            .await;
        assert_eq!((status, code.as_str()), (401, "auth.token_unknown"));
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().expect("enrolled");
    }
    running.store(false, Ordering::Relaxed);
    scraper.await.unwrap();
    assert!(scrapes.load(Ordering::Relaxed) > 0);

    // OCSP: one good answer for an issued certificate, one unknown for a made-up serial.
    let issuer = app
        .plain_client()
        .get(format!("http://{}/ca/basic.cer", app.http))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let issued = hex::decode(&app.certificates(&devices[0].0).await[0].serial).unwrap();
    for serial in [issued.as_slice(), &[0x7f, 1, 2, 3, 4, 5, 6, 7]] {
        let response = app
            .plain_client()
            .post(format!("http://{}/ocsp/basic", app.http))
            .header("content-type", "application/ocsp-request")
            .body(build_request(&issuer, serial, None).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }

    let (metrics, text) = app.scrape().await;
    assert!(metrics.documented("iomt_certificate_requests"), "{text}");
    let issued_labels = [
        ("authorization", "token"),
        ("level", "basic"),
        ("product", PUMP),
        ("outcome", "issued"),
    ];
    assert_eq!(
        metrics.value("iomt_certificate_requests_total", &issued_labels),
        DEVICES as f64,
        "{text}"
    );
    assert_eq!(
        metrics.value(
            "iomt_certificate_requests_total",
            &[
                ("authorization", "token"),
                ("outcome", "auth.token_unknown")
            ]
        ),
        REFUSED as f64,
        "{text}"
    );
    let enroll_endpoint = ("endpoint", "/.well-known/est/simpleenroll");
    assert_eq!(
        metrics.value(
            "iomt_http_responses_total",
            &[enroll_endpoint, ("status", "200")]
        ),
        DEVICES as f64
    );
    assert_eq!(
        metrics.value(
            "iomt_http_responses_total",
            &[enroll_endpoint, ("status", "401")]
        ),
        REFUSED as f64
    );
    assert_eq!(
        metrics.value(
            "iomt_http_request_duration_seconds_count",
            &[enroll_endpoint]
        ),
        (DEVICES + REFUSED) as f64,
        "{text}"
    );
    // Every issued certificate was committed in some batch; batches never exceed the requests.
    assert_eq!(
        metrics.value("iomt_group_commit_batch_size_sum", &[]),
        DEVICES as f64
    );
    let batches = metrics.value("iomt_group_commit_batch_size_count", &[]);
    assert!((1.0..=DEVICES as f64).contains(&batches), "{batches}");
    assert_eq!(metrics.value("iomt_database_errors_total", &[]), 0.0);
    assert_eq!(
        metrics.value("iomt_ocsp_responses_total", &[("status", "good")]),
        1.0
    );
    assert_eq!(
        metrics.value("iomt_ocsp_responses_total", &[("status", "unknown")]),
        1.0
    );

    // Scrape-time gauges.
    assert_eq!(metrics.value("iomt_database_up", &[]), 1.0);
    for ca in ["basic", "substantial", "high", "station", "root"] {
        assert!(
            metrics.value("iomt_ca_certificate_remaining_seconds", &[("ca", ca)]) > 86_400.0,
            "{ca}: {text}"
        );
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    assert!(
        metrics.value("iomt_crl_next_update_timestamp_seconds", &[("ca", "basic")]) > now,
        "{text}"
    );
    assert!(metrics.value("iomt_crl_age_seconds", &[("ca", "basic")]) >= 0.0);
    // Test policies give pumps more than 90 days; none expires within either window.
    assert_eq!(
        metrics.value("iomt_certificates_expiring", &[("within", "30d")]),
        0.0
    );
    let stored_head = app
        .authority
        .store()
        .audit_head_seq()
        .await
        .expect("audit head");
    assert_eq!(
        metrics.value("iomt_audit_head_sequence", &[]),
        stored_head as f64
    );
    assert!(stored_head as usize >= DEVICES);
    Arc::try_unwrap(app).ok().expect("sole owner").stop().await;
}
