//! Circuit-specific Groth16 setup per depth, and the key files.
//!
//! A key file is the depth (`u32`, little-endian) followed by the arkworks key in compressed
//! canonical form. Loading is where all validation happens, once per load: the depth must be
//! supported, every vector in the file must have exactly the length the consent circuit of that
//! depth needs (checked on the raw bytes before arkworks allocates anything, so a forged length
//! cannot make it allocate terabytes), and arkworks then checks that every point is on its curve
//! and in the prime-order subgroup. Keys in memory are trusted; proofs never re-validate them.

use crate::circuit::ConsentCircuit;
use crate::error::Error;
use crate::prove::ProverTables;
use crate::tree::check_depth;
use crate::types::PublicInputs;
use ark_bn254::{Bn254, Fr};
use ark_ec::{pairing::Pairing, AffineRepr};
use ark_groth16::{Groth16, PreparedVerifyingKey, ProvingKey, VerifyingKey};
use ark_poly::{EvaluationDomain, GeneralEvaluationDomain};
use ark_relations::r1cs::{
    ConstraintMatrices, ConstraintSynthesizer, ConstraintSystem, SynthesisMode,
};
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use rand::{CryptoRng, RngCore};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex};

/// File name of the proving key inside a key directory.
pub const PROVING_KEY_FILE: &str = "consent_proving_key.bin";
/// File name of the verifying key inside a key directory.
pub const VERIFYING_KEY_FILE: &str = "consent_verifying_key.bin";

const G1_BYTES: usize = 32;
const G2_BYTES: usize = 64;
const LENGTH_BYTES: usize = 8;
const DEPTH_BYTES: usize = 4;

/// The consent circuit's R1CS at one depth, synthesized once per depth and process.
#[derive(Debug)]
pub(crate) struct CircuitShape {
    pub(crate) matrices: ConstraintMatrices<Fr>,
    /// The QAP evaluation domain's size (a power of two).
    pub(crate) domain_size: usize,
}

impl CircuitShape {
    fn synthesize(depth: u32) -> Result<Self, Error> {
        let cs = ConstraintSystem::<Fr>::new_ref();
        cs.set_mode(SynthesisMode::Setup);
        ConsentCircuit::blank(depth)?.generate_constraints(cs.clone())?;
        cs.finalize();
        let matrices = cs
            .to_matrices()
            .ok_or(ark_relations::r1cs::SynthesisError::MissingCS)?;
        let domain_size = GeneralEvaluationDomain::<Fr>::new(
            matrices.num_constraints + matrices.num_instance_variables,
        )
        .ok_or(ark_relations::r1cs::SynthesisError::PolynomialDegreeTooLarge)?
        .size();
        Ok(CircuitShape {
            matrices,
            domain_size,
        })
    }

    /// Variables including the constant one: the length of the A and B queries.
    fn num_variables(&self) -> usize {
        self.matrices.num_instance_variables + self.matrices.num_witness_variables
    }
}

/// The shape of the consent circuit at `depth`, cached for the life of the process.
pub(crate) fn circuit_shape(depth: u32) -> Result<Arc<CircuitShape>, Error> {
    static SHAPES: LazyLock<Mutex<HashMap<u32, Arc<CircuitShape>>>> =
        LazyLock::new(Default::default);
    check_depth(depth)?;
    let cached = SHAPES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(&depth)
        .cloned();
    if let Some(shape) = cached {
        return Ok(shape);
    }
    let shape = Arc::new(CircuitShape::synthesize(depth)?);
    SHAPES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert(depth, shape.clone());
    Ok(shape)
}

/// The proving key for the consent circuit at one depth, with the circuit's matrices so that
/// proving synthesizes only the assignment, and optionally its fixed-base tables
/// ([`ConsentProvingKey::with_tables`]).
#[derive(Debug, Clone)]
pub struct ConsentProvingKey {
    depth: u32,
    pub(crate) key: ProvingKey<Bn254>,
    pub(crate) shape: Arc<CircuitShape>,
    tables: Option<Arc<ProverTables>>,
}

/// The verifying key for the consent circuit at one depth.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentVerifyingKey {
    depth: u32,
    pub(crate) key: VerifyingKey<Bn254>,
}

/// A verifying key with its pairing-friendly precomputation done: prepare once, verify many.
#[derive(Debug, Clone)]
pub struct PreparedConsentKey {
    depth: u32,
    pub(crate) key: PreparedVerifyingKey<Bn254>,
    /// `beta` in G2, prepared for the batch check's extra pairing.
    pub(crate) beta_g2: <Bn254 as Pairing>::G2Prepared,
}

