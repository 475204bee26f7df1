//! The GraphQL face of anonymized exports: policy and ceiling inputs, and views of jobs and
//! manifests. The exporter crate knows nothing of GraphQL; the conversions live here.

use super::anchoring::{Anchoring, ChainView};
use super::types::{Organization, User};
use super::vocabulary::Role;
use crate::error::ApiError;
use async_graphql::{Context, Enum, InputObject, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use medvault_anchor_chain::bytes::Hash32;
use medvault_anchor_chain::entry::Entry;
use medvault_exporter::policy::{
    BirthGeneralization, DateGeneralization, PseudonymScope, ZipGeneralization,
};
use medvault_exporter::DateDetail;
use medvault_exporter::{Dataset, ExportCeiling, ExportPolicy};
use medvault_vault::exports::{self, HospitalRules, JobStatus, StoredCeiling};
use medvault_vault::HospitalCeiling;
use uuid::Uuid;

/// What an export contains besides the `person` table.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(name = "ExportDataset")]
pub enum ExportDataset {
    /// Only `person`.
    Patients,
    /// `person` and `measurement` (observations, lab results, vital signs).
    Observations,
    /// `person` and `condition_occurrence`.
    Conditions,
    /// `person` and `drug_exposure`.
    Medications,
}

impl From<ExportDataset> for Dataset {
    fn from(dataset: ExportDataset) -> Self {
        match dataset {
            ExportDataset::Patients => Dataset::Patients,
            ExportDataset::Observations => Dataset::Observations,
            ExportDataset::Conditions => Dataset::Conditions,
            ExportDataset::Medications => Dataset::Medications,
        }
    }
}

impl From<Dataset> for ExportDataset {
    fn from(dataset: Dataset) -> Self {
        match dataset {
            Dataset::Patients => ExportDataset::Patients,
            Dataset::Observations => ExportDataset::Observations,
            Dataset::Conditions => ExportDataset::Conditions,
            Dataset::Medications => ExportDataset::Medications,
        }
    }
}

/// How event dates are generalized in an export.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum ExportDates {
    /// The year only (HIPAA Safe Harbor).
    Year,
    /// Year and month.
    Month,
    /// The day, shifted per person by up to `maxShiftDays` either way, keeping intervals.
    ShiftPerPerson,
}

/// How fine dates may be, for a ceiling.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(name = "ExportDateDetail")]
pub enum ExportDateDetail {
    Year,
    Month,
    Day,
}

impl From<ExportDateDetail> for DateDetail {
    fn from(detail: ExportDateDetail) -> Self {
        match detail {
            ExportDateDetail::Year => DateDetail::Year,
            ExportDateDetail::Month => DateDetail::Month,
            ExportDateDetail::Day => DateDetail::Day,
        }
    }
}

impl From<DateDetail> for ExportDateDetail {
    fn from(detail: DateDetail) -> Self {
        match detail {
            DateDetail::Year => ExportDateDetail::Year,
            DateDetail::Month => ExportDateDetail::Month,
            DateDetail::Day => ExportDateDetail::Day,
        }
    }
}

/// What to export and how anonymous it must be. HIPAA Safe Harbor's direct identifiers are
/// always removed and ids always replaced by keyed pseudonyms.
#[derive(InputObject)]
pub struct ExportPolicyInput {
    dataset: ExportDataset,
    /// Event columns to include, from code_system, code, value, unit, event_date; all if empty.
    #[graphql(default, validator(max_items = 5))]
    columns: Vec<String>,
    /// Age at export in bands of this many years (1 to 50); omit for the year of birth.
    age_band_years: Option<u32>,
    /// Keep the first three ZIP digits (000 for Safe Harbor's sparse areas); else no postal code.
    #[graphql(default = true)]
    zip3: bool,
    /// Export sex as a quasi-identifier.
    #[graphql(default = true)]
    include_sex: bool,
    dates: ExportDates,
    /// Largest per-person date shift with SHIFT_PER_PERSON (1 to 365 days).
    max_shift_days: Option<u32>,
    /// The event column checked for l-diversity, usually `code`.
    #[graphql(validator(max_length = 32))]
    sensitive: Option<String>,
    /// Minimum persons per equivalence class.
    #[graphql(default = 5)]
    k: u32,
    /// Minimum distinct sensitive values per class.
    l: Option<u32>,
    /// Largest share of persons that may be suppressed, 0 to 1.
    #[graphql(default = 0.05)]
    max_suppression: f64,
    /// Pseudonyms stable across this organization's exports (so they can be joined); by
    /// default each export has its own.
    #[graphql(default = false)]
    per_recipient_pseudonyms: bool,
}

