//! The multi-party setup at depth 1 (the smallest circuit, 937 constraints): three contributors
//! per phase make keys that prove and verify, and each way of cheating on the transcript is
//! refused with its own error.

use crate::support::{rng, sample_tree, SCENARIO};
use medvault_circuits::ceremony::Contributor;
use medvault_circuits::{prove, verify, Ceremony, CeremonyError, Error, Phase, Rejection};
use std::sync::LazyLock;

const DEPTH: u32 = 1;
const NAMES: [&str; 3] = ["alice", "bobby", "carol"];
/// Bytes of a compressed G1 point.
const G1: usize = 32;
/// Bytes of a proof of knowledge: two G1 points and one G2 point.
const KNOWLEDGE_PROOF: usize = 2 * G1 + 64;

/// An honest ceremony: alice, bobby and carol contribute to the powers of tau, then to the
/// circuit, with fixed seeds; with the transcript's length after each contribution.
struct Honest {
    ceremony: Ceremony,
    ends: Vec<usize>,
}

static HONEST: LazyLock<Honest> = LazyLock::new(|| {
    let mut ceremony = Ceremony::new(DEPTH).expect("depth 1");
    let mut ends = Vec::new();
    for (phase, seed) in [(Phase::PowersOfTau, 100), (Phase::Circuit, 200)] {
        for (offset, name) in NAMES.iter().enumerate() {
            ceremony
                .contribute(phase, name, &mut rng(seed + offset as u64))
                .expect("honest contribution");
            ends.push(ceremony.transcript().len());
        }
    }
    Honest { ceremony, ends }
});

impl Honest {
    fn transcript(&self) -> &[u8] {
        self.ceremony.transcript()
    }

    /// Contribution `number` (from 1) as it stands in the transcript.
    fn record(&self, number: usize) -> &[u8] {
        let start = if number == 1 {
            6
        } else {
            self.ends[number - 2]
        };
        &self.transcript()[start..self.ends[number - 1]]
    }

    /// The transcript up to and including contribution `number` (0: the header only).
    fn prefix(&self, number: usize) -> Vec<u8> {
        let end = if number == 0 {
            6
        } else {
            self.ends[number - 1]
        };
        self.transcript()[..end].to_vec()
    }
}

fn refused(transcript: &[u8]) -> CeremonyError {
    match Ceremony::from_transcript(transcript) {
        Err(Error::Ceremony(error)) => error,
        Err(other) => panic!("expected a ceremony error, got {other}"),
        Ok(_) => panic!("the transcript was accepted"),
    }
}

#[test]
fn three_contributors_make_keys_that_prove_and_verify() {
    let verified = Ceremony::from_transcript(HONEST.transcript()).unwrap();
    let phases: Vec<(&str, Phase)> = verified
        .contributors()
        .iter()
        .map(|Contributor { name, phase, .. }| (name.as_str(), *phase))
        .collect();
    let expected: Vec<(&str, Phase)> = [Phase::PowersOfTau, Phase::Circuit]
        .into_iter()
        .flat_map(|phase| NAMES.map(|name| (name, phase)))
        .collect();
    assert_eq!(phases, expected);
    assert_eq!(verified.contributors(), HONEST.ceremony.contributors());
    assert_eq!(
        verified.transcript_hash(),
        HONEST.ceremony.transcript_hash()
    );

    let (proving_key, verifying_key) = verified.keys().unwrap();
    // The derived keys have exactly the shape key files are checked against.
    let reloaded = medvault_circuits::ConsentProvingKey::from_bytes(&proving_key.to_bytes());
    assert!(reloaded.is_ok());
    let tree = sample_tree(DEPTH);
    let public = SCENARIO.public_in(&tree, 31);
    let proof = prove(
        &proving_key,
        &public,
        &SCENARIO.witness_in(&tree),
        &mut rng(3),
    )
    .unwrap();
    let prepared = verifying_key.prepare();
    assert!(verify(&prepared, &public, &proof).unwrap());
    let other_challenge = SCENARIO.public_in(&tree, 32);
    assert!(!verify(&prepared, &other_challenge, &proof).unwrap());
}

#[test]
fn a_contribution_that_does_not_extend_its_predecessor_is_refused() {
    // bobby's proofs of knowledge, over points computed from another secret: the proofs hold
    // for the transcript before them, but the points did not move by the proven secret.
    let mut fork = Ceremony::from_transcript(&HONEST.prefix(1)).unwrap();
    fork.contribute(Phase::PowersOfTau, "bobby", &mut rng(999))
        .unwrap();
    let forged_points = &fork.transcript()[HONEST.ends[0]..];
    let honest = HONEST.record(2);
    let mut transcript = HONEST.prefix(1);
    transcript.extend(&forged_points[..forged_points.len() - 3 * KNOWLEDGE_PROOF]);
    transcript.extend(&honest[honest.len() - 3 * KNOWLEDGE_PROOF..]);
    assert!(matches!(
        refused(&transcript),
        CeremonyError::Rejected {
            contribution: 2,
            phase: Phase::PowersOfTau,
            reason: Rejection::DoesNotExtend,
            ..
        }
    ));
}

