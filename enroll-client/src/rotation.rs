//! Unattended renewal: when a certificate is due, `renew` once; which answers are final; and
//! (re-exported from [`crate::daemon`]) the `run` loop that keeps the identity valid for years.

use std::path::Path;

use ring::rand::SecureRandom;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::clock;
pub use crate::daemon::{RunOptions, RunOutcome, Watch, run, run_watching};
use crate::enroll::{Enrolled, Server, pending_renewal, reenroll};
use crate::error::ClientError;
use crate::keystore;

/// When to renew: a share of the lifetime, plus jitter so a fleet enrolled together spreads out.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Renew once this share of the lifetime has passed (the policy's `window_start_percent`).
    pub window_percent: u8,
    /// Spread renewals over up to this further share of the lifetime.
    pub jitter_percent: u8,
}

/// The current certificate's validity, read from `DIR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    pub not_before: i64,
    pub not_after: i64,
}

/// Reads the validity of the current certificate in `dir`.
pub fn current_validity(dir: &Path) -> Result<Validity, ClientError> {
    let credential = keystore::load(dir)?;
    let block = pem::parse(&credential.cert_pem)
        .map_err(|e| ClientError::Local(format!("current certificate: {e}")))?;
    let (_, cert) = X509Certificate::from_der(block.contents())
        .map_err(|e| ClientError::Local(format!("current certificate: {e}")))?;
    Ok(Validity {
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

impl Schedule {
    /// The moment to renew, for a jitter draw in `[0, 1)`; always before expiry.
    pub fn renewal_point(&self, validity: Validity, draw: f64) -> i64 {
        let lifetime = (validity.not_after - validity.not_before).max(0) as f64;
        let window = lifetime * f64::from(self.window_percent.min(100)) / 100.0;
        let jitter =
            lifetime * f64::from(self.jitter_percent.min(100)) / 100.0 * draw.clamp(0.0, 1.0);
        let point = validity.not_before + (window + jitter) as i64;
        // Never plan past the last tenth of the lifetime, whatever the settings say.
        point
            .min(validity.not_after - (lifetime / 10.0) as i64)
            .max(validity.not_before)
    }
}

/// A uniform draw in `[0, 1)` from the system CSPRNG (0 if it is unavailable).
pub(crate) fn draw() -> f64 {
    let mut bytes = [0u8; 4];
    match ring::rand::SystemRandom::new().fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_be_bytes(bytes)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.0,
    }
}

/// What `renew` did.
#[derive(Debug, Clone)]
pub enum RenewOutcome {
    /// The window has not opened; the Unix time when it does.
    NotDue {
        at: i64,
    },
    Renewed(Enrolled),
}

/// Renews once if the window has opened (or `force`, or a renewal staged by an interrupted run
/// is waiting to be sent again). An answer no retry can change is `NeedsReprovisioning` (exit 10).
pub async fn renew(
    server: &Server,
    dir: &Path,
    schedule: Schedule,
    force: bool,
) -> Result<RenewOutcome, ClientError> {
    let validity = current_validity(dir)?;
    let at = Schedule {
        jitter_percent: 0,
        ..schedule
    }
    .renewal_point(validity, 0.0);
    // A renewal staged by an earlier, interrupted run is finished whatever the window says.
    let pending = pending_renewal(dir)?.is_some();
    if !force && !pending && clock::ca_now() < at {
        return Ok(RenewOutcome::NotDue { at });
    }
    match reenroll(server, dir).await {
        Ok(enrolled) => Ok(RenewOutcome::Renewed(enrolled)),
        Err(error) => Err(match permanent(&error) {
            Some(reason) => ClientError::NeedsReprovisioning(reason),
            None => error,
        }),
    }
}

/// Error codes after which retrying cannot help: the device needs a new initial enrollment.
const PERMANENT: [&str; 8] = [
    "device.disabled",
    "device.not_registered",
    "device.unknown",
    "reenroll.expired",
    "reenroll.identity_changed",
    "reenroll.revoked",
    "reenroll.superseded",
    "reenroll.unknown_certificate",
];

/// The one-line reason when `error` is an answer the device can never recover from by
/// retrying (revoked, superseded with nothing staged to replay, expired beyond grace, device
/// disabled or unknown): only a new initial enrollment helps.
pub fn permanent(error: &ClientError) -> Option<String> {
    match error {
        ClientError::Forbidden { code, message } | ClientError::Server { code, message, .. }
            if PERMANENT.contains(&code.as_str()) =>
        {
            Some(format!("{code}: {message}"))
        }
        ClientError::NeedsReprovisioning(reason) => Some(reason.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const YEAR: Validity = Validity {
        not_before: 0,
        not_after: 365 * 86_400,
    };

    #[test]
    fn renewal_point_is_the_window_plus_jitter() {
        let schedule = Schedule {
            window_percent: 70,
            jitter_percent: 5,
        };
        assert_eq!(
            schedule.renewal_point(YEAR, 0.0),
            (365.0 * 86_400.0 * 0.70) as i64
        );
        let late = schedule.renewal_point(YEAR, 0.999);
        assert!(
            late > schedule.renewal_point(YEAR, 0.0) && late <= (365.0 * 86_400.0 * 0.75) as i64
        );
    }

    #[test]
    fn renewal_point_never_lands_in_the_last_tenth() {
        let schedule = Schedule {
            window_percent: 100,
            jitter_percent: 50,
        };
        assert_eq!(
            schedule.renewal_point(YEAR, 0.9),
            YEAR.not_after - 36 * 86_400 - 43_200
        );
    }

    #[test]
    fn draws_are_in_range() {
        for _ in 0..100 {
            let d = draw();
            assert!((0.0..1.0).contains(&d));
        }
    }
}
