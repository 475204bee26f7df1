//! Bytes from outside: tampered, truncated, random or non-canonical input is a typed error (or,
//! for a well-formed proof of something else, `Ok(false)`), never a panic.

use crate::support::{rng, SCENARIO};
use medvault_circuits::encoding::{ProofDocument, WitnessDocument};
use medvault_circuits::field::{field_from_hex, field_to_hex};
use medvault_circuits::{setup, verify, verify_encoded, ConsentProof, Error, Fr, PublicInputs};
use rand::RngCore;

/// BN254's scalar field modulus, little-endian.
fn modulus_le() -> [u8; 32] {
    let mut bytes =
        hex::decode("30644e72e131a029b85045b68181585d2833e84879b9709143e1f593f0000001").unwrap();
    bytes.reverse();
    bytes.try_into().unwrap()
}

#[test]
fn tampered_proofs_are_rejected() {
    let public = SCENARIO.public(41);
    let bytes = SCENARIO.prove(&public, 9).to_bytes();
    let encoded_public = public.to_bytes();
    for position in [0, 5, 31, 32, 70, 95, 96, 127] {
        for flip in [0x01, 0x80] {
            let mut tampered = bytes.clone();
            tampered[position] ^= flip;
            let outcome = verify_encoded(&SCENARIO.prepared, &encoded_public, &tampered);
            assert!(
                matches!(outcome, Ok(false) | Err(Error::MalformedProof(_))),
                "byte {position} ^ {flip:#x}: {outcome:?}"
            );
        }
    }
}

#[test]
fn proof_from_another_key_is_rejected() {
    let (other_key, _) = setup(crate::support::DEPTH, &mut rng(42)).unwrap();
    let public = SCENARIO.public(43);
    let proof =
        medvault_circuits::prove(&other_key, &public, &SCENARIO.witness(), &mut rng(44)).unwrap();
    assert!(!verify(&SCENARIO.prepared, &public, &proof).unwrap());
}

#[test]
fn truncated_and_random_proof_bytes_are_typed_errors() {
    let public = SCENARIO.public(45);
    let bytes = SCENARIO.prove(&public, 10).to_bytes();
    for length in [0, 1, 64, 127] {
        assert!(matches!(
            ConsentProof::from_bytes(&bytes[..length]),
            Err(Error::WrongLength { expected: 128, .. })
        ));
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        ConsentProof::from_bytes(&longer),
        Err(Error::WrongLength { .. })
    ));
    let mut rng = rng(46);
    for _ in 0..32 {
        let mut random = [0u8; 128];
        rng.fill_bytes(&mut random);
        assert!(matches!(
            ConsentProof::from_bytes(&random),
            Err(Error::MalformedProof(_))
        ));
    }
}

#[test]
fn non_canonical_public_inputs_are_typed_errors() {
    let public = SCENARIO.public(47);
    let proof = SCENARIO.prove(&public, 11).to_bytes();
    let good = public.to_bytes();
    assert!(verify_encoded(&SCENARIO.prepared, &good, &proof).unwrap());

    for element in 0..PublicInputs::COUNT {
        for bad in [modulus_le(), [0xff; 32]] {
            let mut encoded = good.clone();
            encoded[element * 32..(element + 1) * 32].copy_from_slice(&bad);
            assert!(matches!(
                verify_encoded(&SCENARIO.prepared, &encoded, &proof),
                Err(Error::NonCanonicalField { .. })
            ));
        }
    }
    let mut wide_scope = good.clone();
    wide_scope[2 * 32 + 2] = 1;
    assert!(matches!(
        PublicInputs::from_bytes(&wide_scope),
        Err(Error::OutOfRange { bits: 16, .. })
    ));
    let mut late = good.clone();
    late[3 * 32 + 8] = 1;
    assert!(matches!(
        PublicInputs::from_bytes(&late),
        Err(Error::OutOfRange { bits: 64, .. })
    ));
    assert!(matches!(
        PublicInputs::from_bytes(&good[..159]),
        Err(Error::WrongLength { expected: 160, .. })
    ));
}

#[test]
fn field_hex_is_strict() {
    let value = Fr::from(123456789u64);
    assert_eq!(field_from_hex("x", &field_to_hex(value)).unwrap(), value);
    let modulus = "0x30644e72e131a029b85045b68181585d2833e84879b9709143e1f593f0000001";
    let too_short = "0x01";
    let no_prefix = &modulus[2..];
    let not_hex = "0xzz644e72e131a029b85045b68181585d2833e84879b9709143e1f593f0000001";
    for bad in [modulus, too_short, no_prefix, not_hex, ""] {
        assert!(
            matches!(
                field_from_hex("x", bad),
                Err(Error::NonCanonicalField { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn documents_round_trip_and_reject_junk() {
    let public = SCENARIO.public(48);
    let witness_document = WitnessDocument::new(&public, &SCENARIO.witness());
    let parsed = WitnessDocument::from_json(&witness_document.to_json()).unwrap();
    assert_eq!(
        parsed.decode(public.challenge).unwrap(),
        (public, SCENARIO.witness())
    );

    let proof = SCENARIO.prove(&public, 12);
    let proof_document = ProofDocument::new(4, &public, &proof);
    let (decoded_public, decoded_proof) = ProofDocument::from_json(&proof_document.to_json())
        .unwrap()
        .decode()
        .unwrap();
    assert_eq!(decoded_public, public);
    assert_eq!(decoded_proof, proof);

    assert!(matches!(
        ProofDocument::from_json("{"),
        Err(Error::MalformedDocument(_))
    ));
    let mut bad_hex = proof_document.clone();
    bad_hex.proof.push('0');
    assert!(matches!(bad_hex.decode(), Err(Error::MalformedProof(_))));
}
