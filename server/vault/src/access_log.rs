//! Reading the access log. Entries are appended by the policy only.

use crate::domain::Role;
use crate::error::{VaultError, VaultResult};
use crate::policy::{AuditedAction, Permit};
use crate::{Page, PageRequest, Vault};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// One logged decision about a patient's data.
#[derive(Clone, Debug)]
pub struct AccessLogEntry {
    /// Its position in the log.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who asked.
    pub actor_id: Uuid,
    /// In what role.
    pub actor_role: Role,
    /// What they asked to do.
    pub action: String,
    /// The record concerned, if one.
    pub record_id: Option<Uuid>,
    /// Whether it was allowed.
    pub allowed: bool,
    /// Why it was refused.
    pub reason: Option<String>,
}

impl Vault {
    /// The access log of the permit's patient, oldest first.
    pub async fn access_log(
        &self,
        permit: &Permit,
        page: PageRequest<i64>,
    ) -> VaultResult<Page<AccessLogEntry>> {
        if permit.action() != AuditedAction::ReadAccessLog {
            return Err(VaultError::Forbidden);
        }
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &client.prepare_cached("SELECT id, at, actor_id, actor_role, action, record_id, outcome, reason FROM access_log
                 WHERE patient_id = $1 AND ($2::bigint IS NULL OR id > $2) ORDER BY id LIMIT $3").await?,
                &[&permit.patient(), &page.after, &(page.first + 1)],
            )
            .await?;
        let items = rows
            .iter()
            .map(|row| {
                let role: &str = row.get(3);
                let outcome: &str = row.get(6);
                Ok(AccessLogEntry {
                    id: row.get(0),
                    at: row.get(1),
                    actor_id: row.get(2),
                    actor_role: Role::parse(role).ok_or(VaultError::NotFound("role"))?,
                    action: row.get(4),
                    record_id: row.get(5),
                    allowed: outcome == "allowed",
                    reason: row.get(7),
                })
            })
            .collect::<VaultResult<_>>()?;
        Ok(Page::from_overfetched(items, page.first))
    }
}
