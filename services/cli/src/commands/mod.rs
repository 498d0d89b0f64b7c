//! One module per `ferry` subcommand.

pub mod export;
pub mod health;
pub mod import;
pub mod scan;
pub mod standalone;
pub mod task;
pub mod template;
