//! The circuit's size by depth and its refusal of witnesses that break the statement.

use crate::support::{NOW, SCENARIO};
use ark_relations::r1cs::{ConstraintSynthesizer, ConstraintSystem};
use medvault_circuits::circuit::{consent_circuit_size, ConsentCircuit};
use medvault_circuits::{ConsentWitness, Fr, PublicInputs, Scope};

#[test]
fn constraint_count_follows_the_documented_formula() {
    for depth in [4, 10, 16] {
        let size = consent_circuit_size(depth).unwrap();
        assert_eq!(
            size.constraints,
            633 + 304 * depth as usize,
            "depth {depth}"
        );
        assert_eq!(size.public_inputs, 5);
    }
    // MISSION.md's bar for a tree of 2^20 leaves (depth 10 of the 4-ary tree).
    assert!(consent_circuit_size(10).unwrap().constraints <= 4_000);
}

/// Whether the circuit for this statement and the scenario's witness is satisfied; a witness
/// the synthesizer cannot even express counts as unsatisfied.
fn satisfied(public: PublicInputs) -> bool {
    satisfied_with(public, SCENARIO.witness())
}

fn satisfied_with(public: PublicInputs, witness: ConsentWitness) -> bool {
    let cs = ConstraintSystem::<Fr>::new_ref();
    let circuit = ConsentCircuit { public, witness };
    circuit.generate_constraints(cs.clone()).is_ok() && cs.is_satisfied().unwrap()
}

#[test]
fn only_the_true_statement_satisfies_the_circuit() {
    let public = SCENARIO.public(21);
    assert!(satisfied(public));
    assert!(!satisfied(PublicInputs {
        required_scope: Scope::RESEARCH,
        ..public
    }));
    assert!(!satisfied(PublicInputs {
        required_scope: Scope::from_bits(1 << 15),
        ..public
    }));
    assert!(!satisfied(PublicInputs {
        now: crate::support::EXPIRY,
        ..public
    }));
    assert!(!satisfied(PublicInputs {
        root: Fr::from(1u8),
        ..public
    }));
    assert!(!satisfied(PublicInputs {
        patient_pseudonym: Fr::from(1u8),
        ..public
    }));
    assert!(satisfied(PublicInputs {
        now: NOW - 1_000_000,
        ..public
    }));
}

#[test]
fn the_path_must_place_the_leaf_where_it_is() {
    let public = SCENARIO.public(21);
    let honest = SCENARIO.witness();
    for leaf_index in [0, 2, 3, honest.path.leaf_index + 4] {
        let mut moved = honest.clone();
        moved.path.leaf_index = leaf_index;
        assert!(!satisfied_with(public, moved), "leaf index {leaf_index}");
    }
    let mut reordered = honest.clone();
    reordered.path.siblings[0].swap(0, 1);
    assert!(!satisfied_with(public, reordered));
}
