//! Record write and read throughput through the GraphQL server, against raw SQL writing and
//! reading the same number of bytes on the same PostgreSQL in the same run.
//!
//! The doctor works as every doctor must: a grantee key registered before the patient grants,
//! and a READ and WRITE consent session opened with a proof (through `medvault-client`) before
//! the first record. Proofs are not what this bench measures, so its consent keys are for a
//! small tree (depth 3), made once under the target directory and reused.
//!
//! Run: `cargo bench --bench vault`. Uses `DATABASE_URL` if set, else a throwaway cluster.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::future::join_all;
use medvault_circuits::{GranteeSecret, OsRng};
use medvault_client::{AccessScope, MedvaultClient};
use medvault_server::configuration::{ApplicationConfig, ServerSettings};
use medvault_server::postgres_cluster::ScratchServer;
use medvault_server::startup::Application;
use medvault_vault::auth::Operator;
use medvault_vault::consent::ConsentSettings;
use medvault_vault::{database, MasterKeySource, NewStaffUser, VaultConfig};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

const CLIENTS: u64 = 16;
const BATCH: usize = 500;
const PASSWORD: &str = "benchmark password 2026";
/// The consent tree depth of this bench's keys: 4^3 = 64 grants, keys made in well under a second.
const CONSENT_DEPTH: u32 = 3;

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
    async fn new() -> Fixture {
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
            .create_hospital_admin(&Operator::at_command_line(), "Bench Hospital", admin)
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

    async fn add_one(&self) {
        let i = self.counter.fetch_add(1, Ordering::Relaxed);
        self.call(&self.doctor, "mutation($p: ID!, $r: MedicalRecordInput!) { addMedicalRecord(patientId: $p, record: $r) { id } }",
                  json!({ "p": self.patient_id, "r": record(i) }))
            .await;
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

fn benches(c: &mut Criterion) {
    let runtime = Runtime::new().expect("runtime");
    let fixture = runtime.block_on(Fixture::new());
    runtime.block_on(fixture.raw_insert_batch());

    let mut group = c.benchmark_group("record_write_one_per_request");
    group.throughput(Throughput::Elements(1));
    group.bench_function("graphql_add_medical_record", |b| {
        b.iter_custom(|n| runtime.block_on(concurrently(n, |_| fixture.add_one())))
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
}

criterion_group! {
    name = vault;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(2));
    targets = benches
}
criterion_main!(vault);
