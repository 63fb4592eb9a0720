//! Results: `key: value` lines on stdout, error details on stderr, and the Markdown table of
//! `all` against the targets of issue #7.

use crate::load::LoadResult;

/// One line of the `all` table.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured.
    pub measure: String,
    /// The target from issue #7.
    pub target: String,
    /// Our figure, formatted.
    pub ours: String,
    /// cfssl's figure, if measured.
    pub cfssl: String,
    /// Whether the target is met, if it can be decided from the figure.
    pub met: Option<bool>,
}

impl Row {
    /// A row without a cfssl figure.
    pub fn new(measure: &str, target: &str, ours: String, met: Option<bool>) -> Row {
        Row {
            measure: measure.to_owned(),
            target: target.to_owned(),
            ours,
            cfssl: "–".to_owned(),
            met,
        }
    }
}

/// What a mode hands back to `main`.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Failed requests (any makes the exit code 1).
    pub request_errors: usize,
    /// Rows for the `all` table.
    pub rows: Vec<Row>,
    /// The one-line summary printed last.
    pub summary: String,
    /// The headline rate (per second), for comparisons between runs.
    pub rate: f64,
}

/// Prints the figures of one load run as `prefix.key: value` lines; errors go to stderr.
pub fn print_load(prefix: &str, result: &LoadResult, server_rss_mb: Option<f64>) {
    let ops = result.ok.max(1) as f64;
    println!("{prefix}.per_second: {:.0}", result.rate());
    println!("{prefix}.ok: {}", result.ok);
    println!("{prefix}.warmup_ok: {}", result.warmup_ok);
    println!("{prefix}.window_s: {:.2}", result.window.as_secs_f64());
    for (name, q) in [("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0)] {
        println!("{prefix}.latency_{name}_ms: {:.1}", result.latency_ms(q));
    }
    if let Some(cpu) = result.server_cpu {
        println!(
            "{prefix}.server_cpu_us_per_op: {:.0}",
            cpu.as_secs_f64() * 1e6 / ops
        );
    }
    if let Some(cpu) = result.database_cpu {
        println!(
            "{prefix}.database_cpu_us_per_op: {:.0}",
            cpu.as_secs_f64() * 1e6 / ops
        );
    }
    if let Some(rss) = server_rss_mb {
        println!("{prefix}.server_peak_rss_mb: {rss:.1}");
    }
    println!(
        "{prefix}.client_cpu_us_per_op: {:.0}",
        result.client_cpu.as_secs_f64() * 1e6 / ops
    );
    print_threads(prefix, result, ops);
    println!("{prefix}.connections: {}", result.connections);
    println!("{prefix}.exhausted: {}", result.exhausted);
    println!("{prefix}.errors: {}", result.error_count());
    if result.exhausted {
        eprintln!(
            "{prefix}: the pre-generated requests ran out after {:.2} s of the window (raise --devices)",
            result.window.as_secs_f64()
        );
    }
    if result.error_count() > 0 {
        eprintln!("{prefix}: {} FAILED REQUESTS", result.error_count());
        for (kind, count) in &result.errors {
            eprintln!("  {kind}: {count}");
        }
        for sample in &result.error_samples {
            eprintln!("  e.g. {sample}");
        }
    }
}

/// Where the server's time went, per operation and per kind of thread: on a CPU, runnable but
/// waiting for one, and how often it slept and was woken (each wake-up of a storage thread is
/// a hand-off a request waits through); then the machine's idle time, which a server that
/// kept both cores busy would not have.
fn print_threads(prefix: &str, result: &LoadResult, ops: f64) {
    let per_op = |ns: u64| ns as f64 / 1e3 / ops;
    for group in &result.server_threads {
        let spent = &group.spent;
        if spent.on_cpu_ns == 0 {
            continue;
        }
        let wait_per_wakeup = if spent.wakeups > 0 {
            spent.run_queue_ns as f64 / 1e3 / spent.wakeups as f64
        } else {
            0.0
        };
        println!(
            "{prefix}.thread.{}: threads={} cpu_us_per_op={:.1} run_queue_us_per_op={:.1} wakeups_per_op={:.2} run_queue_us_per_wakeup={:.0}",
            group.name,
            group.threads,
            per_op(spent.on_cpu_ns),
            per_op(spent.run_queue_ns),
            spent.wakeups as f64 / ops,
            wait_per_wakeup,
        );
    }
    if result.server_threads.is_empty() {
        return;
    }
    let idle_ns = u64::try_from(result.machine_idle.as_nanos()).unwrap_or(u64::MAX);
    println!("{prefix}.machine_idle_us_per_op: {:.1}", per_op(idle_ns));
}

/// The Markdown table of the `all` mode.
pub fn markdown(rows: &[Row]) -> String {
    let mut table =
        String::from("| measure | target | ours | cfssl | met |\n|---|---|---|---|---|\n");
    for row in rows {
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        table.push_str(&format!(
            "| {} | {} | {} | {} | {met} |\n",
            row.measure, row.target, row.ours, row.cfssl
        ));
    }
    table
}

/// Formats a rate with thousands separators (`8,123`).
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(8123.4), "8,123");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
    }

    #[test]
    fn markdown_marks_missed_targets() {
        let rows = [Row::new(
            "OCSP",
            "≥ 20,000/s",
            "12,000/s".into(),
            Some(false),
        )];
        assert!(markdown(&rows).contains("| OCSP | ≥ 20,000/s | 12,000/s | – | **no** |"));
    }
}
