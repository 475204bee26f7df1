//! The JSON documents of `medvault consent prove` / `verify` (see the crate README for examples),
//! with field elements in the hex form of [`crate::field`].

use crate::error::Error;
use crate::field::{field_from_hex, field_to_hex};
use crate::tree::{MerklePath, SIBLINGS_PER_LEVEL};
use crate::types::{ConsentProof, ConsentWitness, PublicInputs, Scope};
use ark_bn254::Fr;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

fn to_json<T: Serialize>(document: &T) -> String {
    serde_json::to_string_pretty(document).expect("documents are plain strings and numbers")
}

fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, Error> {
    serde_json::from_str(text).map_err(|error| Error::MalformedDocument(error.to_string()))
}

/// The witness file that `medvault consent prove` reads: the statement (all public inputs but
/// the challenge, which the verifier issues) and the grantee's private witness.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessDocument {
    /// Depth of the tree (and of the keys to prove with).
    pub depth: u32,
    /// Root of the consent tree.
    pub root: String,
    /// The patient's pseudonym.
    pub patient_pseudonym: String,
    /// The scope to prove, as its bits.
    pub required_scope: u16,
    /// The time to prove the grant is valid at (Unix seconds).
    pub now: u64,
    /// The grantee's secret.
    pub grantee_secret: String,
    /// The scope the grant gives, as its bits.
    pub granted_scope: u16,
    /// The grant's expiry (Unix seconds).
    pub expiry: u64,
    /// The grant's salt.
    pub salt: String,
    /// The leaf's index in the tree.
    pub leaf_index: u64,
    /// Per level of the 4-ary tree, leaf level first, the three other children of the path's
    /// parent node, leftmost first.
    pub path: Vec<[String; SIBLINGS_PER_LEVEL]>,
}

impl WitnessDocument {
    /// The document for a statement and its witness (the challenge is left out).
    pub fn new(public: &PublicInputs, witness: &ConsentWitness) -> Self {
        WitnessDocument {
            depth: witness.path.siblings.len() as u32,
            root: field_to_hex(public.root),
            patient_pseudonym: field_to_hex(public.patient_pseudonym),
            required_scope: public.required_scope.bits(),
            now: public.now,
            grantee_secret: field_to_hex(witness.grantee_secret),
            granted_scope: witness.granted_scope.bits(),
            expiry: witness.expiry,
            salt: field_to_hex(witness.salt),
            leaf_index: witness.path.leaf_index,
            path: witness
                .path
                .siblings
                .iter()
                .map(|level| level.map(field_to_hex))
                .collect(),
        }
    }

    /// Pretty-printed JSON.
    pub fn to_json(&self) -> String {
        to_json(self)
    }

    /// Parses JSON (unknown fields are an error).
    pub fn from_json(text: &str) -> Result<Self, Error> {
        from_json(text)
    }

    /// The public inputs (with the verifier's `challenge`) and the witness.
    pub fn decode(&self, challenge: Fr) -> Result<(PublicInputs, ConsentWitness), Error> {
        if self.path.len() != self.depth as usize {
            return Err(Error::PathLength {
                expected: self.depth,
                actual: self.path.len(),
            });
        }
        let public = PublicInputs {
            root: field_from_hex("root", &self.root)?,
            patient_pseudonym: field_from_hex("patient_pseudonym", &self.patient_pseudonym)?,
            required_scope: Scope::from_bits(self.required_scope),
            now: self.now,
            challenge,
        };
        let siblings = self
            .path
            .iter()
            .map(|level| {
                let [s0, s1, s2] = level
                    .each_ref()
                    .map(|sibling| field_from_hex("path", sibling));
                Ok([s0?, s1?, s2?])
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let witness = ConsentWitness {
            grantee_secret: field_from_hex("grantee_secret", &self.grantee_secret)?,
            granted_scope: Scope::from_bits(self.granted_scope),
            expiry: self.expiry,
            salt: field_from_hex("salt", &self.salt)?,
            path: MerklePath {
                leaf_index: self.leaf_index,
                siblings,
            },
        };
        Ok((public, witness))
    }
}

/// The public inputs in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicInputsDocument {
    /// Root of the consent tree.
    pub root: String,
    /// The patient's pseudonym.
    pub patient_pseudonym: String,
    /// The required scope's bits.
    pub required_scope: u16,
    /// The verifier's time (Unix seconds).
    pub now: u64,
    /// The verifier's challenge.
    pub challenge: String,
}

impl From<&PublicInputs> for PublicInputsDocument {
    fn from(public: &PublicInputs) -> Self {
        PublicInputsDocument {
            root: field_to_hex(public.root),
            patient_pseudonym: field_to_hex(public.patient_pseudonym),
            required_scope: public.required_scope.bits(),
            now: public.now,
            challenge: field_to_hex(public.challenge),
        }
    }
}

impl PublicInputsDocument {
    /// The typed public inputs.
    pub fn decode(&self) -> Result<PublicInputs, Error> {
        Ok(PublicInputs {
            root: field_from_hex("root", &self.root)?,
            patient_pseudonym: field_from_hex("patient_pseudonym", &self.patient_pseudonym)?,
            required_scope: Scope::from_bits(self.required_scope),
            now: self.now,
            challenge: field_from_hex("challenge", &self.challenge)?,
        })
    }
}

/// What `medvault consent prove` writes and `medvault consent verify` reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofDocument {
    /// Depth of the keys the proof was made with.
    pub depth: u32,
    /// The statement proven.
    pub public_inputs: PublicInputsDocument,
    /// Hex of the 128-byte compressed proof.
    pub proof: String,
}

impl ProofDocument {
    /// The document for a proof of `public` made with keys of depth `depth`.
    pub fn new(depth: u32, public: &PublicInputs, proof: &ConsentProof) -> Self {
        ProofDocument {
            depth,
            public_inputs: public.into(),
            proof: hex::encode(proof.to_bytes()),
        }
    }

    /// Pretty-printed JSON.
    pub fn to_json(&self) -> String {
        to_json(self)
    }

    /// Parses JSON (unknown fields are an error).
    pub fn from_json(text: &str) -> Result<Self, Error> {
        from_json(text)
    }

    /// The typed public inputs and the validated proof.
    pub fn decode(&self) -> Result<(PublicInputs, ConsentProof), Error> {
        let public = self.public_inputs.decode()?;
        let bytes = hex::decode(&self.proof)
            .map_err(|error| Error::MalformedProof(format!("proof is not hex: {error}")))?;
        Ok((public, ConsentProof::from_bytes(&bytes)?))
    }
}

/// What `medvault consent verify` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictDocument {
    /// Whether the proof verified.
    pub valid: bool,
    /// The depth of the verifying key used.
    pub depth: u32,
}

impl VerdictDocument {
    /// Pretty-printed JSON.
    pub fn to_json(&self) -> String {
        to_json(self)
    }
}
