//! The synthetic data set `medvault demo` serves: hospitals, staff, patients with grants,
//! records with real LOINC, ICD-10 and SNOMED CT codes and plausible values, and a research
//! institute most patients consented to, with each hospital's ceiling for researchers' exports.
//! Everything goes through the vault, so it is encrypted, versioned and authorized like real
//! traffic. Seeded, so every run builds the same people and values (ids and keys stay random).

use crate::auth::{Actor, Operator};
use crate::domain::{
    AccessScope, MedicalDetails, OrganizationKind, PersonalDetails, RecordContent, Role,
};
use crate::error::{VaultError, VaultResult};
use crate::exports::Exports;
use crate::{NewStaffUser, Vault};
use chrono::{Duration, Utc};
use futures_util::{stream, StreamExt, TryStreamExt};
use medvault_circuits::GranteeSecret;
use medvault_exporter::ExportCeiling;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

mod data;

use data::{
    pick, synthetic_patient, synthetic_record, FIRST_NAMES, HOSPITALS, LAST_NAMES, SPECIALTIES,
};

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

impl DemoSize {
    /// The hospitals the data set is spread over: the founding members of the demo's chain.
    pub fn hospital_names(&self) -> Vec<String> {
        let distinct = self.hospitals.min(HOSPITALS.len());
        HOSPITALS[..distinct]
            .iter()
            .map(|name| name.to_string())
            .collect()
    }
}

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

/// The file a demo doctor's grantee secret is kept in, under the demo's directory of secrets.
pub fn doctor_secret_path(secrets: &Path, username: &str) -> PathBuf {
    secrets.join(format!("{username}.secret"))
}

/// Builds the data set, calling `progress` after each unit of work with (done, total). Each demo
/// doctor's grantee secret is kept in `doctor_secrets` (made there on the first run, reused
/// after), as a doctor's own machine would keep it, and only its commitment is registered.
pub async fn seed(
    operator: &Operator,
    vault: &Vault,
    exports: &Exports,
    size: DemoSize,
    doctor_secrets: &Path,
    progress: impl Fn(u64, u64),
) -> VaultResult<DemoLogins> {
    std::fs::create_dir_all(doctor_secrets).map_err(VaultError::internal)?;
    let mut rng = ChaCha8Rng::seed_from_u64(2026);
    let total_units =
        (size.hospitals * (1 + size.doctors_per_hospital + 2 * size.patients_per_hospital)) as u64;
    let mut done = 0u64;
    let mut admins = Vec::new();
    let mut doctors: Vec<Vec<Actor>> = Vec::new();
    let hospitals = size.hospital_names();
    for (h, name) in hospitals.iter().cycle().take(size.hospitals).enumerate() {
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
            session: None,
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
            .map(|user| async move {
                let user = vault.create_staff_user(&admin, None, user).await?;
                let doctor = Actor {
                    user_id: user.id,
                    role: Role::Doctor,
                    organization_id: organization.id,
                    session: None,
                };
                let secret =
                    demo_doctor_secret(&doctor_secret_path(doctor_secrets, &user.username))?;
                vault
                    .register_grantee_key(&doctor, secret.commitment())
                    .await?;
                Ok::<_, VaultError>(doctor)
            })
            .buffered(4)
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
                    session: None,
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
                .seed_permit(operator, own_doctor, patient.user_id)
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

/// The demo doctor's secret in `path`, made there on the first run.
fn demo_doctor_secret(path: &Path) -> VaultResult<GranteeSecret> {
    if path.exists() {
        return GranteeSecret::read(path).map_err(VaultError::internal);
    }
    let secret = GranteeSecret::generate(&mut medvault_circuits::OsRng);
    secret.write_new(path).map_err(VaultError::internal)?;
    Ok(secret)
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
