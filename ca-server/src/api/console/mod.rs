//! The operator console at `/console/` on the HTTPS listener: server-rendered HTML (maud,
//! escaped by construction), one vendored stylesheet, charts as inline SVG, no script at all.
//!
//! Every route is declared once in [`routes`] with what it needs: nothing (sign-in page and
//! stylesheet), a session, or a session whose role has an admin API [`Capability`]. The guard
//! resumes the session from its cookie (a signed-out, idle or expired session goes back to
//! sign-in), re-checks the credential behind it (a revoked key or certificate ends it), checks
//! the CSRF token of every POST, then the role, and audits refusals like the admin API does.
//! Handlers only parse, call the `operations/` and `revocation` services (which audit with the
//! operator as actor) and render. Every response carries a strict Content-Security-Policy.

mod charts;
mod cookies;
mod devices;
mod overview;
mod page;
mod recalls;
mod signin;
mod stations;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};

use super::admin::AdminState;
use crate::auth::failures::Refusal;
use crate::auth::operator::{AuthFailure, Capability, Operator};
use crate::auth::session::{Sessions, tokens_match};
use crate::operations::{Overviews, RecallRequest};
use crate::tls::UnverifiedClientChain;

pub use page::ConsoleError;

/// The console's Content-Security-Policy: nothing but this origin's stylesheet; no script, no
/// inline style, no frames, forms only to this origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Largest console form body (a recall or revocation form is a few hundred bytes).
const FORM_LIMIT: usize = 16 * 1024;

/// What the console handlers need.
#[derive(Clone)]
pub struct ConsoleState {
    pub admin: AdminState,
    pub sessions: Arc<Sessions>,
    pub overviews: Arc<Overviews>,
    /// Recalls this process is running in the background (the list shows them as running).
    pub running: Arc<Mutex<Vec<RecallRequest>>>,
}

/// The signed-in operator of a request, with the CSRF token its forms carry.
#[derive(Debug, Clone)]
pub struct ConsoleUser {
    pub operator: Operator,
    pub csrf: String,
}

impl ConsoleUser {
    /// Whether the operator's role has `capability`.
    pub fn may(&self, capability: Capability) -> bool {
        capability.allowed_for(self.operator.role)
    }
}

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (sign-in, stylesheet).
    Public,
    /// Any signed-in operator.
    Session,
    /// A signed-in operator whose role has this capability.
    Role(Capability),
}

/// One console route.
pub struct ConsoleRoute {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    handler: MethodRouter<ConsoleState>,
}

fn route(
    method: Method,
    path: &'static str,
    access: Access,
    handler: MethodRouter<ConsoleState>,
) -> ConsoleRoute {
    ConsoleRoute {
        method,
        path,
        access,
        handler,
    }
}

/// Every console route.
pub fn routes() -> Vec<ConsoleRoute> {
    use Access::{Public, Role, Session};
    use Capability as C;
    use Method as M;
    vec![
        route(
            M::GET,
            "/console/static/console.css",
            Public,
            get(page::stylesheet),
        ),
        route(M::GET, "/console/signin", Public, get(signin::form)),
        route(M::POST, "/console/signin", Public, post(signin::with_key)),
        route(
            M::POST,
            "/console/signin/certificate",
            Public,
            post(signin::with_certificate),
        ),
        route(M::POST, "/console/signout", Session, post(signin::sign_out)),
        route(
            M::GET,
            "/console/",
            Role(C::DevicesRead),
            get(overview::show),
        ),
        route(
            M::GET,
            "/console/devices",
            Role(C::DevicesRead),
            get(devices::search),
        ),
        route(
            M::GET,
            "/console/devices/{serial}",
            Role(C::DevicesRead),
            get(devices::show),
        ),
        route(
            M::GET,
            "/console/certificates/{serial}/pem",
            Role(C::CertificatesRead),
            get(devices::pem),
        ),
        route(
            M::GET,
            "/console/certificates/{serial}/confirm",
            Role(C::CertificatesRevoke),
            get(devices::confirm),
        ),
        route(
            M::POST,
            "/console/certificates/{serial}/hold",
            Role(C::CertificatesRevoke),
            post(devices::hold),
        ),
        route(
            M::POST,
            "/console/certificates/{serial}/release",
            Role(C::CertificatesRevoke),
            post(devices::release),
        ),
        route(
            M::POST,
            "/console/certificates/{serial}/revoke",
            Role(C::CertificatesRevoke),
            post(devices::revoke),
        ),
        route(
            M::GET,
            "/console/recalls",
            Role(C::Recall),
            get(recalls::list),
        ),
        route(
            M::POST,
            "/console/recalls/plan",
            Role(C::Recall),
            post(recalls::plan),
        ),
        route(
            M::POST,
            "/console/recalls/start",
            Role(C::Recall),
            post(recalls::start),
        ),
        route(
            M::POST,
            "/console/recalls/{id}/release",
            Role(C::Recall),
            post(recalls::release),
        ),
        route(
            M::GET,
            "/console/stations",
            Role(C::StationsManage),
            get(stations::list),
        ),
        route(
            M::GET,
            "/console/stations/{name}/confirm",
            Role(C::StationsManage),
            get(stations::confirm),
        ),
        route(
            M::POST,
            "/console/stations/{name}/disable",
            Role(C::StationsManage),
            post(stations::disable),
        ),
    ]
}

