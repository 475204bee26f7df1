//! Algorithm 1 of the paper, enforced here and nowhere else.
//!
//! - Only a doctor with a live write grant from the patient adds, updates or deletes records.
//! - A doctor with a live read grant, or the patient, reads.
//! - Only the patient edits their personal details or reads their access log.
//! - An insurer, researcher or agency exports, anonymized, the data of patients whose live
//!   research consent names their organization, each patient under the export ceiling their own
//!   hospital set for the recipient's role: a policy above one hospital's ceiling is refused
//!   whole, and a hospital that set no ceiling for the role contributes no patients.
//! - Everything else is refused.
//!
//! A [`Permit`] is the only way to obtain a patient's data key, and only [`Vault::authorize`]
//! makes one: code that reads or writes health data cannot skip the check. Every decision, allowed
//! or refused, is appended to the access log before it takes effect.

use crate::auth::{Actor, Operator};
use crate::crypto::SymmetricKey;
use crate::domain::{AccessScope, OrganizationKind, Role};
use crate::error::{VaultError, VaultResult};
use crate::Vault;
use deadpool_postgres::GenericClient;
use medvault_exporter::{ExportCeiling, ExportError, ExportPolicy};
use serde::{Deserialize, Serialize};
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
    ExportForResearch,
    OpenConsent,
    ErasePatient,
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
            AuditedAction::ExportForResearch => "export_for_research",
            AuditedAction::OpenConsent => "open_consent",
            AuditedAction::ErasePatient => "erase_patient",
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
            AuditedAction::EditPersonalDetails
            | AuditedAction::ReadAccessLog
            | AuditedAction::ExportForResearch
            | AuditedAction::OpenConsent
            | AuditedAction::ErasePatient => None,
        }
    }

    /// Whether the patient may do this to their own data (records are written only by doctors,
    /// exports made only for recipients).
    fn patient_may(self) -> bool {
        !matches!(
            self,
            AuditedAction::AddRecord
                | AuditedAction::UpdateRecord
                | AuditedAction::DeleteRecord
                | AuditedAction::ExportForResearch
                | AuditedAction::OpenConsent
                | AuditedAction::ErasePatient
        )
    }
}

/// Proof that `actor` may perform one action on one patient's data, carrying that patient's
/// unwrapped data key.
pub struct Permit {
    actor: Actor,
    patient: Uuid,
    action: AuditedAction,
    consent_session: Option<Uuid>,
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

    /// The consent session a doctor's permit was given under.
    pub fn consent_session(&self) -> Option<Uuid> {
        self.consent_session
    }

    pub(super) fn data_key(&self) -> &SymmetricKey {
        &self.data_key
    }
}

/// An insurer, researcher or agency: the only callers anonymized exports are made for, and who
/// see export jobs and their role's ceilings. [`ExportRecipient::admit`] is the one place that is
/// decided; everything behind it takes the admitted recipient.
#[derive(Clone, Copy, Debug)]
pub struct ExportRecipient(Actor);

impl ExportRecipient {
    /// `actor` as an export recipient; FORBIDDEN for any other role.
    pub fn admit(actor: &Actor) -> VaultResult<ExportRecipient> {
        match actor.role.recipient_kind() {
            Some(_) => Ok(ExportRecipient(*actor)),
            None => Err(VaultError::Forbidden),
        }
    }

    /// The recipient's account.
    pub fn actor(&self) -> &Actor {
        &self.0
    }

    /// Whether something of `organization` (an export job) is the recipient's to see.
    pub fn owns(&self, organization: Uuid) -> bool {
        self.0.organization_id == organization
    }
}

/// The patients an export may include, and the root committing to the consents that let it.
pub(super) struct ResearchCohort {
    /// One export permit per consenting patient, by patient id.
    pub permits: Vec<Permit>,
    /// RFC 9162-shaped SHA3-256 Merkle root over the research consents used, one leaf each.
    pub consent_root: [u8; 32],
    /// The hospitals the consents came from, each with the ceiling its patients go out under.
    pub hospitals: Vec<HospitalCeiling>,
}

