//! The circuit's size by depth and its refusal of witnesses that break the statement.

use crate::support::{NOW, SCENARIO};
use ark_relations::r1cs::{ConstraintSynthesizer, ConstraintSystem};
use medvault_circuits::circuit::{consent_circuit_size, ConsentCircuit};
use medvault_circuits::{Fr, PublicInputs, Scope};

#[test]
fn constraint_count_follows_the_documented_formula() {
    for depth in [4, 10, 20] {
        let size = consent_circuit_size(depth).unwrap();
        assert_eq!(
            size.constraints,
            633 + 242 * depth as usize,
            "depth {depth}"
        );
        assert_eq!(size.public_inputs, 5);
    }
    assert!(consent_circuit_size(20).unwrap().constraints <= 5_800);
}

/// Whether the circuit for this statement and the scenario's witness is satisfied; a witness
/// the synthesizer cannot even express counts as unsatisfied.
fn satisfied(public: PublicInputs) -> bool {
    let cs = ConstraintSystem::<Fr>::new_ref();
    let circuit = ConsentCircuit {
        public,
        witness: SCENARIO.witness(),
    };
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
