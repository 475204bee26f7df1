//! Phase 2, circuit-specific: from the powers of tau to the consent circuit's Groth16 keys, and
//! the `δ` contributions of BGM17 (section 4), as bellman's `phase2` and snarkjs' zkey
//! contributions implement them.
//!
//! The initial keys are a deterministic function of the final powers of tau and the circuit's
//! matrices, with `γ = δ = 1`: anyone recomputes them. The Lagrange basis `L_i(τ)` of the QAP
//! domain comes from the powers by an inverse FFT over the group (`L_i(τ) = (1/n) Σ_k ω^(-ik)
//! τ^k`), so every query of the arkworks key (A, B in G1 and G2, the input commitments, L and
//! H) is a linear combination of published points. A contribution with secret `d` multiplies
//! `δ` by `d` and divides the L and H queries by it; nothing else changes. `γ` stays 1, as in
//! BGM17, whose soundness argument rests on `δ` alone.

use crate::ceremony::knowledge::{
    encode_g1, encode_g2, g1_vectors_in_ratio, random_secret, same_pairing, scale, weights_rng,
    KnowledgeProof, Reader,
};
use crate::ceremony::powers_of_tau::PowersOfTau;
use crate::ceremony::{CeremonyError, Rejection};
use crate::setup::CircuitShape;
use ark_bn254::{Bn254, Fr, G1Affine, G1Projective, G2Affine, G2Projective};
use ark_ec::{AffineRepr, CurveGroup, VariableBaseMSM};
use ark_ff::{Field, One};
use ark_groth16::{ProvingKey, VerifyingKey};
use ark_poly::{EvaluationDomain, GeneralEvaluationDomain};
use rand::{CryptoRng, RngCore};
use rayon::prelude::*;
use std::sync::Mutex;

const DELTA_TAG: &[u8] = b"delta";

/// Where a variable occurs in the matrices: `(coefficient, row)` pairs per matrix.
#[derive(Default, Clone)]
struct Column {
    a: Vec<(Fr, usize)>,
    b: Vec<(Fr, usize)>,
    c: Vec<(Fr, usize)>,
}

fn columns(shape: &CircuitShape) -> Vec<Column> {
    let matrices = &shape.matrices;
    let mut columns =
        vec![Column::default(); matrices.num_instance_variables + matrices.num_witness_variables];
    for (row, ((a, b), c)) in matrices
        .a
        .iter()
        .zip(&matrices.b)
        .zip(&matrices.c)
        .enumerate()
    {
        for &(coefficient, variable) in a {
            columns[variable].a.push((coefficient, row));
        }
        for &(coefficient, variable) in b {
            columns[variable].b.push((coefficient, row));
        }
        for &(coefficient, variable) in c {
            columns[variable].c.push((coefficient, row));
        }
    }
    // arkworks' reduction adds one row per instance variable, `x_j * 0 = 0` with `x_j` in A,
    // after the circuit's own rows.
    for (variable, column) in columns
        .iter_mut()
        .take(matrices.num_instance_variables)
        .enumerate()
    {
        column
            .a
            .push((Fr::one(), matrices.num_constraints + variable));
    }
    columns
}

/// One variable's points in the keys, before normalization to affine form.
struct VariableQueries {
    a: G1Projective,
    b_g1: G1Projective,
    b_g2: G2Projective,
    /// `β A_j(τ) + α B_j(τ) + C_j(τ)`: an input query if the variable is an input, else an L
    /// query.
    combined: G1Projective,
}

/// `sum coefficient · bases[row]` over `entries`.
fn combine<P: VariableBaseMSM<ScalarField = Fr>>(
    bases: &[P::MulBase],
    entries: &[(Fr, usize)],
) -> P {
    let points: Vec<P::MulBase> = entries.iter().map(|(_, row)| bases[*row]).collect();
    let scalars: Vec<Fr> = entries
        .iter()
        .map(|(coefficient, _)| *coefficient)
        .collect();
    P::msm_unchecked(&points, &scalars)
}

