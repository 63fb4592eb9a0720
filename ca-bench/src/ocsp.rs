//! OCSP responses/s: devices enrolled and some revoked (untimed), every answer checked once
//! against the expected status, then `POST /ocsp/basic` over keep-alive plain HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use iomt_core::ocsp::Status;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::est::{self, Enroll};
use crate::load::{self, Transport, Workload};
use crate::modes::Load;
use crate::report::{self, Outcome, Row};
use crate::setup::Ca;

/// The responder of the Basic issuing CA.
const OCSP_PATH: &str = "/ocsp/basic";

/// Measures OCSP on a fresh CA with `devices` certificates, `revoked` of them revoked.
pub async fn run(
    load: &Load,
    devices: usize,
    revoked: usize,
    database: Option<&str>,
) -> anyhow::Result<Outcome> {
    let revoked = revoked.min(devices);
    eprintln!("ocsp: creating a CA, enrolling {devices} devices, revoking {revoked}");
    let ca = Ca::create(database).await?;
    let credentials = ca.register_with_tokens(devices)?;
    let serials: Vec<String> = credentials.iter().map(|(s, _)| s.clone()).collect();
    let csrs = tokio::task::block_in_place(|| est::keys_and_csrs(&serials))?;
    let server = ca.serve()?;
    let enroll = Arc::new(Enroll::new(
        ca.https,
        ca.client_config()?,
        &credentials,
        &csrs,
        true,
    )?);
    let setup = Load {
        duration: Duration::from_secs(3600),
        warmup: 0,
        ..load.clone()
    }
    .options(ca.https, None, None);
    let enrolled = load::run(enroll.clone(), setup).await;
    if enrolled.error_count() > 0 {
        report::print_load("ocsp.setup", &enrolled, None);
        bail!("{} enrollments failed", enrolled.error_count());
    }
    let answers = Arc::into_inner(enroll)
        .context("enroll workload still shared")?
        .into_answers();
    let issuer = ca.basic_ca_der()?;
    let mut queries = Vec::with_capacity(devices);
    for (i, answer) in answers.iter().enumerate() {
        let cert = est::certificate_of(answer.as_ref().context("a device was not enrolled")?)?;
        let (_, parsed) = X509Certificate::from_der(&cert)?;
        let serial = parsed.raw_serial().to_vec();
        let request = iomt_core::ocsp::build_request(&issuer, &serial, None)?;
        queries.push(Query {
            serial,
            request: Bytes::from(request),
            revoked: i < revoked,
        });
    }
    for serial in serials.iter().take(revoked) {
        ca.cli(&["revoke", "--device", serial, "--reason", "keyCompromise"])?;
    }
    verify_answers(ca.http, &issuer, &queries).await?;

    eprintln!(
        "ocsp: POST {OCSP_PATH} on {} at c={} for {:?} ({revoked} revoked of {devices})",
        ca.http, load.concurrency, load.duration
    );
    let workload = Arc::new(Ocsp {
        host: HeaderValue::from_str(&ca.http.to_string())?,
        queries,
    });
    let options = load.options(ca.http, Some(server.pid()), ca.database_name());
    let result = load::run(workload, options).await;
    let rss = load::peak_rss_mb(Some(server.pid()));
    server.stop();
    ca.cleanup().await?;
    report::print_load("ocsp", &result, rss);
    let p99 = result.latency_ms(0.99);
    Ok(Outcome {
        request_errors: result.error_count(),
        rows: vec![Row::new(
            "OCSP",
            "≥ 20,000 responses/s",
            format!("{}/s (p99 {p99:.1} ms)", report::thousands(result.rate())),
            Some(result.rate() >= 20_000.0),
        )],
        rate: result.rate(),
        summary: format!(
            "ocsp: ours={:.0} responses/s p99={p99:.1} ms",
            result.rate()
        ),
    })
}

/// A prepared OCSP request and the status its answer must carry.
struct Query {
    serial: Vec<u8>,
    request: Bytes,
    revoked: bool,
}

/// Sends each request once and checks the signed answer (good or revoked as expected).
async fn verify_answers(addr: SocketAddr, issuer: &[u8], queries: &[Query]) -> anyhow::Result<()> {
    let host = HeaderValue::from_str(&addr.to_string())?;
    let mut sender = load::connect(addr, Transport::Plain).await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for query in queries {
        let (status, body) = load::exchange(&mut sender, ocsp_request(&host, query)).await?;
        if status != StatusCode::OK {
            bail!("OCSP answered HTTP {status}");
        }
        let answer = iomt_core::ocsp::check_response(&body, issuer, &query.serial, None, now)
            .map_err(|e| anyhow::anyhow!("OCSP answer for {}: {e}", hex::encode(&query.serial)))?;
        let as_expected = match answer {
            Status::Good => !query.revoked,
            Status::Revoked { .. } => query.revoked,
            Status::Unknown => false,
        };
        if !as_expected {
            bail!(
                "OCSP says {answer:?} for {} (revoked: {})",
                hex::encode(&query.serial),
                query.revoked
            );
        }
    }
    Ok(())
}

fn ocsp_request(host: &HeaderValue, query: &Query) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(query.request.clone()));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = hyper::Uri::from_static(OCSP_PATH);
    let headers = request.headers_mut();
    headers.insert(HOST, host.clone());
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/ocsp-request"),
    );
    request
}

/// The OCSP requests, sent round-robin without end.
struct Ocsp {
    host: HeaderValue,
    queries: Vec<Query>,
}

impl Workload for Ocsp {
    fn capacity(&self) -> Option<usize> {
        None
    }

    fn request(&self, index: usize) -> Request<Full<Bytes>> {
        ocsp_request(&self.host, &self.queries[index % self.queries.len()])
    }

    /// Cheap check (the signatures were verified once before the window): an OCSPResponse
    /// SEQUENCE whose responseStatus is successful (ENUMERATED 0).
    fn check(&self, _: usize, body: &Bytes) -> Result<(), String> {
        let header = match body.get(1) {
            Some(&len) if len & 0x80 == 0 => 2,
            Some(&len) => 2 + usize::from(len & 0x7f),
            None => 0,
        };
        match body.get(header..header + 3) {
            Some([0x0a, 0x01, 0x00]) if body.first() == Some(&0x30) => Ok(()),
            _ => Err(format!(
                "not a successful OCSP response: {}",
                hex::encode(&body[..body.len().min(16)])
            )),
        }
    }

    fn transport(&self, _: usize) -> Transport {
        Transport::Plain
    }
}
