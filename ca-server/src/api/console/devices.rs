//! Devices: search (serial, product, lot, status), a device's page (registration, certificates
//! current and superseded, its audit events), PEM download, and Hold / Release / Revoke behind
//! a confirmation page. The changes go through the revocation service, which audits them with
//! the operator as actor and republishes the CRL.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};
use iomt_core::serial::CertSerial;
use maud::{Markup, html};
use serde::Deserialize;

use super::page::{
    ConsoleError, badge, csrf_field, html_response, layout, path_segment, see_other, when,
};
use super::{ConsoleState, ConsoleUser, now};
use crate::auth::operator::Capability;
use crate::operations::dossier::{self, Dossier};
use crate::operations::inventory::{DeviceListParams, DevicePage, InventoryError};
use crate::operations::search::{self, SearchError, SearchPage, SearchParams};
use crate::revocation::{Change, REASON_NAMES, Reason, RevocationError};

/// Rows a search page shows.
const PAGE: u32 = 100;
/// Statuses of a certificate (the others are a device's).
const CERTIFICATE_STATUSES: [&str; 3] = ["valid", "on_hold", "revoked"];

/// The search form (a GET: it changes nothing).
#[derive(Debug, Default, Deserialize)]
pub struct SearchForm {
    pub serial: Option<String>,
    pub product: Option<String>,
    pub lot: Option<String>,
    pub status: Option<String>,
    pub after: Option<String>,
}

fn nonempty(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

enum Found {
    Devices(DevicePage),
    Certificates(SearchPage),
}

impl From<InventoryError> for ConsoleError {
    fn from(error: InventoryError) -> ConsoleError {
        match error {
            InventoryError::Store(store) => store.into(),
            InventoryError::UnknownDevice(_) => ConsoleError::NotFound(error.to_string()),
            other => ConsoleError::BadForm(other.to_string()),
        }
    }
}

impl From<SearchError> for ConsoleError {
    fn from(error: SearchError) -> ConsoleError {
        match error {
            SearchError::Store(store) => store.into(),
            other => ConsoleError::BadForm(other.to_string()),
        }
    }
}

impl From<RevocationError> for ConsoleError {
    fn from(error: RevocationError) -> ConsoleError {
        match error {
            RevocationError::Store(store) => store.into(),
            RevocationError::UnknownCertificate(_) | RevocationError::UnknownDevice(_) => {
                ConsoleError::NotFound(error.to_string())
            }
            RevocationError::NotOnHold { .. } => ConsoleError::Conflict(error.to_string()),
            other => ConsoleError::internal(&other),
        }
    }
}

/// `GET /console/devices`.
pub async fn search(
    State(state): State<ConsoleState>,
    Extension(user): Extension<ConsoleUser>,
    Query(form): Query<SearchForm>,
) -> Result<Response, ConsoleError> {
    let store = state.admin.authority.store();
    if let Some(serial) = nonempty(&form.serial)
        && store.device(&serial).await?.is_some()
    {
        return Ok(see_other(&format!(
            "/console/devices/{}",
            path_segment(&serial)
        )));
    }
    let status = nonempty(&form.status);
    let searched = form.serial.is_some() || form.product.is_some() || status.is_some();
    let found = if !searched {
        None
    } else if status
        .as_deref()
        .is_some_and(|s| CERTIFICATE_STATUSES.contains(&s))
    {
        let params = SearchParams {
            product: nonempty(&form.product),
            lot: nonempty(&form.lot),
            status,
            limit: Some(PAGE),
            after: nonempty(&form.after),
            ..SearchParams::default()
        };
        Some(Found::Certificates(search::search(store, params).await?))
    } else {
        let params = DeviceListParams {
            product: nonempty(&form.product),
            lot: nonempty(&form.lot),
            status,
            limit: Some(PAGE),
            after: nonempty(&form.after),
        };
        Some(Found::Devices(
            state.admin.inventory.devices(params, now()).await?,
        ))
    };
    let products: Vec<String> = state
        .admin
        .authority
        .policies()
        .products()
        .map(|p| p.policy.id.clone())
        .collect();
    let body = html! {
        (search_form(&form, &products))
        @match &found {
            None => {}
            Some(Found::Devices(page)) => (device_table(page, &form)),
            Some(Found::Certificates(page)) => (certificate_table(page, &form)),
        }
        @if let Some(serial) = nonempty(&form.serial) {
            p.notice role="status" { "No device " code { (serial) } " is registered; showing the other filters' matches." }
        }
    };
    Ok(html_response(layout(
        "Devices",
        Some(&user),
        "/console/devices",
        body,
    )))
}

fn selected_option(value: &str, label: &str, current: Option<&str>) -> Markup {
    html! {
        @if current == Some(value) {
            option value=(value) selected { (label) }
        } @else {
            option value=(value) { (label) }
        }
    }
}

fn search_form(form: &SearchForm, products: &[String]) -> Markup {
    let status = form.status.as_deref();
    let product = form.product.as_deref();
    html! {
        form.search method="get" action="/console/devices" role="search" {
            div.field {
                label for="serial" { "Serial" }
                input #serial type="search" name="serial" value=(form.serial.clone().unwrap_or_default()) autocomplete="off";
            }
            div.field {
                label for="product" { "Product" }
                select #product name="product" {
                    (selected_option("", "Any product", product))
                    @for p in products { (selected_option(p, p, product)) }
                }
            }
            div.field {
                label for="lot" { "Lot" }
                input #lot type="text" name="lot" value=(form.lot.clone().unwrap_or_default());
            }
            div.field {
                label for="status" { "Status" }
                select #status name="status" {
                    (selected_option("", "Any", status))
                    optgroup label="Device" {
                        (selected_option("active", "active", status))
                        (selected_option("disabled", "disabled", status))
                    }
                    optgroup label="Certificate" {
                        (selected_option("valid", "valid", status))
                        (selected_option("on_hold", "on hold", status))
                        (selected_option("revoked", "revoked", status))
                    }
                }
            }
            button type="submit" { "Search" }
        }
    }
}