impl ExportPolicyInput {
    /// The exporter's policy, for a recipient organization (named in per-recipient pseudonym
    /// keys). Validation is the exporter's.
    pub fn into_policy(self, organization: Uuid) -> ExportPolicy {
        ExportPolicy {
            dataset: self.dataset.into(),
            columns: self.columns,
            birth: match self.age_band_years {
                Some(width) => BirthGeneralization::AgeBand { width },
                None => BirthGeneralization::BirthYear,
            },
            zip: if self.zip3 {
                ZipGeneralization::Zip3
            } else {
                ZipGeneralization::Remove
            },
            include_sex: self.include_sex,
            dates: match self.dates {
                ExportDates::Year => DateGeneralization::Year,
                ExportDates::Month => DateGeneralization::Month,
                ExportDates::ShiftPerPerson => DateGeneralization::ShiftPerPerson {
                    max_days: self.max_shift_days.unwrap_or(0),
                },
            },
            sensitive: self.sensitive,
            k: self.k as usize,
            l: self.l.map(|l| l as usize),
            max_suppression: self.max_suppression,
            pseudonym_scope: if self.per_recipient_pseudonyms {
                PseudonymScope::PerRecipient {
                    recipient: organization.to_string(),
                }
            } else {
                PseudonymScope::PerExport
            },
        }
    }
}

/// The most detail and the least anonymity exports requested by one role may ask for, of the
/// patients of the hospital that set it.
#[derive(InputObject, SimpleObject)]
#[graphql(input_name = "ExportCeilingInput", name = "ExportCeilingRules")]
pub struct ExportCeilingRules {
    /// Data sets the role may request.
    #[graphql(validator(min_items = 1, max_items = 4))]
    datasets: Vec<ExportDataset>,
    /// The smallest k allowed (at least 2).
    min_k: u32,
    /// If set, every export must check l-diversity with at least this l.
    min_l: Option<u32>,
    /// The largest suppression share allowed, 0 to 1.
    max_suppression: f64,
    /// The finest birth generalization in years: 1 allows years of birth, 10 only decades.
    min_birth_granularity_years: u32,
    /// Whether 3-digit ZIPs may be exported.
    allow_zip3: bool,
    /// Whether sex may be exported.
    allow_sex: bool,
    /// The finest event dates allowed.
    finest_dates: ExportDateDetail,
    /// Whether pseudonyms may be stable across a recipient's exports.
    allow_per_recipient_pseudonyms: bool,
}

impl From<ExportCeilingRules> for ExportCeiling {
    fn from(rules: ExportCeilingRules) -> Self {
        ExportCeiling {
            datasets: rules.datasets.into_iter().map(Dataset::from).collect(),
            min_k: rules.min_k as usize,
            min_l: rules.min_l.map(|l| l as usize),
            max_suppression: rules.max_suppression,
            min_birth_granularity_years: rules.min_birth_granularity_years,
            allow_zip3: rules.allow_zip3,
            allow_sex: rules.allow_sex,
            finest_dates: rules.finest_dates.into(),
            allow_per_recipient_pseudonyms: rules.allow_per_recipient_pseudonyms,
        }
    }
}

impl From<&ExportCeiling> for ExportCeilingRules {
    fn from(ceiling: &ExportCeiling) -> Self {
        ExportCeilingRules {
            datasets: ceiling
                .datasets
                .iter()
                .map(|dataset| ExportDataset::from(*dataset))
                .collect(),
            min_k: u32::try_from(ceiling.min_k).unwrap_or(u32::MAX),
            min_l: ceiling.min_l.map(|l| u32::try_from(l).unwrap_or(u32::MAX)),
            max_suppression: ceiling.max_suppression,
            min_birth_granularity_years: ceiling.min_birth_granularity_years,
            allow_zip3: ceiling.allow_zip3,
            allow_sex: ceiling.allow_sex,
            finest_dates: ceiling.finest_dates.into(),
            allow_per_recipient_pseudonyms: ceiling.allow_per_recipient_pseudonyms,
        }
    }
}

