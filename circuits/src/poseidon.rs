//! Poseidon over BN254's scalar field: the native hash and its R1CS gadget.
//!
//! # Parameters and how they were generated
//!
//! Three instances, one per arity, all with the S-box `x^5` (5 is the smallest `alpha` coprime
//! to `p - 1` for BN254's scalar field) and 8 full rounds:
//!
//! | use | width `t` | inputs | partial rounds | MDS candidates skipped |
//! | --- | --- | --- | --- | --- |
//! | grantee commitment | 2 | 1 | 56 | 0 |
//! | Merkle node (4-ary tree) | 5 | 4 | 60 | 1 |
//! | consent leaf | 6 | 5 | 60 | 1 |
//!
//! The round numbers are those of the Poseidon paper's security analysis for 128-bit security
//! with its recommended margin (`R_F = 6 + 2`, `R_P` raised by 7.5 %), as its reference script
//! `calc_round_numbers.py` prints them for a 254-bit prime and `alpha = 5`; circomlib uses the
//! same numbers. Round constants and the Cauchy MDS matrix come from the paper's Grain LFSR
//! (appendix F), seeded with field = 1 (prime field), S-box = 0 (`x^alpha`), the field size
//! 254, `t`, `R_F` and `R_P`, taking round constants by rejection sampling; as in the paper's
//! reference script, candidate Cauchy matrices that fail the check against invariant subspace
//! trails are skipped (the first candidate passes for `t = 2`; for `t = 5` and `t = 6` the first fails
//! and the second passes). The implementation is ark-crypto-primitives'
//! `find_poseidon_ark_and_mds(254, t - 1, 8, R_P, skipped)`; the check (the sufficient form of
//! the reference's algorithm 1: the characteristic polynomial of `M^i` is irreducible for
//! `i = 1..=t`) is re-run by a test. Anyone can rerun the procedure, and the tests pin known
//! answers so that a change of procedure cannot go unnoticed.
//!
//! A hash of `t - 1` inputs starts from the state `[0, inputs...]` (one capacity element set to
//! zero), applies the permutation and returns `state[1]`, as ark-crypto-primitives' sponge does
//! when it absorbs `t - 1` elements and squeezes one. Different widths are different
//! permutations, which keeps commitments, leaves and nodes in separate domains.
//!
//! # Constraint cost of the gadget
//!
//! Each S-box is three multiplications (`x^2`, `x^4`, `x^5`); round constants and the MDS
//! matrix are folded into linear combinations and cost nothing; a partial round has a single
//! S-box; the capacity lane enters the first round as a constant, so its first S-box is free;
//! and the last round's linear layer is computed for the output lane only. A hash of width `t`
//! costs `3 * (8 t - 1 + R_P)` constraints: 213 for `t = 2`, 297 for `t = 5`, 321 for `t = 6`.

use crate::r1cs::{Builder, Wire};
use ark_bn254::Fr;
use ark_crypto_primitives::sponge::poseidon::find_poseidon_ark_and_mds;
use ark_ff::{Field, Zero};
use ark_relations::r1cs::SynthesisError;
use std::sync::LazyLock;

/// The number of full rounds of every instance.
pub const FULL_ROUNDS: usize = 8;

/// The round constants and MDS matrix of one Poseidon instance of width `T`.
#[derive(Debug, Clone)]
pub struct PoseidonParameters<const T: usize> {
    /// Number of partial rounds (a single S-box each).
    pub partial_rounds: usize,
    /// One row of `T` constants per round, full and partial alike.
    pub round_constants: Vec<[Fr; T]>,
    /// The MDS matrix of the linear layer.
    pub mds: [[Fr; T]; T],
}

