//! The permissioned anchor chain of the member hospitals.
//!
//! Module map (see ARCHITECTURE.md): [`types`], [`merkle`], [`block`] and [`governance`] are pure
//! data and rules; [`verify`] is the auditor and depends on nothing else; [`state`] applies ordered
//! proposals to the chain deterministically; [`storage`] makes the Raft log and the chain durable
//! (the chain file in the checksummed framing of [`chain_file`], verified at every open);
//! [`consensus`] replicates proposals with openraft; [`node`] runs a validator (batching, signing,
//! membership) and [`api`] serves it over HTTP; [`client`] and [`embedded`] are the two ways the
//! rest of medvault uses a chain; [`audit`] audits real sources (data directories, running
//! validators) with [`verify`] and cross-checks them, for `medvault audit`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod audit;
pub mod block;
pub mod chain_file;
pub mod client;
pub mod consensus;
pub mod embedded;
pub mod files;
pub mod governance;
pub mod merkle;
pub mod node;
pub mod state;
pub mod storage;
pub mod types;
pub mod verify;
