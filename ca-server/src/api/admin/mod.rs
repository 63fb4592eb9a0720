//! The admin API over HTTPS (JSON), described by `openapi.json` (served at
//! `/admin/v1/openapi.json`). Every route is declared once in [`routes`] with the capability it
//! needs; a guard authenticates the caller (bearer API key or operator client certificate),
//! checks the role, audits refusals and hands the handler the
//! [`Operator`](crate::auth::operator::Operator).
//!
//! To add an endpoint: write the handler (take `Extension<Operator>` for the audit actor), add a
//! [`Route`] to [`routes`], and describe it in `openapi.json` (a test keeps the two equal).

mod audit;
mod certificates;
mod inventory;
mod recalls;
mod registry;
mod stations;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};

use super::error::{ApiError, ErrorCode};
use crate::auth::failures::{FailureAudit, Refusal};
use crate::auth::operator::{AuthFailure, Authenticator, Capability};
use crate::authority::Authority;
use crate::pki::fingerprint::sha256_hex;
use crate::revocation::Revocation;
use crate::tls::UnverifiedClientChain;

/// The OpenAPI 3.1 description of every admin route.
pub const OPENAPI: &str = include_str!("openapi.json");

/// What the admin handlers need.
#[derive(Clone)]
pub struct AdminState {
    pub authority: Arc<Authority>,
    pub revocation: Arc<Revocation>,
    pub authenticator: Arc<Authenticator>,
    pub failures: Arc<FailureAudit>,
    pub recalls: Arc<crate::operations::Recalls>,
    pub inventory: Arc<crate::operations::Inventory>,
}

/// One admin route: method, path (axum and OpenAPI share the `{param}` syntax), the capability
/// it needs (`None`: public, e.g. the OpenAPI document) and its handler.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub capability: Option<Capability>,
    handler: MethodRouter<AdminState>,
}

fn route(
    method: Method,
    path: &'static str,
    capability: Option<Capability>,
    handler: MethodRouter<AdminState>,
) -> Route {
    Route {
        method,
        path,
        capability,
        handler,
    }
}

/// Every admin route.
pub fn routes() -> Vec<Route> {
    use Capability as C;
    vec![
        route(Method::GET, "/admin/v1/openapi.json", None, get(openapi)),
        route(
            Method::POST,
            "/admin/v1/devices",
            Some(C::DevicesRegister),
            post(registry::register_devices),
        ),
        route(
            Method::GET,
            "/admin/v1/devices",
            Some(C::DevicesRead),
            get(inventory::list_devices),
        ),
        route(
            Method::GET,
            "/admin/v1/devices/{serial}",
            Some(C::DevicesRead),
            get(registry::device),
        ),
        route(
            Method::GET,
            "/admin/v1/devices/{serial}/tokens",
            Some(C::DevicesRead),
            get(inventory::list_tokens),
        ),
        route(
            Method::POST,
            "/admin/v1/devices/{serial}/tokens/revoke",
            Some(C::TokensRevoke),
            post(inventory::revoke_tokens),
        ),
        route(
            Method::GET,
            "/admin/v1/fleet/summary",
            Some(C::DevicesRead),
            get(inventory::summary),
        ),
        route(
            Method::POST,
            "/admin/v1/devices/{serial}/revoke",
            Some(C::CertificatesRevoke),
            post(certificates::revoke_device),
        ),
        route(
            Method::POST,
            "/admin/v1/devices/{serial}/reprovision",
            Some(C::CertificatesRevoke),
            post(stations::reprovision_device),
        ),
        route(
            Method::POST,
            "/admin/v1/stations",
            Some(C::StationsManage),
            post(stations::create),
        ),
        route(
            Method::GET,
            "/admin/v1/stations",
            Some(C::StationsManage),
            get(stations::list),
        ),
        route(
            Method::POST,
            "/admin/v1/stations/{name}/disable",
            Some(C::StationsManage),
            post(stations::disable),
        ),
        route(
            Method::POST,
            "/admin/v1/tokens",
            Some(C::TokensCreate),
            post(registry::create_tokens),
        ),
        route(
            Method::GET,
            "/admin/v1/certificates",
            Some(C::CertificatesRead),
            get(certificates::search),
        ),
        route(
            Method::POST,
            "/admin/v1/certificates/{serial}/revoke",
            Some(C::CertificatesRevoke),
            post(certificates::revoke_certificate),
        ),
        route(
            Method::POST,
            "/admin/v1/certificates/{serial}/hold",
            Some(C::CertificatesRevoke),
            post(certificates::hold_certificate),
        ),
        route(
            Method::POST,
            "/admin/v1/certificates/{serial}/release",
            Some(C::CertificatesRevoke),
            post(certificates::release_certificate),
        ),
        route(
            Method::POST,
            "/admin/v1/recalls",
            Some(C::Recall),
            post(recalls::start),
        ),
        route(
            Method::GET,
            "/admin/v1/recalls",
            Some(C::Recall),
            get(recalls::list),
        ),
        route(
            Method::POST,
            "/admin/v1/recalls/{id}/release",
            Some(C::Recall),
            post(recalls::release),
        ),
        route(
            Method::GET,
            "/admin/v1/audit",
            Some(C::AuditRead),
            get(audit::export),
        ),
        route(
            Method::GET,
            "/admin/v1/audit/verify",
            Some(C::AuditRead),
            get(audit::verify),
        ),
    ]
}

