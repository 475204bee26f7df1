//! The synthetic data set `medvault demo` serves: hospitals, staff, patients with grants,
//! records with real LOINC, ICD-10 and SNOMED CT codes and plausible values, and a research
//! institute most patients consented to, with each hospital's ceiling for researchers' exports.
//! Everything goes through the vault, so it is encrypted, versioned and authorized like real
//! traffic. Seeded, so every run builds the same people and values (ids and keys stay random).

use crate::auth::{Actor, Operator};
use crate::domain::{
    AccessScope, CodeSystem, MedicalDetails, OrganizationKind, PersonalDetails, RecordContent,
    RecordKind, Role, Sex,
};
use crate::error::VaultResult;
use crate::exports::Exports;
use crate::{AuditedAction, NewStaffUser, Vault};
use chrono::{Duration, NaiveDate, Utc};
use futures_util::{stream, StreamExt, TryStreamExt};
use medvault_exporter::ExportCeiling;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How big a data set to build.
#[derive(Clone, Copy, Debug)]
pub struct DemoSize {
    /// Hospitals.
    pub hospitals: usize,
    /// Doctors per hospital.
    pub doctors_per_hospital: usize,
    /// Patients per hospital.
    pub patients_per_hospital: usize,
    /// Records per patient.
    pub records_per_patient: usize,
}

impl Default for DemoSize {
    fn default() -> Self {
        DemoSize {
            hospitals: 2,
            doctors_per_hospital: 10,
            patients_per_hospital: 500,
            records_per_patient: 20,
        }
    }
}

/// The 3-digit ZIP areas each hospital's patients live in, so that exports generalized to ZIP3
/// form classes as a real catchment would.
const CATCHMENT_ZIP3: [[&str; 2]; 4] = [
    ["021", "024"],
    ["100", "112"],
    ["606", "605"],
    ["941", "945"],
];

/// The share of demo patients who consent to research.
const RESEARCH_CONSENT_SHARE: f64 = 0.7;

/// The password of every demo account.
pub const DEMO_PASSWORD: &str = "medvault-demo-2026";

/// Logins to show the demo user, one per role that has something to see.
#[derive(Debug, Clone)]
pub struct DemoLogins {
    /// The first hospital's admin.
    pub admin: String,
    /// A doctor holding grants.
    pub doctor: String,
    /// A patient with records.
    pub patient: String,
    /// A researcher of the institute, who can request exports.
    pub researcher: String,
    /// The patient's id, for the sample query.
    pub patient_id: uuid::Uuid,
    /// How many records were written.
    pub records: usize,
}

