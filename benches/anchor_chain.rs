//! Anchoring throughput of 1 and 3 validators on loopback (fsync on), batch sizes 1 to 4,096,
//! against bare SHA3-256 Merkle building of the same entries measured in the same run; and the
//! size and verification time of inclusion proofs. Prints a Markdown table for BENCHMARKS.md.
//!
//! Run with `nice -n 10 cargo bench --bench anchor_chain`; `ANCHOR_BENCH_SECONDS` sets the
//! load time per row (default 4).

use medvault_anchor_chain::api;
use medvault_anchor_chain::block::ValidatorKey;
use medvault_anchor_chain::bytes::Hash32;
use medvault_anchor_chain::client::ChainClient;
use medvault_anchor_chain::entry::{ApprovalPolicy, Entry, GenesisSpec, Member};
use medvault_anchor_chain::merkle;
use medvault_anchor_chain::node::{Validator, ValidatorConfig};
use medvault_anchor_chain::state::EntryOutcome;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BATCH_SIZES: [usize; 4] = [1, 16, 256, 4096];

struct Cluster {
    validators: Vec<Validator>,
    _dir: tempfile::TempDir,
}

async fn start_cluster(size: u64) -> Cluster {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut listeners = Vec::new();
    let mut keys = Vec::new();
    let mut founders = Vec::new();
    for id in 1..=size {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let key = ValidatorKey::generate();
        founders.push(Member {
            id,
            name: format!("h{id}"),
            public_key: key.public_key(),
            address,
        });
        listeners.push(listener);
        keys.push(key);
    }
    let genesis = GenesisSpec {
        chain_name: "bench".into(),
        timestamp_ms: 0,
        approval_policy: ApprovalPolicy::Majority,
        founders: founders.clone(),
    };
    let mut validators = Vec::new();
    for ((member, key), listener) in founders.iter().zip(keys).zip(listeners) {
        let config = ValidatorConfig {
            data_dir: dir.path().join(format!("node-{}", member.id)),
            member_id: member.id,
            key,
            genesis: genesis.clone(),
        };
        let validator = Validator::start(config).await.expect("start validator");
        tokio::spawn(api::serve(listener, validator.clone()));
        validators.push(validator);
    }
    let cluster = Cluster {
        validators,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.validators[0].leader().is_none() {
        assert!(Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster
}

fn entry(run: u64, n: u64) -> Entry {
    Entry::RecordAnchor {
        leaf: Hash32::digest(&[&run.to_be_bytes(), &n.to_be_bytes()]),
    }
}

/// Committed entries per second with `clients` concurrent submitters of `batch` entries each.
async fn measure(cluster: &Cluster, run: u64, batch: usize, clients: usize, seconds: f64) -> f64 {
    let leader = cluster.validators[0]
        .leader()
        .map(|(_, address)| address)
        .expect("leader");
    let committed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    let started = Instant::now();
    for client_index in 0..clients {
        let (committed, stop) = (committed.clone(), stop.clone());
        let client = ChainClient::new(&leader);
        tasks.push(tokio::spawn(async move {
            let mut next = (client_index as u64) << 40;
            while !stop.load(Ordering::Relaxed) {
                let entries: Vec<Entry> = (0..batch as u64).map(|i| entry(run, next + i)).collect();
                next += batch as u64;
                if let Ok(outcomes) = client.submit(entries).await {
                    let anchored = outcomes
                        .iter()
                        .filter(|o| matches!(o, EntryOutcome::Anchored(_)))
                        .count();
                    committed.fetch_add(anchored as u64, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    committed.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Bare baseline: hash the same entries into leaves and build one Merkle tree per batch.
fn merkle_baseline(batch: usize) -> f64 {
    let total = 400_000usize.max(batch * 64);
    let entries: Vec<Entry> = (0..total as u64).map(|n| entry(u64::MAX, n)).collect();
    let started = Instant::now();
    for chunk in entries.chunks(batch) {
        let leaves: Vec<Hash32> = chunk.iter().map(Entry::hash).collect();
        std::hint::black_box(merkle::root(&leaves));
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn proof_figures() -> (usize, f64) {
    let leaves: Vec<Hash32> = (0..4096u64).map(|n| entry(7, n).hash()).collect();
    let root = merkle::root(&leaves);
    let proof = merkle::prove(&leaves, 1234).expect("index in tree");
    let size = proof.path.len() * 32 + 16;
    let rounds = 100_000;
    let started = Instant::now();
    for _ in 0..rounds {
        assert!(std::hint::black_box(&proof).verify(&leaves[1234], &root));
    }
    (size, started.elapsed().as_secs_f64() * 1e6 / rounds as f64)
}

fn main() {
    let seconds: f64 = std::env::var("ANCHOR_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4.0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("| validators | entries per request | clients | committed entries/s | bare SHA3 Merkle entries/s | ratio |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let mut run = 0;
    for validators in [1u64, 3] {
        let cluster = runtime.block_on(start_cluster(validators));
        for batch in BATCH_SIZES {
            run += 1;
            let clients = if batch == 1 { 16 } else { 4 };
            let rate = runtime.block_on(measure(&cluster, run, batch, clients, seconds));
            let baseline = merkle_baseline(batch);
            println!(
                "| {validators} | {batch} | {clients} | {rate:.0} | {baseline:.0} | {:.3} |",
                rate / baseline
            );
        }
        runtime.block_on(async {
            for validator in &cluster.validators {
                validator.shutdown().await;
            }
        });
    }
    let (size, micros) = proof_figures();
    println!();
    println!("inclusion proof in a 4,096-entry block: {size} bytes, verified in {micros:.2} µs");
}
