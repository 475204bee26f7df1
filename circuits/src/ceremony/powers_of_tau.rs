//! Phase 1, powers of tau: the circuit-independent part of the parameters.
//!
//! For a QAP domain of size `n` the accumulator holds `τ^i·G1` for `i < 2n - 1` (the H query
//! needs `τ^(i + n)`), `τ^i·G2`, `α τ^i·G1` and `β τ^i·G1` for `i < n`, and `β·G2`. It starts
//! from `τ = α = β = 1`; a contribution with secrets `(t, a, b)` multiplies every `τ^i` by
//! `t^i`, `α` by `a` and `β` by `b`, so after all contributions `τ`, `α` and `β` are the
//! products of everyone's secrets: unknown as long as one contributor destroyed theirs.

use crate::ceremony::knowledge::{
    encode_g1, encode_g2, g1_powers_consistent, g2_powers_consistent, powers_of, random_secret,
    same_pairing, scale, weights_rng, KnowledgeProof, Reader,
};
use crate::ceremony::Rejection;
use ark_bn254::{Fr, G1Affine, G1Projective, G2Affine, G2Projective};
use ark_ec::{AffineRepr, CurveGroup};
use rand::{CryptoRng, RngCore};

const TAU_TAG: &[u8] = b"tau";
const ALPHA_TAG: &[u8] = b"alpha";
const BETA_TAG: &[u8] = b"beta";

/// The powers-of-tau accumulator for a domain of size `n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PowersOfTau {
    /// `τ^i·G1`, `i < 2n - 1`.
    pub(crate) tau_g1: Vec<G1Affine>,
    /// `τ^i·G2`, `i < n`.
    pub(crate) tau_g2: Vec<G2Affine>,
    /// `α τ^i·G1`, `i < n`.
    pub(crate) alpha_tau_g1: Vec<G1Affine>,
    /// `β τ^i·G1`, `i < n`.
    pub(crate) beta_tau_g1: Vec<G1Affine>,
    /// `β·G2`.
    pub(crate) beta_g2: G2Affine,
}

/// One contribution to phase 1: the new accumulator and a proof of knowledge per secret.
#[derive(Debug, Clone)]
pub(crate) struct TauContribution {
    pub(crate) next: PowersOfTau,
    tau: KnowledgeProof,
    alpha: KnowledgeProof,
    beta: KnowledgeProof,
}

impl PowersOfTau {
    /// The accumulator with `τ = α = β = 1`.
    pub(crate) fn initial(domain_size: usize) -> Self {
        PowersOfTau {
            tau_g1: vec![G1Affine::generator(); 2 * domain_size - 1],
            tau_g2: vec![G2Affine::generator(); domain_size],
            alpha_tau_g1: vec![G1Affine::generator(); domain_size],
            beta_tau_g1: vec![G1Affine::generator(); domain_size],
            beta_g2: G2Affine::generator(),
        }
    }

    fn domain_size(&self) -> usize {
        self.tau_g2.len()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend(encode_g1(&self.tau_g1));
        out.extend(encode_g2(&self.tau_g2));
        out.extend(encode_g1(&self.alpha_tau_g1));
        out.extend(encode_g1(&self.beta_tau_g1));
        out.extend(encode_g2(&[self.beta_g2]));
    }

    fn decode(reader: &mut Reader<'_>, domain_size: usize) -> Result<Self, super::CeremonyError> {
        Ok(PowersOfTau {
            tau_g1: reader.g1_points("tau powers in G1", 2 * domain_size - 1)?,
            tau_g2: reader.g2_points("tau powers in G2", domain_size)?,
            alpha_tau_g1: reader.g1_points("alpha tau powers", domain_size)?,
            beta_tau_g1: reader.g1_points("beta tau powers", domain_size)?,
            beta_g2: reader.g2_point("beta in G2")?,
        })
    }

