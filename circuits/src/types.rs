//! The values that cross the crate's boundary: scopes, grants, public inputs, witnesses, proofs.

use crate::error::{Error, StatementViolation};
use crate::field::{field_from_bytes, field_to_bytes, FIELD_BYTES};
use crate::poseidon;
use crate::tree::MerklePath;
use ark_bn254::{Bn254, Fr};
use ark_ff::{BigInteger, PrimeField, UniformRand};
use ark_groth16::Proof;
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use rand::{CryptoRng, RngCore};
use std::ops::BitOr;

/// What a grant allows, as a bit mask of [`Scope::BITS`] bits. A grant covers a request when it
/// has every bit the request has.
///
/// | bit | value | name |
/// | --- | --- | --- |
/// | 0 | 1 | [`Scope::READ`]: view the patient's records and history |
/// | 1 | 2 | [`Scope::WRITE`]: add, update and delete the patient's records |
/// | 2 | 4 | [`Scope::RESEARCH`]: include the patient in anonymized exports |
///
/// Bits 3 to 15 are reserved for future scopes; the circuit already enforces coverage on all 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scope(u16);

impl Scope {
    /// View the patient's records and history.
    pub const READ: Scope = Scope(1);
    /// Add, update and delete the patient's records.
    pub const WRITE: Scope = Scope(2);
    /// Include the patient in anonymized research exports.
    pub const RESEARCH: Scope = Scope(4);
    /// The width of the mask, as the circuit decomposes it.
    pub const BITS: u32 = 16;

    /// A scope from its raw bits.
    pub const fn from_bits(bits: u16) -> Self {
        Scope(bits)
    }

    /// The raw bits.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Whether `self` has every bit of `required`.
    pub const fn covers(self, required: Scope) -> bool {
        self.0 & required.0 == required.0
    }
}

impl BitOr for Scope {
    type Output = Scope;

    fn bitor(self, other: Scope) -> Scope {
        Scope(self.0 | other.0)
    }
}

/// A uniformly random field element: a fresh grantee secret, salt or challenge.
pub fn random_field_element(rng: &mut (impl RngCore + CryptoRng)) -> Fr {
    Fr::rand(rng)
}

/// The public commitment to a grantee's secret: Poseidon (width 2) of the secret. The grantee
/// keeps the secret; the patient's server puts the commitment in the leaf.
pub fn grantee_commitment(secret: Fr) -> Fr {
    poseidon::hash1(secret)
}

/// A consent leaf (MISSION.md decision 4): Poseidon (width 6) of the grantee commitment, the
/// patient pseudonym, the scope mask, the expiry (seconds since the Unix epoch) and a random salt
/// that keeps equal grants apart and hides them from guessing.
pub fn consent_leaf(
    grantee_commitment: Fr,
    patient_pseudonym: Fr,
    scope: Scope,
    expiry: u64,
    salt: Fr,
) -> Fr {
    poseidon::hash5(&[
        grantee_commitment,
        patient_pseudonym,
        Fr::from(scope.bits()),
        Fr::from(expiry),
        salt,
    ])
}

/// What the patient's server records when a patient grants access; [`Grant::leaf`] is what goes
/// into the [`ConsentTree`](crate::ConsentTree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// [`grantee_commitment`] of the grantee's secret.
    pub grantee_commitment: Fr,
    /// The patient's pseudonym, as a field element.
    pub patient_pseudonym: Fr,
    /// What the grant allows.
    pub scope: Scope,
    /// The first second (Unix time) at which the grant no longer holds.
    pub expiry: u64,
    /// A uniformly random field element.
    pub salt: Fr,
}

impl Grant {
    /// The leaf that commits to this grant.
    pub fn leaf(&self) -> Fr {
        consent_leaf(
            self.grantee_commitment,
            self.patient_pseudonym,
            self.scope,
            self.expiry,
            self.salt,
        )
    }
}

/// The public inputs of a consent proof, in the order the circuit allocates them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicInputs {
    /// Root of the consent tree, as anchored on the chain.
    pub root: Fr,
    /// The patient whose data is asked for.
    pub patient_pseudonym: Fr,
    /// The scope the request needs.
    pub required_scope: Scope,
    /// The verifier's current time (Unix seconds); the grant must expire after it.
    pub now: u64,
    /// The verifier's single-use challenge.
    pub challenge: Fr,
}

impl PublicInputs {
    /// Number of public inputs.
    pub const COUNT: usize = 5;
    /// Length of [`PublicInputs::to_bytes`]: five canonical field elements.
    pub const ENCODED_LEN: usize = Self::COUNT * FIELD_BYTES;

