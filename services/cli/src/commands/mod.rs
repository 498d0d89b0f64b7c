//! One module per `ferry` subcommand.

pub mod dataflow;
pub mod export;
pub mod health;
pub mod import;
pub mod migration;
pub mod scan;
pub mod standalone;
pub mod template;
