//! `medvault audit access`: checks, from the database's evidence and the chain alone, that every
//! allowed doctor access was opened by a valid consent proof against an anchored root.
//!
//! The evidence is read as it is stored ([`AccessEvidence::read`]); nothing here needs the master
//! key or trusts the server's own verdicts: each proof is verified again with a verifying key
//! whose hash is anchored, each root is looked up on the chain, and each allowed access is
//! matched with the session it names.

use crate::policy::OPERATOR_SEED_REASON;
use medvault_anchor_chain::bytes::Hash32;
use medvault_anchor_chain::entry::Entry;
use medvault_circuits::field::{field_to_bytes, field_to_hex};
use medvault_circuits::{ConsentProof, ConsentVerifyingKey, PublicInputs};
use sha3::{Digest, Sha3_256};
use std::collections::HashMap;
use uuid::Uuid;

/// A stored value of the evidence cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("stored consent evidence is unreadable: {0}")]
pub struct UnreadableEvidence(pub &'static str);

/// A verifying key the server used.
pub struct EvidenceKey {
    /// The stored hash.
    pub key_sha3: Vec<u8>,
    /// The tree depth it is for.
    pub depth: i32,
    /// The key file's bytes.
    pub verifying_key: Vec<u8>,
}

impl EvidenceKey {
    /// The chain entry the server anchored for this key, if its stored hash and depth can name
    /// one.
    fn entry(&self) -> Option<Entry> {
        Some(super::keys::verifying_key_entry(
            self.key_sha3.clone().try_into().ok()?,
            u32::try_from(self.depth).ok()?,
        ))
    }
}

/// One opened consent session with its proof.
pub struct EvidenceSession {
    /// The session.
    pub id: Uuid,
    /// When it was opened (milliseconds since the epoch).
    pub opened_at_ms: i64,
    /// When it ended at the latest (milliseconds since the epoch).
    pub expires_at_ms: i64,
    /// Who opened it.
    pub doctor_id: Uuid,
    /// For whom.
    pub patient_id: Uuid,
    /// Whose tree.
    pub hospital_id: Uuid,
    /// The scope mask it allows.
    pub scope: i32,
    /// The root's sequence in the tree.
    pub root_sequence: i64,
    /// The root the tree's history records at that sequence.
    pub recorded_root: Vec<u8>,
    /// The verifying key it was checked with.
    pub key_sha3: Vec<u8>,
    /// The stored public inputs.
    pub public_inputs: Vec<u8>,
    /// The stored proof.
    pub proof: Vec<u8>,
}

/// One allowed doctor access (other than opening a session).
pub struct EvidenceAccess {
    /// The log line.
    pub log_id: i64,
    /// When (milliseconds since the epoch).
    pub at_ms: i64,
    /// Who.
    pub doctor_id: Uuid,
    /// Whose data.
    pub patient_id: Option<Uuid>,
    /// What was done.
    pub action: String,
    /// The session it names, if any.
    pub consent_session: Option<Uuid>,
    /// Whether it is a record the operator added at the command line ([`OPERATOR_SEED_REASON`]);
    /// no other action may claim it.
    pub by_operator: bool,
}

/// Everything `audit access` checks, as read from the database.
pub struct AccessEvidence {
    /// The verifying keys.
    pub keys: Vec<EvidenceKey>,
    /// The sessions.
    pub sessions: Vec<EvidenceSession>,
    /// The allowed doctor accesses.
    pub accesses: Vec<EvidenceAccess>,
}

/// Where an entry is anchored: its block's height and time.
#[derive(Clone, Copy, Debug)]
pub struct AnchoredAt {
    /// The block.
    pub height: u64,
    /// The block's time, milliseconds since the epoch.
    pub timestamp_ms: u64,
}

/// One thing found wrong.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AccessProblem {
    /// `verifying_key`, `session` or `access`.
    pub kind: &'static str,
    /// The key's hash, the session's id or the log line's id.
    pub id: String,
    /// What is wrong.
    pub problem: String,
}

