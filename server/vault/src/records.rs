//! Medical records: every change a new encrypted version, deletes as tombstones that
//! crypto-shred the record's content keys, and optimistic concurrency on the expected version.

use crate::anchoring::{leaf, outbox};
use crate::auth::Actor;
use crate::crypto::{Binding, SymmetricKey};
use crate::domain::RecordContent;
use crate::error::{VaultError, VaultResult};
use crate::policy::{AuditedAction, Permit};
use crate::{Page, PageRequest, Vault};
use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use uuid::Uuid;

/// The most records one batched write may add.
pub const MAX_RECORDS_PER_BATCH: usize = 1000;

/// A record's current version, decrypted.
#[derive(Clone, Debug)]
pub struct StoredRecord {
    /// The record.
    pub record_id: Uuid,
    /// Whose record.
    pub patient_id: Uuid,
    /// The current version.
    pub version: i32,
    /// The clinical content of that version.
    pub content: RecordContent,
    /// Who wrote that version.
    pub author_id: Uuid,
    /// When that version was written.
    pub updated_at: DateTime<Utc>,
    /// When the record was first written.
    pub created_at: DateTime<Utc>,
    /// SHA3-256 of the version's ciphertext.
    pub ciphertext_sha3: Vec<u8>,
    /// The version's anchored leaf.
    pub anchor_leaf: Vec<u8>,
}

/// How a version came to be.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum VersionOperation {
    /// The first version.
    Create,
    /// A later content change.
    Update,
    /// The tombstone.
    Delete,
}

