//! Charts as inline SVG, drawn on the server: stacked columns (issuance per hour), columns
//! (expiry per month), stacked rows (status per level) and gauges (remaining life, CRL
//! freshness). Colours are the Okabe-Ito palette (distinguishable with colour-vision
//! deficiencies), set as SVG presentation attributes (the CSP allows no inline style); every
//! chart has a title and description for screen readers and its numbers in a table beside it.

use maud::{Markup, html};

/// Okabe-Ito colours, in the order series get them.
const PALETTE: [&str; 7] = [
    "#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#8A7A00",
];
const WIDTH: f64 = 840.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 28.0;

/// The colour of series `index`.
pub fn colour(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

fn num(value: f64) -> String {
    format!("{value:.1}")
}

fn legend(names: &[String]) -> Markup {
    html! {
        ul.legend {
            @for (i, name) in names.iter().enumerate() {
                li {
                    svg width="12" height="12" viewBox="0 0 12 12" aria-hidden="true" focusable="false" {
                        rect width="12" height="12" fill=(colour(i)) {}
                    }
                    " " (name)
                }
            }
        }
    }
}

/// The frame every chart shares: `<figure>` with an accessible SVG and a caption.
fn frame(id: &str, title: &str, description: &str, view_height: f64, drawing: Markup) -> Markup {
    let title_id = format!("{id}-title");
    let desc_id = format!("{id}-desc");
    html! {
        svg.chart viewBox=(format!("0 0 {WIDTH} {view_height}")) role="img"
            aria-labelledby=(format!("{title_id} {desc_id}")) {
            title #(title_id) { (title) }
            desc #(desc_id) { (description) }
            (drawing)
        }
    }
}

fn y_axis(max: u64) -> Markup {
    let plot = HEIGHT - TOP - BOTTOM;
    let mut values = vec![0, max / 2, max];
    values.dedup();
    html! {
        @for value in values {
            @let y = TOP + plot - plot * (value as f64) / (max.max(1) as f64);
            line x1=(num(LEFT)) x2=(num(WIDTH - RIGHT)) y1=(num(y)) y2=(num(y)) stroke="#c8c8c8" stroke-width="1" {}
            text x=(num(LEFT - 6.0)) y=(num(y + 4.0)) text-anchor="end" font-size="12" fill="#333" { (value) }
        }
    }
}

/// Stacked columns: `columns` x positions (each series has that many values), one colour per
/// series; `ticks` label some columns (`(index, text)`).
pub fn stacked_columns(
    id: &str,
    title: &str,
    columns: usize,
    series: &[(String, Vec<u64>)],
    ticks: &[(usize, String)],
) -> Markup {
    let totals: Vec<u64> = (0..columns)
        .map(|i| {
            series
                .iter()
                .map(|(_, v)| v.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let step = plot_w / (columns.max(1) as f64);
    let sum: u64 = totals.iter().sum();
    let description = format!(
        "{sum} in all over {columns} columns; the highest column is {}.",
        totals.iter().max().unwrap_or(&0)
    );
    let names: Vec<String> = series.iter().map(|(n, _)| n.clone()).collect();
    let drawing = html! {
        (y_axis(max))
        @for column in 0..columns {
            @let x = LEFT + step * column as f64;
            @let mut base = 0u64;
            @for (i, (_, values)) in series.iter().enumerate() {
                @let value = values.get(column).copied().unwrap_or(0);
                @if value > 0 {
                    @let y = TOP + plot_h - plot_h * ((base + value) as f64) / (max as f64);
                    @let h = plot_h * (value as f64) / (max as f64);
                    rect x=(num(x)) y=(num(y)) width=(num((step - 0.5).max(0.5))) height=(num(h)) fill=(colour(i)) {}
                }
                ({ base += value; "" })
            }
        }
        @for (index, text) in ticks {
            @let x = LEFT + step * (*index as f64);
            line x1=(num(x)) x2=(num(x)) y1=(num(TOP + plot_h)) y2=(num(TOP + plot_h + 4.0)) stroke="#333" {}
            text x=(num(x + 2.0)) y=(num(HEIGHT - 8.0)) font-size="12" fill="#333" { (text) }
        }
    };
    html! {
        figure {
            (frame(id, title, &description, HEIGHT, drawing))
            @if names.is_empty() {
                figcaption { (title) ": nothing yet." }
            } @else {
                figcaption { (title) } (legend(&names))
            }
        }
    }
}

/// Columns, one per labelled value (every `label_every`-th label drawn).
pub fn columns(id: &str, title: &str, bars: &[(String, u64)], label_every: usize) -> Markup {
    let series = vec![(
        title.to_owned(),
        bars.iter().map(|(_, v)| *v).collect::<Vec<u64>>(),
    )];
    let ticks: Vec<(usize, String)> = bars
        .iter()
        .enumerate()
        .filter(|(i, _)| i % label_every.max(1) == 0)
        .map(|(i, (label, _))| (i, label.clone()))
        .collect();
    let only = if bars.iter().all(|(_, v)| *v == 0) {
        Vec::new()
    } else {
        series
    };
    let chart = stacked_columns(id, title, bars.len(), &only, &ticks);
    html! {
        (chart)
        details {
            summary { "The numbers" }
            table {
                thead { tr { th scope="col" { "Month" } th scope="col" { "Certificates" } } }
                tbody {
                    @for (label, value) in bars {
                        tr { td { (label) } td.num { (value) } }
                    }
                }
            }
        }
    }
}

/// Horizontal stacked rows: one row per name, segments in `parts` order (the same names on
/// every row).
pub fn stacked_rows(id: &str, title: &str, rows: &[(String, Vec<(&'static str, u64)>)]) -> Markup {
    let row_h = 28.0;
    let height = TOP + row_h * rows.len().max(1) as f64 + 6.0;
    let label_w = 110.0;
    let plot_w = WIDTH - label_w - RIGHT - 60.0;
    let max = rows
        .iter()
        .map(|(_, parts)| parts.iter().map(|(_, v)| v).sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let parts: Vec<String> = rows
        .first()
        .map(|(_, p)| p.iter().map(|(n, _)| (*n).to_owned()).collect())
        .unwrap_or_default();
    let description = rows
        .iter()
        .map(|(name, parts)| {
            let text: Vec<String> = parts.iter().map(|(n, v)| format!("{v} {n}")).collect();
            format!("{name}: {}", text.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ");
    let drawing = html! {
        @for (r, (name, segments)) in rows.iter().enumerate() {
            @let y = TOP + row_h * r as f64;
            text x="0" y=(num(y + 18.0)) font-size="13" fill="#222" { (name) }
            @let mut offset = 0u64;
            @for (i, (_, value)) in segments.iter().enumerate() {
                @if *value > 0 {
                    rect x=(num(label_w + plot_w * offset as f64 / max as f64)) y=(num(y + 4.0))
                        width=(num(plot_w * *value as f64 / max as f64)) height="18" fill=(colour(i)) {}
                }
                ({ offset += value; "" })
            }
            text x=(num(label_w + plot_w * offset as f64 / max as f64 + 6.0)) y=(num(y + 18.0)) font-size="12" fill="#333" { (offset) }
        }
    };
    html! {
        figure {
            (frame(id, title, &description, height, drawing))
            figcaption { (title) } (legend(&parts))
        }
    }
}

/// One gauge row: a label, the fraction (0..=1) filled, and the text beside it.
#[derive(Debug, Clone)]
pub struct Gauge {
    pub label: String,
    pub fraction: f64,
    pub text: String,
    /// Drawn in the warning colour (e.g. under a fifth of its life left, or a stale CRL).
    pub warn: bool,
}

/// Horizontal gauges, one per row.
pub fn gauges(id: &str, title: &str, rows: &[Gauge]) -> Markup {
    let row_h = 28.0;
    let height = TOP + row_h * rows.len().max(1) as f64 + 6.0;
    let label_w = 150.0;
    let plot_w = 360.0;
    let description = rows
        .iter()
        .map(|g| format!("{}: {}", g.label, g.text))
        .collect::<Vec<_>>()
        .join("; ");
    let drawing = html! {
        @for (r, gauge) in rows.iter().enumerate() {
            @let y = TOP + row_h * r as f64;
            text x="0" y=(num(y + 18.0)) font-size="13" fill="#222" { (gauge.label) }
            rect x=(num(label_w)) y=(num(y + 4.0)) width=(num(plot_w)) height="18" fill="#e6e6e6" {}
            rect x=(num(label_w)) y=(num(y + 4.0)) width=(num(plot_w * gauge.fraction.clamp(0.0, 1.0)))
                height="18" fill=(if gauge.warn { "#D55E00" } else { "#009E73" }) {}
            text x=(num(label_w + plot_w + 8.0)) y=(num(y + 18.0)) font-size="12" fill="#333" { (gauge.text) }
        }
    };
    html! {
        figure {
            (frame(id, title, &description, height, drawing))
            figcaption { (title) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacked_columns_draw_one_rect_per_nonzero_value_and_escape_names() {
        let series = vec![
            ("<pump>".to_owned(), vec![1, 0, 2]),
            ("monitor".to_owned(), vec![0, 0, 3]),
        ];
        let svg = stacked_columns("c", "Issued", 3, &series, &[(0, "12-01".into())]).into_string();
        assert_eq!(svg.matches("<rect").count(), 3 + 2, "{svg}"); // bars + legend swatches
        assert!(svg.contains("&lt;pump&gt;"));
        assert!(!svg.contains("http://"));
        assert!(!svg.contains("<pump>"));
        assert!(svg.contains("6 in all over 3 columns; the highest column is 5."));
        assert!(!svg.contains("style="));
    }

    #[test]
    fn an_empty_chart_says_so() {
        let svg = columns("e", "Expiring", &[("2027-01".into(), 0)], 1).into_string();
        assert!(svg.contains("nothing yet"));
        assert!(svg.contains("<td class=\"num\">0</td>"));
    }

    #[test]
    fn gauges_clamp_their_fraction() {
        let svg = gauges(
            "g",
            "Life",
            &[Gauge {
                label: "root G1".into(),
                fraction: 3.0,
                text: "x".into(),
                warn: false,
            }],
        )
        .into_string();
        assert!(
            svg.contains("width=\"360.0\" height=\"18\" fill=\"#009E73\""),
            "{svg}"
        );
    }
}
