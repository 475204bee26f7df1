//! Groth16 consent proofs over BN254 with a Poseidon Merkle tree.
//!
//! A patient grants a grantee (a doctor, a researcher) access by inserting a leaf into their
//! [`ConsentTree`]; the leaf commits to the grantee's public commitment, the patient's pseudonym,
//! a [`Scope`] bit mask, an expiry and a random salt. A grantee later proves, in zero knowledge,
//! that they hold the secret behind a leaf of the tree with a given root, for a given patient,
//! whose scope covers the required scope and whose expiry is after `now`, bound to a challenge
//! issued by the verifying server. The verifier needs the root and the verifying key, nothing else.
//!
//! One module per phase: [`poseidon`] (native hash and R1CS gadget), [`tree`], [`circuit`],
//! [`setup`](mod@setup) (keys and key files), [`ceremony`] (the multi-party setup),
//! [`prove`](mod@prove), [`verify`](mod@verify) (single and batch); and for the values that cross
//! the crate's boundary, [`field`] (field elements as bytes and hex, importing nothing from the
//! crate but its error), [`types`] and [`encoding`] (the JSON documents, which no other module
//! imports).
//!
//! This crate knows nothing about HTTP, PostgreSQL or tokio: callers hand it bytes or typed values.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod ceremony;
pub mod circuit;
pub mod encoding;
mod error;
pub mod field;
mod fixed_base;
pub mod grantee;
pub mod poseidon;
pub mod prove;
mod r1cs;
pub mod setup;
pub mod tree;
pub mod types;
pub mod verify;

pub use ark_bn254::Fr;
pub use ceremony::{Ceremony, CeremonyError, Phase, Rejection};
pub use error::{Error, StatementViolation};
pub use grantee::GranteeSecret;
pub use prove::prove;
/// The operating system's random number generator, for callers that have none of their own.
pub use rand::rngs::OsRng;
pub use setup::{setup, ConsentProvingKey, ConsentVerifyingKey, PreparedConsentKey};
pub use tree::{ConsentTree, MerklePath, DEFAULT_DEPTH, MAX_DEPTH};
pub use types::{
    consent_leaf, grantee_commitment, random_field_element, ConsentProof, ConsentWitness, Grant,
    PublicInputs, Scope,
};
pub use verify::{batch_verify, verify, verify_encoded, BatchVerdict};