impl VersionOperation {
    fn as_str(self) -> &'static str {
        match self {
            VersionOperation::Create => "create",
            VersionOperation::Update => "update",
            VersionOperation::Delete => "delete",
        }
    }

    fn parse(stored: &str) -> VaultResult<Self> {
        match stored {
            "create" => Ok(VersionOperation::Create),
            "update" => Ok(VersionOperation::Update),
            "delete" => Ok(VersionOperation::Delete),
            _ => Err(VaultError::internal(CorruptRow(
                "record_versions.operation",
            ))),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("stored row has an unexpected {0}")]
struct CorruptRow(&'static str);

/// One version of a record as history shows it: content only while its key survives.
#[derive(Clone, Debug)]
pub struct RecordVersion {
    /// The record.
    pub record_id: Uuid,
    /// Whose record.
    pub patient_id: Uuid,
    /// The version number.
    pub version: i32,
    /// What this version did.
    pub operation: VersionOperation,
    /// The content, unless this is a tombstone or the content was shredded.
    pub content: Option<RecordContent>,
    /// Who wrote it.
    pub author_id: Uuid,
    /// When.
    pub created_at: DateTime<Utc>,
    /// SHA3-256 of its ciphertext (of nothing, for a tombstone).
    pub ciphertext_sha3: Vec<u8>,
    /// Its anchored leaf.
    pub anchor_leaf: Vec<u8>,
}

/// A version sealed and hashed, ready to insert.
struct SealedVersion {
    record: Uuid,
    ciphertext: Option<Vec<u8>>,
    wrapped_key: Option<Vec<u8>>,
    ciphertext_sha3: [u8; 32],
    anchor_leaf: [u8; 32],
    created_at: DateTime<Utc>,
}

impl Vault {
    fn seal_version(
        &self,
        permit: &Permit,
        record: Uuid,
        version: i32,
        content: Option<&RecordContent>,
        created_at: DateTime<Utc>,
    ) -> VaultResult<SealedVersion> {
        let patient = permit.patient();
        let (ciphertext, wrapped_key) = match content {
            Some(content) => {
                let plaintext = zeroize::Zeroizing::new(
                    serde_json::to_vec(content).map_err(VaultError::internal)?,
                );
                let content_key = SymmetricKey::generate();
                let ciphertext = content_key.seal(
                    Binding::RecordContent {
                        record,
                        version,
                        patient,
                    },
                    &plaintext,
                );
                let wrapped = permit.data_key().wrap(
                    Binding::RecordKey {
                        record,
                        version,
                        patient,
                    },
                    &content_key,
                );
                (Some(ciphertext), Some(wrapped))
            }
            None => (None, None),
        };
        let ciphertext_sha3 = leaf::ciphertext_digest(ciphertext.as_deref());
        let pseudonym = self.master.patient_pseudonym(patient);
        let anchor_leaf =
            leaf::record_version_leaf(record, version, &pseudonym, &ciphertext_sha3, created_at);
        Ok(SealedVersion {
            record,
            ciphertext,
            wrapped_key,
            ciphertext_sha3,
            anchor_leaf,
            created_at,
        })
    }

    /// Adds new records for the permit's patient, all in one statement: the records, their first
    /// versions, their content keys and their anchor leaves land together or not at all.
    pub async fn add_records(
        &self,
        permit: &Permit,
        contents: Vec<RecordContent>,
    ) -> VaultResult<Vec<StoredRecord>> {
        if permit.action() != AuditedAction::AddRecord {
            return Err(VaultError::Forbidden);
        }
        if contents.is_empty() || contents.len() > MAX_RECORDS_PER_BATCH {
            return Err(VaultError::InvalidInput(format!(
                "give 1 to {MAX_RECORDS_PER_BATCH} records per request"
            )));
        }
        let now = Utc::now();
        for content in &contents {
            content.validate(now)?;
        }
        let created_at = leaf::to_stored_precision(now);
        let sealed = contents
            .iter()
            .map(|content| self.seal_version(permit, Uuid::now_v7(), 1, Some(content), created_at))
            .collect::<VaultResult<Vec<_>>>()?;
        let ids: Vec<Uuid> = sealed.iter().map(|v| v.record).collect();
        let ciphertexts: Vec<Option<&[u8]>> =
            sealed.iter().map(|v| v.ciphertext.as_deref()).collect();
        let digests: Vec<&[u8]> = sealed
            .iter()
            .map(|v| v.ciphertext_sha3.as_slice())
            .collect();
        let leaves: Vec<&[u8]> = sealed.iter().map(|v| v.anchor_leaf.as_slice()).collect();
        let keys: Vec<Option<&[u8]>> = sealed.iter().map(|v| v.wrapped_key.as_deref()).collect();
        let outbox_entries: Vec<Vec<u8>> = sealed
            .iter()
            .map(|v| outbox::record_version(&v.anchor_leaf))
            .collect();
        let client = self.pool.get().await?;
        client
            .execute(
                &client.prepare_cached("WITH new_records AS (
                     INSERT INTO records (id, patient_id, current_version, created_at)
                     SELECT id, $2, 1, $3 FROM unnest($1::uuid[]) AS t(id)),
                 versions AS (
                     INSERT INTO record_versions (record_id, version, operation, ciphertext,
                                                  ciphertext_sha3, author_id, created_at, anchor_leaf)
                     SELECT id, 1, 'create', ciphertext, digest, $4, $3, leaf
                     FROM unnest($1::uuid[], $5::bytea[], $6::bytea[], $7::bytea[]) AS t(id, ciphertext, digest, leaf)),
                 content_keys AS (
                     INSERT INTO record_version_keys (record_id, version, wrapped_key)
                     SELECT id, 1, wrapped_key FROM unnest($1::uuid[], $8::bytea[]) AS t(id, wrapped_key))
                 INSERT INTO anchor_outbox (entry) SELECT unnest($9::bytea[])").await?,
                &[
                    &ids,
                    &permit.patient(),
                    &created_at,
                    &permit.actor().user_id,
                    &ciphertexts,
                    &digests,
                    &leaves,
                    &keys,
                    &outbox_entries,
                ],
            )
            .await?;
        Ok(sealed
            .into_iter()
            .zip(contents)
            .map(|(version, content)| StoredRecord {
                record_id: version.record,
                patient_id: permit.patient(),
                version: 1,
                content,
                author_id: permit.actor().user_id,
                updated_at: created_at,
                created_at,
                ciphertext_sha3: version.ciphertext_sha3.to_vec(),
                anchor_leaf: version.anchor_leaf.to_vec(),
            })
            .collect())
    }

    /// Writes version `expected_version + 1` of a record with new content, if the record belongs
    /// to the permit's patient and `expected_version` is still current.
    pub async fn update_record(
        &self,
        permit: &Permit,
        record: Uuid,
        expected_version: i32,
        content: RecordContent,
    ) -> VaultResult<StoredRecord> {
        if permit.action() != AuditedAction::UpdateRecord {
            return Err(VaultError::Forbidden);
        }
        let now = Utc::now();
        content.validate(now)?;
        let version = next_version(expected_version)?;
        let sealed = self.seal_version(
            permit,
            record,
            version,
            Some(&content),
            leaf::to_stored_precision(now),
        )?;
        let created_at = self
            .append_version(permit, expected_version, VersionOperation::Update, &sealed)
            .await?;
        Ok(StoredRecord {
            record_id: record,
            patient_id: permit.patient(),
            version,
            content,
            author_id: permit.actor().user_id,
            updated_at: sealed.created_at,
            created_at,
            ciphertext_sha3: sealed.ciphertext_sha3.to_vec(),
            anchor_leaf: sealed.anchor_leaf.to_vec(),
        })
    }

    /// Writes a tombstone as version `expected_version + 1` and destroys the content keys of
    /// every version of the record: the ciphertexts and their anchored hashes stay, unreadable.
    pub async fn delete_record(
        &self,
        permit: &Permit,
        record: Uuid,
        expected_version: i32,
    ) -> VaultResult<i32> {
        if permit.action() != AuditedAction::DeleteRecord {
            return Err(VaultError::Forbidden);
        }
        let version = next_version(expected_version)?;
        let sealed = self.seal_version(
            permit,
            record,
            version,
            None,
            leaf::to_stored_precision(Utc::now()),
        )?;
        self.append_version(permit, expected_version, VersionOperation::Delete, &sealed)
            .await?;
        Ok(version)
    }

    /// Appends an update or a tombstone in one statement guarded by the expected version and
    /// returns when the record was created; when the guard fails, says why.
    async fn append_version(
        &self,
        permit: &Permit,
        expected_version: i32,
        operation: VersionOperation,
        sealed: &SealedVersion,
    ) -> VaultResult<DateTime<Utc>> {
        let deleting = operation == VersionOperation::Delete;
        let client = self.pool.get().await?;
        let appended = client
            .query_opt(
                &client.prepare_cached("WITH bumped AS (
                     UPDATE records SET current_version = $3 + 1, deleted = $4
                     WHERE id = $1 AND patient_id = $2 AND current_version = $3 AND NOT deleted
                     RETURNING id, created_at),
                 versions AS (
                     INSERT INTO record_versions (record_id, version, operation, ciphertext,
                                                  ciphertext_sha3, author_id, created_at, anchor_leaf)
                     SELECT id, $3 + 1, $5, $6, $7, $8, $9, $10 FROM bumped),
                 new_key AS (
                     INSERT INTO record_version_keys (record_id, version, wrapped_key)
                     SELECT id, $3 + 1, $11 FROM bumped WHERE $11::bytea IS NOT NULL),
                 shredded AS (
                     DELETE FROM record_version_keys
                     WHERE $4 AND record_id IN (SELECT id FROM bumped)),
                 outbox AS (
                     INSERT INTO anchor_outbox (entry) SELECT $12 FROM bumped)
                 SELECT created_at FROM bumped").await?,
                &[
                    &sealed.record,
                    &permit.patient(),
                    &expected_version,
                    &deleting,
                    &operation.as_str(),
                    &sealed.ciphertext,
                    &sealed.ciphertext_sha3.as_slice(),
                    &permit.actor().user_id,
                    &sealed.created_at,
                    &sealed.anchor_leaf.as_slice(),
                    &sealed.wrapped_key,
                    &outbox::record_version(&sealed.anchor_leaf),
                ],
            )
            .await?;
        if let Some(row) = appended {
            return Ok(row.get(0));
        }
        let row = client
            .query_opt(
                &client
                    .prepare_cached(
                        "SELECT patient_id, current_version, deleted FROM records WHERE id = $1",
                    )
                    .await?,
                &[&sealed.record],
            )
            .await?;
        match row {
            None => Err(self
                .refuse(permit, Some(sealed.record), "no such record")
                .await),
            Some(row) if row.get::<_, Uuid>(0) != permit.patient() => Err(self
                .refuse(
                    permit,
                    Some(sealed.record),
                    "record belongs to another patient",
                )
                .await),
            Some(row) if row.get::<_, bool>(2) => Err(VaultError::NotFound("record")),
            Some(row) => Err(VaultError::Conflict(format!(
                "record is at version {}, not {expected_version}",
                row.get::<_, i32>(1)
            ))),
        }
    }

    /// The patient a record belongs to, so the caller can ask for a permit. An unknown id is
    /// FORBIDDEN, as another patient's record is, so that the answer does not tell which ids
    /// exist.
    async fn record_patient(&self, record: Uuid) -> VaultResult<Uuid> {
        let client = self.pool.get().await?;
        client
            .query_opt(
                &client
                    .prepare_cached("SELECT patient_id FROM records WHERE id = $1")
                    .await?,
                &[&record],
            )
            .await?
            .map(|row| row.get(0))
            .ok_or(VaultError::Forbidden)
    }

    /// One record's current version.
    pub async fn record(&self, actor: &Actor, record: Uuid) -> VaultResult<StoredRecord> {
        let patient = self.record_patient(record).await?;
        let permit = self
            .authorize(actor, patient, AuditedAction::ReadRecords, Some(record))
            .await?;
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &client
                    .prepare_cached(&format!(
                        "{CURRENT_RECORD_QUERY} WHERE r.id = $1 AND NOT r.deleted"
                    ))
                    .await?,
                &[&record],
            )
            .await?
            .ok_or(VaultError::NotFound("record"))?;
        self.stored_record_from_row(&permit, &row)
    }

    /// The patient's live records, by id (creation order).
    pub async fn records(
        &self,
        permit: &Permit,
        page: PageRequest<Uuid>,
    ) -> VaultResult<Page<StoredRecord>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(&format!(
                        "{CURRENT_RECORD_QUERY} WHERE r.patient_id = $1 AND NOT r.deleted
                     AND ($2::uuid IS NULL OR r.id > $2) ORDER BY r.id LIMIT $3"
                    ))
                    .await?,
                &[&permit.patient(), &page.after, &(page.first + 1)],
            )
            .await?;
        let items = rows
            .iter()
            .map(|row| self.stored_record_from_row(permit, row))
            .collect::<VaultResult<_>>()?;
        Ok(Page::from_overfetched(items, page.first))
    }

    fn stored_record_from_row(&self, permit: &Permit, row: &Row) -> VaultResult<StoredRecord> {
        let record: Uuid = row.get(0);
        let version: i32 = row.get(2);
        let content = open_version(permit, record, version, row.get(3), row.get(4))?
            .ok_or_else(|| VaultError::internal(CorruptRow("live record without content")))?;
        Ok(StoredRecord {
            record_id: record,
            patient_id: row.get(1),
            version,
            content,
            author_id: row.get(5),
            updated_at: row.get(6),
            created_at: row.get(7),
            ciphertext_sha3: row.get(8),
            anchor_leaf: row.get(9),
        })
    }

    /// Every version of one record, oldest first.
    pub async fn record_history(
        &self,
        actor: &Actor,
        record: Uuid,
    ) -> VaultResult<Vec<RecordVersion>> {
        let patient = self.record_patient(record).await?;
        let permit = self
            .authorize(actor, patient, AuditedAction::ReadHistory, Some(record))
            .await?;
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(&format!(
                        "{VERSION_QUERY} WHERE v.record_id = $1 ORDER BY v.version"
                    ))
                    .await?,
                &[&record],
            )
            .await?;
        rows.iter()
            .map(|row| self.record_version_from_row(&permit, row))
            .collect()
    }

    /// Every version of every record of the patient, deleted ones included, by record then
    /// version.
    pub async fn patient_history(
        &self,
        permit: &Permit,
        page: PageRequest<(Uuid, i32)>,
    ) -> VaultResult<Page<RecordVersion>> {
        let (after_record, after_version) = match page.after {
            Some((record, version)) => (Some(record), version),
            None => (None, 0),
        };
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &client
                    .prepare_cached(&format!(
                        "{VERSION_QUERY} WHERE r.patient_id = $1
                     AND ($2::uuid IS NULL OR (v.record_id, v.version) > ($2, $3))
                     ORDER BY v.record_id, v.version LIMIT $4"
                    ))
                    .await?,
                &[
                    &permit.patient(),
                    &after_record,
                    &after_version,
                    &(page.first + 1),
                ],
            )
            .await?;
        let items = rows
            .iter()
            .map(|row| self.record_version_from_row(permit, row))
            .collect::<VaultResult<_>>()?;
        Ok(Page::from_overfetched(items, page.first))
    }

    fn record_version_from_row(&self, permit: &Permit, row: &Row) -> VaultResult<RecordVersion> {
        let record: Uuid = row.get(0);
        let version: i32 = row.get(2);
        Ok(RecordVersion {
            record_id: record,
            patient_id: row.get(1),
            version,
            operation: VersionOperation::parse(row.get(3))?,
            content: open_version(permit, record, version, row.get(4), row.get(5))?,
            author_id: row.get(6),
            created_at: row.get(7),
            ciphertext_sha3: row.get(8),
            anchor_leaf: row.get(9),
        })
    }
}

