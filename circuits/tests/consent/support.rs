//! One consent scenario shared by the tests: a depth-4 tree with three grants for one patient,
//! keys generated once from a fixed seed, and helpers to prove against it.

use medvault_circuits::{
    grantee_commitment, prove, setup, ConsentProof, ConsentProvingKey, ConsentTree,
    ConsentVerifyingKey, ConsentWitness, Fr, Grant, PreparedConsentKey, PublicInputs, Scope,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::sync::LazyLock;

pub const DEPTH: u32 = 4;
pub const NOW: u64 = 1_700_000_000;
pub const EXPIRY: u64 = NOW + 3600;

pub struct Scenario {
    /// With its fixed-base tables, so that the tests run the crate's own prover.
    pub proving_key: ConsentProvingKey,
    pub verifying_key: ConsentVerifyingKey,
    pub prepared: PreparedConsentKey,
    pub tree: ConsentTree,
    pub patient: Fr,
    pub doctor_secret: Fr,
    pub doctor_salt: Fr,
    /// The doctor's grant: READ | WRITE until EXPIRY.
    pub doctor_leaf_index: u64,
}

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

pub static SCENARIO: LazyLock<Scenario> = LazyLock::new(|| {
    let (proving_key, verifying_key) = setup(DEPTH, &mut rng(1)).expect("setup at depth 4");
    let prepared = verifying_key.prepare();
    Scenario {
        proving_key: proving_key.with_tables(),
        verifying_key,
        prepared,
        tree: sample_tree(DEPTH),
        patient: Fr::from(PATIENT),
        doctor_secret: Fr::from(DOCTOR_SECRET),
        doctor_salt: Fr::from(DOCTOR_SALT),
        doctor_leaf_index: 1,
    }
});

const PATIENT: u64 = 4242;
const DOCTOR_SECRET: u64 = 0xd0c7_0123;
const DOCTOR_SALT: u64 = 99;

/// A tree of `depth` with three grants for the patient; the doctor's is the second (index 1).
pub fn sample_tree(depth: u32) -> ConsentTree {
    let patient = Fr::from(PATIENT);
    let mut tree = ConsentTree::new(depth).expect("supported depth");
    let other = Grant {
        grantee_commitment: grantee_commitment(Fr::from(7u64)),
        patient_pseudonym: patient,
        scope: Scope::RESEARCH,
        expiry: EXPIRY,
        salt: Fr::from(1u64),
    };
    tree.insert(other.leaf()).expect("room");
    let doctor = Grant {
        grantee_commitment: grantee_commitment(Fr::from(DOCTOR_SECRET)),
        patient_pseudonym: patient,
        scope: Scope::READ | Scope::WRITE,
        expiry: EXPIRY,
        salt: Fr::from(DOCTOR_SALT),
    };
    tree.insert(doctor.leaf()).expect("room");
    tree.insert(
        Grant {
            salt: Fr::from(2u64),
            ..other
        }
        .leaf(),
    )
    .expect("room");
    tree
}

impl Scenario {
    /// The doctor's witness in `tree`.
    pub fn witness_in(&self, tree: &ConsentTree) -> ConsentWitness {
        ConsentWitness {
            grantee_secret: self.doctor_secret,
            granted_scope: Scope::READ | Scope::WRITE,
            expiry: EXPIRY,
            salt: self.doctor_salt,
            path: tree.path(self.doctor_leaf_index).expect("the leaf exists"),
        }
    }

    pub fn witness(&self) -> ConsentWitness {
        self.witness_in(&self.tree)
    }

    /// A READ request at NOW with the given challenge.
    pub fn public(&self, challenge: u64) -> PublicInputs {
        self.public_in(&self.tree, challenge)
    }

    /// A READ request at NOW with the given challenge, against `tree`'s root.
    pub fn public_in(&self, tree: &ConsentTree, challenge: u64) -> PublicInputs {
        PublicInputs {
            root: tree.root(),
            patient_pseudonym: self.patient,
            required_scope: Scope::READ,
            now: NOW,
            challenge: Fr::from(challenge),
        }
    }

    pub fn prove(&self, public: &PublicInputs, seed: u64) -> ConsentProof {
        prove(&self.proving_key, public, &self.witness(), &mut rng(seed)).expect("honest proof")
    }
}
