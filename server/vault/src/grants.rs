//! A patient's grants (the consent registry, checked by the policy): access for doctors (read,
//! write) and research consent for recipient organizations (research). A new grant to a grantee
//! replaces the previous one, so each grantee has at most one live grant per patient.

use crate::auth::Actor;
use crate::consent::tree::TreeChange;
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

    /// Its scopes as the stored bit mask.
    pub(crate) fn scope_mask(&self) -> i32 {
        AccessScope::mask(&self.scopes)
    }
}

const GRANT_COLUMNS: &str =
    "id, patient_id, grantee_id, grantee_organization_id, scope, expires_at, \
                             created_at, revoked_at";

/// [`GRANT_COLUMNS`] of a query whose grants table is `g`.
pub(crate) const GRANT_COLUMNS_OF_G: &str =
    "g.id, g.patient_id, g.grantee_id, g.grantee_organization_id, g.scope, g.expires_at, \
     g.created_at, g.revoked_at";

fn grant_from_row(row: &Row) -> Grant {
    grant_from_row_at(row, 0)
}

/// The grant in the columns of `row` from `first` on, in the order of [`GRANT_COLUMNS`].
pub(crate) fn grant_from_row_at(row: &Row, first: usize) -> Grant {
    Grant {
        id: row.get(first),
        patient_id: row.get(first + 1),
        grantee_id: row.get(first + 2),
        grantee_organization_id: row.get(first + 3),
        scopes: AccessScope::from_mask(row.get(first + 4)),
        expires_at: row.get(first + 5),
        created_at: row.get(first + 6),
        revoked_at: row.get(first + 7),
    }
}

/// Checks that an expiry is in the future and within [`MAX_GRANT_DAYS`], and returns it in
/// whole seconds: the consent leaf commits to the expiry in seconds, and the grant row must
/// lapse at the very second the leaf says.
fn checked_expiry(expires_at: DateTime<Utc>) -> VaultResult<DateTime<Utc>> {
    let now = Utc::now();
    let whole_seconds = DateTime::from_timestamp(expires_at.timestamp(), 0).unwrap_or(expires_at);
    if whole_seconds <= now || whole_seconds > now + chrono::Duration::days(MAX_GRANT_DAYS) {
        return Err(VaultError::InvalidInput(
            "expiresAt must be in the future and within 5 years".into(),
        ));
    }
    Ok(whole_seconds)
}

/// Who a grant goes to.
#[derive(Clone, Copy)]
enum Grantee {
    /// A doctor, for read and write access.
    Doctor(Uuid),
    /// A recipient organization, for research consent.
    Organization(Uuid),
}