/// One hospital some of whose patients gave a recipient's organization live research consent,
/// and the export ceiling that hospital's admins set for the recipient's role. Its patients are
/// exported only under this ceiling, never under another hospital's; with none, they are left
/// out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HospitalCeiling {
    /// The hospital.
    pub hospital: Uuid,
    /// Its name, for messages that tell the recipient whose rules a policy breaks.
    pub hospital_name: String,
    /// The ceiling it set for the role, if any.
    pub ceiling: Option<ExportCeiling>,
}

/// The hospitals whose patients gave `recipient`'s organization live research consent, by name,
/// with the ceilings they set for `recipient`'s role; read through `client`, so that inside an
/// export's snapshot the ceilings are those of the same state as the cohort.
async fn consenting_hospitals(
    client: &tokio_postgres::Client,
    recipient: &Actor,
) -> VaultResult<Vec<HospitalCeiling>> {
    let rows = client
        .query(
            "SELECT o.id, o.name, c.ceiling
             FROM organizations o
             LEFT JOIN export_ceilings c ON c.organization_id = o.id AND c.role = $2
             WHERE o.kind = 'hospital' AND EXISTS (
                 SELECT 1 FROM grants g
                 JOIN users p ON p.id = g.patient_id
                 JOIN patient_keys k ON k.patient_id = g.patient_id
                 WHERE p.organization_id = o.id AND g.grantee_organization_id = $1
                   AND g.revoked_at IS NULL AND g.expires_at > now())
             ORDER BY o.name",
            &[&recipient.organization_id, &recipient.role.as_str()],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let ceiling: Option<serde_json::Value> = row.get(2);
            Ok(HospitalCeiling {
                hospital: row.get(0),
                hospital_name: row.get(1),
                ceiling: ceiling
                    .map(serde_json::from_value)
                    .transpose()
                    .map_err(|_| VaultError::internal(UnreadableCeiling))?,
            })
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
#[error("a stored export ceiling is unreadable")]
struct UnreadableCeiling;

/// Checks `policy` against the ceiling of every hospital in `hospitals` and returns them if the
/// export may go ahead: BAD_USER_INPUT naming each hospital whose ceiling the policy is above,
/// with every rule it breaks there (a policy is never applied to some hospitals' patients and
/// not others': the recipient lowers it to meet them all), or when patients consented but none
/// of their hospitals set a ceiling for the role, so nothing could be exported. A hospital
/// without a ceiling while others have one stays in the list, and its patients are left out.
fn admit_export(
    recipient: &Actor,
    policy: &ExportPolicy,
    hospitals: Vec<HospitalCeiling>,
) -> VaultResult<Vec<HospitalCeiling>> {
    let role = recipient.role.as_str();
    let bad_input = |error: ExportError| VaultError::InvalidInput(error.to_string());
    policy.validate().map_err(bad_input)?;
    let mut above = Vec::new();
    for hospital in &hospitals {
        let Some(ceiling) = &hospital.ceiling else {
            continue;
        };
        match ceiling.check(policy) {
            Ok(()) => {}
            Err(ExportError::AboveCeiling(rules)) => above.push(format!(
                "above the export ceiling {} set for the {role} role: {rules}",
                hospital.hospital_name
            )),
            Err(other) => return Err(bad_input(other)),
        }
    }
    if !above.is_empty() {
        return Err(VaultError::InvalidInput(format!(
            "each hospital's patients are exported only under its own ceiling, and the policy is \
             {}",
            above.join("; and ")
        )));
    }
    if !hospitals.is_empty() && hospitals.iter().all(|hospital| hospital.ceiling.is_none()) {
        let names: Vec<&str> = hospitals
            .iter()
            .map(|hospital| hospital.hospital_name.as_str())
            .collect();
        return Err(VaultError::InvalidInput(format!(
            "no export ceiling is set for the {role} role by the hospitals whose patients \
             consented ({}); an admin of each sets one before its patients can be exported",
            names.join(", ")
        )));
    }
    Ok(hospitals)
}

/// The leaf committing to one research consent: which grant, whose, to whom, until when.
/// Ids only, no health data, and unguessable without the grant's id.
fn research_consent_leaf(
    grant: Uuid,
    patient: Uuid,
    organization: Uuid,
    expires_at: chrono::DateTime<chrono::Utc>,
) -> medvault_anchor_chain::bytes::Hash32 {
    let mut data = Vec::with_capacity(96);
    data.extend_from_slice(b"medvault/research-consent/v1");
    data.extend_from_slice(grant.as_bytes());
    data.extend_from_slice(patient.as_bytes());
    data.extend_from_slice(organization.as_bytes());
    data.extend_from_slice(&expires_at.timestamp_millis().to_be_bytes());
    medvault_anchor_chain::merkle::leaf_hash(&data)
}

/// Which patients a caller may list in summary form (id, name, birth year), never medical data.
#[derive(Clone, Copy, Debug)]
pub enum PatientListing {
    /// An admin sees the patients of their own hospital.
    Organization(Uuid),
    /// A doctor sees the patients who hold a live grant to them.
    GrantedTo(Uuid),
}

/// Whether `actor` may perform `action` on another user's data that no grant covers: what an
/// admin may be shown of a patient they are creating, who holds no grants yet.
pub fn may_without_grants(actor: &Actor, action: AuditedAction) -> bool {
    decide(actor, Uuid::nil(), action, Held::default()).is_ok()
}

/// What the caller holds on a patient: grants (their scopes' mask) and, for a doctor, an open
/// consent session covering the action.
#[derive(Clone, Copy, Debug, Default)]
struct Held {
    granted_mask: i32,
    consent_session: Option<Uuid>,
}

/// The decision of Algorithm 1 for one request, before any database effect. A doctor's grant
/// alone opens nothing: only a consent session, which a verified proof opened, does.
fn decide(
    actor: &Actor,
    patient: Uuid,
    action: AuditedAction,
    held: Held,
) -> Result<(), &'static str> {
    let granted_mask = held.granted_mask;
    match actor.role {
        Role::Patient if actor.user_id == patient && action.patient_may() => Ok(()),
        Role::Patient if actor.user_id == patient => Err("patients do not write medical records"),
        Role::Patient => Err("not the patient's own data"),
        Role::Doctor => match action.doctor_scope() {
            Some(_) if held.consent_session.is_some() => Ok(()),
            Some(scope) if granted_mask & scope.bit() != 0 => {
                Err("no open consent session: prove consent with openConsent first")
            }
            Some(_) => Err("no live grant with the required scope"),
            None => Err("only the patient may do this"),
        },
        role if role.recipient_kind().is_some() => match action {
            AuditedAction::ExportForResearch if granted_mask & AccessScope::Research.bit() != 0 => {
                Ok(())
            }
            AuditedAction::ExportForResearch => Err("no live research consent"),
            _ => Err("recipients receive only anonymized exports"),
        },
        _ => Err("role may not access health data"),
    }
}

/// One line of the access log: a decision about a patient's data, and the consent session an
/// allowed doctor's access used (or, for `open_consent`, opened).
pub(crate) struct LogLine<'a> {
    pub actor: &'a Actor,
    pub patient: Option<Uuid>,
    pub action: AuditedAction,
    pub record: Option<Uuid>,
    pub decision: Result<(), &'static str>,
    pub consent_session: Option<Uuid>,
    /// Why an allowed line needs no consent session: only [`OPERATOR_SEED_REASON`].
    pub note: Option<&'static str>,
}