/// A role's export ceiling as a hospital's admin set it: it bounds exports of that hospital's
/// patients only.
pub struct ExportCeilingView(pub StoredCeiling);

#[Object(name = "ExportCeiling")]
impl ExportCeilingView {
    /// The hospital whose patients it governs.
    async fn hospital(&self, ctx: &Context<'_>) -> Result<Organization> {
        super::types::load_organization(ctx, self.0.hospital).await
    }
    async fn role(&self) -> Role {
        self.0.role.into()
    }
    async fn rules(&self) -> ExportCeilingRules {
        ExportCeilingRules::from(&self.0.ceiling)
    }
    async fn set_by(&self, ctx: &Context<'_>) -> Result<User> {
        super::types::load_user(ctx, self.0.set_by).await
    }
    async fn set_at(&self) -> DateTime<Utc> {
        self.0.set_at
    }
}

/// A member hospital and the ceiling it set for the caller's role.
pub struct HospitalExportCeiling(pub HospitalRules);

#[Object]
impl HospitalExportCeiling {
    async fn hospital(&self, ctx: &Context<'_>) -> Result<Organization> {
        super::types::load_organization(ctx, self.0.hospital).await
    }
    /// What a policy must meet for this hospital's consenting patients to be exported; null if
    /// the hospital set none for the role, and then its patients are left out of exports.
    async fn ceiling(&self) -> Option<ExportCeilingView> {
        self.0.ceiling.clone().map(ExportCeilingView)
    }
}

/// A hospital an export drew consenting patients from, and the ceiling they were exported
/// under.
pub struct ExportJobHospital(HospitalCeiling);

#[Object]
impl ExportJobHospital {
    async fn hospital(&self, ctx: &Context<'_>) -> Result<Organization> {
        super::types::load_organization(ctx, self.0.hospital).await
    }
    /// Whether its consenting patients were exported: only if it had set a ceiling for the role.
    async fn included(&self) -> bool {
        self.0.ceiling.is_some()
    }
    /// The ceiling its patients were exported under, as it stood when the export was taken.
    async fn rules(&self) -> Option<ExportCeilingRules> {
        self.0.ceiling.as_ref().map(ExportCeilingRules::from)
    }
}

/// Where an export job is.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
pub enum ExportJobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl From<JobStatus> for ExportJobStatus {
    fn from(status: JobStatus) -> Self {
        match status {
            JobStatus::Queued => ExportJobStatus::Queued,
            JobStatus::Running => ExportJobStatus::Running,
            JobStatus::Succeeded => ExportJobStatus::Succeeded,
            JobStatus::Failed => ExportJobStatus::Failed,
        }
    }
}

/// One requested export.
pub struct ExportJob(pub exports::ExportJob);

