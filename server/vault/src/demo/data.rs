//! The demo's data tables (hospitals, names, and real LOINC, ICD-10 and SNOMED CT codes with
//! plausible values) and the synthetic patients and records drawn from them. Pure: nothing here
//! touches the vault.

use crate::domain::{CodeSystem, MedicalDetails, PersonalDetails, RecordContent, RecordKind, Sex};
use chrono::{Duration, NaiveDate, Utc};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The 3-digit ZIP areas each hospital's patients live in, so that exports generalized to ZIP3
/// form classes as a real catchment would.
const CATCHMENT_ZIP3: [[&str; 2]; 4] = [
    ["021", "024"],
    ["100", "112"],
    ["606", "605"],
    ["941", "945"],
];

pub(super) const HOSPITALS: [&str; 4] = [
    "St. Mary's General Hospital",
    "Riverside University Medical Center",
    "Northgate Community Hospital",
    "Lakeside Children's Hospital",
];

pub(super) const SPECIALTIES: [&str; 6] = [
    "Cardiology",
    "Endocrinology",
    "General Practice",
    "Internal Medicine",
    "Nephrology",
    "Pulmonology",
];

pub(super) const FIRST_NAMES: [&str; 16] = [
    "Amara", "Bilal", "Chen", "Dana", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kavya",
    "Liam", "Mei", "Nadia", "Oscar", "Priya",
];

pub(super) const LAST_NAMES: [&str; 16] = [
    "Okafor",
    "Haddad",
    "Li",
    "Novak",
    "Yilmaz",
    "Rahimi",
    "Larsen",
    "Tanaka",
    "Duarte",
    "Weber",
    "Iyer",
    "Walsh",
    "Wong",
    "Petrova",
    "Lindqvist",
    "Sharma",
];

/// A measurement code with its unit and plausible range.
struct Measurement {
    kind: RecordKind,
    loinc: &'static str,
    unit: &'static str,
    low: f64,
    high: f64,
    decimals: usize,
}

const MEASUREMENTS: [Measurement; 14] = [
    Measurement {
        kind: RecordKind::Observation,
        loinc: "8867-4",
        unit: "/min",
        low: 52.0,
        high: 110.0,
        decimals: 0,
    },
    Measurement {
        kind: RecordKind::Observation,
        loinc: "8480-6",
        unit: "mm[Hg]",
        low: 98.0,
        high: 168.0,
        decimals: 0,
    },
    Measurement {
        kind: RecordKind::Observation,
        loinc: "8462-4",
        unit: "mm[Hg]",
        low: 58.0,
        high: 102.0,
        decimals: 0,
    },
    Measurement {
        kind: RecordKind::Observation,
        loinc: "8310-5",
        unit: "Cel",
        low: 36.0,
        high: 38.6,
        decimals: 1,
    },
    Measurement {
        kind: RecordKind::Observation,
        loinc: "9279-1",
        unit: "/min",
        low: 11.0,
        high: 24.0,
        decimals: 0,
    },
    Measurement {
        kind: RecordKind::Observation,
        loinc: "29463-7",
        unit: "kg",
        low: 48.0,
        high: 118.0,
        decimals: 1,
    },
    Measurement {
        kind: RecordKind::LabResult,
        loinc: "2345-7",
        unit: "mg/dL",
        low: 70.0,
        high: 210.0,
        decimals: 0,
    },
    Measurement {
        kind: RecordKind::LabResult,
        loinc: "4548-4",
        unit: "%",
        low: 4.6,
        high: 9.8,
        decimals: 1,
    },
    Measurement {
        kind: RecordKind::LabResult,
        loinc: "718-7",
        unit: "g/dL",
        low: 10.5,
        high: 17.2,
        decimals: 1,
    },
    Measurement {
        kind: RecordKind::LabResult,
        loinc: "2160-0",
        unit: "mg/dL",
        low: 0.5,
        high: 1.6,
        decimals: 2,
    },
    Measurement {
        kind: RecordKind::LabResult,
        loinc: "2093-3",
        unit: "mg/dL",
        low: 140.0,
        high: 280.0,
        decimals: 0,
    },
    Measurement {
        kind: RecordKind::LabResult,
        loinc: "2571-8",
        unit: "mg/dL",
        low: 50.0,
        high: 300.0,
        decimals: 0,
    },
    Measurement {
        kind: RecordKind::LabResult,
        loinc: "6690-2",
        unit: "10*3/uL",
        low: 3.8,
        high: 11.5,
        decimals: 1,
    },
    Measurement {
        kind: RecordKind::LabResult,
        loinc: "2951-2",
        unit: "mmol/L",
        low: 133.0,
        high: 147.0,
        decimals: 0,
    },
];

/// ICD-10 diagnoses with their names.
const CONDITIONS: [(&str, &str); 8] = [
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("I10", "Essential (primary) hypertension"),
    ("J45.9", "Asthma, unspecified"),
    ("E78.5", "Hyperlipidaemia, unspecified"),
    (
        "K21.9",
        "Gastro-oesophageal reflux disease without oesophagitis",
    ),
    ("N18.3", "Chronic kidney disease, stage 3"),
    (
        "J44.9",
        "Chronic obstructive pulmonary disease, unspecified",
    ),
    ("F32.9", "Depressive episode, unspecified"),
];

