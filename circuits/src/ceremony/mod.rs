//! The multi-party setup of the consent circuit's keys (MISSION.md decision 5): no single
//! member hospital knows the trapdoor, so none can forge a consent proof.
//!
//! Two phases, in the style of Bowe, Gabizon and Miers (BGM17), as the Zcash powers-of-tau
//! ceremony, bellman's `phase2` and snarkjs implement them:
//!
//! 1. [`Phase::PowersOfTau`]: each contributor multiplies `τ`, `α` and `β` by secrets of their
//!    own ([`powers_of_tau`]).
//! 2. [`Phase::Circuit`]: the keys of the circuit are derived from the final powers of tau (with
//!    `δ = 1`, so anyone can recompute them), and each contributor multiplies `δ` by a secret of
//!    their own ([`circuit_phase`]).
//!
//! Every contribution carries a proof of knowledge of its secrets bound to the hash of the
//! transcript before it ([`knowledge`]), and the verifier checks with pairings that it extends
//! its predecessor. The keys are sound if at least one contributor of each phase was honest and
//! destroyed their secrets: the trapdoor is the product of all contributors' secrets.
//!
//! # Transcript
//!
//! One file, appended to by each contribution: `MVCR`, format version 1, the tree depth (1
//! byte), then the contributions, each: its phase (1 = powers of tau, 2 = circuit), the length
//! of the contributor's name (1 byte, 1 to 64) and the name in UTF-8, then its points
//! (compressed arkworks encodings, counts fixed by the depth; see the phase modules). All phase-1
//! contributions come before all phase-2 ones. The transcript's SHA3-256 is what gets anchored.

mod circuit_phase;
mod knowledge;
mod powers_of_tau;

use crate::error::Error;
use crate::setup::{circuit_shape, CircuitShape, ConsentProvingKey, ConsentVerifyingKey};
use ark_bn254::{Bn254, G1Affine};
use ark_groth16::ProvingKey;
use circuit_phase::{initial_key, DeltaContribution};
use knowledge::{sha3, Reader};
use powers_of_tau::{PowersOfTau, TauContribution};
use rand::{CryptoRng, RngCore};
use std::sync::Arc;
use thiserror::Error;

const MAGIC: &[u8; 4] = b"MVCR";
const FORMAT_VERSION: u8 = 1;
const HEADER_LEN: usize = MAGIC.len() + 2;
/// File name of the transcript's SHA3-256 (hex) that `medvault keys ceremony finalize` writes
/// beside the keys, to anchor.
pub const TRANSCRIPT_HASH_FILE: &str = "ceremony_transcript.sha3-256";
/// The longest contributor name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// The two phases of the ceremony.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Phase 1: powers of `τ`, with `α` and `β`; independent of the circuit's matrices.
    PowersOfTau,
    /// Phase 2: `δ` of the consent circuit's keys.
    Circuit,
}

impl Phase {
    fn tag(self) -> u8 {
        match self {
            Phase::PowersOfTau => 1,
            Phase::Circuit => 2,
        }
    }

    fn from_tag(tag: u8) -> Result<Self, CeremonyError> {
        match tag {
            1 => Ok(Phase::PowersOfTau),
            2 => Ok(Phase::Circuit),
            _ => Err(CeremonyError::Malformed(format!(
                "unknown contribution kind {tag}"
            ))),
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::PowersOfTau => "powers of tau",
            Phase::Circuit => "circuit",
        })
    }
}

/// Why a contribution does not extend its predecessor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The proof of knowledge of the secret does not verify against the transcript before it:
    /// it is invalid, or it was made on another transcript (a contribution before it is missing
    /// or was changed).
    #[error("its proof of knowledge does not verify against the transcript before it")]
    InvalidKnowledgeProof,
    /// The parameters did not move by the secret the proof is about: they were not derived from
    /// the previous contribution's.
    #[error("it does not extend the previous contribution")]
    DoesNotExtend,
    /// A point is not what the rest of the contribution implies (a tampered point).
    #[error("its {0} points are inconsistent")]
    InconsistentPoints(&'static str),
}

/// Why a ceremony transcript or a contribution to it was refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CeremonyError {
    /// The transcript ends in the middle of something.
    #[error("the transcript is cut short: it ends inside {what} (at byte {at})")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// The transcript's length.
        at: usize,
    },
    /// The transcript is not one (bad magic, version, kind or point encoding).
    #[error("malformed transcript: {0}")]
    Malformed(String),
    /// A contributor name is empty, longer than [`MAX_NAME_LEN`] bytes or not UTF-8.
    #[error("a contributor name must be 1 to {MAX_NAME_LEN} bytes of UTF-8")]
    InvalidName,
    /// A contribution does not extend its predecessor.
    #[error("contribution {contribution} ({name}, {phase} phase) is refused: {reason}")]
    Rejected {
        /// Its position in the transcript, from 1.
        contribution: usize,
        /// Its contributor's name.
        name: String,
        /// Its phase.
        phase: Phase,
        /// What is wrong with it.
        reason: Rejection,
    },
    /// A contribution repeats the secret of an earlier one (a replayed contribution).
    #[error("contribution {contribution} reuses the secret of contribution {earlier}")]
    Reused {
        /// Its position in the transcript, from 1.
        contribution: usize,
        /// The earlier contribution it copies.
        earlier: usize,
    },
    /// A phase has no contribution, so its secret is publicly known (1).
    #[error("the {0} phase has no contribution")]
    MissingContribution(Phase),
    /// A powers-of-tau contribution after the circuit phase began.
    #[error("the powers-of-tau phase is closed: the circuit phase has begun")]
    PhaseClosed,
}

