//! Fixed-base multi-scalar multiplication, for the proving key's queries.
//!
//! A Groth16 proof is five multi-scalar multiplications (MSMs) over the proving key's bases,
//! which never change once the key is loaded: only the scalars (the assignment and `h`) do.
//! Variable-base Pippenger (arkworks' `VariableBaseMSM`) cuts every scalar into `W` windows of
//! `c` bits and, for each window, adds every base into a bucket chosen by that window's digit,
//! sums the buckets, and doubles `c` times before the next window. With the bases fixed, a table
//! can hold `2^(c j) P` for every base `P` and window `j` (the method of Brickell, Gordon,
//! McCurley and Wilson): digit `j` of a scalar then multiplies a point of its own, so all windows
//! share one set of buckets, summed once, with no doublings. What remains is at most `W`
//! additions per base and one bucket sum per MSM, which also lets `c` be larger than Pippenger
//! can afford (fewer windows, so fewer additions per base). The additions into buckets are
//! affine, a batch at a time with one inversion ([`Buckets`]), cheaper than the mixed Jacobian
//! additions of arkworks' MSM.
//!
//! Digits are signed (`-2^(c-1)..=2^(c-1)`): a negative digit subtracts the point (negating an
//! affine point is free), so `2^(c-1)` buckets suffice. Zero scalars cost nothing and a scalar of
//! one costs a single addition, which matters here: many witness values are bits.

use ark_ec::short_weierstrass::{Affine, Projective, SWCurveConfig};
use ark_ec::{AdditiveGroup, AffineRepr, CurveGroup};
use ark_ff::{Field, One, PrimeField, Zero};
use rayon::prelude::*;
use std::fmt;

/// Costs in field multiplications (squarings counted as multiplications) of a batched affine
/// addition (see [`Buckets`]), a mixed Jacobian one (7 + 4) and a full Jacobian one (11 + 5).
const AFFINE_ADDITION_COST: f64 = 6.0;
const MIXED_ADDITION_COST: f64 = 11.0;
const FULL_ADDITION_COST: f64 = 16.0;

/// The multiples `2^(c j) P` of a fixed list of bases, decoded and affine, ready for
/// [`FixedBaseTable::msm`].
pub(crate) struct FixedBaseTable<P: SWCurveConfig> {
    /// `c`: the bits of a scalar that one digit covers.
    window_bits: u32,
    /// `W`: digits per scalar, enough for a signed recoding of any scalar below the modulus.
    windows: usize,
    /// How many bases the table was built from, identity points included.
    base_count: usize,
    /// The position of each base that is not the identity among the bases the table was built
    /// from, which is also the position of its scalar. Identity points add nothing and are left
    /// out (a third of the B query is the identity).
    positions: Vec<usize>,
    /// `windows` points per base of `positions`, in its order: `2^(c j) P` for `j` in
    /// `0..windows`.
    multiples: Vec<Affine<P>>,
}

impl<P: SWCurveConfig> FixedBaseTable<P> {
    /// A table for `bases`, with the window that minimizes the cost of an MSM split evenly
    /// across the rayon threads (each share pays one bucket sum).
    pub(crate) fn new(bases: &[Affine<P>]) -> Self {
        let non_identity = bases.iter().filter(|base| !base.is_zero()).count();
        let share = non_identity.div_ceil(rayon::current_num_threads());
        Self::with_window_bits(bases, best_window_bits::<P>(share))
    }

    /// A table for `bases` with windows of `window_bits` bits (2 to 20).
    pub(crate) fn with_window_bits(bases: &[Affine<P>], window_bits: u32) -> Self {
        debug_assert!((2..=20).contains(&window_bits), "{window_bits} bits");
        let windows = window_count::<P>(window_bits);
        let positions: Vec<usize> = bases
            .iter()
            .enumerate()
            .filter(|(_, base)| !base.is_zero())
            .map(|(position, _)| position)
            .collect();
        let multiples: Vec<Projective<P>> = positions
            .par_iter()
            .flat_map_iter(|&position| {
                std::iter::successors(Some(bases[position].into_group()), |multiple| {
                    let mut next = *multiple;
                    for _ in 0..window_bits {
                        next.double_in_place();
                    }
                    Some(next)
                })
                .take(windows)
            })
            .collect();
        FixedBaseTable {
            window_bits,
            windows,
            base_count: bases.len(),
            positions,
            multiples: Projective::normalize_batch(&multiples),
        }
    }

