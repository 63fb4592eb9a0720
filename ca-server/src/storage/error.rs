//! `StoreError`: what storage reports, and how a sqlx error is classified (unavailable means
//! "try again", HTTP 503; anything else is a decision or a defect).

/// Storage failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("device {0} is already registered")]
    DeviceExists(String),
    #[error("device {0} is not registered")]
    UnknownDevice(String),
    #[error("the token was used or expired while this request was in flight")]
    TokenNotConsumable,
    #[error("certificate serial {0} already exists")]
    SerialCollision(String),
    #[error("certificate {0} has already been superseded by a re-enrollment")]
    AlreadySuperseded(String),
    #[error("the public key is already certified for device {holder}")]
    KeyHeld { holder: String },
    #[error("device {0} already holds a certificate that is neither revoked nor expired")]
    DeviceHoldsCertificate(String),
    #[error("the attestation challenge was used or expired while this request was in flight")]
    ChallengeNotConsumable,
    #[error("device {device} is bound to another TPM (EK certificate SHA-256 {ek_sha256})")]
    BoundToOtherTpm { device: String, ek_sha256: String },
    #[error("device {0} is named by an active recall")]
    DeviceRecalled(String),
    #[error("station {0} already exists")]
    StationExists(String),
    #[error("station {0} does not exist or is disabled")]
    UnknownStation(String),
    #[error("station {station} reached its hourly issuance limit")]
    StationRateLimited { station: String },
    #[error("an operator named `{0}` already exists")]
    OperatorExists(String),
    #[error(
        "CA `{ca}`: generation {expected} is no longer the active one (a concurrent rollover \
         won); nothing was written"
    )]
    GenerationConflict { ca: String, expected: i64 },
    #[error("the database holds an unreadable record: {0}")]
    Corrupt(String),
    #[error("the storage batching task has stopped")]
    WriterStopped,
    #[error("storage is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("storage error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL `{0}` (use sqlite://PATH or postgres://...)")]
    UnsupportedUrl(String),
}

impl StoreError {
    /// True for failures of the database itself (unreachable, erroring, migrations), false for
    /// the decisions storage reports (a used token, a taken serial, a rate limit).
    pub fn is_database_failure(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable(_)
                | StoreError::Database(_)
                | StoreError::Migration(_)
                | StoreError::WriterStopped
        )
    }
}

/// Classifies a sqlx error: connection-level failures are "unavailable" (HTTP 503).
pub(crate) fn classify(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => StoreError::Unavailable(error),
        sqlx::Error::Database(ref db) if db.message().contains("database is locked") => {
            StoreError::Unavailable(error)
        }
        // PostgreSQL connection exceptions (08xxx) and operator intervention (57xxx: shutdown,
        // terminated backends) mean "try again", not "bad request".
        sqlx::Error::Database(ref db)
            if db
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57")) =>
        {
            StoreError::Unavailable(error)
        }
        other => StoreError::Database(other),
    }
}
