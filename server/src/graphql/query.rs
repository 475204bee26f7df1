//! Read operations.

use super::anchoring::{chain_head, ChainHead, DatabaseAudit, QueuedFactView};
use super::consent::{AccessProof, ConsentKeys, ConsentWitness};
use super::exports::{ExportCeilingView, ExportJob, HospitalExportCeiling};
use super::types::{
    Grant, MedicalRecord, Organization, Patient, PatientSummary, RecordVersion, User,
};
use super::vocabulary::{OrganizationKind, Role};
use super::{actor, page_request, permit, to_connection};
use crate::error::parse_id;
use async_graphql::connection::Connection;
use async_graphql::{Context, Object, Result, ID};
use medvault_vault::anchoring::db_audit_jobs::DatabaseAudits;
use medvault_vault::exports::Exports;
use medvault_vault::{AuditedAction, Vault};
use uuid::Uuid;

/// The root of every read.
pub struct QueryRoot;

#[Object]
impl QueryRoot {
    /// The latest block of the chain this server anchors on, and its latest final height;
    /// null when it anchors on none. Public: it says nothing of anyone's data.
    async fn chain_head(&self, ctx: &Context<'_>) -> Result<Option<ChainHead>> {
        chain_head(ctx).await
    }

    /// The consent circuit's keys in use: the tree depth, the verifying key's hash and where it
    /// is anchored, and where to fetch the proving key. Public.
    async fn consent_keys(&self, ctx: &Context<'_>) -> Result<ConsentKeys> {
        Ok(ConsentKeys(ctx.data::<Vault>()?.consent_keys().await?))
    }

    /// The calling doctor's own consent leaf for a patient who granted them access: its private
    /// fields and its path to the current root, to prove with.
    async fn consent_witness(&self, ctx: &Context<'_>, patient_id: ID) -> Result<ConsentWitness> {
        let patient = parse_id(&patient_id, "patientId")?;
        let vault = ctx.data::<Vault>()?;
        Ok(ConsentWitness(
            vault.consent_witness(&actor(ctx)?, patient).await?,
        ))
    }

