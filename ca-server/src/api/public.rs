//! Public, unauthenticated endpoints on plain HTTP: CA certificates (AIA caIssuers), CRLs (the
//! CRL distribution points) and OCSP (RFC 6960, GET and POST).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, ErrorCode};
use crate::pki::CaHandle;
use crate::revocation::{Revocation, RevocationError};

/// `GET /ca/<name>.cer`: a CA certificate in DER (`application/pkix-cert`, RFC 2585); `GET
/// /ca/bundle.pem`: the trust bundle.
pub async fn ca_certificate(
    State(ca): State<CaHandle>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let ca = ca.current();
    if file == TRUST_BUNDLE {
        return Ok(trust_bundle(&ca));
    }
    let name = file.strip_suffix(".cer").unwrap_or(&file);
    // Every generation in use: a retiring generation's certificates still point here.
    let der = match name {
        crate::pki::ROOT_CA => ca.root_der.clone(),
        other => ca
            .signer(other)
            .map(|generation| generation.cert_der.clone())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    ErrorCode::CaUnknown,
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

/// The hospital trust bundle's file name under `/ca/`.
pub const TRUST_BUNDLE: &str = "bundle.pem";

/// `GET /ca/bundle.pem`: the root and every CA generation still in use, PEM, for relying
/// parties (hospital servers, nginx) to trust before devices move to a new generation. Served
/// over plain HTTP like the root: check the root's fingerprint out of band.
fn trust_bundle(ca: &crate::pki::CaMaterial) -> Response {
    let text: String = ca
        .trust_bundle()
        .into_iter()
        .map(|der| pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec())))
        .collect();
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/pem-certificate-chain"),
    );
    response
}

/// `GET /crl/<ca>.crl` (DER, `application/pkix-crl`) or `/crl/<ca>.pem`.
pub async fn crl(
    State(revocation): State<Arc<Revocation>>,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let (name, pem) = match (file.strip_suffix(".crl"), file.strip_suffix(".pem")) {
        (Some(name), _) => (name, false),
        (None, Some(name)) => (name, true),
        (None, None) => return Err(unknown_crl(&file)),
    };
    let crl = revocation.current_crl(name).await.map_err(|e| match e {
        RevocationError::UnknownIssuer(_) => unknown_crl(&file),
        RevocationError::RootOffline => ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::CrlRootOffline,
            "the root is offline and its CRL has not been imported",
        ),
        RevocationError::Store(store) => store.into(),
        other => {
            tracing::error!(error = %other, "CRL publication failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::ServerInternal,
                "the CRL could not be produced",
            )
        }
    })?;
    let mut response = if pem {
        pem::encode(&pem::Pem::new("X509 CRL", crl.der)).into_response()
    } else {
        crl.der.into_response()
    };
    let content_type = if pem {
        "application/x-pem-file"
    } else {
        "application/pkix-crl"
    };
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

fn unknown_crl(file: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::CrlUnknownIssuer,
        format!(
            "no CRL called `{file}` (try root.crl, basic.crl, substantial.crl, high.crl, station.crl)"
        ),
    )
}

/// `POST /ocsp/<responder>` with an `application/ocsp-request` body.
pub async fn ocsp_post(
    State(revocation): State<Arc<Revocation>>,
    Path(responder): Path<String>,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let bytes = axum::body::to_bytes(body, iomt_core::ocsp::MAX_REQUEST)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::OcspTooLarge,
                format!(
                    "OCSP requests are limited to {} bytes",
                    iomt_core::ocsp::MAX_REQUEST
                ),
            )
        })?;
    ocsp_response(revocation.ocsp(&responder, &bytes).await)
}

/// `GET /ocsp/<responder>/<base64 of the DER request>` (RFC 6960 Appendix A.1).
pub async fn ocsp_get(
    State(revocation): State<Arc<Revocation>>,
    Path((responder, encoded)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    use base64::Engine;
    // axum has already percent-decoded the path segment; undecodable input becomes an empty
    // request, which the responder answers with malformedRequest.
    let der = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .unwrap_or_default();
    ocsp_response(revocation.ocsp(&responder, &der).await)
}

fn ocsp_response(answered: Result<Vec<u8>, RevocationError>) -> Result<Response, ApiError> {
    let der = answered.map_err(|e| match e {
        RevocationError::UnknownResponder(name) => ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::OcspUnknownResponder,
            format!("no OCSP responder called `{name}` (try root, basic, substantial, high)"),
        ),
        other => {
            tracing::error!(error = %other, "OCSP failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::ServerInternal,
                "the OCSP response could not be produced",
            )
        }
    })?;
    let mut response = der.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/ocsp-response"),
    );
    Ok(response)
}
