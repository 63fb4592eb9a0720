//! Services for the people who run the CA, shared by the HTTP surface and the command line:
//! operators' credentials, device registration and tokens, stations, certificate search, device re-provisioning, the
//! policy-change audit at start, readiness checks, the figures metrics report at each scrape,
//! the fleet inventory, recalls, CA generations (rollover, `ca list`, the lifecycle task), and the
//! console's overview and device dossier. They call storage, revocation and the CA material;
//! handlers and commands only parse, call and render.

pub mod credentials;
pub mod dossier;
pub mod gauges;
pub mod generations;
pub mod health;
pub mod inventory;
pub mod overview;
pub mod policy_changes;
pub mod recall;
pub mod registry;
pub mod reprovision;
pub mod search;
pub mod stations;
pub mod tpm_roots;

pub use gauges::Gauges;
pub use generations::{GenerationError, GenerationView, Lifecycle, RolledOver};
pub use health::{AuditAtStart, Check, Health, Readiness};
pub use inventory::{Inventory, InventoryError};
pub use overview::{Overview, OverviewError, Overviews};
pub use recall::{Batches, Outcome, Plan, RecallError, RecallRequest, Recalls, Released};
