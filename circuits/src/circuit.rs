//! The consent circuit (MISSION.md decision 5) and a Poseidon-only membership circuit used as a
//! benchmark baseline.
//!
//! Public inputs, in allocation order: root, patient pseudonym, required scope, now, challenge.
//! Private witness: grantee secret, granted scope, expiry, salt, leaf index bits and siblings.
//!
//! | part | constraints |
//! | --- | --- |
//! | grantee commitment, Poseidon `t = 2` | 213 |
//! | granted scope covers required scope, 16 bits | 33 |
//! | expiry > now, 64-bit range check of `expiry - now - 1` | 64 |
//! | consent leaf, Poseidon `t = 6` | 321 |
//! | per level of the 4-ary tree: two position bits, placing the node among its brothers, Poseidon `t = 5` | 2 + 5 + 297 |
//! | root equality and challenge binding | 2 |
//! | total at depth `d` | `633 + 304 d` (3,673 at depth 10, 2^20 leaves) |
//!
//! Scope coverage: each granted bit `g` is boolean and each required bit `r` satisfies
//! `r * (r - g) = 0`, which forces `r = 0` when `g = 0` and `r` boolean when `g = 1`, so a
//! required bit can only be set where a granted bit is; the required bits must add up to the
//! public required scope (which also bounds it by `2^16`). The granted scope is never allocated:
//! the leaf hash takes the linear combination of its bits.
//!
//! Expiry: the prover supplies the 64 bits of `m = expiry - now - 1` and the leaf hash takes
//! `now + 1 + m` as the expiry, so the leaf can only match if `expiry = now + 1 + m` with
//! `0 <= m < 2^64`, that is `expiry > now` as integers (`now` is a `u64`, so nothing wraps).
//!
//! Challenge: Groth16 binds a public input only through the constraints it enters (arkworks'
//! reduction also adds one input-consistency row per input, but the design does not lean on
//! that), so the challenge enters one constraint of its own, `challenge * challenge = c2`. Every
//! other public input is used by the statement itself.

use crate::error::Error;
use crate::poseidon::{commitment_parameters, leaf_parameters, node_parameters};
use crate::r1cs::{Builder, Wire};
use crate::tree::{check_depth, child_position, MerklePath, SIBLINGS_PER_LEVEL};
use crate::types::{ConsentWitness, PublicInputs, Scope};
use ark_bn254::Fr;
use ark_ff::{AdditiveGroup, One, Zero};
use ark_relations::r1cs::{
    ConstraintSynthesizer, ConstraintSystem, ConstraintSystemRef, SynthesisError, SynthesisMode,
};

/// The consent statement with its witness, ready to be synthesized.
#[derive(Debug, Clone)]
pub struct ConsentCircuit {
    /// The public inputs.
    pub public: PublicInputs,
    /// The private witness; its path length is the circuit's depth.
    pub witness: ConsentWitness,
}

impl ConsentCircuit {
    /// A circuit of the given depth with all-zero values (and an expiry of 1), for key
    /// generation and counting: the shape of the circuit does not depend on the values.
    pub fn blank(depth: u32) -> Result<Self, Error> {
        check_depth(depth)?;
        Ok(ConsentCircuit {
            public: PublicInputs {
                root: Fr::zero(),
                patient_pseudonym: Fr::zero(),
                required_scope: Scope::default(),
                now: 0,
                challenge: Fr::zero(),
            },
            witness: ConsentWitness {
                grantee_secret: Fr::zero(),
                granted_scope: Scope::default(),
                expiry: 1,
                salt: Fr::zero(),
                path: MerklePath {
                    leaf_index: 0,
                    siblings: vec![[Fr::zero(); SIBLINGS_PER_LEVEL]; depth as usize],
                },
            },
        })
    }
}

impl ConstraintSynthesizer<Fr> for ConsentCircuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let builder = Builder::new(cs);
        let zero = builder.constant(Fr::zero());
        let [root, patient, required_scope, now, challenge] = self.public.to_field_elements();
        let root = builder.input(root)?;
        let patient = builder.input(patient)?;
        let required_scope = builder.input(required_scope)?;
        let now = builder.input(now)?;
        let challenge = builder.input(challenge)?;

        let secret = builder.witness(self.witness.grantee_secret)?;
        let commitment = commitment_parameters().hash_gadget(&builder, &[secret])?;

        let granted_bits = self.witness.granted_scope.bits();
        let required_bits = self.public.required_scope.bits();
        let mut granted = zero.clone();
        let mut required = zero.clone();
        let mut weight = Fr::one();
        for position in 0..Scope::BITS {
            let granted_bit = builder.bit(granted_bits >> position & 1 == 1)?;
            let required_bit = builder.witness(Fr::from(required_bits >> position & 1))?;
            builder.enforce_product(&required_bit, &required_bit.sub(&granted_bit), &zero)?;
            granted = granted.add_scaled(weight, &granted_bit);
            required = required.add_scaled(weight, &required_bit);
            weight.double_in_place();
        }
        builder.enforce_equal(&required, &required_scope)?;

        let margin = self
            .witness
            .expiry
            .checked_sub(self.public.now)
            .and_then(|difference| difference.checked_sub(1))
            .ok_or(SynthesisError::Unsatisfiable)?;
        let mut expiry = now.add_constant(Fr::one());
        let mut weight = Fr::one();
        for position in 0..64 {
            let bit = builder.bit(margin >> position & 1 == 1)?;
            expiry = expiry.add_scaled(weight, &bit);
            weight.double_in_place();
        }

        let salt = builder.witness(self.witness.salt)?;
        let leaf = leaf_parameters()
            .hash_gadget(&builder, &[commitment, patient, granted, expiry, salt])?;
        let computed_root = merkle_root_gadget(&builder, leaf, &self.witness.path)?;
        builder.enforce_equal(&computed_root, &root)?;

        builder.mul(&challenge, &challenge)?;
        Ok(())
    }
}

