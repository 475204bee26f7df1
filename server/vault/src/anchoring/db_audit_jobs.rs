//! `audit db` for the auditor role over the API, as a background job: the same check as the
//! command line ([`super::db_audit`]), run by a server against the chain it anchors on.
//!
//! A job has the access log sealed, reads the database in one read-only snapshot taken then,
//! has everything in that snapshot anchored and its blocks final (so that what a running server
//! has just written is not reported as unanchored), then audits the chain's blocks from the genesis the
//! database anchored on and checks the snapshot against them. One job runs at a time; its
//! report (ids and counts, never health data) is kept with it.

use super::db_audit::{audit_database, DbAuditError, DbAuditReport};
use super::{AnchoringError, AnchoringWorker};
use crate::auth::Actor;
use crate::domain::Role;
use crate::error::{Causes, VaultError, VaultResult};
use crate::policy::require_role;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use medvault_anchor_chain::bytes::Hash32;
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::IsolationLevel;
use uuid::Uuid;

/// How often a running job's heartbeat is written.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long a running job's heartbeat may be silent before the job counts as abandoned.
const ABANDONED_AFTER_SECONDS: f64 = 30.0;
/// How long a job waits for the blocks holding its snapshot's entries to become final.
const FINALITY_PATIENCE: Duration = Duration::from_secs(60);

/// Where a database audit is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditJobStatus {
    /// Anchoring, waiting for finality, or checking.
    Running,
    /// Done: the report says what was found (problems or none).
    Succeeded,
    /// The audit could not be carried out; `failure` says why.
    Failed,
}

/// A database audit an auditor asked for.
#[derive(Clone, Debug)]
pub struct DatabaseAuditJob {
    /// The job.
    pub id: Uuid,
    /// Where it is.
    pub status: AuditJobStatus,
    /// When it was asked for.
    pub created_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed.
    pub failure: Option<String>,
    /// What it found, once it succeeded.
    pub report: Option<DbAuditReport>,
}

/// Why an audit could not be carried out.
#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Anchoring(#[from] AnchoringError),
    #[error(transparent)]
    Audit(#[from] DbAuditError),
    #[error("the chain's blocks did not become final within {0:?}")]
    NotFinal(Duration),
}

impl From<tokio_postgres::Error> for JobError {
    fn from(error: tokio_postgres::Error) -> Self {
        JobError::Vault(error.into())
    }
}

impl From<deadpool_postgres::PoolError> for JobError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        JobError::Vault(error.into())
    }
}

/// The database audits of this server's database, run against the chain its worker anchors on.
#[derive(Clone)]
pub struct DatabaseAudits {
    pool: Pool,
    /// `None` for a process that anchors on no chain: it has nothing to audit against.
    worker: Option<AnchoringWorker>,
}

const JOB_COLUMNS: &str = "id, status, created_at, finished_at, failure, report";

fn job_from_row(row: &tokio_postgres::Row) -> VaultResult<DatabaseAuditJob> {
    let status = match row.get::<_, &str>(1) {
        "running" => AuditJobStatus::Running,
        "succeeded" => AuditJobStatus::Succeeded,
        _ => AuditJobStatus::Failed,
    };
    let report = row
        .get::<_, Option<serde_json::Value>>(5)
        .map(serde_json::from_value)
        .transpose()
        .map_err(VaultError::internal)?;
    Ok(DatabaseAuditJob {
        id: row.get(0),
        status,
        created_at: row.get(2),
        finished_at: row.get(3),
        failure: row.get(4),
        report,
    })
}

impl DatabaseAudits {
    /// Audits over `pool`'s database, against the chain `worker` anchors on.
    pub(crate) fn new(pool: Pool, worker: Option<AnchoringWorker>) -> Self {
        DatabaseAudits { pool, worker }
    }

