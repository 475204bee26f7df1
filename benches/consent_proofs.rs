//! Consent proof benchmarks (issue 4): constraints by depth, setup, proving, verification and
//! batch verification for a tree of 2^20 leaves (depth 10 of the 4-ary tree), each beside a baseline measured in the same run: a
//! Poseidon-only membership circuit of the same depth proven with arkworks' stock prover, the
//! consent circuit proven by arkworks' prover on the same key (no fixed-base tables), and a
//! bare three-pair pairing check. Results and the command are in BENCHMARKS.md.
//!
//! Run: `cargo bench --bench consent_proofs`.

use ark_bn254::{Bn254, G1Affine, G2Affine};
use ark_ec::pairing::Pairing;
use ark_ec::AffineRepr;
use ark_groth16::Groth16;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use medvault_circuits::circuit::{consent_circuit_size, measure, MembershipCircuit};
use medvault_circuits::prove::rerandomize;
use medvault_circuits::{
    batch_verify, grantee_commitment, prove, setup, verify, verify_encoded, ConsentProof,
    ConsentProvingKey, ConsentTree, ConsentVerifyingKey, ConsentWitness, Fr, Grant, PublicInputs,
    Scope,
};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use std::sync::LazyLock;

const DEPTH: u32 = medvault_circuits::DEFAULT_DEPTH;
const NOW: u64 = 1_700_000_000;

struct Fixture {
    /// With its fixed-base tables (`ConsentProvingKey::with_tables`), as a long-running prover
    /// keeps it.
    proving_key: ConsentProvingKey,
    /// The same key without them: `prove` then runs arkworks' prover.
    proving_key_without_tables: ConsentProvingKey,
    verifying_key: ConsentVerifyingKey,
    public: PublicInputs,
    witness: ConsentWitness,
    tree: ConsentTree,
}

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Keys for 2^20 leaves and a tree with 1,000 grants; the doctor's grant is number 500.
static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let (proving_key, verifying_key) = setup(DEPTH, &mut rng(1)).expect("setup");
    let patient = Fr::from(77u64);
    let doctor_secret = Fr::from(1234u64);
    let mut tree = ConsentTree::new(DEPTH).expect("depth");
    let mut doctor = None;
    for grant_number in 0..1_000u64 {
        let grant = Grant {
            grantee_commitment: grantee_commitment(Fr::from(1234 + grant_number % 500)),
            patient_pseudonym: patient,
            scope: Scope::READ | Scope::WRITE,
            expiry: NOW + 3600,
            salt: Fr::from(grant_number),
        };
        let index = tree.insert(grant.leaf()).expect("room");
        if grant_number == 0 {
            doctor = Some((index, grant));
        }
    }
    let (index, grant) = doctor.expect("inserted");
    let witness = ConsentWitness {
        grantee_secret: doctor_secret,
        granted_scope: grant.scope,
        expiry: grant.expiry,
        salt: grant.salt,
        path: tree.path(index).expect("path"),
    };
    let public = PublicInputs {
        root: tree.root(),
        patient_pseudonym: patient,
        required_scope: Scope::READ,
        now: NOW,
        challenge: Fr::from(42u64),
    };
    Fixture {
        proving_key: proving_key.clone().with_tables(),
        proving_key_without_tables: proving_key,
        verifying_key,
        public,
        witness,
        tree,
    }
});

fn constraints(c: &mut Criterion) {
    let mut group = c.benchmark_group("constraints");
    for depth in [5u32, 10, 16] {
        let consent = consent_circuit_size(depth).expect("size");
        let membership = measure(MembershipCircuit::blank(depth).expect("depth")).expect("size");
        println!(
            "depth {depth}: consent circuit {} constraints, Poseidon-only membership circuit {}",
            consent.constraints, membership.constraints
        );
        group.bench_with_input(BenchmarkId::new("synthesize", depth), &depth, |b, depth| {
            b.iter(|| consent_circuit_size(*depth).expect("size"))
        });
    }
    group.finish();
}

fn setup_keys(c: &mut Criterion) {
    let mut group = c.benchmark_group("setup");
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("consent", DEPTH), |b| {
        let mut rng = rng(2);
        b.iter(|| setup(DEPTH, &mut rng).expect("setup"))
    });
    let proving_key_bytes = FIXTURE.proving_key.to_bytes();
    group.bench_function(BenchmarkId::new("load_validated_proving_key", DEPTH), |b| {
        b.iter(|| ConsentProvingKey::from_bytes(&proving_key_bytes).expect("load"))
    });
    group.bench_function(BenchmarkId::new("fixed_base_tables", DEPTH), |b| {
        b.iter(|| FIXTURE.proving_key_without_tables.clone().with_tables())
    });
    group.finish();
}