fn next_link(form: &SearchForm, next: &Option<String>) -> Markup {
    let Some(next) = next else { return html! {} };
    let query = serde_urlencoded::to_string([
        ("product", form.product.clone().unwrap_or_default()),
        ("lot", form.lot.clone().unwrap_or_default()),
        ("status", form.status.clone().unwrap_or_default()),
        ("after", next.clone()),
    ])
    .unwrap_or_default();
    html! { p { a href=(format!("/console/devices?{query}")) { "Next page" } } }
}

fn device_link(serial: &str) -> Markup {
    html! { a href=(format!("/console/devices/{}", path_segment(serial))) { (serial) } }
}

fn device_table(page: &DevicePage, form: &SearchForm) -> Markup {
    html! {
        p role="status" { (page.devices.len()) " devices" @if page.next.is_some() { " (more on the next page)" } "." }
        div.scroll {
            table {
                thead { tr {
                    th scope="col" { "Serial" } th scope="col" { "Product" } th scope="col" { "Level" }
                    th scope="col" { "Lot" } th scope="col" { "Device" } th scope="col" { "Newest certificate" }
                    th scope="col" { "Expires" }
                } }
                tbody {
                    @for d in &page.devices {
                        tr {
                            td { (device_link(&d.serial)) }
                            td { (d.product) } td { (d.level) } td { (d.lot.clone().unwrap_or_default()) }
                            td { (badge(d.status)) }
                            @match &d.certificate {
                                Some(c) => {
                                    td { (badge(if c.expired { "expired" } else { c.status })) }
                                    td { (c.not_after[..10].to_owned()) }
                                }
                                None => { td { "never enrolled" } td {} }
                            }
                        }
                    }
                }
            }
        }
        (next_link(form, &page.next))
    }
}

