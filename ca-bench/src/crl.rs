//! CRL regeneration with many revoked entries: a fresh CA whose database holds `revoked`
//! revoked certificates of the Basic CA, then the real publication path timed —
//! `Revocation::publish_crl` (snapshot query, build, sign, store).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ca_server::pki::CaMaterial;
use ca_server::revocation::Revocation;
use iomt_core::policy::PolicySet;
use sqlx::Connection;
use x509_parser::prelude::{CertificateRevocationList, FromDer};

use crate::report::{Outcome, Row};
use crate::setup::{Ca, PRODUCT, device_serial};

/// Rows per INSERT statement while filling the table.
const ROWS_PER_INSERT: usize = 1000;
/// Timed publications (the best and the first are reported).
const ROUNDS: usize = 3;

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
        "crl: stored in {:.1} s (bulk INSERT, untimed); publishing the Basic CA's CRL {ROUNDS} times",
        started.elapsed().as_secs_f64()
    );

    let material = Arc::new(CaMaterial::load(&ca.data)?);
    let policies = Arc::new(PolicySet::load_dir(&ca.data.join("policies"))?);
    let store = ca_server::startup::open_store(&url).await?;
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

/// Inserts `count` synthetic certificates of the Basic CA for `device` (revoked, or valid) in
/// one transaction. Straight SQL: the storage API writes one certificate per transaction, which
/// would take minutes for 100,000 rows; only the timed path has to be the real one.
pub async fn fill(url: &str, device: &str, count: usize, revoked: bool) -> anyhow::Result<()> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let statements: Vec<String> = (0..count)
        .collect::<Vec<_>>()
        .chunks(ROWS_PER_INSERT)
        .map(|chunk| insert_statement(device, now, chunk, revoked))
        .collect();
    // Both backends run the same statements; only the connection type differs.
    macro_rules! insert_all {
        ($connection:ty) => {{
            let mut conn = <$connection>::connect(url).await?;
            let mut tx = conn.begin().await?;
            for statement in statements {
                // Built from integers and our own fixed strings only.
                sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
                    .execute(&mut *tx)
                    .await
                    .context("inserting revoked certificates")?;
            }
            tx.commit().await?;
        }};
    }
    if url.starts_with("sqlite:") {
        insert_all!(sqlx::SqliteConnection);
    } else {
        insert_all!(sqlx::PgConnection);
    }
    Ok(())
}

/// One multi-row INSERT. Serials are distinct 128-bit hex values with the top bit clear, like
/// the CA's; the DER and key hash columns are empty (a CRL needs neither).
fn insert_statement(device: &str, now: i64, indexes: &[usize], revoked: bool) -> String {
    let mut sql = String::from(
        "INSERT INTO certificates (serial, issuer, device_serial, product, policy_oid, \
         not_before, not_after, spki_sha256, der, status, revoked_at, revocation_reason, \
         authorized_by, issued_at) VALUES ",
    );
    for (n, &i) in indexes.iter().enumerate() {
        let serial = format!(
            "4{:031x}",
            (i as u128 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        );
        let reason = if i % 3 == 0 {
            "'keyCompromise'"
        } else {
            "'cessationOfOperation'"
        };
        let (status, revoked_at, reason) = if revoked {
            ("revoked", (now - i as i64).to_string(), reason)
        } else {
            ("valid", "NULL".to_owned(), "NULL")
        };
        if n > 0 {
            sql.push(',');
        }
        sql.push_str(&format!(
            "('{serial}','basic','{device}','{PRODUCT}','1.3.6.1.4.1.32473.98.1.1',{nb},{na},'','',\
             '{status}',{revoked_at},{reason},'token',{nb})",
            nb = now - 86_400,
            na = now + 86_400 * 365,
        ));
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_statement_lists_distinct_serials() {
        let sql = insert_statement("IP20000000", 1_700_000_000, &[0, 1, 2], true);
        assert_eq!(sql.matches("'revoked'").count(), 3);
        let serial = |i: u128| format!("4{:031x}", (i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        assert_ne!(serial(0), serial(1));
        assert!(sql.contains(&serial(2)));
    }
}
