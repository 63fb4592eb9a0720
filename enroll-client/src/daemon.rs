//! The `run` loop: keeps a device's identity valid for years, unattended. Every wait is bounded
//! by `--retry-max`, jittered, and logged with its reason; `Retry-After` is honoured up to that
//! bound; the certificate's own status is checked by OCSP on a schedule; an answer no retry can
//! change ends the loop with the reason (exit 10). State comes from the files alone, so a restart
//! at any point resumes correctly (a renewal staged before a crash is sent again first).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::chain::read_root;
use crate::clock;
use crate::enroll::{Server, pending_renewal, reenroll};
use crate::error::ClientError;
use crate::est::EstClient;
use crate::rotation::{Schedule, Validity, current_validity, draw, permanent};
use crate::status::{OwnStatus, check_own_status};

/// Settings of the `run` loop.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub server: Server,
    pub dir: PathBuf,
    pub schedule: Schedule,
    /// First retry delay after a failure; doubles up to `retry_max`.
    pub retry_min: Duration,
    /// The longest any single wait lasts (failures, `Retry-After`, and the wait for the window,
    /// which is taken in steps of at most this long).
    pub retry_max: Duration,
    /// Shell command run after each successful renewal (e.g. reload the service using the files).
    pub exec: Option<String>,
}

/// What the loop watches besides the clock.
#[derive(Debug, Clone)]
pub struct Watch {
    /// How often the certificate's status is asked of its OCSP responder (0: never).
    pub ocsp_interval: Duration,
    /// Notified to renew now, whatever the window (the CLI wires SIGHUP to it).
    pub renew_now: Arc<Notify>,
}

impl Default for Watch {
    fn default() -> Watch {
        Watch {
            ocsp_interval: Duration::from_secs(86_400),
            renew_now: Arc::new(Notify::new()),
        }
    }
}

/// How the `run` loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Asked to stop (SIGTERM/SIGINT).
    Stopped,
    /// The CA will not renew this identity (expired beyond grace, revoked, superseded...).
    NeedsReprovisioning(String),
}

