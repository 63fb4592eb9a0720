//! Why a policy file was refused: always with the file and the key named.

use std::fmt;
use std::path::PathBuf;

/// One broken rule in one policy file, at a dotted key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Dotted key path, e.g. `validity.max_days`.
    pub key: String,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl Violation {
    /// A violation at `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Violation {
        Violation {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Errors from loading the policy directory.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{file}: {violations}", violations = join(violations))]
    Invalid {
        file: String,
        violations: Vec<Violation>,
    },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: policy id `{id}` is defined twice")]
    DuplicateId { file: String, id: String },
    #[error("{file}: a second base policy for level `{level}`")]
    DuplicateLevel { file: String, level: &'static str },
    #[error(
        "no base policy for level `{0}` (expected a file with level = \"{0}\" and extends = \"\")"
    )]
    MissingLevel(&'static str),
    #[error(
        "policies still use placeholder OIDs (1.3.6.1.4.1.32473.*, placeholder_oids = true): {}; replace them before a production CA",
        .0.join(", ")
    )]
    PlaceholderOids(Vec<String>),
    #[error("{file}: key `{key}`: {message}")]
    Schema {
        file: String,
        key: String,
        message: String,
    },
    #[error("{file}: {message}")]
    Syntax { file: String, message: String },
}

fn join(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(Violation::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
