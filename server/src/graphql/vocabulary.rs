//! The vault's vocabulary as GraphQL spells it: its enums, and the details and record content
//! that are both answered and taken as input, with their input validators. Each converts to and
//! from the vault's domain type here, so the vault knows nothing of GraphQL.

use async_graphql::{Enum, InputObject, SimpleObject};
use chrono::{DateTime, NaiveDate, Utc};
use medvault_vault::domain;

/// Every kind of principal. A user has exactly one role, in one organization.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "domain::Role")]
pub enum Role {
    Admin,
    Doctor,
    Patient,
    Insurer,
    Researcher,
    Government,
    Auditor,
}

/// What an organization is: a member hospital, or a recipient of anonymized exports that
/// patients may give research consent to.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "domain::OrganizationKind")]
pub enum OrganizationKind {
    Hospital,
    Insurer,
    Research,
    Government,
}

/// What a patient's grant allows, stored as a bit mask so that the consent circuit can check
/// "granted covers required" bitwise.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "domain::AccessScope")]
pub enum AccessScope {
    /// View records, details and history.
    Read,
    /// Add, update and delete records.
    Write,
    /// Be included in anonymized exports to a recipient organization.
    Research,
}

/// The kind of a medical record.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "domain::RecordKind")]
pub enum RecordKind {
    Observation,
    Condition,
    Medication,
    Allergy,
    Note,
    LabResult,
}

/// The terminology a record's code comes from.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "domain::CodeSystem")]
pub enum CodeSystem {
    /// Logical Observation Identifiers Names and Codes: `NNNNN-C`, C a mod-10 check digit.
    Loinc,
    /// ICD-10: a letter, two characters, then optionally a dot and up to four more.
    #[graphql(name = "ICD10")]
    Icd10,
    /// SNOMED CT concept ids: 6 to 18 digits ending in a Verhoeff check digit.
    SnomedCt,
}

/// Biological sex as recorded for clinical purposes.
#[derive(Enum, Copy, Clone, Debug, Eq, PartialEq)]
#[graphql(remote = "domain::Sex")]
pub enum Sex {
    Female,
    Male,
    Other,
    Unknown,
}

/// A patient's personal details: who they are and how to reach them. Edited by the patient.
#[derive(SimpleObject, InputObject, Clone, Debug)]
#[graphql(input_name = "PersonalDetailsInput")]
pub struct PersonalDetails {
    #[graphql(validator(min_length = 1, max_length = 200))]
    pub full_name: String,
    pub date_of_birth: NaiveDate,
    pub sex: Sex,
    #[graphql(validator(max_length = 500))]
    pub address: Option<String>,
    #[graphql(validator(max_length = 16))]
    pub postal_code: Option<String>,
    #[graphql(validator(max_length = 32))]
    pub phone: Option<String>,
    #[graphql(validator(email, max_length = 254))]
    pub email: Option<String>,
}

impl From<PersonalDetails> for domain::PersonalDetails {
    fn from(details: PersonalDetails) -> Self {
        domain::PersonalDetails {
            full_name: details.full_name,
            date_of_birth: details.date_of_birth,
            sex: details.sex.into(),
            address: details.address,
            postal_code: details.postal_code,
            phone: details.phone,
            email: details.email,
        }
    }
}

impl From<&domain::PersonalDetails> for PersonalDetails {
    fn from(details: &domain::PersonalDetails) -> Self {
        PersonalDetails {
            full_name: details.full_name.clone(),
            date_of_birth: details.date_of_birth,
            sex: details.sex.into(),
            address: details.address.clone(),
            postal_code: details.postal_code.clone(),
            phone: details.phone.clone(),
            email: details.email.clone(),
        }
    }
}

/// A patient's standing medical details, set when the patient is registered.
#[derive(SimpleObject, InputObject, Clone, Debug, Default)]
#[graphql(input_name = "MedicalDetailsInput")]
pub struct MedicalDetails {
    #[graphql(validator(max_length = 3))]
    pub blood_type: Option<String>,
    #[graphql(validator(minimum = 20, maximum = 280))]
    pub height_cm: Option<f64>,
    #[graphql(validator(minimum = 0.2, maximum = 700))]
    pub weight_kg: Option<f64>,
    #[graphql(validator(max_items = 50, list, max_length = 200))]
    pub allergies: Vec<String>,
    #[graphql(validator(max_items = 50, list, max_length = 200))]
    pub chronic_conditions: Vec<String>,
}

impl From<MedicalDetails> for domain::MedicalDetails {
    fn from(details: MedicalDetails) -> Self {
        domain::MedicalDetails {
            blood_type: details.blood_type,
            height_cm: details.height_cm,
            weight_kg: details.weight_kg,
            allergies: details.allergies,
            chronic_conditions: details.chronic_conditions,
        }
    }
}

impl From<&domain::MedicalDetails> for MedicalDetails {
    fn from(details: &domain::MedicalDetails) -> Self {
        MedicalDetails {
            blood_type: details.blood_type.clone(),
            height_cm: details.height_cm,
            weight_kg: details.weight_kg,
            allergies: details.allergies.clone(),
            chronic_conditions: details.chronic_conditions.clone(),
        }
    }
}

/// The clinical content of one record version, sealed as one payload.
#[derive(SimpleObject, InputObject, Clone, Debug)]
#[graphql(input_name = "MedicalRecordInput", name = "MedicalRecordContent")]
pub struct RecordContent {
    pub kind: RecordKind,
    pub code_system: CodeSystem,
    #[graphql(validator(min_length = 1, max_length = 32))]
    pub code: String,
    #[graphql(validator(max_length = 4096))]
    pub value: Option<String>,
    #[graphql(validator(max_length = 32))]
    pub unit: Option<String>,
    pub effective_at: DateTime<Utc>,
    #[graphql(validator(max_length = 8192))]
    pub note: Option<String>,
}

impl From<RecordContent> for domain::RecordContent {
    fn from(content: RecordContent) -> Self {
        domain::RecordContent {
            kind: content.kind.into(),
            code_system: content.code_system.into(),
            code: content.code,
            value: content.value,
            unit: content.unit,
            effective_at: content.effective_at,
            note: content.note,
        }
    }
}

impl From<&domain::RecordContent> for RecordContent {
    fn from(content: &domain::RecordContent) -> Self {
        RecordContent {
            kind: content.kind.into(),
            code_system: content.code_system.into(),
            code: content.code.clone(),
            value: content.value.clone(),
            unit: content.unit.clone(),
            effective_at: content.effective_at,
            note: content.note.clone(),
        }
    }
}