/// [`run_watching`] with the default watch: OCSP daily, no early-renewal trigger.
pub async fn run(
    options: &RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<RunOutcome, ClientError> {
    run_watching(options, &Watch::default(), shutdown).await
}

/// Keeps the identity in `options.dir` renewed until `shutdown` resolves.
pub async fn run_watching(
    options: &RunOptions,
    watch: &Watch,
    shutdown: impl Future<Output = ()>,
) -> Result<RunOutcome, ClientError> {
    tokio::pin!(shutdown);
    let mut backoff = Backoff::new(options.retry_min, options.retry_max);
    let mut next_status_check = Instant::now();
    let mut held = false;
    let mut forced = false;
    // The renewal point of the certificate in place, drawn once per certificate.
    let mut plan: Option<(Validity, i64)> = None;
    let mut just_probed = false;
    loop {
        // A stop request is honoured between renewals, never in the middle of one.
        tokio::select! {
            biased;
            () = &mut shutdown => return Ok(RunOutcome::Stopped),
            () = std::future::ready(()) => {}
        }
        if !watch.ocsp_interval.is_zero() && Instant::now() >= next_status_check {
            let status = check_own_status(&options.server, &options.dir).await?;
            let recheck = match &status {
                OwnStatus::Good => {
                    held = false;
                    tracing::info!("OCSP: the certificate is good");
                    watch.ocsp_interval
                }
                OwnStatus::Revoked { reason } => {
                    return Ok(RunOutcome::NeedsReprovisioning(format!(
                        "the certificate is revoked ({reason}) according to its OCSP responder"
                    )));
                }
                OwnStatus::OnHold => {
                    held = true;
                    tracing::warn!("OCSP: the certificate is on hold; renewal waits for release");
                    options.retry_max
                }
                OwnStatus::Unknown(why) => {
                    tracing::warn!(why, "OCSP: no usable status; keeping the certificate");
                    watch.ocsp_interval.min(options.retry_max)
                }
            };
            next_status_check = Instant::now() + recheck;
        }

        let validity = current_validity(&options.dir)?;
        let due = match plan {
            Some((planned_for, due)) if planned_for == validity => due,
            _ => {
                let due = options.schedule.renewal_point(validity, draw());
                tracing::info!(
                    renew_at = due,
                    not_after = validity.not_after,
                    "renewal planned"
                );
                plan = Some((validity, due));
                due
            }
        };
        // The CA's clock when known: a device clock days off must neither renew too early nor
        // plan a renewal past the certificate's expiry.
        let now = clock::ca_now();
        let pending = pending_renewal(&options.dir)?.is_some();
        if !held && (forced || pending || now >= due) {
            let reason = if forced {
                "renewal requested"
            } else if pending {
                "a staged renewal is waiting to be sent again"
            } else {
                "the renewal window is open"
            };
            tracing::info!(reason, "renewing");
            let pause = match reenroll(&options.server, &options.dir).await {
                Ok(enrolled) => {
                    tracing::info!(certificate = %enrolled.certificate_serial, not_after = %enrolled.not_after, "renewed");
                    if let Some(command) = &options.exec {
                        run_exec(command).await;
                    }
                    backoff.reset();
                    forced = false;
                    continue;
                }
                Err(error) => {
                    if let Some(reason) = permanent(&error) {
                        return Ok(RunOutcome::NeedsReprovisioning(reason));
                    }
                    let asked = retry_after(&error);
                    let pause = backoff.next(asked);
                    tracing::warn!(%error, "renewal failed; keeping the current certificate");
                    let reason = match asked {
                        Some(asked) if asked >= options.retry_max => {
                            "the CA's Retry-After, capped at --retry-max"
                        }
                        Some(_) => "the CA's Retry-After",
                        None => "backoff after a failed renewal",
                    };
                    (pause, reason)
                }
            };
            match wait(pause.0, pause.1, &mut shutdown, &watch.renew_now).await {
                Woken::Stop => return Ok(RunOutcome::Stopped),
                Woken::RenewNow => forced = true,
                Woken::Elapsed => {}
            }
            continue;
        }
        // Before a wait planned by the device clock alone, learn the CA's (a device days slow
        // would otherwise sleep past its window); once per wait step while it is unknown.
        if clock::skew().is_none() && !just_probed {
            probe_ca_clock(&options.server, &options.dir).await;
            just_probed = true;
            continue;
        }
        just_probed = false;
        let until_due = Duration::from_secs(due.saturating_sub(now).max(0) as u64);
        let until_check = if watch.ocsp_interval.is_zero() {
            Duration::MAX
        } else {
            next_status_check.saturating_duration_since(Instant::now())
        };
        let (step, reason) = [
            (until_due, "until the renewal window"),
            (until_check, "until the next OCSP status check"),
            (options.retry_max, "--retry-max (the longest single wait)"),
        ]
        .into_iter()
        .min_by_key(|(d, _)| *d)
        .unwrap_or((options.retry_max, "--retry-max"));
        let reason = if held {
            "the certificate is on hold"
        } else {
            reason
        };
        match wait(step, reason, &mut shutdown, &watch.renew_now).await {
            Woken::Stop => return Ok(RunOutcome::Stopped),
            Woken::RenewNow => {
                tracing::info!("renewal requested");
                forced = true;
            }
            Woken::Elapsed => {}
        }
    }
}

/// One cheap answer from the CA (`cacerts`) for its `Date`; failures only postpone the estimate.
async fn probe_ca_clock(server: &Server, dir: &Path) {
    let probe = async {
        let root = read_root(&server.ca_cert)?;
        let trusted = crate::trust::Trust::load(&root, dir)?;
        let client = EstClient::trusting(
            &server.url,
            trusted.roots(),
            &server.ca_cert.display().to_string(),
            None,
        )?;
        client.cacerts(server.label.as_deref()).await
    };
    if let Err(error) = probe.await {
        tracing::debug!(%error, "the CA's clock is not known yet");
    }
}

/// What ended a wait.
enum Woken {
    Elapsed,
    Stop,
    RenewNow,
}

/// Sleeps `pause` (logged with `reason`) unless asked to stop or to renew now.
async fn wait<S: Future<Output = ()>>(
    pause: Duration,
    reason: &str,
    shutdown: &mut std::pin::Pin<&mut S>,
    renew_now: &Notify,
) -> Woken {
    tracing::info!(wait = %humantime::format_duration(round(pause)), reason, "waiting");
    tokio::select! {
        () = tokio::time::sleep(pause) => Woken::Elapsed,
        () = shutdown.as_mut() => Woken::Stop,
        () = renew_now.notified() => Woken::RenewNow,
    }
}

fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().min(u128::from(u64::MAX)) as u64)
}