    /// For auditors: every verified consent proof with its public inputs, oldest first.
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity")]
    async fn access_proofs(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, AccessProof>> {
        let vault = ctx.data::<Vault>()?;
        let page = vault
            .access_proofs(&actor(ctx)?, page_request::<Uuid>(after, first)?)
            .await?;
        Ok(to_connection(page, |proof| proof.session_id, AccessProof))
    }

    /// The signed-in user.
    async fn me(&self, ctx: &Context<'_>) -> Result<User> {
        let caller = actor(ctx)?;
        Ok(User(
            ctx.data::<Vault>()?.user(&caller, caller.user_id).await?,
        ))
    }

    /// The member hospitals and export recipients, or those of one kind (a patient looking for
    /// whom to give research consent asks for INSURER, RESEARCH or GOVERNMENT).
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity")]
    async fn organizations(
        &self,
        ctx: &Context<'_>,
        kind: Option<OrganizationKind>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Organization>> {
        actor(ctx)?;
        let page = ctx
            .data::<Vault>()?
            .organizations(
                &actor(ctx)?,
                kind.map(Into::into),
                page_request::<Uuid>(after, first)?,
            )
            .await?;
        Ok(to_connection(
            page,
            |organization| organization.id,
            Organization,
        ))
    }

    /// The doctors of all hospitals (patients, doctors and admins).
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity")]
    async fn doctors(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, User>> {
        let page = ctx
            .data::<Vault>()?
            .doctors(&actor(ctx)?, page_request::<Uuid>(after, first)?)
            .await?;
        Ok(to_connection(page, |user| user.id, User))
    }

    /// Patients with limited information: an admin's hospital's patients, or the patients who
    /// granted the signed-in doctor access.
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity")]
    async fn patients(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, PatientSummary>> {
        let vault = ctx.data::<Vault>()?;
        let listing = vault.patient_listing(&actor(ctx)?)?;
        let page = vault
            .patient_summaries(listing, page_request::<Uuid>(after, first)?)
            .await?;
        Ok(to_connection(
            page,
            |summary| summary.patient_id,
            PatientSummary::from,
        ))
    }

    /// One patient's details: the patient themself, or a doctor with a live read grant.
    async fn patient(&self, ctx: &Context<'_>, id: ID) -> Result<Patient> {
        let patient = parse_id(&id, "id")?;
        let (vault, permit) = permit(ctx, patient, AuditedAction::ReadProfile, None).await?;
        Ok(Patient(vault.current_profile(&permit).await?))
    }

    /// One medical record at its current version.
    async fn record(&self, ctx: &Context<'_>, id: ID) -> Result<MedicalRecord> {
        let vault = ctx.data::<Vault>()?;
        Ok(MedicalRecord(
            vault.record(&actor(ctx)?, parse_id(&id, "id")?).await?,
        ))
    }

    /// Every version of one record, oldest first.
    async fn record_history(&self, ctx: &Context<'_>, record_id: ID) -> Result<Vec<RecordVersion>> {
        let vault = ctx.data::<Vault>()?;
        let versions = vault
            .record_history(&actor(ctx)?, parse_id(&record_id, "recordId")?)
            .await?;
        Ok(versions.into_iter().map(RecordVersion).collect())
    }

    /// The signed-in patient's grants, revoked and expired ones included.
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity")]
    async fn my_grants(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Grant>> {
        let vault = ctx.data::<Vault>()?;
        let page = vault
            .grants_of_patient(&actor(ctx)?, page_request::<Uuid>(after, first)?)
            .await?;
        Ok(to_connection(page, |grant| grant.id, Grant))
    }

    /// One hospital's export ceiling for a recipient role: for admins their own hospital's, any
    /// role's; for recipients their own role's at the hospital `hospitalId` names.
    async fn export_ceiling(
        &self,
        ctx: &Context<'_>,
        role: Role,
        hospital_id: Option<ID>,
    ) -> Result<Option<ExportCeilingView>> {
        let hospital = hospital_id
            .map(|id| parse_id(&id, "hospitalId"))
            .transpose()?;
        let ceiling = ctx
            .data::<Exports>()?
            .ceiling(&actor(ctx)?, role.into(), hospital)
            .await?;
        Ok(ceiling.map(ExportCeilingView))
    }

    /// For an insurer, researcher or agency: every member hospital with the ceiling it set for
    /// the caller's role, which a policy must meet for that hospital's patients to be exported.
    async fn export_ceilings(&self, ctx: &Context<'_>) -> Result<Vec<HospitalExportCeiling>> {
        let hospitals = ctx
            .data::<Exports>()?
            .ceilings_for_recipient(&actor(ctx)?)
            .await?;
        Ok(hospitals.into_iter().map(HospitalExportCeiling).collect())
    }

    /// For auditors: every fact this server's database queued for the anchor chain, in the
    /// order queued, each with its chain entry and anchoring (no content).
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity")]
    async fn queued_facts(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, QueuedFactView>> {
        let page = ctx
            .data::<Vault>()?
            .queued_facts(&actor(ctx)?, page_request::<i64>(after, first)?)
            .await?;
        Ok(to_connection(page, |fact| fact.id, QueuedFactView))
    }

    /// For auditors: a database audit (`requestDatabaseAudit`).
    async fn database_audit(&self, ctx: &Context<'_>, id: ID) -> Result<DatabaseAudit> {
        let job = ctx
            .data::<DatabaseAudits>()?
            .job(&actor(ctx)?, parse_id(&id, "id")?)
            .await?;
        Ok(DatabaseAudit(job))
    }

    /// One export job of the caller's organization.
    async fn export_job(&self, ctx: &Context<'_>, id: ID) -> Result<ExportJob> {
        let job = ctx
            .data::<Exports>()?
            .job(&actor(ctx)?, parse_id(&id, "id")?)
            .await?;
        Ok(ExportJob(job))
    }

    /// The export jobs of the caller's organization, newest first.
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity")]
    async fn export_jobs(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, ExportJob>> {
        let page = ctx
            .data::<Exports>()?
            .jobs(&actor(ctx)?, page_request::<Uuid>(after, first)?)
            .await?;
        Ok(to_connection(page, |job| job.id, ExportJob))
    }
}