    /// How many bases the table was built from.
    pub(crate) fn base_count(&self) -> usize {
        self.base_count
    }

    /// `sum s_i P_i` over the table's bases `P_i` and `scalars` in the same order. As with
    /// arkworks' MSM, the pairs end with the shorter of the two lists. The bases are split into
    /// one share per rayon thread, each summed in its own buckets.
    pub(crate) fn msm(&self, scalars: &[P::ScalarField]) -> Projective<P> {
        let share = self
            .positions
            .len()
            .div_ceil(rayon::current_num_threads())
            .max(1);
        self.positions
            .par_chunks(share)
            .zip(self.multiples.par_chunks(share * self.windows))
            .map(|(positions, multiples)| self.bucket_sum(positions, multiples, scalars))
            .reduce(Projective::zero, |sum, share| sum + share)
    }

    /// One share of [`Self::msm`]: every nonzero digit adds its base's multiple for that window
    /// into the bucket of the digit's magnitude (subtracts it for a negative digit).
    fn bucket_sum(
        &self,
        positions: &[usize],
        multiples: &[Affine<P>],
        scalars: &[P::ScalarField],
    ) -> Projective<P> {
        let mut buckets = Buckets::new(1 << (self.window_bits - 1));
        let mut digits = vec![0i32; self.windows];
        for (&position, points) in positions.iter().zip(multiples.chunks_exact(self.windows)) {
            let Some(scalar) = scalars.get(position) else {
                break;
            };
            if scalar.is_zero() {
                continue;
            }
            signed_digits(scalar.into_bigint().as_ref(), self.window_bits, &mut digits);
            for (point, &digit) in points.iter().zip(&digits) {
                let bucket = digit.unsigned_abs() as usize;
                if digit > 0 {
                    buckets.add(bucket - 1, *point);
                } else if digit < 0 {
                    buckets.add(bucket - 1, -*point);
                }
            }
        }
        buckets.sum()
    }
}

/// How many bucket additions share one field inversion.
const BATCH: usize = 256;

/// Buckets that add in affine coordinates, a batch at a time. An affine addition
/// `(x1, y1) + (x2, y2)` needs `1 / (x2 - x1)`; with one inversion for a whole batch
/// (Montgomery's trick, three multiplications per element) it costs about 6 multiplications,
/// against 11 for a mixed Jacobian addition. A batch holds at most one addition per bucket; an
/// addition that cannot join it (its bucket already has one pending, or the point is the bucket
/// or its negation) goes into a Jacobian overflow bucket instead, a few percent of them.
struct Buckets<P: SWCurveConfig> {
    /// The affine part of each bucket; the identity while empty.
    affine: Vec<Affine<P>>,
    /// The Jacobian part of each bucket.
    overflow: Vec<Projective<P>>,
    /// Whether the bucket has an addition in `pending`.
    is_pending: Vec<bool>,
    /// The batch: a bucket and the point to add into it.
    pending: Vec<(usize, Affine<P>)>,
    /// Products of the batch's denominators before each one, for Montgomery's trick.
    prefix_products: Vec<P::BaseField>,
}

impl<P: SWCurveConfig> Buckets<P> {
    fn new(count: usize) -> Self {
        Buckets {
            affine: vec![Affine::identity(); count],
            overflow: vec![Projective::zero(); count],
            is_pending: vec![false; count],
            pending: Vec::with_capacity(BATCH),
            prefix_products: Vec::with_capacity(BATCH),
        }
    }

    fn add(&mut self, bucket: usize, point: Affine<P>) {
        let current = &mut self.affine[bucket];
        if current.is_zero() {
            *current = point;
        } else if self.is_pending[bucket] || current.x == point.x {
            self.overflow[bucket] += point;
        } else {
            self.is_pending[bucket] = true;
            self.pending.push((bucket, point));
            if self.pending.len() == BATCH {
                self.add_pending();
            }
        }
    }

    /// Adds the batch: no denominator is zero, since each point's `x` differs from its bucket's.
    fn add_pending(&mut self) {
        self.prefix_products.clear();
        let mut product = P::BaseField::one();
        for &(bucket, point) in &self.pending {
            self.prefix_products.push(product);
            product *= point.x - self.affine[bucket].x;
        }
        let Some(mut inverse) = product.inverse() else {
            // Unreachable (a product of nonzero field elements), but correct all the same.
            for (bucket, point) in self.pending.drain(..) {
                self.overflow[bucket] += point;
                self.is_pending[bucket] = false;
            }
            return;
        };
        for (&(bucket, point), prefix_product) in
            self.pending.iter().zip(&self.prefix_products).rev()
        {
            let sum = &mut self.affine[bucket];
            let denominator = point.x - sum.x;
            // `inverse` is the inverse of the product of this denominator and those before it.
            let lambda = (point.y - sum.y) * inverse * prefix_product;
            inverse *= denominator;
            let x = lambda.square() - sum.x - point.x;
            sum.y = lambda * (sum.x - x) - sum.y;
            sum.x = x;
            self.is_pending[bucket] = false;
        }
        self.pending.clear();
    }

