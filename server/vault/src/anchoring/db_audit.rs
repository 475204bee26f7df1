//! `medvault audit db`: checks what PostgreSQL holds against the chain, without any key.
//!
//! Every record version's leaf is recomputed from its stored row (the record id, the version,
//! the patient's stored anchor pseudonym, the SHA3-256 of the ciphertext as stored, the time)
//! and looked up among the entries of the audited chain's final blocks; every access-log batch's
//! root is recomputed from its lines and looked up the same way. What does not match is named:
//! versions modified, deleted, inserted, moved to another patient or never anchored, and log
//! lines edited, removed or inserted. The versions of an erased patient are counted as erased:
//! their key is gone, but their rows and anchors must still agree.

use super::leaf::{self, LoggedLine, LOGGED_LINE_COLUMNS};
use super::log_batches;
use deadpool_postgres::GenericClient;
use futures_util::{pin_mut, TryStreamExt};
use medvault_anchor_chain::bytes::Hash32;
use medvault_anchor_chain::entry::Entry;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// One disagreement between the database and the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DbProblem {
    /// The version's row no longer gives the leaf that was anchored for it: its ciphertext,
    /// version number, time or hash was changed.
    VersionModified {
        /// The record.
        record: Uuid,
        /// The version as stored now.
        version: i32,
    },
    /// The version's row now names another patient than the one it was anchored for.
    VersionMoved {
        /// The record.
        record: Uuid,
        /// The version.
        version: i32,
        /// The patient it was anchored for.
        from_patient: Uuid,
        /// The patient it names now.
        to_patient: Uuid,
    },
    /// A version the record's history needs is missing (its row was deleted).
    VersionDeleted {
        /// The record.
        record: Uuid,
        /// The missing version.
        version: i32,
    },
    /// A leaf this database queued and had anchored matches no stored version: a version row
    /// was deleted along with what would name it.
    AnchoredVersionMissing {
        /// The outbox row that queued the leaf.
        outbox_id: i64,
        /// The leaf, in hex.
        leaf: String,
    },
    /// A version row that the server never queued for anchoring, or one that repeats another
    /// row's anchored leaf: inserted by hand.
    VersionInserted {
        /// The record.
        record: Uuid,
        /// The version.
        version: i32,
    },
    /// A version the server queued whose leaf is not in a final block of the chain.
    VersionUnanchored {
        /// The record.
        record: Uuid,
        /// The version.
        version: i32,
        /// The height the database says it was anchored at, if any.
        recorded_height: Option<i64>,
    },
    /// The version's patient has no data key and was never erased.
    DataKeyMissing {
        /// The patient.
        patient: Uuid,
    },
    /// A sealed log line no longer gives the leaf it was sealed with.
    LogLineEdited {
        /// The line.
        line: i64,
    },
    /// A batch holds fewer lines than were sealed in it.
    LogLinesRemoved {
        /// The batch.
        batch: i64,
        /// How many are gone.
        count: i64,
    },
    /// A batch holds more lines than were sealed in it.
    LogLinesInserted {
        /// The batch.
        batch: i64,
        /// How many were added.
        count: i64,
    },
    /// A batch's lines or stored root no longer give the root that was anchored (lines
    /// replaced, reordered, or the root itself changed).
    LogBatchAltered {
        /// The batch.
        batch: i64,
    },
    /// A batch number in the run of batches is missing.
    LogBatchMissing {
        /// The missing number.
        batch: i64,
    },
    /// A batch whose root is not in a final block of the chain.
    LogBatchUnanchored {
        /// The batch.
        batch: i64,
    },
}

/// What `audit db` found.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DbAuditReport {
    /// Record versions whose leaves were recomputed.
    pub versions_checked: u64,
    /// Of those, versions of erased patients.
    pub erased_versions: u64,
    /// The patients erased at their request.
    pub erased_patients: Vec<Uuid>,
    /// Access-log batches checked.
    pub log_batches_checked: u64,
    /// Sealed log lines checked.
    pub log_lines_checked: u64,
    /// Lines not sealed into a batch yet (the newest few seconds' worth).
    pub log_lines_unsealed: u64,
    /// Every disagreement, in the order found.
    pub problems: Vec<DbProblem>,
}

