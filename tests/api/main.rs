//! End-to-end tests of the GraphQL server over HTTP against a real PostgreSQL.

mod abuse;
mod anchoring;
mod authorization;
mod bad_input;
mod cli;
mod concurrency;
mod consent;
mod encryption_at_rest;
mod exports;
mod helpers;
mod hygiene;
mod startup;
mod use_cases;
