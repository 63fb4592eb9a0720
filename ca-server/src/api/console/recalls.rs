//! Recalls: choose a product and lot, see the dry run (how many certificates per CA, and a
//! sample), confirm, watch the recall's progress (the list reloads itself while one runs), and
//! release a hold recall. The recall service does the work and the auditing; a confirmed
//! recall runs in the background so the page can show its progress batch by batch.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::{Extension, Form};
use maud::{Markup, html};
use serde::Deserialize;

use super::page::{
    ConsoleError, badge, csrf_field, html_response, layout, layout_refreshing, path_segment,
    see_other, when,
};
use super::{ConsoleState, ConsoleUser};
use crate::operations::recall::state as recall_state;
use crate::operations::{Batches, RecallError, RecallRequest};
use crate::revocation::REASON_NAMES;
use crate::storage::{RecallAction, RecallQuery, RecallRecord};

/// Certificates the dry run shows as a sample.
const SAMPLE: u32 = 10;
/// Seconds between reloads of the list while a recall runs.
const REFRESH_SECS: u32 = 2;

impl From<RecallError> for ConsoleError {
    fn from(error: RecallError) -> ConsoleError {
        match error {
            RecallError::Store(store) => store.into(),
            RecallError::Revocation(revocation) => revocation.into(),
            RecallError::UnknownRecall(_) => ConsoleError::NotFound(error.to_string()),
            RecallError::NotReleasable { .. } => ConsoleError::Conflict(error.to_string()),
            other => ConsoleError::BadForm(other.to_string()),
        }
    }
}

/// The recall form (the plan and the confirmation carry the same fields).
#[derive(Debug, Clone, Deserialize)]
pub struct RecallForm {
    pub product: String,
    #[serde(default)]
    pub lot: String,
    pub action: String,
    #[serde(default)]
    pub reason: String,
}

impl RecallForm {
    fn request(&self) -> Result<RecallRequest, ConsoleError> {
        let action = RecallAction::parse(&self.action).ok_or_else(|| {
            ConsoleError::BadForm(format!(
                "action must be hold or revoke, not `{}`",
                self.action
            ))
        })?;
        let lot = self.lot.trim();
        Ok(RecallRequest {
            query: RecallQuery {
                product: self.product.trim().to_owned(),
                lot: (!lot.is_empty()).then(|| lot.to_owned()),
                registered_before: None,
            },
            action,
            reason: match (action, self.reason.trim()) {
                (RecallAction::Hold, _) | (_, "") => None,
                (RecallAction::Revoke, reason) => Some(reason.to_owned()),
            },
        })
    }
}

/// What the list was sent back with.
#[derive(Debug, Default, Deserialize)]
pub struct ListNotice {
    pub started: Option<String>,
    pub released: Option<u64>,
}

fn running(state: &ConsoleState, recall: &RecallRecord) -> bool {
    state
        .running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .any(|r| r.query == recall.query && r.action == recall.action)
}