impl Grantee {
    fn id(self) -> Uuid {
        match self {
            Grantee::Doctor(id) | Grantee::Organization(id) => id,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a stored grant names no grantee")]
struct GrantWithoutGrantee;

/// Ends, at once, the consent sessions opened under `grants`.
pub(crate) async fn end_consent_sessions(
    transaction: &deadpool_postgres::Transaction<'_>,
    grants: &[Uuid],
) -> VaultResult<()> {
    transaction
        .execute(
            "UPDATE consent_sessions SET ended_at = now()
             WHERE grant_id = ANY($1) AND ended_at IS NULL",
            &[&grants],
        )
        .await?;
    Ok(())
}

impl Vault {
    /// Revokes the patient's live grant to `grantee`, if any, and inserts the new one, inside
    /// the caller's transaction, with the consent tree changed to match: each grantee has at
    /// most one live grant per patient, and one live leaf.
    async fn replace_grant(
        &self,
        transaction: &deadpool_postgres::Transaction<'_>,
        patient: &Actor,
        grantee: Grantee,
        grantee_commitment: medvault_circuits::Fr,
        scope: i32,
        expires_at: DateTime<Utc>,
    ) -> VaultResult<Grant> {
        let (doctor, organization) = match grantee {
            Grantee::Doctor(doctor) => (Some(doctor), None),
            Grantee::Organization(organization) => (None, Some(organization)),
        };
        let replaced: Vec<Uuid> = transaction
            .query(
                "UPDATE grants SET revoked_at = now()
                 WHERE patient_id = $1 AND revoked_at IS NULL
                   AND (grantee_id = $2 OR grantee_organization_id = $3)
                 RETURNING id",
                &[&patient.user_id, &doctor, &organization],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        end_consent_sessions(transaction, &replaced).await?;
        let grant = insert_grant(
            transaction,
            patient.user_id,
            doctor,
            organization,
            scope,
            expires_at,
        )
        .await?;
        self.consent
            .trees
            .apply(
                transaction,
                &self.master,
                patient.organization_id,
                TreeChange {
                    revoked_grants: replaced,
                    added: vec![(grant.clone(), grantee_commitment)],
                    grantee: grantee.id(),
                    patient: Some(patient.user_id),
                },
            )
            .await?;
        Ok(grant)
    }
}

/// Inserts one grant row.
async fn insert_grant(
    transaction: &deadpool_postgres::Transaction<'_>,
    patient: Uuid,
    doctor: Option<Uuid>,
    organization: Option<Uuid>,
    scope: i32,
    expires_at: DateTime<Utc>,
) -> VaultResult<Grant> {
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
        let expires_at = checked_expiry(expires_at)?;
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let doctor_key = transaction
            .query_opt(
                "SELECT k.commitment FROM users u LEFT JOIN grantee_keys k ON k.user_id = u.id
                 WHERE u.id = $1 AND u.role = 'doctor'",
                &[&doctor],
            )
            .await?
            .ok_or(VaultError::NotFound("doctor"))?;
        let commitment: Option<Vec<u8>> = doctor_key.get(0);
        let commitment = commitment.ok_or_else(|| {
            VaultError::InvalidInput(
                "this doctor has not registered a grantee key yet, so no consent proof could \
                 open the grant; the doctor runs `medvault doctor keygen` and `medvault doctor \
                 register` first"
                    .into(),
            )
        })?;
        let commitment =
            medvault_circuits::field::field_from_bytes("grantee commitment", &commitment)
                .map_err(VaultError::internal)?;
        let grant = self
            .replace_grant(
                &transaction,
                patient,
                Grantee::Doctor(doctor),
                commitment,
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
        let expires_at = checked_expiry(expires_at)?;
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
        let grant = self
            .replace_grant(
                &transaction,
                patient,
                Grantee::Organization(organization),
                self.master.recipient_grantee_commitment(organization),
                AccessScope::Research.bit(),
                expires_at,
            )
            .await?;
        transaction.commit().await?;
        Ok(grant)
    }

    /// The patient revokes one of their own grants: its leaf is zeroed and the consent
    /// sessions it opened end, at once. Revoking a revoked grant changes nothing.
    pub async fn revoke_access(&self, patient: &Actor, grant: Uuid) -> VaultResult<Grant> {
        require_role(patient, Role::Patient)?;
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        let row = transaction
            .query_opt(
                &format!(
                    "SELECT {GRANT_COLUMNS} FROM grants WHERE id = $1 AND patient_id = $2
                     FOR UPDATE"
                ),
                &[&grant, &patient.user_id],
            )
            .await?
            .ok_or(VaultError::NotFound("grant"))?;
        let existing = grant_from_row(&row);
        if existing.revoked_at.is_some() {
            return Ok(existing);
        }
        let row = transaction
            .query_one(
                &format!(
                    "UPDATE grants SET revoked_at = now() WHERE id = $1 RETURNING {GRANT_COLUMNS}"
                ),
                &[&grant],
            )
            .await?;
        let revoked = grant_from_row(&row);
        end_consent_sessions(&transaction, &[grant]).await?;
        let grantee = revoked
            .grantee_id
            .or(revoked.grantee_organization_id)
            .ok_or_else(|| VaultError::internal(GrantWithoutGrantee))?;
        self.consent
            .trees
            .apply(
                &transaction,
                &self.master,
                patient.organization_id,
                TreeChange {
                    revoked_grants: vec![grant],
                    added: Vec::new(),
                    grantee,
                    patient: Some(patient.user_id),
                },
            )
            .await?;
        transaction.commit().await?;
        Ok(revoked)
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