const HOSPITALS: [&str; 4] = [
    "St. Mary's General Hospital",
    "Riverside University Medical Center",
    "Northgate Community Hospital",
    "Lakeside Children's Hospital",
];
const SPECIALTIES: [&str; 6] = [
    "Cardiology",
    "Endocrinology",
    "General Practice",
    "Internal Medicine",
    "Nephrology",
    "Pulmonology",
];
const FIRST_NAMES: [&str; 16] = [
    "Amara", "Bilal", "Chen", "Dana", "Elif", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kavya",
    "Liam", "Mei", "Nadia", "Oscar", "Priya",
];
const LAST_NAMES: [&str; 16] = [
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

/// Builds the data set, calling `progress` after each unit of work with (done, total).
pub async fn seed(
    operator: &Operator,
    vault: &Vault,
    exports: &Exports,
    size: DemoSize,
    progress: impl Fn(u64, u64),
) -> VaultResult<DemoLogins> {
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let total_units =
        (size.hospitals * (1 + size.doctors_per_hospital + 2 * size.patients_per_hospital)) as u64;
    let mut done = 0u64;
    let mut admins = Vec::new();
    let mut doctors: Vec<Vec<Actor>> = Vec::new();
    for (h, name) in HOSPITALS.iter().cycle().take(size.hospitals).enumerate() {
        let (organization, admin) = vault
            .create_hospital_admin(
                operator,
                name,
                NewStaffUser {
                    username: format!("admin{}", h + 1),
                    password: DEMO_PASSWORD.into(),
                    role: Role::Admin,
                    display_name: format!("Administrator, {name}"),
                    specialty: None,
                },
            )
            .await?;
        let admin = Actor {
            user_id: admin.id,
            role: Role::Admin,
            organization_id: organization.id,
        };
        admins.push(admin);
        done += 1;
        progress(done, total_units);
        let staff: Vec<NewStaffUser> = (0..size.doctors_per_hospital)
            .map(|d| NewStaffUser {
                username: format!("doctor{}-{}", h + 1, d + 1),
                password: DEMO_PASSWORD.into(),
                role: Role::Doctor,
                display_name: format!(
                    "Dr. {} {}",
                    pick(&mut rng, &FIRST_NAMES),
                    pick(&mut rng, &LAST_NAMES)
                ),
                specialty: Some(pick(&mut rng, &SPECIALTIES).to_string()),
            })
            .collect();
        let created: Vec<Actor> = stream::iter(staff)
            .map(|user| vault.create_staff_user(&admin, None, user))
            .buffered(4)
            .map_ok(|user| Actor {
                user_id: user.id,
                role: Role::Doctor,
                organization_id: organization.id,
            })
            .inspect(|_| {
                done += 1;
                progress(done, total_units);
            })
            .try_collect()
            .await?;
        doctors.push(created);
    }

    let mut patients = Vec::new();
    for (h, admin) in admins.iter().enumerate() {
        let registrations: Vec<(String, PersonalDetails, MedicalDetails)> = (0..size
            .patients_per_hospital)
            .map(|p| synthetic_patient(&mut rng, h, p))
            .collect();
        let created: Vec<Actor> = stream::iter(registrations)
            .map(|(username, personal, medical)| async move {
                let profile = vault
                    .create_patient(admin, &username, DEMO_PASSWORD, personal, medical)
                    .await?;
                Ok::<_, crate::error::VaultError>(Actor {
                    user_id: profile.patient_id,
                    role: Role::Patient,
                    organization_id: admin.organization_id,
                })
            })
            .buffered(4)
            .inspect(|_| {
                done += 1;
                progress(done, total_units);
            })
            .try_collect()
            .await?;
        patients.push(created);
    }

    let institute = match admins.first() {
        Some(admin) => {
            let institute = vault
                .create_recipient_organization(
                    admin,
                    "Northwind Health Research Institute",
                    OrganizationKind::Research,
                )
                .await?;
            vault
                .create_staff_user(
                    admin,
                    Some(institute.id),
                    NewStaffUser {
                        username: "researcher1".into(),
                        password: DEMO_PASSWORD.into(),
                        role: Role::Researcher,
                        display_name: "Dr. Ada Northwind".into(),
                        specialty: None,
                    },
                )
                .await?;
            // Each hospital governs its own patients' exports, so each admin sets a ceiling.
            for hospital_admin in &admins {
                exports
                    .set_ceiling(hospital_admin, Role::Researcher, ExportCeiling::default())
                    .await?;
            }
            Some(institute.id)
        }
        None => None,
    };

    let mut records = 0;
    let far_expiry = Utc::now() + Duration::days(365);
    for (h, hospital_patients) in patients.iter().enumerate() {
        for patient in hospital_patients {
            let own_doctor = pick(&mut rng, &doctors[h]);
            let other_doctor = pick(&mut rng, &doctors[(h + 1) % doctors.len()]);
            vault
                .grant_access(
                    patient,
                    own_doctor.user_id,
                    &[AccessScope::Read, AccessScope::Write],
                    far_expiry,
                )
                .await?;
            vault
                .grant_access(
                    patient,
                    other_doctor.user_id,
                    &[AccessScope::Read],
                    far_expiry,
                )
                .await?;
            let contents: Vec<RecordContent> = (0..size.records_per_patient)
                .map(|_| synthetic_record(&mut rng))
                .collect();
            records += contents.len();
            let permit = vault
                .authorize(own_doctor, patient.user_id, AuditedAction::AddRecord, None)
                .await?;
            vault.add_records(&permit, contents).await?;
            if let Some(institute) = institute.filter(|_| rng.gen_bool(RESEARCH_CONSENT_SHARE)) {
                vault
                    .grant_research_consent(patient, institute, far_expiry)
                    .await?;
            }
            done += 1;
            progress(done, total_units);
        }
    }
    let first_patient = patients.first().and_then(|p| p.first()).copied();
    Ok(DemoLogins {
        admin: "admin1".into(),
        doctor: first_granted_doctor(vault, first_patient)
            .await?
            .unwrap_or_else(|| "doctor1-1".into()),
        patient: "patient1-1".into(),
        researcher: "researcher1".into(),
        patient_id: first_patient.map(|p| p.user_id).unwrap_or_default(),
        records,
    })
}

async fn first_granted_doctor(
    vault: &Vault,
    patient: Option<Actor>,
) -> VaultResult<Option<String>> {
    let Some(patient) = patient else {
        return Ok(None);
    };
    let grants = vault
        .grants_of_patient(
            &patient,
            crate::PageRequest {
                after: None,
                first: 1,
            },
        )
        .await?;
    match grants.items.iter().find_map(|grant| grant.grantee_id) {
        Some(doctor) => Ok(Some(vault.user(&patient, doctor).await?.username)),
        None => Ok(None),
    }
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    items
        .choose(rng)
        .unwrap_or_else(|| unreachable!("demo tables are not empty"))
}

fn synthetic_patient(
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

fn synthetic_record(rng: &mut ChaCha8Rng) -> RecordContent {
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
