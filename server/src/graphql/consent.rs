//! The consent proof flow's types (the operations are on the query and mutation roots): field
//! elements as `0x` and 64 hex digits (big-endian, `medvault_circuits::field`), hashes and proofs
//! as plain lowercase hex.

use super::anchoring::{Anchoring, ChainView};
use super::vocabulary::AccessScope;
use crate::error::ApiError;
use async_graphql::{Context, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use medvault_circuits::field::{field_from_hex, field_to_hex};
use medvault_circuits::Fr;
use medvault_vault::consent;

/// Where doctors' clients fetch the proving key.
pub const PROVING_KEY_PATH: &str = "/consent/proving-key";

/// A field element argument, or BAD_USER_INPUT naming the argument.
pub fn field_argument(name: &'static str, text: &str) -> crate::error::ApiResult<Fr> {
    field_from_hex(name, text).map_err(|_| {
        crate::error::ApiError::BadUserInput(format!(
            "{name} must be 0x and 64 hex digits of a BN254 scalar"
        ))
    })
}

/// The consent circuit's keys in use.
pub struct ConsentKeys(pub consent::ConsentKeysInfo);

#[Object]
impl ConsentKeys {
    /// The depth of every hospital's consent tree, in 4-ary levels (10 holds 2^20 grants).
    async fn depth(&self) -> u32 {
        self.0.depth
    }
    /// SHA3-256 of the verifying key file, anchored as a `VerifyingKey` entry.
    async fn verifying_key_hash(&self) -> String {
        hex::encode(self.0.verifying_key_sha3)
    }
    /// The chain height the verifying key's hash is anchored at; null while pending.
    async fn anchored_height(&self) -> Option<i64> {
        self.0.anchored_height
    }
    /// Where the verifying key's `VerifyingKey` entry is anchored, with its proof.
    async fn anchoring(&self, ctx: &Context<'_>) -> Result<Anchoring> {
        let entry = consent::keys::verifying_key_entry(self.0.verifying_key_sha3, self.0.depth);
        ChainView::anchoring_of(ctx, entry).await
    }
    /// Where to download the proving key (a path on this server).
    async fn proving_key_url(&self) -> &'static str {
        PROVING_KEY_PATH
    }
    /// SHA3-256 of the proving key file, to check a download against.
    async fn proving_key_hash(&self) -> String {
        hex::encode(self.0.proving_key_sha3)
    }
}

/// A doctor's registered grantee key.
pub struct GranteeKey(pub consent::GranteeKey);

#[Object]
impl GranteeKey {
    /// The commitment to the doctor's secret.
    async fn commitment(&self) -> String {
        field_to_hex(self.0.commitment)
    }
    async fn registered_at(&self) -> DateTime<Utc> {
        self.0.registered_at
    }
    /// How many live grants were moved to this key from the previous one.
    async fn rekeyed_grants(&self) -> i64 {
        self.0.rekeyed_grants
    }
}

/// A single-use challenge for one consent proof.
pub struct ConsentChallenge(pub consent::ConsentChallenge);

#[Object]
impl ConsentChallenge {
    /// The challenge, a public input of the proof.
    async fn challenge(&self) -> String {
        field_to_hex(self.0.challenge)
    }
    /// The time (Unix seconds) the proof shows the grant valid at.
    async fn now(&self) -> u64 {
        self.0.now
    }
    /// When the challenge can no longer be answered.
    async fn expires_at(&self) -> DateTime<Utc> {
        self.0.expires_at
    }
    /// The patient's pseudonym, a public input of the proof.
    async fn patient_pseudonym(&self) -> String {
        field_to_hex(self.0.patient_pseudonym)
    }
    /// The scope the proof must cover, as its bit mask (READ 1, WRITE 2).
    async fn required_scope(&self) -> u16 {
        self.0.required_scope.bits()
    }
}

/// The calling doctor's leaf: its private fields and its authentication path.
pub struct ConsentWitness(pub consent::ConsentWitnessView);

