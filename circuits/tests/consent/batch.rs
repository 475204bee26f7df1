//! Batch verification names the bad proof among many.

use crate::support::{rng, SCENARIO};
use medvault_circuits::prove::rerandomize;
use medvault_circuits::{batch_verify, ConsentProof, Fr, PublicInputs};

/// 64 valid proofs: 8 statements with distinct challenges, each proven once and re-randomized.
fn batch_of_64() -> Vec<(PublicInputs, ConsentProof)> {
    let mut rng = rng(31);
    (0..8u64)
        .flat_map(|statement| {
            let public = SCENARIO.public(100 + statement);
            let proof = SCENARIO.prove(&public, 200 + statement);
            (0..8)
                .map(|_| {
                    (
                        public,
                        rerandomize(&SCENARIO.verifying_key, &proof, &mut rng),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn batch_of_valid_proofs_passes() {
    let batch = batch_of_64();
    assert!(batch_verify(&SCENARIO.prepared, &batch, &mut rng(32)).all_valid());
    assert!(batch_verify(&SCENARIO.prepared, &[], &mut rng(33)).all_valid());
}

#[test]
fn batch_with_one_bad_proof_names_it() {
    let mut batch = batch_of_64();
    batch[37].0.challenge = Fr::from(999u64);
    let verdict = batch_verify(&SCENARIO.prepared, &batch, &mut rng(34));
    assert_eq!(verdict.rejected, vec![37]);
}

#[test]
fn batch_names_several_bad_proofs() {
    let mut batch = batch_of_64();
    let first = batch[0].1.clone();
    batch[0].1 = batch[63].1.clone();
    batch[63].1 = first;
    batch[5].1 = batch[60].1.clone();
    let verdict = batch_verify(&SCENARIO.prepared, &batch, &mut rng(35));
    assert_eq!(verdict.rejected, vec![0, 5, 63]);
}
