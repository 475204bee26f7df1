//! Opening consent sessions and reading records inside them, under load: the real server on
//! loopback HTTP over a throwaway PostgreSQL, with consent keys of the real depth (10: 2^20
//! grants a hospital) and an embedded anchor chain, so that every root a proof names is anchored
//! as in production; the doctors are `medvault-client`s in the same process.
//!
//! `openConsent` at 1, 8 and 32 concurrent clients. Before each level, 1,024 proofs are made,
//! each for its own challenge, several at once on the machine's cores; then that many clients,
//! each a doctor with its own bearer session, send their own proofs one after the other. Proving
//! is the doctor's machine's work, not the server's, so it is kept out of the timed part: for
//! that, challenges live 30 minutes here instead of the default minute, so that the first proof
//! made is still good when it is sent. The server verifies a proof the same way whatever the
//! challenge's lifetime. Every opening must succeed.
//!
//! Reads: the same query (a patient's first 20 records, decrypted) sent by 32 doctors, each in a
//! consent session on one of their patients, and by those 32 patients themselves, who need no
//! consent session: the patients' reads are the baseline. Each round runs both, doctors first in
//! even rounds and patients first in odd ones, so that the machine's noise falls on both.
//!
//! Prints a Markdown table for BENCHMARKS.md. Run: `cargo bench --bench consent_sessions`.
//! Uses `DATABASE_URL` if set, else a throwaway cluster.

use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};
use medvault_circuits::{ConsentProvingKey, GranteeSecret, OsRng, DEFAULT_DEPTH};
use medvault_client::{AccessScope, MedvaultClient, PreparedOpening};
use medvault_server::configuration::{ApplicationConfig, ServerSettings};
use medvault_server::postgres_cluster::ScratchServer;
use medvault_server::startup::Application;
use medvault_vault::anchoring::AnchoringWorker;
use medvault_vault::auth::Operator;
use medvault_vault::consent::ConsentSettings;
use medvault_vault::{ChainTarget, MasterKeySource, NewStaffUser, VaultConfig};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The one hospital, which founds the bench's embedded chain.
const HOSPITAL: &str = "Bench Hospital";
const PASSWORD: &str = "benchmark password 2026";
const DOCTORS: usize = 32;
/// Each doctor's patients whose sessions the `openConsent` levels open.
const OPENED_PATIENTS: usize = 4;
const RECORDS_PER_PATIENT: usize = 20;
const OPENINGS_PER_LEVEL: usize = 1024;
const LEVELS: [usize; 3] = [1, 8, 32];
/// Proofs made at once while preparing a level: enough to keep both cores busy while the
/// server answers the challenge and witness requests of the others.
const PROVERS: usize = 4;
/// Accounts, grants and record batches made at once during setup.
const SETUP_CONCURRENCY: usize = 4;
const READ_ROUNDS: usize = 10;
const READS_PER_CLIENT: usize = 40;
const READ_QUERY: &str = "query($id: ID!) { patient(id: $id) { records(first: 20) { \
    nodes { id version content { code value unit } } } } }";
/// The bar of MISSION.md for opening a session at 32 clients.
const OPENINGS_BAR_PER_SECOND: f64 = 400.0;
const OPENINGS_BAR_P99: Duration = Duration::from_millis(100);
/// The bar of MISSION.md for reads in a consent session against the patient's own reads.
const READ_RATIO_BAR: f64 = 0.9;

/// A signed-in user: one bearer session for the whole run.
struct Account {
    id: String,
    token: String,
}

struct Doctor {
    account: Account,
    secret: GranteeSecret,
    /// The patients the `openConsent` levels open sessions on.
    patients: Vec<String>,
    /// The patient this doctor reads in the read rounds, who reads their own records too. The
    /// levels never open a session on them, so a read finds the one consent session opened for
    /// it and not the hundreds the levels leave open on the other patients.
    reader: Account,
}

struct Fixture {
    address: String,
    key: Arc<ConsentProvingKey>,
    doctors: Vec<Doctor>,
    anchoring: AnchoringWorker,
    _chain_dir: tempfile::TempDir,
}

/// What one timed phase measured.
struct Run {
    operations: usize,
    elapsed: Duration,
    /// Latencies, sorted.
    latencies: Vec<Duration>,
}