/// Who contributed to which phase, in transcript order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contributor {
    /// The name the contributor gave.
    pub name: String,
    /// The phase contributed to.
    pub phase: Phase,
    /// SHA3-256 of the contribution as it stands in the transcript: a contributor notes it when
    /// contributing and finds it again in the verified transcript.
    pub hash: [u8; 32],
}

/// A verified ceremony transcript and the state it leads to.
#[derive(Debug, Clone)]
pub struct Ceremony {
    depth: u32,
    shape: Arc<CircuitShape>,
    transcript: Vec<u8>,
    /// Hash chain over the transcript: what the next contribution's proofs are bound to.
    binding: [u8; 32],
    powers: PowersOfTau,
    /// The circuit's keys, once the circuit phase has begun.
    keys: Option<ProvingKey<Bn254>>,
    contributors: Vec<Contributor>,
    /// The points that identify each contribution's secrets, with the contribution's position.
    fingerprints: Vec<(G1Affine, usize)>,
}

/// The length byte of a contributor's name: 1 to [`MAX_NAME_LEN`] bytes.
fn name_length(name: &str) -> Result<u8, CeremonyError> {
    u8::try_from(name.len())
        .ok()
        .filter(|len| (1..=MAX_NAME_LEN).contains(&usize::from(*len)))
        .ok_or(CeremonyError::InvalidName)
}

/// A decoded contribution, before it is checked.
enum Contribution {
    // Boxed: their proofs of knowledge make them hundreds of bytes each.
    Tau(Box<TauContribution>),
    Circuit(Box<DeltaContribution>),
}

impl Ceremony {
    /// A new ceremony for the consent circuit of a tree of `depth`, with no contribution yet.
    pub fn new(depth: u32) -> Result<Self, Error> {
        let shape = circuit_shape(depth)?;
        let mut transcript = MAGIC.to_vec();
        transcript.extend([FORMAT_VERSION, depth as u8]);
        Ok(Ceremony {
            depth,
            powers: PowersOfTau::initial(shape.domain_size),
            shape,
            binding: sha3(&[b"medvault ceremony", &transcript]),
            transcript,
            keys: None,
            contributors: Vec::new(),
            fingerprints: Vec::new(),
        })
    }

    /// Reads and verifies a whole transcript: every contribution's proofs of knowledge and its
    /// extension of its predecessor, checked with pairings, and the circuit phase's initial
    /// keys recomputed from the powers of tau.
    pub fn from_transcript(bytes: &[u8]) -> Result<Self, Error> {
        let mut reader = Reader::new(bytes);
        let header = reader.take("the header", HEADER_LEN)?;
        if &header[..MAGIC.len()] != MAGIC {
            return Err(
                CeremonyError::Malformed("not a ceremony transcript (bad magic)".into()).into(),
            );
        }
        if header[4] != FORMAT_VERSION {
            return Err(CeremonyError::Malformed("unknown format version".into()).into());
        }
        let mut ceremony = Ceremony::new(u32::from(header[5]))?;
        while !reader.is_at_end() {
            let start = reader.offset();
            let phase = Phase::from_tag(reader.byte("a contribution's kind")?)?;
            let name_len = usize::from(reader.byte("a contributor's name")?);
            let name = std::str::from_utf8(reader.take("a contributor's name", name_len)?)
                .map_err(|_| CeremonyError::InvalidName)?
                .to_owned();
            let contribution = match phase {
                Phase::PowersOfTau => Contribution::Tau(Box::new(TauContribution::decode(
                    &mut reader,
                    ceremony.shape.domain_size,
                )?)),
                Phase::Circuit => {
                    let keys = ceremony.circuit_keys()?;
                    Contribution::Circuit(Box::new(DeltaContribution::decode(&mut reader, keys)?))
                }
            };
            ceremony.accept(name, contribution, reader.since(start))?;
        }
        Ok(ceremony)
    }

