//! The health-check service: readiness of each topic for its next and previous stage,
//! monitoring of both clusters, and the health of Ferry's components.
//!
//! - [`engine`]: measures a task's topics on both clusters ([`measure`]), applies the rules
//!   of `ferry_core::readiness` and publishes the readiness to the store
//!   (`task-readiness/<task>/<topic>`), on demand and in a periodic batch scan;
//! - [`presence`]: which clients look routes up through the routers registered in the store;
//! - [`service`]: the gRPC `HealthCheckService`;
//! - [`metrics`]: readiness and monitor gauges set by every periodic scan.
//!
//! metadata-sync reads the published readiness before a non-forced stage change.

pub mod cluster;
pub mod engine;
pub mod error;
pub mod measure;
pub mod metrics;
pub mod presence;
pub mod service;
pub mod slot;

pub use engine::{Engine, EngineConfig, TaskReport, TopicReport};
pub use error::HealthError;
pub use service::HealthCheck;
pub use slot::{StoreSlot, StoreSlotWriter};
