//! `ApiError`: the one place that maps failures to HTTP status, a stable code and a message.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub use super::error_code::ErrorCode;
use iomt_core::attestation::AttestationError;

use crate::authority::{
    AttestationProblem, BindingProblem, CsrError, EnrollError, ReenrollProblem, StationProblem,
    TokenProblem,
};
use crate::storage::StoreError;

/// An error response: `code: message` on one line, plain text.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, machine-readable code, e.g. `auth.token_used`.
    pub code: ErrorCode,
    pub message: String,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn internal(error: &dyn std::error::Error) -> ApiError {
        // Logged once here with its cause; the client learns only that it was our fault.
        tracing::error!(error = %error, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::ServerInternal,
            "the CA failed to process the request; nothing was issued (see the server log)",
        )
    }
}

/// The message with every control character (and Unicode line or paragraph separator) escaped,
/// so whatever a client sent that the message echoes (a serial, a label, a file name), the
/// body stays one line.
fn one_line(message: &str) -> String {
    let mut line = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = format!("{}: {}\n", self.code, one_line(&self.message));
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert("x-error-code", HeaderValue::from_static(self.code.as_str()));
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="iomt-est", charset="UTF-8""#),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::Unavailable(_) | StoreError::WriterStopped => {
                tracing::error!(error = %error, "storage unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::StorageUnavailable,
                    "the CA's database is unavailable; retry later (nothing was issued)",
                )
            }
            other => ApiError::internal(&other),
        }
    }
}

impl ApiError {
    /// An error of the token route (`simpleenroll` with HTTP Basic). Until the token is checked
    /// the caller is a stranger, so an unknown serial answers exactly as an unknown token does:
    /// the answer must not tell which serials are registered. The station and client-certificate
    /// routes keep `device.not_registered`: their callers are authenticated.
    pub fn from_token_route(error: EnrollError) -> ApiError {
        match error {
            EnrollError::UnknownDevice { .. } => ApiError::from(EnrollError::Token {
                problem: TokenProblem::Unknown,
            }),
            other => ApiError::from(other),
        }
    }
}

/// Status and code of a refused attestation (docs/PROFILE.md §6.1).
fn attestation_status(problem: &AttestationProblem) -> (StatusCode, ErrorCode) {
    use AttestationProblem as P;
    use StatusCode as S;
    match problem {
        P::AkNotRestricted => (S::FORBIDDEN, ErrorCode::AttestationAkInvalid),
        P::ChallengeUnknown => (S::FORBIDDEN, ErrorCode::AttestationChallengeUnknown),
        P::ChallengeExpired => (S::FORBIDDEN, ErrorCode::AttestationChallengeExpired),
        P::ChallengeUsed => (S::FORBIDDEN, ErrorCode::AttestationChallengeUsed),
        P::EkUnusable(_) => (S::FORBIDDEN, ErrorCode::AttestationEkUnusable),
        P::EkUntrusted { .. } => (S::FORBIDDEN, ErrorCode::AttestationEkUntrusted),
        P::EkMismatch => (S::FORBIDDEN, ErrorCode::AttestationEkMismatch),
        P::KeyMismatch => (S::FORBIDDEN, ErrorCode::AttestationKeyMismatch),
        P::KeyNotFixed { .. } => (S::FORBIDDEN, ErrorCode::AttestationKeyNotFixed),
        P::NameMismatch => (S::FORBIDDEN, ErrorCode::AttestationNameMismatch),
        P::Malformed(AttestationError::TooLarge { .. }) => {
            (S::PAYLOAD_TOO_LARGE, ErrorCode::AttestationTooLarge)
        }
        P::Malformed(_) => (S::BAD_REQUEST, ErrorCode::AttestationMalformed),
        P::Missing => (S::FORBIDDEN, ErrorCode::AttestationMissing),
        P::SignatureInvalid => (S::FORBIDDEN, ErrorCode::AttestationSignatureInvalid),
        P::TpmMismatch { .. } => (S::CONFLICT, ErrorCode::AttestationTpmMismatch),
    }
}

