//! The leaves this server queues for the anchor chain (MISSION.md decision 3). A leaf commits to
//! ciphertext, never to plaintext, so it can be published and kept after the content is shredded.

use chrono::{DateTime, Utc};
use sha3::{Digest, Sha3_256};
use uuid::Uuid;

/// SHA3-256 of a record version's ciphertext (of nothing, for a tombstone).
pub fn ciphertext_digest(ciphertext: Option<&[u8]>) -> [u8; 32] {
    Sha3_256::digest(ciphertext.unwrap_or_default()).into()
}

/// The anchored leaf of one record version: SHA3-256 over a domain tag, the record id, the
/// version, the patient's pseudonym, the ciphertext digest and the version's time in
/// microseconds since the epoch (the precision PostgreSQL keeps, so an auditor can recompute it
/// from a stored row).
pub fn record_version_leaf(
    record: Uuid,
    version: i32,
    patient_pseudonym: &[u8; 32],
    ciphertext_sha3: &[u8; 32],
    created_at: DateTime<Utc>,
) -> [u8; 32] {
    let mut hasher = Sha3_256::new();
    hasher.update(b"medvault/record-version/v1");
    hasher.update(record.as_bytes());
    hasher.update(version.to_be_bytes());
    hasher.update(patient_pseudonym);
    hasher.update(ciphertext_sha3);
    hasher.update(created_at.timestamp_micros().to_be_bytes());
    hasher.finalize().into()
}

/// One access-log line as stored: every column that says who did what to whose data, and how
/// it ended. The line's leaf covers all of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedLine {
    /// Its position in the log.
    pub id: i64,
    /// When it was logged.
    pub at: DateTime<Utc>,
    /// Who asked.
    pub actor_id: Uuid,
    /// In what role.
    pub actor_role: String,
    /// What they asked to do.
    pub action: String,
    /// Whose data, if the request named a patient.
    pub patient_id: Option<Uuid>,
    /// Which record, if one.
    pub record_id: Option<Uuid>,
    /// `allowed` or `denied`.
    pub outcome: String,
    /// Why it was refused.
    pub reason: Option<String>,
    /// The consent session a doctor's access went through.
    pub consent_session_id: Option<Uuid>,
}

/// The columns of `access_log` that [`LoggedLine::from_row`] reads, in its order.
pub const LOGGED_LINE_COLUMNS: &str =
    "id, at, actor_id, actor_role, action, patient_id, record_id, outcome, reason, consent_session_id";

impl LoggedLine {
    /// The line in a row selected with [`LOGGED_LINE_COLUMNS`] first.
    pub fn from_row(row: &tokio_postgres::Row) -> LoggedLine {
        LoggedLine {
            id: row.get(0),
            at: row.get(1),
            actor_id: row.get(2),
            actor_role: row.get(3),
            action: row.get(4),
            patient_id: row.get(5),
            record_id: row.get(6),
            outcome: row.get(7),
            reason: row.get(8),
            consent_session_id: row.get(9),
        }
    }

    /// The line's leaf: SHA3-256 over a domain tag and every column, each text length-prefixed
    /// and each optional column flagged, so that no two different lines share an encoding.
    pub fn leaf(&self) -> [u8; 32] {
        let mut hasher = Sha3_256::new();
        hasher.update(b"medvault/access-log-line/v1");
        hasher.update(self.id.to_be_bytes());
        hasher.update(self.at.timestamp_micros().to_be_bytes());
        hasher.update(self.actor_id.as_bytes());
        for text in [&self.actor_role, &self.action, &self.outcome] {
            update_text(&mut hasher, Some(text));
        }
        for id in [self.patient_id, self.record_id, self.consent_session_id] {
            match id {
                Some(id) => {
                    hasher.update([1]);
                    hasher.update(id.as_bytes());
                }
                None => hasher.update([0]),
            }
        }
        update_text(&mut hasher, self.reason.as_deref());
        hasher.finalize().into()
    }
}

fn update_text(hasher: &mut Sha3_256, text: Option<&str>) {
    match text {
        Some(text) => {
            hasher.update([1]);
            hasher.update((text.len() as u64).to_be_bytes());
            hasher.update(text.as_bytes());
        }
        None => hasher.update([0]),
    }
}

/// The first leaf of access-log batch `number`: it binds the batch to its place in the run of
/// batches and to the root of the one before (zeros for the first), so that a batch cannot be
/// removed or reordered without breaking the next one.
pub fn access_log_batch_header(number: i64, previous_root: &[u8; 32]) -> [u8; 32] {
    let mut hasher = Sha3_256::new();
    hasher.update(b"medvault/access-log-batch/v1");
    hasher.update(number.to_be_bytes());
    hasher.update(previous_root);
    hasher.finalize().into()
}

/// The chain entry that anchors a record version's leaf: what the outbox queues, the API proves
/// and `audit db` looks up.
pub fn record_version_entry(leaf: &[u8; 32]) -> medvault_anchor_chain::entry::Entry {
    medvault_anchor_chain::entry::Entry::RecordAnchor {
        leaf: medvault_anchor_chain::bytes::Hash32(*leaf),
    }
}

/// Truncates a time to the microsecond precision PostgreSQL stores.
pub fn to_stored_precision(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_changes_the_leaf() {
        let record = Uuid::from_u128(1);
        let at = DateTime::from_timestamp_micros(1_700_000_000_000_000).unwrap();
        let base = record_version_leaf(record, 1, &[1; 32], &[2; 32], at);
        assert_ne!(
            base,
            record_version_leaf(Uuid::from_u128(2), 1, &[1; 32], &[2; 32], at)
        );
        assert_ne!(base, record_version_leaf(record, 2, &[1; 32], &[2; 32], at));
        assert_ne!(base, record_version_leaf(record, 1, &[3; 32], &[2; 32], at));
        assert_ne!(base, record_version_leaf(record, 1, &[1; 32], &[3; 32], at));
        let later = at + chrono::Duration::microseconds(1);
        assert_ne!(
            base,
            record_version_leaf(record, 1, &[1; 32], &[2; 32], later)
        );
    }

    #[test]
    fn every_column_of_a_logged_line_changes_its_leaf() {
        let line = LoggedLine {
            id: 7,
            at: DateTime::from_timestamp_micros(1_700_000_000_000_000).unwrap(),
            actor_id: Uuid::from_u128(1),
            actor_role: "doctor".into(),
            action: "read_record".into(),
            patient_id: Some(Uuid::from_u128(2)),
            record_id: None,
            outcome: "allowed".into(),
            reason: None,
            consent_session_id: Some(Uuid::from_u128(3)),
        };
        let changed = [
            LoggedLine {
                id: 8,
                ..line.clone()
            },
            LoggedLine {
                at: line.at + chrono::Duration::microseconds(1),
                ..line.clone()
            },
            LoggedLine {
                actor_id: Uuid::from_u128(9),
                ..line.clone()
            },
            LoggedLine {
                actor_role: "admin".into(),
                ..line.clone()
            },
            LoggedLine {
                action: "write_record".into(),
                ..line.clone()
            },
            LoggedLine {
                patient_id: None,
                ..line.clone()
            },
            LoggedLine {
                record_id: Some(Uuid::from_u128(2)),
                ..line.clone()
            },
            LoggedLine {
                outcome: "denied".into(),
                ..line.clone()
            },
            LoggedLine {
                reason: Some(String::new()),
                ..line.clone()
            },
            LoggedLine {
                consent_session_id: None,
                ..line.clone()
            },
        ];
        for other in changed {
            assert_ne!(line.leaf(), other.leaf(), "{other:?}");
        }
    }
}