impl Run {
    fn from_clients(per_client: Vec<Vec<Duration>>, elapsed: Duration) -> Run {
        let mut latencies: Vec<Duration> = per_client.into_iter().flatten().collect();
        latencies.sort();
        Run {
            operations: latencies.len(),
            elapsed,
            latencies,
        }
    }

    fn per_second(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64()
    }

    fn p50(&self) -> Duration {
        percentile(&self.latencies, 0.50)
    }

    fn p99(&self) -> Duration {
        percentile(&self.latencies, 0.99)
    }
}

/// The nearest-rank percentile of sorted latencies.
fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1e3)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_owned(),
        |line| {
            line.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        },
    )
}

fn record(i: usize) -> Value {
    json!({ "kind": "LAB_RESULT", "codeSystem": "LOINC", "code": "2345-7",
            "value": format!("{}", 70 + i % 130), "unit": "mg/dL",
            "effectiveAt": "2026-03-01T07:45:00Z", "note": "fasting sample" })
}

impl Fixture {
    /// A client of the server signed in as `token`, with a connection pool of its own: each
    /// timed phase starts on fresh clients, so that none sends on a connection the server closed
    /// while it idled (actix closes idle connections after 5 seconds).
    fn client(&self, token: &str) -> MedvaultClient {
        MedvaultClient::new(&self.address)
            .expect("client")
            .with_token(token)
    }

    async fn new() -> Fixture {
        let url = ScratchServer::get()
            .expect("PostgreSQL")
            .create_database()
            .await
            .expect("database");
        let chain_dir = tempfile::tempdir().expect("chain directory");
        let config = ApplicationConfig {
            settings: ServerSettings {
                bind: "127.0.0.1:0".parse().expect("address"),
                ..ServerSettings::default()
            },
            vault: VaultConfig {
                session_ttl: chrono::Duration::hours(2),
                chain: ChainTarget::Embedded {
                    dir: chain_dir.path().to_path_buf(),
                    founders: vec![HOSPITAL.into()],
                },
                consent_keys_dir: std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                    .join(format!("bench-consent-keys-{DEFAULT_DEPTH}")),
                consent_depth: DEFAULT_DEPTH,
                consent: ConsentSettings {
                    challenge_ttl: chrono::Duration::minutes(30),
                    ..ConsentSettings::default()
                },
                ..VaultConfig::new(url, MasterKeySource::Hex("42".repeat(32)))
            },
        };
        let application = Application::build(config).await.expect("application");
        let address = format!("http://127.0.0.1:{}", application.port());
        let vault = application.services().vault().clone();
        let anchoring = application
            .services()
            .anchoring()
            .cloned()
            .expect("an anchoring worker on the embedded chain");
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
        let mut admin = MedvaultClient::new(&address).expect("client");
        admin.login("bench-admin", PASSWORD).await.expect("login");
        let doctors = stream::iter(0..DOCTORS)
            .map(|doctor| enrol_doctor(&address, &admin, doctor))
            .buffered(SETUP_CONCURRENCY)
            .collect()
            .await;
        let downloaded = MedvaultClient::new(&address)
            .expect("client")
            .proving_key(None)
            .await
            .expect("proving key");
        let key = tokio::task::spawn_blocking(move || {
            Arc::new(ConsentProvingKey::clone(&downloaded).with_tables())
        })
        .await
        .expect("prover tables");
        Fixture {
            address,
            key,
            doctors,
            anchoring,
            _chain_dir: chain_dir,
        }
    }

    /// Waits until every root and record leaf queued so far is on the chain, so that no
    /// opening waits for the anchoring worker and the worker is idle while a phase is timed.
    async fn wait_until_anchored(&self) {
        self.anchoring
            .wait_until_anchored()
            .await
            .expect("anchoring");
    }

    /// Proves `doctor`'s consent to `scopes` on `patient` and opens the session.
    async fn open(&self, doctor: &Doctor, patient: &str, scopes: &[AccessScope]) {
        self.client(&doctor.account.token)
            .open_consent(&self.key, &doctor.secret, patient, scopes)
            .await
            .expect("open a consent session");
    }

