//! Anchoring on the hospitals' chain (MISSION.md decision 3): the leaves that commit to what
//! the vault stores ([`leaf`]), the outbox they wait in ([`outbox`]), the chain they go to
//! ([`chain`]), the check that the database and that chain agree ([`chain_check`]), the sealing
//! of the access log into anchored batches ([`log_batches`]), the chain's say over which
//! hospitals exist ([`membership`]), and the worker that seals, drains
//! the outbox onto the chain and records where each entry landed ([`worker`]); and the audit of
//! the database against the chain ([`db_audit`]), also run for auditors as a job
//! ([`db_audit_jobs`]).

mod chain;
pub(crate) mod chain_check;
pub mod db_audit;
pub mod db_audit_jobs;
pub mod leaf;
pub mod log_batches;
pub(crate) mod membership;
pub(crate) mod outbox;
mod worker;

pub use chain::AnchorChain;
pub use chain_check::ChainMismatch;
pub use outbox::QueuedFact;
pub use worker::{AnchoringError, AnchoringWorker};