/// SNOMED CT substances prescribed, and allergies.
const MEDICATIONS: [(&str, &str); 3] = [
    (
        "387517004",
        "Paracetamol 500 mg, 1 tablet up to 4 times daily",
    ),
    ("372687004", "Amoxicillin 500 mg, 3 times daily for 7 days"),
    ("387458008", "Aspirin 75 mg once daily"),
];

const ALLERGIES: [(&str, &str); 3] = [
    ("91936005", "Allergy to penicillin"),
    ("91935009", "Allergy to peanut"),
    ("300913006", "Shellfish allergy"),
];

pub(super) fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    items
        .choose(rng)
        .unwrap_or_else(|| unreachable!("demo tables are not empty"))
}

pub(super) fn synthetic_patient(
    rng: &mut ChaCha8Rng,
    hospital: usize,
    index: usize,
) -> (String, PersonalDetails, MedicalDetails) {
    let first = pick(rng, &FIRST_NAMES);
    let last = pick(rng, &LAST_NAMES);
    let birth = NaiveDate::from_ymd_opt(
        rng.gen_range(1935..2015),
        rng.gen_range(1..=12),
        rng.gen_range(1..=28),
    )
    .unwrap_or_default();
    let personal = PersonalDetails {
        full_name: format!("{first} {last}"),
        date_of_birth: birth,
        sex: *pick(
            rng,
            &[Sex::Female, Sex::Male, Sex::Female, Sex::Male, Sex::Other],
        ),
        address: Some(format!(
            "{} {} Street",
            rng.gen_range(1..400),
            pick(rng, &LAST_NAMES)
        )),
        postal_code: Some(format!(
            "{}{:02}",
            pick(rng, &CATCHMENT_ZIP3[hospital % CATCHMENT_ZIP3.len()]),
            rng.gen_range(0..100)
        )),
        phone: Some(format!("+1-555-{:04}", rng.gen_range(0..10000))),
        email: Some(format!(
            "{}.{}{}@example.org",
            first.to_lowercase(),
            last.to_lowercase(),
            index
        )),
    };
    let medical = MedicalDetails {
        blood_type: Some(
            pick(rng, &["A+", "A-", "B+", "B-", "AB+", "AB-", "O+", "O-"]).to_string(),
        ),
        height_cm: Some(f64::from(rng.gen_range(150..200))),
        weight_kg: Some(f64::from(rng.gen_range(48..118))),
        allergies: if rng.gen_bool(0.2) {
            vec![pick(rng, &ALLERGIES).1.to_string()]
        } else {
            Vec::new()
        },
        chronic_conditions: if rng.gen_bool(0.4) {
            vec![pick(rng, &CONDITIONS).1.to_string()]
        } else {
            Vec::new()
        },
    };
    (
        format!("patient{}-{}", hospital + 1, index + 1),
        personal,
        medical,
    )
}

pub(super) fn synthetic_record(rng: &mut ChaCha8Rng) -> RecordContent {
    let effective_at = Utc::now() - Duration::minutes(rng.gen_range(60..5 * 365 * 24 * 60));
    match rng.gen_range(0..20) {
        0..=14 => {
            let measurement = pick(rng, &MEASUREMENTS);
            let value = rng.gen_range(measurement.low..measurement.high);
            RecordContent {
                kind: measurement.kind,
                code_system: CodeSystem::Loinc,
                code: measurement.loinc.into(),
                value: Some(format!("{value:.*}", measurement.decimals)),
                unit: Some(measurement.unit.into()),
                effective_at,
                note: None,
            }
        }
        15..=16 => {
            let (code, name) = pick(rng, &CONDITIONS);
            coded(
                RecordKind::Condition,
                CodeSystem::Icd10,
                code,
                name,
                effective_at,
            )
        }
        17..=18 => {
            let (code, dosage) = pick(rng, &MEDICATIONS);
            coded(
                RecordKind::Medication,
                CodeSystem::SnomedCt,
                code,
                dosage,
                effective_at,
            )
        }
        _ => {
            let (code, name) = pick(rng, &ALLERGIES);
            coded(
                RecordKind::Allergy,
                CodeSystem::SnomedCt,
                code,
                name,
                effective_at,
            )
        }
    }
}

fn coded(
    kind: RecordKind,
    code_system: CodeSystem,
    code: &str,
    text: &str,
    effective_at: chrono::DateTime<Utc>,
) -> RecordContent {
    RecordContent {
        kind,
        code_system,
        code: code.into(),
        value: Some(text.into()),
        unit: None,
        effective_at,
        note: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_demo_code_is_valid_in_its_system() {
        for measurement in &MEASUREMENTS {
            assert!(
                CodeSystem::Loinc.accepts(measurement.loinc),
                "{}",
                measurement.loinc
            );
        }
        for (code, _) in CONDITIONS {
            assert!(CodeSystem::Icd10.accepts(code), "{code}");
        }
        for (code, _) in MEDICATIONS.iter().chain(&ALLERGIES) {
            assert!(CodeSystem::SnomedCt.accepts(code), "{code}");
        }
    }
}