/// The root above `leaf` along `path`: per level, the node's position `p = b0 + 2 b1` as two
/// bits, the four children with the node at `p` and its brothers `s0, s1, s2` in order around
/// it, and one width-5 Poseidon hash.
///
/// Placing the node costs 5 multiplications, not the 8 of four generic selections:
///
/// ```text
/// b01 = b0 b1                          (1)    e0 = (1 - b0)(1 - b1) = 1 - b0 - b1 + b01, free
/// c0  = s0 + e0 (node - s0)            (1)    node if p = 0, else s0
/// c3  = s2 + b01 (node - s2)           (1)    node if p = 3, else s2
/// c1  = s1 + (1 - b1)(s0 + b0 (node - s0) - s1)   (2)   s0, node, s1, s1 for p = 0..3
/// c2  = node + s0 + s1 + s2 - c0 - c1 - c3        free: the children are a permutation
/// ```
fn merkle_root_gadget(
    builder: &Builder,
    leaf: Wire,
    path: &MerklePath,
) -> Result<Wire, SynthesisError> {
    let one = builder.constant(Fr::one());
    let mut node = leaf;
    for (height, siblings) in path.siblings.iter().enumerate() {
        let position = child_position(path.leaf_index, height);
        let low = builder.bit(position & 1 == 1)?;
        let high = builder.bit(position & 2 == 2)?;
        let both = builder.mul(&low, &high)?;
        let [s0, s1, s2] = siblings.map(|sibling| builder.witness(sibling));
        let (s0, s1, s2) = (s0?, s1?, s2?);
        let first_position = one.sub(&low).sub(&high).add(&both);
        let c0 = s0.add(&builder.mul(&first_position, &node.sub(&s0))?);
        let c3 = s2.add(&builder.mul(&both, &node.sub(&s2))?);
        let low_pick = s0.add(&builder.mul(&low, &node.sub(&s0))?);
        let c1 = s1.add(&builder.mul(&one.sub(&high), &low_pick.sub(&s1))?);
        let c2 = node.add(&s0).add(&s1).add(&s2).sub(&c0).sub(&c1).sub(&c3);
        node = node_parameters().hash_gadget(builder, &[c0, c1, c2, c3])?;
    }
    Ok(node)
}

/// The benchmark baseline: only "this leaf is in the tree with this public root", with the same
/// Poseidon node gadget and depth as the consent circuit; the difference between the two is the
/// price of the consent logic.
#[derive(Debug, Clone)]
pub struct MembershipCircuit {
    /// The public root.
    pub root: Fr,
    /// The private leaf.
    pub leaf: Fr,
    /// The leaf's path; its length is the circuit's depth.
    pub path: MerklePath,
}

impl MembershipCircuit {
    /// A circuit of the given depth with all-zero values, for key generation and counting.
    pub fn blank(depth: u32) -> Result<Self, Error> {
        check_depth(depth)?;
        Ok(MembershipCircuit {
            root: Fr::zero(),
            leaf: Fr::zero(),
            path: MerklePath {
                leaf_index: 0,
                siblings: vec![[Fr::zero(); SIBLINGS_PER_LEVEL]; depth as usize],
            },
        })
    }
}

impl ConstraintSynthesizer<Fr> for MembershipCircuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let builder = Builder::new(cs);
        let root = builder.input(self.root)?;
        let leaf = builder.witness(self.leaf)?;
        let computed_root = merkle_root_gadget(&builder, leaf, &self.path)?;
        builder.enforce_equal(&computed_root, &root)
    }
}

/// The size of a synthesized circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitSize {
    /// R1CS constraints.
    pub constraints: usize,
    /// Public inputs, not counting the constant one.
    pub public_inputs: usize,
    /// Private witness variables.
    pub witnesses: usize,
}

/// Synthesizes `circuit` without building matrices and reports its size.
pub fn measure<C: ConstraintSynthesizer<Fr>>(circuit: C) -> Result<CircuitSize, Error> {
    let cs = ConstraintSystem::<Fr>::new_ref();
    cs.set_mode(SynthesisMode::Prove {
        construct_matrices: false,
    });
    circuit.generate_constraints(cs.clone())?;
    Ok(CircuitSize {
        constraints: cs.num_constraints(),
        public_inputs: cs.num_instance_variables() - 1,
        witnesses: cs.num_witness_variables(),
    })
}

/// The size of the consent circuit at `depth`.
pub fn consent_circuit_size(depth: u32) -> Result<CircuitSize, Error> {
    measure(ConsentCircuit::blank(depth)?)
}