    /// Every doctor writes the records of each of their patients in one batch, inside a READ
    /// and WRITE consent session.
    async fn write_records(&self) {
        let records: Vec<Value> = (0..RECORDS_PER_PATIENT).map(record).collect();
        let jobs = self.doctors.iter().flat_map(|doctor| {
            doctor
                .patients
                .iter()
                .chain([&doctor.reader.id])
                .map(move |patient| (doctor, patient))
        });
        stream::iter(jobs)
            .for_each_concurrent(SETUP_CONCURRENCY, |(doctor, patient)| {
                let records = &records;
                async move {
                    self.open(doctor, patient, &[AccessScope::Read, AccessScope::Write])
                        .await;
                    self.client(&doctor.account.token)
                        .graphql(
                            "mutation($p: ID!, $r: [MedicalRecordInput!]!) {
                               addMedicalRecords(patientId: $p, records: $r) { id } }",
                            json!({ "p": patient, "r": records }),
                        )
                        .await
                        .expect("add records");
                }
            })
            .await;
    }

    /// `OPENINGS_PER_LEVEL` proofs for a level of `clients`, each client's its own doctor's,
    /// spread over that doctor's patients; with how long making them took.
    async fn prepare_level(&self, clients: usize) -> (Vec<Vec<PreparedOpening>>, Duration) {
        let per_client = OPENINGS_PER_LEVEL / clients;
        let provers: Vec<MedvaultClient> = self.doctors[..clients]
            .iter()
            .map(|doctor| self.client(&doctor.account.token))
            .collect();
        let jobs = (0..per_client).flat_map(|i| (0..clients).map(move |client| (client, i)));
        let started = Instant::now();
        let prepared: Vec<(usize, PreparedOpening)> = stream::iter(jobs)
            .map(|(client, i)| {
                let doctor = &self.doctors[client];
                let patient = &doctor.patients[i % OPENED_PATIENTS];
                let prover = &provers[client];
                async move {
                    let opening = prover
                        .prepare_proof(&self.key, &doctor.secret, patient, &[AccessScope::Read])
                        .await
                        .expect("prepare a proof");
                    (client, opening)
                }
            })
            .buffer_unordered(PROVERS)
            .collect()
            .await;
        let elapsed = started.elapsed();
        let mut by_client: Vec<Vec<PreparedOpening>> = (0..clients).map(|_| Vec::new()).collect();
        for (client, opening) in prepared {
            by_client[client].push(opening);
        }
        (by_client, elapsed)
    }

    /// Sends each client's proofs, one after the other, all clients at once; aborts the run if
    /// any opening fails.
    async fn open_level(&self, proofs: &[Vec<PreparedOpening>]) -> Run {
        let clients: Vec<MedvaultClient> = self.doctors[..proofs.len()]
            .iter()
            .map(|doctor| self.client(&doctor.account.token))
            .collect();
        let started = Instant::now();
        let outcomes = join_all(
            clients
                .iter()
                .zip(proofs)
                .map(|(client, proofs)| async move {
                    let mut latencies = Vec::with_capacity(proofs.len());
                    let mut failures = Vec::new();
                    for opening in proofs {
                        let sent = Instant::now();
                        match client.open_prepared(opening).await {
                            Ok(_) => latencies.push(sent.elapsed()),
                            Err(error) => failures.push(error.to_string()),
                        }
                    }
                    (latencies, failures)
                }),
        )
        .await;
        let elapsed = started.elapsed();
        let (latencies, failures): (Vec<_>, Vec<_>) = outcomes.into_iter().unzip();
        let failures: Vec<String> = failures.into_iter().flatten().collect();
        assert!(
            failures.is_empty(),
            "{} of {OPENINGS_PER_LEVEL} openings failed; the first: {}",
            failures.len(),
            failures[0]
        );
        Run::from_clients(latencies, elapsed)
    }

    /// `READS_PER_CLIENT` reads by each of `readers` (a token and the patient it reads), all
    /// at once; every read must return the patient's records.
    async fn read_phase(&self, readers: &[(&str, &str)]) -> Run {
        let clients: Vec<(MedvaultClient, &str)> = readers
            .iter()
            .map(|(token, patient)| (self.client(token), *patient))
            .collect();
        let started = Instant::now();
        let latencies = join_all(clients.iter().map(|(client, patient)| async move {
            let mut latencies = Vec::with_capacity(READS_PER_CLIENT);
            for _ in 0..READS_PER_CLIENT {
                let sent = Instant::now();
                let data = client
                    .graphql(READ_QUERY, json!({ "id": patient }))
                    .await
                    .expect("read records");
                latencies.push(sent.elapsed());
                let read = data["patient"]["records"]["nodes"]
                    .as_array()
                    .map_or(0, Vec::len);
                assert_eq!(read, RECORDS_PER_PATIENT, "a read of {patient}: {data}");
            }
            latencies
        }))
        .await;
        Run::from_clients(latencies, started.elapsed())
    }
}

