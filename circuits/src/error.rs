//! The crate's one error type. Malformed input is an error; a proof of a false statement is not
//! (verification answers `Ok(false)` for it).

use thiserror::Error;

/// Everything that can go wrong in this crate, by kind, so callers can map it to a response.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A field element's encoding is not canonical: it is at least the modulus, or is not
    /// exactly 32 bytes (64 hex digits).
    #[error("{what}: not a canonical BN254 scalar field element")]
    NonCanonicalField {
        /// Which value was being decoded.
        what: &'static str,
    },
    /// A public input that must be a small integer (scope, time) does not fit its type.
    #[error("{what}: value does not fit in {bits} bits")]
    OutOfRange {
        /// Which value was being decoded.
        what: &'static str,
        /// How many bits it must fit in.
        bits: u32,
    },
    /// Bytes have the wrong length for what they should hold.
    #[error("{what}: expected {expected} bytes, got {actual}")]
    WrongLength {
        /// Which value was being decoded.
        what: &'static str,
        /// The length it must have.
        expected: usize,
        /// The length it had.
        actual: usize,
    },
    /// A proof does not decode to points on the curve and in the prime-order subgroup.
    #[error("malformed proof: {0}")]
    MalformedProof(String),
    /// A key file does not decode, fails the curve and subgroup checks, or does not have the
    /// shape of the consent circuit it claims to be for.
    #[error("malformed key: {0}")]
    MalformedKey(String),
    /// A serialized consent tree is malformed or its stored root does not match its leaves.
    #[error("malformed consent tree: {0}")]
    MalformedTree(String),
    /// A JSON document does not have the expected fields.
    #[error("malformed document: {0}")]
    MalformedDocument(String),
    /// A tree depth outside `1..=MAX_DEPTH`.
    #[error("depth {0} is outside 1..={max}", max = crate::MAX_DEPTH)]
    UnsupportedDepth(u32),
    /// The tree has no free leaf left.
    #[error("the consent tree is full ({capacity} leaves)")]
    TreeFull {
        /// How many leaves the tree holds.
        capacity: u64,
    },
    /// A leaf index that was never assigned.
    #[error("leaf index {index} is not in the tree (it holds {len} leaves)")]
    NoSuchLeaf {
        /// The index asked for.
        index: u64,
        /// How many leaves have been inserted.
        len: u64,
    },
    /// The witness handed to the prover has a path of the wrong depth for the key.
    #[error("authentication path has {actual} siblings, the key is for depth {expected}")]
    PathLength {
        /// The key's depth.
        expected: u32,
        /// The path's length.
        actual: usize,
    },
    /// The prover was asked to prove something its witness does not satisfy.
    #[error("the witness does not satisfy the statement: {0}")]
    Unsatisfied(StatementViolation),
    /// A proving or verifying key for one depth was used with material for another.
    #[error("the key is for depth {key}, the input for depth {input}")]
    DepthMismatch {
        /// The key's depth.
        key: u32,
        /// The other side's depth.
        input: u32,
    },
    /// A ceremony transcript or contribution was refused.
    #[error("ceremony: {0}")]
    Ceremony(#[from] crate::ceremony::CeremonyError),
    /// arkworks reported a synthesis failure (a bug or a key that does not match the circuit).
    #[error("constraint synthesis failed: {0}")]
    Synthesis(#[from] ark_relations::r1cs::SynthesisError),
    /// Reading or writing a key file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// Why a witness does not prove the statement asked for; found natively before proving so the
/// caller gets a reason instead of a proof that will not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StatementViolation {
    /// The leaf and path lead to another root.
    #[error("the leaf is not in the tree with this root")]
    NotInTree,
    /// The granted scope lacks a bit of the required scope.
    #[error("the granted scope does not cover the required scope")]
    ScopeNotCovered,
    /// The grant expired at or before `now`.
    #[error("the grant has expired")]
    Expired,
}