const CURRENT_RECORD_QUERY: &str =
    "SELECT r.id, r.patient_id, r.current_version, v.ciphertext, k.wrapped_key,
        v.author_id, v.created_at, r.created_at, v.ciphertext_sha3, v.anchor_leaf
 FROM records r
 JOIN record_versions v ON v.record_id = r.id AND v.version = r.current_version
 LEFT JOIN record_version_keys k ON k.record_id = v.record_id AND k.version = v.version";

const VERSION_QUERY: &str =
    "SELECT v.record_id, r.patient_id, v.version, v.operation, v.ciphertext, k.wrapped_key,
        v.author_id, v.created_at, v.ciphertext_sha3, v.anchor_leaf
 FROM record_versions v
 JOIN records r ON r.id = v.record_id
 LEFT JOIN record_version_keys k ON k.record_id = v.record_id AND k.version = v.version";

fn next_version(expected_version: i32) -> VaultResult<i32> {
    if expected_version < 1 {
        return Err(VaultError::InvalidInput(
            "expectedVersion must be at least 1".into(),
        ));
    }
    expected_version
        .checked_add(1)
        .ok_or_else(|| VaultError::InvalidInput("expectedVersion is too large".into()))
}

/// Decrypts one record version with the permit's data key; `None` for a tombstone or a
/// version whose content key was shredded.
pub(super) fn open_version(
    permit: &Permit,
    record: Uuid,
    version: i32,
    ciphertext: Option<&[u8]>,
    wrapped_key: Option<&[u8]>,
) -> VaultResult<Option<RecordContent>> {
    let (Some(ciphertext), Some(wrapped_key)) = (ciphertext, wrapped_key) else {
        return Ok(None);
    };
    let patient = permit.patient();
    let content_key = permit.data_key().unwrap_key(
        Binding::RecordKey {
            record,
            version,
            patient,
        },
        wrapped_key,
    )?;
    let plaintext = content_key.open(
        Binding::RecordContent {
            record,
            version,
            patient,
        },
        ciphertext,
    )?;
    serde_json::from_slice(&plaintext)
        .map(Some)
        .map_err(VaultError::internal)
}