/// Generates the Groth16 keys of the consent circuit at `depth` with randomness from `rng`.
/// Whoever runs this learns the trapdoor: in production run it once, on a trusted machine, and
/// throw the process away.
pub fn setup(
    depth: u32,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<(ConsentProvingKey, ConsentVerifyingKey), Error> {
    let shape = circuit_shape(depth)?;
    let key = Groth16::<Bn254>::generate_random_parameters_with_reduction(
        ConsentCircuit::blank(depth)?,
        rng,
    )?;
    let verifying_key = ConsentVerifyingKey {
        depth,
        key: key.vk.clone(),
    };
    Ok((
        ConsentProvingKey {
            depth,
            key,
            shape,
            tables: None,
        },
        verifying_key,
    ))
}

fn serialize_with_depth(depth: u32, key: &impl CanonicalSerialize) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(DEPTH_BYTES + key.compressed_size());
    bytes.extend_from_slice(&depth.to_le_bytes());
    key.serialize_compressed(&mut bytes)
        .expect("writing to a Vec cannot fail");
    bytes
}

/// Reads the depth prefix of a key file.
fn read_depth(bytes: &[u8]) -> Result<(u32, &[u8]), Error> {
    let prefix: [u8; DEPTH_BYTES] = bytes
        .get(..DEPTH_BYTES)
        .and_then(|prefix| prefix.try_into().ok())
        .ok_or(Error::WrongLength {
            what: "key file depth",
            expected: DEPTH_BYTES,
            actual: bytes.len(),
        })?;
    let depth = u32::from_le_bytes(prefix);
    check_depth(depth)?;
    Ok((depth, &bytes[DEPTH_BYTES..]))
}

/// One piece of a compressed arkworks key: a fixed-size point or a length-prefixed vector.
enum Piece {
    Points { bytes_each: usize, count: usize },
    Vector { bytes_each: usize, count: usize },
}

/// Checks that `bytes` is exactly the sequence of `pieces`, with the vector lengths recorded in
/// the file equal to the expected ones.
fn check_layout(what: &'static str, bytes: &[u8], pieces: &[Piece]) -> Result<(), Error> {
    let mut offset = 0usize;
    for piece in pieces {
        let (bytes_each, count) = match *piece {
            Piece::Points { bytes_each, count } => (bytes_each, count),
            Piece::Vector { bytes_each, count } => {
                let recorded = bytes
                    .get(offset..offset + LENGTH_BYTES)
                    .and_then(|prefix| <[u8; LENGTH_BYTES]>::try_from(prefix).ok())
                    .map(u64::from_le_bytes)
                    .ok_or_else(|| Error::MalformedKey(format!("{what}: truncated")))?;
                if recorded != count as u64 {
                    return Err(Error::MalformedKey(format!(
                        "{what}: a vector holds {recorded} points where the circuit needs {count}"
                    )));
                }
                offset += LENGTH_BYTES;
                (bytes_each, count)
            }
        };
        offset += bytes_each * count;
    }
    if bytes.len() != offset {
        return Err(Error::WrongLength {
            what,
            expected: offset + DEPTH_BYTES,
            actual: bytes.len() + DEPTH_BYTES,
        });
    }
    Ok(())
}

fn verifying_key_layout() -> [Piece; 2] {
    [
        Piece::Points {
            bytes_each: G1_BYTES + 3 * G2_BYTES,
            count: 1,
        },
        Piece::Vector {
            bytes_each: G1_BYTES,
            count: PublicInputs::COUNT + 1,
        },
    ]
}

/// The points of a verifying key that must not be the identity (with one of them the identity,
/// anyone could prove anything).
fn check_verifying_key_points(key: &VerifyingKey<Bn254>) -> Result<(), Error> {
    if key.alpha_g1.is_zero()
        || key.beta_g2.is_zero()
        || key.gamma_g2.is_zero()
        || key.delta_g2.is_zero()
    {
        return Err(Error::MalformedKey(
            "a verifying key point is the identity".into(),
        ));
    }
    Ok(())
}

fn decode_error(what: &str) -> impl Fn(ark_serialize::SerializationError) -> Error + '_ {
    move |error| Error::MalformedKey(format!("{what}: {error}"))
}

impl ConsentProvingKey {
    /// The depth of the tree the key proves membership in.
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// The matching verifying key.
    pub fn verifying_key(&self) -> ConsentVerifyingKey {
        ConsentVerifyingKey {
            depth: self.depth,
            key: self.key.vk.clone(),
        }
    }