fn certificate_table(page: &SearchPage, form: &SearchForm) -> Markup {
    html! {
        p role="status" { (page.certificates.len()) " certificates" @if page.next.is_some() { " (more on the next page)" } "." }
        div.scroll {
            table {
                thead { tr {
                    th scope="col" { "Device" } th scope="col" { "Certificate" } th scope="col" { "Product" }
                    th scope="col" { "Status" } th scope="col" { "Expires" }
                } }
                tbody {
                    @for c in &page.certificates {
                        tr {
                            td { (device_link(&c.device)) } td { code { (c.serial) } } td { (c.product) }
                            td { (badge(c.status)) } td { (c.not_after[..10].to_owned()) }
                        }
                    }
                }
            }
        }
        (next_link(form, &page.next))
    }
}

/// What the device page was sent back with after an action.
#[derive(Debug, Default, Deserialize)]
pub struct Done {
    pub done: Option<String>,
}

/// `GET /console/devices/{serial}`.
pub async fn show(
    State(state): State<ConsoleState>,
    Extension(user): Extension<ConsoleUser>,
    Path(serial): Path<String>,
    Query(done): Query<Done>,
) -> Result<Response, ConsoleError> {
    let authority = &state.admin.authority;
    let found = dossier::dossier(authority.store(), authority.policies(), &serial).await?;
    let Some(dossier) = found else {
        return Err(ConsoleError::NotFound(format!(
            "device {serial} is not registered"
        )));
    };
    let title = format!("Device {}", dossier.device.serial);
    let notice = done.done.as_deref().and_then(|d| match d {
        "held" => Some("The certificate is on hold: OCSP answers revoked (certificateHold) and the CRL lists it."),
        "released" => Some("The hold is lifted: the certificate is valid again and has left the CRL."),
        "revoked" => Some("The certificate is revoked: OCSP answers revoked and the CRL lists it."),
        "unchanged" => Some("Nothing changed: the certificate was already in that state."),
        _ => None,
    });
    Ok(html_response(layout(
        &title,
        Some(&user),
        "/console/devices",
        render(&dossier, &user, notice),
    )))
}

