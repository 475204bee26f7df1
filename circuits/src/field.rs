//! Field elements as bytes and hex: the encoding of a BN254 scalar that consent trees, public
//! inputs and the JSON documents are built on. It imports nothing from the crate but `error`, so
//! that `tree` and `types` use it while `encoding`, which writes documents of their values, sits
//! above all three.
//!
//! Field elements are 32 bytes, little-endian and below the modulus in binary (arkworks'
//! canonical form), and `0x` followed by exactly 64 hex digits, big-endian, in JSON. Anything
//! else is [`Error::NonCanonicalField`]; nothing here panics on input.

use crate::error::Error;
use ark_bn254::Fr;
use ark_ff::{BigInteger, PrimeField};

/// Bytes in a canonical field element.
pub const FIELD_BYTES: usize = 32;

/// The canonical 32-byte little-endian encoding.
pub fn field_to_bytes(element: Fr) -> [u8; FIELD_BYTES] {
    let mut bytes = [0u8; FIELD_BYTES];
    bytes.copy_from_slice(&element.into_bigint().to_bytes_le());
    bytes
}

/// Decodes exactly 32 little-endian bytes holding a value below the modulus.
pub fn field_from_bytes(what: &'static str, bytes: &[u8]) -> Result<Fr, Error> {
    let bytes: [u8; FIELD_BYTES] = bytes.try_into().map_err(|_| Error::WrongLength {
        what,
        expected: FIELD_BYTES,
        actual: bytes.len(),
    })?;
    let mut limbs = [0u64; 4];
    for (limb, chunk) in limbs.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        *limb = u64::from_le_bytes(word);
    }
    Fr::from_bigint(ark_ff::BigInt(limbs)).ok_or(Error::NonCanonicalField { what })
}

/// `0x` and 64 hex digits, big-endian.
pub fn field_to_hex(element: Fr) -> String {
    format!("0x{}", hex::encode(element.into_bigint().to_bytes_be()))
}

/// Decodes [`field_to_hex`]: the `0x` prefix and exactly 64 hex digits of a value below the
/// modulus.
pub fn field_from_hex(what: &'static str, text: &str) -> Result<Fr, Error> {
    let digits = text
        .strip_prefix("0x")
        .filter(|digits| digits.len() == 2 * FIELD_BYTES)
        .ok_or(Error::NonCanonicalField { what })?;
    let mut bytes = hex::decode(digits).map_err(|_| Error::NonCanonicalField { what })?;
    bytes.reverse();
    field_from_bytes(what, &bytes)
}