impl From<EnrollError> for ApiError {
    fn from(error: EnrollError) -> ApiError {
        use StatusCode as S;
        let error = match error {
            EnrollError::Store(store) => return store.into(),
            EnrollError::Build(build) => return ApiError::internal(&build),
            other => other,
        };
        let message = error.to_string();
        let (status, code) = match &error {
            EnrollError::Store(_) | EnrollError::Build(_) => {
                return ApiError::internal(&error);
            }
            EnrollError::Defect { .. } => {
                return ApiError::new(
                    S::INTERNAL_SERVER_ERROR,
                    ErrorCode::IssuanceDefect,
                    "the CA refused to return a certificate that breaks its profile; the operator has been alerted",
                );
            }
            EnrollError::AlreadyEnrolled { .. } => (S::CONFLICT, ErrorCode::DeviceAlreadyEnrolled),
            EnrollError::Attestation(problem) => attestation_status(problem),
            EnrollError::ChannelBinding(problem) => (
                S::FORBIDDEN,
                match problem {
                    BindingProblem::Mismatch => ErrorCode::CsrChannelBindingMismatch,
                    BindingProblem::Missing => ErrorCode::CsrChannelBindingMissing,
                    BindingProblem::Unavailable => ErrorCode::CsrChannelBindingUnavailable,
                },
            ),
            EnrollError::DeviceDisabled { .. } => (S::FORBIDDEN, ErrorCode::DeviceDisabled),
            EnrollError::DeviceRecalled { .. } => (S::FORBIDDEN, ErrorCode::DeviceRecalled),
            EnrollError::DuplicateKey { .. } => (S::FORBIDDEN, ErrorCode::CsrDuplicateKey),
            EnrollError::Identity(_) => (S::FORBIDDEN, ErrorCode::DeviceIdentityInvalid),
            EnrollError::InvalidCsr(csr) => match csr {
                CsrError::NotDer(_) => (S::BAD_REQUEST, ErrorCode::CsrNotDer),
                CsrError::BadSignature => (S::BAD_REQUEST, ErrorCode::CsrBadSignature),
                CsrError::NoSerialNumber => (S::BAD_REQUEST, ErrorCode::CsrNoSerialNumber),
                CsrError::UnreadableKey(_) => (S::BAD_REQUEST, ErrorCode::CsrBadKey),
                CsrError::SubjectMismatch { .. } => (S::FORBIDDEN, ErrorCode::CsrSubjectMismatch),
                CsrError::SubjectAttributeForbidden { .. } => {
                    (S::FORBIDDEN, ErrorCode::CsrSubjectForbidden)
                }
                CsrError::SanMismatch { .. } => (S::FORBIDDEN, ErrorCode::CsrSanMismatch),
                CsrError::SanForbidden { .. } => (S::FORBIDDEN, ErrorCode::CsrSanForbidden),
            },
            EnrollError::KeyNotAllowed(_) => (S::FORBIDDEN, ErrorCode::PolicyKeyNotAllowed),
            EnrollError::LabelMismatch { .. } => (S::FORBIDDEN, ErrorCode::EstLabelMismatch),
            EnrollError::TokenNotAllowed { .. } => (S::FORBIDDEN, ErrorCode::PolicyTokenNotAllowed),
            EnrollError::Token { problem } => (
                S::UNAUTHORIZED,
                match problem {
                    TokenProblem::Expired => ErrorCode::AuthTokenExpired,
                    TokenProblem::OtherDevice => ErrorCode::AuthTokenWrongDevice,
                    TokenProblem::Revoked => ErrorCode::AuthTokenRevoked,
                    TokenProblem::Unknown => ErrorCode::AuthTokenUnknown,
                    TokenProblem::Used => ErrorCode::AuthTokenUsed,
                },
            ),
            EnrollError::Reenroll(problem) => {
                let (status, code) = match problem {
                    ReenrollProblem::Expired { .. } => (S::FORBIDDEN, ErrorCode::ReenrollExpired),
                    ReenrollProblem::IdentityChanged => {
                        (S::FORBIDDEN, ErrorCode::ReenrollIdentityChanged)
                    }
                    ReenrollProblem::KeyReuse { .. } => (S::FORBIDDEN, ErrorCode::ReenrollKeyReuse),
                    ReenrollProblem::NoCertificate => {
                        (S::UNAUTHORIZED, ErrorCode::AuthCertificateRequired)
                    }
                    ReenrollProblem::NotOurs { .. } => {
                        (S::FORBIDDEN, ErrorCode::ReenrollUnknownCertificate)
                    }
                    ReenrollProblem::NotYetValid => (S::FORBIDDEN, ErrorCode::ReenrollNotYetValid),
                    ReenrollProblem::OnHold => (S::FORBIDDEN, ErrorCode::ReenrollOnHold),
                    ReenrollProblem::Revoked => (S::FORBIDDEN, ErrorCode::ReenrollRevoked),
                    ReenrollProblem::Superseded { .. } => {
                        (S::CONFLICT, ErrorCode::ReenrollSuperseded)
                    }
                    ReenrollProblem::TooSoon { retry_after_secs } => {
                        let mut error = ApiError::new(
                            S::TOO_MANY_REQUESTS,
                            ErrorCode::ReenrollTooSoon,
                            message,
                        );
                        error.retry_after = Some(*retry_after_secs);
                        return error;
                    }
                };
                (status, code)
            }
            EnrollError::Station(problem) => match problem {
                StationProblem::Disabled { .. } => (S::FORBIDDEN, ErrorCode::StationDisabled),
                StationProblem::NotAStationCertificate { .. } => {
                    (S::FORBIDDEN, ErrorCode::StationCertificateNotRecognized)
                }
                StationProblem::NotAllowed { .. } => {
                    (S::FORBIDDEN, ErrorCode::PolicyStationNotAllowed)
                }
                StationProblem::OutOfScope { .. } => (S::FORBIDDEN, ErrorCode::StationOutOfScope),
                StationProblem::RateLimited {
                    retry_after_secs, ..
                } => {
                    let mut error =
                        ApiError::new(S::TOO_MANY_REQUESTS, ErrorCode::StationRateLimited, message);
                    error.retry_after = Some(*retry_after_secs);
                    return error;
                }
                StationProblem::Revoked { .. } => {
                    (S::FORBIDDEN, ErrorCode::StationCertificateRevoked)
                }
            },
            EnrollError::UnknownDevice { .. } => (S::FORBIDDEN, ErrorCode::DeviceNotRegistered),
            EnrollError::UnknownLabel { .. } => (S::NOT_FOUND, ErrorCode::EstUnknownLabel),
            EnrollError::UnknownProduct { .. } => (S::FORBIDDEN, ErrorCode::DeviceProductUnknown),
        };
        ApiError::new(status, code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn render_with_control_characters_in_the_message_stays_one_line() {
        let echoed = "IP1\nX-Injected: 1\r\n\u{1b}[31m\u{2028}end";
        let response = ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::DeviceNotRegistered,
            format!("device {echoed} is not registered"),
        )
        .into_response();
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert_eq!(body.lines().count(), 1, "{body:?}");
        assert!(body.ends_with('\n') && !body[..body.len() - 1].contains(['\n', '\r']));
        assert!(
            body.contains(r"IP1\nX-Injected: 1\r\n\u{1b}[31m\u{2028}end"),
            "{body}"
        );
    }

    #[test]
    fn token_route_unknown_serial_answers_as_an_unknown_token() {
        let unknown_serial = ApiError::from_token_route(EnrollError::UnknownDevice {
            serial: "NOPE".into(),
        });
        let wrong_token = ApiError::from_token_route(EnrollError::Token {
            problem: TokenProblem::Unknown,
        });
        assert_eq!(
            (
                unknown_serial.status,
                unknown_serial.code,
                &unknown_serial.message
            ),
            (wrong_token.status, wrong_token.code, &wrong_token.message)
        );
        let station_route = ApiError::from(EnrollError::UnknownDevice {
            serial: "NOPE".into(),
        });
        assert_eq!(station_route.code, ErrorCode::DeviceNotRegistered);
    }

    /// A stopped writer or an unreachable database is the client's cue to retry, not a defect.
    #[test]
    fn storage_outages_answer_503_with_a_stable_code() {
        for error in [
            StoreError::WriterStopped,
            StoreError::Unavailable(sqlx::Error::PoolTimedOut),
        ] {
            let api = ApiError::from(EnrollError::Store(error));
            assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(api.code, ErrorCode::StorageUnavailable);
            let response = api.into_response();
            assert_eq!(
                response.headers()["x-error-code"],
                ErrorCode::StorageUnavailable.as_str()
            );
        }
    }
}
