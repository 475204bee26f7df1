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

use crate::anchoring::outbox;
use crate::auth::Actor;
use crate::domain::Role;
use crate::error::{Causes, VaultError, VaultResult};
use crate::{ExportRecipient, HospitalCeiling, Page, PageRequest, ResearchSnapshot, Vault};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use medvault_anchor_chain::types::{Entry, Hash32};
use medvault_exporter::manifest::{manifest_hash, MANIFEST_FILE};
use medvault_exporter::{
    Dataset, ExportCeiling, ExportContext, ExportError, ExportPolicy, Manifest,
};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;
use uuid::Uuid;

/// Consenting patients whose records are read and decrypted per database round trip.
const PATIENTS_PER_CHUNK: usize = 256;

/// Where a job is.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum JobStatus {
    /// Waiting for a free export slot.
    Queued,
    /// Reading, anonymizing and writing.
    Running,
    /// Files and manifest are ready to download.
    Succeeded,
    /// Nothing was written; `failure` says why.
    Failed,
}

impl JobStatus {
    fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
        }
    }

    fn parse(stored: &str) -> VaultResult<Self> {
        [
            JobStatus::Queued,
            JobStatus::Running,
            JobStatus::Succeeded,
            JobStatus::Failed,
        ]
        .into_iter()
        .find(|status| status.as_str() == stored)
        .ok_or_else(|| VaultError::internal(CorruptJob("status")))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("stored export job has an unreadable {0}")]
