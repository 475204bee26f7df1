//! Times `prove` for a tree of 2^20 leaves, to compare build configurations (target features,
//! thread counts) without rebuilding the whole workspace as `cargo bench` does:
//!
//! ```sh
//! cargo run --release -p medvault-circuits --example prove_timing -- 31
//! RUSTFLAGS="" cargo run --release -p medvault-circuits --example prove_timing -- 31
//! RAYON_NUM_THREADS=1 cargo run --release -p medvault-circuits --example prove_timing -- 31
//! ```
//!
//! Prints the median, minimum and maximum wall time over the given number of proofs (after one
//! warm-up), and the process's CPU time per proof, which the other work on a shared machine
//! disturbs much less than wall time: for the key with its fixed-base tables
//! (`ConsentProvingKey::with_tables`) and for the same key without them (arkworks' prover),
//! alternated proof by proof so that both see the same load.

use medvault_circuits::{
    grantee_commitment, prove, setup, verify, ConsentTree, ConsentWitness, Fr, Grant, PublicInputs,
    Scope, DEFAULT_DEPTH,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::time::Instant;

/// User plus system CPU time of this process so far, in milliseconds (Linux only).
fn cpu_milliseconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit(')').next()?.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks * 10.0)
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(21)
        .max(1);
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let (proving_key, verifying_key) = setup(DEFAULT_DEPTH, &mut rng).expect("setup");
    let patient = Fr::from(77u64);
    let secret = Fr::from(1234u64);
    let grant = Grant {
        grantee_commitment: grantee_commitment(secret),
        patient_pseudonym: patient,
        scope: Scope::READ,
        expiry: 2_000_000_000,
        salt: Fr::from(5u64),
    };
    let mut tree = ConsentTree::new(DEFAULT_DEPTH).expect("depth");
    tree.insert(grant.leaf()).expect("room");
    for other in 1..1_000u64 {
        tree.insert(Fr::from(other)).expect("room");
    }
    let public = PublicInputs {
        root: tree.root(),
        patient_pseudonym: patient,
        required_scope: Scope::READ,
        now: 1_700_000_000,
        challenge: Fr::from(42u64),
    };
    let witness = ConsentWitness {
        grantee_secret: secret,
        granted_scope: grant.scope,
        expiry: grant.expiry,
        salt: grant.salt,
        path: tree.path(0).expect("path"),
    };
    let prepared = verifying_key.prepare();
    let start = Instant::now();
    let with_tables = proving_key.clone().with_tables();
    println!(
        "with_tables: {:.1} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );
    let keys = [
        ("fixed-base tables", &with_tables),
        ("arkworks", &proving_key),
    ];

    let mut times = [Vec::with_capacity(runs), Vec::with_capacity(runs)];
    let mut cpu = [0.0; 2];
    for run in 0..=runs {
        for (index, (_, key)) in keys.iter().enumerate() {
            let cpu_before = cpu_milliseconds();
            let start = Instant::now();
            let proof = prove(key, &public, &witness, &mut rng).expect("proof");
            let elapsed = start.elapsed().as_secs_f64() * 1000.0;
            let cpu_after = cpu_milliseconds();
            assert!(verify(&prepared, &public, &proof).expect("verify"));
            if run > 0 {
                times[index].push(elapsed);
                cpu[index] += cpu_before
                    .zip(cpu_after)
                    .map_or(f64::NAN, |(before, after)| after - before);
            }
        }
    }
    for ((name, _), (times, cpu)) in keys.iter().zip(times.iter_mut().zip(cpu)) {
        times.sort_by(f64::total_cmp);
        println!(
            "prove, 2^20 leaves, {name}: median {:.1} ms, min {:.1} ms, max {:.1} ms over {runs} proofs; CPU {:.1} ms per proof",
            times[runs / 2],
            times[0],
            times[runs - 1],
            cpu / runs as f64,
        );
    }
}