/// The outcome of [`AccessEvidence::check`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct AccessAuditReport {
    /// Sessions whose proofs were verified.
    pub sessions_checked: usize,
    /// Allowed doctor accesses matched with a session.
    pub accesses_checked: usize,
    /// Records the operator wrote at the command line for a doctor (the demo's seed), which no
    /// proof opened and which are listed apart rather than as problems.
    pub operator_writes: usize,
    /// Everything wrong; empty when the audit passes.
    pub problems: Vec<AccessProblem>,
}

/// How far a validator's clock may be behind the database's when a root is anchored just before
/// a doctor proves against it.
const CLOCK_SKEW_MS: u64 = 5_000;

fn millis(at: chrono::DateTime<chrono::Utc>) -> i64 {
    at.timestamp_millis()
}

impl AccessEvidence {
    /// Reads the evidence through `client`.
    pub async fn read(client: &tokio_postgres::Client) -> Result<Self, tokio_postgres::Error> {
        let keys = client
            .query(
                "SELECT key_sha3, depth, verifying_key FROM consent_verifying_keys",
                &[],
            )
            .await?
            .iter()
            .map(|row| EvidenceKey {
                key_sha3: row.get(0),
                depth: row.get(1),
                verifying_key: row.get(2),
            })
            .collect();
        let sessions = client
            .query(
                "SELECT s.id, s.opened_at, s.expires_at, s.doctor_id, s.patient_id, s.hospital_id,
                        s.scope, s.root_sequence, r.root, s.verifying_key_sha3, s.public_inputs,
                        s.proof
                 FROM consent_sessions s
                 LEFT JOIN consent_roots r
                   ON r.hospital_id = s.hospital_id AND r.sequence = s.root_sequence
                 ORDER BY s.opened_at",
                &[],
            )
            .await?
            .iter()
            .map(|row| EvidenceSession {
                id: row.get(0),
                opened_at_ms: millis(row.get(1)),
                expires_at_ms: millis(row.get(2)),
                doctor_id: row.get(3),
                patient_id: row.get(4),
                hospital_id: row.get(5),
                scope: row.get(6),
                root_sequence: row.get(7),
                recorded_root: row.get::<_, Option<Vec<u8>>>(8).unwrap_or_default(),
                key_sha3: row.get(9),
                public_inputs: row.get(10),
                proof: row.get(11),
            })
            .collect();
        let accesses = client
            .query(
                "SELECT id, at, actor_id, patient_id, action, consent_session_id,
                        reason IS NOT DISTINCT FROM $1 AND action = 'add_record' FROM access_log
                 WHERE actor_role = 'doctor' AND outcome = 'allowed' AND action <> 'open_consent'
                 ORDER BY id",
                &[&OPERATOR_SEED_REASON],
            )
            .await?
            .iter()
            .map(|row| EvidenceAccess {
                log_id: row.get(0),
                at_ms: millis(row.get(1)),
                doctor_id: row.get(2),
                patient_id: row.get(3),
                action: row.get(4),
                consent_session: row.get(5),
                by_operator: row.get(6),
            })
            .collect();
        Ok(AccessEvidence {
            keys,
            sessions,
            accesses,
        })
    }

    /// The chain entries the check needs: each verifying key's and each session's root.
    pub fn entries_to_look_up(&self) -> Vec<Entry> {
        let keys = self.keys.iter().filter_map(EvidenceKey::entry);
        let roots = self.sessions.iter().filter_map(root_entry);
        keys.chain(roots).collect()
    }

