//! What an anonymized export reads: the consenting patients' decrypted profiles and current
//! records, as the exporter's plain rows, all from one database snapshot; each hospital's
//! patients only if the policy meets the ceiling that hospital set.
//!
//! The export runs on a blocking thread and pulls events chunk by chunk, so the snapshot holds
//! one connection in a `REPEATABLE READ` transaction for the whole export: the cohort, the
//! persons and every pass over the events see the same state, however the vault changes
//! meanwhile (a consent withdrawn mid-export applies from the next export on).

use crate::domain::{PatientProfile, RecordContent, RecordKind, Sex};
use crate::error::{VaultError, VaultResult};
use crate::patients::open_profile;
use crate::policy::{ExportRecipient, HospitalCeiling, Permit, ResearchCohort};
use crate::records::open_version;
use crate::Vault;
use deadpool_postgres::Object;
use medvault_exporter::{ClinicalEvent, EventKind, ExportPolicy, Person};
use std::ops::Range;
use uuid::Uuid;

/// A consistent, read-only view of the data one recipient may export.
pub struct ResearchSnapshot {
    /// The connection inside the snapshot's transaction; taken out by [`ResearchSnapshot::close`].
    client: Option<Object>,
    cohort: ResearchCohort,
}

impl Vault {
    /// Opens a snapshot of the data of the patients whose live research consent names
    /// `recipient`'s organization and whose hospital's ceiling for the recipient's role `policy`
    /// meets; BAD_USER_INPUT, naming the hospital, if the policy is above some consenting
    /// patient's hospital's ceiling.
    pub(crate) async fn open_research_snapshot(
        &self,
        recipient: &ExportRecipient,
        policy: &ExportPolicy,
    ) -> VaultResult<ResearchSnapshot> {
        let client = self.pool.get().await?;
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let mut snapshot = ResearchSnapshot {
            client: Some(client),
            cohort: ResearchCohort {
                permits: Vec::new(),
                consent_root: [0; 32],
                hospitals: Vec::new(),
            },
        };
        snapshot.cohort = self
            .authorize_research_cohort(recipient, policy, snapshot.client()?)
            .await?;
        Ok(snapshot)
    }
}

impl ResearchSnapshot {
    fn client(&self) -> VaultResult<&Object> {
        self.client
            .as_ref()
            .ok_or_else(|| VaultError::internal(SnapshotClosed))
    }

    /// How many patients the export may include.
    pub fn cohort_size(&self) -> usize {
        self.cohort.permits.len()
    }

    /// The Merkle root over the research consents the cohort rests on.
    pub fn consent_root(&self) -> [u8; 32] {
        self.cohort.consent_root
    }

    /// The hospitals the cohort's consents came from, each with the ceiling its patients are
    /// exported under (none: its patients were left out).
    pub fn hospitals(&self) -> &[HospitalCeiling] {
        &self.cohort.hospitals
    }

    /// The cohort's current profiles, decrypted into the exporter's person rows.
    pub async fn persons(&self) -> VaultResult<Vec<Person>> {
        let patients: Vec<Uuid> = self.cohort.permits.iter().map(Permit::patient).collect();
        let rows = self
            .client()?
            .query(
                "SELECT DISTINCT ON (patient_id) patient_id, version, ciphertext
                 FROM patient_profile_versions WHERE patient_id = ANY($1)
                 ORDER BY patient_id, version DESC",
                &[&patients],
            )
            .await?;
        let mut persons = Vec::with_capacity(rows.len());
        for (permit, row) in self.cohort.permits.iter().zip(&rows) {
            let patient: Uuid = row.get(0);
            if patient != permit.patient() {
                return Err(VaultError::internal(ProfileMissing));
            }
            let profile = open_profile(permit.data_key(), patient, row.get(1), row.get(2))?;
            persons.push(person_row(patient, profile));
        }
        if persons.len() != self.cohort.permits.len() {
            return Err(VaultError::internal(ProfileMissing));
        }
        Ok(persons)
    }

