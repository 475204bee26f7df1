//! The GraphQL object types: thin views over the vault's own types. Every edge that leads to
//! more health data resolves through the vault, which authorizes it again.

use super::anchoring::{Anchoring, ChainView};
use super::vocabulary::{
    AccessScope, MedicalDetails, OrganizationKind, PersonalDetails, RecordContent, Role,
};
use super::{actor, loaders::UserLoader, page_request, permit, to_connection, viewer, Cursor};
use crate::error::ApiError;
use async_graphql::connection::Connection;
use async_graphql::dataloader::DataLoader;
use async_graphql::{ComplexObject, Context, Enum, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use medvault_anchor_chain::entry::Entry;
use medvault_vault::{AuditedAction, Vault};
use uuid::Uuid;

pub(super) async fn load_user(ctx: &Context<'_>, id: Uuid) -> Result<User> {
    let loader = ctx.data::<DataLoader<UserLoader>>()?;
    let user = loader
        .load_one(id)
        .await
        .map_err(|error| error.to_graphql())?
        .ok_or(ApiError::NotFound("user"))?;
    Ok(User(user))
}

/// A user of any role. Shows no secrets and no health data.
pub struct User(pub medvault_vault::UserInfo);

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn username(&self) -> &str {
        &self.0.username
    }
    async fn role(&self) -> Role {
        self.0.role.into()
    }
    /// A staff member's name; null for patients, whose name is part of their encrypted profile.
    async fn display_name(&self) -> Option<&str> {
        self.0.display_name.as_deref()
    }
    /// A doctor's specialty.
    async fn specialty(&self) -> Option<&str> {
        self.0.specialty.as_deref()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// The user's organization: their hospital, or for insurers, researchers and agencies
    /// possibly their recipient organization.
    async fn organization(&self, ctx: &Context<'_>) -> Result<Organization> {
        load_organization(ctx, self.0.organization_id).await
    }
    /// The user's hospital.
    #[graphql(deprecation = "use organization, which also covers recipient organizations")]
    async fn hospital(&self, ctx: &Context<'_>) -> Result<Organization> {
        load_organization(ctx, self.0.organization_id).await
    }
}

pub(super) async fn load_organization(ctx: &Context<'_>, id: Uuid) -> Result<Organization> {
    let viewer = viewer(ctx)?;
    Ok(Organization(
        ctx.data::<Vault>()?.organization(&viewer, id).await?,
    ))
}

/// A member hospital, or an insurer, research institute or agency that receives anonymized
/// exports.
pub struct Organization(pub medvault_vault::Organization);

#[Object]
impl Organization {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn kind(&self) -> OrganizationKind {
        self.0.kind.into()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A new session.
pub struct Session(pub medvault_vault::Session);

#[Object]
impl Session {
    /// The bearer token: send it as `Authorization: Bearer <token>`. Shown only once.
    async fn token(&self) -> &str {
        &self.0.token
    }
    async fn expires_at(&self) -> DateTime<Utc> {
        self.0.expires_at
    }
    async fn user(&self, ctx: &Context<'_>) -> Result<User> {
        load_user(ctx, self.0.actor.user_id).await
    }
}

/// A patient's current profile, reached only through a permit; its edges ask for their own.
pub struct Patient(pub medvault_vault::ProfileVersion);

#[Object]
impl Patient {
    async fn id(&self) -> ID {
        ID(self.0.patient_id.to_string())
    }
    /// The profile's version, to pass as `expectedVersion` when editing it.
    async fn profile_version(&self) -> i32 {
        self.0.version
    }
    async fn personal(&self) -> PersonalDetails {
        PersonalDetails::from(&self.0.profile.personal)
    }
    async fn medical(&self) -> MedicalDetails {
        MedicalDetails::from(&self.0.profile.medical)
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// The patient's pseudonym in consent proofs (a field element keyed by the server): shown to
    /// the patient and to doctors holding a live grant from them.
    async fn pseudonym(&self, ctx: &Context<'_>) -> Result<String> {
        let vault = ctx.data::<Vault>()?;
        let pseudonym = vault
            .patient_pseudonym(&actor(ctx)?, self.0.patient_id)
            .await?;
        Ok(medvault_circuits::field::field_to_hex(pseudonym))
    }
    /// The patient's account.
    async fn account(&self, ctx: &Context<'_>) -> Result<User> {
        load_user(ctx, self.0.patient_id).await
    }
    /// The patient's live medical records, oldest first.
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity")]
    async fn records(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, MedicalRecord>> {
        let (vault, permit) =
            permit(ctx, self.0.patient_id, AuditedAction::ReadRecords, None).await?;
        let page = vault
            .records(&permit, page_request::<Uuid>(after, first)?)
            .await?;
        Ok(to_connection(
            page,
            |record| record.record_id,
            MedicalRecord,
        ))
    }
    /// Every version of every record of the patient, deleted ones included.
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity")]
    async fn history(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, RecordVersion>> {
        let (vault, permit) =
            permit(ctx, self.0.patient_id, AuditedAction::ReadHistory, None).await?;
        let page = vault
            .patient_history(&permit, page_request(after, first)?)
            .await?;
        Ok(to_connection(
            page,
            |version| (version.record_id, version.version),
            RecordVersion,
        ))
    }
    /// Every version of the patient's personal and medical details, oldest first.
    async fn profile_history(&self, ctx: &Context<'_>) -> Result<Vec<ProfileVersion>> {
        let (vault, permit) =
            permit(ctx, self.0.patient_id, AuditedAction::ReadHistory, None).await?;
        Ok(vault
            .profile_history(&permit)
            .await?
            .into_iter()
            .map(ProfileVersion)
            .collect())
    }
    /// Who read or wrote this patient's data, allowed or refused. Only the patient sees it.
    #[graphql(complexity = "first.unwrap_or(20).max(0) as usize * child_complexity")]
    async fn access_log(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, AccessLogEntry>> {
        let (vault, permit) =
            permit(ctx, self.0.patient_id, AuditedAction::ReadAccessLog, None).await?;
        let page = vault
            .access_log(&permit, page_request::<i64>(after, first)?)
            .await?;
        Ok(to_connection(page, |entry| entry.id, AccessLogEntry))
    }
}

/// One version of a patient's profile.
pub struct ProfileVersion(pub medvault_vault::ProfileVersion);

#[Object]
impl ProfileVersion {
    async fn version(&self) -> i32 {
        self.0.version
    }
    async fn personal(&self) -> PersonalDetails {
        PersonalDetails::from(&self.0.profile.personal)
    }
    async fn medical(&self) -> MedicalDetails {
        MedicalDetails::from(&self.0.profile.medical)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn author(&self, ctx: &Context<'_>) -> Result<User> {
        load_user(ctx, self.0.author_id).await
    }
}

/// A patient in a list: name and birth year, never medical data.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct PatientSummary {
    id: ID,
    full_name: String,
    birth_year: i32,
    #[graphql(skip)]
    organization_id: Uuid,
}

impl From<medvault_vault::PatientSummary> for PatientSummary {
    fn from(summary: medvault_vault::PatientSummary) -> Self {
        PatientSummary {
            id: ID(summary.patient_id.to_string()),
            full_name: summary.full_name,
            birth_year: summary.birth_year,
            organization_id: summary.organization_id,
        }
    }
}

#[ComplexObject]
impl PatientSummary {
    async fn hospital(&self, ctx: &Context<'_>) -> Result<Organization> {
        load_organization(ctx, self.organization_id).await
    }
}

/// A medical record at its current version.
pub struct MedicalRecord(pub medvault_vault::StoredRecord);

#[Object]
impl MedicalRecord {
    async fn id(&self) -> ID {
        ID(self.0.record_id.to_string())
    }
    async fn patient_id(&self) -> ID {
        ID(self.0.patient_id.to_string())
    }
    /// The patient the record belongs to, if the caller may read their details.
    async fn patient(&self, ctx: &Context<'_>) -> Result<Patient> {
        let (vault, permit) =
            permit(ctx, self.0.patient_id, AuditedAction::ReadProfile, None).await?;
        Ok(Patient(vault.current_profile(&permit).await?))
    }
    /// The current version, to pass as `expectedVersion` when updating or deleting.
    async fn version(&self) -> i32 {
        self.0.version
    }
    async fn content(&self) -> RecordContent {
        RecordContent::from(&self.0.content)
    }
    /// The doctor who wrote the current version.
    async fn author(&self, ctx: &Context<'_>) -> Result<User> {
        load_user(ctx, self.0.author_id).await
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// SHA3-256 of the current version's ciphertext, hex.
    async fn ciphertext_sha3(&self) -> String {
        hex::encode(&self.0.ciphertext_sha3)
    }
    /// The current version's leaf queued for the anchor chain, hex.
    async fn anchor_leaf(&self) -> String {
        hex::encode(&self.0.anchor_leaf)
    }
    /// Where the current version is anchored: pending, or its block and inclusion proof.
    async fn anchoring(&self, ctx: &Context<'_>) -> Result<Anchoring> {
        ChainView::anchoring_of(ctx, record_anchor(&self.0.anchor_leaf)?).await
    }
}

/// The chain entry of a record version's leaf.
fn record_anchor(leaf: &[u8]) -> Result<Entry> {
    let leaf: [u8; 32] = leaf
        .try_into()
        .map_err(|_| ApiError::Internal("a stored anchor leaf is not 32 bytes".into()))?;
    Ok(medvault_vault::anchoring::leaf::record_version_entry(&leaf))
}

/// How a record version came to be.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum VersionOperation {
    Create,
    Update,
    Delete,
}

/// One version of a record in its history.
pub struct RecordVersion(pub medvault_vault::RecordVersion);

#[Object]
impl RecordVersion {
    async fn record_id(&self) -> ID {
        ID(self.0.record_id.to_string())
    }
    async fn version(&self) -> i32 {
        self.0.version
    }
    async fn operation(&self) -> VersionOperation {
        match self.0.operation {
            medvault_vault::VersionOperation::Create => VersionOperation::Create,
            medvault_vault::VersionOperation::Update => VersionOperation::Update,
            medvault_vault::VersionOperation::Delete => VersionOperation::Delete,
        }
    }
    /// The content; null for the tombstone and for versions of a deleted record, whose keys
    /// were destroyed.
    async fn content(&self) -> Option<RecordContent> {
        self.0.content.as_ref().map(RecordContent::from)
    }
    /// Whether this version's content was crypto-shredded by a delete.
    async fn shredded(&self) -> bool {
        self.0.content.is_none() && self.0.operation != medvault_vault::VersionOperation::Delete
    }
    async fn author(&self, ctx: &Context<'_>) -> Result<User> {
        load_user(ctx, self.0.author_id).await
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn ciphertext_sha3(&self) -> String {
        hex::encode(&self.0.ciphertext_sha3)
    }
    async fn anchor_leaf(&self) -> String {
        hex::encode(&self.0.anchor_leaf)
    }
    /// Where this version is anchored: pending, or its block and inclusion proof.
    async fn anchoring(&self, ctx: &Context<'_>) -> Result<Anchoring> {
        ChainView::anchoring_of(ctx, record_anchor(&self.0.anchor_leaf)?).await
    }
}

/// A record that was deleted: its tombstone's version.
#[derive(SimpleObject)]
pub struct DeletedRecord {
    pub id: ID,
    pub version: i32,
}

/// A patient's grant of access to a doctor.
pub struct Grant(pub medvault_vault::Grant);

#[Object]
impl Grant {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn patient_id(&self) -> ID {
        ID(self.0.patient_id.to_string())
    }
    /// The doctor granted access; null for research consent.
    async fn doctor(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        match self.0.grantee_id {
            Some(doctor) => Ok(Some(load_user(ctx, doctor).await?)),
            None => Ok(None),
        }
    }
    /// The recipient organization given research consent; null for a doctor's access.
    async fn organization(&self, ctx: &Context<'_>) -> Result<Option<Organization>> {
        match self.0.grantee_organization_id {
            Some(organization) => Ok(Some(load_organization(ctx, organization).await?)),
            None => Ok(None),
        }
    }
    async fn scopes(&self) -> Vec<AccessScope> {
        self.0
            .scopes
            .iter()
            .copied()
            .map(AccessScope::from)
            .collect()
    }
    async fn expires_at(&self) -> DateTime<Utc> {
        self.0.expires_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }
    /// Whether the grant allows access now.
    async fn live(&self) -> bool {
        self.0.is_live(Utc::now())
    }
}

/// One decision about a patient's data.
pub struct AccessLogEntry(pub medvault_vault::AccessLogEntry);

#[Object]
impl AccessLogEntry {
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    async fn actor(&self, ctx: &Context<'_>) -> Result<User> {
        load_user(ctx, self.0.actor_id).await
    }
    async fn actor_role(&self) -> Role {
        self.0.actor_role.into()
    }
    async fn action(&self) -> &str {
        &self.0.action
    }
    async fn record_id(&self) -> Option<ID> {
        self.0.record_id.map(|id| ID(id.to_string()))
    }
    async fn allowed(&self) -> bool {
        self.0.allowed
    }
    async fn reason(&self) -> Option<&str> {
        self.0.reason.as_deref()
    }
}

impl Cursor for Uuid {
    fn encode(&self) -> String {
        self.to_string()
    }
    fn decode(text: &str) -> Option<Self> {
        Uuid::parse_str(text).ok()
    }
}

impl Cursor for i64 {
    fn encode(&self) -> String {
        self.to_string()
    }
    fn decode(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

impl Cursor for (Uuid, i32) {
    fn encode(&self) -> String {
        format!("{}:{}", self.0, self.1)
    }
    fn decode(text: &str) -> Option<Self> {
        let (record, version) = text.split_once(':')?;
        Some((Uuid::parse_str(record).ok()?, version.parse().ok()?))
    }
}
