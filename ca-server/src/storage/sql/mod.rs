//! Storage written once for every backend. Each file holds the statements of one record family,
//! built with `QueryBuilder` (which writes each dialect's placeholders), and a macro that
//! implements the family's trait for a backend's store; `sqlite.rs` and `postgres.rs` invoke
//! them and keep only what truly differs (connecting, opening a write transaction, the group
//! commit).

pub(super) mod admin;
pub(super) mod attestation;
pub(super) mod console;
pub(super) mod generations;
pub(super) mod operations;
pub(super) mod recalls;
pub(super) mod records;
pub(super) mod stations;