/// The points `L_i(τ)·base` of the domain's Lagrange basis from `τ^i·base`, `i < n`.
fn lagrange_basis<P: CurveGroup<ScalarField = Fr>>(
    domain: &GeneralEvaluationDomain<Fr>,
    powers: &[P::Affine],
) -> Vec<P::Affine> {
    let powers: Vec<P> = powers.iter().map(|point| point.into_group()).collect();
    P::normalize_batch(&domain.ifft(&powers))
}

/// The initial keys derived last, with the hash of the transcript (up to the end of the powers
/// of tau) they were derived from, which determines them. The derivation takes seconds (four
/// group FFTs and an MSM per variable), and verifying a transcript and then contributing to or
/// finalizing it, or verifying variants of one transcript, needs the same keys again.
static LAST_INITIAL_KEY: Mutex<Option<([u8; 32], ProvingKey<Bn254>)>> = Mutex::new(None);

/// The keys of the circuit with `γ = δ = 1` under the final powers of tau, which the transcript
/// hashed into `binding` ends with.
pub(crate) fn initial_key(
    powers: &PowersOfTau,
    shape: &CircuitShape,
    binding: &[u8; 32],
) -> Result<ProvingKey<Bn254>, CeremonyError> {
    let last = || {
        LAST_INITIAL_KEY
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    };
    if let Some((_, key)) = last().as_ref().filter(|(hash, _)| hash == binding) {
        return Ok(key.clone());
    }
    let key = derive_initial_key(powers, shape)?;
    *last() = Some((*binding, key.clone()));
    Ok(key)
}

fn derive_initial_key(
    powers: &PowersOfTau,
    shape: &CircuitShape,
) -> Result<ProvingKey<Bn254>, CeremonyError> {
    let n = shape.domain_size;
    let domain = GeneralEvaluationDomain::<Fr>::new(n)
        .filter(|domain| domain.size() == n)
        .ok_or_else(|| CeremonyError::Malformed("no evaluation domain of that size".into()))?;
    let lagrange_g1 = lagrange_basis::<G1Projective>(&domain, &powers.tau_g1[..n]);
    let lagrange_g2 = lagrange_basis::<G2Projective>(&domain, &powers.tau_g2);
    let lagrange_alpha = lagrange_basis::<G1Projective>(&domain, &powers.alpha_tau_g1);
    let lagrange_beta = lagrange_basis::<G1Projective>(&domain, &powers.beta_tau_g1);

    let queries: Vec<VariableQueries> = columns(shape)
        .par_iter()
        .map(|column| VariableQueries {
            a: combine(&lagrange_g1, &column.a),
            b_g1: combine(&lagrange_g1, &column.b),
            b_g2: combine(&lagrange_g2, &column.b),
            combined: combine::<G1Projective>(&lagrange_beta, &column.a)
                + combine::<G1Projective>(&lagrange_alpha, &column.b)
                + combine::<G1Projective>(&lagrange_g1, &column.c),
        })
        .collect();
    let normalize_g1 = |pick: fn(&VariableQueries) -> G1Projective| {
        G1Projective::normalize_batch(&queries.iter().map(pick).collect::<Vec<_>>())
    };
    let a_query = normalize_g1(|query| query.a);
    let b_g1_query = normalize_g1(|query| query.b_g1);
    let b_g2_query =
        G2Projective::normalize_batch(&queries.iter().map(|query| query.b_g2).collect::<Vec<_>>());
    let mut l_query = normalize_g1(|query| query.combined);
    let gamma_abc_g1: Vec<G1Affine> = l_query
        .drain(..shape.matrices.num_instance_variables)
        .collect();
    // τ^i Z(τ) = τ^(i + n) - τ^i for the vanishing polynomial Z(X) = X^n - 1.
    let h_query: Vec<G1Projective> = (0..n - 1)
        .map(|i| powers.tau_g1[i + n].into_group() - powers.tau_g1[i])
        .collect();
    Ok(ProvingKey {
        vk: VerifyingKey {
            alpha_g1: powers.alpha_tau_g1[0],
            beta_g2: powers.beta_g2,
            gamma_g2: G2Affine::generator(),
            delta_g2: G2Affine::generator(),
            gamma_abc_g1,
        },
        beta_g1: powers.beta_tau_g1[0],
        delta_g1: G1Affine::generator(),
        a_query,
        b_g1_query,
        b_g2_query,
        h_query: G1Projective::normalize_batch(&h_query),
        l_query,
    })
}