/// What the access log says of a record the operator wrote at the command line for a doctor
/// (`medvault demo`'s seed): allowed without a consent session, and said so, so that `medvault
/// audit access` counts such lines apart instead of taking them for a doctor's access.
pub const OPERATOR_SEED_REASON: &str =
    "written by the operator at the command line, not through a consent session";

impl LogLine<'_> {
    /// Appends the line through `client` (a transaction, when the line must commit with what it
    /// records).
    pub(crate) async fn append(self, client: &impl GenericClient) -> VaultResult<()> {
        let (outcome, reason) = match self.decision {
            Ok(()) => ("allowed", self.note),
            Err(reason) => ("denied", Some(reason)),
        };
        client
            .execute(
                &client
                    .prepare_cached(
                        "INSERT INTO access_log (actor_id, actor_role, action, patient_id,
                           record_id, outcome, reason, consent_session_id)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    )
                    .await?,
                &[
                    &self.actor.user_id,
                    &self.actor.role.as_str(),
                    &self.action.as_str(),
                    &self.patient,
                    &self.record,
                    &outcome,
                    &reason,
                    &self.consent_session,
                ],
            )
            .await?;
        Ok(())
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
    ) -> VaultResult<Permit> {
        let (wrapped_key, held, decision) = self.decision(actor, patient, action).await?;
        let consent_session = held.consent_session.filter(|_| decision.is_ok());
        let client = self.pool.get().await?;
        LogLine {
            actor,
            patient: Some(patient),
            action,
            record,
            decision,
            consent_session,
            note: None,
        }
        .append(&client)
        .await?;
        match (decision, wrapped_key) {
            (Ok(()), Some(wrapped_key)) => Ok(Permit {
                actor: *actor,
                patient,
                action,
                consent_session,
                data_key: self.master.unwrap_patient_key(patient, &wrapped_key)?,
            }),
            _ => Err(VaultError::Forbidden),
        }
    }

    /// A permit for the operator to add records authored by `doctor` for `patient` without a
    /// consent session: how `medvault demo` seeds a thousand patients' records without a proof
    /// each. The doctor must hold a live write grant all the same; the log line says who wrote
    /// ([`OPERATOR_SEED_REASON`]).
    pub async fn seed_permit(
        &self,
        _operator: &Operator,
        doctor: &Actor,
        patient: Uuid,
    ) -> VaultResult<Permit> {
        let action = AuditedAction::AddRecord;
        let (wrapped_key, held, _) = self.decision(doctor, patient, action).await?;
        let (Some(wrapped_key), true) = (
            wrapped_key,
            held.granted_mask & AccessScope::Write.bit() != 0,
        ) else {
            return Err(VaultError::Forbidden);
        };
        let client = self.pool.get().await?;
        LogLine {
            actor: doctor,
            patient: Some(patient),
            action,
            record: None,
            decision: Ok(()),
            consent_session: None,
            note: Some(OPERATOR_SEED_REASON),
        }
        .append(&client)
        .await?;
        Ok(Permit {
            actor: *doctor,
            patient,
            action,
            consent_session: None,
            data_key: self.master.unwrap_patient_key(patient, &wrapped_key)?,
        })
    }

    /// Whether `actor` would get a permit for `action` on `patient`, without opening
    /// anything: how a mutation refuses, before it writes, a result its caller could not be
    /// shown. A refusal is logged as any other; an allowance is not, since the field that uses
    /// it asks for its own permit, which is logged.
    pub async fn check_permission(
        &self,
        actor: &Actor,
        patient: Uuid,
        action: AuditedAction,
    ) -> VaultResult<()> {
        let (_, _, decision) = self.decision(actor, patient, action).await?;
        if decision.is_err() {
            self.log_access(actor, Some(patient), action, None, decision)
                .await?;
            return Err(VaultError::Forbidden);
        }
        Ok(())
    }

    /// The patient's wrapped data key, what the caller holds on the patient, and Algorithm 1's
    /// decision for `action`.
    async fn decision(
        &self,
        actor: &Actor,
        patient: Uuid,
        action: AuditedAction,
    ) -> VaultResult<(Option<Vec<u8>>, Held, Result<(), &'static str>)> {
        let required = action.doctor_scope().map_or(0, AccessScope::bit);
        let session: &[u8] = actor
            .session
            .as_ref()
            .map_or(&[], |digest| digest.as_slice());
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(
                        "SELECT k.wrapped_key,
                        COALESCE((SELECT bit_or(g.scope) FROM grants g
                                  WHERE g.patient_id = k.patient_id AND g.grantee_id = $2
                                    AND g.revoked_at IS NULL AND g.expires_at > now()), 0),
                        (SELECT s.id FROM consent_sessions s JOIN grants g ON g.id = s.grant_id
                         WHERE s.session_sha256 = $3 AND s.patient_id = k.patient_id
                           AND s.doctor_id = $2 AND s.ended_at IS NULL AND s.expires_at > now()
                           AND s.scope & $4 = $4
                           AND g.revoked_at IS NULL AND g.expires_at > now()
                         ORDER BY s.opened_at DESC LIMIT 1)
                 FROM patient_keys k WHERE k.patient_id = $1",
                    )
                    .await?,
                &[&patient, &actor.user_id, &session, &required],
            )
            .await?;
        let (wrapped_key, held) = match row {
            Some(row) => (
                Some(row.get(0)),
                Held {
                    granted_mask: row.get(1),
                    consent_session: if actor.role == Role::Doctor {
                        row.get(2)
                    } else {
                        None
                    },
                },
            ),
            None => (None, Held::default()),
        };
        let decision = match wrapped_key {
            Some(_) => decide(actor, patient, action, held),
            None => Err("no such patient"),
        };
        Ok((wrapped_key, held, decision))
    }

    /// Logs a refusal found after a permit was given (the record named belongs to another
    /// patient) and returns the FORBIDDEN to answer with.
    pub(super) async fn refuse(
        &self,
        permit: &Permit,
        record: Option<Uuid>,
        reason: &'static str,
    ) -> VaultError {
        let logged = self
            .log_access(
                &permit.actor,
                Some(permit.patient),
                permit.action,
                record,
                Err(reason),
            )
            .await;
        match logged {
            Ok(()) => VaultError::Forbidden,
            Err(error) => error,
        }
    }

    /// Appends one decision that used no consent session to the access log; `patient` is
    /// `None` only for a refusal that names no patient.
    pub(crate) async fn log_access(
        &self,
        actor: &Actor,
        patient: Option<Uuid>,
        action: AuditedAction,
        record: Option<Uuid>,
        decision: Result<(), &'static str>,
    ) -> VaultResult<()> {
        let client = self.pool.get().await?;
        LogLine {
            actor,
            patient,
            action,
            record,
            decision,
            consent_session: None,
            note: None,
        }
        .append(&client)
        .await
    }

    /// The hospitals an export for `recipient` under `policy` would draw on, each with its
    /// ceiling, checked as [`admit_export`] does, before a job is queued.
    pub(crate) async fn admit_research_export(
        &self,
        recipient: &ExportRecipient,
        policy: &ExportPolicy,
    ) -> VaultResult<Vec<HospitalCeiling>> {
        let recipient = recipient.actor();
        let client = self.pool.get().await?;
        admit_export(
            recipient,
            policy,
            consenting_hospitals(&client, recipient).await?,
        )
    }

    /// The patients whose live research consent names `recipient`'s organization and whose
    /// hospital's ceiling `policy` meets, each as a permit to export their data, read through
    /// `snapshot` so that the cohort, the ceilings and the data exported are one consistent
    /// state. Every inclusion is written to the access log, and a policy above some hospital's
    /// ceiling is refused as [`admit_export`] says.
    pub(super) async fn authorize_research_cohort(
        &self,
        recipient: &ExportRecipient,
        policy: &ExportPolicy,
        snapshot: &tokio_postgres::Client,
    ) -> VaultResult<ResearchCohort> {
        let recipient = recipient.actor();
        let hospitals = admit_export(
            recipient,
            policy,
            consenting_hospitals(snapshot, recipient).await?,
        )?;
        let admitted: Vec<Uuid> = hospitals
            .iter()
            .filter(|hospital| hospital.ceiling.is_some())
            .map(|hospital| hospital.hospital)
            .collect();
        let rows = snapshot
            .query(
                "SELECT DISTINCT ON (g.patient_id)
                        g.id, g.patient_id, g.scope, g.expires_at, k.wrapped_key
                 FROM grants g JOIN patient_keys k ON k.patient_id = g.patient_id
                 JOIN users p ON p.id = g.patient_id
                 WHERE g.grantee_organization_id = $1 AND g.revoked_at IS NULL
                   AND g.expires_at > now() AND p.organization_id = ANY($2)
                 ORDER BY g.patient_id, g.expires_at DESC",
                &[&recipient.organization_id, &admitted],
            )
            .await?;
        let mut permits = Vec::with_capacity(rows.len());
        let mut consent_leaves = Vec::with_capacity(rows.len());
        for row in &rows {
            let patient: Uuid = row.get(1);
            let held = Held {
                granted_mask: row.get(2),
                consent_session: None,
            };
            if decide(recipient, patient, AuditedAction::ExportForResearch, held).is_err() {
                continue;
            }
            let grant: Uuid = row.get(0);
            let expires_at: chrono::DateTime<chrono::Utc> = row.get(3);
            consent_leaves.push(research_consent_leaf(
                grant,
                patient,
                recipient.organization_id,
                expires_at,
            ));
            permits.push(Permit {
                actor: *recipient,
                patient,
                action: AuditedAction::ExportForResearch,
                consent_session: None,
                data_key: self.master.unwrap_patient_key(patient, row.get(4))?,
            });
        }
        let patients: Vec<Uuid> = permits.iter().map(|permit| permit.patient).collect();
        let client = self.pool.get().await?;
        client
            .execute(
                &client
                    .prepare_cached(
                        "INSERT INTO access_log (actor_id, actor_role, action, patient_id, outcome)
                         SELECT $1, $2, $3, patient, 'allowed' FROM unnest($4::uuid[]) AS p(patient)",
                    )
                    .await?,
                &[
                    &recipient.user_id,
                    &recipient.role.as_str(),
                    &AuditedAction::ExportForResearch.as_str(),
                    &patients,
                ],
            )
            .await?;
        Ok(ResearchCohort {
            permits,
            consent_root: medvault_anchor_chain::merkle::root(&consent_leaves).0,
            hospitals,
        })
    }

    /// Which patients `actor` may list in summary form.
    pub fn patient_listing(&self, actor: &Actor) -> VaultResult<PatientListing> {
        match actor.role {
            Role::Admin => Ok(PatientListing::Organization(actor.organization_id)),
            Role::Doctor => Ok(PatientListing::GrantedTo(actor.user_id)),
            _ => Err(VaultError::Forbidden),
        }
    }
}