fn proving(c: &mut Criterion) {
    let fixture = &*FIXTURE;
    let mut group = c.benchmark_group("prove");
    group.sample_size(30);
    let keys = [
        ("consent", &fixture.proving_key),
        (
            "consent_arkworks_prover",
            &fixture.proving_key_without_tables,
        ),
    ];
    for (name, key) in keys {
        group.bench_function(BenchmarkId::new(name, DEPTH), |b| {
            let mut rng = rng(3);
            b.iter(|| prove(key, &fixture.public, &fixture.witness, &mut rng))
        });
    }

    let leaf = fixture
        .tree
        .leaf(fixture.witness.path.leaf_index)
        .expect("leaf");
    let membership = MembershipCircuit {
        root: fixture.tree.root(),
        leaf,
        path: fixture.witness.path.clone(),
    };
    let membership_key = Groth16::<Bn254>::generate_random_parameters_with_reduction(
        MembershipCircuit::blank(DEPTH).expect("depth"),
        &mut rng(4),
    )
    .expect("setup");
    group.bench_function(
        BenchmarkId::new("baseline_poseidon_membership_stock_prover", DEPTH),
        |b| {
            let mut rng = rng(5);
            b.iter(|| {
                Groth16::<Bn254>::create_random_proof_with_reduction(
                    membership.clone(),
                    &membership_key,
                    &mut rng,
                )
                .expect("prove")
            })
        },
    );
    group.finish();
}

fn verification(c: &mut Criterion) {
    let fixture = &*FIXTURE;
    let prepared = fixture.verifying_key.prepare();
    let proof = prove(
        &fixture.proving_key,
        &fixture.public,
        &fixture.witness,
        &mut rng(6),
    )
    .expect("prove");
    let proof_bytes = proof.to_bytes();
    let public_bytes = fixture.public.to_bytes();
    let mut group = c.benchmark_group("verify");
    group.bench_function("consent_prepared_key", |b| {
        b.iter(|| assert!(verify(&prepared, &fixture.public, &proof).expect("verify")))
    });
    group.bench_function("consent_from_bytes", |b| {
        b.iter(|| assert!(verify_encoded(&prepared, &public_bytes, &proof_bytes).expect("verify")))
    });
    let g1 = G1Affine::generator();
    let g2 = G2Affine::generator();
    let g2_prepared: Vec<<Bn254 as Pairing>::G2Prepared> = (0..3).map(|_| g2.into()).collect();
    group.bench_function("baseline_bare_three_pair_pairing_check", |b| {
        b.iter(|| {
            let miller = Bn254::multi_miller_loop([g1, g1, g1], g2_prepared.clone());
            Bn254::final_exponentiation(miller).expect("non-zero")
        })
    });
    group.finish();

    let mut rng_for_batch = rng(7);
    let distinct: Vec<(PublicInputs, ConsentProof)> = (0..16u64)
        .map(|statement| {
            let public = PublicInputs {
                challenge: Fr::from(1000 + statement),
                ..fixture.public
            };
            let proof = prove(
                &fixture.proving_key,
                &public,
                &fixture.witness,
                &mut rng_for_batch,
            )
            .expect("prove");
            (public, proof)
        })
        .collect();
    let mut group = c.benchmark_group("batch_verify");
    group.sample_size(10);
    for size in [16usize, 256, 1024] {
        let batch: Vec<(PublicInputs, ConsentProof)> = (0..size)
            .map(|index| {
                let (public, proof) = &distinct[index % distinct.len()];
                let proof = if index < distinct.len() {
                    proof.clone()
                } else {
                    rerandomize(&fixture.verifying_key, proof, &mut rng_for_batch)
                };
                (*public, proof)
            })
            .collect();
        group.throughput(Throughput::Elements(size as u64));
        group.bench_with_input(BenchmarkId::new("consent", size), &batch, |b, batch| {
            let mut rng = rng(8);
            b.iter(|| assert!(batch_verify(&prepared, batch, &mut rng).all_valid()))
        });
        let decoded: Vec<(Vec<u8>, Vec<u8>)> = batch
            .iter()
            .map(|(public, proof)| (public.to_bytes(), proof.to_bytes()))
            .collect();
        group.bench_with_input(
            BenchmarkId::new("consent_from_bytes", size),
            &decoded,
            |b, decoded| {
                let mut rng = rng(9);
                b.iter_batched(
                    || (),
                    |()| {
                        let batch: Vec<(PublicInputs, ConsentProof)> = decoded
                            .iter()
                            .map(|(public, proof)| {
                                (
                                    PublicInputs::from_bytes(public).expect("inputs"),
                                    ConsentProof::from_bytes(proof).expect("proof"),
                                )
                            })
                            .collect();
                        assert!(batch_verify(&prepared, &batch, &mut rng).all_valid())
                    },
                    BatchSize::SmallInput,
                )
            },
        );
    }
    group.finish();
}

criterion_group!(benches, constraints, setup_keys, proving, verification);
criterion_main!(benches);
