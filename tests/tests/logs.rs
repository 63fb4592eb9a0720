//! Logs people can use: with the JSON format every refusal is one line naming the stable error
//! code, the endpoint, the authorization kind and the device serial; every issuance and
//! revocation is one line; no line carries a token; every timestamp is RFC 3339.

use std::io::Write;
use std::sync::{Arc, Mutex};

use ca_server::telemetry::{LogFormat, subscriber};
use iomt_tests::{TestApp, p256_csr};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn lines(buffer: &Buffer) -> Vec<serde_json::Value> {
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn with_message<'a>(lines: &'a [serde_json::Value], message: &str) -> Vec<&'a serde_json::Value> {
    lines
        .iter()
        .filter(|l| l["fields"]["message"].as_str() == Some(message))
        .collect()
}

#[tokio::test]
async fn refusals_issuances_and_revocations_are_one_json_line_each_without_secrets() {
    let buffer = Buffer::default();
    let sink = buffer.clone();
    subscriber(
        LogFormat::Json,
        EnvFilter::new("warn,ca_server=info"),
        move || sink.clone(),
        false,
    )
    .try_init()
    .expect("the only subscriber in this test binary");

    let app = TestApp::spawn().await;
    let token = app.pump_with_token("IP20000001").await;
    let wrong = "wrong-token-0123456789abcdef";
    let body = TestApp::est_body(&p256_csr("IP20000001").1);
    let (status, code, _) = app
        .post_simpleenroll("IP20000001", wrong, "application/pkcs10", body)
        .await;
    assert_eq!((status, code.as_str()), (401, "auth.token_unknown"));
    let out = app.dir.path().join("device");
    app.enroll("IP20000001", &token, &out)
        .await
        .expect("enroll");
    let serial = app.certificates("IP20000001").await[0].serial.clone();
    app.cli(&["revoke", "--serial", &serial, "--reason", "keyCompromise"])
        .await
        .expect("revoke");
    app.stop().await;

    let lines = lines(&buffer);
    let refused = with_message(&lines, "request refused");
    assert_eq!(refused.len(), 1, "{refused:?}");
    let fields = &refused[0]["fields"];
    assert_eq!(fields["code"], "auth.token_unknown");
    assert_eq!(fields["endpoint"], "simpleenroll");
    assert_eq!(fields["authorization"], "token");
    assert_eq!(fields["device"], "IP20000001");
    assert_eq!(fields["status"], 401);

    let issued = with_message(&lines, "certificate issued");
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_eq!(issued[0]["fields"]["certificate"], serial.as_str());
    assert_eq!(issued[0]["fields"]["device"], "IP20000001");
    assert_eq!(issued[0]["fields"]["authorized_by"], "token");

    let revoked = with_message(&lines, "certificate revoked");
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["fields"]["certificate"], serial.as_str());
    assert_eq!(revoked[0]["fields"]["reason"], "keyCompromise");

    let all = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(!all.contains(wrong), "a presented token reached the log");
    assert!(!all.contains(&token), "the one-time token reached the log");
    for line in &lines {
        let stamp = line["timestamp"].as_str().expect("timestamp");
        assert!(
            time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339)
                .is_ok(),
            "{stamp}"
        );
    }
}
