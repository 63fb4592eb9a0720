//! Hospital-side verification of IoMT device certificates: a small mutual-TLS server built on
//! rustls's `WebPkiClientVerifier` with CRLs fetched from the distribution points and refreshed
//! before their nextUpdate. It accepts a device whose certificate chains to the IoMT root, is not
//! revoked or on hold, is within its validity and asserts an accepted level policy OID, and it
//! names the reason for every rejection in one log line and one [`Decision`].
//!
//! ```no_run
//! # async fn example() -> Result<(), hospital_example::HospitalError> {
//! use hospital_example::{HospitalConfig, HospitalServer};
//! let server = HospitalServer::bind(HospitalConfig {
//!     listen: "0.0.0.0:9443".parse().expect("address"),
//!     ca_cert: "root.pem".into(),
//!     cert: "server.pem".into(),
//!     key: "server.key.pem".into(),
//!     crl_urls: vec![
//!         "http://ca.example/crl/high.crl".into(),
//!         "http://ca.example/crl/root.crl".into(),
//!     ],
//!     accept_policies: vec!["1.3.6.1.4.1.32473.7.1.3".parse()?],
//! })
//! .await?;
//! server.run_until(async { tokio::signal::ctrl_c().await.ok(); }).await;
//! # Ok(())
//! # }
//! ```

mod crl;
mod decision;
mod error;
mod identity;
mod server;
mod tls;

pub use crl::CrlError;
pub use decision::{Decision, RejectReason};
pub use error::HospitalError;
pub use identity::{DeviceIdentity, PolicyOid};
pub use server::{HospitalConfig, HospitalServer};