/// The delay the CA asked for (429, or 503 with `Retry-After`).
fn retry_after(error: &ClientError) -> Option<Duration> {
    match error {
        ClientError::TooSoon {
            retry_after_secs, ..
        } => Some(Duration::from_secs(*retry_after_secs)),
        ClientError::Server {
            retry_after_secs: Some(secs),
            ..
        } => Some(Duration::from_secs(*secs)),
        _ => None,
    }
}

/// Retry delays: exponential from `min` to `max`, always jittered (a fleet that failed together
/// must not retry in lock-step, at the maximum least of all), never longer than `max`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Backoff {
        let min = min.min(max);
        Backoff {
            min,
            max,
            current: min,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.current = self.min;
    }

    /// The next pause: the CA's `Retry-After` when given (never earlier, a little later so the
    /// fleet spreads), else the backoff step; in both cases at most `max`, jittered.
    pub(crate) fn next(&mut self, asked: Option<Duration>) -> Duration {
        self.next_with(asked, draw())
    }

    fn next_with(&mut self, asked: Option<Duration>, draw: f64) -> Duration {
        let draw = draw.clamp(0.0, 1.0);
        match asked {
            Some(asked) if asked < self.max => {
                let spread = (asked / 10).min(self.max - asked);
                asked + spread.mul_f64(draw)
            }
            // Asked for longer than we ever wait: the last tenth below the cap, jittered.
            Some(_) => self.max.mul_f64(0.9 + 0.1 * draw),
            None => {
                let step = self.current.min(self.max);
                self.current = (self.current * 2).min(self.max);
                step.mul_f64(0.5 + 0.5 * draw)
            }
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

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn backoff_doubles_to_the_cap_and_keeps_its_jitter_there() {
        let mut b = Backoff::new(S(30), S(3600));
        assert_eq!(b.next_with(None, 1.0), S(30));
        assert_eq!(b.next_with(None, 0.0), S(30));
        for _ in 0..20 {
            b.next_with(None, 0.5);
        }
        let (low, high) = (b.next_with(None, 0.0), b.next_with(None, 0.999));
        assert!(high <= S(3600), "{high:?}");
        assert!(high - low > S(1000), "jitter at the cap: {low:?}..{high:?}");
        b.reset();
        assert_eq!(b.next_with(None, 1.0), S(30));
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap_never_earlier() {
        let mut b = Backoff::new(S(30), S(3600));
        let asked = S(600);
        assert_eq!(b.next_with(Some(asked), 0.0), asked);
        let late = b.next_with(Some(asked), 1.0);
        assert!(late > asked && late <= S(660), "{late:?}");
        let day = S(86_400);
        let (low, high) = (b.next_with(Some(day), 0.0), b.next_with(Some(day), 0.999));
        assert!(
            low >= S(3240) && high <= S(3600) && high > low,
            "{low:?} {high:?}"
        );
    }

    #[test]
    fn final_answers_are_recognised() {
        let superseded = ClientError::Server {
            status: 409,
            code: "reenroll.superseded".into(),
            message: "m".into(),
            retry_after_secs: None,
        };
        assert!(permanent(&superseded).is_some());
        let held = ClientError::Forbidden {
            code: "reenroll.on_hold".into(),
            message: "m".into(),
        };
        assert!(permanent(&held).is_none(), "a hold may be released");
        let busy = ClientError::Server {
            status: 503,
            code: "storage.unavailable".into(),
            message: "m".into(),
            retry_after_secs: Some(30),
        };
        assert!(permanent(&busy).is_none());
        assert_eq!(retry_after(&busy), Some(S(30)));
    }
}
