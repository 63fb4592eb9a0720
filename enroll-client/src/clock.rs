//! The device's clock and the CA's: the device time (with a test-only offset), the skew measured
//! from the CA's `Date` headers, and the plain words a person needs when the two disagree.
//!
//! A device without a battery-backed clock, or one whose NTP is blocked, can be minutes or days
//! off. A certificate the CA has already committed is never thrown away for that: it is
//! checked against the CA's clock instead, and the device says plainly that its clock is off.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls_pki_types::UnixTime;

/// TEST ONLY: shifts the device clock the client sees by this many seconds (negative: slow).
/// Lets tests play a device whose clock is wrong without changing the machine's clock. It is
/// read once per process; production devices never set it.
pub const TEST_CLOCK_OFFSET_ENV: &str = "IOMT_TEST_CLOCK_OFFSET_SECS";

/// A skew under this many seconds is normal (network delay, the `Date` header's 1 s steps).
pub const SKEW_TOLERANCE_SECS: i64 = 60;

/// The last measured skew (CA clock minus device clock), valid once `SKEW_KNOWN` is set.
static SKEW: AtomicI64 = AtomicI64::new(0);
static SKEW_KNOWN: AtomicBool = AtomicBool::new(false);
/// The skew last reported to the person, so a steady skew is not repeated on every answer.
static REPORTED: AtomicI64 = AtomicI64::new(0);

fn test_offset() -> i64 {
    static OFFSET: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *OFFSET.get_or_init(|| {
        std::env::var(TEST_CLOCK_OFFSET_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(0)
    })
}

/// The device's clock, Unix seconds (the system clock, plus the test-only offset).
pub fn device_now() -> i64 {
    let system = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    system + test_offset()
}

/// The device's clock as `webpki`/`rustls` take it.
pub fn device_unix_time() -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(device_now().max(0) as u64))
}

/// The best estimate of the CA's clock: the device clock corrected by the last measured skew.
pub fn ca_now() -> i64 {
    device_now() + skew().unwrap_or(0)
}

/// CA clock minus device clock, seconds, if any answer has carried a `Date`.
pub fn skew() -> Option<i64> {
    SKEW_KNOWN
        .load(Ordering::Relaxed)
        .then(|| SKEW.load(Ordering::Relaxed))
}

/// Records the CA's `Date` header of an answer; warns (once per new value) when the device
/// clock is off by more than [`SKEW_TOLERANCE_SECS`]. Returns the measured skew.
pub fn record_ca_date(header: &str) -> Option<i64> {
    let ca = parse_http_date(header)?;
    let skew = ca - device_now();
    SKEW.store(skew, Ordering::Relaxed);
    SKEW_KNOWN.store(true, Ordering::Relaxed);
    if skew.abs() > SKEW_TOLERANCE_SECS {
        let last = REPORTED.swap(skew, Ordering::Relaxed);
        if (last - skew).abs() > SKEW_TOLERANCE_SECS / 2 {
            tracing::warn!(
                skew_secs = skew,
                "{}",
                skew_advice(skew, "by the CA's Date header")
            );
        }
    } else {
        REPORTED.store(0, Ordering::Relaxed);
    }
    Some(skew)
}

/// One sentence saying how far off the device clock is and what to do.
pub fn skew_advice(skew: i64, evidence: &str) -> String {
    let direction = if skew > 0 { "behind" } else { "ahead of" };
    format!(
        "the device clock is {} {direction} the CA's ({evidence}): fix the device's time \
         (enable NTP, or check its real-time clock battery)",
        human(skew.unsigned_abs())
    )
}

/// `90061` → `1d 1h 1m 1s`.
pub fn human(secs: u64) -> String {
    let parts = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut left = secs;
    let mut text = String::new();
    for (unit, name) in parts {
        if left >= unit {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(&format!("{}{name}", left / unit));
            left %= unit;
        }
    }
    if text.is_empty() { "0s".into() } else { text }
}

/// Parses an HTTP date (RFC 9110 IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`) to Unix seconds.
pub fn parse_http_date(text: &str) -> Option<i64> {
    let mut fields = text.split_whitespace();
    let _weekday = fields.next()?;
    let day: u8 = fields.next()?.parse().ok()?;
    let month = match fields.next()? {
        "Jan" => time::Month::January,
        "Feb" => time::Month::February,
        "Mar" => time::Month::March,
        "Apr" => time::Month::April,
        "May" => time::Month::May,
        "Jun" => time::Month::June,
        "Jul" => time::Month::July,
        "Aug" => time::Month::August,
        "Sep" => time::Month::September,
        "Oct" => time::Month::October,
        "Nov" => time::Month::November,
        "Dec" => time::Month::December,
        _ => return None,
    };
    let year: i32 = fields.next()?.parse().ok()?;
    let mut hms = fields.next()?.split(':').map(|p| p.parse::<u8>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if fields.next()? != "GMT" {
        return None;
    }
    let date = time::Date::from_calendar_date(year, month, day).ok()?;
    let moment = date.with_hms(h, m, s).ok()?.assume_utc();
    Some(moment.unix_timestamp())
}

/// A `Retry-After` value (delay seconds or an HTTP date) as seconds from now by the CA's clock.
pub fn parse_retry_after(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(secs);
    }
    parse_http_date(text).map(|at| (at - ca_now()).max(0) as u64)
}

/// The device clock for rustls: server certificates are judged by it.
#[derive(Debug)]
pub(crate) struct DeviceClock;

impl rustls::time_provider::TimeProvider for DeviceClock {
    fn current_time(&self) -> Option<UnixTime> {
        Some(device_unix_time())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_parse_and_bad_ones_do_not() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        for bad in [
            "",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        assert_eq!(parse_retry_after(" 86400 "), Some(86_400));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(0));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn advice_names_the_direction_and_the_fix() {
        assert_eq!(human(2 * 86_400 + 61), "2d 1m 1s");
        let text = skew_advice(-600, "test");
        assert!(text.contains("10m ahead of"), "{text}");
        assert!(text.contains("NTP"), "{text}");
        assert!(skew_advice(600, "test").contains("behind"));
    }
}
