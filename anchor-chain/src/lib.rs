//! The permissioned anchor chain of the member hospitals.
//!
//! Module map (see ARCHITECTURE.md), bottom up: each module imports only modules named before it.
//! [`bytes`] (hashes, keys, signatures), [`paths`] (the HTTP paths validators call on each other),
//! [`chain_file`] (the chain file's checksummed framing) and [`files`] (the tools' JSON files)
//! depend on nothing else in the crate; [`merkle`] and [`entry`] (what the chain records) depend
//! on [`bytes`] only; [`codec`] is the canonical encoding of entries and governance actions that
//! hashes and signatures cover; [`block`] and [`governance`] are pure data and rules; [`verify`]
//! is the auditor and imports
//! none of the modules after it; [`state`] applies ordered proposals to the chain
//! deterministically; [`consensus`] replicates proposals with openraft; [`storage`] makes the Raft
//! log and the chain durable (the chain file verified at every open); [`node`] runs a validator
//! (batching, signing, membership) and [`api`] serves it over HTTP; [`client`] and [`embedded`]
//! are the two ways the rest of medvault uses a chain; [`audit`] audits real sources (data
//! directories, running validators) with [`verify`] and cross-checks them, for `medvault audit`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod api;
pub mod audit;
pub mod block;
pub mod bytes;
pub mod chain_file;
pub mod client;
pub mod codec;
pub mod consensus;
pub mod embedded;
pub mod entry;
pub mod files;
pub mod governance;
pub mod merkle;
pub mod node;
pub mod paths;
pub mod state;
pub mod storage;
pub mod verify;
