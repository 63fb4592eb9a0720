//! Signing in (with an admin API key typed into a form, or with the operator client certificate
//! the browser presented) and signing out. The sign-in form is protected against cross-site
//! submission by a double-submit token (cookie and hidden field must match); a refused
//! credential is audited like a refused admin API call.

use axum::Extension;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, http::header};
use maud::{Markup, html};
use serde::Deserialize;

use super::page::{ConsoleError, layout};
use super::{ConsoleState, cookies, now};
use crate::auth::failures::Refusal;
use crate::auth::operator::AuthFailure;
use crate::auth::session::{ActiveSession, random_secret, tokens_match};
use crate::pki::fingerprint::sha256_hex;
use crate::tls::UnverifiedClientChain;

/// Why the sign-in page is shown.
#[derive(Debug, Default, Deserialize)]
pub struct SignInNotice {
    pub expired: Option<String>,
    pub ended: Option<String>,
    pub signed_out: Option<String>,
}

/// The API key form.
#[derive(Deserialize)]
pub struct KeyForm {
    pub api_key: String,
    pub csrf: String,
}

impl std::fmt::Debug for KeyForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyForm { api_key: <redacted>, .. }")
    }
}

/// The certificate form (only its token).
#[derive(Debug, Deserialize)]
pub struct CertificateForm {
    pub csrf: String,
}

fn page(token: &str, notice: Option<&str>, error: Option<&str>) -> Markup {
    let body = html! {
        @if let Some(notice) = notice {
            p.notice role="status" { (notice) }
        }
        @if let Some(error) = error {
            p.error role="alert" { (error) }
        }
        section.card aria-labelledby="with-key" {
            h2 #with-key { "With an API key" }
            form method="post" action="/console/signin" {
                input type="hidden" name="csrf" value=(token);
                label for="api_key" { "API key" }
                input #api_key type="password" name="api_key" required autocomplete="off"
                    aria-describedby="api_key_help";
                p #api_key_help .help { "An admin API key (admin, registrar or auditor) from " code { "ca-server apikey create" } "." }
                button type="submit" { "Sign in" }
            }
        }
        section.card aria-labelledby="with-cert" {
            h2 #with-cert { "With an operator certificate" }
            p { "Uses the operator client certificate your browser presented to this server (enrolled with " code { "ca-server operator add" } ")." }
            form method="post" action="/console/signin/certificate" {
                input type="hidden" name="csrf" value=(token);
                button type="submit" { "Sign in with my certificate" }
            }
        }
    };
    layout("Sign in", None, "", body)
}

fn render(status: StatusCode, notice: Option<&str>, error: Option<&str>) -> Response {
    let token = match random_secret() {
        Ok(token) => token,
        Err(error) => return ConsoleError::from(error).into_response(),
    };
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page(&token, notice, error).into_string(),
    )
        .into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        cookies::set(cookies::SIGNIN, &token, Some(cookies::SIGNIN_MAX_AGE_SECS)),
    );
    response
}

/// `GET /console/signin`.
pub async fn form(
    State(state): State<ConsoleState>,
    Query(notice): Query<SignInNotice>,
) -> Response {
    let idle = state.sessions.idle_timeout().as_secs();
    let text = if notice.expired.is_some() {
        Some(format!(
            "Your session ended after {} minutes without activity (or it was signed out elsewhere). Sign in again.",
            idle.div_ceil(60)
        ))
    } else if notice.ended.is_some() {
        Some("Your credential is no longer valid (revoked or removed). Sign in again.".to_owned())
    } else if notice.signed_out.is_some() {
        Some("You are signed out.".to_owned())
    } else {
        None
    };
    render(StatusCode::OK, text.as_deref(), None)
}

fn signin_token_ok(headers: &HeaderMap, presented: &str) -> bool {
    cookies::read(headers, cookies::SIGNIN)
        .is_some_and(|expected| tokens_match(presented, &expected))
}

async fn refused(
    state: &ConsoleState,
    actor: String,
    failure: &AuthFailure,
    route: &str,
) -> Response {
    state
        .admin
        .failures
        .record(Refusal {
            actor,
            reason: failure.reason(),
            route: format!("console POST {route}"),
            needed: None,
        })
        .await;
    render(
        StatusCode::UNAUTHORIZED,
        None,
        Some(&format!("Not signed in: {failure}.")),
    )
}

/// `POST /console/signin`: an API key.
pub async fn with_key(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    form: Result<Form<KeyForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return ConsoleError::BadForm("the sign-in form was not understood".into()).into_response();
    };
    if !signin_token_ok(&headers, &form.csrf) {
        return ConsoleError::Csrf.into_response();
    }
    let key = form.api_key.trim();
    match state
        .admin
        .authenticator
        .authenticate_with_lookup(Some(key), None)
        .await
    {
        Ok((operator, lookup)) => match state.sessions.open(&operator, &lookup, now()).await {
            Ok(id) => cookies::started("/console/", &id),
            Err(error) => ConsoleError::from(error).into_response(),
        },
        Err(AuthFailure::Store(error)) => ConsoleError::from(error).into_response(),
        Err(failure) => {
            refused(
                &state,
                super::super::admin::key_actor(key),
                &failure,
                "/console/signin",
            )
            .await
        }
    }
}

/// `POST /console/signin/certificate`: the client certificate of this TLS connection.
pub async fn with_certificate(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    chain: Option<Extension<UnverifiedClientChain>>,
    form: Result<Form<CertificateForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return ConsoleError::BadForm("the sign-in form was not understood".into()).into_response();
    };
    if !signin_token_ok(&headers, &form.csrf) {
        return ConsoleError::Csrf.into_response();
    }
    let presented = chain.as_ref().and_then(|Extension(c)| c.presented());
    match state
        .admin
        .authenticator
        .authenticate_with_lookup(None, presented)
        .await
    {
        Ok((operator, lookup)) => match state.sessions.open(&operator, &lookup, now()).await {
            Ok(id) => cookies::started("/console/", &id),
            Err(error) => ConsoleError::from(error).into_response(),
        },
        Err(AuthFailure::Store(error)) => ConsoleError::from(error).into_response(),
        Err(failure) => {
            let actor = presented.and_then(<[_]>::first).map_or_else(
                || "anonymous".to_owned(),
                |leaf| format!("certificate:{}", sha256_hex(leaf)),
            );
            refused(&state, actor, &failure, "/console/signin/certificate").await
        }
    }
}

/// `POST /console/signout`.
pub async fn sign_out(
    State(state): State<ConsoleState>,
    Extension(session): Extension<ActiveSession>,
) -> Response {
    match state.sessions.close(&session, now()).await {
        Ok(()) => cookies::ended("/console/signin?signed_out=1"),
        Err(error) => ConsoleError::from(error).into_response(),
    }
}
