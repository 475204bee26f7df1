//! Anchoring on the hospitals' chain (MISSION.md decision 3): the leaves that commit to what
//! the vault stores ([`leaf`]), the outbox they wait in ([`outbox`]), and the worker that drains
//! it onto the chain and records where each entry landed ([`worker`]).

pub mod leaf;
pub(crate) mod outbox;
mod worker;

pub use worker::{AnchorChain, AnchoringError, AnchoringWorker};