    /// `sum_k k B_k` over buckets `B_1, B_2, ...`: the sum of the running sums
    /// `B_top + ... + B_k`.
    fn sum(mut self) -> Projective<P> {
        self.add_pending();
        let mut running = Projective::<P>::zero();
        let mut sum = Projective::<P>::zero();
        for (affine, overflow) in self.affine.iter().zip(&self.overflow).rev() {
            running += affine;
            running += overflow;
            sum += &running;
        }
        sum
    }
}

impl<P: SWCurveConfig> fmt::Debug for FixedBaseTable<P> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("FixedBaseTable")
            .field("window_bits", &self.window_bits)
            .field("windows", &self.windows)
            .field("base_count", &self.base_count)
            .field("non_identity_bases", &self.positions.len())
            .field(
                "bytes",
                &(self.multiples.len() * std::mem::size_of::<Affine<P>>()),
            )
            .finish()
    }
}

/// Digits of a signed recoding in base `2^window_bits` of any scalar below the modulus: the top
/// digit must absorb the last carry without leaving its range, which holds once the windows cover
/// one bit more than the modulus.
fn window_count<P: SWCurveConfig>(window_bits: u32) -> usize {
    (P::ScalarField::MODULUS_BIT_SIZE as usize + 1).div_ceil(window_bits as usize)
}

/// The window that minimizes the cost of an MSM over `bases` bases (see [`msm_cost`]).
fn best_window_bits<P: SWCurveConfig>(bases: usize) -> u32 {
    (2..=20u32)
        .min_by(|&one, &other| msm_cost::<P>(one, bases).total_cmp(&msm_cost::<P>(other, bases)))
        .unwrap_or(2)
}

/// The estimated cost of an MSM over `bases` bases with windows of `window_bits` bits, in field
/// multiplications: `W` bucket additions per base, then per bucket one mixed and one full
/// addition of the final sum. A bucket addition is affine unless its bucket is already in the
/// batch, which happens about `BATCH / 2` in `2^(c-1)` times, when it is a mixed addition; so small
/// windows lose twice (more windows, more such conflicts), which measurements confirm.
fn msm_cost<P: SWCurveConfig>(window_bits: u32, bases: usize) -> f64 {
    let buckets = (1u64 << (window_bits - 1)) as f64;
    let conflicts = (BATCH as f64 / 2.0 / buckets).min(1.0);
    let addition = AFFINE_ADDITION_COST + conflicts * (MIXED_ADDITION_COST - AFFINE_ADDITION_COST);
    let additions = (window_count::<P>(window_bits) * bases) as f64;
    additions * addition + buckets * (MIXED_ADDITION_COST + FULL_ADDITION_COST)
}

