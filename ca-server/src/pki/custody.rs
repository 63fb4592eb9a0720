//! Where the secrets that unlock CA keys come from: the CA passphrase (file, environment,
//! prompt, or the generated `DIR/passphrase`) and the PKCS#11 user PIN. Never from argv.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use iomt_core::files::{PRIVATE, write_new};
use zeroize::Zeroizing;

use super::error::PkiError;
use super::sealed::Passphrase;

/// The generated passphrase file of a data directory initialized without a passphrase.
pub const PASSPHRASE_FILE: &str = "passphrase";
/// Environment variable holding the CA passphrase itself.
pub const PASSPHRASE_ENV: &str = "IOMT_CA_PASSPHRASE";
/// Environment variable holding the PKCS#11 user PIN itself.
pub const PIN_ENV: &str = "IOMT_PKCS11_PIN";
/// Shortest passphrase `init` accepts from an operator.
pub const MIN_PASSPHRASE_CHARS: usize = 12;

/// How to reach the secrets (paths and switches only; the secrets are read when needed).
#[derive(Debug, Clone, Default)]
pub struct KeyAccess {
    /// File holding the CA passphrase (first line).
    pub passphrase_file: Option<PathBuf>,
    /// File holding the PKCS#11 user PIN (first line).
    pub pin_file: Option<PathBuf>,
    /// Ask for the passphrase on the terminal when no other source gives one.
    pub prompt: bool,
}

/// A passphrase and where it came from.
#[derive(Debug)]
pub struct Resolved {
    pub passphrase: Passphrase,
    /// True when `init` generated `DIR/passphrase` (protects nothing against readers of DIR).
    pub generated: bool,
}

impl KeyAccess {
    /// The passphrase for a new CA: given by the operator, or generated (then written by
    /// [`write_generated`] once the data directory exists).
    pub fn passphrase_for_init(&self) -> Result<Resolved, PkiError> {
        if let Some(passphrase) = self.given()? {
            if passphrase.len() < MIN_PASSPHRASE_CHARS {
                return Err(PkiError::WeakPassphrase(MIN_PASSPHRASE_CHARS));
            }
            return Ok(Resolved {
                passphrase,
                generated: false,
            });
        }
        if self.prompt {
            let first = prompt("New CA passphrase: ")?;
            let second = prompt("Repeat the CA passphrase: ")?;
            if first.expose() != second.expose() {
                return Err(PkiError::PassphraseMismatch);
            }
            if first.len() < MIN_PASSPHRASE_CHARS {
                return Err(PkiError::WeakPassphrase(MIN_PASSPHRASE_CHARS));
            }
            return Ok(Resolved {
                passphrase: first,
                generated: false,
            });
        }
        let secret = super::random_secret()?;
        Ok(Resolved {
            passphrase: Passphrase::new(secret.to_string()),
            generated: true,
        })
    }

    /// The passphrase that unlocks an existing CA's keys.
    pub fn passphrase(&self, dir: &Path) -> Result<Passphrase, PkiError> {
        if let Some(passphrase) = self.given()? {
            return Ok(passphrase);
        }
        let generated = dir.join(PASSPHRASE_FILE);
        if generated.exists() {
            return read_secret_file(&generated).map(Passphrase::new);
        }
        if self.prompt || std::io::stdin().is_terminal() {
            return prompt("CA passphrase: ");
        }
        Err(PkiError::NoPassphrase)
    }

    /// The PKCS#11 user PIN: `--pkcs11-pin-file`, `IOMT_PKCS11_PIN`, or the file `init` recorded.
    pub fn pin(&self, recorded: Option<&Path>) -> Result<Zeroizing<String>, PkiError> {
        if let Some(path) = self.pin_file.as_deref().or(recorded) {
            return read_secret_file(path).map(Zeroizing::new);
        }
        if let Ok(pin) = std::env::var(PIN_ENV) {
            return Ok(Zeroizing::new(pin));
        }
        if std::io::stdin().is_terminal() {
            return rpassword::prompt_password("PKCS#11 user PIN: ")
                .map(Zeroizing::new)
                .map_err(|e| PkiError::io(Path::new("/dev/tty"), e));
        }
        Err(PkiError::NoPin)
    }

    /// A passphrase from the file option or the environment.
    fn given(&self) -> Result<Option<Passphrase>, PkiError> {
        if let Some(path) = &self.passphrase_file {
            return read_secret_file(path).map(|p| Some(Passphrase::new(p)));
        }
        match std::env::var(PASSPHRASE_ENV) {
            Ok(text) if !text.is_empty() => Ok(Some(Passphrase::new(text))),
            _ => Ok(None),
        }
    }
}

/// Writes a generated passphrase to `DIR/passphrase` (0600) and warns that it protects nothing
/// against anyone who can read the directory.
pub fn write_generated(dir: &Path, passphrase: &Passphrase) -> Result<(), PkiError> {
    let path = dir.join(PASSPHRASE_FILE);
    let text = Zeroizing::new(format!("{}\n", passphrase.expose()));
    write_new(&path, text.as_bytes(), PRIVATE).map_err(|e| PkiError::io(&path, e))?;
    tracing::warn!(
        path = %path.display(),
        "NO CA PASSPHRASE GIVEN: generated one into this file. The CA keys are encrypted, but \
         anyone who can read the data directory can read the passphrase too. Give \
         --passphrase-file or IOMT_CA_PASSPHRASE (and move the file away) to protect them."
    );
    Ok(())
}

/// The first line of a secret file, without its line break; empty files are refused.
fn read_secret_file(path: &Path) -> Result<String, PkiError> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| PkiError::io(path, e))?);
    let line = text.lines().next().unwrap_or_default().to_owned();
    if line.is_empty() {
        return Err(PkiError::Invalid {
            path: path.to_path_buf(),
            reason: "the secret file is empty".into(),
        });
    }
    Ok(line)
}

fn prompt(question: &str) -> Result<Passphrase, PkiError> {
    rpassword::prompt_password(question)
        .map(Passphrase::new)
        .map_err(|e| PkiError::io(Path::new("/dev/tty"), e))
}

/// Makes this process's memory harder to leak: no core dumps, not ptrace-attachable by other
/// users' processes (PR_SET_DUMPABLE 0), so keys unsealed in memory stay there.
pub fn harden_process() {
    use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};
    if let Err(error) = setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    ) {
        tracing::warn!(%error, "could not disable core dumps (RLIMIT_CORE)");
    }
    if let Err(error) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
        tracing::warn!(%error, "could not mark the process non-dumpable (PR_SET_DUMPABLE)");
    }
}
