//! A patient's grants (the consent registry, checked by the policy): access for doctors (read,
//! write) and research consent for recipient organizations (research). A new grant to a grantee
//! replaces the previous one, so each grantee has at most one live grant per patient.

use crate::auth::Actor;
use crate::domain::{AccessScope, OrganizationKind, Role};
use crate::error::{VaultError, VaultResult};
use crate::policy::require_role;
use crate::{Page, PageRequest, Vault};
use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

/// The longest a grant may run.
const MAX_GRANT_DAYS: i64 = 5 * 366;

/// One grant, live or not.
#[derive(Clone, Debug)]
pub struct Grant {
    /// Its id.
    pub id: Uuid,
    /// The granting patient.
    pub patient_id: Uuid,
    /// The doctor granted, for access grants.
    pub grantee_id: Option<Uuid>,
    /// The recipient organization granted, for research consent.
    pub grantee_organization_id: Option<Uuid>,
    /// What it allows.
    pub scopes: Vec<AccessScope>,
    /// When it lapses.
    pub expires_at: DateTime<Utc>,
    /// When it was given.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Grant {
    /// Whether it still allows access now.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

const GRANT_COLUMNS: &str =
    "id, patient_id, grantee_id, grantee_organization_id, scope, expires_at, \
                             created_at, revoked_at";

fn grant_from_row(row: &Row) -> Grant {
    Grant {
        id: row.get(0),
        patient_id: row.get(1),
        grantee_id: row.get(2),
        grantee_organization_id: row.get(3),
        scopes: AccessScope::from_mask(row.get(4)),
        expires_at: row.get(5),
        created_at: row.get(6),
        revoked_at: row.get(7),
    }
}

fn check_expiry(expires_at: DateTime<Utc>) -> VaultResult<()> {
    let now = Utc::now();
    if expires_at <= now || expires_at > now + chrono::Duration::days(MAX_GRANT_DAYS) {
        return Err(VaultError::InvalidInput(
            "expiresAt must be in the future and within 5 years".into(),
        ));
    }
    Ok(())
}

/// Who a grant goes to.
#[derive(Clone, Copy)]
enum Grantee {
    /// A doctor, for read and write access.
    Doctor(Uuid),
    /// A recipient organization, for research consent.
    Organization(Uuid),
}

/// Revokes the patient's live grant to `grantee`, if any, and inserts the new one, inside the
/// caller's transaction: each grantee has at most one live grant per patient.
async fn replace_grant(
    transaction: &tokio_postgres::Transaction<'_>,
    patient: Uuid,
    grantee: Grantee,
    scope: i32,
    expires_at: DateTime<Utc>,
) -> VaultResult<Grant> {
    let (doctor, organization) = match grantee {
        Grantee::Doctor(doctor) => (Some(doctor), None),
        Grantee::Organization(organization) => (None, Some(organization)),
    };
    transaction
        .execute(
            "UPDATE grants SET revoked_at = now()
             WHERE patient_id = $1 AND revoked_at IS NULL
               AND (grantee_id = $2 OR grantee_organization_id = $3)",
            &[&patient, &doctor, &organization],
        )
        .await?;
    let row = transaction
        .query_one(
            &format!(
                "INSERT INTO grants
                   (id, patient_id, grantee_id, grantee_organization_id, scope, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING {GRANT_COLUMNS}"
            ),
            &[
                &Uuid::now_v7(),
                &patient,
                &doctor,
                &organization,
                &scope,
                &expires_at,
            ],
        )
        .await?;
    Ok(grant_from_row(&row))
}

impl Vault {
    /// The patient grants a doctor `scopes` until `expires_at`, replacing any live grant to that
    /// doctor.
    pub async fn grant_access(
        &self,
        patient: &Actor,
        doctor: Uuid,
        scopes: &[AccessScope],
        expires_at: DateTime<Utc>,
    ) -> VaultResult<Grant> {
        require_role(patient, Role::Patient)?;
        if scopes.is_empty() {
            return Err(VaultError::InvalidInput("give at least one scope".into()));
        }
        if scopes.contains(&AccessScope::Research) {
            return Err(VaultError::InvalidInput(
                "research consent goes to an organization: use grantResearchConsent".into(),
            ));
        }
        check_expiry(expires_at)?;
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let is_doctor = transaction
            .query_opt(
                "SELECT 1 FROM users WHERE id = $1 AND role = 'doctor'",
                &[&doctor],
            )
            .await?
            .is_some();
        if !is_doctor {
            return Err(VaultError::NotFound("doctor"));
        }
        let grant = replace_grant(
            &transaction,
            patient.user_id,
            Grantee::Doctor(doctor),
            AccessScope::mask(scopes),
            expires_at,
        )
        .await?;
        transaction.commit().await?;
        Ok(grant)
    }

    /// The patient consents, until `expires_at`, to being included in anonymized exports to a
    /// recipient organization (insurer, research institute or agency), replacing any live
    /// consent to it. Withdrawing is revoking the grant: later exports leave the patient out.
    pub async fn grant_research_consent(
        &self,
        patient: &Actor,
        organization: Uuid,
        expires_at: DateTime<Utc>,
    ) -> VaultResult<Grant> {
        require_role(patient, Role::Patient)?;
        check_expiry(expires_at)?;
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let kind: Option<String> = transaction
            .query_opt(
                "SELECT kind FROM organizations WHERE id = $1",
                &[&organization],
            )
            .await?
            .map(|row| row.get(0));
        match kind.as_deref().and_then(OrganizationKind::parse) {
            None => return Err(VaultError::NotFound("organization")),
            Some(OrganizationKind::Hospital) => {
                return Err(VaultError::InvalidInput(
                    "research consent goes to an insurer, research or government organization"
                        .into(),
                ))
            }
            Some(_) => {}
        }
        let grant = replace_grant(
            &transaction,
            patient.user_id,
            Grantee::Organization(organization),
            AccessScope::Research.bit(),
            expires_at,
        )
        .await?;
        transaction.commit().await?;
        Ok(grant)
    }

    /// The patient revokes one of their own grants; it stops working at once.
    pub async fn revoke_access(&self, patient: &Actor, grant: Uuid) -> VaultResult<Grant> {
        require_role(patient, Role::Patient)?;
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(&format!(
                        "UPDATE grants SET revoked_at = COALESCE(revoked_at, now())
                     WHERE id = $1 AND patient_id = $2 RETURNING {GRANT_COLUMNS}"
                    ))
                    .await?,
                &[&grant, &patient.user_id],
            )
            .await?
            .ok_or(VaultError::NotFound("grant"))?;
        Ok(grant_from_row(&row))
    }

    /// The patient's grants, revoked and expired ones included, by id.
    pub async fn grants_of_patient(
        &self,
        patient: &Actor,
        page: PageRequest<Uuid>,
    ) -> VaultResult<Page<Grant>> {
        require_role(patient, Role::Patient)?;
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(&format!(
                        "SELECT {GRANT_COLUMNS} FROM grants WHERE patient_id = $1
                     AND ($2::uuid IS NULL OR id > $2) ORDER BY id LIMIT $3"
                    ))
                    .await?,
                &[&patient.user_id, &page.after, &(page.first + 1)],
            )
            .await?;
        Ok(Page::from_overfetched(
            rows.iter().map(grant_from_row).collect(),
            page.first,
        ))
    }
}
