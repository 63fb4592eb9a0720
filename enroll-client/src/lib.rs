//! The IoMT enrollment client: generates a key locally, enrolls over EST, verifies the issued
//! chain against the trusted root and writes the credential files atomically.

pub mod attested;
pub mod bound;
pub mod cli;
pub mod clock;
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
