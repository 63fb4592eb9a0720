//! CRL regeneration with many revoked entries: a fresh CA whose database holds `revoked`
//! revoked certificates of the Basic CA, then the real publication path timed —
//! `Revocation::publish_crl` (snapshot query, build, sign, store).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ca_server::pki::CaMaterial;
use ca_server::revocation::Revocation;
use ca_server::storage::{AuditEvent, CertificateRecord, CertificateStatus, Issuance, MAX_BATCH};
use iomt_core::policy::{PolicySet, SerialNumberRules};
use x509_parser::prelude::{CertificateRevocationList, FromDer};

use crate::report::{Outcome, Row};
use crate::setup::{Ca, PRODUCT, device_serial};

/// Timed publications (the best and the first are reported).
const ROUNDS: usize = 3;

/// The synthetic certificates were issued evenly over the year before the run, as a CA in
/// service would hold them; their serials begin with their issuance time like real ones.
const HISTORY_SECONDS: i64 = 365 * 86_400;

/// Measures CRL publication with `revoked` entries, on SQLite or a fresh PostgreSQL database.
pub async fn run(revoked: usize, database: Option<&str>) -> anyhow::Result<Outcome> {
    eprintln!("crl: creating a CA and storing {revoked} revoked certificates");
    let ca = Ca::create(database).await?;
    let device = device_serial(0);
    ca.cli(&[
        "device",
        "register",
        "--serial",
        &device,
        "--product",
        PRODUCT,
    ])?;
    let url = ca.database_url()?;
    let started = Instant::now();
    fill(&url, &device, revoked, true).await?;
    eprintln!(
        "crl: stored in {:.1} s (group commit, untimed); publishing the Basic CA's CRL {ROUNDS} times",
        started.elapsed().as_secs_f64()
    );

    let material = Arc::new(CaMaterial::load(&ca.data)?);
    let policies = Arc::new(PolicySet::load_dir(&ca.data.join("policies"))?);
    let store = ca_server::storage::open(&url).await?;
    let revocation = Revocation::new(material, store, policies)?;
    let mut times = Vec::with_capacity(ROUNDS);
    let mut der = Vec::new();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let published = revocation.publish_crl("basic").await?;
        times.push(start.elapsed());
        der = published.der;
    }
    drop(revocation);
    ca.cleanup().await?;

    let (_, crl) = CertificateRevocationList::from_der(&der)
        .map_err(|e| anyhow::anyhow!("the published CRL does not parse: {e}"))?;
    let entries = crl.iter_revoked_certificates().count();
    if entries != revoked {
        anyhow::bail!("the CRL lists {entries} certificates, {revoked} were revoked");
    }
    let best = times.iter().min().copied().unwrap_or_default();
    let first = times.first().copied().unwrap_or_default();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("crl.revoked_entries: {entries}");
    println!("crl.publish_first_ms: {:.0}", ms(first));
    println!("crl.publish_best_ms: {:.0}", ms(best));
    println!("crl.size_bytes: {}", der.len());
    Ok(Outcome {
        request_errors: 0,
        rows: vec![Row::new(
            &format!(
                "CRL of {} revoked entries",
                crate::report::thousands(entries as f64)
            ),
            "≤ 1 s",
            format!("{:.0} ms ({:.1} MB)", ms(best), der.len() as f64 / 1e6),
            Some(best <= Duration::from_secs(1)),
        )],
        rate: 0.0,
        summary: format!(
            "crl: {entries} entries published in {:.0} ms (best of {ROUNDS}), {} bytes",
            ms(best),
            der.len()
        ),
    })
}

/// Stores `count` synthetic certificates of the Basic CA for `device` through the storage API
/// (group commit: [`MAX_BATCH`] per transaction, the same path issuance takes), then revokes
/// them in bulk when asked (every third for key compromise). Untimed set-up.
pub async fn fill(url: &str, device: &str, count: usize, revoked: bool) -> anyhow::Result<()> {
    let store = ca_server::storage::open(url).await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut serials = Vec::new();
    for start in (0..count).step_by(MAX_BATCH) {
        let batch: Vec<Issuance> = (start..count.min(start + MAX_BATCH))
            .map(|i| {
                let issued_at = now - HISTORY_SECONDS + HISTORY_SECONDS * i as i64 / count as i64;
                synthetic(device, issued_at, now)
            })
            .collect::<anyhow::Result<_>>()?;
        for verdict in store.commit_batch(&batch, now).await? {
            verdict.context("storing a synthetic certificate")?;
        }
        if revoked {
            serials.extend(batch.into_iter().map(|i| i.certificate.serial));
        }
    }
    let mut compromised = Vec::new();
    let mut retired = Vec::new();
    for (i, serial) in serials.into_iter().enumerate() {
        if i % 3 == 0 {
            compromised.push(serial);
        } else {
            retired.push(serial);
        }
    }
    for (serials, reason) in [
        (compromised, "keyCompromise"),
        (retired, "cessationOfOperation"),
    ] {
        if serials.is_empty() {
            continue;
        }
        let audit = AuditEvent {
            at: now,
            actor: "ca-bench".into(),
            action: "certificates.revoked".into(),
            object: format!("device:{device}"),
            details: format!(r#"{{"count":{},"reason":"{reason}"}}"#, serials.len()),
        };
        store
            .change_status_many(
                &serials,
                CertificateStatus::Revoked,
                Some(reason),
                now,
                &[audit],
            )
            .await?;
    }
    Ok(())
}

/// Synthetic DER stand-in: the size of a real device certificate, so tables and pages are as
/// large as in production (nothing on these paths parses it).
const FILLER_DER_LEN: usize = 640;

/// A synthetic certificate issued at `issued_at`: a serial made as the CA makes them and a
/// distinct key hash, so every index is as large, and ordered, as a real one.
fn synthetic(device: &str, issued_at: i64, now: i64) -> anyhow::Result<Issuance> {
    let issued = time::OffsetDateTime::from_unix_timestamp(issued_at)?;
    let serial = ca_server::pki::issuance_serial(issued, SerialNumberRules::FLOOR_RANDOM_BITS)?;
    let serial = hex::encode(serial.as_ref());
    let spki_sha256 = ring::digest::digest(&ring::digest::SHA256, serial.as_bytes())
        .as_ref()
        .to_vec();
    Ok(Issuance {
        certificate: CertificateRecord {
            serial: serial.clone(),
            issuer: "basic".into(),
            device_serial: device.into(),
            product: PRODUCT.into(),
            policy_oid: "1.3.6.1.4.1.32473.98.1.1".into(),
            not_before: issued_at,
            not_after: now + 365 * 86_400,
            spki_sha256,
            der: vec![0x30; FILLER_DER_LEN],
            status: CertificateStatus::Valid,
            authorized_by: "token".into(),
            supersedes: None,
            issued_at,
        },
        consume_token: None,
        station_quota: None,
        initial: false,
        attestation: None,
        audit: AuditEvent {
            at: now,
            actor: "ca-bench".into(),
            action: "certificate.issued".into(),
            object: format!("certificate:{serial}"),
            details: "{}".into(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_certificates_have_distinct_serials_and_keys() {
        let a = synthetic("IP20000000", 1_690_000_000, 1_700_000_000)
            .unwrap()
            .certificate;
        let b = synthetic("IP20000000", 1_690_000_000, 1_700_000_000)
            .unwrap()
            .certificate;
        assert_ne!(a.serial, b.serial);
        assert_ne!(a.spki_sha256, b.spki_sha256);
        assert_eq!(a.serial.len(), 32);
    }
}
