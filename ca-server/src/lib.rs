//! The IoMT device identity CA: issues per-device X.509 identities under the IoMT assurance
//! profiles, enrolls devices over EST (RFC 7030) and keeps the registry and audit trail.
//!
//! Layers point one way: `api` (HTTP handlers) and `cli` (commands) parse, call and render;
//! they call the services in `operations` (registry, stations, search, inventory, recalls,
//! health), `authority` (issuance), `auth` (who is asking), `revocation` (CRL, OCSP) and
//! `audit`; those call `storage` (the only SQL) and `pki` (CA keys and certificates); everything
//! rests on `iomt_core` (policy, linter, codecs). `startup` composes the server; `setup` is
//! `init`.

pub mod api;
pub mod audit;
pub mod auth;
pub mod authority;
pub mod cli;
pub mod config;
pub mod https_cert;
pub mod listener;
pub mod memory;
pub mod operations;
pub mod pki;
pub mod revocation;
pub mod setup;
pub mod startup;
pub mod storage;
pub mod telemetry;
#[cfg(test)]
mod tests_support;
pub mod tls;

/// Every process that runs the CA (the `ca-server` binary, the benchmark's server, the test
/// servers) allocates with mimalloc: under concurrent issuance glibc's malloc spent about a
/// seventh of the CPU consolidating chunks freed on other threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