/// Writes the signed base-`2^window_bits` digits of the little-endian integer `limbs` into
/// `digits`, least significant first: each in `-2^(c-1)..2^(c-1)` except the last, which takes
/// the final carry and stays in `0..=2^(c-1)` for any integer below `2^(c * digits.len() - 1)`.
fn signed_digits(limbs: &[u64], window_bits: u32, digits: &mut [i32]) {
    let radix = 1i64 << window_bits;
    let mask = (radix - 1) as u64;
    let last = digits.len() - 1;
    let mut carry = 0i64;
    for (index, digit) in digits.iter_mut().enumerate() {
        let bit = index * window_bits as usize;
        let (limb, shift) = (bit / 64, bit % 64);
        let low = limbs.get(limb).map_or(0, |limb| limb >> shift);
        let high = match shift {
            0 => 0,
            _ => limbs.get(limb + 1).map_or(0, |limb| limb << (64 - shift)),
        };
        let value = ((low | high) & mask) as i64 + carry;
        if index < last && value >= radix / 2 {
            *digit = (value - radix) as i32;
            carry = 1;
        } else {
            *digit = value as i32;
            carry = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_bn254::{Fr, G1Affine, G1Projective, G2Affine, G2Projective};
    use ark_ec::VariableBaseMSM;
    use ark_ff::UniformRand;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    /// Random bases with some identity points and repeats, and scalars with the values that exercise the
    /// recoding's edges (0, 1, -1, small, powers of two near a window, random).
    fn inputs<G>(count: usize, rng: &mut ChaCha20Rng) -> (Vec<G::Affine>, Vec<Fr>)
    where
        G: CurveGroup<ScalarField = Fr>,
    {
        let mut bases: Vec<G> = Vec::with_capacity(count);
        for _ in 0..count {
            let base = match (rng.gen_range(0..8), bases.last()) {
                (0, _) => G::zero(),
                // Equal points and negations reach the additions whose denominator is zero.
                (1, Some(&previous)) => previous,
                (2, Some(&previous)) => -previous,
                _ => G::rand(rng),
            };
            bases.push(base);
        }
        let scalars = (0..count)
            .map(|_| match rng.gen_range(0..8) {
                0 => Fr::zero(),
                1 => Fr::one(),
                2 => -Fr::one(),
                3 => Fr::from(rng.gen_range(0..1u64 << 16)),
                4 => Fr::from(2u64).pow([rng.gen_range(0..254u64)]),
                5 => -Fr::from(2u64).pow([rng.gen_range(0..254u64)]),
                _ => Fr::rand(rng),
            })
            .collect();
        (G::normalize_batch(&bases), scalars)
    }

    fn agrees_with_arkworks<P>(seed: u64)
    where
        P: SWCurveConfig<ScalarField = Fr>,
    {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        for count in [0, 1, 2, 7, 100, 613] {
            let (bases, scalars) = inputs::<Projective<P>>(count, &mut rng);
            let expected = Projective::<P>::msm(&bases, &scalars).expect("same length");
            for window_bits in [2, 3, 5, 8, 11, 13, 16] {
                let table = FixedBaseTable::with_window_bits(&bases, window_bits);
                assert_eq!(
                    table.msm(&scalars),
                    expected,
                    "{count} bases, c = {window_bits}"
                );
            }
            assert_eq!(FixedBaseTable::new(&bases).msm(&scalars), expected);
        }
    }

    #[test]
    fn g1_msm_agrees_with_arkworks() {
        agrees_with_arkworks::<ark_bn254::g1::Config>(1);
        agrees_with_arkworks::<ark_bn254::g1::Config>(2);
    }

    #[test]
    fn g2_msm_agrees_with_arkworks() {
        agrees_with_arkworks::<ark_bn254::g2::Config>(3);
    }

    #[test]
    fn shorter_scalars_end_the_sum_like_arkworks() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let (bases, scalars) = inputs::<G1Projective>(50, &mut rng);
        let table = FixedBaseTable::new(&bases);
        assert_eq!(
            table.msm(&scalars[..20]),
            G1Projective::msm_unchecked(&bases, &scalars[..20])
        );
        let (bases, scalars) = inputs::<G2Projective>(50, &mut rng);
        assert_eq!(
            FixedBaseTable::new(&bases[..30]).msm(&scalars),
            G2Projective::msm_unchecked(&bases[..30], &scalars)
        );
    }

    #[test]
    fn the_largest_scalar_recodes_within_range() {
        let largest = -Fr::one();
        for window_bits in 2..=20 {
            let windows = window_count::<ark_bn254::g1::Config>(window_bits);
            let mut digits = vec![0; windows];
            signed_digits(largest.into_bigint().as_ref(), window_bits, &mut digits);
            let half = 1i32 << (window_bits - 1);
            assert!(digits.iter().all(|digit| (-half..=half).contains(digit)));
            let value = digits.iter().rev().fold(Fr::zero(), |value, &digit| {
                value * Fr::from(1u64 << window_bits) + Fr::from(digit as i64)
            });
            assert_eq!(value, largest, "c = {window_bits}");
        }
    }

    #[test]
    fn identity_and_generator_bases() {
        let bases = [G1Affine::zero(), G1Affine::generator(), G1Affine::zero()];
        let scalars = [Fr::from(5u64), Fr::from(7u64), Fr::from(9u64)];
        assert_eq!(
            FixedBaseTable::new(&bases).msm(&scalars),
            G1Affine::generator() * Fr::from(7u64)
        );
        let bases = [G2Affine::generator()];
        assert_eq!(
            FixedBaseTable::new(&bases).msm(&[-Fr::one()]),
            -G2Affine::generator().into_group()
        );
    }
}