    /// Multiplies the accumulator by fresh secrets from `rng`, proving knowledge of them bound
    /// to `binding` (the hash of the transcript so far). The secrets are dropped on return.
    pub(crate) fn contribute(
        &self,
        binding: &[u8; 32],
        rng: &mut (impl RngCore + CryptoRng),
    ) -> TauContribution {
        let (tau, alpha, beta) = (random_secret(rng), random_secret(rng), random_secret(rng));
        let tau_powers = powers_of(tau, self.tau_g1.len());
        let alpha_powers: Vec<Fr> = tau_powers[..self.domain_size()]
            .iter()
            .map(|power| *power * alpha)
            .collect();
        let beta_powers: Vec<Fr> = tau_powers[..self.domain_size()]
            .iter()
            .map(|power| *power * beta)
            .collect();
        let next = PowersOfTau {
            tau_g1: scale::<G1Projective>(&self.tau_g1, &tau_powers),
            tau_g2: scale::<G2Projective>(&self.tau_g2, &tau_powers),
            alpha_tau_g1: scale::<G1Projective>(&self.alpha_tau_g1, &alpha_powers),
            beta_tau_g1: scale::<G1Projective>(&self.beta_tau_g1, &beta_powers),
            beta_g2: (self.beta_g2 * beta).into_affine(),
        };
        TauContribution {
            next,
            tau: KnowledgeProof::create(tau, binding, TAU_TAG, rng),
            alpha: KnowledgeProof::create(alpha, binding, ALPHA_TAG, rng),
            beta: KnowledgeProof::create(beta, binding, BETA_TAG, rng),
        }
    }
}

impl TauContribution {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        self.next.encode(out);
        for proof in [&self.tau, &self.alpha, &self.beta] {
            proof.encode(out);
        }
    }

    pub(crate) fn decode(
        reader: &mut Reader<'_>,
        domain_size: usize,
    ) -> Result<Self, super::CeremonyError> {
        Ok(TauContribution {
            next: PowersOfTau::decode(reader, domain_size)?,
            tau: KnowledgeProof::decode(reader)?,
            alpha: KnowledgeProof::decode(reader)?,
            beta: KnowledgeProof::decode(reader)?,
        })
    }

    /// The points that identify this contribution's secrets.
    pub(crate) fn fingerprints(&self) -> [G1Affine; 3] {
        [&self.tau, &self.alpha, &self.beta].map(KnowledgeProof::fingerprint)
    }

    /// Checks that this contribution extends `previous`: each proof of knowledge holds for the
    /// transcript hashed into `binding`; `τ·G1`, `α·G1` and `β·G1` moved by exactly the proven
    /// secrets; and every vector is still a run of powers of the same `τ` (random linear
    /// combinations, weights from `weights_seed`, the hash of the transcript including this
    /// contribution).
    pub(crate) fn check_extends(
        &self,
        previous: &PowersOfTau,
        binding: &[u8; 32],
        weights_seed: [u8; 32],
    ) -> Result<(), Rejection> {
        let next = &self.next;
        let proven = |proof: &KnowledgeProof, tag| {
            proof
                .verify(binding, tag)
                .ok_or(Rejection::InvalidKnowledgeProof)
        };
        let (r_tau, r_tau_x) = proven(&self.tau, TAU_TAG)?;
        let (r_alpha, r_alpha_x) = proven(&self.alpha, ALPHA_TAG)?;
        let (r_beta, r_beta_x) = proven(&self.beta, BETA_TAG)?;
        let moved_by = |new: G1Affine, old: G1Affine, r: G2Affine, r_x: G2Affine| {
            !new.is_zero() && same_pairing(new, r, old, r_x)
        };
        if !moved_by(next.tau_g1[1], previous.tau_g1[1], r_tau, r_tau_x)
            || !moved_by(
                next.alpha_tau_g1[0],
                previous.alpha_tau_g1[0],
                r_alpha,
                r_alpha_x,
            )
            || !moved_by(
                next.beta_tau_g1[0],
                previous.beta_tau_g1[0],
                r_beta,
                r_beta_x,
            )
        {
            return Err(Rejection::DoesNotExtend);
        }
        let mut rng = weights_rng(weights_seed);
        let tau_g2 = next.tau_g2[1];
        let consistent = next.tau_g1[0] == G1Affine::generator()
            && next.tau_g2[0] == G2Affine::generator()
            && !next.beta_g2.is_zero()
            && same_pairing(
                next.tau_g1[1],
                G2Affine::generator(),
                G1Affine::generator(),
                tau_g2,
            )
            && same_pairing(
                next.beta_tau_g1[0],
                G2Affine::generator(),
                G1Affine::generator(),
                next.beta_g2,
            )
            && g1_powers_consistent(&next.tau_g1, tau_g2, &mut rng)
            && g2_powers_consistent(&next.tau_g2, next.tau_g1[1], &mut rng)
            && g1_powers_consistent(&next.alpha_tau_g1, tau_g2, &mut rng)
            && g1_powers_consistent(&next.beta_tau_g1, tau_g2, &mut rng);
        if consistent {
            Ok(())
        } else {
            Err(Rejection::InconsistentPoints("powers of tau"))
        }
    }
}
