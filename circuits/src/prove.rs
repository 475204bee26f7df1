//! Proving: check the witness natively, synthesize the assignment only, and run the Groth16
//! prover against the matrices cached with the proving key.

use crate::circuit::ConsentCircuit;
use crate::error::Error;
use crate::setup::{ConsentProvingKey, ConsentVerifyingKey};
use crate::types::{ConsentProof, ConsentWitness, PublicInputs};
use ark_bn254::{Bn254, Fr};
use ark_ff::UniformRand;
use ark_groth16::Groth16;
use ark_relations::r1cs::{ConstraintSynthesizer, ConstraintSystem, SynthesisError, SynthesisMode};
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
    let proof = Groth16::<Bn254>::create_proof_with_reduction_and_matrices(
        &key.key,
        r,
        s,
        matrices,
        matrices.num_instance_variables,
        matrices.num_constraints,
        &full_assignment,
    )?;
    Ok(ConsentProof(proof))
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
