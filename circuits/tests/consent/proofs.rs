//! The real prover at depth 4: an honest proof verifies, and changing any part of the statement
//! makes it fail.

use crate::support::{rng, NOW, SCENARIO};
use medvault_circuits::{prove, verify, ConsentProvingKey, Error, Fr, Scope, StatementViolation};

#[test]
fn honest_proof_verifies() {
    let public = SCENARIO.public(11);
    let proof = SCENARIO.prove(&public, 2);
    assert!(verify(&SCENARIO.prepared, &public, &proof).unwrap());
}

#[test]
fn fixed_base_tables_make_the_same_proof_as_arkworks() {
    let public = SCENARIO.public(18);
    let without_tables = ConsentProvingKey::from_bytes(&SCENARIO.proving_key.to_bytes()).unwrap();
    for seed in [20, 21, 22] {
        let ours = prove(
            &SCENARIO.proving_key,
            &public,
            &SCENARIO.witness(),
            &mut rng(seed),
        );
        let arkworks = prove(
            &without_tables,
            &public,
            &SCENARIO.witness(),
            &mut rng(seed),
        );
        assert_eq!(ours.unwrap(), arkworks.unwrap());
    }
}

#[test]
fn proof_fails_for_any_other_statement() {
    let public = SCENARIO.public(12);
    let proof = SCENARIO.prove(&public, 3);
    let others = [
        (
            "another root",
            medvault_circuits::PublicInputs {
                root: Fr::from(5u8),
                ..public
            },
        ),
        (
            "another patient",
            medvault_circuits::PublicInputs {
                patient_pseudonym: Fr::from(4243u64),
                ..public
            },
        ),
        (
            "a wider scope",
            medvault_circuits::PublicInputs {
                required_scope: Scope::READ | Scope::RESEARCH,
                ..public
            },
        ),
        (
            "a changed now",
            medvault_circuits::PublicInputs {
                now: NOW + 1,
                ..public
            },
        ),
        (
            "a later now, past expiry",
            medvault_circuits::PublicInputs {
                now: NOW + 7200,
                ..public
            },
        ),
        (
            "a changed challenge",
            medvault_circuits::PublicInputs {
                challenge: Fr::from(13u8),
                ..public
            },
        ),
    ];
    for (what, other) in others {
        assert!(
            !verify(&SCENARIO.prepared, &other, &proof).unwrap(),
            "{what}"
        );
    }
}

#[test]
fn prover_refuses_a_scope_wider_than_granted() {
    let public = medvault_circuits::PublicInputs {
        required_scope: Scope::RESEARCH,
        ..SCENARIO.public(14)
    };
    let refused = prove(
        &SCENARIO.proving_key,
        &public,
        &SCENARIO.witness(),
        &mut rng(4),
    );
    assert!(matches!(
        refused,
        Err(Error::Unsatisfied(StatementViolation::ScopeNotCovered))
    ));
}

#[test]
fn prover_refuses_an_expired_grant() {
    let public = medvault_circuits::PublicInputs {
        now: crate::support::EXPIRY,
        ..SCENARIO.public(15)
    };
    let refused = prove(
        &SCENARIO.proving_key,
        &public,
        &SCENARIO.witness(),
        &mut rng(5),
    );
    assert!(matches!(
        refused,
        Err(Error::Unsatisfied(StatementViolation::Expired))
    ));
}

#[test]
fn revoked_grant_cannot_be_proven_against_the_new_root() {
    let public = SCENARIO.public(16);
    let proof = SCENARIO.prove(&public, 6);
    let mut revoked = SCENARIO.tree.clone();
    revoked.revoke(SCENARIO.doctor_leaf_index).unwrap();
    let after = medvault_circuits::PublicInputs {
        root: revoked.root(),
        ..public
    };
    assert!(!verify(&SCENARIO.prepared, &after, &proof).unwrap());
    for witness in [SCENARIO.witness(), SCENARIO.witness_in(&revoked)] {
        let refused = prove(&SCENARIO.proving_key, &after, &witness, &mut rng(7));
        assert!(matches!(
            refused,
            Err(Error::Unsatisfied(StatementViolation::NotInTree))
        ));
    }
}

#[test]
fn wrong_depth_path_is_a_typed_error() {
    let mut witness = SCENARIO.witness();
    witness.path.siblings.pop();
    let refused = prove(
        &SCENARIO.proving_key,
        &SCENARIO.public(17),
        &witness,
        &mut rng(8),
    );
    assert!(matches!(
        refused,
        Err(Error::PathLength {
            expected: 4,
            actual: 3
        })
    ));
}
