//! Public, unauthenticated endpoints on plain HTTP: CA certificates for AIA caIssuers.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::pki::CaMaterial;

/// `GET /ca/<name>.cer`: a CA certificate in DER (`application/pkix-cert`, RFC 2585).
pub async fn ca_certificate(
    State(ca): State<Arc<CaMaterial>>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let name = file.strip_suffix(".cer").unwrap_or(&file);
    let der = match name {
        crate::pki::ROOT_CA => ca.root_der.clone(),
        crate::pki::STATION_CA => ca.station.cert_der.clone(),
        other => iomt_core::policy::Level::parse(other)
            .map(|level| ca.issuing(level).cert_der.clone())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "ca.unknown",
                    format!("no CA certificate called `{name}`"),
                )
            })?,
    };
    let mut response = der.to_vec().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pkix-cert"),
    );
    Ok(response)
}
