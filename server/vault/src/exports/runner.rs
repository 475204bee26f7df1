//! Running an export: admit the policy, read a snapshot of the cohort, have the exporter
//! anonymize and write it, and record the outcome.

use super::jobs::queue_manifest_anchor;
use super::snapshot::stream_events;
use super::Exports;
use crate::anchoring::outbox;
use crate::auth::Actor;
use crate::error::{Causes, VaultError, VaultResult};
use crate::{ExportRecipient, HospitalCeiling};
use chrono::Utc;
use medvault_exporter::manifest::manifest_hash;
use medvault_exporter::{Dataset, ExportContext, ExportError, ExportPolicy, Manifest};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use uuid::Uuid;

/// How far an export is, in consenting patients read per pass over the data; shared between
/// the thread doing the export and whoever reports it (the job row, a progress bar).
#[derive(Debug, Default)]
pub struct ExportProgress {
    done: AtomicI64,
    total: AtomicI64,
}

impl ExportProgress {
    /// Units done and units in all (0 in all until the cohort is known).
    pub fn get(&self) -> (i64, i64) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }

    fn start(&self, total: i64) {
        self.total.store(total, Ordering::Relaxed);
    }

    fn advance(&self, units: i64) {
        self.done.fetch_add(units, Ordering::Relaxed);
    }
}

/// How often a job's progress and heartbeat are written to its row, queued or running.
const PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

impl Exports {
    /// Makes an export into `out_dir` at once, outside the job table (the operator's
    /// `medvault export`), and queues its manifest hash for the chain.
    pub async fn export_to_directory(
        &self,
        actor: &Actor,
        policy: ExportPolicy,
        out_dir: PathBuf,
        progress: Arc<ExportProgress>,
    ) -> VaultResult<(Manifest, [u8; 32])> {
        let recipient = ExportRecipient::admit(actor)?;
        self.check_policy(&recipient, &policy).await?;
        let (manifest, digest, _) = self
            .write_export(&recipient, policy, out_dir, progress)
            .await?;
        let client = self.vault.pool().get().await?;
        queue_manifest_anchor(&client, &digest).await?;
        Ok((manifest, digest))
    }

    /// Refuses a policy above some consenting patient's hospital's ceiling, and an export that
    /// no hospital's ceiling lets include anyone.
    pub(super) async fn check_policy(
        &self,
        recipient: &ExportRecipient,
        policy: &ExportPolicy,
    ) -> VaultResult<()> {
        self.vault
            .admit_research_export(recipient, policy)
            .await
            .map(drop)
    }

    /// Runs one job to its end and records the outcome; never leaves it running.
    pub(super) async fn run(self, id: Uuid, recipient: ExportRecipient, policy: ExportPolicy) {
        let progress = Arc::new(ExportProgress::default());
        let reporter = tokio::spawn(self.clone().report_progress(id, progress.clone()));
        let outcome = match self.slots.clone().acquire_owned().await {
            Ok(_slot) => {
                let written = match self.mark_running(id).await {
                    Ok(()) => {
                        self.write_export(
                            &recipient,
                            policy,
                            self.job_directory(id),
                            progress.clone(),
                        )
                        .await
                    }
                    Err(error) => Err(error),
                };
                written
            }
            Err(error) => Err(VaultError::internal(error)),
        };
        reporter.abort();
        let recorded = match outcome {
            Ok((manifest, digest, hospitals)) => {
                self.record_success(id, &manifest, &digest, &hospitals, progress.get().1)
                    .await
            }
            Err(error) => {
                if error.is_internal() {
                    tracing::error!(job = %id, error = %Causes(&error), "export failed");
                }
                self.record_failure(id, &error.caller_message(), progress.get())
                    .await
            }
        };
        if let Err(error) = recorded {
            tracing::error!(job = %id, error = %Causes(&error), "could not record the export's outcome");
        }
    }

    /// Writes the job's progress and heartbeat to its row until aborted.
    async fn report_progress(self, id: Uuid, progress: Arc<ExportProgress>) {
        loop {
            tokio::time::sleep(PROGRESS_INTERVAL).await;
            let (done, total) = progress.get();
            if let Err(error) = self.set_progress(id, done, total).await {
                tracing::warn!(job = %id, error = %Causes(&error), "progress not recorded");
            }
        }
    }

    /// Reads a snapshot of the recipient's cohort, has the exporter write `out_dir`, and returns
    /// the manifest, the SHA3-256 of manifest.json and the hospitals drawn on with their
    /// ceilings.
    async fn write_export(
        &self,
        recipient: &ExportRecipient,
        policy: ExportPolicy,
        out_dir: PathBuf,
        progress: Arc<ExportProgress>,
    ) -> VaultResult<(Manifest, [u8; 32], Vec<HospitalCeiling>)> {
        let client = self.vault.pool().get().await?;
        let chain_height = outbox::latest_anchored_height(&client).await?;
        drop(client);
        let snapshot = self
            .vault
            .open_research_snapshot(recipient, &policy)
            .await?;
        let hospitals = snapshot.hospitals().to_vec();
        // One unit per consenting patient per pass: reading profiles, then each pass the
        // exporter makes over the events (a second one to check l-diversity).
        let event_passes = match (policy.dataset, &policy.sensitive, policy.l) {
            (Dataset::Patients, _, _) => 0,
            (_, Some(_), Some(_)) => 2,
            _ => 1,
        };
        let cohort = snapshot.cohort_size() as i64;
        progress.start(cohort * (1 + event_passes));
        let persons = snapshot.persons().await?;
        progress.advance(cohort);
        let context = ExportContext {
            organization: self.operator.clone(),
            signing_key: self.vault.master_key().export_signing_key(),
            pseudonym_secret: self.vault.master_key().export_pseudonym_secret(),
            consent_root: hex::encode(snapshot.consent_root()),
            chain_height: chain_height as u64,
            as_of: Utc::now(),
        };
        if let Some(parent) = out_dir.parent() {
            std::fs::create_dir_all(parent).map_err(VaultError::internal)?;
        }
        let runtime = tokio::runtime::Handle::current();
        let (written, snapshot) = tokio::task::spawn_blocking(move || {
            let events = || {
                stream_events(&runtime, &snapshot, |patients| {
                    progress.advance(patients as i64)
                })
            };
            let written = medvault_exporter::export(&policy, &context, &persons, events, &out_dir)
                .and_then(|manifest| Ok((manifest, manifest_hash(&out_dir)?)));
            (written, snapshot)
        })
        .await
        .map_err(VaultError::internal)?;
        snapshot.close().await?;
        let (manifest, digest_hex) = written.map_err(export_failure)?;
        let mut digest = [0u8; 32];
        hex::decode_to_slice(&digest_hex, &mut digest).map_err(VaultError::internal)?;
        Ok((manifest, digest, hospitals))
    }
}

/// What the caller is told about a failed export: the exporter's reasons (policy not met,
/// invalid policy) are theirs to act on; anything else is internal.
fn export_failure(error: ExportError) -> VaultError {
    match error {
        ExportError::InvalidPolicy(_)
        | ExportError::PolicyNotMet { .. }
        | ExportError::AboveCeiling(_) => VaultError::InvalidInput(error.to_string()),
        other => VaultError::internal(other),
    }
}
