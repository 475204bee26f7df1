//! The medvault server: the GraphQL API over the vault (`medvault-vault`) and the HTTP
//! application that serves it.
//!
//! The binary (`src/main.rs` at the workspace root) only parses the command line and calls
//! [`startup`] here and the vault's `Services` and `demo`.

pub mod configuration;
pub mod error;
pub mod graphql;
pub mod metrics;
pub mod postgres_cluster;
pub mod startup;
pub mod telemetry;