    /// An auditor starts an audit of the database against the chain; it runs in the
    /// background. Refused as a conflict while another audit runs.
    pub async fn request(&self, auditor: &Actor) -> VaultResult<DatabaseAuditJob> {
        require_role(auditor, Role::Auditor)?;
        let Some(worker) = self.worker.clone() else {
            return Err(VaultError::InvalidInput(
                "this server anchors on no chain, so it has none to audit the database against"
                    .into(),
            ));
        };
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE database_audits SET status = 'failed', finished_at = now(),
                        failure = 'abandoned: the server running it stopped'
                 WHERE status = 'running'
                   AND heartbeat_at < now() - make_interval(secs => $1)",
                &[&ABANDONED_AFTER_SECONDS],
            )
            .await?;
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO database_audits (id, requested_by, status)
                     VALUES ($1, $2, 'running') RETURNING {JOB_COLUMNS}"
                ),
                &[&Uuid::now_v7(), &auditor.user_id],
            )
            .await
            .map_err(|error| {
                if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                    VaultError::Conflict("a database audit is already running".into())
                } else {
                    error.into()
                }
            })?;
        let job = job_from_row(&row)?;
        tokio::spawn(self.clone().run(job.id, worker));
        Ok(job)
    }

    /// An audit, for an auditor.
    pub async fn job(&self, auditor: &Actor, id: Uuid) -> VaultResult<DatabaseAuditJob> {
        require_role(auditor, Role::Auditor)?;
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!("SELECT {JOB_COLUMNS} FROM database_audits WHERE id = $1"),
                &[&id],
            )
            .await?
            .ok_or(VaultError::NotFound("database audit"))?;
        let mut job = job_from_row(&row)?;
        if job.status == AuditJobStatus::Running && self.abandoned(id).await? {
            job.status = AuditJobStatus::Failed;
            job.failure = Some("abandoned: the server running it stopped".into());
        }
        Ok(job)
    }

    async fn abandoned(&self, id: Uuid) -> VaultResult<bool> {
        let client = self.pool.get().await?;
        Ok(client
            .query_one(
                "SELECT heartbeat_at < now() - make_interval(secs => $2)
                 FROM database_audits WHERE id = $1",
                &[&id, &ABANDONED_AFTER_SECONDS],
            )
            .await?
            .get(0))
    }

    /// Runs the audit and records its outcome, beating the heartbeat meanwhile.
    async fn run(self, id: Uuid, worker: AnchoringWorker) {
        let heartbeat = tokio::spawn(self.clone().beat(id));
        let outcome = self.audit_snapshot(&worker).await;
        heartbeat.abort();
        let recorded = match outcome {
            Ok(report) => self.record(id, Some(&report), None).await,
            Err(error) => {
                tracing::warn!(job = %id, error = %Causes(&error), "database audit failed");
                self.record(id, None, Some(&failure_message(&error))).await
            }
        };
        if let Err(error) = recorded {
            tracing::error!(job = %id, error = %Causes(&error), "could not record the database audit");
        }
    }

    async fn beat(self, id: Uuid) {
        loop {
            tokio::time::sleep(HEARTBEAT).await;
            let beaten = async {
                let client = self.pool.get().await?;
                client
                    .execute(
                        "UPDATE database_audits SET heartbeat_at = now() WHERE id = $1",
                        &[&id],
                    )
                    .await?;
                Ok::<_, VaultError>(())
            };
            if let Err(error) = beaten.await {
                tracing::warn!(job = %id, error = %Causes(&error), "heartbeat not recorded");
            }
        }
    }

    async fn record(
        &self,
        id: Uuid,
        report: Option<&DbAuditReport>,
        failure: Option<&str>,
    ) -> VaultResult<()> {
        let report = report
            .map(serde_json::to_value)
            .transpose()
            .map_err(VaultError::internal)?;
        let status = if report.is_some() {
            "succeeded"
        } else {
            "failed"
        };
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE database_audits
                 SET status = $2, report = $3, failure = $4, finished_at = now()
                 WHERE id = $1",
                &[&id, &status, &report, &failure],
            )
            .await?;
        Ok(())
    }

    /// Seals the access log, takes a snapshot, has everything in it anchored and final, and
    /// checks it against the audited chain.
    async fn audit_snapshot(&self, worker: &AnchoringWorker) -> Result<DbAuditReport, JobError> {
        // Sealed before the snapshot, so that the lines logged until now are checked.
        worker.wait_until_anchored().await?;
        let mut client = self.pool.get().await?;
        let snapshot = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        // The snapshot is taken at the first statement: this one.
        let recorded_chain: Option<Vec<u8>> = snapshot
            .query_opt("SELECT chain_id FROM anchor_chain", &[])
            .await?
            .map(|row| row.get(0));
        // Everything the snapshot holds was queued before this call.
        worker.wait_until_anchored().await?;
        let chain = worker.chain();
        let head = chain.head().await?;
        let trusted = match recorded_chain {
            Some(bytes) => Hash32(bytes.try_into().map_err(|_| {
                VaultError::internal(DbAuditError::Unreadable("anchor_chain.chain_id".into()))
            })?),
            None => head.chain_id,
        };
        let deadline = tokio::time::Instant::now() + FINALITY_PATIENCE;
        while chain.head().await?.final_height < Some(head.height) {
            if tokio::time::Instant::now() > deadline {
                return Err(JobError::NotFinal(FINALITY_PATIENCE));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let audited = chain.audited(trusted).await?;
        let report =
            audit_database(&snapshot, |entry_hash| audited.final_height_of(entry_hash)).await?;
        snapshot.rollback().await?;
        Ok(report)
    }
}

/// What the auditor is told of a failure: the chain's and the audit's own reasons in full (they
/// name blocks and rows, never health data), the vault's internal ones only as such.
fn failure_message(error: &JobError) -> String {
    match error {
        JobError::Vault(vault) => vault.caller_message(),
        other => Causes(other).to_string(),
    }
}
