//! Ferry's domain rules, with no I/O.
//!
//! Everything here is pure and deterministic so it can be property-tested: the migration
//! stages and which transitions between them are allowed, namespace parsing, topic/group
//! name validation, queue-count clamping, and how per-item results roll up into a task
//! status. Services translate between these types and the wire (protobuf, RocketMQ).

pub mod error;
pub mod stage;

pub use error::CoreError;
pub use stage::{Direction, Stage};
