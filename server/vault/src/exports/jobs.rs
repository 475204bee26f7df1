//! The export job table: a recipient's requests, their progress and outcome, and the files a
//! finished job lists.

use super::{CorruptJob, Exports};
use crate::anchoring::outbox;
use crate::auth::Actor;
use crate::error::{VaultError, VaultResult};
use crate::{ExportRecipient, HospitalCeiling, Page, PageRequest};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use medvault_anchor_chain::bytes::Hash32;
use medvault_anchor_chain::entry::Entry;
use medvault_exporter::manifest::MANIFEST_FILE;
use medvault_exporter::{ExportPolicy, Manifest};
use std::path::PathBuf;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;
use uuid::Uuid;

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

/// How long an unfinished job's heartbeat may be silent before the job counts as abandoned.
const ABANDONED_AFTER_SECONDS: f64 = 30.0;

impl Exports {
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

    /// One job of the caller's organization; NOT_FOUND for any other, so ids cannot be probed.
    pub async fn job(&self, actor: &Actor, id: Uuid) -> VaultResult<ExportJob> {
        let not_found = || VaultError::NotFound("export job");
        let recipient = ExportRecipient::admit(actor).map_err(|_| not_found())?;
        let job = self.load_job(id).await?;
        if recipient.owns(job.organization_id) {
            Ok(job)
        } else {
            Err(not_found())
        }
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

    pub(super) async fn mark_running(&self, id: Uuid) -> VaultResult<()> {
        let client = self.vault.pool().get().await?;
        client
            .execute(
                "UPDATE export_jobs SET status = 'running' WHERE id = $1",
                &[&id],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn set_progress(&self, id: Uuid, done: i64, total: i64) -> VaultResult<()> {
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
    pub(super) async fn record_success(
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

    pub(super) async fn record_failure(
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
pub(super) async fn queue_manifest_anchor(
    client: &impl GenericClient,
    digest: &[u8; 32],
) -> VaultResult<i64> {
    let entry = Entry::ExportManifest {
        manifest_hash: Hash32(*digest),
    };
    Ok(outbox::queue(client, &entry).await?)
}