/// `GET /console/recalls`.
pub async fn list(
    State(state): State<ConsoleState>,
    Extension(user): Extension<ConsoleUser>,
    Query(notice): Query<ListNotice>,
) -> Result<Response, ConsoleError> {
    let recalls = state.admin.recalls.list().await?;
    let states: Vec<&'static str> = recalls
        .iter()
        .map(|r| match recall_state(r) {
            "interrupted" if running(&state, r) => "running",
            other => other,
        })
        .collect();
    let any_running = states.contains(&"running")
        || !state
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_empty();
    let products: Vec<String> = state
        .admin
        .authority
        .policies()
        .products()
        .map(|p| p.policy.id.clone())
        .collect();
    let body = html! {
        @if notice.started.is_some() { p.notice role="status" { "The recall started. This page reloads every " (REFRESH_SECS) " seconds while it runs." } }
        @if let Some(n) = notice.released { p.notice role="status" { "Released: " (n) " certificates are valid again." } }
        section.card aria-labelledby="new" {
            h2 #new { "New recall" }
            (recall_fields(&user, &products))
        }
        section aria-labelledby="recalls" {
            h2 #recalls { "Recalls" }
            @if recalls.is_empty() { p { "No recall yet." } } @else {
                div.scroll {
                    table #recall-list {
                        thead { tr {
                            th scope="col" { "#" } th scope="col" { "Product" } th scope="col" { "Lot" }
                            th scope="col" { "Action" } th scope="col" { "State" } th scope="col" { "Certificates changed" }
                            th scope="col" { "By" } th scope="col" { "Started" } th scope="col" {}
                        } }
                        tbody {
                            @for (recall, state) in recalls.iter().zip(&states) {
                                tr {
                                    td.num { (recall.id) } td { (recall.query.product) }
                                    td { (recall.query.lot.clone().unwrap_or_else(|| "all lots".to_owned())) }
                                    td { (recall.action.as_str()) " (" (recall.reason) ")" }
                                    td { (badge(state)) } td.num.changed { (recall.certificates) }
                                    td { (recall.actor) } td { (when(recall.created_at)) }
                                    td {
                                        @if recall.action == RecallAction::Hold && recall.released_at.is_none() && *state != "running" {
                                            form method="post" action=(format!("/console/recalls/{}/release", recall.id)) {
                                                (csrf_field(&user))
                                                button.secondary type="submit" { "Release hold" }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let page = if any_running {
        layout_refreshing(
            "Recalls",
            Some(&user),
            "/console/recalls",
            REFRESH_SECS,
            body,
        )
    } else {
        layout("Recalls", Some(&user), "/console/recalls", body)
    };
    Ok(html_response(page))
}

fn recall_fields(user: &ConsoleUser, products: &[String]) -> Markup {
    html! {
        form method="post" action="/console/recalls/plan" {
            (csrf_field(user))
            div.field {
                label for="product" { "Product" }
                select #product name="product" required {
                    @for p in products { option value=(p) { (p) } }
                }
            }
            div.field {
                label for="lot" { "Lot" }
                input #lot type="text" name="lot" aria-describedby="lot-help";
                p #lot-help .help { "Leave empty to recall every lot of the product." }
            }
            fieldset {
                legend { "Action" }
                label { input type="radio" name="action" value="hold" checked; " Hold (reversible: release later)" }
                label { input type="radio" name="action" value="revoke"; " Revoke (permanent)" }
            }
            div.field {
                label for="reason" { "Reason for a revoke" }
                select #reason name="reason" {
                    @for name in REASON_NAMES.iter().filter(|n| **n != "certificateHold") {
                        option value=(name) { (name) }
                    }
                }
            }
            button type="submit" { "Dry run" }
        }
    }
}

fn hidden(form: &RecallForm) -> Markup {
    html! {
        input type="hidden" name="product" value=(form.product);
        input type="hidden" name="lot" value=(form.lot);
        input type="hidden" name="action" value=(form.action);
        input type="hidden" name="reason" value=(form.reason);
    }
}

/// `POST /console/recalls/plan`: the dry run, with a confirmation form.
pub async fn plan(
    State(state): State<ConsoleState>,
    Extension(user): Extension<ConsoleUser>,
    form: Result<Form<RecallForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, ConsoleError> {
    let Ok(Form(form)) = form else {
        return Err(ConsoleError::BadForm(
            "the recall form was not understood".into(),
        ));
    };
    let request = form.request()?;
    let plan = state.admin.recalls.plan(&request).await?;
    let sample = state.admin.recalls.sample(&request, SAMPLE).await?;
    let total = plan.certificates();
    let scope = match &request.query.lot {
        Some(lot) => format!("{} lot {lot}", request.query.product),
        None => format!("{} (all lots)", request.query.product),
    };
    let body = html! {
        section.card.confirm aria-labelledby="dry-run" {
            h2 #dry-run { "Dry run: " (request.action.as_str()) " " (scope) }
            p #matching { strong.count { (total) } " valid certificates would be " (if request.action == RecallAction::Hold { "put on hold" } else { "revoked" }) "." }
            table {
                thead { tr { th scope="col" { "Issuing CA" } th scope="col" { "Certificates" } th scope="col" { "Devices" } } }
                tbody {
                    @for c in &plan.counts { tr { td { (c.issuer) } td.num { (c.certificates) } td.num { (c.devices) } } }
                }
            }
            @if !sample.is_empty() {
                h3 { "Sample (first " (sample.len()) " by serial)" }
                ul.sample {
                    @for m in &sample {
                        li { a href=(format!("/console/devices/{}", path_segment(&m.device))) { (m.device) } " · certificate " code { (m.serial) } }
                    }
                }
            }
            @if total > 0 {
                form method="post" action="/console/recalls/start" {
                    (csrf_field(&user))
                    (hidden(&form))
                    div.actions {
                        button.danger type="submit" { "Confirm: " (request.action.as_str()) " " (total) " certificates" }
                        a.button.secondary href="/console/recalls" { "Cancel" }
                    }
                }
            } @else {
                p { "Nothing to do. " a href="/console/recalls" { "Back to recalls" } }
            }
        }
    };
    Ok(html_response(layout(
        "Recall: dry run",
        Some(&user),
        "/console/recalls",
        body,
    )))
}

/// `POST /console/recalls/start`: runs the confirmed recall in the background.
pub async fn start(
    State(state): State<ConsoleState>,
    Extension(user): Extension<ConsoleUser>,
    form: Result<Form<RecallForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, ConsoleError> {
    let Ok(Form(form)) = form else {
        return Err(ConsoleError::BadForm(
            "the recall form was not understood".into(),
        ));
    };
    let request = form.request()?;
    // Refuse a bad request here, where the operator sees it, not in the background task.
    state.admin.recalls.plan(&request).await?;
    state
        .running
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(request.clone());
    let recalls = state.admin.recalls.clone();
    let running = state.running.clone();
    let actor = user.operator.actor();
    tokio::spawn(async move {
        match recalls.run(&request, &actor, Batches::default()).await {
            Ok(outcome) => {
                tracing::info!(recall = outcome.recall.id, changed = outcome.changed, %actor, "console recall finished")
            }
            Err(error) => {
                tracing::error!(%error, %actor, "console recall failed; start it again to resume")
            }
        }
        let mut running = running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(at) = running.iter().position(|r| *r == request) {
            running.remove(at);
        }
    });
    Ok(see_other("/console/recalls?started=1"))
}

/// `POST /console/recalls/{id}/release`.
pub async fn release(
    State(state): State<ConsoleState>,
    Extension(user): Extension<ConsoleUser>,
    Path(id): Path<i64>,
) -> Result<Response, ConsoleError> {
    let released = state
        .admin
        .recalls
        .release(id, &user.operator.actor())
        .await?;
    Ok(see_other(&format!(
        "/console/recalls?released={}",
        released.certificates
    )))
}