/// An admin creates doctor number `n`, who signs in, registers a grantee key and is granted
/// READ and WRITE by `OPENED_PATIENTS + 1` new patients, each of whom signs in to grant.
async fn enrol_doctor(address: &str, admin: &MedvaultClient, n: usize) -> Doctor {
    let username = format!("bench-doctor-{n}");
    let created = admin
        .graphql(
            "mutation($i: CreateDoctorInput!) { createDoctor(input: $i) { id } }",
            json!({ "i": { "username": username, "password": PASSWORD,
                           "fullName": format!("Dr. Bench {n}"), "specialty": "Lab" } }),
        )
        .await
        .expect("create a doctor");
    let id = created["createDoctor"]["id"]
        .as_str()
        .expect("doctor id")
        .to_owned();
    let account = sign_in(address, &username, id).await;
    let secret = GranteeSecret::generate(&mut OsRng);
    MedvaultClient::new(address)
        .expect("client")
        .with_token(account.token.clone())
        .register_grantee_key(&secret)
        .await
        .expect("register a grantee key");
    let mut patients = Vec::new();
    for p in 0..=OPENED_PATIENTS {
        patients.push(enrol_patient(address, admin, &account.id, &format!("{n}-{p}")).await);
    }
    let reader = patients.pop().expect("the reader patient");
    Doctor {
        account,
        secret,
        patients: patients.into_iter().map(|patient| patient.id).collect(),
        reader,
    }
}

/// An admin creates a patient, who signs in and grants `doctor` READ and WRITE for a day.
async fn enrol_patient(address: &str, admin: &MedvaultClient, doctor: &str, name: &str) -> Account {
    let username = format!("bench-patient-{name}");
    let created = admin
        .graphql(
            "mutation($i: CreatePatientInput!) { createPatient(input: $i) { id } }",
            json!({ "i": { "username": username, "password": PASSWORD,
                           "personal": { "fullName": format!("Patient {name}"),
                                         "dateOfBirth": "1980-01-01", "sex": "OTHER" },
                           "medical": { "allergies": [], "chronicConditions": [] } } }),
        )
        .await
        .expect("create a patient");
    let id = created["createPatient"]["id"]
        .as_str()
        .expect("patient id")
        .to_owned();
    let account = sign_in(address, &username, id).await;
    MedvaultClient::new(address)
        .expect("client")
        .with_token(account.token.clone())
        .graphql(
            "mutation($d: ID!, $e: DateTime!) {
               grantAccess(doctorId: $d, scopes: [READ, WRITE], expiresAt: $e) { id } }",
            json!({ "d": doctor,
                    "e": (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339() }),
        )
        .await
        .expect("grant access");
    account
}

