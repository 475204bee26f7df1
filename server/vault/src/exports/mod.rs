//! Anonymized export jobs (MISSION.md decision 7): an insurer, researcher or agency asks for an
//! export under a policy within the ceiling each consenting patient's hospital set for their
//! role; a background job reads a snapshot of the consenting patients' data, has the exporter
//! anonymize and write it, and queues the manifest's hash for the anchor chain; the recipient
//! follows the job's progress and downloads the files.
//!
//! A ceiling belongs to the hospital whose admin set it and bounds exports of that hospital's
//! patients only, so that no hospital sets another's rules.
//!
//! Files live under the server's export directory, one directory per job; the job row in
//! PostgreSQL holds the policy, the progress and the manifest (counts and hashes, no health data).
//!
//! [`ceilings`] holds the hospitals' rules, [`jobs`] the job table, [`runner`] runs an export
//! (as a job or for the operator's `medvault export`), and [`snapshot`] streams a snapshot's
//! events to the exporter.

mod ceilings;
mod jobs;
mod runner;
mod snapshot;

pub use ceilings::{HospitalRules, StoredCeiling};
pub use jobs::{ExportJob, JobStatus};
pub use runner::ExportProgress;

use crate::error::VaultError;
use crate::Vault;
use medvault_exporter::ExportError;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::Semaphore;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
#[error("stored export job has an unreadable {0}")]
struct CorruptJob(&'static str);

/// Export jobs over a vault; cheap to clone.
#[derive(Clone)]
pub struct Exports {
    vault: Vault,
    directory: PathBuf,
    operator: String,
    /// One export at a time per server: an export reads and writes as fast as the machine
    /// allows, and the API must stay responsive meanwhile.
    slots: Arc<Semaphore>,
}
impl Exports {
    /// Export jobs of `vault` writing under `directory`, signed as `operator`. Crate-private:
    /// only `Services::start` builds the job machinery.
    pub(crate) fn new(vault: Vault, directory: PathBuf, operator: String) -> Self {
        Exports {
            vault,
            directory,
            operator,
            slots: Arc::new(Semaphore::new(1)),
        }
    }

    fn job_directory(&self, id: Uuid) -> PathBuf {
        self.directory.join(id.to_string())
    }
}

fn bad_input(error: ExportError) -> VaultError {
    VaultError::InvalidInput(error.to_string())
}
