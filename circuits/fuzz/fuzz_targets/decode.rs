//! Everything medvault-circuits decodes from outside: proofs, public inputs, verifying and
//! proving keys, consent trees, ceremony transcripts and the JSON documents (whose witness holds
//! the 4-ary tree's authentication path). The first byte picks the decoder; none
//! may panic, hang or allocate without bound, whatever the rest holds.

#![no_main]

use libfuzzer_sys::fuzz_target;
use medvault_circuits::encoding::{ProofDocument, WitnessDocument};
use medvault_circuits::field::field_from_hex;
use medvault_circuits::{
    verify_encoded, Ceremony, ConsentProof, ConsentProvingKey, ConsentTree, ConsentVerifyingKey,
    PreparedConsentKey, PublicInputs,
};
use std::sync::LazyLock;

/// A fixed depth-1 key pair from a deterministic (insecure, fuzzing-only) setup, so that proofs
/// and public inputs are also run through verification, and real keys can be patched.
static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    use medvault_circuits::setup;
    let mut rng = <rand_chacha::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(0);
    let (proving_key, verifying_key) = setup(1, &mut rng).expect("setup at depth 1");
    Keys {
        proving: proving_key.to_bytes(),
        verifying: verifying_key.to_bytes(),
        prepared: verifying_key.prepare(),
    }
});

struct Keys {
    proving: Vec<u8>,
    verifying: Vec<u8>,
    prepared: PreparedConsentKey,
}

/// A depth-1 ceremony transcript with one contribution per phase, from a fixed seed, to patch.
static TRANSCRIPT: LazyLock<Vec<u8>> = LazyLock::new(|| {
    use medvault_circuits::Phase;
    let mut rng = <rand_chacha::ChaCha20Rng as rand::SeedableRng>::seed_from_u64(1);
    let mut ceremony = Ceremony::new(1).expect("depth 1");
    for phase in [Phase::PowersOfTau, Phase::Circuit] {
        ceremony
            .contribute(phase, "fuzz", &mut rng)
            .expect("honest contribution");
    }
    ceremony.transcript().to_vec()
});

/// `key` with bytes of `edit` written over it: the first two bytes of `edit` pick the position,
/// the rest is written there, so the fuzzer reaches the checks behind the layout checks.
fn patched(key: &[u8], edit: &[u8]) -> Vec<u8> {
    let mut key = key.to_vec();
    if let [high, low, patch @ ..] = edit {
        // Scaled to the length, so that every part of a transcript longer than 64 KiB is
        // reachable too.
        let at = usize::from(u16::from_le_bytes([*low, *high])) * key.len() / 65_536;
        let end = (at + patch.len()).min(key.len());
        key[at..end].copy_from_slice(&patch[..end - at]);
    }
    key
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 10 {
        0 => {
            let _ = ConsentProof::from_bytes(rest);
        }
        1 => {
            let _ = PublicInputs::from_bytes(rest);
        }
        2 => {
            let split = rest.len().min(PublicInputs::ENCODED_LEN);
            let _ = verify_encoded(&KEYS.prepared, &rest[..split], &rest[split..]);
        }
        3 => {
            let _ = ConsentVerifyingKey::from_bytes(rest);
            let _ = ConsentVerifyingKey::from_bytes(&patched(&KEYS.verifying, rest));
        }
        4 => {
            // Validating a whole proving key is slow; patch one only now and then.
            if rest.first().is_some_and(|byte| *byte == 0) {
                let _ = ConsentProvingKey::from_bytes(&patched(&KEYS.proving, &rest[1..]));
            }
        }
        5 => {
            let _ = ConsentProvingKey::from_bytes(rest);
        }
        6 => {
            let _ = ConsentTree::from_bytes(rest);
        }
        8 => {
            let _ = Ceremony::from_transcript(rest);
        }
        9 => {
            // A whole transcript takes about a second to verify; patch one only now and then.
            if rest.first().is_some_and(|byte| *byte == 0) {
                let _ = Ceremony::from_transcript(&patched(&TRANSCRIPT, &rest[1..]));
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = field_from_hex("fuzz", text);
                if let Ok(document) = ProofDocument::from_json(text) {
                    let _ = document.decode();
                }
                if let Ok(document) = WitnessDocument::from_json(text) {
                    let _ = document.decode(Default::default());
                }
            }
        }
    }
});