/// Whether `admin` may create staff accounts in the organization `id` of `kind`: their own
/// hospital, or a recipient organization (admins manage recipients; no admin reaches into
/// another hospital).
pub(crate) fn may_create_staff_in(
    admin: &Actor,
    id: Uuid,
    kind: OrganizationKind,
) -> VaultResult<()> {
    require_role(admin, Role::Admin)?;
    if id == admin.organization_id || kind != OrganizationKind::Hospital {
        Ok(())
    } else {
        Err(VaultError::Forbidden)
    }
}

/// Whose ceiling for `role` `actor` may read: an admin their own hospital's (`hospital` omitted
/// or their own), any recipient role's; a recipient their own role's, naming the hospital.
/// Everything else is FORBIDDEN.
pub(crate) fn ceiling_hospital(
    actor: &Actor,
    role: Role,
    hospital: Option<Uuid>,
) -> VaultResult<Uuid> {
    match (actor.role, hospital) {
        (Role::Admin, None) => Ok(actor.organization_id),
        (Role::Admin, Some(hospital)) if hospital == actor.organization_id => Ok(hospital),
        (own, Some(hospital)) if own == role && role.recipient_kind().is_some() => Ok(hospital),
        (own, None) if own == role && role.recipient_kind().is_some() => {
            Err(VaultError::InvalidInput(
                "each hospital sets its own ceiling: name one with hospitalId, or list them all \
                 with exportCeilings"
                    .into(),
            ))
        }
        _ => Err(VaultError::Forbidden),
    }
}