/// The database could not be read as the schema promises.
#[derive(Debug, thiserror::Error)]
pub enum DbAuditError {
    /// A query failed.
    #[error("reading the database")]
    Database(#[from] tokio_postgres::Error),
    /// A stored value does not have the shape the schema gives it.
    #[error("stored value is unreadable: {0}")]
    Unreadable(String),
}

fn hash32(bytes: &[u8], what: &str) -> Result<[u8; 32], DbAuditError> {
    bytes
        .try_into()
        .map_err(|_| DbAuditError::Unreadable(format!("{what} is not 32 bytes")))
}

/// What the outbox says this database queued.
struct Queued {
    /// Record leaves with their outbox id and recorded height.
    record_leaves: HashMap<[u8; 32], (i64, Option<i64>)>,
}

async fn read_outbox(client: &impl GenericClient) -> Result<Queued, DbAuditError> {
    let rows = client
        .query("SELECT id, entry, anchored_height FROM anchor_outbox", &[])
        .await?;
    let mut record_leaves = HashMap::new();
    for row in rows {
        let id: i64 = row.get(0);
        let entry = Entry::from_canonical_bytes(row.get(1))
            .map_err(|_| DbAuditError::Unreadable(format!("outbox row {id}")))?;
        if let Entry::RecordAnchor { leaf } = entry {
            record_leaves.insert(leaf.0, (id, row.get(2)));
        }
    }
    Ok(Queued { record_leaves })
}

/// Audits the database behind `client` against a chain: `final_height_of` gives the height of
/// the final block holding an entry hash, as [`medvault_anchor_chain::audit::AuditedChain`]
/// does for an audited chain.
pub async fn audit_database(
    client: &impl GenericClient,
    final_height_of: impl Fn(&Hash32) -> Option<u64>,
) -> Result<DbAuditReport, DbAuditError> {
    let mut report = DbAuditReport::default();
    let queued = read_outbox(client).await?;
    audit_record_versions(client, &final_height_of, &queued, &mut report).await?;
    audit_access_log(client, &final_height_of, &mut report).await?;
    Ok(report)
}

/// Each patient's stored anchor pseudonym, for finding whom a moved version belonged to.
async fn read_pseudonyms(
    client: &impl GenericClient,
) -> Result<Vec<(Uuid, [u8; 32])>, DbAuditError> {
    let rows = client
        .query(
            "SELECT id, anchor_pseudonym FROM users WHERE anchor_pseudonym IS NOT NULL",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| Ok((row.get(0), hash32(row.get(1), "an anchor pseudonym")?)))
        .collect()
}

/// One stored version as `audit_record_versions` reads it.
struct StoredVersion {
    record: Uuid,
    version: i32,
    patient: Uuid,
    pseudonym: Option<[u8; 32]>,
    ciphertext_sha3: [u8; 32],
    created_at: chrono::DateTime<chrono::Utc>,
    stored_leaf: [u8; 32],
    current_version: i32,
    key_gone: bool,
    erased: bool,
}

impl StoredVersion {
    fn leaf_with(&self, pseudonym: &[u8; 32]) -> [u8; 32] {
        leaf::record_version_leaf(
            self.record,
            self.version,
            pseudonym,
            &self.ciphertext_sha3,
            self.created_at,
        )
    }
}

async fn audit_record_versions(
    client: &impl GenericClient,
    final_height_of: &impl Fn(&Hash32) -> Option<u64>,
    queued: &Queued,
    report: &mut DbAuditReport,
) -> Result<(), DbAuditError> {
    let pseudonyms = read_pseudonyms(client).await?;
    report.erased_patients = client
        .query(
            "SELECT patient_id FROM patient_erasures ORDER BY erased_at",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let on_chain =
        |leaf: &[u8; 32]| final_height_of(&leaf::record_version_entry(leaf).hash()).is_some();
    let rows = client
        .query_raw(
            "SELECT v.record_id, v.version, r.patient_id, u.anchor_pseudonym, v.ciphertext,
                    v.created_at, v.anchor_leaf, r.current_version, k.patient_id IS NULL,
                    e.patient_id IS NOT NULL
             FROM record_versions v
             JOIN records r ON r.id = v.record_id
             LEFT JOIN users u ON u.id = r.patient_id
             LEFT JOIN patient_keys k ON k.patient_id = r.patient_id
             LEFT JOIN patient_erasures e ON e.patient_id = r.patient_id
             ORDER BY v.record_id, v.version",
            std::iter::empty::<&str>(),
        )
        .await?;
    pin_mut!(rows);
    let mut seen_leaves: HashSet<[u8; 32]> = HashSet::new();
    let mut keyless_reported: HashSet<Uuid> = HashSet::new();
    let mut previous: Option<(Uuid, i32, i32)> = None;
    while let Some(row) = rows.try_next().await? {
        let ciphertext: Option<&[u8]> = row.get(4);
        let stored = StoredVersion {
            record: row.get(0),
            version: row.get(1),
            patient: row.get(2),
            pseudonym: row
                .get::<_, Option<&[u8]>>(3)
                .map(|bytes| hash32(bytes, "an anchor pseudonym"))
                .transpose()?,
            ciphertext_sha3: leaf::ciphertext_digest(ciphertext),
            created_at: row.get(5),
            stored_leaf: hash32(row.get(6), "an anchor leaf")?,
            current_version: row.get(7),
            key_gone: row.get(8),
            erased: row.get(9),
        };
        report.versions_checked += 1;
        if stored.erased {
            report.erased_versions += 1;
        } else if stored.key_gone && keyless_reported.insert(stored.patient) {
            report.problems.push(DbProblem::DataKeyMissing {
                patient: stored.patient,
            });
        }
        check_history(&mut previous, &stored, report);
        let copied_leaf = !seen_leaves.insert(stored.stored_leaf);
        match check_version(&stored, &pseudonyms, queued, &on_chain) {
            Some(DbProblem::VersionModified { record, version }) if copied_leaf => report
                .problems
                .push(DbProblem::VersionInserted { record, version }),
            Some(problem) => report.problems.push(problem),
            None => {}
        }
    }
    if let Some((record, last, current)) = previous {
        report_missing_tail(record, last, current, report);
    }
    let empty_records = client
        .query(
            "SELECT r.id, r.current_version FROM records r
             WHERE NOT EXISTS (SELECT 1 FROM record_versions v WHERE v.record_id = r.id)
             ORDER BY r.id",
            &[],
        )
        .await?;
    for row in empty_records {
        report_missing_tail(row.get(0), 0, row.get(1), report);
    }
    let mut missing: Vec<(i64, [u8; 32])> = queued
        .record_leaves
        .iter()
        .filter(|(leaf, (_, height))| height.is_some() && !seen_leaves.contains(*leaf))
        .map(|(leaf, (id, _))| (*id, *leaf))
        .collect();
    missing.sort();
    report
        .problems
        .extend(
            missing
                .into_iter()
                .map(|(outbox_id, leaf)| DbProblem::AnchoredVersionMissing {
                    outbox_id,
                    leaf: hex::encode(leaf),
                }),
        );
    Ok(())
}

/// Versions of a record run from 1 to its current version without a gap: reports the ones
/// missing between the previous row and this one, and at the end of the previous record.
fn check_history(
    previous: &mut Option<(Uuid, i32, i32)>,
    stored: &StoredVersion,
    report: &mut DbAuditReport,
) {
    let after = match *previous {
        Some((record, last, _)) if record == stored.record => last,
        Some((record, last, current)) => {
            report_missing_tail(record, last, current, report);
            0
        }
        None => 0,
    };
    for version in after + 1..stored.version {
        report.problems.push(DbProblem::VersionDeleted {
            record: stored.record,
            version,
        });
    }
    *previous = Some((stored.record, stored.version, stored.current_version));
}

fn report_missing_tail(record: Uuid, last: i32, current: i32, report: &mut DbAuditReport) {
    for version in last + 1..=current {
        report
            .problems
            .push(DbProblem::VersionDeleted { record, version });
    }
}

/// What is wrong with one version row, if anything.
fn check_version(
    stored: &StoredVersion,
    pseudonyms: &[(Uuid, [u8; 32])],
    queued: &Queued,
    on_chain: &impl Fn(&[u8; 32]) -> bool,
) -> Option<DbProblem> {
    let (record, version) = (stored.record, stored.version);
    let recomputed = stored
        .pseudonym
        .map(|pseudonym| stored.leaf_with(&pseudonym));
    if recomputed.is_some_and(|leaf| on_chain(&leaf)) {
        return None;
    }
    if on_chain(&stored.stored_leaf) {
        let moved_from = pseudonyms.iter().find(|(patient, pseudonym)| {
            *patient != stored.patient && stored.leaf_with(pseudonym) == stored.stored_leaf
        });
        return Some(match moved_from {
            Some((from_patient, _)) => DbProblem::VersionMoved {
                record,
                version,
                from_patient: *from_patient,
                to_patient: stored.patient,
            },
            None => DbProblem::VersionModified { record, version },
        });
    }
    let queued_leaf = recomputed
        .and_then(|leaf| queued.record_leaves.get(&leaf))
        .or_else(|| queued.record_leaves.get(&stored.stored_leaf));
    Some(match queued_leaf {
        Some((_, recorded_height)) => DbProblem::VersionUnanchored {
            record,
            version,
            recorded_height: *recorded_height,
        },
        None => DbProblem::VersionInserted { record, version },
    })
}

/// One stored batch.
struct StoredBatch {
    number: i64,
    root: [u8; 32],
    line_count: i64,
}

async fn audit_access_log(
    client: &impl GenericClient,
    final_height_of: &impl Fn(&Hash32) -> Option<u64>,
    report: &mut DbAuditReport,
) -> Result<(), DbAuditError> {
    report.log_lines_unsealed = client
        .query_one(
            "SELECT count(*) FROM access_log WHERE batch_number IS NULL",
            &[],
        )
        .await?
        .get::<_, i64>(0) as u64;
    let batches: Vec<StoredBatch> = client
        .query(
            "SELECT number, root, line_count FROM access_log_batches ORDER BY number",
            &[],
        )
        .await?
        .iter()
        .map(|row| {
            Ok(StoredBatch {
                number: row.get(0),
                root: hash32(row.get(1), "a batch root")?,
                line_count: i64::from(row.get::<_, i32>(2)),
            })
        })
        .collect::<Result<_, DbAuditError>>()?;
    let rows = client
        .query_raw(
            &format!(
                "SELECT {LOGGED_LINE_COLUMNS}, batch_number, sealed_leaf FROM access_log
                 WHERE batch_number IS NOT NULL ORDER BY batch_number, id"
            ),
            std::iter::empty::<&str>(),
        )
        .await?;
    pin_mut!(rows);
    let mut lines_by_batch: HashMap<i64, Vec<[u8; 32]>> = HashMap::new();
    while let Some(row) = rows.try_next().await? {
        let line = LoggedLine::from_row(&row);
        let batch: i64 = row.get(10);
        let sealed_leaf = hash32(row.get(11), "a sealed leaf")?;
        report.log_lines_checked += 1;
        if line.leaf() != sealed_leaf {
            report
                .problems
                .push(DbProblem::LogLineEdited { line: line.id });
        }
        lines_by_batch.entry(batch).or_default().push(sealed_leaf);
    }
    let mut previous_root = [0; 32];
    let mut expected_number = 1;
    for batch in &batches {
        for number in expected_number..batch.number {
            report
                .problems
                .push(DbProblem::LogBatchMissing { batch: number });
        }
        expected_number = batch.number + 1;
        report.log_batches_checked += 1;
        let leaves = lines_by_batch.remove(&batch.number).unwrap_or_default();
        let found = leaves.len() as i64;
        let entry = log_batches::batch_entry(&batch.root, batch.line_count as usize);
        if final_height_of(&entry.hash()).is_none() {
            report.problems.push(DbProblem::LogBatchUnanchored {
                batch: batch.number,
            });
        }
        if found < batch.line_count {
            report.problems.push(DbProblem::LogLinesRemoved {
                batch: batch.number,
                count: batch.line_count - found,
            });
        } else if found > batch.line_count {
            report.problems.push(DbProblem::LogLinesInserted {
                batch: batch.number,
                count: found - batch.line_count,
            });
        } else if log_batches::batch_root(batch.number, &previous_root, &leaves) != batch.root {
            report.problems.push(DbProblem::LogBatchAltered {
                batch: batch.number,
            });
        }
        previous_root = batch.root;
    }
    let mut orphaned: Vec<i64> = lines_by_batch.into_keys().collect();
    orphaned.sort();
    for batch in orphaned {
        report.problems.push(DbProblem::LogBatchMissing { batch });
    }
    Ok(())
}