fn render(dossier: &Dossier, user: &ConsoleUser, notice: Option<&str>) -> Markup {
    let device = &dossier.device;
    let current = dossier.current().map(|c| c.record.serial.clone());
    let may_download = user.may(Capability::CertificatesRead);
    let may_change = user.may(Capability::CertificatesRevoke);
    html! {
        @if let Some(notice) = notice { p.notice role="status" { (notice) } }
        section aria-labelledby="registration" {
            h2 #registration { "Registration" }
            dl.facts {
                dt { "Serial" } dd { code { (device.serial) } }
                dt { "Product" } dd { (device.product) " (" (dossier.level) ")" }
                dt { "GTIN" } dd { (device.gtin) }
                dt { "Lot" } dd { (device.lot.clone().unwrap_or_else(|| "—".to_owned())) }
                dt { "Status" } dd { (badge(device.status.as_str())) }
                dt { "Registered" } dd { (when(device.registered_at)) }
            }
        }
        section aria-labelledby="certificates" {
            h2 #certificates { "Certificates" }
            @if dossier.certificates.is_empty() {
                p { "This device has not enrolled yet." }
            }
            @for c in &dossier.certificates {
                @let r = &c.record;
                @let is_current = current.as_deref() == Some(r.serial.as_str());
                article.card.certificate aria-label=(format!("Certificate {}", r.serial)) {
                    h3 {
                        code { (r.serial) } " "
                        (badge(r.status.as_str()))
                        " "
                        @if is_current { span.badge { "current" } } @else { span.badge { "superseded" } }
                    }
                    dl.facts {
                        dt { "Issuer" } dd { (r.issuer) " CA" }
                        dt { "Valid" } dd { (when(r.not_before)) " to " (when(r.not_after)) }
                        dt { "Authorized by" } dd { code { (r.authorized_by) } }
                        dt { "Policy" } dd { code { (r.policy_oid) } }
                        @if let Some(previous) = &r.supersedes { dt { "Replaced" } dd { code { (previous) } } }
                        @if let Some(next) = &c.superseded_by { dt { "Replaced by" } dd { code { (next) } } }
                    }
                    div.actions {
                        @if may_download {
                            a.button.secondary href=(format!("/console/certificates/{}/pem", r.serial)) download=(format!("{}.pem", r.serial)) { "Download PEM" }
                        }
                        @if may_change {
                            @match r.status.as_str() {
                                "valid" => {
                                    a.button.secondary href=(format!("/console/certificates/{}/confirm?action=hold", r.serial)) { "Hold…" }
                                    a.button.danger href=(format!("/console/certificates/{}/confirm?action=revoke", r.serial)) { "Revoke…" }
                                }
                                "on_hold" => {
                                    a.button.secondary href=(format!("/console/certificates/{}/confirm?action=release", r.serial)) { "Release…" }
                                    a.button.danger href=(format!("/console/certificates/{}/confirm?action=revoke", r.serial)) { "Revoke…" }
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="events" {
            h2 #events { "Audit events" }
            @if dossier.events.is_empty() { p { "None." } } @else {
                div.scroll {
                    table {
                        thead { tr { th scope="col" { "#" } th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "What" } th scope="col" { "About" } th scope="col" { "Details" } } }
                        tbody {
                            @for e in &dossier.events {
                                tr {
                                    td.num { (e.seq) } td { (when(e.event.at)) } td { (e.event.actor) }
                                    td { code { (e.event.action) } } td { code { (e.event.object) } }
                                    td { code.details { (e.event.details) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn parse_serial(text: &str) -> Result<CertSerial, ConsoleError> {
    text.parse()
        .map_err(|e: iomt_core::serial::CertSerialError| ConsoleError::BadForm(e.to_string()))
}

/// `GET /console/certificates/{serial}/pem`.
pub async fn pem(
    State(state): State<ConsoleState>,
    Path(serial): Path<String>,
) -> Result<Response, ConsoleError> {
    let serial = parse_serial(&serial)?;
    let pem = dossier::certificate_pem(state.admin.authority.store(), serial.as_str())
        .await?
        .ok_or_else(|| {
            ConsoleError::NotFound(format!("no certificate with serial {}", serial.as_str()))
        })?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-pem-file".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.pem\"", serial.as_str()),
            ),
        ],
        pem,
    )
        .into_response())
}

/// Which change the confirmation page asks about.
#[derive(Debug, Deserialize)]
pub struct ConfirmQuery {
    pub action: String,
}

/// `GET /console/certificates/{serial}/confirm?action=hold|release|revoke`.
pub async fn confirm(
    State(state): State<ConsoleState>,
    Extension(user): Extension<ConsoleUser>,
    Path(serial): Path<String>,
    Query(query): Query<ConfirmQuery>,
) -> Result<Response, ConsoleError> {
    let serial = parse_serial(&serial)?;
    let (verb, explanation) = match query.action.as_str() {
        "hold" => (
            "Hold",
            "A hold suspends the certificate (certificateHold): OCSP answers revoked and the CRL lists it until it is released. The device cannot authenticate meanwhile.",
        ),
        "release" => (
            "Release",
            "Releasing lifts the hold: the certificate is valid again and leaves the next CRL.",
        ),
        "revoke" => (
            "Revoke",
            "Revocation is permanent: the device needs a new certificate (re-provisioning) to authenticate again.",
        ),
        other => {
            return Err(ConsoleError::BadForm(format!(
                "unknown action `{other}` (use hold, release or revoke)"
            )));
        }
    };
    let record = state
        .admin
        .authority
        .store()
        .certificate(serial.as_str())
        .await?
        .ok_or_else(|| {
            ConsoleError::NotFound(format!("no certificate with serial {}", serial.as_str()))
        })?;
    let back = format!("/console/devices/{}", path_segment(&record.device_serial));
    let body = html! {
        section.card.confirm aria-labelledby="what" {
            h2 #what { (verb) " certificate " code { (record.serial) } " of device " (record.device_serial) "?" }
            p { (explanation) }
            p { "Now: " (badge(record.status.as_str())) ", issued by the " (record.issuer) " CA, valid until " (when(record.not_after)) "." }
            form method="post" action=(format!("/console/certificates/{}/{}", record.serial, query.action)) {
                (csrf_field(&user))
                @if query.action == "revoke" {
                    label for="reason" { "Reason (RFC 5280)" }
                    select #reason name="reason" required {
                        @for name in REASON_NAMES.iter().filter(|n| **n != "certificateHold") {
                            option value=(name) { (name) }
                        }
                    }
                }
                div.actions {
                    button class=(if query.action == "revoke" { "danger" } else { "" }) type="submit" { (verb) " certificate" }
                    a.button.secondary href=(back) { "Cancel" }
                }
            }
        }
    };
    Ok(html_response(layout(
        &format!("{verb} certificate"),
        Some(&user),
        "/console/devices",
        body,
    )))
}

/// The revoke form's reason (its CSRF token is checked by the guard).
#[derive(Debug, Deserialize)]
pub struct ChangeForm {
    pub reason: Option<String>,
}

async fn device_of(state: &ConsoleState, serial: &CertSerial) -> Result<String, ConsoleError> {
    Ok(state
        .admin
        .authority
        .store()
        .certificate(serial.as_str())
        .await?
        .ok_or_else(|| {
            ConsoleError::NotFound(format!("no certificate with serial {}", serial.as_str()))
        })?
        .device_serial)
}

/// What an operator asked the console to do to one certificate.
enum Action {
    Hold,
    Release,
    Revoke(Reason),
}

/// Parses the certificate serial, applies `action` through the revocation service (which audits
/// it with the operator as actor) and sends the operator back to the device's page with what
/// happened (`unchanged` when the certificate already was in that state).
async fn apply(
    state: &ConsoleState,
    user: &ConsoleUser,
    serial: &str,
    action: Action,
) -> Result<Response, ConsoleError> {
    let serial = parse_serial(serial)?;
    let device = device_of(state, &serial).await?;
    let actor = user.operator.actor();
    let revocation = &state.admin.revocation;
    let done = match action {
        Action::Hold => {
            let hold = Reason::parse("certificateHold").ok_or(ConsoleError::Internal)?;
            let change = revocation.revoke(&serial, hold, &actor).await?;
            if change == Change::Held {
                "held"
            } else {
                "unchanged"
            }
        }
        Action::Release => {
            revocation.release(&serial, &actor).await?;
            "released"
        }
        Action::Revoke(reason) => {
            let change = revocation.revoke(&serial, reason, &actor).await?;
            if change == Change::Revoked {
                "revoked"
            } else {
                "unchanged"
            }
        }
    };
    Ok(see_other(&format!(
        "/console/devices/{}?done={done}",
        path_segment(&device)
    )))
}

/// `POST /console/certificates/{serial}/hold`.
pub async fn hold(
    State(state): State<ConsoleState>,
    Extension(user): Extension<ConsoleUser>,
    Path(serial): Path<String>,
) -> Result<Response, ConsoleError> {
    apply(&state, &user, &serial, Action::Hold).await
}

/// `POST /console/certificates/{serial}/release`.
pub async fn release(
    State(state): State<ConsoleState>,
    Extension(user): Extension<ConsoleUser>,
    Path(serial): Path<String>,
) -> Result<Response, ConsoleError> {
    apply(&state, &user, &serial, Action::Release).await
}

/// `POST /console/certificates/{serial}/revoke` (reason required, never certificateHold).
pub async fn revoke(
    State(state): State<ConsoleState>,
    Extension(user): Extension<ConsoleUser>,
    Path(serial): Path<String>,
    form: Result<Form<ChangeForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, ConsoleError> {
    let Ok(Form(form)) = form else {
        return Err(ConsoleError::BadForm(
            "the revocation form was not understood".into(),
        ));
    };
    let name = form.reason.unwrap_or_default();
    let reason = Reason::parse(&name)
        .filter(|r| !r.is_hold())
        .ok_or_else(|| {
            ConsoleError::BadForm(format!(
                "choose a revocation reason, not `{name}` (one of: {})",
                REASON_NAMES.join(", ")
            ))
        })?;
    apply(&state, &user, &serial, Action::Revoke(reason)).await
}