    /// The current, live records of the cohort's patients `range` (in cohort order) that an
    /// export can carry, decrypted into the exporter's event rows.
    pub async fn events(&self, range: Range<usize>) -> VaultResult<Vec<ClinicalEvent>> {
        let permits = self
            .cohort
            .permits
            .get(range)
            .ok_or_else(|| VaultError::internal(OutsideCohort))?;
        let patients: Vec<Uuid> = permits.iter().map(Permit::patient).collect();
        let rows = self
            .client()?
            .query(
                "SELECT r.id, r.patient_id, r.current_version, v.ciphertext, k.wrapped_key
                 FROM records r
                 JOIN record_versions v ON v.record_id = r.id AND v.version = r.current_version
                 JOIN record_version_keys k ON k.record_id = v.record_id AND k.version = v.version
                 WHERE r.patient_id = ANY($1) AND NOT r.deleted
                 ORDER BY r.patient_id, r.id",
                &[&patients],
            )
            .await?;
        let mut events = Vec::with_capacity(rows.len());
        let mut permits = permits.iter().peekable();
        for row in &rows {
            let (record, patient, version): (Uuid, Uuid, i32) =
                (row.get(0), row.get(1), row.get(2));
            while permits
                .next_if(|permit| permit.patient() < patient)
                .is_some()
            {}
            let permit = permits
                .peek()
                .filter(|permit| permit.patient() == patient)
                .ok_or_else(|| VaultError::internal(OutsideCohort))?;
            let content = open_version(permit, record, version, row.get(3), row.get(4))?
                .ok_or_else(|| VaultError::internal(ContentMissing))?;
            events.extend(event_row(patient, content));
        }
        Ok(events)
    }

    /// Ends the snapshot's transaction and gives its connection back to the pool.
    pub async fn close(mut self) -> VaultResult<()> {
        if let Some(client) = self.client.take() {
            client.batch_execute("COMMIT").await?;
        }
        Ok(())
    }
}

impl Drop for ResearchSnapshot {
    /// A snapshot dropped without [`ResearchSnapshot::close`] (an export that failed) must not
    /// hand its open transaction to the pool's next user: its connection is closed instead.
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a consenting patient has no profile")]
struct ProfileMissing;

#[derive(Debug, thiserror::Error)]
#[error("a live record version has no content")]
struct ContentMissing;

#[derive(Debug, thiserror::Error)]
#[error("the research snapshot was used after closing")]
struct SnapshotClosed;

#[derive(Debug, thiserror::Error)]
#[error("the research snapshot was asked for patients outside its cohort")]
struct OutsideCohort;

fn person_row(patient: Uuid, profile: PatientProfile) -> Person {
    let personal = profile.personal;
    Person {
        patient_id: *patient.as_bytes(),
        date_of_birth: personal.date_of_birth,
        sex: match personal.sex {
            Sex::Female => "female",
            Sex::Male => "male",
            Sex::Other => "other",
            Sex::Unknown => "unknown",
        }
        .to_owned(),
        postal_code: personal.postal_code,
    }
}

/// The exporter's event for a record, if its kind goes into an export: allergies and free-text
/// notes never do.
fn event_row(patient: Uuid, content: RecordContent) -> Option<ClinicalEvent> {
    let kind = match content.kind {
        RecordKind::Observation | RecordKind::LabResult => EventKind::Measurement,
        RecordKind::Condition => EventKind::Condition,
        RecordKind::Medication => EventKind::Medication,
        RecordKind::Allergy | RecordKind::Note => return None,
    };
    Some(ClinicalEvent {
        patient_id: *patient.as_bytes(),
        kind,
        code_system: content.code_system.as_str().to_owned(),
        code: content.code,
        value: content.value,
        unit: content.unit,
        effective_at: content.effective_at,
    })
}