impl Vault {
    /// Decides whether `admin` may erase `patient`: an admin of the patient's own hospital, of
    /// a patient not erased yet. Locks the patient's row in `transaction` and logs the decision
    /// there when it allows, so the erasure and its line commit together; a refusal is logged
    /// on its own and is FORBIDDEN whether or not the patient exists.
    pub(crate) async fn authorize_erasure(
        &self,
        transaction: &deadpool_postgres::Transaction<'_>,
        admin: &Actor,
        patient: Uuid,
    ) -> VaultResult<()> {
        let row = transaction
            .query_opt(
                "SELECT u.organization_id, e.patient_id IS NOT NULL FROM users u
                 LEFT JOIN patient_erasures e ON e.patient_id = u.id
                 WHERE u.id = $1 AND u.role = 'patient' FOR UPDATE OF u",
                &[&patient],
            )
            .await?;
        let decision = match row {
            _ if admin.role != Role::Admin => Err("only an admin of the patient's hospital erases"),
            None => Err("no such patient"),
            Some(row) if row.get::<_, Uuid>(0) != admin.organization_id => {
                Err("the patient is of another hospital")
            }
            Some(row) if row.get::<_, bool>(1) => Err("the patient is erased already"),
            Some(_) => Ok(()),
        };
        let line = LogLine {
            actor: admin,
            patient: Some(patient),
            action: AuditedAction::ErasePatient,
            record: None,
            decision,
            consent_session: None,
            note: None,
        };
        match decision {
            Ok(()) => line.append(transaction).await,
            Err(_) => {
                line.append(&self.pool.get().await?).await?;
                Err(VaultError::Forbidden)
            }
        }
    }
}

