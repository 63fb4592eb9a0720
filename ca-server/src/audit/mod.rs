//! The audit trail for auditors and for the CA itself: `chain` recomputes the hash chain and
//! compares it with signed checkpoints (`audit verify`), `checkpoint` signs and reads those,
//! `schedule` takes them while the server runs, `guard` checks the trail before `serve` answers
//! anyone, and `export` writes JSON lines. The CLI, the admin API and `serve` call these.

mod chain;
pub mod checkpoint;
mod export;
mod guard;
mod schedule;

pub use chain::{Break, CheckpointCheck, CheckpointOutcome, Problem, Verification, verify};
pub use checkpoint::{CheckpointError, Witness};
pub use export::{ExportError, export, export_page, json_line};
pub use guard::{GuardError, guard_at_start};
pub use schedule::Checkpointer;
