//! Write operations.

use super::anchoring::DatabaseAudit;
use super::consent::{field_argument, ConsentChallenge, ConsentSession, GranteeKey};
use super::exports::{ExportCeilingRules, ExportCeilingView, ExportJob, ExportPolicyInput};
use super::types::{DeletedRecord, Grant, MedicalRecord, Organization, Patient, Session, User};
use super::vocabulary::{
    AccessScope, MedicalDetails, OrganizationKind, PersonalDetails, RecordContent, Role,
};
use super::{actor, permit, RequestContext};
use crate::error::{parse_id, ApiError};
use crate::metrics::Metrics;
use async_graphql::{Context, InputObject, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use medvault_vault::anchoring::db_audit_jobs::DatabaseAudits;
use medvault_vault::exports::Exports;
use medvault_vault::{domain, VaultError};
use medvault_vault::{
    may_without_grants, AuditedAction, NewStaffUser, Vault, MAX_RECORDS_PER_BATCH,
};
use std::sync::atomic::Ordering;

/// What an erasure did.
#[derive(SimpleObject)]
pub struct PatientErasure {
    /// The erased patient.
    patient_id: ID,
    /// When the data key was destroyed.
    erased_at: DateTime<Utc>,
    /// The live grants it revoked.
    revoked_grants: i32,
}

/// The root of every write.
pub struct MutationRoot;

/// A new patient: their login and their details.
#[derive(InputObject)]
pub struct CreatePatientInput {
    #[graphql(validator(min_length = 3, max_length = 64))]
    username: String,
    #[graphql(validator(min_length = 12, max_length = 1024))]
    password: String,
    personal: PersonalDetails,
    medical: MedicalDetails,
}

/// A new doctor of the admin's hospital.
#[derive(InputObject)]
pub struct CreateDoctorInput {
    #[graphql(validator(min_length = 3, max_length = 64))]
    username: String,
    #[graphql(validator(min_length = 12, max_length = 1024))]
    password: String,
    #[graphql(validator(min_length = 1, max_length = 200))]
    full_name: String,
    #[graphql(validator(min_length = 1, max_length = 200))]
    specialty: String,
}

/// A new staff account of another role (admin, insurer, researcher, government, auditor).
#[derive(InputObject)]
pub struct CreateUserInput {
    #[graphql(validator(min_length = 3, max_length = 64))]
    username: String,
    #[graphql(validator(min_length = 12, max_length = 1024))]
    password: String,
    role: Role,
    #[graphql(validator(min_length = 1, max_length = 200))]
    display_name: String,
    /// A recipient organization to create the account in (its kind must match the role);
    /// the admin's own hospital if omitted.
    organization_id: Option<ID>,
}

#[Object]
impl MutationRoot {
    /// Opens a session; the token goes in `Authorization: Bearer <token>`.
    async fn login(
        &self,
        ctx: &Context<'_>,
        #[graphql(validator(max_length = 64))] username: String,
        #[graphql(validator(max_length = 1024))] password: String,
    ) -> Result<Session> {
        let request = ctx.data::<RequestContext>()?;
        if request.login_attempted.swap(true, Ordering::SeqCst) {
            return Err(ApiError::BadUserInput("one login per request".into()).into());
        }
        let outcome = ctx
            .data::<Vault>()?
            .login(&username, &password, request.client_address)
            .await;
        if let Ok(session) = &outcome {
            request.sign_in(session.actor);
        }
        if let Some(metrics) = ctx.data_opt::<Metrics>() {
            metrics.observe_login(match &outcome {
                Ok(_) => "success",
                Err(VaultError::Unauthenticated(_)) => "wrong_password",
                Err(VaultError::TooManyAttempts { .. }) => "throttled",
                Err(_) => "error",
            });
        }
        Ok(Session(outcome?))
    }

    /// Revokes the session whose token this request carries.
    async fn logout(&self, ctx: &Context<'_>) -> Result<bool> {
        let token = ctx
            .data_opt::<RequestContext>()
            .and_then(|request| request.token.clone())
            .ok_or(ApiError::Unauthenticated("no bearer token sent"))?;
        Ok(ctx.data::<Vault>()?.logout(&token).await?)
    }

    /// An admin of the patient's hospital erases the patient at their request (the right to be
    /// forgotten): the patient's data key is destroyed, so every record and profile version is
    /// unreadable from then on; the versions' anchors and the access log stay. The patient's
    /// login ends, their grants are revoked and their consent sessions closed. FORBIDDEN for
    /// anyone else, for an unknown patient and for one erased already.
    async fn erase_patient(&self, ctx: &Context<'_>, patient_id: ID) -> Result<PatientErasure> {
        let patient = parse_id(&patient_id, "patientId")?;
        let erasure = ctx
            .data::<Vault>()?
            .erase_patient(&actor(ctx)?, patient)
            .await?;
        Ok(PatientErasure {
            patient_id: ID(erasure.patient.to_string()),
            erased_at: erasure.erased_at,
            revoked_grants: erasure.revoked_grants as i32,
        })
    }

    /// An admin registers a patient of their hospital with personal and medical details.
    async fn create_patient(
        &self,
        ctx: &Context<'_>,
        input: CreatePatientInput,
    ) -> Result<Patient> {
        let vault = ctx.data::<Vault>()?;
        let caller = actor(ctx)?;
        let result = ctx.look_ahead();
        let unreadable = PERMIT_GATED_PATIENT_FIELDS.iter().any(|(name, action)| {
            result.field(name).exists() && !may_without_grants(&caller, *action)
        });
        if unreadable {
            return Err(ApiError::Forbidden.into());
        }
        let profile = vault
            .create_patient(
                &caller,
                &input.username,
                &input.password,
                input.personal.into(),
                input.medical.into(),
            )
            .await?;
        Ok(Patient(profile))
    }

    /// An admin registers a doctor of their hospital.
    async fn create_doctor(&self, ctx: &Context<'_>, input: CreateDoctorInput) -> Result<User> {
        let user = NewStaffUser {
            username: input.username,
            password: input.password,
            role: domain::Role::Doctor,
            display_name: input.full_name,
            specialty: Some(input.specialty),
        };
        create_staff(ctx, user, None).await
    }

    /// An admin creates another staff account of their hospital.
    async fn create_user(&self, ctx: &Context<'_>, input: CreateUserInput) -> Result<User> {
        if matches!(input.role, Role::Patient | Role::Doctor) {
            return Err(ApiError::BadUserInput(
                "use createPatient or createDoctor for this role".into(),
            )
            .into());
        }
        let organization = input
            .organization_id
            .map(|id| parse_id(&id, "organizationId"))
            .transpose()?;
        let user = NewStaffUser {
            username: input.username,
            password: input.password,
            role: input.role.into(),
            display_name: input.display_name,
            specialty: None,
        };
        create_staff(ctx, user, organization).await
    }

    /// An admin registers an insurer, research institute or government agency: an organization
    /// patients may give research consent to, whose users receive anonymized exports.
    async fn create_recipient_organization(
        &self,
        ctx: &Context<'_>,
        #[graphql(validator(min_length = 1, max_length = 200))] name: String,
        kind: OrganizationKind,
    ) -> Result<Organization> {
        let vault = ctx.data::<Vault>()?;
        Ok(Organization(
            vault
                .create_recipient_organization(&actor(ctx)?, &name, kind.into())
                .await?,
        ))
    }

    /// The patient consents to being included, anonymized, in the exports of a recipient
    /// organization until `expiresAt`. Withdraw it with `revokeAccess`: later exports leave the
    /// patient out.
    async fn grant_research_consent(
        &self,
        ctx: &Context<'_>,
        organization_id: ID,
        expires_at: DateTime<Utc>,
    ) -> Result<Grant> {
        let vault = ctx.data::<Vault>()?;
        let organization = parse_id(&organization_id, "organizationId")?;
        Ok(Grant(
            vault
                .grant_research_consent(&actor(ctx)?, organization, expires_at)
                .await?,
        ))
    }

    /// An admin sets their hospital's export ceiling for a recipient role (INSURER, RESEARCHER,
    /// GOVERNMENT); it governs exports of that hospital's patients only.
    async fn set_export_ceiling(
        &self,
        ctx: &Context<'_>,
        role: Role,
        rules: ExportCeilingRules,
    ) -> Result<ExportCeilingView> {
        let stored = ctx
            .data::<Exports>()?
            .set_ceiling(&actor(ctx)?, role.into(), rules.into())
            .await?;
        Ok(ExportCeilingView(stored))
    }

    /// For auditors: checks the database against the anchor chain, without any key, as
    /// `medvault audit db` does: every record version's leaf and every access-log batch's root
    /// recomputed from the rows and looked up in the chain's final blocks. It runs as a job on
    /// a snapshot taken now (first anchored and made final): follow it with `databaseAudit`.
    /// One runs at a time.
    async fn request_database_audit(&self, ctx: &Context<'_>) -> Result<DatabaseAudit> {
        let job = ctx.data::<DatabaseAudits>()?.request(&actor(ctx)?).await?;
        Ok(DatabaseAudit(job))
    }

    /// An insurer, researcher or agency asks for an anonymized export of the patients who gave
    /// their organization research consent. It runs as a job: follow it with `exportJob`.
    async fn request_export(
        &self,
        ctx: &Context<'_>,
        policy: ExportPolicyInput,
    ) -> Result<ExportJob> {
        let recipient = actor(ctx)?;
        let job = ctx
            .data::<Exports>()?
            .request(&recipient, policy.into_policy(recipient.organization_id))
            .await?;
        Ok(ExportJob(job))
    }

    /// The patient edits their personal details; `expectedVersion` is the profile version they
    /// last read.
    async fn update_personal_details(
        &self,
        ctx: &Context<'_>,
        expected_version: i32,
        personal: PersonalDetails,
    ) -> Result<Patient> {
        let caller = actor(ctx)?;
        let (vault, permit) = permit(
            ctx,
            caller.user_id,
            AuditedAction::EditPersonalDetails,
            None,
        )
        .await?;
        Ok(Patient(
            vault
                .update_personal_details(&permit, expected_version, personal.into())
                .await?,
        ))
    }

    /// The patient grants a doctor access until `expiresAt`, replacing any earlier grant to them.
    async fn grant_access(
        &self,
        ctx: &Context<'_>,
        doctor_id: ID,
        scopes: Vec<AccessScope>,
        expires_at: DateTime<Utc>,
    ) -> Result<Grant> {
        let vault = ctx.data::<Vault>()?;
        let doctor = parse_id(&doctor_id, "doctorId")?;
        Ok(Grant(
            vault
                .grant_access(
                    &actor(ctx)?,
                    doctor,
                    &scopes.into_iter().map(Into::into).collect::<Vec<_>>(),
                    expires_at,
                )
                .await?,
        ))
    }

    /// The patient revokes a grant; it stops working at once.
    async fn revoke_access(&self, ctx: &Context<'_>, grant_id: ID) -> Result<Grant> {
        let vault = ctx.data::<Vault>()?;
        Ok(Grant(
            vault
                .revoke_access(&actor(ctx)?, parse_id(&grant_id, "grantId")?)
                .await?,
        ))
    }

    /// A doctor registers the commitment to a grantee secret only they hold (made with
    /// `medvault doctor keygen`). A new commitment re-keys the doctor's live grants; the old
    /// secret proves nothing from then on.
    async fn register_grantee_key(
        &self,
        ctx: &Context<'_>,
        #[graphql(validator(max_length = 66))] commitment: String,
    ) -> Result<GranteeKey> {
        let commitment = field_argument("commitment", &commitment)?;
        let vault = ctx.data::<Vault>()?;
        Ok(GranteeKey(
            vault.register_grantee_key(&actor(ctx)?, commitment).await?,
        ))
    }

    /// A single-use challenge for the calling doctor's session, to prove consent to `scopes`
    /// on a patient's data with.
    async fn consent_challenge(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        #[graphql(validator(max_items = 3))] scopes: Vec<AccessScope>,
    ) -> Result<ConsentChallenge> {
        let patient = parse_id(&patient_id, "patientId")?;
        let vault = ctx.data::<Vault>()?;
        let scopes: Vec<domain::AccessScope> = scopes.into_iter().map(Into::into).collect();
        Ok(ConsentChallenge(
            vault
                .consent_challenge(&actor(ctx)?, patient, &scopes)
                .await?,
        ))
    }

    /// Verifies a consent proof against the patient's hospital's anchored consent root and
    /// opens a consent session: from then on this bearer session may use `scopes` on the
    /// patient until the grant expires, is revoked, or 15 minutes pass.
    async fn open_consent(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        #[graphql(validator(max_items = 3))] scopes: Vec<AccessScope>,
        #[graphql(validator(max_length = 66))] challenge: String,
        #[graphql(validator(max_length = 66))] root: String,
        #[graphql(validator(max_length = 512))] proof: String,
    ) -> Result<ConsentSession> {
        let patient = parse_id(&patient_id, "patientId")?;
        let challenge = field_argument("challenge", &challenge)?;
        let root = field_argument("root", &root)?;
        let proof =
            hex::decode(&proof).map_err(|_| ApiError::BadUserInput("proof must be hex".into()))?;
        let vault = ctx.data::<Vault>()?;
        let scopes: Vec<domain::AccessScope> = scopes.into_iter().map(Into::into).collect();
        let session = vault
            .open_consent(&actor(ctx)?, patient, &scopes, challenge, root, &proof)
            .await?;
        Ok(session.into())
    }

    /// A doctor with a live write grant adds a record for the patient.
    async fn add_medical_record(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        record: RecordContent,
    ) -> Result<MedicalRecord> {
        let mut added = add_records(ctx, patient_id, vec![record]).await?;
        Ok(added.remove(0))
    }

    /// A doctor with a live write grant adds up to 1,000 records for the patient at once.
    async fn add_medical_records(
        &self,
        ctx: &Context<'_>,
        patient_id: ID,
        #[graphql(validator(min_items = 1, max_items = 1000))] records: Vec<RecordContent>,
    ) -> Result<Vec<MedicalRecord>> {
        add_records(ctx, patient_id, records).await
    }

    /// A doctor with a live write grant writes a new version of a record of the named patient,
    /// if `expectedVersion` is still current (else CONFLICT, and nothing changes).
    async fn update_medical_record(
        &self,
        ctx: &Context<'_>,
        record_id: ID,
        patient_id: ID,
        expected_version: i32,
        record: RecordContent,
    ) -> Result<MedicalRecord> {
        let (record_id, patient) = (
            parse_id(&record_id, "recordId")?,
            parse_id(&patient_id, "patientId")?,
        );
        let (vault, permit) =
            permit(ctx, patient, AuditedAction::UpdateRecord, Some(record_id)).await?;
        refuse_unreadable_record_result(ctx, patient).await?;
        Ok(MedicalRecord(
            vault
                .update_record(&permit, record_id, expected_version, record.into())
                .await?,
        ))
    }

    /// A doctor with a live write grant deletes a record of the named patient: a tombstone
    /// version, and the content of every version crypto-shredded.
    async fn delete_medical_record(
        &self,
        ctx: &Context<'_>,
        record_id: ID,
        patient_id: ID,
        expected_version: i32,
    ) -> Result<DeletedRecord> {
        let (record, patient) = (
            parse_id(&record_id, "recordId")?,
            parse_id(&patient_id, "patientId")?,
        );
        let (vault, permit) =
            permit(ctx, patient, AuditedAction::DeleteRecord, Some(record)).await?;
        let version = vault
            .delete_record(&permit, record, expected_version)
            .await?;
        Ok(DeletedRecord {
            id: record_id,
            version,
        })
    }
}

/// An admin creates a staff account in their own hospital, or in `organization`.
async fn create_staff(
    ctx: &Context<'_>,
    user: NewStaffUser,
    organization: Option<uuid::Uuid>,
) -> Result<User> {
    let vault = ctx.data::<Vault>()?;
    Ok(User(
        vault
            .create_staff_user(&actor(ctx)?, organization, user)
            .await?,
    ))
}

/// The fields of a `Patient` that ask for a permit of their own when resolved.
const PERMIT_GATED_PATIENT_FIELDS: [(&str, AuditedAction); 4] = [
    ("records", AuditedAction::ReadRecords),
    ("history", AuditedAction::ReadHistory),
    ("profileHistory", AuditedAction::ReadHistory),
    ("accessLog", AuditedAction::ReadAccessLog),
];

/// Refuses, before anything is written, a record mutation whose selection reaches patient data
/// the caller may not read (a doctor with a write-only grant asking for `patient { … }`), so
/// that no mutation answers FORBIDDEN after it committed.
async fn refuse_unreadable_record_result(ctx: &Context<'_>, patient: uuid::Uuid) -> Result<()> {
    let patient_field = ctx.look_ahead().field("patient");
    if !patient_field.exists() {
        return Ok(());
    }
    let vault = ctx.data::<Vault>()?;
    let caller = actor(ctx)?;
    vault
        .check_permission(&caller, patient, AuditedAction::ReadProfile)
        .await?;
    for (name, action) in PERMIT_GATED_PATIENT_FIELDS {
        if patient_field.field(name).exists() {
            vault.check_permission(&caller, patient, action).await?;
        }
    }
    Ok(())
}

async fn add_records(
    ctx: &Context<'_>,
    patient_id: ID,
    records: Vec<RecordContent>,
) -> Result<Vec<MedicalRecord>> {
    if records.len() > MAX_RECORDS_PER_BATCH {
        return Err(ApiError::BadUserInput(format!(
            "at most {MAX_RECORDS_PER_BATCH} records per request"
        ))
        .into());
    }
    let patient = parse_id(&patient_id, "patientId")?;
    let (vault, permit) = permit(ctx, patient, AuditedAction::AddRecord, None).await?;
    refuse_unreadable_record_result(ctx, patient).await?;
    let records = records.into_iter().map(Into::into).collect();
    let added = vault.add_records(&permit, records).await?;
    Ok(added.into_iter().map(MedicalRecord).collect())
}
