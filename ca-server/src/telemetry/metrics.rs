//! The Prometheus metrics one server process reports: counters and histograms updated as
//! requests run, and gauges set from the database at each scrape. The only file that knows the
//! exposition library; everything else calls the methods here.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::storage::CommitObserver;

/// The `Content-Type` of [`Metrics::render`] (OpenMetrics text, which Prometheus scrapes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One EST certificate request's outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// `token`, `station`, `reenrollment` or `none`.
    authorization: String,
    /// The issuing CA (`basic`, `substantial`, `high`, `station`), `unknown` on a refusal.
    level: String,
    /// The product policy id, `unknown` on a refusal.
    product: String,
    /// `issued`, or the stable error code of the refusal.
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    /// The route as declared (`/.well-known/est/simpleenroll`, `/ocsp/{ca}`, ...).
    endpoint: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResponseLabels {
    endpoint: String,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    /// `commit`, `read`, `ping`.
    operation: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    /// `good`, `revoked`, `unknown`, or the OCSP error status.
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CaLabels {
    ca: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StationLabels {
    station: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WindowLabels {
    /// `30d`, `90d`.
    within: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;
type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of one process; cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    certificate_requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<EndpointLabels>,
    responses: Family<ResponseLabels, Counter>,
    commit_batch_size: Histogram,
    commit_duration: Histogram,
    database_errors: Family<OperationLabels, Counter>,
    ocsp_responses: Family<StatusLabels, Counter>,
    crl_age: Family<CaLabels, FloatGauge>,
    crl_next_update: Family<CaLabels, Gauge>,
    ca_remaining: Family<CaLabels, Gauge>,
    station_issued: Family<StationLabels, Gauge>,
    station_limit: Family<StationLabels, Gauge>,
    expiring: Family<WindowLabels, Gauge>,
    audit_head: Gauge,
    database_up: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. about 16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered (each server has its own).
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let certificate_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "iomt_certificate_requests",
            "EST certificate requests by authorization, level, product and outcome (issued or the error code)",
            certificate_requests.clone(),
        );
        let request_duration: HistogramFamily<EndpointLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "iomt_http_request_duration_seconds",
            "Time to answer an HTTP request, per endpoint",
            request_duration.clone(),
        );
        let responses = Family::<ResponseLabels, Counter>::default();
        registry.register(
            "iomt_http_responses",
            "HTTP responses per endpoint and status",
            responses.clone(),
        );
        let commit_batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        registry.register(
            "iomt_group_commit_batch_size",
            "Issuances committed together in one database transaction",
            commit_batch_size.clone(),
        );
        let commit_duration = latency_histogram();
        registry.register(
            "iomt_group_commit_duration_seconds",
            "Time one group commit took, durable write included",
            commit_duration.clone(),
        );
        let database_errors = Family::<OperationLabels, Counter>::default();
        registry.register(
            "iomt_database_errors",
            "Database failures (not refusals) by operation: commit, read, ping",
            database_errors.clone(),
        );
        let ocsp_responses = Family::<StatusLabels, Counter>::default();
        registry.register(
            "iomt_ocsp_responses",
            "OCSP answers by certificate status (good, revoked, unknown) or error status",
            ocsp_responses.clone(),
        );
        let crl_age = Family::<CaLabels, FloatGauge>::default();
        registry.register(
            "iomt_crl_age_seconds",
            "Seconds since the thisUpdate of the latest published CRL, per CA",
            crl_age.clone(),
        );
        let crl_next_update = Family::<CaLabels, Gauge>::default();
        registry.register(
            "iomt_crl_next_update_timestamp_seconds",
            "nextUpdate of the latest published CRL (Unix time), per CA",
            crl_next_update.clone(),
        );
        let ca_remaining = Family::<CaLabels, Gauge>::default();
        registry.register(
            "iomt_ca_certificate_remaining_seconds",
            "Seconds until the CA certificate's notAfter, per CA",
            ca_remaining.clone(),
        );
        let station_issued = Family::<StationLabels, Gauge>::default();
        registry.register(
            "iomt_station_issued_this_hour",
            "Certificates the station authorized in the current UTC hour",
            station_issued.clone(),
        );
        let station_limit = Family::<StationLabels, Gauge>::default();
        registry.register(
            "iomt_station_hourly_limit",
            "The station's configured hourly limit (absent: the product policies' default applies)",
            station_limit.clone(),
        );
        let expiring = Family::<WindowLabels, Gauge>::default();
        registry.register(
            "iomt_certificates_expiring",
            "Valid device certificates whose notAfter falls within the window",
            expiring.clone(),
        );
        let audit_head = Gauge::default();
        registry.register(
            "iomt_audit_head_sequence",
            "Sequence number of the newest audit event",
            audit_head.clone(),
        );
        let database_up = Gauge::default();
        registry.register(
            "iomt_database_up",
            "1 when the database answered the scrape's ping, else 0",
            database_up.clone(),
        );
        Metrics {
            registry,
            certificate_requests,
            request_duration,
            responses,
            commit_batch_size,
            commit_duration,
            database_errors,
            ocsp_responses,
            crl_age,
            crl_next_update,
            ca_remaining,
            station_issued,
            station_limit,
            expiring,
            audit_head,
            database_up,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Counts one EST certificate request and its outcome.
    pub fn certificate_request(
        &self,
        authorization: &str,
        level: &str,
        product: &str,
        outcome: &str,
    ) {
        self.certificate_requests
            .get_or_create(&RequestLabels {
                authorization: authorization.to_owned(),
                level: level.to_owned(),
                product: product.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Records one HTTP response: its latency and status.
    pub fn response(&self, endpoint: &str, status: u16, elapsed: Duration) {
        self.request_duration
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
        self.responses
            .get_or_create(&ResponseLabels {
                endpoint: endpoint.to_owned(),
                status,
            })
            .inc();
    }

    /// Counts one OCSP answer (per certificate asked about) or error response.
    pub fn ocsp_response(&self, status: &str) {
        self.ocsp_responses
            .get_or_create(&StatusLabels {
                status: status.to_owned(),
            })
            .inc();
    }

    /// Counts a database failure of `operation`.
    pub fn database_error(&self, operation: &str, count: u64) {
        if count > 0 {
            self.database_errors
                .get_or_create(&OperationLabels {
                    operation: operation.to_owned(),
                })
                .inc_by(count);
        }
    }

    /// Sets the published CRL's age and next update for a CA.
    pub fn set_crl(&self, ca: &str, age_seconds: f64, next_update: i64) {
        let labels = CaLabels { ca: ca.to_owned() };
        self.crl_age.get_or_create(&labels).set(age_seconds);
        self.crl_next_update.get_or_create(&labels).set(next_update);
    }

    /// Sets a CA certificate's remaining life.
    pub fn set_ca_remaining(&self, ca: &str, seconds: i64) {
        self.ca_remaining
            .get_or_create(&CaLabels { ca: ca.to_owned() })
            .set(seconds);
    }

    /// Sets a station's use of its hourly quota (and the limit, when one is configured).
    pub fn set_station_quota(&self, station: &str, issued: u32, limit: Option<u32>) {
        let labels = StationLabels {
            station: station.to_owned(),
        };
        self.station_issued
            .get_or_create(&labels)
            .set(i64::from(issued));
        if let Some(limit) = limit {
            self.station_limit
                .get_or_create(&labels)
                .set(i64::from(limit));
        }
    }

    /// Sets how many valid certificates expire within a window (`30d`, `90d`).
    pub fn set_expiring(&self, within: &str, count: u64) {
        self.expiring
            .get_or_create(&WindowLabels {
                within: within.to_owned(),
            })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Sets the audit trail's head sequence number.
    pub fn set_audit_head(&self, seq: i64) {
        self.audit_head.set(seq);
    }

    /// Sets whether the database answered.
    pub fn set_database_up(&self, up: bool) {
        self.database_up.set(i64::from(up));
    }
}

/// The group-commit writer and the batched reader report here.
impl CommitObserver for Metrics {
    fn committed(&self, size: usize, elapsed: Duration, database_errors: usize) {
        self.commit_batch_size.observe(size as f64);
        self.commit_duration.observe(elapsed.as_secs_f64());
        self.database_error("commit", database_errors as u64);
    }

    fn read(&self, database_errors: usize) {
        self.database_error("read", database_errors as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_names_every_family_with_its_help() {
        let metrics = Metrics::new();
        metrics.certificate_request("token", "basic", "pump", "issued");
        metrics.response("/healthz", 200, Duration::from_millis(3));
        metrics.committed(4, Duration::from_millis(2), 1);
        metrics.set_crl("basic", 12.5, 1_900_000_000);
        let text = metrics.render();
        for line in [
            "iomt_certificate_requests_total{authorization=\"token\",level=\"basic\",product=\"pump\",outcome=\"issued\"} 1",
            "iomt_http_responses_total{endpoint=\"/healthz\",status=\"200\"} 1",
            "iomt_group_commit_batch_size_count 1",
            "iomt_database_errors_total{operation=\"commit\"} 1",
            "iomt_crl_age_seconds{ca=\"basic\"} 12.5",
            "iomt_crl_next_update_timestamp_seconds{ca=\"basic\"} 1900000000",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
        assert!(text.contains("# HELP iomt_audit_head_sequence"));
    }
}
