//! The console's page frame (header, navigation by role, sign-out), its stylesheet, its error
//! pages and small rendering helpers. Markup is built with maud, which escapes every
//! interpolated value; nothing here writes raw HTML from data.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::ConsoleUser;
use crate::auth::operator::Capability;
use crate::auth::session::SessionError;
use crate::operations::health::rfc3339;
use crate::storage::StoreError;

/// The vendored stylesheet (no external fonts or resources).
pub const STYLESHEET: &str = include_str!("console.css");

/// `GET /console/static/console.css`.
pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        STYLESHEET,
    )
        .into_response()
}

/// A `303 See Other` to `location`.
pub fn see_other(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location.to_owned())],
    )
        .into_response()
}

/// A rendered page with status 200.
pub fn html_response(markup: Markup) -> Response {
    html_with_status(StatusCode::OK, markup)
}

fn html_with_status(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

/// The pages of the navigation, with what each needs.
const NAV: [(&str, &str, Capability); 4] = [
    ("/console/", "Overview", Capability::DevicesRead),
    ("/console/devices", "Devices", Capability::DevicesRead),
    ("/console/recalls", "Recalls", Capability::Recall),
    ("/console/stations", "Stations", Capability::StationsManage),
];

/// A whole page: `title` as `<title>` and `<h1>`, the navigation the operator's role allows
/// (`current` marked), and `body`.
pub fn layout(title: &str, user: Option<&ConsoleUser>, current: &str, body: Markup) -> Markup {
    frame(title, user, current, None, body)
}

/// [`layout`] for a page that reloads itself every `secs` seconds (a recall in progress): a
/// meta refresh, since the console runs no script.
pub fn layout_refreshing(
    title: &str,
    user: Option<&ConsoleUser>,
    current: &str,
    secs: u32,
    body: Markup,
) -> Markup {
    frame(title, user, current, Some(secs), body)
}

fn frame(
    title: &str,
    user: Option<&ConsoleUser>,
    current: &str,
    refresh: Option<u32>,
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(secs) = refresh {
                    meta http-equiv="refresh" content=(secs);
                }
                title { (title) " · IoMT CA console" }
                link rel="stylesheet" href="/console/static/console.css";
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "IoMT CA console" }
                    @if let Some(user) = user {
                        nav aria-label="Main" {
                            ul {
                                @for (href, label, needs) in NAV {
                                    @if user.may(needs) {
                                        li {
                                            @if href == current {
                                                a href=(href) aria-current="page" { (label) }
                                            } @else {
                                                a href=(href) { (label) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        div.who {
                            span { "Signed in as " strong { (user.operator.actor()) } " · role " strong { (user.operator.role.as_str()) } }
                            form method="post" action="/console/signout" {
                                (csrf_field(user))
                                button.secondary type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The hidden CSRF field every form of a session carries.
pub fn csrf_field(user: &ConsoleUser) -> Markup {
    html! { input type="hidden" name="csrf" value=(user.csrf); }
}

/// A Unix time as `YYYY-MM-DD HH:MM UTC`.
pub fn when(unix: i64) -> String {
    let text = rfc3339(unix);
    match (text.get(..10), text.get(11..16)) {
        (Some(day), Some(time)) => format!("{day} {time} UTC"),
        _ => text,
    }
}

/// `text` as one URL path segment (RFC 3986 unreserved characters kept, the rest %-encoded).
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A status word as a badge (the word is always shown: colour is never the only signal).
pub fn badge(status: &str) -> Markup {
    let class = match status {
        "valid" | "active" | "completed" | "fresh" | "verified" => "badge ok",
        "on_hold" | "held" | "running" | "interrupted" | "retiring" => "badge warn",
        "revoked" | "disabled" | "stale" | "expired" | "retired" => "badge bad",
        _ => "badge",
    };
    html! { span class=(class) { (status.replace('_', " ")) } }
}

/// Why a console request failed, rendered as a page with the right status.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("{0}")]
    BadForm(String),
    #[error(
        "this form is missing its security token or it no longer matches your session; reload the page and try again"
    )]
    Csrf,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the database is unavailable; try again in a moment")]
    Unavailable,
    #[error("something went wrong on the server (see its log)")]
    Internal,
}

impl ConsoleError {
    fn status(&self) -> StatusCode {
        match self {
            ConsoleError::BadForm(_) => StatusCode::BAD_REQUEST,
            ConsoleError::Csrf | ConsoleError::Forbidden(_) => StatusCode::FORBIDDEN,
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::Conflict(_) => StatusCode::CONFLICT,
            ConsoleError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ConsoleError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The error for a failure the operator cannot act on: logged here, once, with its cause.
    pub fn internal(error: &dyn std::fmt::Display) -> ConsoleError {
        tracing::error!(%error, "console request failed");
        ConsoleError::Internal
    }
}

impl From<StoreError> for ConsoleError {
    fn from(error: StoreError) -> ConsoleError {
        if matches!(
            error,
            StoreError::Unavailable(_) | StoreError::WriterStopped
        ) {
            tracing::error!(%error, "console: database unavailable");
            ConsoleError::Unavailable
        } else {
            ConsoleError::internal(&error)
        }
    }
}

impl From<SessionError> for ConsoleError {
    fn from(error: SessionError) -> ConsoleError {
        match error {
            SessionError::Store(store) => store.into(),
            SessionError::Random => ConsoleError::internal(&error),
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = self.status();
        let title = match status {
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::BAD_REQUEST => "Not understood",
            StatusCode::CONFLICT => "Not possible now",
            _ => "Unavailable",
        };
        let body = html! {
            p.error role="alert" { (self.to_string()) }
            p { a href="/console/" { "Back to the overview" } }
        };
        html_with_status(status, layout(title, None, "", body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolated_text_is_escaped() {
        let page = layout(
            "<script>alert(1)</script>",
            None,
            "",
            html! { p { ("\"&<>") } },
        );
        let text = page.into_string();
        assert!(!text.contains("<script>"));
        assert!(text.contains("&lt;script&gt;"));
        assert!(text.contains("&quot;&amp;&lt;&gt;"));
    }

    #[test]
    fn path_segments_encode_everything_but_unreserved_characters() {
        assert_eq!(path_segment("IP-23_0.1~"), "IP-23_0.1~");
        assert_eq!(path_segment("a/b?c d"), "a%2Fb%3Fc%20d");
        assert_eq!(path_segment("é"), "%C3%A9");
    }

    #[test]
    fn times_read_as_utc_minutes() {
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
    }

    #[test]
    fn the_stylesheet_loads_nothing_from_elsewhere() {
        assert!(!STYLESHEET.contains("url("));
        assert!(!STYLESHEET.contains("@import"));
    }
}
