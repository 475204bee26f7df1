//! Patients: their account, their data key, and their versioned, encrypted profile (personal
//! and medical details).

use crate::auth::Actor;
use crate::crypto::{Binding, SymmetricKey};
use crate::domain::{MedicalDetails, PatientProfile, PersonalDetails, Role};
use crate::error::{VaultError, VaultResult};
use crate::policy::{require_role, AuditedAction, PatientListing, Permit};
use crate::users::{check_username, hash_new_password, username_conflict};
use crate::{Page, PageRequest, Vault};
use chrono::{DateTime, Utc};
use tokio_postgres::error::SqlState;
use uuid::Uuid;

/// One version of a patient's profile, decrypted.
#[derive(Clone, Debug)]
pub struct ProfileVersion {
    /// The patient.
    pub patient_id: Uuid,
    /// 1 for the profile the admin registered, then one more per edit.
    pub version: i32,
    /// The details as of this version.
    pub profile: PatientProfile,
    /// Who wrote this version.
    pub author_id: Uuid,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// What an admin's patient list or a doctor's list of granting patients shows: never medical
/// data.
#[derive(Clone, Debug)]
pub struct PatientSummary {
    /// The patient.
    pub patient_id: Uuid,
    /// Their hospital.
    pub organization_id: Uuid,
    /// Their name.
    pub full_name: String,
    /// Their year of birth.
    pub birth_year: i32,
}

/// Decrypts one profile version with the patient's data key.
pub(super) fn open_profile(
    key: &SymmetricKey,
    patient: Uuid,
    version: i32,
    sealed: &[u8],
) -> VaultResult<PatientProfile> {
    let plaintext = key.open(Binding::Profile { patient, version }, sealed)?;
    serde_json::from_slice(&plaintext).map_err(VaultError::internal)
}

fn seal_profile(
    key: &SymmetricKey,
    patient: Uuid,
    version: i32,
    profile: &PatientProfile,
) -> VaultResult<Vec<u8>> {
    let plaintext =
        zeroize::Zeroizing::new(serde_json::to_vec(profile).map_err(VaultError::internal)?);
    Ok(key.seal(Binding::Profile { patient, version }, &plaintext))
}

impl Vault {
    /// Registers a patient of the admin's hospital: account, fresh data key, profile version 1.
    pub async fn create_patient(
        &self,
        admin: &Actor,
        username: &str,
        password: &str,
        personal: PersonalDetails,
        medical: MedicalDetails,
    ) -> VaultResult<ProfileVersion> {
        require_role(admin, Role::Admin)?;
        check_username(username)?;
        let now = Utc::now();
        personal.validate(now)?;
        medical.validate()?;
        let password_hash = hash_new_password(password).await?;
        let patient = Uuid::now_v7();
        let data_key = SymmetricKey::generate();
        let wrapped_key = self.master.wrap_patient_key(patient, &data_key);
        let profile = PatientProfile { personal, medical };
        let sealed = seal_profile(&data_key, patient, 1, &profile)?;
        let created_at = crate::anchoring::leaf::to_stored_precision(now);
        let mut client = self.pool.get().await?;
        let transaction = client.transaction().await?;
        transaction
            .execute(
                "INSERT INTO users (id, organization_id, username, role, password_hash, created_by,
                                    anchor_pseudonym)
                 VALUES ($1, $2, $3, 'patient', $4, $5, $6)",
                &[
                    &patient,
                    &admin.organization_id,
                    &username,
                    &password_hash,
                    &admin.user_id,
                    &self.master.patient_pseudonym(patient).as_slice(),
                ],
            )
            .await
            .map_err(username_conflict)?;
        transaction
            .execute(
                "INSERT INTO patient_keys (patient_id, wrapped_key) VALUES ($1, $2)",
                &[&patient, &wrapped_key],
            )
            .await?;
        transaction
            .execute(
                "INSERT INTO patient_profile_versions (patient_id, version, ciphertext, author_id, created_at)
                 VALUES ($1, 1, $2, $3, $4)",
                &[&patient, &sealed, &admin.user_id, &created_at],
            )
            .await?;
        transaction.commit().await?;
        Ok(ProfileVersion {
            patient_id: patient,
            version: 1,
            profile,
            author_id: admin.user_id,
            created_at,
        })
    }

