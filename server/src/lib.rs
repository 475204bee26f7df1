//! The medvault server: users and roles, the encrypted versioned record vault in PostgreSQL,
//! the GraphQL API over it, and the HTTP application that serves it.
//!
//! The binary (`src/main.rs` at the workspace root) only parses the command line and calls
//! [`startup`], [`demo`] and [`vault`] here.

pub mod anchor;
pub mod anchoring;
pub mod auth;
pub mod configuration;
pub mod crypto;
pub mod database;
pub mod demo;
pub mod domain;
pub mod error;
pub mod exports;
pub mod graphql;
pub mod metrics;
pub mod postgres_cluster;
pub mod startup;
pub mod telemetry;
pub mod vault;
