//! One connection to the TPM per process, shared by every key and the attestation: a TPM (and
//! swtpm's socket) serves one client at a time, and without a resource manager it has three
//! object slots, so the callers load, use and flush objects through this one connection.

use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tss_esapi::{Context, TctiNameConf};

use super::TpmError;

/// The TPM reached through one TCTI (`device:/dev/tpmrm0`, `swtpm:host=…,port=…`).
pub struct Tpm {
    context: Mutex<Context>,
}

impl std::fmt::Debug for Tpm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tpm").finish_non_exhaustive()
    }
}

impl Tpm {
    /// Opens the TPM named by a tpm2-tss TCTI string.
    pub fn open(tcti: &str) -> Result<Arc<Tpm>, TpmError> {
        let failed = |source| TpmError::Tcti {
            tcti: tcti.to_owned(),
            source,
        };
        let conf = TctiNameConf::from_str(tcti).map_err(failed)?;
        let context = Context::new(conf).map_err(failed)?;
        Ok(Arc::new(Tpm {
            context: Mutex::new(context),
        }))
    }

    /// The connection, for one command sequence (never held across an await).
    pub(super) fn lock(&self) -> MutexGuard<'_, Context> {
        self.context.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