#[test]
fn a_tampered_point_is_refused() {
    // In carol's circuit contribution, one H query point replaced by another valid point.
    let mut transcript = HONEST.transcript().to_vec();
    let h_query = HONEST.ends[4] + 2 + "carol".len() + G1 + 64;
    let (third, fourth) = (h_query + 3 * G1, h_query + 4 * G1);
    let replacement = transcript[fourth..fourth + G1].to_vec();
    transcript[third..third + G1].copy_from_slice(&replacement);
    assert!(matches!(
        refused(&transcript),
        CeremonyError::Rejected {
            contribution: 6,
            phase: Phase::Circuit,
            reason: Rejection::InconsistentPoints("H query"),
            ..
        }
    ));
    // A point whose bytes are not a point on the curve at all.
    let mut transcript = HONEST.transcript().to_vec();
    transcript[third..third + G1].fill(0xff);
    assert!(matches!(refused(&transcript), CeremonyError::Malformed(_)));
}

#[test]
fn a_reused_contribution_is_refused() {
    let mut replayed_tau = HONEST.prefix(3);
    replayed_tau.extend(HONEST.record(1));
    assert!(matches!(
        refused(&replayed_tau),
        CeremonyError::Reused {
            contribution: 4,
            earlier: 1
        }
    ));
    let mut replayed_circuit = HONEST.transcript().to_vec();
    replayed_circuit.extend(HONEST.record(5));
    assert!(matches!(
        refused(&replayed_circuit),
        CeremonyError::Reused {
            contribution: 7,
            earlier: 5
        }
    ));
}

#[test]
fn a_missing_contribution_is_refused() {
    // bobby's powers-of-tau contribution taken out: carol's proofs were made on a transcript
    // that held it.
    let mut without_bobby = HONEST.prefix(1);
    without_bobby.extend(HONEST.record(3));
    assert!(matches!(
        refused(&without_bobby),
        CeremonyError::Rejected {
            contribution: 2,
            reason: Rejection::InvalidKnowledgeProof,
            ..
        }
    ));
    // No circuit contribution: delta would be 1, so there are no keys.
    let tau_only = Ceremony::from_transcript(&HONEST.prefix(3)).unwrap();
    assert!(matches!(
        tau_only.keys(),
        Err(Error::Ceremony(CeremonyError::MissingContribution(
            Phase::Circuit
        )))
    ));
    // No powers-of-tau contribution: the circuit phase cannot begin.
    let mut empty = Ceremony::new(DEPTH).unwrap();
    assert!(matches!(
        empty.contribute(Phase::Circuit, "alice", &mut rng(5)),
        Err(Error::Ceremony(CeremonyError::MissingContribution(
            Phase::PowersOfTau
        )))
    ));
    let mut circuit_first = HONEST.prefix(0);
    circuit_first.extend(HONEST.record(4));
    assert!(matches!(
        refused(&circuit_first),
        CeremonyError::MissingContribution(Phase::PowersOfTau)
    ));
}

#[test]
fn a_transcript_cut_short_is_refused() {
    let transcript = HONEST.transcript();
    for cut in [
        0,
        5,
        7,
        HONEST.ends[0] - 1,
        HONEST.ends[2] + 1,
        transcript.len() - 1,
    ] {
        assert!(
            matches!(refused(&transcript[..cut]), CeremonyError::Truncated { .. }),
            "cut at {cut}"
        );
    }
}

#[test]
fn phases_and_names_are_enforced() {
    let mut ceremony = Ceremony::from_transcript(&HONEST.prefix(4)).unwrap();
    assert!(matches!(
        ceremony.contribute(Phase::PowersOfTau, "dave", &mut rng(6)),
        Err(Error::Ceremony(CeremonyError::PhaseClosed))
    ));
    for name in ["", &"x".repeat(65)] {
        assert!(matches!(
            ceremony.contribute(Phase::Circuit, name, &mut rng(7)),
            Err(Error::Ceremony(CeremonyError::InvalidName))
        ));
    }
    let mut not_a_transcript = HONEST.transcript().to_vec();
    not_a_transcript[0] = b'X';
    assert!(matches!(
        refused(&not_a_transcript),
        CeremonyError::Malformed(_)
    ));
}
