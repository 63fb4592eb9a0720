//! The IoMT enrollment client: generates a key locally, enrolls over EST, verifies the issued
//! chain against the trusted root and writes the credential files atomically.
//!
//! The map, from the command line down: `cli` parses and dispatches (`main` maps failures to
//! the exit codes of `error`). The flows: `enroll` (first enrollment and renewal of one
//! device), `provision` (a station's batch, written by `device_files`), `daemon` and `rotation`
//! (`run`: renew unattended), `attested` (the same flows with the key in a TPM), `status` (the
//! device asks OCSP about itself) and `verify` (what a hospital checks). What they share: `csr`
//! (the key and the request), `est` and `bound` (EST over rustls; a request bound to its TLS
//! connection), `chain` (checking the CA's answer), `client_identity` and `tls` (the current
//! credential as a mutual-TLS client), `keystore` and `staging` (the credential set switched as
//! one; requests made durable before they are sent), `trust` (`trust.pem` and root key
//! update), `clock` (the device's clock against the CA's) and `tpm` (the TPM 2.0 key and its
//! attestation evidence).

pub mod attested;
pub mod bound;
pub mod chain;
pub mod cli;
pub mod client_identity;
pub mod clock;
pub mod csr;
pub mod daemon;
pub mod device_files;
pub mod enroll;
pub mod error;
pub mod est;
pub mod keystore;
pub mod provision;
pub mod rotation;
pub mod staging;
pub mod status;
pub mod tls;
pub mod tpm;
pub mod trust;
pub mod verify;