async fn sign_in(address: &str, username: &str, id: String) -> Account {
    let mut client = MedvaultClient::new(address).expect("client");
    client.login(username, PASSWORD).await.expect("login");
    Account {
        id,
        token: client.token().expect("token").to_owned(),
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "**not met**"
    }
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let started = Instant::now();
        println!("load average at the start: {}", load_average());
        let fixture = Fixture::new().await;
        fixture.wait_until_anchored().await;
        fixture.write_records().await;
        fixture.wait_until_anchored().await;
        println!(
            "setup: {DOCTORS} doctors, {} patients, {} records, in {:.0} s",
            DOCTORS * (OPENED_PATIENTS + 1),
            DOCTORS * (OPENED_PATIENTS + 1) * RECORDS_PER_PATIENT,
            started.elapsed().as_secs_f64()
        );

        let mut openings = Vec::new();
        for clients in LEVELS {
            let (proofs, proving) = fixture.prepare_level(clients).await;
            println!(
                "{clients} clients: {OPENINGS_PER_LEVEL} proofs made in {:.1} s ({:.1} proofs/s, \
                 {PROVERS} at once), load average {}",
                proving.as_secs_f64(),
                OPENINGS_PER_LEVEL as f64 / proving.as_secs_f64(),
                load_average()
            );
            openings.push((clients, fixture.open_level(&proofs).await));
        }

        for doctor in &fixture.doctors {
            fixture
                .open(doctor, &doctor.reader.id, &[AccessScope::Read])
                .await;
        }
        let doctors: Vec<(&str, &str)> = fixture
            .doctors
            .iter()
            .map(|doctor| (doctor.account.token.as_str(), doctor.reader.id.as_str()))
            .collect();
        let patients: Vec<(&str, &str)> = fixture
            .doctors
            .iter()
            .map(|doctor| (doctor.reader.token.as_str(), doctor.reader.id.as_str()))
            .collect();
        // One unrecorded round of each, to warm the server's caches and statement caches.
        fixture.read_phase(&doctors).await;
        fixture.read_phase(&patients).await;
        let (mut doctor_runs, mut patient_runs) = (Vec::new(), Vec::new());
        for round in 0..READ_ROUNDS {
            if round % 2 == 0 {
                doctor_runs.push(fixture.read_phase(&doctors).await);
                patient_runs.push(fixture.read_phase(&patients).await);
            } else {
                patient_runs.push(fixture.read_phase(&patients).await);
                doctor_runs.push(fixture.read_phase(&doctors).await);
            }
        }
        let doctor_reads = merge(&doctor_runs);
        let patient_reads = merge(&patient_runs);
        let mut round_ratios: Vec<f64> = doctor_runs
            .iter()
            .zip(&patient_runs)
            .map(|(doctor, patient)| doctor.per_second() / patient.per_second())
            .collect();
        round_ratios.sort_by(f64::total_cmp);
        let ratio = doctor_reads.per_second() / patient_reads.per_second();

        println!();
        println!("| what | clients | operations | throughput | p50 | p99 | bar (MISSION.md) |");
        println!("| --- | --- | --- | --- | --- | --- | --- |");
        for (clients, run) in &openings {
            let bar = if *clients == DOCTORS {
                let met =
                    run.per_second() >= OPENINGS_BAR_PER_SECOND && run.p99() <= OPENINGS_BAR_P99;
                format!("≥ 400/s and p99 ≤ 100 ms: {}", verdict(met))
            } else {
                String::new()
            };
            println!(
                "| `openConsent` (proof verified, challenge spent, logged) | {clients} | {} | \
                 {:.0} openings/s | {} | {} | {bar} |",
                run.operations,
                run.per_second(),
                millis(run.p50()),
                millis(run.p99())
            );
        }
        for (what, run) in [
            (
                "records read by a doctor in a consent session",
                &doctor_reads,
            ),
            ("the same read by the patient (baseline)", &patient_reads),
        ] {
            println!(
                "| {what} | {DOCTORS} | {} | {:.0} reads/s | {} | {} | |",
                run.operations,
                run.per_second(),
                millis(run.p50()),
                millis(run.p99())
            );
        }
        println!();
        println!(
            "reads, doctor / patient: {ratio:.3} over all {READ_ROUNDS} rounds (per round {:.3} to \
             {:.3}, median {:.3}); bar ≥ {READ_RATIO_BAR}: {}",
            round_ratios[0],
            round_ratios[round_ratios.len() - 1],
            round_ratios[round_ratios.len() / 2],
            verdict(ratio >= READ_RATIO_BAR)
        );
        println!(
            "run: {:.0} s, load average at the end: {}",
            started.elapsed().as_secs_f64(),
            load_average()
        );
    });
}

/// The runs of one kind taken together: all their operations over all their time.
fn merge(runs: &[Run]) -> Run {
    let mut latencies: Vec<Duration> = runs
        .iter()
        .flat_map(|run| run.latencies.iter().copied())
        .collect();
    latencies.sort();
    Run {
        operations: latencies.len(),
        elapsed: runs.iter().map(|run| run.elapsed).sum(),
        latencies,
    }
}
