//! What the server hands to an export: decrypted rows of consenting patients, direct identifiers
//! included, so that dropping them is this crate's job and is tested here.

use chrono::{DateTime, NaiveDate, Utc};

/// One patient, as the vault knows them.
#[derive(Clone, Debug)]
pub struct Person {
    /// The vault's patient id; never exported, only pseudonymized.
    pub patient_id: [u8; 16],
    /// Birth date: a quasi-identifier, generalized.
    pub date_of_birth: NaiveDate,
    /// Sex as recorded (`female`, `male`, `other`, `unknown`).
    pub sex: String,
    /// Postal code: a quasi-identifier, generalized to 3 digits or removed.
    pub postal_code: Option<String>,
}

/// Which table a clinical event belongs to.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash)]
pub enum EventKind {
    /// Vital signs, observations and lab results: the `measurement` table.
    Measurement,
    /// Diagnoses: the `condition_occurrence` table.
    Condition,
    /// Prescriptions: the `drug_exposure` table.
    Medication,
}

/// One clinical event of a person.
#[derive(Clone, Debug)]
pub struct ClinicalEvent {
    /// Whose event (the vault's id; pseudonymized on export).
    pub patient_id: [u8; 16],
    /// Its table.
    pub kind: EventKind,
    /// The terminology (`LOINC`, `ICD10`, `SNOMED_CT`).
    pub code_system: String,
    /// The code.
    pub code: String,
    /// The value as entered; exported only for measurements and only if numeric, since free
    /// text can carry identifiers.
    pub value: Option<String>,
    /// The unit of a measurement.
    pub unit: Option<String>,
    /// When it happened; generalized per policy.
    pub effective_at: DateTime<Utc>,
}