    /// Adds one contribution with fresh secrets from `rng` to `phase`. The secrets exist only
    /// during this call; run it on a machine you trust and let the process end.
    pub fn contribute(
        &mut self,
        phase: Phase,
        name: &str,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<(), Error> {
        let contribution = match phase {
            Phase::PowersOfTau => {
                if self.keys.is_some() {
                    return Err(CeremonyError::PhaseClosed.into());
                }
                Contribution::Tau(Box::new(self.powers.contribute(&self.binding, rng)))
            }
            Phase::Circuit => {
                let binding = self.binding;
                Contribution::Circuit(Box::new(DeltaContribution::create(
                    self.circuit_keys()?,
                    &binding,
                    rng,
                )))
            }
        };
        let mut record = vec![phase.tag(), name_length(name)?];
        record.extend(name.as_bytes());
        match &contribution {
            Contribution::Tau(tau) => tau.encode(&mut record),
            Contribution::Circuit(delta) => delta.encode(&mut record),
        }
        self.accept(name.to_owned(), contribution, &record)?;
        Ok(())
    }

    /// The circuit phase's current keys, derived from the powers of tau when it begins.
    fn circuit_keys(&mut self) -> Result<&ProvingKey<Bn254>, CeremonyError> {
        if self.keys.is_none() {
            if self.contributed_to(Phase::PowersOfTau) == 0 {
                return Err(CeremonyError::MissingContribution(Phase::PowersOfTau));
            }
            self.keys = Some(initial_key(&self.powers, &self.shape, &self.binding)?);
        }
        self.keys
            .as_ref()
            .ok_or(CeremonyError::MissingContribution(Phase::PowersOfTau))
    }

    fn contributed_to(&self, phase: Phase) -> usize {
        self.contributors
            .iter()
            .filter(|contributor| contributor.phase == phase)
            .count()
    }

    /// Checks `contribution` (encoded as `record`) against the current state and, if it
    /// extends it, makes it the current state.
    fn accept(
        &mut self,
        name: String,
        contribution: Contribution,
        record: &[u8],
    ) -> Result<(), CeremonyError> {
        name_length(&name)?;
        let position = self.contributors.len() + 1;
        let fingerprints = match &contribution {
            Contribution::Tau(tau) => tau.fingerprints().to_vec(),
            Contribution::Circuit(delta) => vec![delta.fingerprint()],
        };
        for fingerprint in &fingerprints {
            if let Some((_, earlier)) = self
                .fingerprints
                .iter()
                .find(|(seen, _)| seen == fingerprint)
            {
                return Err(CeremonyError::Reused {
                    contribution: position,
                    earlier: *earlier,
                });
            }
        }
        let next_binding = sha3(&[&self.binding, record]);
        let rejected = |phase, reason| CeremonyError::Rejected {
            contribution: position,
            name: name.clone(),
            phase,
            reason,
        };
        let phase = match contribution {
            Contribution::Tau(tau) => {
                if self.keys.is_some() {
                    return Err(CeremonyError::PhaseClosed);
                }
                tau.check_extends(&self.powers, &self.binding, next_binding)
                    .map_err(|reason| rejected(Phase::PowersOfTau, reason))?;
                self.powers = tau.next;
                Phase::PowersOfTau
            }
            Contribution::Circuit(delta) => {
                let binding = self.binding;
                let keys = self.circuit_keys()?;
                delta
                    .check_extends(keys, &binding, next_binding)
                    .map_err(|reason| rejected(Phase::Circuit, reason))?;
                if let Some(keys) = self.keys.as_mut() {
                    delta.apply(keys);
                }
                Phase::Circuit
            }
        };
        self.transcript.extend_from_slice(record);
        self.binding = next_binding;
        self.fingerprints.extend(
            fingerprints
                .into_iter()
                .map(|fingerprint| (fingerprint, position)),
        );
        self.contributors.push(Contributor {
            name,
            phase,
            hash: sha3(&[record]),
        });
        Ok(())
    }

    /// The depth of the consent tree the ceremony is for.
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// The transcript so far: what the next contributor receives.
    pub fn transcript(&self) -> &[u8] {
        &self.transcript
    }

    /// SHA3-256 of the transcript, to anchor on the chain beside the verifying key.
    pub fn transcript_hash(&self) -> [u8; 32] {
        sha3(&[&self.transcript])
    }

    /// Everyone who contributed, in order.
    pub fn contributors(&self) -> &[Contributor] {
        &self.contributors
    }

    /// The final keys. Both phases need at least one contribution: with none, the phase's
    /// secret is 1 and anyone could forge proofs.
    pub fn keys(&self) -> Result<(ConsentProvingKey, ConsentVerifyingKey), Error> {
        for phase in [Phase::PowersOfTau, Phase::Circuit] {
            if self.contributed_to(phase) == 0 {
                return Err(CeremonyError::MissingContribution(phase).into());
            }
        }
        let keys = self
            .keys
            .as_ref()
            .ok_or(CeremonyError::MissingContribution(Phase::Circuit))?;
        let proving_key =
            ConsentProvingKey::from_ceremony(self.depth, keys.clone(), self.shape.clone());
        let verifying_key = proving_key.verifying_key();
        Ok((proving_key, verifying_key))
    }
}