    /// The patient's current profile.
    pub async fn current_profile(&self, permit: &Permit) -> VaultResult<ProfileVersion> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &client.prepare_cached("SELECT version, ciphertext, author_id, created_at FROM patient_profile_versions
                 WHERE patient_id = $1 ORDER BY version DESC LIMIT 1").await?,
                &[&permit.patient()],
            )
            .await?
            .ok_or(VaultError::NotFound("patient"))?;
        let version: i32 = row.get(0);
        let sealed: &[u8] = row.get(1);
        Ok(ProfileVersion {
            patient_id: permit.patient(),
            version,
            profile: open_profile(permit.data_key(), permit.patient(), version, sealed)?,
            author_id: row.get(2),
            created_at: row.get(3),
        })
    }

    /// Every version of the patient's profile, oldest first.
    pub async fn profile_history(&self, permit: &Permit) -> VaultResult<Vec<ProfileVersion>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &client.prepare_cached("SELECT version, ciphertext, author_id, created_at FROM patient_profile_versions
                 WHERE patient_id = $1 ORDER BY version").await?,
                &[&permit.patient()],
            )
            .await?;
        rows.iter()
            .map(|row| {
                let version: i32 = row.get(0);
                Ok(ProfileVersion {
                    patient_id: permit.patient(),
                    version,
                    profile: open_profile(
                        permit.data_key(),
                        permit.patient(),
                        version,
                        row.get(1),
                    )?,
                    author_id: row.get(2),
                    created_at: row.get(3),
                })
            })
            .collect()
    }

    /// Writes a new profile version with new personal details, if `expected_version` is still
    /// the current one; medical details carry over.
    pub async fn update_personal_details(
        &self,
        permit: &Permit,
        expected_version: i32,
        personal: PersonalDetails,
    ) -> VaultResult<ProfileVersion> {
        if permit.action() != AuditedAction::EditPersonalDetails {
            return Err(VaultError::Forbidden);
        }
        let now = Utc::now();
        personal.validate(now)?;
        let current = self.current_profile(permit).await?;
        if current.version != expected_version {
            return Err(VaultError::Conflict(format!(
                "profile is at version {}, not {expected_version}",
                current.version
            )));
        }
        let version = expected_version + 1;
        let profile = PatientProfile {
            personal,
            medical: current.profile.medical,
        };
        let sealed = seal_profile(permit.data_key(), permit.patient(), version, &profile)?;
        let created_at = crate::anchoring::leaf::to_stored_precision(now);
        let client = self.pool.get().await?;
        client
            .execute(
                &client.prepare_cached("INSERT INTO patient_profile_versions (patient_id, version, ciphertext, author_id, created_at)
                 VALUES ($1, $2, $3, $4, $5)").await?,
                &[&permit.patient(), &version, &sealed, &permit.actor().user_id, &created_at],
            )
            .await
            .map_err(|error| {
                if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                    VaultError::Conflict("profile changed concurrently".into())
                } else {
                    error.into()
                }
            })?;
        Ok(ProfileVersion {
            patient_id: permit.patient(),
            version,
            profile,
            author_id: permit.actor().user_id,
            created_at,
        })
    }

    /// Patients in summary form, by id: an admin's own hospital, or a doctor's granting patients.
    pub async fn patient_summaries(
        &self,
        listing: PatientListing,
        page: PageRequest<Uuid>,
    ) -> VaultResult<Page<PatientSummary>> {
        let (organization, grantee) = match listing {
            PatientListing::Organization(organization) => (Some(organization), None),
            PatientListing::GrantedTo(doctor) => (None, Some(doctor)),
        };
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(
                        "SELECT u.id, u.organization_id, k.wrapped_key, p.version, p.ciphertext
                 FROM users u
                 JOIN patient_keys k ON k.patient_id = u.id
                 JOIN LATERAL (SELECT version, ciphertext FROM patient_profile_versions
                               WHERE patient_id = u.id ORDER BY version DESC LIMIT 1) p ON true
                 WHERE u.role = 'patient'
                   AND ($1::uuid IS NULL OR u.organization_id = $1)
                   AND ($2::uuid IS NULL OR EXISTS (
                         SELECT 1 FROM grants g WHERE g.patient_id = u.id AND g.grantee_id = $2
                           AND g.revoked_at IS NULL AND g.expires_at > now()))
                   AND ($3::uuid IS NULL OR u.id > $3)
                 ORDER BY u.id LIMIT $4",
                    )
                    .await?,
                &[&organization, &grantee, &page.after, &(page.first + 1)],
            )
            .await?;
        let items = rows
            .iter()
            .map(|row| {
                let patient: Uuid = row.get(0);
                let data_key = self.master.unwrap_patient_key(patient, row.get(2))?;
                let profile = open_profile(&data_key, patient, row.get(3), row.get(4))?;
                Ok(PatientSummary {
                    patient_id: patient,
                    organization_id: row.get(1),
                    birth_year: profile.personal.birth_year(),
                    full_name: profile.personal.full_name,
                })
            })
            .collect::<VaultResult<_>>()?;
        Ok(Page::from_overfetched(items, page.first))
    }
}
