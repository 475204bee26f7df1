//! The vault's vocabulary: roles, access scopes, clinical codes and the shapes of the encrypted
//! payloads. Values are checked here when they are built, so the rest of the server handles only
//! valid ones.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Every kind of principal. A user has exactly one role, in one organization.
#[derive(Copy, Clone, Debug, Eq, PartialEq, Hash)]
pub enum Role {
    Admin,
    Doctor,
    Patient,
    Insurer,
    Researcher,
    Government,
    Auditor,
}

impl Role {
    /// Every role, in a fixed order.
    pub const ALL: [Role; 7] = [
        Role::Admin,
        Role::Doctor,
        Role::Patient,
        Role::Insurer,
        Role::Researcher,
        Role::Government,
        Role::Auditor,
    ];

    /// The role's name as stored in the `users.role` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Doctor => "doctor",
            Role::Patient => "patient",
            Role::Insurer => "insurer",
            Role::Researcher => "researcher",
            Role::Government => "government",
            Role::Auditor => "auditor",
        }
    }

    /// Parses a stored or command-line role name.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == name)
    }

    /// The kind of organization whose users of this role receive anonymized exports, if the
    /// role is a data recipient.
    pub fn recipient_kind(self) -> Option<OrganizationKind> {
        match self {
            Role::Insurer => Some(OrganizationKind::Insurer),
            Role::Researcher => Some(OrganizationKind::Research),
            Role::Government => Some(OrganizationKind::Government),
            Role::Admin | Role::Doctor | Role::Patient | Role::Auditor => None,
        }
    }
}

/// What an organization is: a member hospital, or a recipient of anonymized exports that
/// patients may give research consent to.
#[derive(Copy, Clone, Debug, Eq, PartialEq)]
pub enum OrganizationKind {
    Hospital,
    Insurer,
    Research,
    Government,
}

impl OrganizationKind {
    /// Every kind, in a fixed order.
    pub const ALL: [OrganizationKind; 4] = [
        OrganizationKind::Hospital,
        OrganizationKind::Insurer,
        OrganizationKind::Research,
        OrganizationKind::Government,
    ];

    /// The kind's name as stored in the `organizations.kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            OrganizationKind::Hospital => "hospital",
            OrganizationKind::Insurer => "insurer",
            OrganizationKind::Research => "research",
            OrganizationKind::Government => "government",
        }
    }

    /// Parses a stored kind.
    pub fn parse(name: &str) -> Option<OrganizationKind> {
        OrganizationKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

/// What a patient's grant allows, stored as a bit mask so that the consent circuit can check
/// "granted covers required" bitwise.
#[derive(Copy, Clone, Debug, Eq, PartialEq)]
pub enum AccessScope {
    /// View records, details and history.
    Read,
    /// Add, update and delete records.
    Write,
    /// Be included in anonymized exports to a recipient organization.
    Research,
}

impl AccessScope {
    /// This scope's bit in the stored mask.
    pub fn bit(self) -> i32 {
        match self {
            AccessScope::Read => 1,
            AccessScope::Write => 2,
            AccessScope::Research => 4,
        }
    }

    /// The mask covering all of `scopes`.
    pub fn mask(scopes: &[AccessScope]) -> i32 {
        scopes.iter().fold(0, |mask, scope| mask | scope.bit())
    }

    /// The scopes present in a stored mask.
    pub fn from_mask(mask: i32) -> Vec<AccessScope> {
        [AccessScope::Read, AccessScope::Write, AccessScope::Research]
            .into_iter()
            .filter(|scope| mask & scope.bit() != 0)
            .collect()
    }
}

/// The kind of a medical record.
#[derive(Copy, Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub enum RecordKind {
    Observation,
    Condition,
    Medication,
    Allergy,
    Note,
    LabResult,
}