/// One contribution to phase 2: the new `δ` and the L and H queries divided by the secret.
#[derive(Debug, Clone)]
pub(crate) struct DeltaContribution {
    delta_g1: G1Affine,
    delta_g2: G2Affine,
    h_query: Vec<G1Affine>,
    l_query: Vec<G1Affine>,
    proof: KnowledgeProof,
}

impl DeltaContribution {
    /// Multiplies `δ` of `key` by a fresh secret, proving knowledge of it bound to `binding`.
    pub(crate) fn create(
        key: &ProvingKey<Bn254>,
        binding: &[u8; 32],
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Self {
        let delta = random_secret(rng);
        let inverse = delta.inverse().unwrap_or_default();
        DeltaContribution {
            delta_g1: (key.delta_g1 * delta).into_affine(),
            delta_g2: (key.vk.delta_g2 * delta).into_affine(),
            h_query: scale::<G1Projective>(&key.h_query, &vec![inverse; key.h_query.len()]),
            l_query: scale::<G1Projective>(&key.l_query, &vec![inverse; key.l_query.len()]),
            proof: KnowledgeProof::create(delta, binding, DELTA_TAG, rng),
        }
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend(encode_g1(&[self.delta_g1]));
        out.extend(encode_g2(&[self.delta_g2]));
        out.extend(encode_g1(&self.h_query));
        out.extend(encode_g1(&self.l_query));
        self.proof.encode(out);
    }

    /// Reads a contribution for keys shaped like `key`.
    pub(crate) fn decode(
        reader: &mut Reader<'_>,
        key: &ProvingKey<Bn254>,
    ) -> Result<Self, CeremonyError> {
        Ok(DeltaContribution {
            delta_g1: reader.g1_point("delta in G1")?,
            delta_g2: reader.g2_point("delta in G2")?,
            h_query: reader.g1_points("H query", key.h_query.len())?,
            l_query: reader.g1_points("L query", key.l_query.len())?,
            proof: KnowledgeProof::decode(reader)?,
        })
    }

    /// The point that identifies this contribution's secret.
    pub(crate) fn fingerprint(&self) -> G1Affine {
        self.proof.fingerprint()
    }

    /// Checks that this contribution extends `previous`: the proof of knowledge holds for the
    /// transcript hashed into `binding`, `δ·G1` moved by exactly the proven secret, `δ` is the
    /// same in G1 and G2, and the L and H queries were divided by it (random linear
    /// combinations with weights from `weights_seed`).
    pub(crate) fn check_extends(
        &self,
        previous: &ProvingKey<Bn254>,
        binding: &[u8; 32],
        weights_seed: [u8; 32],
    ) -> Result<(), Rejection> {
        let (r, r_delta) = self
            .proof
            .verify(binding, DELTA_TAG)
            .ok_or(Rejection::InvalidKnowledgeProof)?;
        if self.delta_g1.is_zero() || !same_pairing(self.delta_g1, r, previous.delta_g1, r_delta) {
            return Err(Rejection::DoesNotExtend);
        }
        let mut rng = weights_rng(weights_seed);
        let divided = |old: &[G1Affine], new: &[G1Affine], rng: &mut _| {
            g1_vectors_in_ratio(old, new, self.delta_g2, previous.vk.delta_g2, rng)
        };
        if !same_pairing(
            self.delta_g1,
            G2Affine::generator(),
            G1Affine::generator(),
            self.delta_g2,
        ) {
            return Err(Rejection::InconsistentPoints("delta in G1 and G2"));
        }
        if !divided(&previous.h_query, &self.h_query, &mut rng) {
            return Err(Rejection::InconsistentPoints("H query"));
        }
        if !divided(&previous.l_query, &self.l_query, &mut rng) {
            return Err(Rejection::InconsistentPoints("L query"));
        }
        Ok(())
    }

    /// The keys with this contribution applied.
    pub(crate) fn apply(self, key: &mut ProvingKey<Bn254>) {
        key.delta_g1 = self.delta_g1;
        key.vk.delta_g2 = self.delta_g2;
        key.h_query = self.h_query;
        key.l_query = self.l_query;
    }
}
