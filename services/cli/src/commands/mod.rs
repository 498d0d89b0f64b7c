//! One module per `ferry` subcommand.

pub mod health;
pub mod standalone;
pub mod task;
