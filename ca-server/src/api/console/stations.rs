//! Manufacturing stations: scope (products), hourly quota use, last activity, and Disable
//! behind a confirmation (the station service revokes its certificates and republishes the
//! station CA's CRL, audited with the operator as actor).

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::page::{
    ConsoleError, badge, csrf_field, html_response, layout, path_segment, see_other, when,
};
use super::{ConsoleState, ConsoleUser, now};
use crate::operations::stations::{self, StationError};
use crate::storage::StationStatus;

impl From<StationError> for ConsoleError {
    fn from(error: StationError) -> ConsoleError {
        match error {
            StationError::Store(store) => store.into(),
            StationError::Revocation(revocation) => revocation.into(),
            StationError::Unknown(_) => ConsoleError::NotFound(error.to_string()),
            other => ConsoleError::BadForm(other.to_string()),
        }
    }
}

/// What the list was sent back with.
#[derive(Debug, Default, Deserialize)]
pub struct Disabled {
    pub disabled: Option<String>,
    pub revoked: Option<usize>,
}

/// `GET /console/stations`.
pub async fn list(
    State(state): State<ConsoleState>,
    Extension(user): Extension<ConsoleUser>,
    Query(notice): Query<Disabled>,
) -> Result<Response, ConsoleError> {
    let views = stations::overview(state.admin.authority.store(), now()).await?;
    let body = html! {
        @if let Some(name) = &notice.disabled {
            p.notice role="status" { "Station " (name) " is disabled; " (notice.revoked.unwrap_or(0)) " of its certificates were revoked." }
        }
        @if views.is_empty() { p { "No station yet (" code { "ca-server station create" } ")." } } @else {
            div.scroll {
                table {
                    thead { tr {
                        th scope="col" { "Station" } th scope="col" { "Scope" } th scope="col" { "Status" }
                        th scope="col" { "This hour" } th scope="col" { "Last issued" } th scope="col" {}
                    } }
                    tbody {
                        @for v in &views {
                            @let s = &v.station;
                            tr {
                                th scope="row" { (s.name) }
                                td { (s.products.join(", ")) }
                                td { (badge(s.status.as_str())) }
                                td {
                                    @match s.rate_limit_per_hour {
                                        Some(limit) => {
                                            meter min="0" max=(limit) value=(v.used_this_hour) aria-label=(format!("{} of {limit} this hour", v.used_this_hour)) {}
                                            " " (v.used_this_hour) " / " (limit)
                                        }
                                        None => { (v.used_this_hour) " (no limit)" }
                                    }
                                }
                                td { (v.last_issued.map_or_else(|| "never".to_owned(), when)) }
                                td {
                                    @if s.status == StationStatus::Active {
                                        a.button.danger href=(format!("/console/stations/{}/confirm", path_segment(&s.name))) { "Disable…" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(html_response(layout(
        "Stations",
        Some(&user),
        "/console/stations",
        body,
    )))
}

/// `GET /console/stations/{name}/confirm`.
pub async fn confirm(
    State(state): State<ConsoleState>,
    Extension(user): Extension<ConsoleUser>,
    Path(name): Path<String>,
) -> Result<Response, ConsoleError> {
    let station = state
        .admin
        .authority
        .store()
        .station(&name)
        .await?
        .ok_or_else(|| ConsoleError::NotFound(format!("no station {name}")))?;
    let body = html! {
        section.card.confirm aria-labelledby="what" {
            h2 #what { "Disable station " (station.name) "?" }
            p { "The station stops enrolling devices at once and its own certificates are revoked (cessationOfOperation). Devices it already provisioned keep their certificates. This cannot be undone: a new station must be created." }
            form method="post" action=(format!("/console/stations/{}/disable", path_segment(&station.name))) {
                (csrf_field(&user))
                div.actions {
                    button.danger type="submit" { "Disable station" }
                    a.button.secondary href="/console/stations" { "Cancel" }
                }
            }
        }
    };
    Ok(html_response(layout(
        "Disable station",
        Some(&user),
        "/console/stations",
        body,
    )))
}

/// `POST /console/stations/{name}/disable`.
pub async fn disable(
    State(state): State<ConsoleState>,
    Extension(user): Extension<ConsoleUser>,
    Path(name): Path<String>,
) -> Result<Response, ConsoleError> {
    let revoked = stations::disable(
        &state.admin.revocation,
        state.admin.authority.store(),
        &name,
        &user.operator.actor(),
    )
    .await?;
    Ok(see_other(&format!(
        "/console/stations?disabled={}&revoked={}",
        path_segment(&name),
        revoked.len()
    )))
}