/// Refuses unless `actor` has `role`: for operations that touch no health data.
pub fn require_role(actor: &Actor, role: Role) -> VaultResult<()> {
    if actor.role == role {
        Ok(())
    } else {
        Err(VaultError::Forbidden)
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
            session: None,
        }
    }

    /// Grants of `mask` and no consent session.
    fn held(granted_mask: i32) -> Held {
        Held {
            granted_mask,
            consent_session: None,
        }
    }

    /// Grants of `mask` and an open consent session covering the action.
    fn in_session(granted_mask: i32) -> Held {
        Held {
            granted_mask,
            consent_session: Some(Uuid::from_u128(77)),
        }
    }

    const ALL_ACTIONS: [AuditedAction; 10] = [
        AuditedAction::ReadProfile,
        AuditedAction::EditPersonalDetails,
        AuditedAction::ReadRecords,
        AuditedAction::ReadHistory,
        AuditedAction::AddRecord,
        AuditedAction::UpdateRecord,
        AuditedAction::DeleteRecord,
        AuditedAction::ReadAccessLog,
        AuditedAction::ExportForResearch,
        AuditedAction::OpenConsent,
    ];

    #[test]
    fn a_doctors_grant_alone_opens_nothing_without_a_consent_session() {
        let doctor = actor(Role::Doctor);
        for action in ALL_ACTIONS {
            let refusal = decide(&doctor, Uuid::from_u128(2), action, held(3));
            assert!(refusal.is_err(), "{action:?}");
        }
        assert_eq!(
            decide(
                &doctor,
                Uuid::from_u128(2),
                AuditedAction::ReadRecords,
                held(1)
            ),
            Err("no open consent session: prove consent with openConsent first")
        );
        assert!(decide(
            &doctor,
            Uuid::from_u128(2),
            AuditedAction::ReadRecords,
            in_session(1)
        )
        .is_ok());
    }

    #[test]
    fn only_doctors_in_a_write_consent_session_write_records() {
        let write_actions = [
            AuditedAction::AddRecord,
            AuditedAction::UpdateRecord,
            AuditedAction::DeleteRecord,
        ];
        for action in write_actions {
            let doctor = actor(Role::Doctor);
            assert!(decide(&doctor, Uuid::from_u128(2), action, in_session(2)).is_ok());
            assert!(decide(&doctor, Uuid::from_u128(2), action, held(2)).is_err());
            assert!(decide(&doctor, Uuid::from_u128(2), action, held(1)).is_err());
            assert!(decide(&actor(Role::Patient), Uuid::from_u128(1), action, held(3)).is_err());
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
                    decide(&actor(role), Uuid::from_u128(1), action, held(3)).is_err(),
                    "{role:?} {action:?}"
                );
            }
        }
    }

    #[test]
    fn a_patient_reaches_only_their_own_data() {
        let patient = actor(Role::Patient);
        for action in ALL_ACTIONS.into_iter().filter(|a| a.patient_may()) {
            assert!(decide(&patient, Uuid::from_u128(1), action, held(0)).is_ok());
            assert!(decide(&patient, Uuid::from_u128(2), action, held(3)).is_err());
        }
    }

    #[test]
    fn recipients_only_export_and_only_with_research_consent() {
        for role in [Role::Insurer, Role::Researcher, Role::Government] {
            let recipient = actor(role);
            let patient = Uuid::from_u128(2);
            assert!(decide(
                &recipient,
                patient,
                AuditedAction::ExportForResearch,
                held(4)
            )
            .is_ok());
            assert!(decide(
                &recipient,
                patient,
                AuditedAction::ExportForResearch,
                held(3)
            )
            .is_err());
            for action in ALL_ACTIONS
                .into_iter()
                .filter(|a| *a != AuditedAction::ExportForResearch)
            {
                assert!(
                    decide(&recipient, patient, action, held(7)).is_err(),
                    "{role:?} {action:?}"
                );
            }
        }
        for role in [Role::Admin, Role::Doctor, Role::Patient, Role::Auditor] {
            let caller = actor(role);
            assert!(decide(
                &caller,
                caller.user_id,
                AuditedAction::ExportForResearch,
                held(7)
            )
            .is_err());
        }
    }

    fn hospital(name: &str, min_k: Option<usize>) -> HospitalCeiling {
        HospitalCeiling {
            hospital: Uuid::new_v4(),
            hospital_name: name.to_owned(),
            ceiling: min_k.map(|min_k| ExportCeiling {
                min_k,
                ..ExportCeiling::default()
            }),
        }
    }

    fn policy_with_k(k: usize) -> ExportPolicy {
        ExportPolicy {
            dataset: medvault_exporter::Dataset::Observations,
            columns: Vec::new(),
            birth: medvault_exporter::policy::BirthGeneralization::AgeBand { width: 10 },
            zip: medvault_exporter::policy::ZipGeneralization::Remove,
            include_sex: true,
            dates: medvault_exporter::policy::DateGeneralization::Year,
            sensitive: None,
            k,
            l: None,
            max_suppression: 0.05,
            pseudonym_scope: medvault_exporter::policy::PseudonymScope::PerExport,
        }
    }

    fn refusal(result: VaultResult<Vec<HospitalCeiling>>) -> String {
        match result {
            Err(VaultError::InvalidInput(message)) => message,
            other => panic!("expected BAD_USER_INPUT, got {other:?}"),
        }
    }

    #[test]
    fn a_policy_above_one_hospitals_ceiling_is_refused_naming_only_that_hospital() {
        let researcher = actor(Role::Researcher);
        let hospitals = vec![
            hospital("Riverside", Some(10)),
            hospital("St. Mary's", Some(5)),
        ];
        let message = refusal(admit_export(
            &researcher,
            &policy_with_k(5),
            hospitals.clone(),
        ));
        assert!(
            message.contains("Riverside set for the researcher role"),
            "{message}"
        );
        assert!(
            message.contains("k = 5 is below the ceiling's minimum of 10"),
            "{message}"
        );
        assert!(!message.contains("St. Mary's"), "{message}");
        assert_eq!(
            admit_export(&researcher, &policy_with_k(10), hospitals.clone()).ok(),
            Some(hospitals)
        );
    }

    #[test]
    fn a_hospital_without_a_ceiling_is_left_out_unless_no_hospital_has_one() {
        let researcher = actor(Role::Researcher);
        let some = vec![hospital("Lakeside", None), hospital("St. Mary's", Some(5))];
        assert_eq!(
            admit_export(&researcher, &policy_with_k(5), some.clone()).ok(),
            Some(some)
        );
        let message = refusal(admit_export(
            &researcher,
            &policy_with_k(5),
            vec![hospital("Lakeside", None)],
        ));
        assert!(message.contains("no export ceiling"), "{message}");
        assert!(message.contains("Lakeside"), "{message}");
        assert_eq!(
            admit_export(&researcher, &policy_with_k(5), Vec::new()).ok(),
            Some(Vec::new()),
            "no consent at all is an empty export, as before"
        );
    }

    #[test]
    fn doctors_never_edit_personal_details_or_read_access_logs() {
        for action in [
            AuditedAction::EditPersonalDetails,
            AuditedAction::ReadAccessLog,
        ] {
            let doctor = actor(Role::Doctor);
            assert!(decide(&doctor, Uuid::from_u128(2), action, in_session(3)).is_err());
        }
    }
}