    /// The keys a verified ceremony transcript leads to (their shape is the circuit's by
    /// construction).
    pub(crate) fn from_ceremony(
        depth: u32,
        key: ProvingKey<Bn254>,
        shape: Arc<CircuitShape>,
    ) -> Self {
        ConsentProvingKey {
            depth,
            key,
            shape,
            tables: None,
        }
    }

    /// The key with its bases decoded into fixed-base tables (`2^(c j)` multiples of every
    /// base, affine): about 31 MB at depth 10, built in about as long as ten proofs take
    /// (../BENCHMARKS.md), after which every proof needs about 40 % less CPU time. Worth it in a
    /// process that proves more than a few times; `prove` runs arkworks' prover on a key without
    /// them. The tables are not part of the key file.
    pub fn with_tables(self) -> Self {
        let tables = Arc::new(ProverTables::new(&self.key));
        ConsentProvingKey {
            tables: Some(tables),
            ..self
        }
    }

    pub(crate) fn tables(&self) -> Option<&ProverTables> {
        self.tables.as_deref()
    }

    /// The key file: depth, then arkworks' compressed proving key.
    pub fn to_bytes(&self) -> Vec<u8> {
        serialize_with_depth(self.depth, &self.key)
    }

    /// Loads and fully validates a key file (see the module documentation). At depth 20 this
    /// takes a good part of a second: load once, prove many times.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let (depth, body) = read_depth(bytes)?;
        let shape = circuit_shape(depth)?;
        let variables = shape.num_variables();
        let witnesses = shape.matrices.num_witness_variables;
        let [vk_points, vk_inputs] = verifying_key_layout();
        check_layout(
            "proving key",
            body,
            &[
                vk_points,
                vk_inputs,
                Piece::Points {
                    bytes_each: G1_BYTES,
                    count: 2,
                },
                Piece::Vector {
                    bytes_each: G1_BYTES,
                    count: variables,
                },
                Piece::Vector {
                    bytes_each: G1_BYTES,
                    count: variables,
                },
                Piece::Vector {
                    bytes_each: G2_BYTES,
                    count: variables,
                },
                Piece::Vector {
                    bytes_each: G1_BYTES,
                    count: shape.domain_size - 1,
                },
                Piece::Vector {
                    bytes_each: G1_BYTES,
                    count: witnesses,
                },
            ],
        )?;
        let key = ProvingKey::<Bn254>::deserialize_compressed(body)
            .map_err(decode_error("proving key"))?;
        check_verifying_key_points(&key.vk)?;
        Ok(ConsentProvingKey {
            depth,
            key,
            shape,
            tables: None,
        })
    }

    /// Reads and validates a key file.
    pub fn read(path: &Path) -> Result<Self, Error> {
        Self::from_bytes(&read_file(path)?)
    }

    /// Writes the key file.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        write_file(path, &self.to_bytes())
    }
}

impl ConsentVerifyingKey {
    /// The depth of the tree the key verifies membership in.
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// Precomputes what every verification needs; do it once per loaded key.
    pub fn prepare(&self) -> PreparedConsentKey {
        PreparedConsentKey {
            depth: self.depth,
            key: ark_groth16::prepare_verifying_key(&self.key),
            beta_g2: self.key.beta_g2.into(),
        }
    }

    /// The key file: depth, then arkworks' compressed verifying key.
    pub fn to_bytes(&self) -> Vec<u8> {
        serialize_with_depth(self.depth, &self.key)
    }

    /// Loads and fully validates a key file: supported depth, one point per public input plus
    /// one, points on the curve and in the subgroup, no identity where it would break soundness.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let (depth, body) = read_depth(bytes)?;
        check_layout("verifying key", body, &verifying_key_layout())?;
        let key = VerifyingKey::<Bn254>::deserialize_compressed(body)
            .map_err(decode_error("verifying key"))?;
        check_verifying_key_points(&key)?;
        Ok(ConsentVerifyingKey { depth, key })
    }

    /// Reads and validates a key file.
    pub fn read(path: &Path) -> Result<Self, Error> {
        Self::from_bytes(&read_file(path)?)
    }

    /// Writes the key file.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        write_file(path, &self.to_bytes())
    }
}

impl PreparedConsentKey {
    /// The depth of the tree the key verifies membership in.
    pub fn depth(&self) -> u32 {
        self.depth
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    std::fs::write(path, bytes).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}
