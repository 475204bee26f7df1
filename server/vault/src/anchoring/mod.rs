//! Anchoring on the hospitals' chain (MISSION.md decision 3): the leaves that commit to what
//! the vault stores ([`leaf`]), the outbox they wait in ([`outbox`]), the chain they go to
//! ([`chain`]), the check that the database and that chain agree ([`chain_check`]), the sealing
//! of the access log into anchored batches ([`log_batches`]), and the worker that seals, drains
//! the outbox onto the chain and records where each entry landed ([`worker`]); and the audit of
//! the database against the chain ([`db_audit`]).

mod chain;
pub(crate) mod chain_check;
pub mod db_audit;
pub mod leaf;
pub mod log_batches;
pub(crate) mod outbox;
mod worker;

pub use chain::AnchorChain;
pub use chain_check::ChainMismatch;
pub use worker::{AnchoringError, AnchoringWorker};
