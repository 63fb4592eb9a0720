//! `POST /attestation/challenge`: step 1 of a TPM-attested enrollment (docs/PROFILE.md §6.1).
//! JSON in (the device's EK certificate and chain, EK and AK public areas, base64), JSON out
//! (the `TPM2_MakeCredential` blobs to activate, base64, and the challenge's expiry). Authorized
//! like the enrollment it precedes: HTTP Basic `serial:token` or a client certificate.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ErrorCode};
use super::est::{read_body, require_content_type};
use crate::auth::token::parse_basic;
use crate::authority::Authority;
use crate::authority::attestation::{ChallengeAuthorization, ChallengeRequest};
use crate::tls::UnverifiedClientChain;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequestBody {
    pub serial: String,
    pub ek_certificate: String,
    #[serde(default)]
    pub ek_chain: Vec<String>,
    pub ek_public: String,
    pub ak_public: String,
}

/// The response body.
#[derive(Debug, Serialize, Deserialize)]
pub struct ChallengeResponseBody {
    /// `TPM2B_ID_OBJECT`, base64.
    pub id_object: String,
    /// `TPM2B_ENCRYPTED_SECRET`, base64.
    pub encrypted_secret: String,
    /// Unix seconds after which the challenge is refused.
    pub expires_at: i64,
}

fn bad(message: String) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::AttestationMalformed,
        message,
    )
}

fn decode(field: &str, value: &str) -> Result<Vec<u8>, ApiError> {
    STANDARD
        .decode(value)
        .map_err(|e| bad(format!("`{field}` is not base64: {e}")))
}

/// `POST /attestation/challenge`.
pub async fn challenge(
    State(authority): State<Arc<Authority>>,
    Extension(peer): Extension<UnverifiedClientChain>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ChallengeResponseBody>, ApiError> {
    require_content_type(&headers, "application/json")?;
    let bytes = read_body(body).await?;
    let body: ChallengeRequestBody = serde_json::from_slice(&bytes).map_err(|e| {
        bad(format!(
            "the challenge request is not the expected JSON: {e}"
        ))
    })?;
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_basic);
    let authorization = match (&basic, peer.presented()) {
        (Some(credential), _) => ChallengeAuthorization::Token {
            serial: &credential.serial,
            token: &credential.token,
        },
        (None, Some(chain)) => ChallengeAuthorization::Certificate(chain),
        (None, None) => {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::AuthRequired,
                "send HTTP Basic `<device serial>:<one-time token>`, or present a station or device certificate",
            ));
        }
    };
    let ek_chain = body
        .ek_chain
        .iter()
        .map(|c| decode("ek_chain", c))
        .collect::<Result<Vec<_>, _>>()?;
    let issued = authority
        .attestation_challenge(ChallengeRequest {
            authorization,
            serial: &body.serial,
            ek_certificate: &decode("ek_certificate", &body.ek_certificate)?,
            ek_chain: &ek_chain,
            ek_public: &decode("ek_public", &body.ek_public)?,
            ak_public: &decode("ak_public", &body.ak_public)?,
        })
        .await
        .map_err(ApiError::from_token_route)?;
    Ok(Json(ChallengeResponseBody {
        id_object: STANDARD.encode(&issued.credential.id_object),
        encrypted_secret: STANDARD.encode(&issued.credential.encrypted_secret),
        expires_at: issued.expires_at,
    }))
}
