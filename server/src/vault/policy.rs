//! Algorithm 1 of the paper, enforced here and nowhere else.
//!
//! - Only a doctor with a live write grant from the patient adds, updates or deletes records.
//! - A doctor with a live read grant, or the patient, reads.
//! - Only the patient edits their personal details or reads their access log.
//! - Everything else is refused.
//!
//! A [`Permit`] is the only way to obtain a patient's data key, and only [`Vault::authorize`]
//! makes one: code that reads or writes health data cannot skip the check. Every decision, allowed
//! or refused, is appended to the access log before it takes effect.

use super::Vault;
use crate::auth::Actor;
use crate::crypto::SymmetricKey;
use crate::domain::{AccessScope, Role};
use crate::error::{ApiError, ApiResult};
use uuid::Uuid;

/// What a health-data request does, as written to the access log.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum AuditedAction {
    ReadProfile,
    EditPersonalDetails,
    ReadRecords,
    ReadHistory,
    AddRecord,
    UpdateRecord,
    DeleteRecord,
    ReadAccessLog,
}

impl AuditedAction {
    /// The action's name in the access log.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditedAction::ReadProfile => "read_profile",
            AuditedAction::EditPersonalDetails => "edit_personal_details",
            AuditedAction::ReadRecords => "read_records",
            AuditedAction::ReadHistory => "read_history",
            AuditedAction::AddRecord => "add_record",
            AuditedAction::UpdateRecord => "update_record",
            AuditedAction::DeleteRecord => "delete_record",
            AuditedAction::ReadAccessLog => "read_access_log",
        }
    }

    /// What the action needs: `None` if only the patient may do it, else the grant scope a
    /// doctor must hold.
    fn doctor_scope(self) -> Option<AccessScope> {
        match self {
            AuditedAction::ReadProfile
            | AuditedAction::ReadRecords
            | AuditedAction::ReadHistory => Some(AccessScope::Read),
            AuditedAction::AddRecord
            | AuditedAction::UpdateRecord
            | AuditedAction::DeleteRecord => Some(AccessScope::Write),
            AuditedAction::EditPersonalDetails | AuditedAction::ReadAccessLog => None,
        }
    }

    /// Whether the patient may do this to their own data (records are written only by doctors).
    fn patient_may(self) -> bool {
        !matches!(
            self,
            AuditedAction::AddRecord | AuditedAction::UpdateRecord | AuditedAction::DeleteRecord
        )
    }
}

/// Proof that `actor` may perform one action on one patient's data, carrying that patient's
/// unwrapped data key.
pub struct Permit {
    actor: Actor,
    patient: Uuid,
    action: AuditedAction,
    data_key: SymmetricKey,
}

impl Permit {
    /// Who was allowed.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// Whose data.
    pub fn patient(&self) -> Uuid {
        self.patient
    }

    /// What was allowed.
    pub fn action(&self) -> AuditedAction {
        self.action
    }

    pub(super) fn data_key(&self) -> &SymmetricKey {
        &self.data_key
    }
}

/// Which patients a caller may list in summary form (id, name, birth year), never medical data.
#[derive(Clone, Copy, Debug)]
pub enum PatientListing {
    /// An admin sees the patients of their own hospital.
    Organization(Uuid),
    /// A doctor sees the patients who hold a live grant to them.
    GrantedTo(Uuid),
}

/// The decision of Algorithm 1 for one request, before any database effect.
fn decide(
    actor: &Actor,
    patient: Uuid,
    action: AuditedAction,
    granted_mask: i32,
) -> Result<(), &'static str> {
    match actor.role {
        Role::Patient if actor.user_id == patient && action.patient_may() => Ok(()),
        Role::Patient if actor.user_id == patient => Err("patients do not write medical records"),
        Role::Patient => Err("not the patient's own data"),
        Role::Doctor => match action.doctor_scope() {
            Some(scope) if granted_mask & scope.bit() != 0 => Ok(()),
            Some(_) => Err("no live grant with the required scope"),
            None => Err("only the patient may do this"),
        },
        _ => Err("role may not access health data"),
    }
}