    /// Checks the evidence against where its entries are anchored (`anchored`, by entry hash;
    /// an entry missing from it is not on the chain).
    pub fn check(&self, anchored: &HashMap<Hash32, AnchoredAt>) -> AccessAuditReport {
        let mut problems = Vec::new();
        let mut keys = HashMap::new();
        for key in &self.keys {
            let id = hex::encode(&key.key_sha3);
            let mut problem = |problem: String| {
                problems.push(AccessProblem {
                    kind: "verifying_key",
                    id: id.clone(),
                    problem,
                })
            };
            let hash: [u8; 32] = Sha3_256::digest(&key.verifying_key).into();
            if hash.as_slice() != key.key_sha3.as_slice() {
                problem("the stored key does not hash to its recorded hash".into());
                continue;
            }
            let anchored_key = key
                .entry()
                .is_some_and(|entry| anchored.contains_key(&entry.hash()));
            if !anchored_key {
                problem("the verifying key was never anchored".into());
                continue;
            }
            match ConsentVerifyingKey::from_bytes(&key.verifying_key) {
                Ok(verifying) => {
                    keys.insert(key.key_sha3.clone(), verifying.prepare());
                }
                Err(error) => problem(format!("the stored key is unreadable: {error}")),
            }
        }
        let mut verified_sessions = HashMap::new();
        for session in &self.sessions {
            match check_session(session, &keys, anchored) {
                Ok(()) => {
                    verified_sessions.insert(session.id, session);
                }
                Err(problem) => problems.push(AccessProblem {
                    kind: "session",
                    id: session.id.to_string(),
                    problem,
                }),
            }
        }
        let mut operator_writes = 0;
        for access in &self.accesses {
            if access.by_operator {
                operator_writes += 1;
                continue;
            }
            let problem = match access
                .consent_session
                .map(|id| (id, verified_sessions.get(&id)))
            {
                None => Some("an allowed doctor access names no consent session".to_owned()),
                Some((id, None)) => Some(format!(
                    "names consent session {id}, which is missing or failed its check"
                )),
                Some((_, Some(session))) => {
                    if session.doctor_id != access.doctor_id
                        || Some(session.patient_id) != access.patient_id
                    {
                        Some("names a consent session of another doctor or patient".to_owned())
                    } else if access.at_ms < session.opened_at_ms
                        || access.at_ms > session.expires_at_ms
                    {
                        Some("happened outside its consent session's lifetime".to_owned())
                    } else {
                        None
                    }
                }
            };
            if let Some(problem) = problem {
                problems.push(AccessProblem {
                    kind: "access",
                    id: access.log_id.to_string(),
                    problem: format!("{} ({})", problem, access.action),
                });
            }
        }
        AccessAuditReport {
            sessions_checked: self.sessions.len(),
            accesses_checked: self.accesses.len() - operator_writes,
            operator_writes,
            problems,
        }
    }
}

/// The `ConsentRoot` entry a session's proof was made against, from its public inputs.
fn root_entry(session: &EvidenceSession) -> Option<Entry> {
    let public = PublicInputs::from_bytes(&session.public_inputs).ok()?;
    Some(super::tree::consent_root_entry(
        session.hospital_id,
        public.root,
        u64::try_from(session.root_sequence).ok()?,
    ))
}

fn check_session(
    session: &EvidenceSession,
    keys: &HashMap<Vec<u8>, medvault_circuits::PreparedConsentKey>,
    anchored: &HashMap<Hash32, AnchoredAt>,
) -> Result<(), String> {
    let public = PublicInputs::from_bytes(&session.public_inputs)
        .map_err(|error| format!("its public inputs are unreadable: {error}"))?;
    let proof = ConsentProof::from_bytes(&session.proof)
        .map_err(|error| format!("its proof is unreadable: {error}"))?;
    if field_to_bytes(public.root).as_slice() != session.recorded_root.as_slice() {
        return Err(format!(
            "its root {} is not the root the tree's history records at sequence {}",
            field_to_hex(public.root),
            session.root_sequence
        ));
    }
    if i32::from(public.required_scope.bits()) != session.scope {
        return Err("the scope it opened is not the scope its proof covers".into());
    }
    let entry = root_entry(session).ok_or("its root cannot be named as a chain entry")?;
    let at = anchored
        .get(&entry.hash())
        .ok_or("its root was never anchored")?;
    let opened_at_ms = u64::try_from(session.opened_at_ms).unwrap_or(0);
    if at.timestamp_ms > opened_at_ms + CLOCK_SKEW_MS {
        return Err(format!(
            "its root was anchored in block {} after the session was opened",
            at.height
        ));
    }
    let key = keys
        .get(&session.key_sha3)
        .ok_or("its verifying key is not an anchored key")?;
    match medvault_circuits::verify(key, &public, &proof) {
        Ok(true) => Ok(()),
        Ok(false) => Err("its proof does not verify".into()),
        Err(error) => Err(format!("its proof cannot be checked: {error}")),
    }
}