    /// The inputs as the verifier's field elements.
    pub fn to_field_elements(&self) -> [Fr; Self::COUNT] {
        [
            self.root,
            self.patient_pseudonym,
            Fr::from(self.required_scope.bits()),
            Fr::from(self.now),
            self.challenge,
        ]
    }

    /// Reads the inputs back from field elements, checking that scope and time fit their types.
    pub fn from_field_elements(elements: &[Fr]) -> Result<Self, Error> {
        let [root, patient_pseudonym, required_scope, now, challenge] = elements else {
            return Err(Error::WrongLength {
                what: "public inputs (field elements)",
                expected: Self::COUNT,
                actual: elements.len(),
            });
        };
        let required_scope = small_integer(*required_scope, "required scope", Scope::BITS)?;
        Ok(PublicInputs {
            root: *root,
            patient_pseudonym: *patient_pseudonym,
            required_scope: Scope::from_bits(required_scope as u16),
            now: small_integer(*now, "now", 64)?,
            challenge: *challenge,
        })
    }

    /// Five 32-byte canonical (little-endian, below the modulus) field elements.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_field_elements()
            .iter()
            .flat_map(|element| field_to_bytes(*element))
            .collect()
    }

    /// Decodes [`PublicInputs::to_bytes`]: wrong length, non-canonical elements and out-of-range
    /// scope or time are typed errors.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != Self::ENCODED_LEN {
            return Err(Error::WrongLength {
                what: "public inputs",
                expected: Self::ENCODED_LEN,
                actual: bytes.len(),
            });
        }
        let elements = bytes
            .chunks_exact(FIELD_BYTES)
            .map(|chunk| field_from_bytes("public input", chunk))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_field_elements(&elements)
    }
}

/// The integer value of `element` if it is below `2^bits` (`bits <= 64`).
fn small_integer(element: Fr, what: &'static str, bits: u32) -> Result<u64, Error> {
    let bigint = element.into_bigint();
    if bigint.num_bits() > bits {
        return Err(Error::OutOfRange { what, bits });
    }
    Ok(bigint.as_ref()[0])
}

/// What only the grantee knows: the secret, the grant's private fields and where its leaf is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentWitness {
    /// The grantee's secret ([`grantee_commitment`] of it is in the leaf).
    pub grantee_secret: Fr,
    /// The scope the grant gives.
    pub granted_scope: Scope,
    /// The grant's expiry (Unix seconds).
    pub expiry: u64,
    /// The grant's salt.
    pub salt: Fr,
    /// The leaf's authentication path in the tree.
    pub path: MerklePath,
}

impl ConsentWitness {
    /// The leaf this witness opens, for the patient named in `public`.
    pub fn leaf(&self, public: &PublicInputs) -> Fr {
        consent_leaf(
            grantee_commitment(self.grantee_secret),
            public.patient_pseudonym,
            self.granted_scope,
            self.expiry,
            self.salt,
        )
    }

    /// Checks natively what the circuit checks, so that a prover learns why it cannot prove.
    pub fn check(&self, public: &PublicInputs) -> Result<(), StatementViolation> {
        if self.path.root(self.leaf(public)) != public.root {
            return Err(StatementViolation::NotInTree);
        }
        if !self.granted_scope.covers(public.required_scope) {
            return Err(StatementViolation::ScopeNotCovered);
        }
        if self.expiry <= public.now {
            return Err(StatementViolation::Expired);
        }
        Ok(())
    }
}

/// A Groth16 consent proof: 128 bytes in arkworks' compressed form.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentProof(pub(crate) Proof<Bn254>);

impl ConsentProof {
    /// Length of the compressed encoding.
    pub const ENCODED_LEN: usize = 128;

    /// arkworks' compressed canonical encoding (A, B, C).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(Self::ENCODED_LEN);
        self.0
            .serialize_compressed(&mut bytes)
            .expect("writing to a Vec cannot fail");
        bytes
    }

    /// Decodes and validates a proof: exactly [`Self::ENCODED_LEN`] bytes, every point on its
    /// curve and in the prime-order subgroup.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != Self::ENCODED_LEN {
            return Err(Error::WrongLength {
                what: "proof",
                expected: Self::ENCODED_LEN,
                actual: bytes.len(),
            });
        }
        Proof::deserialize_compressed(bytes)
            .map(ConsentProof)
            .map_err(|error| Error::MalformedProof(error.to_string()))
    }
}
