//! Anonymized research and insurer exports (MISSION.md decision 7).
//!
//! The server hands over the decrypted data of patients with a live research consent; this
//! crate removes HIPAA Safe Harbor's direct identifiers, replaces ids with keyed pseudonyms,
//! generalizes quasi-identifiers per policy, enforces k-anonymity and l-diversity by suppression
//! within the allowed rate (or fails and writes nothing), writes Arrow IPC and Parquet files in an
//! OMOP-like layout, and describes them in a signed manifest whose hash can be anchored. The
//! administrator's ceiling for each recipient role bounds the policies that role may request.
//!
//! The crate knows nothing of GraphQL, HTTP or PostgreSQL: its inputs are plain rows.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod anonymize;
pub mod ceiling;
pub mod error;
pub mod manifest;
pub mod policy;
pub mod source;
pub mod write;

pub use anonymize::{anonymize_persons, AnonymizedPersons, PseudonymKey};
pub use ceiling::ExportCeiling;
pub use error::ExportError;
pub use manifest::{verify_export, ExportContext, Manifest};
pub use policy::{Dataset, DateDetail, ExportPolicy};
pub use source::{ClinicalEvent, EventKind, Person};
pub use write::export;