/// The console router: every route behind its guard, every response with the security headers.
pub fn router(state: ConsoleState) -> Router {
    let mut router = Router::new();
    for route in routes() {
        let handler = match route.access {
            Access::Public => route.handler,
            access => route.handler.route_layer(middleware::from_fn_with_state(
                (state.clone(), access),
                guard,
            )),
        };
        router = router.route(route.path, handler);
    }
    router
        .route("/console", get(|| async { page::see_other("/console/") }))
        .with_state(state)
        .layer(middleware::map_response(security_headers))
}

/// The headers every console response carries.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Resumes the session, re-checks its credential, checks a POST's CSRF token and the role;
/// passes the [`ConsoleUser`] on as an extension.
async fn guard(
    State((state, access)): State<(ConsoleState, Access)>,
    request: Request,
    next: Next,
) -> Response {
    let route = format!("{} {}", request.method(), request.uri().path());
    let Some(id) = cookies::session_id(request.headers()) else {
        return page::see_other("/console/signin");
    };
    let session = match state.sessions.resume(&id, now()).await {
        Ok(Some(session)) => session,
        Ok(None) => return cookies::ended("/console/signin?expired=1"),
        Err(error) => return ConsoleError::from(error).into_response(),
    };
    let leaf = request
        .extensions()
        .get::<UnverifiedClientChain>()
        .and_then(|chain| chain.presented().and_then(<[_]>::first).cloned());
    let record = &session.record;
    let operator = match state
        .admin
        .authenticator
        .recheck(record.kind, &record.operator, &record.lookup, leaf.as_ref())
        .await
    {
        Ok(operator) => operator,
        Err(AuthFailure::Store(error)) => return ConsoleError::from(error).into_response(),
        Err(failure) => {
            tracing::warn!(
                reason = failure.reason(),
                "console session's credential no longer valid"
            );
            if let Err(error) = state.sessions.close(&session, now()).await {
                return ConsoleError::from(error).into_response();
            }
            return cookies::ended("/console/signin?ended=1");
        }
    };
    let user = ConsoleUser {
        operator,
        csrf: session.csrf.clone(),
    };
    let request = if request.method() == Method::POST {
        match checked_form(request, &user.csrf).await {
            Ok(request) => request,
            Err(response) => {
                refuse(&state, &user, route, "csrf_token", None).await;
                return response;
            }
        }
    } else {
        request
    };
    if let Access::Role(capability) = access
        && !user.may(capability)
    {
        refuse(
            &state,
            &user,
            route,
            "role_insufficient",
            Some(capability.name()),
        )
        .await;
        return ConsoleError::Forbidden(format!(
            "role `{}` may not do this (needs {})",
            user.operator.role.as_str(),
            capability.name()
        ))
        .into_response();
    }
    let mut request = request;
    request.extensions_mut().insert(user);
    request.extensions_mut().insert(session);
    next.run(request).await
}

async fn refuse(
    state: &ConsoleState,
    user: &ConsoleUser,
    route: String,
    reason: &'static str,
    needed: Option<&'static str>,
) {
    state
        .admin
        .failures
        .record(Refusal {
            actor: user.operator.actor(),
            reason,
            route: format!("console {route}"),
            needed,
        })
        .await;
}

/// Reads a POST body (bounded), refuses it unless its `csrf` field is the session's token, and
/// puts the body back for the handler's form extractor.
async fn checked_form(request: Request, csrf: &str) -> Result<Request, Response> {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, FORM_LIMIT).await.map_err(|_| {
        ConsoleError::BadForm(format!("the form is larger than {FORM_LIMIT} bytes")).into_response()
    })?;
    let presented = form_field(&bytes, "csrf").unwrap_or_default();
    if !tokens_match(&presented, csrf) {
        tracing::warn!(route = %parts.uri.path(), "console form without a valid CSRF token refused");
        return Err(ConsoleError::Csrf.into_response());
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// The value of `name` in an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
    fields.into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_field_is_read_from_an_urlencoded_form() {
        assert_eq!(
            form_field(b"reason=keyCompromise&csrf=a%2Bb", "csrf").as_deref(),
            Some("a+b")
        );
        assert_eq!(form_field(b"reason=x", "csrf"), None);
        assert_eq!(form_field(b"\xff\xfe", "csrf"), None);
    }

    #[test]
    fn every_route_is_under_console_and_state_changes_need_a_session() {
        for route in routes() {
            assert!(route.path.starts_with("/console/"), "{}", route.path);
            if route.method == Method::POST && !route.path.starts_with("/console/signin") {
                assert_ne!(route.access, Access::Public, "{}", route.path);
            }
        }
    }

    #[test]
    fn the_policy_forbids_script_inline_style_and_framing() {
        assert!(CONTENT_SECURITY_POLICY.starts_with("default-src 'none'"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
        assert!(!CONTENT_SECURITY_POLICY.contains("script-src"));
        assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
    }
}
