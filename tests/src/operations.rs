//! `TestApp` helpers for the operator surfaces: `/healthz`, `/readyz` and `/metrics` (parsed
//! with an independent Prometheus text-format parser).

use std::time::{Duration, Instant};

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
