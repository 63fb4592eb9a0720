//! Client failures, each with its own exit code so scripts and stations can react.

use std::path::PathBuf;

/// Why an enrollment failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the CA at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the CA's TLS certificate is not trusted by {ca_cert}: {reason}")]
    TlsTrust { ca_cert: String, reason: String },
    #[error("the CA refused the credentials (401 {code}): {message}")]
    Unauthorized { code: String, message: String },
    #[error("the CA's policy refused the request (403 {code}): {message}")]
    Forbidden { code: String, message: String },
    #[error("the CA asks to retry in {retry_after_secs} s: {message}")]
    TooSoon {
        retry_after_secs: u64,
        message: String,
    },
    #[error("the device needs re-provisioning: {0}")]
    NeedsReprovisioning(String),
    #[error("the CA answered {status} {code}: {message}")]
    Server {
        status: u16,
        code: String,
        message: String,
        /// The `Retry-After` of a 503, in seconds.
        retry_after_secs: Option<u64>,
    },
    #[error("the CA's response is not usable: {0}")]
    BadResponse(String),
    #[error("the issued certificate does not verify against {ca_cert}: {reason}")]
    Untrusted { ca_cert: String, reason: String },
    /// The CA presents a root that no link certificate from a trusted root authenticates
    /// (`DIR/trust.pem` is left as it was).
    #[error(
        "the CA presents a new root ({subject}) that is not trusted: {reason}; trust.pem is \
         unchanged"
    )]
    UntrustedRoot { subject: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Local(String),
    /// The TPM could not create, load or use a key, or attest it.
    #[error("TPM: {0}")]
    Tpm(#[from] crate::tpm::TpmError),
    /// `provision` finished, but some devices failed (each already reported).
    #[error("{failed} of {total} device(s) could not be provisioned")]
    BatchIncomplete { failed: usize, total: usize },
    /// `verify` reached a verdict other than trusted (already printed); carries the exit code.
    #[error("verification verdict: exit {0}")]
    Verdict(u8),
}

impl ClientError {
    /// Process exit code: 3 unreachable, 4 TLS trust, 5 unauthorized, 6 forbidden,
    /// 7 bad response or untrusted certificate, 8 other server error (and 429),
    /// 9 a batch left devices unprovisioned, 10 the device needs re-provisioning, 11 the TPM
    /// failed, 12 a new root without a valid link certificate, 1 local error.
    pub fn exit_code(&self) -> u8 {
        match self {
            ClientError::Unreachable { .. } => 3,
            ClientError::TlsTrust { .. } => 4,
            ClientError::Unauthorized { .. } => 5,
            ClientError::Forbidden { .. } => 6,
            ClientError::BadResponse(_) | ClientError::Untrusted { .. } => 7,
            ClientError::Server { .. } | ClientError::TooSoon { .. } => 8,
            ClientError::BatchIncomplete { .. } => 9,
            ClientError::NeedsReprovisioning(_) => 10,
            ClientError::Tpm(_) => 11,
            ClientError::UntrustedRoot { .. } => 12,
            ClientError::Io { .. } | ClientError::Local(_) => 1,
            ClientError::Verdict(code) => *code,
        }
    }

    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ClientError + '_ {
        move |source| ClientError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
