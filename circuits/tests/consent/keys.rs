//! Key files: they round-trip, and anything else is a typed error found at load time.

use crate::support::{rng, SCENARIO};
use medvault_circuits::{ConsentProvingKey, ConsentVerifyingKey, Error};
use rand::RngCore;

#[test]
fn keys_round_trip_and_still_prove() {
    let verifying = ConsentVerifyingKey::from_bytes(&SCENARIO.verifying_key.to_bytes()).unwrap();
    assert_eq!(verifying, SCENARIO.verifying_key);
    let proving = ConsentProvingKey::from_bytes(&SCENARIO.proving_key.to_bytes()).unwrap();
    assert_eq!(proving.depth(), 4);
    let public = SCENARIO.public(51);
    let proof =
        medvault_circuits::prove(&proving, &public, &SCENARIO.witness(), &mut rng(52)).unwrap();
    assert!(medvault_circuits::verify(&verifying.prepare(), &public, &proof).unwrap());
}

#[test]
fn truncated_extended_and_random_key_files_are_typed_errors() {
    for bytes in [
        SCENARIO.verifying_key.to_bytes(),
        SCENARIO.proving_key.to_bytes(),
    ] {
        for length in [0, 3, 4, 40, bytes.len() - 1] {
            assert!(ConsentVerifyingKey::from_bytes(&bytes[..length]).is_err());
            assert!(ConsentProvingKey::from_bytes(&bytes[..length]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(7);
        assert!(ConsentVerifyingKey::from_bytes(&longer).is_err());
        assert!(ConsentProvingKey::from_bytes(&longer).is_err());
    }
    let mut random = vec![0u8; SCENARIO.verifying_key.to_bytes().len()];
    rng(53).fill_bytes(&mut random[4..]);
    random[..4].copy_from_slice(&4u32.to_le_bytes());
    assert!(matches!(
        ConsentVerifyingKey::from_bytes(&random),
        Err(Error::MalformedKey(_))
    ));
}

#[test]
fn unsupported_depth_and_forged_lengths_are_refused_before_decoding() {
    let mut bytes = SCENARIO.verifying_key.to_bytes();
    for depth in [0u32, 17, u32::MAX] {
        bytes[..4].copy_from_slice(&depth.to_le_bytes());
        assert!(matches!(
            ConsentVerifyingKey::from_bytes(&bytes),
            Err(Error::UnsupportedDepth(_))
        ));
    }
    // The verifying key's vector of input points starts after the depth, alpha and three G2s.
    let mut forged = SCENARIO.verifying_key.to_bytes();
    let length_at = 4 + 32 + 3 * 64;
    forged[length_at..length_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        ConsentVerifyingKey::from_bytes(&forged),
        Err(Error::MalformedKey(_))
    ));

    let mut forged = SCENARIO.proving_key.to_bytes();
    let a_query_length_at = 4 + 32 + 3 * 64 + 8 + 6 * 32 + 2 * 32;
    forged[a_query_length_at..a_query_length_at + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(matches!(
        ConsentProvingKey::from_bytes(&forged),
        Err(Error::MalformedKey(_))
    ));
}

#[test]
fn a_point_off_the_curve_is_refused() {
    let mut bytes = SCENARIO.verifying_key.to_bytes();
    // Flip bits of alpha's x coordinate until it leaves the curve (about half of all x do).
    let refused = (0..8).any(|bit| {
        bytes[4] ^= 1 << bit;
        matches!(
            ConsentVerifyingKey::from_bytes(&bytes),
            Err(Error::MalformedKey(_))
        )
    });
    assert!(refused);
}