impl Vault {
    /// Decides whether `actor` may perform `action` on `patient`'s data, logs the decision, and
    /// on success returns the permit holding the patient's data key. Refusals are FORBIDDEN,
    /// whether or not the patient exists, so that ids cannot be probed.
    pub async fn authorize(
        &self,
        actor: &Actor,
        patient: Uuid,
        action: AuditedAction,
        record: Option<Uuid>,
    ) -> ApiResult<Permit> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(
                        "SELECT k.wrapped_key,
                        COALESCE((SELECT bit_or(g.scope) FROM grants g
                                  WHERE g.patient_id = k.patient_id AND g.grantee_id = $2
                                    AND g.revoked_at IS NULL AND g.expires_at > now()), 0)
                 FROM patient_keys k WHERE k.patient_id = $1",
                    )
                    .await?,
                &[&patient, &actor.user_id],
            )
            .await?;
        let (wrapped_key, granted_mask): (Option<Vec<u8>>, i32) = match row {
            Some(row) => (Some(row.get(0)), row.get(1)),
            None => (None, 0),
        };
        let decision = match wrapped_key {
            Some(_) => decide(actor, patient, action, granted_mask),
            None => Err("no such patient"),
        };
        drop(client);
        self.log_access(actor, patient, action, record, decision)
            .await?;
        match (decision, wrapped_key) {
            (Ok(()), Some(wrapped_key)) => Ok(Permit {
                actor: *actor,
                patient,
                action,
                data_key: self.master.unwrap_patient_key(patient, &wrapped_key)?,
            }),
            _ => Err(ApiError::Forbidden),
        }
    }

    /// Logs a refusal found after a permit was given (the record named belongs to another
    /// patient) and returns the FORBIDDEN to answer with.
    pub(super) async fn refuse(
        &self,
        permit: &Permit,
        record: Option<Uuid>,
        reason: &'static str,
    ) -> ApiError {
        let logged = self
            .log_access(
                &permit.actor,
                permit.patient,
                permit.action,
                record,
                Err(reason),
            )
            .await;
        match logged {
            Ok(()) => ApiError::Forbidden,
            Err(error) => error,
        }
    }

    async fn log_access(
        &self,
        actor: &Actor,
        patient: Uuid,
        action: AuditedAction,
        record: Option<Uuid>,
        decision: Result<(), &'static str>,
    ) -> ApiResult<()> {
        let (outcome, reason) = match decision {
            Ok(()) => ("allowed", None),
            Err(reason) => ("denied", Some(reason)),
        };
        let client = self.pool.get().await?;
        client
            .execute(
                &client.prepare_cached("INSERT INTO access_log (actor_id, actor_role, action, patient_id, record_id, outcome, reason)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)").await?,
                &[
                    &actor.user_id,
                    &actor.role.as_str(),
                    &action.as_str(),
                    &patient,
                    &record,
                    &outcome,
                    &reason,
                ],
            )
            .await?;
        Ok(())
    }

    /// Which patients `actor` may list in summary form.
    pub fn patient_listing(&self, actor: &Actor) -> ApiResult<PatientListing> {
        match actor.role {
            Role::Admin => Ok(PatientListing::Organization(actor.organization_id)),
            Role::Doctor => Ok(PatientListing::GrantedTo(actor.user_id)),
            _ => Err(ApiError::Forbidden),
        }
    }
}

/// Refuses unless `actor` has `role`: for operations that touch no health data.
pub fn require_role(actor: &Actor, role: Role) -> ApiResult<()> {
    if actor.role == role {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(role: Role) -> Actor {
        Actor {
            user_id: Uuid::from_u128(1),
            role,
            organization_id: Uuid::from_u128(9),
        }
    }

    const ALL_ACTIONS: [AuditedAction; 8] = [
        AuditedAction::ReadProfile,
        AuditedAction::EditPersonalDetails,
        AuditedAction::ReadRecords,
        AuditedAction::ReadHistory,
        AuditedAction::AddRecord,
        AuditedAction::UpdateRecord,
        AuditedAction::DeleteRecord,
        AuditedAction::ReadAccessLog,
    ];

    #[test]
    fn only_doctors_with_write_grants_write_records() {
        let write_actions = [
            AuditedAction::AddRecord,
            AuditedAction::UpdateRecord,
            AuditedAction::DeleteRecord,
        ];
        for action in write_actions {
            let doctor = actor(Role::Doctor);
            assert!(decide(&doctor, Uuid::from_u128(2), action, 2).is_ok());
            assert!(decide(&doctor, Uuid::from_u128(2), action, 1).is_err());
            assert!(decide(&actor(Role::Patient), Uuid::from_u128(1), action, 3).is_err());
        }
    }

    #[test]
    fn staff_without_care_roles_are_refused_everything() {
        for role in [
            Role::Admin,
            Role::Insurer,
            Role::Researcher,
            Role::Government,
            Role::Auditor,
        ] {
            for action in ALL_ACTIONS {
                assert!(
                    decide(&actor(role), Uuid::from_u128(1), action, 3).is_err(),
                    "{role:?} {action:?}"
                );
            }
        }
    }

    #[test]
    fn a_patient_reaches_only_their_own_data() {
        let patient = actor(Role::Patient);
        for action in ALL_ACTIONS.into_iter().filter(|a| a.patient_may()) {
            assert!(decide(&patient, Uuid::from_u128(1), action, 0).is_ok());
            assert!(decide(&patient, Uuid::from_u128(2), action, 3).is_err());
        }
    }

    #[test]
    fn doctors_never_edit_personal_details_or_read_access_logs() {
        for action in [
            AuditedAction::EditPersonalDetails,
            AuditedAction::ReadAccessLog,
        ] {
            assert!(decide(&actor(Role::Doctor), Uuid::from_u128(2), action, 3).is_err());
        }
    }
}