impl<const T: usize> PoseidonParameters<T> {
    /// Runs the Grain LFSR procedure described in the module documentation, skipping the first
    /// `skip_matrices` candidate MDS matrices.
    pub fn generate(partial_rounds: usize, skip_matrices: u64) -> Self {
        let (round_constants, mds) = find_poseidon_ark_and_mds::<Fr>(
            254,
            T - 1,
            FULL_ROUNDS as u64,
            partial_rounds as u64,
            skip_matrices,
        );
        let to_row = |row: Vec<Fr>| -> [Fr; T] {
            std::array::from_fn(|lane| row.get(lane).copied().unwrap_or_default())
        };
        PoseidonParameters {
            partial_rounds,
            round_constants: round_constants.into_iter().map(to_row).collect(),
            mds: std::array::from_fn(|row| to_row(mds[row].clone())),
        }
    }

    fn rounds(&self) -> usize {
        FULL_ROUNDS + self.partial_rounds
    }

    fn is_full_round(&self, round: usize) -> bool {
        round < FULL_ROUNDS / 2 || round >= FULL_ROUNDS / 2 + self.partial_rounds
    }

    /// Applies the permutation to `state` in place.
    pub fn permute(&self, state: &mut [Fr; T]) {
        for round in 0..self.rounds() {
            for (lane, constant) in state.iter_mut().zip(&self.round_constants[round]) {
                *lane += constant;
            }
            if self.is_full_round(round) {
                state.iter_mut().for_each(|lane| *lane = sbox(*lane));
            } else {
                state[0] = sbox(state[0]);
            }
            let mixed: [Fr; T] = std::array::from_fn(|row| {
                self.mds[row]
                    .iter()
                    .zip(state.iter())
                    .fold(Fr::zero(), |sum, (m, lane)| sum + *m * lane)
            });
            *state = mixed;
        }
    }

    /// Hashes `T - 1` field elements: permutes `[0, inputs...]` and returns lane 1.
    fn hash(&self, inputs: &[Fr]) -> Fr {
        debug_assert_eq!(inputs.len(), T - 1);
        let mut state = [Fr::zero(); T];
        state[1..].copy_from_slice(inputs);
        self.permute(&mut state);
        state[1]
    }

    /// The gadget for [`Self::hash`]: returns a wire equal to the hash of `inputs`.
    pub(crate) fn hash_gadget(
        &self,
        builder: &Builder,
        inputs: &[Wire],
    ) -> Result<Wire, SynthesisError> {
        debug_assert_eq!(inputs.len(), T - 1);
        let mut state: Vec<Wire> = std::iter::once(builder.constant(Fr::zero()))
            .chain(inputs.iter().cloned())
            .collect();
        let last_round = self.rounds() - 1;
        for round in 0..=last_round {
            for (lane, constant) in state.iter_mut().zip(&self.round_constants[round]) {
                *lane = lane.add_constant(*constant);
            }
            if self.is_full_round(round) {
                for lane in state.iter_mut() {
                    *lane = sbox_gadget(builder, lane)?;
                }
            } else {
                state[0] = sbox_gadget(builder, &state[0])?;
            }
            if round < last_round {
                state = self.mds.iter().map(|row| mix_row(row, &state)).collect();
            }
        }
        Ok(mix_row(&self.mds[1], &state))
    }
}

fn sbox(x: Fr) -> Fr {
    let x2 = x.square();
    x2.square() * x
}

/// `x^5` in three constraints, or none if `x` is a constant.
fn sbox_gadget(builder: &Builder, x: &Wire) -> Result<Wire, SynthesisError> {
    let x2 = builder.mul(x, x)?;
    let x4 = builder.mul(&x2, &x2)?;
    builder.mul(&x4, x)
}

/// One row of the linear layer, as a free linear combination.
fn mix_row<const T: usize>(row: &[Fr; T], state: &[Wire]) -> Wire {
    let first = state[0].scale(row[0]);
    row[1..]
        .iter()
        .zip(&state[1..])
        .fold(first, |sum, (m, lane)| sum.add_scaled(*m, lane))
}

static COMMITMENT: LazyLock<PoseidonParameters<2>> =
    LazyLock::new(|| PoseidonParameters::generate(56, 0));
static NODE: LazyLock<PoseidonParameters<5>> =
    LazyLock::new(|| PoseidonParameters::generate(60, 1));
static LEAF: LazyLock<PoseidonParameters<6>> =
    LazyLock::new(|| PoseidonParameters::generate(60, 1));

