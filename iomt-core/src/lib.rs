//! Shared core of the IoMT device identity authority: policy model and loader, certificate
//! profile linter, EST wire codecs and DER helpers. No network or database I/O lives here.

pub mod attestation;
pub mod channel_binding;
pub mod extensions;
pub mod files;
pub mod identity;
pub mod lint;
pub mod ocsp;
pub mod oids;
pub mod policy;
pub mod serial;
#[cfg(feature = "testing")]
pub mod testing;
pub mod wire;
