//! `TestApp` helpers for the operator surfaces: `/healthz`, `/readyz` and `/metrics` (parsed
//! with an independent Prometheus text-format parser), the operators' admin API keys, and what
//! relying parties see of revocation (CRL serials, OCSP status).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use iomt_core::ocsp::{Status, build_request, check_response};

use crate::TestApp;

/// One parsed scrape.
pub struct Scrape(prometheus_parse::Scrape);

impl Scrape {
    /// The value of the sample `name` whose labels include every `(label, value)` in `labels`,
    /// summed over the samples that match (0 when none does).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match &s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => *v,
                _ => 0.0,
            })
            .sum()
    }

    /// Every sample named `name`, with its labels as `key=value` text.
    pub fn series(&self, name: &str) -> Vec<String> {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .map(|s| format!("{}", s.labels))
            .collect()
    }

    /// Whether a metric family is documented (`# HELP`).
    pub fn documented(&self, name: &str) -> bool {
        self.0.docs.contains_key(name)
    }
}

impl TestApp {
    /// The bootstrap admin API key `init` wrote to `DIR/admin-token`.
    pub fn admin_key(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("admin-token"))
            .expect("admin-token")
            .trim()
            .to_owned()
    }

    /// A new admin API key `name` with `role` (admin, registrar, auditor), made by the CLI.
    pub async fn api_key(&self, name: &str, role: &str) -> String {
        self.cli(&["apikey", "create", "--name", name, "--role", role])
            .await
            .expect("apikey create")
            .trim()
            .to_owned()
    }

    /// The stored status of the certificate with serial `certificate` (hex), which must exist.
    pub async fn certificate_status(
        &self,
        certificate: &str,
    ) -> ca_server::storage::CertificateStatus {
        self.authority
            .store()
            .certificate(certificate)
            .await
            .expect("certificate lookup")
            .expect("the certificate's record")
            .status
    }

    /// `GET` a plain-HTTP path on the public listener that must answer 200; the body.
    pub async fn fetch(&self, path: &str) -> Vec<u8> {
        let response = self
            .plain_client()
            .get(format!("http://{}{path}", self.http))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 200, "{path}");
        response.bytes().await.expect("body").to_vec()
    }

    /// The serials (lowercase hex, see [`comparable_serial`]) on CA `ca`'s CRL (`/crl/{ca}.crl`).
    pub async fn crl_serials(&self, ca: &str) -> BTreeSet<String> {
        let der = self.fetch(&format!("/crl/{ca}.crl")).await;
        let (_, crl) = x509_parser::parse_x509_crl(&der).expect("CRL");
        crl.iter_revoked_certificates()
            .map(|r| comparable_serial(&hex::encode(r.raw_serial())))
            .collect()
    }

    /// What the Basic CA's OCSP responder says, verified, about `serial_hex` issued by `issuer`.
    pub async fn ocsp_basic(&self, issuer: &[u8], serial_hex: &str) -> Status {
        let serial = hex::decode(serial_hex).expect("hex serial");
        let response = self
            .plain_client()
            .post(format!("http://{}/ocsp/basic", self.http))
            .header("content-type", "application/ocsp-request")
            .body(build_request(issuer, &serial, None).expect("OCSP request"))
            .send()
            .await
            .expect("OCSP")
            .bytes()
            .await
            .expect("OCSP body");
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        check_response(&response, issuer, &serial, None, now).expect("OCSP response verifies")
    }

    /// `GET` a plain-HTTP path on the public listener: (status, body as JSON).
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self
            .plain_client()
            .get(format!("http://{}{path}", self.http))
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes).expect("JSON body");
        (status, body)
    }

    /// Polls `/readyz` until it answers `status` (or panics after `within`); returns the body.
    pub async fn wait_readyz(&self, status: u16, within: Duration) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let (got, body) = self.get_json("/readyz").await;
            if got == status {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz still {got} after {within:?}, wanted {status}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Scrapes `/metrics` and parses it; also returns the raw text.
    pub async fn scrape(&self) -> (Scrape, String) {
        let addr = self.metrics.expect("spawned with metrics");
        let response = self
            .plain_client()
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .expect("scrape");
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        assert!(
            content_type.starts_with("application/openmetrics-text"),
            "{content_type}"
        );
        let text = response.text().await.expect("text");
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        let parsed = prometheus_parse::Scrape::parse(lines).expect("Prometheus text parses");
        (Scrape(parsed), text)
    }
}

/// A hex serial in lowercase without leading zeros (DER may prefix a 00 octet), for comparing
/// serials from the database, the CRL and the client.
pub fn comparable_serial(hex: &str) -> String {
    hex.to_lowercase().trim_start_matches('0').to_owned()
}
