//! Export ceilings: each hospital's admins set, per recipient role, the least anonymization
//! under which that hospital's patients may be exported.

use super::{bad_input, CorruptJob, Exports};
use crate::auth::Actor;
use crate::domain::Role;
use crate::error::{VaultError, VaultResult};
use crate::policy::{self, ExportRecipient};
use chrono::{DateTime, Utc};
use medvault_exporter::ExportCeiling;
use uuid::Uuid;

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

impl Exports {
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

    /// One hospital's ceiling for `role`, if it set one, as [`policy::ceiling_hospital`] lets
    /// `actor` read it.
    pub async fn ceiling(
        &self,
        actor: &Actor,
        role: Role,
        hospital: Option<Uuid>,
    ) -> VaultResult<Option<StoredCeiling>> {
        let hospital = policy::ceiling_hospital(actor, role, hospital)?;
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
}
