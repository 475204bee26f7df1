//! What both phases of the ceremony share: the proof that a contributor knows the secret they
//! multiplied the parameters by, hashing to G2, pairing-equality checks, random linear
//! combinations and the encoding of points.
//!
//! The proof of knowledge is the one of the Zcash powers-of-tau ceremony and of BGM17
//! (section 3): the contributor picks a random `s`, publishes `S = s·G1` and `S·x`, derives
//! `R = hash_to_g2(binding, tag, S, S·x)` and publishes `R·x`. The verifier checks
//! `e(S, R·x) = e(S·x, R)`. Because `R` depends on the transcript so far (`binding`) and on
//! `S`, nobody knows its discrete logarithm and nobody can reuse an earlier proof in another
//! place: producing `R·x` needs `x`. The same `R` and `R·x` then show that the new parameters
//! are the old ones multiplied by that same `x`: `e(new, R) = e(old, R·x)`.

use crate::ceremony::CeremonyError;
use ark_bn254::{Bn254, Fr, G1Affine, G1Projective, G2Affine, G2Projective};
use ark_ec::pairing::Pairing;
use ark_ec::{AffineRepr, CurveGroup, VariableBaseMSM};
use ark_ff::{One, UniformRand, Zero};
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize, Compress, Validate};
use rand::{CryptoRng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;
use sha3::{Digest, Sha3_256};

/// Bytes of a compressed G1 point.
pub(crate) const G1_BYTES: usize = 32;
/// Bytes of a compressed G2 point.
pub(crate) const G2_BYTES: usize = 64;

/// SHA3-256 of the concatenation of `parts`.
pub(crate) fn sha3(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha3_256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// A point of G2 whose discrete logarithm nobody knows: a random x-coordinate drawn from a
/// ChaCha20 stream seeded with the hash of `parts`, lifted to the curve and multiplied by the
/// cofactor (arkworks' sampling of a random point).
fn hash_to_g2(parts: &[&[u8]]) -> G2Affine {
    let mut tagged: Vec<&[u8]> = vec![b"medvault ceremony hash to G2"];
    tagged.extend_from_slice(parts);
    let seed = sha3(&tagged);
    G2Projective::rand(&mut ChaCha20Rng::from_seed(seed)).into_affine()
}

/// A random stream for the verifier's linear combinations, fixed by what is checked (the
/// contributor commits to the points before the weights exist: Fiat-Shamir).
pub(crate) fn weights_rng(seed: [u8; 32]) -> ChaCha20Rng {
    ChaCha20Rng::from_seed(sha3(&[b"medvault ceremony weights", &seed]))
}

/// `e(a1, b1) = e(a2, b2)`, by one multi-Miller loop and one final exponentiation.
pub(crate) fn same_pairing(a1: G1Affine, b1: G2Affine, a2: G1Affine, b2: G2Affine) -> bool {
    let minus_a2 = (-a2.into_group()).into_affine();
    Bn254::multi_pairing([a1, minus_a2], [b1, b2]).is_zero()
}

/// `sum w_i points[i]`.
fn combine<G: CurveGroup<ScalarField = Fr> + VariableBaseMSM<MulBase = G::Affine>>(
    points: &[G::Affine],
    weights: &[Fr],
) -> G::Affine {
    G::msm_unchecked(points, weights).into_affine()
}

/// `count` random 128-bit weights: enough for a 2^-128 chance that inconsistent points pass.
pub(crate) fn random_weights(rng: &mut ChaCha20Rng, count: usize) -> Vec<Fr> {
    (0..count)
        .map(|_| Fr::from((u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64())))
        .collect()
}

/// Whether `next[i] = x · points[i]` for every `i` (as `next = points · x` for some `x` with
/// `x·G2 = ratio_g2` relative to `base_g2`): `e(sum w_i next_i, base) = e(sum w_i points_i,
/// ratio)`.
pub(crate) fn g1_vectors_in_ratio(
    points: &[G1Affine],
    next: &[G1Affine],
    base_g2: G2Affine,
    ratio_g2: G2Affine,
    rng: &mut ChaCha20Rng,
) -> bool {
    let weights = random_weights(rng, points.len());
    same_pairing(
        combine::<G1Projective>(next, &weights),
        base_g2,
        combine::<G1Projective>(points, &weights),
        ratio_g2,
    )
}

/// Whether each point of `powers` is the previous one times the same `x`, where
/// `e(G1, x·G2) = e(x·G1, G2)` pins `x` through `shift_g2 = x·G2`:
/// `e(sum w_i powers_{i+1}, G2) = e(sum w_i powers_i, shift_g2)`.
pub(crate) fn g1_powers_consistent(
    powers: &[G1Affine],
    shift_g2: G2Affine,
    rng: &mut ChaCha20Rng,
) -> bool {
    let Some(last) = powers.len().checked_sub(1) else {
        return true;
    };
    g1_vectors_in_ratio(
        &powers[..last],
        &powers[1..],
        G2Affine::generator(),
        shift_g2,
        rng,
    )
}

/// The G2 counterpart of [`g1_powers_consistent`], with `shift_g1 = x·G1`.
pub(crate) fn g2_powers_consistent(
    powers: &[G2Affine],
    shift_g1: G1Affine,
    rng: &mut ChaCha20Rng,
) -> bool {
    let Some(last) = powers.len().checked_sub(1) else {
        return true;
    };
    let weights = random_weights(rng, last);
    same_pairing(
        G1Affine::generator(),
        combine::<G2Projective>(&powers[1..], &weights),
        shift_g1,
        combine::<G2Projective>(&powers[..last], &weights),
    )
}

/// `points[i] · scalars[i]`, in parallel, normalized to affine.
pub(crate) fn scale<G: CurveGroup<ScalarField = Fr>>(
    points: &[G::Affine],
    scalars: &[Fr],
) -> Vec<G::Affine> {
    let scaled: Vec<G> = points
        .par_iter()
        .zip(scalars)
        .map(|(point, scalar)| *point * *scalar)
        .collect();
    G::normalize_batch(&scaled)
}

/// `1, x, x^2, ..., x^(count - 1)`.
pub(crate) fn powers_of(x: Fr, count: usize) -> Vec<Fr> {
    std::iter::successors(Some(Fr::one()), |power| Some(*power * x))
        .take(count)
        .collect()
}

/// A secret contribution scalar: uniformly random and never zero (a zero would erase the
/// parameters instead of randomizing them).
pub(crate) fn random_secret(rng: &mut (impl RngCore + CryptoRng)) -> Fr {
    loop {
        let secret = Fr::rand(rng);
        if !secret.is_zero() {
            return secret;
        }
    }
}

/// Proof that the contributor knows `x`, bound to the transcript before the contribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KnowledgeProof {
    /// `S = s·G1` for a random `s`.
    s_g1: G1Affine,
    /// `S·x`.
    s_x_g1: G1Affine,
    /// `R·x` with `R = hash_to_g2(binding, tag, S, S·x)`.
    r_x_g2: G2Affine,
}

impl KnowledgeProof {
    fn challenge(binding: &[u8; 32], tag: &[u8], s_g1: G1Affine, s_x_g1: G1Affine) -> G2Affine {
        hash_to_g2(&[binding, tag, &encode_g1(&[s_g1]), &encode_g1(&[s_x_g1])])
    }

    /// Proves knowledge of `x` for the contribution that follows the transcript hashed into
    /// `binding`; `tag` names which secret of the contribution it is.
    pub(crate) fn create(
        x: Fr,
        binding: &[u8; 32],
        tag: &[u8],
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Self {
        let s_g1 = (G1Affine::generator() * random_secret(rng)).into_affine();
        let s_x_g1 = (s_g1 * x).into_affine();
        let r = Self::challenge(binding, tag, s_g1, s_x_g1);
        KnowledgeProof {
            s_g1,
            s_x_g1,
            r_x_g2: (r * x).into_affine(),
        }
    }

    /// Checks the proof and returns `(R, R·x)` for the update checks, or `None` if the proof
    /// is invalid or degenerate (a point at infinity, that is `s = 0` or `x = 0`).
    pub(crate) fn verify(&self, binding: &[u8; 32], tag: &[u8]) -> Option<(G2Affine, G2Affine)> {
        if self.s_g1.is_zero() || self.s_x_g1.is_zero() || self.r_x_g2.is_zero() {
            return None;
        }
        let r = Self::challenge(binding, tag, self.s_g1, self.s_x_g1);
        same_pairing(self.s_g1, self.r_x_g2, self.s_x_g1, r).then_some((r, self.r_x_g2))
    }

    /// The point that identifies this contribution's secret: equal in two contributions only
    /// if one is a copy of the other.
    pub(crate) fn fingerprint(&self) -> G1Affine {
        self.s_x_g1
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend(encode_g1(&[self.s_g1, self.s_x_g1]));
        out.extend(encode_g2(&[self.r_x_g2]));
    }

    pub(crate) fn decode(reader: &mut Reader<'_>) -> Result<Self, CeremonyError> {
        let [s_g1, s_x_g1]: [G1Affine; 2] =
            reader
                .g1_points("proof of knowledge", 2)?
                .try_into()
                .map_err(|_| CeremonyError::Malformed("proof of knowledge".into()))?;
        let r_x_g2 = reader.g2_point("proof of knowledge")?;
        Ok(KnowledgeProof {
            s_g1,
            s_x_g1,
            r_x_g2,
        })
    }
}

/// Compressed encodings of `points`, back to back.
pub(crate) fn encode_g1(points: &[G1Affine]) -> Vec<u8> {
    encode_points(points, G1_BYTES)
}

/// Compressed encodings of `points`, back to back.
pub(crate) fn encode_g2(points: &[G2Affine]) -> Vec<u8> {
    encode_points(points, G2_BYTES)
}

fn encode_points<P: CanonicalSerialize + Sync>(points: &[P], bytes_each: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; points.len() * bytes_each];
    bytes
        .par_chunks_mut(bytes_each)
        .zip(points)
        .for_each(|(chunk, point)| {
            point
                .serialize_with_mode(chunk, Compress::Yes)
                .expect("a compressed point fills exactly its slot")
        });
    bytes
}

/// Reads a transcript front to back; every read is bounds-checked and every point is checked
/// to be on its curve and in the prime-order subgroup.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, offset: 0 }
    }

    /// Bytes read so far.
    pub(crate) fn offset(&self) -> usize {
        self.offset
    }

    pub(crate) fn is_at_end(&self) -> bool {
        self.offset == self.bytes.len()
    }

    /// The bytes from `start` to the current position.
    pub(crate) fn since(&self, start: usize) -> &'a [u8] {
        &self.bytes[start..self.offset]
    }

    pub(crate) fn take(
        &mut self,
        what: &'static str,
        len: usize,
    ) -> Result<&'a [u8], CeremonyError> {
        let end = self
            .offset
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(CeremonyError::Truncated {
                what,
                at: self.bytes.len(),
            })?;
        let taken = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(taken)
    }

    pub(crate) fn byte(&mut self, what: &'static str) -> Result<u8, CeremonyError> {
        Ok(self.take(what, 1)?[0])
    }

    fn points<P: CanonicalDeserialize + Send>(
        &mut self,
        what: &'static str,
        count: usize,
        bytes_each: usize,
    ) -> Result<Vec<P>, CeremonyError> {
        let len = count
            .checked_mul(bytes_each)
            .ok_or(CeremonyError::Malformed(format!("{what}: too many points")))?;
        self.take(what, len)?
            .par_chunks_exact(bytes_each)
            .map(|chunk| {
                P::deserialize_with_mode(chunk, Compress::Yes, Validate::Yes)
                    .map_err(|error| CeremonyError::Malformed(format!("{what}: {error}")))
            })
            .collect()
    }

    pub(crate) fn g1_points(
        &mut self,
        what: &'static str,
        count: usize,
    ) -> Result<Vec<G1Affine>, CeremonyError> {
        self.points(what, count, G1_BYTES)
    }

    pub(crate) fn g2_points(
        &mut self,
        what: &'static str,
        count: usize,
    ) -> Result<Vec<G2Affine>, CeremonyError> {
        self.points(what, count, G2_BYTES)
    }

    pub(crate) fn g1_point(&mut self, what: &'static str) -> Result<G1Affine, CeremonyError> {
        Ok(self.g1_points(what, 1)?[0])
    }

    pub(crate) fn g2_point(&mut self, what: &'static str) -> Result<G2Affine, CeremonyError> {
        Ok(self.g2_points(what, 1)?[0])
    }
}