#[Object]
impl ConsentWitness {
    /// The root the path leads to.
    async fn root(&self) -> String {
        field_to_hex(self.0.root)
    }
    /// The tree's sequence at that root.
    async fn sequence(&self) -> i64 {
        self.0.sequence
    }
    /// The tree's depth.
    async fn depth(&self) -> u32 {
        self.0.depth
    }
    async fn patient_pseudonym(&self) -> String {
        field_to_hex(self.0.patient_pseudonym)
    }
    /// The scope the grant gives, as its bit mask.
    async fn granted_scope(&self) -> u16 {
        self.0.granted_scope.bits()
    }
    /// The grant's expiry, Unix seconds.
    async fn expiry(&self) -> u64 {
        self.0.expiry
    }
    async fn salt(&self) -> String {
        field_to_hex(self.0.salt)
    }
    async fn leaf_index(&self) -> u64 {
        self.0.path.leaf_index
    }
    /// Per level of the tree, leaf level first, the three other children of the path's parent,
    /// leftmost first.
    async fn path(&self) -> Vec<Vec<String>> {
        self.0
            .path
            .siblings
            .iter()
            .map(|level| level.iter().map(|sibling| field_to_hex(*sibling)).collect())
            .collect()
    }
}

/// An open consent session: the bearer session that opened it may use its scopes on the patient
/// until it expires or the grant is revoked.
#[derive(SimpleObject)]
pub struct ConsentSession {
    id: ID,
    patient_id: ID,
    scopes: Vec<AccessScope>,
    opened_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

impl From<consent::ConsentSession> for ConsentSession {
    fn from(session: consent::ConsentSession) -> Self {
        ConsentSession {
            id: ID(session.id.to_string()),
            patient_id: ID(session.patient_id.to_string()),
            scopes: session.scopes.into_iter().map(Into::into).collect(),
            opened_at: session.opened_at,
            expires_at: session.expires_at,
        }
    }
}

/// One verified consent proof, for auditors: no health data, the patient by pseudonym.
pub struct AccessProof(pub consent::AccessProof);

#[Object]
impl AccessProof {
    /// The consent session the proof opened.
    async fn session_id(&self) -> ID {
        ID(self.0.session_id.to_string())
    }
    async fn opened_at(&self) -> DateTime<Utc> {
        self.0.opened_at
    }
    async fn doctor_id(&self) -> ID {
        ID(self.0.doctor_id.to_string())
    }
    /// The hospital whose consent tree the root is of.
    async fn hospital_id(&self) -> ID {
        ID(self.0.hospital_id.to_string())
    }
    /// The root's sequence in that tree.
    async fn root_sequence(&self) -> i64 {
        self.0.root_sequence
    }
    async fn root(&self) -> String {
        field_to_hex(self.0.public_inputs.root)
    }
    /// Where the root the proof was made against is anchored (its `ConsentRoot` entry).
    async fn root_anchoring(&self, ctx: &Context<'_>) -> Result<Anchoring> {
        let sequence = u64::try_from(self.0.root_sequence)
            .map_err(|error| ApiError::internal(&error).to_graphql())?;
        let entry =
            consent::consent_root_entry(self.0.hospital_id, self.0.public_inputs.root, sequence);
        ChainView::anchoring_of(ctx, entry).await
    }
    async fn patient_pseudonym(&self) -> String {
        field_to_hex(self.0.public_inputs.patient_pseudonym)
    }
    async fn required_scope(&self) -> u16 {
        self.0.public_inputs.required_scope.bits()
    }
    /// The proof's `now`, Unix seconds.
    async fn now(&self) -> u64 {
        self.0.public_inputs.now
    }
    async fn challenge(&self) -> String {
        field_to_hex(self.0.public_inputs.challenge)
    }
    /// The five public inputs as canonical little-endian field elements, hex.
    async fn public_inputs(&self) -> String {
        hex::encode(self.0.public_inputs.to_bytes())
    }
    /// The Groth16 proof (arkworks' compressed form), hex.
    async fn proof(&self) -> String {
        hex::encode(&self.0.proof)
    }
    /// SHA3-256 of the verifying key it was checked with.
    async fn verifying_key_hash(&self) -> String {
        hex::encode(self.0.verifying_key_sha3)
    }
    /// How many accesses used the session.
    async fn accesses(&self) -> i64 {
        self.0.accesses
    }
}
