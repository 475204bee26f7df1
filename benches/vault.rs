//! Record write and read throughput through the GraphQL server, against raw SQL writing and
//! reading the same number of bytes on the same PostgreSQL in the same run; and the cost of
//! anchoring: the same writes by a server anchoring on three validator processes of the real
//! binary (`medvault chain node`, fsync on) against one anchoring on nothing, and the time from
//! a write's answer to its leaf's block being final, under that load.
//!
//! The doctor works as every doctor must: a grantee key registered before the patient grants,
//! and a READ and WRITE consent session opened with a proof (through `medvault-client`) before
//! the first record. Proofs are not what this bench measures, so its consent keys are for a
//! small tree (depth 3), made once under the target directory and reused.
//!
//! Run: `cargo bench --bench vault`. Uses `DATABASE_URL` if set, else a throwaway cluster.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::future::join_all;
use medvault_anchor_chain::block::ValidatorKey;
use medvault_anchor_chain::bytes::Hash32;
use medvault_anchor_chain::client::ChainClient;
use medvault_anchor_chain::entry::{ApprovalPolicy, Entry, GenesisSpec, Member};
use medvault_circuits::{GranteeSecret, OsRng};
use medvault_client::{AccessScope, MedvaultClient};
use medvault_server::configuration::{ApplicationConfig, ServerSettings};
use medvault_server::postgres_cluster::ScratchServer;
use medvault_server::startup::Application;
use medvault_vault::auth::Operator;
use medvault_vault::consent::ConsentSettings;
use medvault_vault::{database, ChainTarget, MasterKeySource, NewStaffUser, VaultConfig};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

const CLIENTS: u64 = 16;
const BATCH: usize = 500;
const PASSWORD: &str = "benchmark password 2026";
/// The consent tree depth of this bench's keys: 4^3 = 64 grants, keys made in well under a second.
const CONSENT_DEPTH: u32 = 3;
/// The bench's hospital: a founding member of the validator cluster.
const HOSPITAL: &str = "Bench Hospital";
/// Writes whose anchoring latency is sampled.
const LATENCY_SAMPLES: usize = 200;