/// The admin router: every route behind its guard.
pub fn router(state: AdminState) -> Router {
    let mut router = Router::new();
    for route in routes() {
        let handler = match route.capability {
            Some(capability) => route.handler.route_layer(middleware::from_fn_with_state(
                (state.clone(), capability),
                guard,
            )),
            None => route.handler,
        };
        router = router.route(route.path, handler);
    }
    router.with_state(state)
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        OPENAPI.to_owned(),
    )
        .into_response()
}

/// Authenticates, authorizes and audits refusals; passes the operator on as an extension.
async fn guard(
    State((state, capability)): State<(AdminState, Capability)>,
    mut request: Request,
    next: Next,
) -> Response {
    let route = format!("{} {}", request.method(), request.uri().path());
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let bearer = match authorization.as_deref().map(|v| v.split_once(' ')) {
        None => None,
        Some(Some((scheme, key))) if scheme.eq_ignore_ascii_case("bearer") => Some(key),
        // Any other scheme is a credential we cannot accept.
        Some(_) => Some(""),
    };
    let peer = request
        .extensions()
        .get::<UnverifiedClientChain>()
        .and_then(|p| p.0.clone());
    let refused = |actor: String, reason: &'static str, needed: Option<&'static str>| Refusal {
        actor,
        reason,
        route: route.clone(),
        needed,
    };
    match state
        .authenticator
        .authenticate(bearer, peer.as_deref().map(Vec::as_slice))
        .await
    {
        Ok(operator) if capability.allowed_for(operator.role) => {
            request.extensions_mut().insert(operator);
            next.run(request).await
        }
        Ok(operator) => {
            state
                .failures
                .record(refused(
                    operator.actor(),
                    "role_insufficient",
                    Some(capability.name()),
                ))
                .await;
            ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::AuthRoleInsufficient,
                format!(
                    "role `{}` may not do this (needs {})",
                    operator.role.as_str(),
                    capability.name()
                ),
            )
            .into_response()
        }
        Err(AuthFailure::Store(error)) => ApiError::from(error).into_response(),
        Err(failure) => {
            let actor = match (bearer, peer.as_deref().and_then(|p| p.first())) {
                (Some(key), _) => key_actor(key),
                (None, Some(leaf)) => format!("certificate:{}", sha256_hex(leaf)),
                (None, None) => "anonymous".to_owned(),
            };
            state
                .failures
                .record(refused(actor, failure.reason(), None))
                .await;
            let code = match failure {
                AuthFailure::Missing => ErrorCode::AuthRequired,
                AuthFailure::BadKey | AuthFailure::RevokedKey(_) => ErrorCode::AuthBadKey,
                _ => ErrorCode::AuthBadCertificate,
            };
            let mut response =
                ApiError::new(StatusCode::UNAUTHORIZED, code, failure.to_string()).into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Bearer realm="iomt-admin""#),
            );
            response
        }
    }
}

/// How a refused key appears in the audit trail: its public id when it has one, never the key.
pub(super) fn key_actor(key: &str) -> String {
    match key
        .trim()
        .strip_prefix("iomt_")
        .and_then(|k| k.split_once('_'))
    {
        Some((id, _)) if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
            format!("key:{id}")
        }
        _ => "key:unrecognized".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn openapi_document_lists_exactly_the_served_routes() {
        let document: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(document["openapi"], "3.1.0");
        let mut documented = BTreeSet::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if method != "parameters" {
                    documented.insert((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
        let served: BTreeSet<(String, String)> = routes()
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_owned()))
            .collect();
        assert_eq!(documented, served);
    }

    #[test]
    fn refused_keys_are_named_by_id_only() {
        assert_eq!(
            key_actor("iomt_0123456789abcdef_secret"),
            "key:0123456789abcdef"
        );
        assert_eq!(key_actor("some-secret"), "key:unrecognized");
    }
}
