//! Verification: one proof with the prepared key, or many at once by a random linear
//! combination that falls back to single checks to name the bad ones.
//!
//! Malformed input (bytes that do not decode) is an [`Error`]; a well-formed proof of a false
//! statement is `Ok(false)`.

use crate::error::Error;
use crate::setup::PreparedConsentKey;
use crate::types::{ConsentProof, PublicInputs};
use ark_bn254::{Bn254, Fr, G1Affine, G1Projective};
use ark_ec::pairing::Pairing;
use ark_ec::{AffineRepr, CurveGroup, VariableBaseMSM};
use ark_ff::Zero;
use ark_groth16::Groth16;
use rand::{CryptoRng, Rng, RngCore};
use rayon::prelude::*;

/// Verifies one proof of `public` against the prepared key.
pub fn verify(
    key: &PreparedConsentKey,
    public: &PublicInputs,
    proof: &ConsentProof,
) -> Result<bool, Error> {
    Ok(Groth16::<Bn254>::verify_proof(
        &key.key,
        &proof.0,
        &public.to_field_elements(),
    )?)
}

/// Decodes the public inputs ([`PublicInputs::from_bytes`]) and the proof
/// ([`ConsentProof::from_bytes`]) and verifies; any decoding failure is a typed error.
pub fn verify_encoded(
    key: &PreparedConsentKey,
    public_inputs: &[u8],
    proof: &[u8],
) -> Result<bool, Error> {
    let public = PublicInputs::from_bytes(public_inputs)?;
    let proof = ConsentProof::from_bytes(proof)?;
    verify(key, &public, &proof)
}

/// The outcome of [`batch_verify`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchVerdict {
    /// Indices (into the batch) of the proofs that do not verify, in increasing order.
    pub rejected: Vec<usize>,
}

impl BatchVerdict {
    /// Whether every proof verified.
    pub fn all_valid(&self) -> bool {
        self.rejected.is_empty()
    }
}

/// Verifies many proofs at once.
///
/// With fresh random 128-bit weights `z_i` from `rng`, it checks the single pairing product
///
/// `prod e(z_i A_i, B_i) * e(-(sum z_i) alpha, beta) * e(sum z_i L_i, -gamma) * e(sum z_i C_i, -delta) = 1`
///
/// where `L_i` is the input commitment of proof `i`; `sum z_i L_i` takes one six-point
/// multi-scalar multiplication because the weights are folded into the input scalars first. One
/// Miller loop per proof and a single final exponentiation replace a full pairing check per
/// proof. A batch containing a bad proof passes with probability at most about `2^-128`. If the
/// combined check fails, every proof is checked alone (in parallel) to name the bad ones.
pub fn batch_verify(
    key: &PreparedConsentKey,
    batch: &[(PublicInputs, ConsentProof)],
    rng: &mut (impl RngCore + CryptoRng),
) -> BatchVerdict {
    if batch.is_empty() || combined_check(key, batch, rng) {
        return BatchVerdict::default();
    }
    let rejected = batch
        .par_iter()
        .enumerate()
        .filter(|(_, (public, proof))| !matches!(verify(key, public, proof), Ok(true)))
        .map(|(index, _)| index)
        .collect();
    BatchVerdict { rejected }
}

fn combined_check(
    key: &PreparedConsentKey,
    batch: &[(PublicInputs, ConsentProof)],
    rng: &mut (impl RngCore + CryptoRng),
) -> bool {
    let weights: Vec<Fr> = batch
        .iter()
        .map(|_| Fr::from(rng.gen_range(1..=u128::MAX)))
        .collect();

    let mut input_scalars = [Fr::zero(); PublicInputs::COUNT + 1];
    for ((public, _), weight) in batch.iter().zip(&weights) {
        input_scalars[0] += weight;
        for (scalar, input) in input_scalars[1..]
            .iter_mut()
            .zip(public.to_field_elements())
        {
            *scalar += *weight * input;
        }
    }
    let weight_sum = input_scalars[0];
    let vk = &key.key.vk;
    let inputs_sum = G1Projective::msm_unchecked(&vk.gamma_abc_g1, &input_scalars);
    let c_points: Vec<G1Affine> = batch.iter().map(|(_, proof)| proof.0.c).collect();
    let c_sum = G1Projective::msm_unchecked(&c_points, &weights);
    let alpha_term = vk.alpha_g1.into_group() * -weight_sum;

    let weighted_a: Vec<G1Projective> = batch
        .par_iter()
        .zip(&weights)
        .map(|((_, proof), weight)| proof.0.a * weight)
        .collect();
    let mut g1: Vec<G1Projective> = weighted_a;
    g1.extend([alpha_term, inputs_sum, c_sum]);
    let g1 = G1Projective::normalize_batch(&g1);

    let mut g2: Vec<<Bn254 as Pairing>::G2Prepared> = batch
        .par_iter()
        .map(|(_, proof)| proof.0.b.into())
        .collect();
    g2.extend([
        key.beta_g2.clone(),
        key.key.gamma_g2_neg_pc.clone(),
        key.key.delta_g2_neg_pc.clone(),
    ]);

    let miller = Bn254::multi_miller_loop(g1, g2);
    Bn254::final_exponentiation(miller).is_some_and(|product| product.is_zero())
}