/// Three `medvault chain node` processes on loopback, founded by the bench's hospital and two
/// others: the members' cluster a production server anchors on. Killed on drop.
struct ValidatorCluster {
    nodes: Vec<String>,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl ValidatorCluster {
    async fn start() -> ValidatorCluster {
        let dir = tempfile::tempdir().expect("cluster directory");
        let mut founders = Vec::new();
        for id in 1..=3u64 {
            let key = ValidatorKey::generate();
            key.save(&dir.path().join(format!("key-{id}")))
                .expect("key");
            let address = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .expect("a free port")
                .to_string();
            let name = if id == 1 {
                HOSPITAL.to_owned()
            } else {
                format!("Member Hospital {id}")
            };
            founders.push(Member {
                id,
                name,
                public_key: key.public_key(),
                address,
            });
        }
        let genesis = GenesisSpec {
            chain_name: "bench-consortium".into(),
            timestamp_ms: 1_700_000_000_000,
            approval_policy: ApprovalPolicy::Majority,
            founders,
        };
        let genesis_path = dir.path().join("genesis.json");
        std::fs::write(
            &genesis_path,
            serde_json::to_vec(&genesis).expect("genesis JSON"),
        )
        .expect("genesis");
        let children = genesis
            .founders
            .iter()
            .map(|member| {
                Command::new(env!("CARGO_BIN_EXE_medvault"))
                    .args(["chain", "node", "--member-id", &member.id.to_string()])
                    .args(["--listen", &member.address])
                    .arg("--data-dir")
                    .arg(dir.path().join(format!("node-{}", member.id)))
                    .arg("--genesis")
                    .arg(&genesis_path)
                    .arg("--key")
                    .arg(dir.path().join(format!("key-{}", member.id)))
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start a validator")
            })
            .collect();
        let nodes: Vec<String> = genesis.founders.iter().map(|m| m.address.clone()).collect();
        let client = ChainClient::for_nodes(&nodes);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !client
            .status()
            .await
            .is_ok_and(|status| status.leader_id.is_some())
        {
            assert!(
                Instant::now() < deadline,
                "the validators elected no leader"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ValidatorCluster {
            nodes,
            children,
            _dir: dir,
        }
    }
}

impl Drop for ValidatorCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Fixture {
    http: reqwest::Client,
    endpoint: String,
    doctor: String,
    patient_id: String,
    records: Vec<String>,
    raw: deadpool_postgres::Pool,
    bytes_per_version: i32,
    counter: AtomicU64,
}

fn record(i: u64) -> Value {
    json!({ "kind": "LAB_RESULT", "codeSystem": "LOINC", "code": "2345-7", "value": format!("{}", 70 + i % 130),
            "unit": "mg/dL", "effectiveAt": "2026-03-01T07:45:00Z", "note": "fasting sample" })
}

impl Fixture {
    /// A server over a new database anchoring on `chain`, with a doctor holding a consent
    /// session of a patient with 500 records.
    async fn new(chain: ChainTarget) -> Fixture {
        let url = ScratchServer::get()
            .expect("PostgreSQL")
            .create_database()
            .await
            .expect("database");
        let config = ApplicationConfig {
            settings: ServerSettings {
                bind: "127.0.0.1:0".parse().expect("addr"),
                ..ServerSettings::default()
            },
            vault: VaultConfig {
                pool_size: 32,
                session_ttl: chrono::Duration::hours(2),
                consent_keys_dir: std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                    .join(format!("bench-consent-keys-{CONSENT_DEPTH}")),
                consent_depth: CONSENT_DEPTH,
                // As long as the bearer session: a slow run must not outlive its consent.
                consent: ConsentSettings {
                    session_ttl: chrono::Duration::hours(2),
                    ..ConsentSettings::default()
                },
                chain,
                ..VaultConfig::new(url.clone(), MasterKeySource::Hex("42".repeat(32)))
            },
        };
        let application = Application::build(config).await.expect("app");
        let vault = application.services().vault().clone();
        let address = format!("http://127.0.0.1:{}", application.port());
        let endpoint = format!("{address}/graphql");
        tokio::spawn(application.run_until_stopped());

        let admin = NewStaffUser {
            username: "bench-admin".into(),
            password: PASSWORD.into(),
            role: medvault_vault::domain::Role::Admin,
            display_name: "Bench".into(),
            specialty: None,
        };
        vault
            .create_hospital_admin(&Operator::at_command_line(), HOSPITAL, admin)
            .await
            .expect("admin");
        let mut fixture = Fixture {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .expect("client"),
            endpoint,
            doctor: String::new(),
            patient_id: String::new(),
            records: Vec::new(),
            raw: database::connect_pool(&url, CLIENTS as usize).expect("raw pool"),
            bytes_per_version: 0,
            counter: AtomicU64::new(0),
        };
        let admin = fixture.login("bench-admin").await;
        let doctor = fixture
            .call(&admin, "mutation($i: CreateDoctorInput!) { createDoctor(input: $i) { id } }",
                  json!({ "i": { "username": "bench-doctor", "password": PASSWORD, "fullName": "Dr. Bench", "specialty": "Lab" } }))
            .await;
        let doctor_id = doctor["createDoctor"]["id"]
            .as_str()
            .expect("doctor")
            .to_owned();
        fixture.doctor = fixture.login("bench-doctor").await;
        let doctor_client = MedvaultClient::new(&address)
            .expect("client")
            .with_token(fixture.doctor.clone());
        let secret = GranteeSecret::generate(&mut OsRng);
        doctor_client
            .register_grantee_key(&secret)
            .await
            .expect("register the grantee key");
        let patient = fixture
            .call(&admin, "mutation($i: CreatePatientInput!) { createPatient(input: $i) { id } }",
                  json!({ "i": { "username": "bench-patient", "password": PASSWORD,
                                 "personal": { "fullName": "Bench Patient", "dateOfBirth": "1980-01-01", "sex": "OTHER" },
                                 "medical": { "allergies": [], "chronicConditions": [] } } }))
            .await;
        fixture.patient_id = patient["createPatient"]["id"]
            .as_str()
            .expect("patient")
            .to_owned();
        let patient_token = fixture.login("bench-patient").await;
        fixture
            .call(&patient_token, "mutation($d: ID!, $e: DateTime!) { grantAccess(doctorId: $d, scopes: [READ, WRITE], expiresAt: $e) { id } }",
                  json!({ "d": doctor_id, "e": (chrono::Utc::now() + chrono::Duration::days(2)).to_rfc3339() }))
            .await;
        let proving_key = doctor_client.proving_key(None).await.expect("proving key");
        doctor_client
            .open_consent(
                &proving_key,
                &secret,
                &fixture.patient_id,
                &[AccessScope::Read, AccessScope::Write],
            )
            .await
            .expect("open a consent session");
        let added = fixture.add_batch().await;
        fixture.records = added["addMedicalRecords"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| r["id"].as_str().expect("id").to_owned())
            .collect();
        let client = fixture.raw.get().await.expect("raw connection");
        fixture.bytes_per_version = client
            .query_one(
                "SELECT (avg(pg_column_size(v.*)) + avg(pg_column_size(k.*)) + avg(pg_column_size(r.*))
                         + avg(pg_column_size(o.*)))::int
                 FROM record_versions v JOIN record_version_keys k USING (record_id, version)
                 JOIN records r ON r.id = v.record_id, anchor_outbox o",
                &[],
            )
            .await
            .expect("row size")
            .get(0);
        client
            .batch_execute(
                "CREATE TABLE raw_baseline (id BIGSERIAL PRIMARY KEY, payload BYTEA NOT NULL)",
            )
            .await
            .expect("baseline table");
        fixture
    }

    async fn call(&self, token: &str, query: &str, variables: Value) -> Value {
        let body: Value = self
            .http
            .post(&self.endpoint)
            .bearer_auth(token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert!(body.get("errors").is_none(), "{body}");
        body["data"].clone()
    }

    async fn login(&self, username: &str) -> String {
        let data = self
            .call("", "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }",
                  json!({ "u": username, "p": PASSWORD }))
            .await;
        data["login"]["token"].as_str().expect("token").to_owned()
    }

    /// Adds one record; returns its version's anchor leaf.
    async fn add_one(&self) -> String {
        let i = self.counter.fetch_add(1, Ordering::Relaxed);
        let added = self.call(&self.doctor, "mutation($p: ID!, $r: MedicalRecordInput!) { addMedicalRecord(patientId: $p, record: $r) { anchorLeaf } }",
                  json!({ "p": self.patient_id, "r": record(i) }))
            .await;
        added["addMedicalRecord"]["anchorLeaf"]
            .as_str()
            .expect("anchor leaf")
            .to_owned()
    }

    async fn add_batch(&self) -> Value {
        let records: Vec<Value> = (0..BATCH as u64).map(record).collect();
        self.call(&self.doctor, "mutation($p: ID!, $r: [MedicalRecordInput!]!) { addMedicalRecords(patientId: $p, records: $r) { id } }",
                  json!({ "p": self.patient_id, "r": records }))
            .await
    }

    async fn read_one(&self, i: u64) {
        let id = &self.records[i as usize % self.records.len()];
        self.call(&self.doctor, "query($id: ID!) { record(id: $id) { version content { code value unit effectiveAt } } }",
                  json!({ "id": id }))
            .await;
    }

    fn payload(&self) -> Vec<u8> {
        vec![0xA5; usize::try_from(self.bytes_per_version).unwrap_or(512)]
    }

    async fn raw_insert_one(&self) {
        let client = self.raw.get().await.expect("raw connection");
        client
            .execute(
                "INSERT INTO raw_baseline (payload) VALUES ($1)",
                &[&self.payload()],
            )
            .await
            .expect("insert");
    }

    async fn raw_insert_batch(&self) {
        let payloads = vec![self.payload(); BATCH];
        let client = self.raw.get().await.expect("raw connection");
        client
            .execute(
                "INSERT INTO raw_baseline (payload) SELECT unnest($1::bytea[])",
                &[&payloads],
            )
            .await
            .expect("insert batch");
    }

    async fn raw_read_one(&self, i: u64) {
        let client = self.raw.get().await.expect("raw connection");
        client
            .query_one(
                "SELECT payload FROM raw_baseline WHERE id = $1",
                &[&(1 + (i % BATCH as u64) as i64)],
            )
            .await
            .expect("read");
    }
}

/// Runs `operations` calls of `operation` spread over `CLIENTS` concurrent clients.
async fn concurrently<F, Fut>(operations: u64, operation: F) -> Duration
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    let clients = (0..CLIENTS).map(|client| {
        let operation = &operation;
        async move {
            let mut i = client;
            while i < operations {
                operation(i).await;
                i += CLIENTS;
            }
        }
    });
    join_all(clients).await;
    started.elapsed()
}

/// The time from a write's answer to the block holding its leaf being final, for
/// [`LATENCY_SAMPLES`] writes made one every 50 ms while [`CLIENTS`] writers keep writing.
async fn anchoring_latency(fixture: &Fixture, cluster: &ValidatorCluster) -> Vec<Duration> {
    let chain = ChainClient::for_nodes(&cluster.nodes);
    let sampling = AtomicBool::new(true);
    let load = async {
        while sampling.load(Ordering::Relaxed) {
            concurrently(CLIENTS * 8, |_| async {
                fixture.add_one().await;
            })
            .await;
        }
    };
    let sampler = async {
        let mut samples = Vec::with_capacity(LATENCY_SAMPLES);
        for _ in 0..LATENCY_SAMPLES {
            let leaf = fixture.add_one().await;
            let answered = Instant::now();
            let entry = Entry::RecordAnchor {
                leaf: Hash32::from_hex(&leaf).expect("a hex leaf"),
            };
            loop {
                let proof = chain.proof(&entry.hash()).await.ok().flatten();
                if let Some(proof) = proof {
                    let head = chain.head().await.expect("the chain head");
                    if head.final_height >= Some(proof.header.height) {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            samples.push(answered.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sampling.store(false, Ordering::Relaxed);
        samples
    };
    let ((), mut samples) = futures_util::future::join(load, sampler).await;
    samples.sort();
    samples
}

fn benches(c: &mut Criterion) {
    let runtime = Runtime::new().expect("runtime");
    let fixture = runtime.block_on(Fixture::new(ChainTarget::None));
    runtime.block_on(fixture.raw_insert_batch());
    let cluster = runtime.block_on(ValidatorCluster::start());
    let anchored = runtime.block_on(Fixture::new(ChainTarget::Cluster(cluster.nodes.clone())));

    let mut group = c.benchmark_group("record_write_one_per_request");
    group.throughput(Throughput::Elements(1));
    group.bench_function("graphql_add_medical_record", |b| {
        b.iter_custom(|n| {
            runtime.block_on(concurrently(n, |_| async {
                fixture.add_one().await;
            }))
        })
    });
    group.bench_function("baseline_raw_insert_same_bytes", |b| {
        b.iter_custom(|n| runtime.block_on(concurrently(n, |_| fixture.raw_insert_one())))
    });
    group.finish();

    let mut group = c.benchmark_group("record_write_batched_500");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("graphql_add_medical_records", |b| {
        b.iter_custom(|n| {
            runtime.block_on(concurrently(n, |_| async {
                fixture.add_batch().await;
            }))
        })
    });
    group.bench_function("baseline_raw_insert_same_bytes", |b| {
        b.iter_custom(|n| runtime.block_on(concurrently(n, |_| fixture.raw_insert_batch())))
    });
    group.finish();

    let mut group = c.benchmark_group("record_read");
    group.throughput(Throughput::Elements(1));
    group.bench_function("graphql_record", |b| {
        b.iter_custom(|n| runtime.block_on(concurrently(n, |i| fixture.read_one(i))))
    });
    group.bench_function("baseline_raw_select_same_bytes", |b| {
        b.iter_custom(|n| runtime.block_on(concurrently(n, |i| fixture.raw_read_one(i))))
    });
    group.finish();

    let mut group = c.benchmark_group("record_write_anchoring");
    group.throughput(Throughput::Elements(1));
    group.bench_function("anchoring_on_3_validator_processes", |b| {
        b.iter_custom(|n| {
            runtime.block_on(concurrently(n, |_| async {
                anchored.add_one().await;
            }))
        })
    });
    group.bench_function("baseline_anchoring_off", |b| {
        b.iter_custom(|n| {
            runtime.block_on(concurrently(n, |_| async {
                fixture.add_one().await;
            }))
        })
    });
    group.finish();

    let samples = runtime.block_on(anchoring_latency(&anchored, &cluster));
    let percentile = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    println!(
        "anchoring latency, write answered to its block final, {} samples under {CLIENTS} writers: \
         p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        samples.len(),
        percentile(50).as_secs_f64() * 1e3,
        percentile(99).as_secs_f64() * 1e3,
        percentile(100).as_secs_f64() * 1e3,
    );
}

criterion_group! {
    name = vault;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(vault);
