//! Proving: check the witness natively, synthesize the assignment only, and run the Groth16
//! prover against the matrices cached with the proving key: ours on the key's fixed-base tables
//! when it has them ([`ConsentProvingKey::with_tables`]), arkworks' otherwise.

use crate::circuit::ConsentCircuit;
use crate::error::Error;
use crate::fixed_base::FixedBaseTable;
use crate::setup::{ConsentProvingKey, ConsentVerifyingKey};
use crate::types::{ConsentProof, ConsentWitness, PublicInputs};
use ark_bn254::{g1, g2, Bn254, Fr};
use ark_ec::CurveGroup;
use ark_ff::UniformRand;
use ark_groth16::r1cs_to_qap::{LibsnarkReduction, R1CSToQAP};
use ark_groth16::{Groth16, Proof, ProvingKey};
use ark_poly::GeneralEvaluationDomain;
use ark_relations::r1cs::{
    ConstraintMatrices, ConstraintSynthesizer, ConstraintSystem, SynthesisError, SynthesisMode,
};
use rand::{CryptoRng, RngCore};

/// Proves that `witness` satisfies the consent statement `public` (see [`crate::circuit`]).
///
/// The statement is checked natively first: a witness that does not satisfy it is
/// [`Error::Unsatisfied`] with the reason, not a proof that fails to verify.
pub fn prove(
    key: &ConsentProvingKey,
    public: &PublicInputs,
    witness: &ConsentWitness,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<ConsentProof, Error> {
    if witness.path.siblings.len() != key.depth() as usize {
        return Err(Error::PathLength {
            expected: key.depth(),
            actual: witness.path.siblings.len(),
        });
    }
    witness.check(public).map_err(Error::Unsatisfied)?;

    let cs = ConstraintSystem::<Fr>::new_ref();
    cs.set_mode(SynthesisMode::Prove {
        construct_matrices: false,
    });
    ConsentCircuit {
        public: *public,
        witness: witness.clone(),
    }
    .generate_constraints(cs.clone())?;
    let assignment = cs.borrow().ok_or(SynthesisError::MissingCS)?;
    let matrices = &key.shape.matrices;
    if assignment.num_constraints != matrices.num_constraints
        || assignment.num_witness_variables != matrices.num_witness_variables
    {
        return Err(Error::Synthesis(SynthesisError::Unsatisfiable));
    }
    let full_assignment: Vec<Fr> = assignment
        .instance_assignment
        .iter()
        .chain(&assignment.witness_assignment)
        .copied()
        .collect();
    let r = Fr::rand(rng);
    let s = Fr::rand(rng);
    let proof = match key.tables() {
        Some(tables) => tables.create_proof(&key.key, matrices, &full_assignment, r, s)?,
        None => Groth16::<Bn254>::create_proof_with_reduction_and_matrices(
            &key.key,
            r,
            s,
            matrices,
            matrices.num_instance_variables,
            matrices.num_constraints,
            &full_assignment,
        )?,
    };
    Ok(ConsentProof(proof))
}

/// The proving key's five queries as fixed-base tables ([`crate::fixed_base`]), each followed by
/// `delta` where the proof adds a multiple of it, so that `r delta`, `s delta` and `-r s delta`
/// cost a few additions inside the MSMs instead of a scalar multiplication each.
#[derive(Debug)]
pub(crate) struct ProverTables {
    /// The A query, then `delta` in G1 (scalar `r`).
    a: FixedBaseTable<g1::Config>,
    /// The B query in G1, then `delta` in G1 (scalar `s`).
    b_g1: FixedBaseTable<g1::Config>,
    /// The B query in G2, then `delta` in G2 (scalar `s`).
    b_g2: FixedBaseTable<g2::Config>,
    /// The H query.
    h: FixedBaseTable<g1::Config>,
    /// The L query, then `delta` in G1 (scalar `-r s`).
    l: FixedBaseTable<g1::Config>,
}

impl ProverTables {
    pub(crate) fn new(key: &ProvingKey<Bn254>) -> Self {
        ProverTables {
            a: FixedBaseTable::new(&then(&key.a_query, key.delta_g1)),
            b_g1: FixedBaseTable::new(&then(&key.b_g1_query, key.delta_g1)),
            b_g2: FixedBaseTable::new(&then(&key.b_g2_query, key.vk.delta_g2)),
            h: FixedBaseTable::new(&key.h_query),
            l: FixedBaseTable::new(&then(&key.l_query, key.delta_g1)),
        }
    }

    /// Groth16's prover (as arkworks computes it, with the same `r` and `s` the same proof):
    /// `A = alpha + sum z_i A_i + r delta`, `B = beta + sum z_i B_i + s delta` (in G2, and in G1
    /// for C), `C = s A + r B + sum_aux z_i L_i + sum h_i H_i - r s delta`, where `z` is the full
    /// assignment (its first entry the constant one) and `h` the QAP quotient.
    fn create_proof(
        &self,
        key: &ProvingKey<Bn254>,
        matrices: &ConstraintMatrices<Fr>,
        full_assignment: &[Fr],
        r: Fr,
        s: Fr,
    ) -> Result<Proof<Bn254>, SynthesisError> {
        let aux = full_assignment
            .get(matrices.num_instance_variables..)
            .filter(|_| self.a.base_count() == full_assignment.len() + 1)
            .ok_or(SynthesisError::Unsatisfiable)?;
        // Only the H query's MSM waits for the quotient's FFTs: the other four run beside them.
        let (h, (a, b_g1, b_g2, l)) = rayon::join(
            || {
                LibsnarkReduction::witness_map_from_matrices::<Fr, GeneralEvaluationDomain<Fr>>(
                    matrices,
                    matrices.num_instance_variables,
                    matrices.num_constraints,
                    full_assignment,
                )
                .map(|h| self.h.msm(&h))
            },
            || {
                (
                    self.a.msm(&then(full_assignment, r)) + key.vk.alpha_g1,
                    self.b_g1.msm(&then(full_assignment, s)) + key.beta_g1,
                    self.b_g2.msm(&then(full_assignment, s)) + key.vk.beta_g2,
                    self.l.msm(&then(aux, -(r * s))),
                )
            },
        );
        let c = a * s + b_g1 * r + l + h?;
        Ok(Proof {
            a: a.into_affine(),
            b: b_g2.into_affine(),
            c: c.into_affine(),
        })
    }
}

/// `list` followed by `last`.
fn then<T: Copy>(list: &[T], last: T) -> Vec<T> {
    [list, &[last]].concat()
}

/// A fresh proof of the same statement that cannot be linked to `proof` (Groth16 proofs are
/// re-randomizable); useful to a grantee who shows the same proof to several parties.
pub fn rerandomize(
    key: &ConsentVerifyingKey,
    proof: &ConsentProof,
    rng: &mut (impl RngCore + CryptoRng),
) -> ConsentProof {
    ConsentProof(Groth16::<Bn254>::rerandomize_proof(&key.key, &proof.0, rng))
}
