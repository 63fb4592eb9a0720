//! The IoMT device identity CA: issues per-device X.509 identities under the IoMT assurance
//! profiles, enrolls devices over EST (RFC 7030) and keeps the registry and audit trail.
//!
//! Layers point one way: `api` (HTTP) → `auth`, `authority` (issuance), `registry` →
//! `storage` (SQL) → `iomt_core` (policy, linter, codecs).

pub mod api;
pub mod audit;
pub mod auth;
pub mod authority;
pub mod cli;
pub mod config;
pub mod listener;
pub mod operations;
pub mod pki;
pub mod policy_changes;
pub mod registry;
pub mod reprovision;
pub mod revocation;
pub mod search;
pub mod setup;
pub mod startup;
pub mod stations;
pub mod storage;
pub mod telemetry;
pub mod tls;

/// Every process that runs the CA (the `ca-server` binary, the benchmark's server, the test
/// servers) allocates with mimalloc: under concurrent issuance glibc's malloc spent about a
/// seventh of the CPU consolidating chunks freed on other threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
