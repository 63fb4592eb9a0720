//! Services for the people who run the CA, shared by the HTTP surface and the command line:
//! readiness checks, the figures metrics report at each scrape, the fleet inventory and recalls.
//! They call storage, revocation and the CA material; handlers and commands only parse, call and
//! render.

pub mod gauges;
pub mod health;
pub mod inventory;
pub mod recall;

pub use gauges::Gauges;
pub use health::{AuditAtStart, Check, Health, Readiness};
pub use inventory::{Inventory, InventoryError};
pub use recall::{Batches, Outcome, Plan, RecallError, RecallRequest, Recalls, Released};
