//! Logs and metrics: the tracing subscriber every command installs (text for people, JSON
//! lines for collectors; colour only on a terminal; RFC 3339 UTC timestamps in both) and the
//! Prometheus registry [`metrics::Metrics`].

pub mod metrics;

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::time::SystemTime;
use tracing_subscriber::util::SubscriberInitExt;

pub use metrics::Metrics;

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`).
    Json,
}

/// Installs the process-wide subscriber: level filter from `CA_LOG` (default `info`), lines to
/// standard error, colour only when standard error is a terminal.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("CA_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    // Also routes the `log` records of dependencies into the subscriber.
    let _ = subscriber(format, filter, std::io::stderr, ansi).try_init();
}

/// The subscriber [`init`] installs, writing to `writer`. The timer prints RFC 3339 UTC with
/// microseconds (`2026-12-02T12:29:29.123456Z`) in both formats; `ansi` colours text lines.
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    ansi: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(SystemTime)
        .with_writer(writer);
    match format {
        LogFormat::Json => Box::new(builder.json().finish()),
        LogFormat::Text => Box::new(builder.with_ansi(ansi).finish()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    use super::*;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn emit(format: LogFormat) -> String {
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = subscriber(format, EnvFilter::new("info"), move || sink.clone(), false);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(code = "auth.token_used", "request refused");
        });
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn text_lines_have_no_colour_off_a_terminal_and_start_with_an_rfc3339_time() {
        let text = emit(LogFormat::Text);
        assert!(!text.contains('\u{1b}'), "{text:?}");
        let stamp = text.split_whitespace().next().unwrap();
        assert!(OffsetDateTime::parse(stamp, &Rfc3339).is_ok(), "{text}");
        assert!(text.contains("code=\"auth.token_used\"") || text.contains("code=auth.token_used"));
    }

    #[test]
    fn json_lines_carry_an_rfc3339_timestamp_and_the_fields() {
        let text = emit(LogFormat::Json);
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        let stamp = line["timestamp"].as_str().unwrap();
        assert!(OffsetDateTime::parse(stamp, &Rfc3339).is_ok(), "{text}");
        assert_eq!(line["fields"]["code"], "auth.token_used");
        assert_eq!(line["level"], "WARN");
    }
}