/// The width-2 instance, for grantee commitments.
pub fn commitment_parameters() -> &'static PoseidonParameters<2> {
    &COMMITMENT
}

/// The width-5 instance, for the nodes of the 4-ary Merkle tree.
pub fn node_parameters() -> &'static PoseidonParameters<5> {
    &NODE
}

/// The width-6 instance, for consent leaves.
pub fn leaf_parameters() -> &'static PoseidonParameters<6> {
    &LEAF
}

/// Poseidon of one element (width 2): a grantee's public commitment to their secret.
pub fn hash1(input: Fr) -> Fr {
    COMMITMENT.hash(&[input])
}

/// Poseidon of four elements (width 5): a node of the 4-ary Merkle tree from its children,
/// leftmost first.
pub fn hash4(children: &[Fr; 4]) -> Fr {
    NODE.hash(children)
}

/// Poseidon of five elements (width 6): a consent leaf.
pub fn hash5(inputs: &[Fr; 5]) -> Fr {
    LEAF.hash(inputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_crypto_primitives::sponge::poseidon::{PoseidonConfig, PoseidonSponge};
    use ark_crypto_primitives::sponge::CryptographicSponge;
    use ark_ff::PrimeField;
    use ark_relations::r1cs::{ConstraintSystem, SynthesisMode};
    use proptest::prelude::*;

    fn field(limbs: [u64; 4]) -> Fr {
        let bytes: Vec<u8> = limbs.iter().flat_map(|limb| limb.to_le_bytes()).collect();
        Fr::from_le_bytes_mod_order(&bytes)
    }

    fn sponge_hash<const T: usize>(params: &PoseidonParameters<T>, inputs: &[Fr]) -> Fr {
        let config = PoseidonConfig::new(
            FULL_ROUNDS,
            params.partial_rounds,
            5,
            params.mds.iter().map(|row| row.to_vec()).collect(),
            params
                .round_constants
                .iter()
                .map(|row| row.to_vec())
                .collect(),
            T - 1,
            1,
        );
        let mut sponge = PoseidonSponge::new(&config);
        sponge.absorb(&inputs.to_vec());
        sponge.squeeze_field_elements::<Fr>(1)[0]
    }

    /// Synthesizes the gadget on fresh witnesses for `inputs`, in the given mode; returns the
    /// output's value, the constraint count and whether the system is satisfied.
    fn gadget_hash<const T: usize>(
        params: &PoseidonParameters<T>,
        inputs: &[Fr],
        mode: SynthesisMode,
    ) -> (Fr, usize, bool) {
        let cs = ConstraintSystem::<Fr>::new_ref();
        cs.set_mode(mode);
        let builder = Builder::new(cs.clone());
        let wires: Vec<Wire> = inputs
            .iter()
            .map(|input| builder.witness(*input).unwrap())
            .collect();
        let output = params.hash_gadget(&builder, &wires).unwrap();
        let expected = builder.witness(output.value()).unwrap();
        builder.enforce_equal(&output, &expected).unwrap();
        cs.finalize();
        let satisfied = !cs.should_construct_matrices() || cs.is_satisfied().unwrap();
        (output.value(), cs.num_constraints() - 1, satisfied)
    }

    const PROVE: SynthesisMode = SynthesisMode::Prove {
        construct_matrices: true,
    };

    #[test]
    fn gadget_costs_are_as_documented() {
        let count = |mode| {
            (
                gadget_hash(commitment_parameters(), &[Fr::from(1u8)], mode).1,
                gadget_hash(node_parameters(), &[Fr::from(1u8); 4], mode).1,
                gadget_hash(leaf_parameters(), &[Fr::from(1u8); 5], mode).1,
            )
        };
        assert_eq!(count(PROVE), (213, 297, 321));
        let without_matrices = SynthesisMode::Prove {
            construct_matrices: false,
        };
        assert_eq!(count(without_matrices), (213, 297, 321));
    }

    #[test]
    fn native_hash_matches_the_arkworks_sponge() {
        let inputs: Vec<Fr> = (1..=5u64).map(|i| field([i, 7 * i, 0, 3])).collect();
        assert_eq!(
            hash1(inputs[0]),
            sponge_hash(commitment_parameters(), &inputs[..1])
        );
        let children: [Fr; 4] = inputs[..4].try_into().unwrap();
        assert_eq!(
            hash4(&children),
            sponge_hash(node_parameters(), &inputs[..4])
        );
        let leaf: [Fr; 5] = inputs.clone().try_into().unwrap();
        assert_eq!(hash5(&leaf), sponge_hash(leaf_parameters(), &inputs));
    }

    /// Pins the parameter generation: if the procedure or its inputs change, these change.
    #[test]
    fn known_answers() {
        use crate::field::field_to_hex;
        assert_eq!(
            field_to_hex(hash1(Fr::from(1u8))),
            "0x112a4f9241e384b0ede4655e6d2bbf7ebd9595775de9e7536df87cd487852fc4"
        );
        assert_eq!(
            field_to_hex(hash4(&[1u8, 2, 3, 4].map(Fr::from))),
            "0x08941d6f6a7f06dc4b50ef64a93f5d426ee6ca4677ec688d5ce55de04cf285c3"
        );
        assert_eq!(
            field_to_hex(hash5(&[1u8, 2, 3, 4, 5].map(Fr::from))),
            "0x0110fc91fe02686c822123c522e901fc92a9ed8c8944cf6f01ba473597d53509"
        );
    }

    #[test]
    fn round_numbers_follow_the_paper() {
        assert_eq!(commitment_parameters().round_constants.len(), 8 + 56);
        assert_eq!(node_parameters().round_constants.len(), 8 + 60);
        assert_eq!(leaf_parameters().round_constants.len(), 8 + 60);
    }

    /// Polynomials over the field, lowest coefficient first, without trailing zeros.
    type Poly = Vec<Fr>;

    fn trim(mut poly: Poly) -> Poly {
        while poly.last().is_some_and(|c| c.is_zero()) {
            poly.pop();
        }
        poly
    }

    fn poly_rem(mut a: Poly, modulus: &[Fr]) -> Poly {
        let lead_inverse = modulus.last().unwrap().inverse().unwrap();
        while a.len() >= modulus.len() {
            let factor = *a.last().unwrap() * lead_inverse;
            let shift = a.len() - modulus.len();
            for (i, m) in modulus.iter().enumerate() {
                a[shift + i] -= factor * m;
            }
            a = trim(a);
        }
        a
    }

    fn poly_mul_mod(a: &[Fr], b: &[Fr], modulus: &[Fr]) -> Poly {
        let mut product = vec![Fr::zero(); (a.len() + b.len()).max(1)];
        for (i, x) in a.iter().enumerate() {
            for (j, y) in b.iter().enumerate() {
                product[i + j] += *x * y;
            }
        }
        poly_rem(trim(product), modulus)
    }

    /// `base^p mod modulus` with `p` the field's characteristic.
    fn poly_pow_p(base: &[Fr], modulus: &[Fr]) -> Poly {
        let mut result = vec![Fr::from(1u8)];
        for bit in ark_ff::BitIteratorBE::without_leading_zeros(Fr::MODULUS) {
            result = poly_mul_mod(&result, &result, modulus);
            if bit {
                result = poly_mul_mod(&result, base, modulus);
            }
        }
        result
    }

    fn poly_gcd(mut a: Poly, mut b: Poly) -> Poly {
        while !b.is_empty() {
            let r = poly_rem(a, &b);
            a = b;
            b = r;
        }
        a
    }

    /// Rabin's test: `f` of degree `n` is irreducible iff `x^(p^n) = x mod f` and
    /// `gcd(x^(p^(n/q)) - x, f) = 1` for every prime `q` dividing `n`.
    fn is_irreducible(f: &[Fr]) -> bool {
        let n = f.len() - 1;
        let x: Poly = vec![Fr::zero(), Fr::from(1u8)];
        let mut frobenius = vec![poly_rem(x.clone(), f)];
        for _ in 0..n {
            let next = poly_pow_p(frobenius.last().unwrap(), f);
            frobenius.push(next);
        }
        let minus_x = |poly: &Poly| {
            let mut poly = poly.clone();
            poly.resize(poly.len().max(2), Fr::zero());
            poly[1] -= Fr::from(1u8);
            trim(poly)
        };
        let primes = (2..=n).filter(|q| n % q == 0 && (2..*q).all(|d| q % d != 0));
        minus_x(&frobenius[n]).is_empty()
            && primes
                .into_iter()
                .all(|q| poly_gcd(f.to_vec(), minus_x(&frobenius[n / q])).len() == 1)
    }

    /// The characteristic polynomial by Faddeev-LeVerrier.
    fn characteristic_polynomial<const T: usize>(matrix: &[[Fr; T]; T]) -> Poly {
        let multiply = |a: &[[Fr; T]; T], b: &[[Fr; T]; T]| -> [[Fr; T]; T] {
            std::array::from_fn(|i| {
                std::array::from_fn(|j| (0..T).map(|k| a[i][k] * b[k][j]).sum())
            })
        };
        let mut coefficients = vec![Fr::zero(); T + 1];
        coefficients[T] = Fr::from(1u8);
        let mut m = [[Fr::zero(); T]; T];
        for k in 1..=T {
            let mut next = multiply(matrix, &m);
            for (i, row) in next.iter_mut().enumerate() {
                row[i] += coefficients[T - k + 1];
            }
            m = next;
            let trace: Fr = (0..T).map(|i| multiply(matrix, &m)[i][i]).sum();
            coefficients[T - k] = -trace * Fr::from(k as u64).inverse().unwrap();
        }
        coefficients
    }

    /// Algorithm 1 of the Poseidon reference's MDS checks, in its sufficient form: if the
    /// minimal polynomial of every `M^i`, `i = 1..=t`, is irreducible of degree `t` (so equal to
    /// the characteristic polynomial), no subspace trail of any length is invariant.
    fn has_no_invariant_subspace<const T: usize>(mds: &[[Fr; T]; T]) -> bool {
        let multiply = |a: &[[Fr; T]; T], b: &[[Fr; T]; T]| -> [[Fr; T]; T] {
            std::array::from_fn(|i| {
                std::array::from_fn(|j| (0..T).map(|k| a[i][k] * b[k][j]).sum())
            })
        };
        let mut power = *mds;
        for _ in 1..=T {
            if !is_irreducible(&characteristic_polynomial(&power)) {
                return false;
            }
            power = multiply(&power, mds);
        }
        true
    }

    #[test]
    fn mds_matrices_have_no_invariant_subspace() {
        assert!(has_no_invariant_subspace(&commitment_parameters().mds));
        assert!(has_no_invariant_subspace(&node_parameters().mds));
        assert!(has_no_invariant_subspace(&leaf_parameters().mds));
        // The test can fail: a matrix with an eigenvalue in the field is caught.
        let reducible = [[Fr::from(2u8), Fr::zero()], [Fr::zero(), Fr::from(3u8)]];
        assert!(!has_no_invariant_subspace(&reducible));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha, ..ProptestConfig::default() })]

        #[test]
        fn gadget_agrees_with_native_hash(limbs in prop::array::uniform5(prop::array::uniform4(any::<u64>()))) {
            let inputs = limbs.map(field);
            let (value, _, satisfied) = gadget_hash(commitment_parameters(), &inputs[..1], PROVE);
            prop_assert!(satisfied);
            prop_assert_eq!(value, hash1(inputs[0]));
            let (value, _, satisfied) = gadget_hash(node_parameters(), &inputs[..4], PROVE);
            prop_assert!(satisfied);
            let children: [Fr; 4] = inputs[..4].try_into().unwrap();
            prop_assert_eq!(value, hash4(&children));
            let (value, _, satisfied) = gadget_hash(leaf_parameters(), &inputs, PROVE);
            prop_assert!(satisfied);
            prop_assert_eq!(value, hash5(&inputs));
        }
    }
}
