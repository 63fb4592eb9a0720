//! CRL regeneration.

use crate::report::Outcome;

/// Measures CRL regeneration.
pub async fn run(_: usize, _: Option<&str>) -> anyhow::Result<Outcome> {
    anyhow::bail!("crl: not yet")
}