/// The terminology a record's code comes from.
#[derive(Copy, Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub enum CodeSystem {
    /// Logical Observation Identifiers Names and Codes: `NNNNN-C`, C a mod-10 check digit.
    Loinc,
    /// ICD-10: a letter, two characters, then optionally a dot and up to four more.
    Icd10,
    /// SNOMED CT concept ids: 6 to 18 digits ending in a Verhoeff check digit.
    SnomedCt,
}

impl CodeSystem {
    /// The system's name as GraphQL and exports spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            CodeSystem::Loinc => "LOINC",
            CodeSystem::Icd10 => "ICD10",
            CodeSystem::SnomedCt => "SNOMED_CT",
        }
    }

    /// Whether `code` is well formed in this system, check digit included.
    pub fn accepts(self, code: &str) -> bool {
        match self {
            CodeSystem::Loinc => is_loinc(code),
            CodeSystem::Icd10 => is_icd10(code),
            CodeSystem::SnomedCt => is_snomed_ct(code),
        }
    }
}

fn is_loinc(code: &str) -> bool {
    let Some((body, check)) = code.split_once('-') else {
        return false;
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(body) || body.len() > 7 || check.len() != 1 || !all_digits(check) {
        return false;
    }
    // LOINC's mod 10: double the number formed by the odd positions (from the right), prepend
    // the even positions, and sum the digits.
    let digits: Vec<u8> = body.bytes().rev().map(|b| b - b'0').collect();
    let odd: String = digits
        .iter()
        .step_by(2)
        .map(|d| char::from(b'0' + d))
        .collect();
    let even: String = digits
        .iter()
        .skip(1)
        .step_by(2)
        .map(|d| char::from(b'0' + d))
        .collect();
    let doubled = odd.parse::<u64>().map(|n| n * 2).unwrap_or(0);
    let sum: u32 = format!("{even}{doubled}")
        .chars()
        .filter_map(|c| c.to_digit(10))
        .sum();
    let expected = (10 - sum % 10) % 10;
    check.parse::<u32>() == Ok(expected)
}

fn is_icd10(code: &str) -> bool {
    let (category, subcategory) = match code.split_once('.') {
        Some((category, sub)) => (category, Some(sub)),
        None => (code, None),
    };
    let bytes = category.as_bytes();
    let category_ok = bytes.len() == 3
        && bytes[0].is_ascii_uppercase()
        && bytes[1].is_ascii_digit()
        && (bytes[2].is_ascii_digit() || bytes[2].is_ascii_uppercase());
    let subcategory_ok = subcategory.is_none_or(|sub| {
        (1..=4).contains(&sub.len())
            && sub
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    });
    category_ok && subcategory_ok
}

fn is_snomed_ct(code: &str) -> bool {
    (6..=18).contains(&code.len())
        && code.bytes().all(|b| b.is_ascii_digit())
        && !code.starts_with('0')
        && verhoeff_valid(code)
}

/// The Verhoeff dihedral check used by SNOMED CT identifiers.
fn verhoeff_valid(digits: &str) -> bool {
    const D: [[u8; 10]; 10] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
        [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
        [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
        [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
        [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
        [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    ];
    const P: [[u8; 10]; 8] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
        [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
        [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
        [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
        [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
        [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
        [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
    ];
    let check = digits.bytes().rev().enumerate().fold(0u8, |c, (i, b)| {
        D[usize::from(c)][usize::from(P[i % 8][usize::from(b - b'0')])]
    });
    check == 0
}

/// Biological sex as recorded for clinical purposes.
#[derive(Copy, Clone, Debug, Eq, PartialEq, Serialize, Deserialize)]
pub enum Sex {
    Female,
    Male,
    Other,
    Unknown,
}

/// A patient's personal details: who they are and how to reach them. Edited by the patient.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PersonalDetails {
    pub full_name: String,
    pub date_of_birth: NaiveDate,
    pub sex: Sex,
    pub address: Option<String>,
    pub postal_code: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
}

/// A patient's standing medical details, set when the patient is registered.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MedicalDetails {
    pub blood_type: Option<String>,
    pub height_cm: Option<f64>,
    pub weight_kg: Option<f64>,
    pub allergies: Vec<String>,
    pub chronic_conditions: Vec<String>,
}

/// Everything the vault stores about a patient beyond their login, sealed as one versioned
/// payload.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PatientProfile {
    pub personal: PersonalDetails,
    pub medical: MedicalDetails,
}

/// The clinical content of one record version, sealed as one payload.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecordContent {
    pub kind: RecordKind,
    pub code_system: CodeSystem,
    pub code: String,
    pub value: Option<String>,
    pub unit: Option<String>,
    pub effective_at: DateTime<Utc>,
    pub note: Option<String>,
}

/// A value that is well typed but not acceptable; the message is safe to show the caller and
/// never contains the value itself.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub &'static str);

/// The earliest date the vault accepts for births and clinical events.
fn earliest_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or(NaiveDate::MIN)
}

/// Refuses `text` longer than `max` characters, with `message`.
fn at_most(text: Option<&str>, max: usize, message: &'static str) -> Result<(), InvalidInput> {
    match text {
        Some(text) if text.chars().count() > max => Err(InvalidInput(message)),
        _ => Ok(()),
    }
}

impl RecordContent {
    /// Checks every bound of a record: the lengths, the code against its system, and the time.
    /// The vault checks them itself, so that every transport gets the same answers.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), InvalidInput> {
        at_most(Some(&self.code), 32, "code is at most 32 characters")?;
        at_most(
            self.value.as_deref(),
            4096,
            "value is at most 4096 characters",
        )?;
        at_most(self.unit.as_deref(), 32, "unit is at most 32 characters")?;
        at_most(
            self.note.as_deref(),
            8192,
            "note is at most 8192 characters",
        )?;
        if !self.code_system.accepts(&self.code) {
            return Err(InvalidInput("code is not a valid code of its code system"));
        }
        if self.effective_at.date_naive() < earliest_date() {
            return Err(InvalidInput("effectiveAt is before 1900"));
        }
        if self.effective_at > now + chrono::Duration::days(1) {
            return Err(InvalidInput("effectiveAt is in the future"));
        }
        Ok(())
    }
}

impl PersonalDetails {
    /// Checks the lengths and that the birth date is plausible.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), InvalidInput> {
        at_most(
            Some(&self.full_name),
            200,
            "fullName is at most 200 characters",
        )?;
        at_most(
            self.address.as_deref(),
            500,
            "address is at most 500 characters",
        )?;
        at_most(
            self.postal_code.as_deref(),
            16,
            "postalCode is at most 16 characters",
        )?;
        at_most(self.phone.as_deref(), 32, "phone is at most 32 characters")?;
        at_most(
            self.email.as_deref(),
            254,
            "email is at most 254 characters",
        )?;
        if self
            .email
            .as_deref()
            .is_some_and(|email| !email.contains('@'))
        {
            return Err(InvalidInput("email is not an email address"));
        }
        if self.date_of_birth < earliest_date() || self.date_of_birth > now.date_naive() {
            return Err(InvalidInput(
                "dateOfBirth must be between 1900-01-01 and today",
            ));
        }
        if self.full_name.trim().is_empty() {
            return Err(InvalidInput("fullName is blank"));
        }
        Ok(())
    }

    /// The patient's year of birth: what an admin's limited listing shows.
    pub fn birth_year(&self) -> i32 {
        self.date_of_birth.year()
    }
}

impl MedicalDetails {
    /// Checks the blood type is one of the eight ABO/Rh groups, and the measures and lists are
    /// within their bounds.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        const BLOOD_TYPES: [&str; 8] = ["A+", "A-", "B+", "B-", "AB+", "AB-", "O+", "O-"];
        if self
            .height_cm
            .is_some_and(|cm| !(20.0..=280.0).contains(&cm))
        {
            return Err(InvalidInput("heightCm must be between 20 and 280"));
        }
        if self
            .weight_kg
            .is_some_and(|kg| !(0.2..=700.0).contains(&kg))
        {
            return Err(InvalidInput("weightKg must be between 0.2 and 700"));
        }
        for list in [&self.allergies, &self.chronic_conditions] {
            if list.len() > 50 || list.iter().any(|item| item.chars().count() > 200) {
                return Err(InvalidInput(
                    "allergies and chronicConditions hold at most 50 items of 200 characters",
                ));
            }
        }
        match &self.blood_type {
            Some(blood_type) if !BLOOD_TYPES.contains(&blood_type.as_str()) => Err(InvalidInput(
                "bloodType must be one of A+, A-, B+, B-, AB+, AB-, O+, O-",
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_loinc_codes_pass_and_a_wrong_check_digit_fails() {
        for code in [
            "2345-7", "718-7", "4548-4", "8480-6", "8462-4", "2160-0", "8867-4",
        ] {
            assert!(CodeSystem::Loinc.accepts(code), "{code}");
        }
        for code in ["2345-8", "718", "abc-1", "-1", "2345-", "12345678-1"] {
            assert!(!CodeSystem::Loinc.accepts(code), "{code}");
        }
    }

    #[test]
    fn real_snomed_codes_pass_and_a_wrong_check_digit_fails() {
        for code in ["44054006", "38341003", "195967001", "73211009", "22298006"] {
            assert!(CodeSystem::SnomedCt.accepts(code), "{code}");
        }
        for code in ["44054007", "12345", "0440540060", "4405400a"] {
            assert!(!CodeSystem::SnomedCt.accepts(code), "{code}");
        }
    }

    #[test]
    fn icd10_codes_follow_the_category_pattern() {
        for code in ["E11", "E11.9", "I10", "J45.909", "C4A.1", "U07.1"] {
            assert!(CodeSystem::Icd10.accepts(code), "{code}");
        }
        for code in ["e11", "E1", "E11.", "E11.12345", "11E", "E11-9"] {
            assert!(!CodeSystem::Icd10.accepts(code), "{code}");
        }
    }

    #[test]
    fn the_vault_checks_every_bound_itself() {
        let now = Utc::now();
        let record = RecordContent {
            kind: RecordKind::LabResult,
            code_system: CodeSystem::Loinc,
            code: "2345-7".into(),
            value: Some("95".into()),
            unit: Some("mg/dL".into()),
            effective_at: now,
            note: None,
        };
        assert!(record.validate(now).is_ok());
        let long_note = RecordContent {
            note: Some("x".repeat(8193)),
            ..record.clone()
        };
        assert!(long_note.validate(now).is_err());
        let long_code = RecordContent {
            code: "1".repeat(33),
            ..record
        };
        assert!(long_code.validate(now).is_err());
        let personal = PersonalDetails {
            full_name: "Ada Example".into(),
            date_of_birth: NaiveDate::from_ymd_opt(1984, 3, 9).unwrap(),
            sex: Sex::Female,
            address: None,
            postal_code: None,
            phone: None,
            email: Some("ada@example.org".into()),
        };
        assert!(personal.validate(now).is_ok());
        let no_at = PersonalDetails {
            email: Some("ada.example.org".into()),
            ..personal.clone()
        };
        assert!(no_at.validate(now).is_err());
        let long_phone = PersonalDetails {
            phone: Some("1".repeat(33)),
            ..personal
        };
        assert!(long_phone.validate(now).is_err());
        let heavy = MedicalDetails {
            weight_kg: Some(701.0),
            ..MedicalDetails::default()
        };
        assert!(heavy.validate().is_err());
        let many = MedicalDetails {
            allergies: vec!["dust".into(); 51],
            ..MedicalDetails::default()
        };
        assert!(many.validate().is_err());
    }

    #[test]
    fn scope_masks_round_trip() {
        let mask = AccessScope::mask(&[AccessScope::Read, AccessScope::Write]);
        assert_eq!(mask, 3);
        assert_eq!(
            AccessScope::from_mask(mask),
            vec![AccessScope::Read, AccessScope::Write]
        );
        assert_eq!(AccessScope::from_mask(1), vec![AccessScope::Read]);
    }
}
