//! `GET /console/`: the fleet at a glance (see `operations::overview` for what is counted).

use axum::Extension;
use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};

use super::charts::{self, Gauge};
use super::page::{ConsoleError, badge, html_response, layout, when};
use super::{ConsoleState, ConsoleUser, now};
use crate::operations::overview::{HourlySeries, ISSUANCE_HOURS, Overview};

const DAY: i64 = 86_400;

/// `GET /console/`.
pub async fn show(
    State(state): State<ConsoleState>,
    Extension(user): Extension<ConsoleUser>,
) -> Result<Response, ConsoleError> {
    let at = now();
    let overview = state
        .overviews
        .read(at)
        .await
        .map_err(|e| ConsoleError::internal(&e))?;
    Ok(html_response(layout(
        "Overview",
        Some(&user),
        "/console/",
        render(&overview, at),
    )))
}

/// Day ticks (`MM-DD`) at each midnight within the series' hours.
fn day_ticks(series: &HourlySeries) -> Vec<(usize, String)> {
    (0..ISSUANCE_HOURS)
        .filter_map(|i| {
            let hour = series.first_hour + 3600 * i as i64;
            (hour.rem_euclid(DAY) == 0).then(|| (i, when(hour)[5..10].to_owned()))
        })
        .collect()
}

fn life(now: i64, not_before: i64, not_after: i64) -> (f64, String, bool) {
    let total = (not_after - not_before).max(1) as f64;
    let left = (not_after - now).max(0);
    let fraction = left as f64 / total;
    let years = left as f64 / (365.25 * DAY as f64);
    let text = format!("{:.1} years left (until {})", years, &when(not_after)[..10]);
    (fraction, text, fraction < 0.2)
}

fn render(overview: &Overview, now: i64) -> Markup {
    let by_product = &overview.issued_by_product;
    let by_station = &overview.issued_by_station;
    let levels: Vec<(String, Vec<(&'static str, u64)>)> = overview
        .status_by_level
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                vec![
                    ("valid", t.tally.valid),
                    ("on hold", t.tally.on_hold),
                    ("revoked", t.tally.revoked),
                    ("expired", t.tally.expired),
                ],
            )
        })
        .collect();
    let generations: Vec<Gauge> = overview
        .generations
        .iter()
        .map(|g| {
            let (fraction, text, warn) = life(now, g.not_before, g.not_after);
            Gauge {
                label: format!("{} G{} ({})", g.ca, g.generation, g.status),
                fraction,
                text,
                warn,
            }
        })
        .collect();
    let crls: Vec<Gauge> = overview
        .crls
        .iter()
        .map(|crl| match crl.latest {
            Some((number, this, next)) => {
                let (fraction, _, _) = life(now, this, next);
                let hours = (next - now) as f64 / 3600.0;
                Gauge {
                    label: crl.issuer.clone(),
                    fraction,
                    text: if crl.fresh(now) {
                        format!("#{number}, next update in {hours:.1} h")
                    } else {
                        format!("#{number}, STALE since {}", when(next))
                    },
                    warn: !crl.fresh(now),
                }
            }
            None => Gauge {
                label: crl.issuer.clone(),
                fraction: 0.0,
                text: "not published".to_owned(),
                warn: true,
            },
        })
        .collect();
    let audit = &overview.audit;
    html! {
        p.help { "As of " (when(overview.generated_at)) ". Reload the page for newer figures." }
        section aria-labelledby="issued" {
            h2 #issued { "Certificates issued per hour, last 7 days" }
            p { (by_product.total()) " device certificates in the last 7 days." }
            (charts::stacked_columns("by-product", "By product", ISSUANCE_HOURS, &by_product.series, &day_ticks(by_product)))
            (charts::stacked_columns("by-station", "By station (token and renewal in parentheses)", ISSUANCE_HOURS, &by_station.series, &day_ticks(by_station)))
        }
        section aria-labelledby="expiring" {
            h2 #expiring { "Valid certificates expiring per month, next 24 months" }
            (charts::columns("expiry", "Expiring per month", &overview.expiring_per_month, 3))
        }
        section aria-labelledby="levels" {
            h2 #levels { "Certificate status by level" }
            @if levels.is_empty() {
                p { "No device certificates yet." }
            } @else {
                (charts::stacked_rows("status", "Status by level", &levels))
                table {
                    thead { tr { th scope="col" { "Level" } th scope="col" { "Valid" } th scope="col" { "On hold" } th scope="col" { "Revoked" } th scope="col" { "Expired" } } }
                    tbody {
                        @for t in &overview.status_by_level {
                            tr { th scope="row" { (t.name) } td.num { (t.tally.valid) } td.num { (t.tally.on_hold) } td.num { (t.tally.revoked) } td.num { (t.tally.expired) } }
                        }
                    }
                }
            }
        }
        div.columns {
            section aria-labelledby="generations" {
                h2 #generations { "CA generations and their remaining life" }
                (charts::gauges("life", "Remaining life of each CA generation", &generations))
            }
            section aria-labelledby="crls" {
                h2 #crls { "CRL freshness" }
                (charts::gauges("crl", "Time left before each CRL's nextUpdate", &crls))
            }
        }
        section aria-labelledby="audit" {
            h2 #audit { "Audit chain" }
            dl.facts {
                dt { "Verified at start" }
                dd { (badge("verified")) " " (audit.verified_at_start.events) " events, every hash checked when this server started" }
                dt { "Head now" }
                dd {
                    @match &audit.head {
                        Some((seq, hash)) => { "event " (seq) ", hash " code.hash { (hash) } }
                        None => { "empty" }
                    }
                }
                dt { "Latest signed checkpoint" }
                dd {
                    @match (audit.checkpoint, &audit.head) {
                        (Some((seq, at)), Some((head, _))) => {
                            "event " (seq) ", signed " (when(at))
                            @if head > &seq { " · " (head - seq) " later event(s), covered by the next checkpoint" } @else { " · covers the head" }
                        }
                        (Some((seq, at)), None) => { "event " (seq) ", signed " (when(at)) }
                        (None, _) => { (badge("none")) " no checkpoint signed yet" }
                    }
                }
            }
        }
    }
}
