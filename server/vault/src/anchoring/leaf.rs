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
}
