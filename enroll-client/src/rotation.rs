//! Unattended renewal: when a certificate is due, `renew` once, and the `run` loop that keeps a
//! device's identity valid for years through outages and restarts.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ring::rand::SecureRandom;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::enroll::{Enrolled, Server, reenroll};
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
fn draw() -> f64 {
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

/// Renews once if the window has opened (or `force`).
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
    if !force && OffsetDateTime::now_utc().unix_timestamp() < at {
        return Ok(RenewOutcome::NotDue { at });
    }
    Ok(RenewOutcome::Renewed(reenroll(server, dir).await?))
}

/// Settings of the `run` loop.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub server: Server,
    pub dir: PathBuf,
    pub schedule: Schedule,
    /// First retry delay after a failure; doubles up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// Shell command run after each successful renewal (e.g. reload the service using the files).
    pub exec: Option<String>,
}

/// How the `run` loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Asked to stop (SIGTERM/SIGINT).
    Stopped,
    /// The CA will not renew this identity (expired beyond grace, revoked, superseded...).
    NeedsReprovisioning(String),
}

/// Error codes after which retrying cannot help: the device needs a new initial enrollment.
const PERMANENT: [&str; 6] = [
    "reenroll.expired",
    "reenroll.revoked",
    "reenroll.unknown_certificate",
    "reenroll.identity_changed",
    "reenroll.superseded",
    "device.not_registered",
];

/// Keeps the identity in `options.dir` renewed until `shutdown` resolves. Works out its state
/// from the files alone, so a restart at any point resumes correctly.
pub async fn run(
    options: &RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<RunOutcome, ClientError> {
    tokio::pin!(shutdown);
    let mut backoff = options.retry_min;
    loop {
        // A stop request is honoured between renewals, never in the middle of one.
        tokio::select! {
            biased;
            () = &mut shutdown => return Ok(RunOutcome::Stopped),
            () = std::future::ready(()) => {}
        }
        let validity = current_validity(&options.dir)?;
        let due = options.schedule.renewal_point(validity, draw());
        let wait = due - OffsetDateTime::now_utc().unix_timestamp();
        if wait > 0 {
            tracing::info!(renew_at = due, "next renewal scheduled");
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(wait as u64)) => {}
                () = &mut shutdown => return Ok(RunOutcome::Stopped),
            }
        }
        let pause = match reenroll(&options.server, &options.dir).await {
            Ok(enrolled) => {
                tracing::info!(certificate = %enrolled.certificate_serial, not_after = %enrolled.not_after, "renewed");
                if let Some(command) = &options.exec {
                    run_exec(command).await;
                }
                backoff = options.retry_min;
                continue;
            }
            Err(ClientError::Forbidden { code, message }) if PERMANENT.contains(&code.as_str()) => {
                return Ok(RunOutcome::NeedsReprovisioning(format!(
                    "{code}: {message}"
                )));
            }
            Err(ClientError::TooSoon {
                retry_after_secs, ..
            }) => Duration::from_secs(retry_after_secs),
            Err(error) => {
                let pause = backoff.mul_f64(1.0 + draw() / 2.0).min(options.retry_max);
                tracing::warn!(%error, retry_in = ?pause, "renewal failed; keeping the current certificate");
                backoff = (backoff * 2).min(options.retry_max);
                pause
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = &mut shutdown => return Ok(RunOutcome::Stopped),
        }
    }
}

async fn run_exec(command: &str) {
    match tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .status()
        .await
    {
        Ok(status) if status.success() => tracing::info!(command, "post-renewal command succeeded"),
        Ok(status) => tracing::warn!(command, %status, "post-renewal command failed"),
        Err(error) => tracing::warn!(command, %error, "post-renewal command could not start"),
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