#[Object]
impl ExportJob {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn status(&self) -> ExportJobStatus {
        self.0.status.into()
    }
    /// Work done, in consenting patients read per pass over the data.
    async fn progress_done(&self) -> i64 {
        self.0.progress_done
    }
    /// Work in all; 0 until the job has read its cohort.
    async fn progress_total(&self) -> i64 {
        self.0.progress_total
    }
    /// Why the job failed; nothing was written.
    async fn failure(&self) -> Option<&str> {
        self.0.failure.as_deref()
    }
    async fn requested_by(&self, ctx: &Context<'_>) -> Result<User> {
        super::types::load_user(ctx, self.0.requested_by).await
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
    /// The policy the export runs under, as JSON.
    async fn policy(&self) -> Result<String> {
        Ok(serde_json::to_string(&self.0.policy)?)
    }
    /// The signed manifest, once the job succeeded.
    async fn manifest(&self) -> Option<ExportManifest<'_>> {
        self.0.manifest.as_ref().map(|manifest| ExportManifest {
            job: self.0.id,
            manifest,
        })
    }
    /// SHA3-256 (hex) of manifest.json as written: the hash anchored on the chain, for
    /// `medvault audit export`.
    async fn manifest_sha3(&self) -> Option<String> {
        self.0.manifest_sha3.as_ref().map(hex::encode)
    }
    /// The chain height the manifest hash was anchored at, once it is.
    async fn anchored_height(&self) -> Option<i64> {
        self.0.anchored_height
    }
    /// Where the manifest hash is anchored: pending, or its block and inclusion proof; null
    /// until the job succeeded.
    async fn anchoring(&self, ctx: &Context<'_>) -> Result<Option<Anchoring>> {
        let Some(manifest_sha3) = &self.0.manifest_sha3 else {
            return Ok(None);
        };
        let manifest_hash: [u8; 32] = manifest_sha3.as_slice().try_into().map_err(|_| {
            ApiError::Internal("a stored manifest hash is not 32 bytes".into()).to_graphql()
        })?;
        let entry = Entry::ExportManifest {
            manifest_hash: Hash32(manifest_hash),
        };
        Ok(Some(ChainView::anchoring_of(ctx, entry).await?))
    }
    /// The hospitals whose patients consented, each with the ceiling its patients were exported
    /// under or left out for want of one; empty until the job succeeded.
    async fn hospitals(&self) -> Vec<ExportJobHospital> {
        self.0
            .hospitals
            .iter()
            .cloned()
            .map(ExportJobHospital)
            .collect()
    }
    /// Where to GET manifest.json (with the bearer token), once the job succeeded.
    async fn manifest_path(&self) -> Option<String> {
        self.0
            .manifest
            .as_ref()
            .map(|_| download_path(self.0.id, medvault_exporter::manifest::MANIFEST_FILE))
    }
}

fn download_path(job: Uuid, file: &str) -> String {
    format!("/exports/{job}/{file}")
}

/// What an export holds and the evidence it rests on, as signed by the exporting server.
pub struct ExportManifest<'a> {
    job: Uuid,
    manifest: &'a medvault_exporter::Manifest,
}

#[Object]
impl ExportManifest<'_> {
    async fn export_id(&self) -> &str {
        &self.manifest.export_id
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.manifest.created_at
    }
    /// The exporting organization.
    async fn organization(&self) -> &str {
        &self.manifest.organization
    }
    /// Consenting persons read.
    async fn persons_in(&self) -> u64 {
        self.manifest.persons_in
    }
    /// Persons exported.
    async fn persons_out(&self) -> u64 {
        self.manifest.persons_out
    }
    /// Persons suppressed to reach k and l.
    async fn persons_suppressed(&self) -> u64 {
        self.manifest.persons_suppressed
    }
    async fn events_in(&self) -> u64 {
        self.manifest.events_in
    }
    async fn events_out(&self) -> u64 {
        self.manifest.events_out
    }
    /// The smallest equivalence class in the output.
    async fn k_achieved(&self) -> u64 {
        self.manifest.k_achieved
    }
    /// The fewest distinct sensitive values in a class, if l was checked.
    async fn l_achieved(&self) -> Option<u64> {
        self.manifest.l_achieved
    }
    /// Merkle root (hex) over the research consents the export rests on.
    async fn consent_root(&self) -> &str {
        &self.manifest.consent_root
    }
    /// The chain height anchored when the export was taken.
    async fn chain_height(&self) -> u64 {
        self.manifest.chain_height
    }
    /// The Ed25519 key (hex) the manifest is signed with.
    async fn signer_public_key(&self) -> &str {
        &self.manifest.signer_public_key
    }
    async fn files(&self) -> Vec<ExportFile> {
        self.manifest
            .files
            .iter()
            .map(|file| ExportFile {
                name: file.name.clone(),
                rows: file.rows,
                bytes: file.bytes,
                sha3_256: file.sha3_256.clone(),
                download_path: download_path(self.job, &file.name),
            })
            .collect()
    }
}

/// One file of an export.
#[derive(SimpleObject)]
pub struct ExportFile {
    name: String,
    rows: u64,
    bytes: u64,
    /// SHA3-256 (hex) of the file, as the manifest records it.
    sha3_256: String,
    /// Where to GET it (with the bearer token).
    download_path: String,
}