struct CorruptJob(&'static str);

/// One export job as its requester sees it.
#[derive(Clone, Debug)]
pub struct ExportJob {
    /// Its id.
    pub id: Uuid,
    /// Who asked.
    pub requested_by: Uuid,
    /// The recipient organization.
    pub organization_id: Uuid,
    /// The policy it runs under.
    pub policy: ExportPolicy,
    /// Where it is.
    pub status: JobStatus,
    /// Units of work done: a consenting patient read in one pass over the data.
    pub progress_done: i64,
    /// Units of work in all.
    pub progress_total: i64,
    /// Why it failed.
    pub failure: Option<String>,
    /// The signed manifest, once it succeeded.
    pub manifest: Option<Manifest>,
    /// SHA3-256 of `manifest.json` as written: what the chain anchors.
    pub manifest_sha3: Option<Vec<u8>>,
    /// The chain height the manifest hash was anchored at, once it is.
    pub anchored_height: Option<i64>,
    /// The hospitals the export drew on, each with the ceiling its patients were exported
    /// under (none: left out); empty until the job succeeded.
    pub hospitals: Vec<HospitalCeiling>,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
}

const JOB_COLUMNS: &str = "j.id, j.requested_by, j.organization_id, j.policy, j.status, \
     j.progress_done, j.progress_total, j.failure, j.manifest, j.manifest_sha3, \
     o.anchored_height, j.created_at, j.finished_at, j.hospitals";

const JOB_FROM: &str = "export_jobs j LEFT JOIN anchor_outbox o ON o.id = j.anchor_outbox_id";

fn job_from_row(row: &Row) -> VaultResult<ExportJob> {
    let manifest: Option<serde_json::Value> = row.get(8);
    let hospitals: Option<serde_json::Value> = row.get(13);
    Ok(ExportJob {
        id: row.get(0),
        requested_by: row.get(1),
        organization_id: row.get(2),
        policy: serde_json::from_value(row.get(3))
            .map_err(|_| VaultError::internal(CorruptJob("policy")))?,
        status: JobStatus::parse(row.get(4))?,
        progress_done: row.get(5),
        progress_total: row.get(6),
        failure: row.get(7),
        manifest: manifest
            .map(serde_json::from_value)
            .transpose()
            .map_err(|_| VaultError::internal(CorruptJob("manifest")))?,
        manifest_sha3: row.get(9),
        anchored_height: row.get(10),
        created_at: row.get(11),
        finished_at: row.get(12),
        hospitals: hospitals
            .map(serde_json::from_value)
            .transpose()
            .map_err(|_| VaultError::internal(CorruptJob("hospitals")))?
            .unwrap_or_default(),
    })
}

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

/// How long an unfinished job's heartbeat may be silent before the job counts as abandoned.
const ABANDONED_AFTER_SECONDS: f64 = 30.0;

/// A ceiling as a hospital's admin set it.
#[derive(Clone, Debug)]
pub struct StoredCeiling {
    /// The hospital whose patients' exports it bounds.
    pub hospital: Uuid,
    /// The recipient role it bounds.
    pub role: Role,
    /// The bound.
    pub ceiling: ExportCeiling,
    /// The admin who set it.
    pub set_by: Uuid,
    /// When.
    pub set_at: DateTime<Utc>,
}

/// A member hospital and the ceiling it set for one recipient role, if any.
#[derive(Clone, Debug)]
pub struct HospitalRules {
    /// The hospital.
    pub hospital: Uuid,
    /// Its ceiling for the role; none means its patients are left out of the role's exports.
    pub ceiling: Option<StoredCeiling>,
}

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
    /// only `startup::Services::start` builds the job machinery.
    pub(crate) fn new(vault: Vault, directory: PathBuf, operator: String) -> Self {
        Exports {
            vault,
            directory,
            operator,
            slots: Arc::new(Semaphore::new(1)),
        }
    }

    /// An admin sets their hospital's ceiling for exports requested by `role` (insurer,
    /// researcher or government): it bounds exports of that hospital's patients only.
    pub async fn set_ceiling(
        &self,
        admin: &Actor,
        role: Role,
        ceiling: ExportCeiling,
    ) -> VaultResult<StoredCeiling> {
        crate::require_role(admin, Role::Admin)?;
        if role.recipient_kind().is_none() {
            return Err(VaultError::InvalidInput(
                "ceilings bound the insurer, researcher and government roles".into(),
            ));
        }
        ceiling.validate().map_err(bad_input)?;
        let json = serde_json::to_value(&ceiling).map_err(VaultError::internal)?;
        let client = self.vault.pool().get().await?;
        let row = client
            .query_one(
                "INSERT INTO export_ceilings (organization_id, role, ceiling, set_by)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (organization_id, role) DO UPDATE
                   SET ceiling = EXCLUDED.ceiling, set_by = EXCLUDED.set_by, set_at = now()
                 RETURNING set_by, set_at",
                &[
                    &admin.organization_id,
                    &role.as_str(),
                    &json,
                    &admin.user_id,
                ],
            )
            .await?;
        Ok(StoredCeiling {
            hospital: admin.organization_id,
            role,
            ceiling,
            set_by: row.get(0),
            set_at: row.get(1),
        })
    }

    /// One hospital's ceiling for `role`, if it set one. An admin asks for their own hospital's
    /// (`hospital` omitted or their own), any recipient role's; a recipient for their own role's,
    /// naming the hospital. Everything else is FORBIDDEN.
    pub async fn ceiling(
        &self,
        actor: &Actor,
        role: Role,
        hospital: Option<Uuid>,
    ) -> VaultResult<Option<StoredCeiling>> {
        let hospital = match (actor.role, hospital) {
            (Role::Admin, None) => actor.organization_id,
            (Role::Admin, Some(hospital)) if hospital == actor.organization_id => hospital,
            (own, Some(hospital)) if own == role && role.recipient_kind().is_some() => hospital,
            (own, None) if own == role && role.recipient_kind().is_some() => {
                return Err(VaultError::InvalidInput(
                    "each hospital sets its own ceiling: name one with hospitalId, or list them \
                     all with exportCeilings"
                        .into(),
                ))
            }
            _ => return Err(VaultError::Forbidden),
        };
        Ok(self
            .hospital_rules(role, Some(hospital))
            .await?
            .into_iter()
            .next()
            .and_then(|rules| rules.ceiling))
    }

    /// Every member hospital with the ceiling it set for the caller's role, by hospital name:
    /// what a recipient's policy must meet for each hospital's patients to be exported. For
    /// insurers, researchers and agencies only.
    pub async fn ceilings_for_recipient(&self, actor: &Actor) -> VaultResult<Vec<HospitalRules>> {
        let recipient = ExportRecipient::admit(actor)?;
        self.hospital_rules(recipient.actor().role, None).await
    }

    /// The member hospitals (or the one named) with their ceilings for `role`.
    async fn hospital_rules(
        &self,
        role: Role,
        hospital: Option<Uuid>,
    ) -> VaultResult<Vec<HospitalRules>> {
        let client = self.vault.pool().get().await?;
        let rows = client
            .query(
                "SELECT o.id, c.ceiling, c.set_by, c.set_at
                 FROM organizations o
                 LEFT JOIN export_ceilings c ON c.organization_id = o.id AND c.role = $1
                 WHERE o.kind = 'hospital' AND ($2::uuid IS NULL OR o.id = $2)
                 ORDER BY o.name",
                &[&role.as_str(), &hospital],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let hospital: Uuid = row.get(0);
                let ceiling: Option<serde_json::Value> = row.get(1);
                let ceiling = ceiling
                    .map(|ceiling| {
                        Ok::<_, VaultError>(StoredCeiling {
                            hospital,
                            role,
                            ceiling: serde_json::from_value(ceiling)
                                .map_err(|_| VaultError::internal(CorruptJob("ceiling")))?,
                            set_by: row.get(2),
                            set_at: row.get(3),
                        })
                    })
                    .transpose()?;
                Ok(HospitalRules { hospital, ceiling })
            })
            .collect()
    }

    /// A recipient asks for an export under `policy`; it must stay within the ceiling of every
    /// hospital whose patients consented and set one for the recipient's role. The job runs in
    /// the background (and checks the ceilings again in its snapshot); one unfinished job per
    /// organization at a time.
    pub async fn request(&self, actor: &Actor, policy: ExportPolicy) -> VaultResult<ExportJob> {
        let recipient = ExportRecipient::admit(actor)?;
        self.check_policy(&recipient, &policy).await?;
        let policy_json = serde_json::to_value(&policy).map_err(VaultError::internal)?;
        let client = self.vault.pool().get().await?;
        client
            .execute(
                "UPDATE export_jobs SET status = 'failed', finished_at = now(),
                        failure = 'abandoned: the server running it stopped'
                 WHERE organization_id = $1 AND status IN ('queued', 'running')
                   AND heartbeat_at < now() - make_interval(secs => $2)",
                &[&actor.organization_id, &ABANDONED_AFTER_SECONDS],
            )
            .await?;
        let id = Uuid::now_v7();
        client
            .execute(
                "INSERT INTO export_jobs (id, requested_by, organization_id, policy, status)
                 VALUES ($1, $2, $3, $4, 'queued')",
                &[&id, &actor.user_id, &actor.organization_id, &policy_json],
            )
            .await
            .map_err(|error| {
                if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                    VaultError::Conflict(
                        "an export for your organization is already queued or running".into(),
                    )
                } else {
                    error.into()
                }
            })?;
        let job = self.load_job(id).await?;
        tokio::spawn(self.clone().run(id, recipient, policy));
        Ok(job)
    }

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
    async fn check_policy(
        &self,
        recipient: &ExportRecipient,
        policy: &ExportPolicy,
    ) -> VaultResult<()> {
        self.vault
            .admit_research_export(recipient, policy)
            .await
            .map(drop)
    }

    /// One job of the caller's organization; NOT_FOUND for any other, so ids cannot be probed.
    pub async fn job(&self, actor: &Actor, id: Uuid) -> VaultResult<ExportJob> {
        let not_found = VaultError::NotFound("export job");
        let recipient = ExportRecipient::admit(actor).map_err(|_| not_found)?;
        let job = self.load_job(id).await?;
        if job.organization_id != recipient.actor().organization_id {
            return Err(VaultError::NotFound("export job"));
        }
        Ok(job)
    }

    /// The caller's organization's jobs, newest first.
    pub async fn jobs(
        &self,
        actor: &Actor,
        page: PageRequest<Uuid>,
    ) -> VaultResult<Page<ExportJob>> {
        ExportRecipient::admit(actor)?;
        let client = self.vault.pool().get().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {JOB_COLUMNS} FROM {JOB_FROM} WHERE j.organization_id = $1
                     AND ($2::uuid IS NULL OR j.id < $2) ORDER BY j.id DESC LIMIT $3"
                ),
                &[&actor.organization_id, &page.after, &(page.first + 1)],
            )
            .await?;
        let jobs = rows.iter().map(job_from_row).collect::<VaultResult<_>>()?;
        Ok(Page::from_overfetched(jobs, page.first))
    }

    /// The path of one file of a finished job of the caller's organization: the manifest or a
    /// file it lists. NOT_FOUND for anything else.
    pub async fn file(&self, actor: &Actor, id: Uuid, name: &str) -> VaultResult<PathBuf> {
        let job = self.job(actor, id).await?;
        let listed = job.manifest.as_ref().is_some_and(|manifest| {
            name == MANIFEST_FILE || manifest.files.iter().any(|file| file.name == name)
        });
        if !listed {
            return Err(VaultError::NotFound("export file"));
        }
        Ok(self.job_directory(id).join(name))
    }

    fn job_directory(&self, id: Uuid) -> PathBuf {
        self.directory.join(id.to_string())
    }

    async fn load_job(&self, id: Uuid) -> VaultResult<ExportJob> {
        let client = self.vault.pool().get().await?;
        let row = client
            .query_opt(
                &format!("SELECT {JOB_COLUMNS} FROM {JOB_FROM} WHERE j.id = $1"),
                &[&id],
            )
            .await?
            .ok_or(VaultError::NotFound("export job"))?;
        job_from_row(&row)
    }

    /// Runs one job to its end and records the outcome; never leaves it running.
    async fn run(self, id: Uuid, recipient: ExportRecipient, policy: ExportPolicy) {
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

    async fn mark_running(&self, id: Uuid) -> VaultResult<()> {
        let client = self.vault.pool().get().await?;
        client
            .execute(
                "UPDATE export_jobs SET status = 'running' WHERE id = $1",
                &[&id],
            )
            .await?;
        Ok(())
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

    async fn set_progress(&self, id: Uuid, done: i64, total: i64) -> VaultResult<()> {
        let client = self.vault.pool().get().await?;
        client
            .execute(
                "UPDATE export_jobs SET progress_done = $2, progress_total = $3, heartbeat_at = now()
                 WHERE id = $1",
                &[&id, &done, &total],
            )
            .await?;
        Ok(())
    }

    /// Marks the job done, with the hospitals it drew on, and queues its manifest hash for the
    /// chain, in one transaction.
    async fn record_success(
        &self,
        id: Uuid,
        manifest: &Manifest,
        digest: &[u8; 32],
        hospitals: &[HospitalCeiling],
        work: i64,
    ) -> VaultResult<()> {
        let json = serde_json::to_value(manifest).map_err(VaultError::internal)?;
        let hospitals = serde_json::to_value(hospitals).map_err(VaultError::internal)?;
        let mut client = self.vault.pool().get().await?;
        let transaction = client.transaction().await?;
        let outbox_id = queue_manifest_anchor(&transaction, digest).await?;
        transaction
            .execute(
                "UPDATE export_jobs SET status = 'succeeded', manifest = $2, manifest_sha3 = $3,
                        anchor_outbox_id = $4, progress_done = $5, progress_total = $5,
                        hospitals = $6, finished_at = now()
                 WHERE id = $1",
                &[
                    &id,
                    &json,
                    &digest.as_slice(),
                    &outbox_id,
                    &work,
                    &hospitals,
                ],
            )
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    async fn record_failure(
        &self,
        id: Uuid,
        failure: &str,
        (done, total): (i64, i64),
    ) -> VaultResult<()> {
        let client = self.vault.pool().get().await?;
        client
            .execute(
                "UPDATE export_jobs SET status = 'failed', failure = $2, progress_done = $3,
                        progress_total = $4, finished_at = now()
                 WHERE id = $1",
                &[&id, &failure, &done, &total],
            )
            .await?;
        Ok(())
    }
}

/// Queues a manifest's SHA3-256 for the anchoring worker; returns its outbox id.
async fn queue_manifest_anchor(client: &impl GenericClient, digest: &[u8; 32]) -> VaultResult<i64> {
    let entry = Entry::ExportManifest {
        manifest_hash: Hash32(*digest),
    };
    Ok(outbox::queue(client, &entry).await?)
}

/// The snapshot's events, read [`PATIENTS_PER_CHUNK`] patients at a time from the blocking
/// thread the export runs on; `chunk_done` hears how many patients each chunk covered. The
/// first failure ends the stream as an error, which fails the export.
fn stream_events<'a>(
    runtime: &'a tokio::runtime::Handle,
    snapshot: &'a ResearchSnapshot,
    chunk_done: impl Fn(usize) + 'a,
) -> impl Iterator<Item = Result<medvault_exporter::ClinicalEvent, ExportError>> + 'a {
    let cohort = snapshot.cohort_size();
    (0..cohort)
        .step_by(PATIENTS_PER_CHUNK)
        .map(move |start| {
            let end = (start + PATIENTS_PER_CHUNK).min(cohort);
            let events = runtime
                .block_on(snapshot.events(start..end))
                .map_err(|error| {
                    if error.is_internal() {
                        tracing::error!(error = %Causes(&error), "reading the data to export failed");
                    }
                    ExportError::Source(error.caller_message())
                })?;
            chunk_done(end - start);
            Ok(events)
        })
        .flat_map(|chunk: Result<Vec<_>, ExportError>| match chunk {
            Ok(events) => EitherEvents::Events(events.into_iter()),
            Err(error) => EitherEvents::Failed(Some(error)),
        })
}

/// One chunk's events, or the error that ends the stream.
enum EitherEvents {
    Events(std::vec::IntoIter<medvault_exporter::ClinicalEvent>),
    Failed(Option<ExportError>),
}

impl Iterator for EitherEvents {
    type Item = Result<medvault_exporter::ClinicalEvent, ExportError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            EitherEvents::Events(events) => events.next().map(Ok),
            EitherEvents::Failed(error) => error.take().map(Err),
        }
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

fn bad_input(error: ExportError) -> VaultError {
    VaultError::InvalidInput(error.to_string())
}
