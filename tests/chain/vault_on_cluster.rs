//! A `medvault serve` process anchoring on three validator processes (`--chain-node` naming all
//! three) while a doctor writes records through it: the server killed with SIGKILL at random
//! points of the load and restarted five times, the chain's leader killed, then the whole chain
//! down for 30 s. After each, every acknowledged write is stored and anchored exactly once.

use super::{count_entries, free_address, Cluster};
use medvault_anchor_chain::bytes::Hash32;
use medvault_anchor_chain::entry::Entry;
use medvault_circuits::{GranteeSecret, OsRng};
use medvault_client::{AccessScope, MedvaultClient};
use medvault_server::postgres_cluster::ScratchServer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MASTER_KEY: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
const PASSWORD: &str = "correct horse battery staple";

/// A `medvault serve` process on a fixed port, anchoring on the cluster; killed on drop.
pub(super) struct Server {
    child: Option<Child>,
    bind: String,
    database_url: String,
    nodes: String,
    dir: PathBuf,
}

impl Server {
    /// A server over `database_url` anchoring on `cluster`'s founding validators, logging and
    /// keeping its keys in `dir`; not started.
    pub(super) fn on(cluster: &Cluster, database_url: String, dir: &std::path::Path) -> Server {
        let nodes: Vec<&str> = (1..=3).map(|id| cluster.addresses[&id].as_str()).collect();
        Server {
            child: None,
            bind: free_address(),
            database_url,
            nodes: nodes.join(","),
            dir: dir.to_owned(),
        }
    }

    /// A `medvault` command on the server's database, master key and chain.
    pub(super) fn medvault(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_medvault"));
        command
            .env("DATABASE_URL", &self.database_url)
            .env("MEDVAULT_CHAIN_NODE", &self.nodes)
            .env("MEDVAULT_MASTER_KEY", MASTER_KEY)
            .env_remove("MEDVAULT_MASTER_KEY_FILE")
            .env("MEDVAULT_CONSENT_KEYS", self.dir.join("consent-keys"))
            .env("MEDVAULT_CONSENT_DEPTH", "1");
        command
    }

    pub(super) fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .expect("server log");
        let child = self
            .medvault()
            .args(["serve", "--bind", &self.bind, "--chain-node", &self.nodes])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start medvault serve");
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown path runs.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill the server");
            child.wait().expect("reap the server");
        }
    }

    pub(super) fn url(&self) -> String {
        format!("http://{}", self.bind)
    }

    pub(super) async fn wait_until_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let http = reqwest::Client::new();
        loop {
            let ready = http.get(format!("{}/health", self.url())).send().await;
            if ready.is_ok_and(|response| response.status().is_success()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not start: {}",
                std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub(super) async fn graphql(client: &MedvaultClient, query: &str, variables: Value) -> Value {
    client
        .graphql(query, variables)
        .await
        .unwrap_or_else(|error| panic!("{query}: {error}"))
}

/// A client logged in as `username`, and the user's id.
pub(super) async fn logged_in(server: &Server, username: &str) -> (MedvaultClient, String) {
    let mut client = MedvaultClient::new(&server.url()).expect("a client");
    let logged_in = client.login(username, PASSWORD).await.expect("login");
    (client, logged_in.user_id)
}

/// Makes an admin of `hospital` (with `medvault admin create`), a doctor with a registered
/// grantee key, a patient who grants the doctor write access, and the doctor's consent session;
/// returns the doctor's client (its token opened the session) and the patient's id.
pub(super) async fn care_team(server: &Server, hospital: &str) -> (MedvaultClient, String) {
    let created = server
        .medvault()
        .args([
            "admin",
            "create",
            "--hospital",
            hospital,
            "--username",
            "admin",
        ])
        .env("MEDVAULT_ADMIN_PASSWORD", PASSWORD)
        .output()
        .expect("run medvault admin create");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let (admin, _) = logged_in(server, "admin").await;
    graphql(
        &admin,
        "mutation($input: CreateDoctorInput!) { createDoctor(input: $input) { id } }",
        json!({ "input": { "username": "dr-anchor", "password": PASSWORD,
                           "fullName": "Dr Anchor", "specialty": "Cardiology" } }),
    )
    .await;
    let patient = graphql(
        &admin,
        "mutation($input: CreatePatientInput!) { createPatient(input: $input) { id } }",
        json!({ "input": {
            "username": "pat-anchor", "password": PASSWORD,
            "personal": { "fullName": "Pat Anchor", "dateOfBirth": "1970-01-01", "sex": "MALE",
                          "address": "1 Quay", "postalCode": "02139", "phone": "+1-555-0100",
                          "email": "pat@example.org" },
            "medical": { "bloodType": "A+", "heightCm": 180.0, "weightKg": 80.0,
                         "allergies": [], "chronicConditions": [] } } }),
    )
    .await;
    let patient_id = patient["createPatient"]["id"]
        .as_str()
        .expect("patient id")
        .to_owned();
    let (doctor, doctor_id) = logged_in(server, "dr-anchor").await;
    let secret = GranteeSecret::generate(&mut OsRng);
    doctor
        .register_grantee_key(&secret)
        .await
        .expect("register the grantee key");
    let (patient, _) = logged_in(server, "pat-anchor").await;
    let expires_at = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    graphql(
        &patient,
        "mutation($d: ID!, $s: [AccessScope!]!, $e: DateTime!) {
           grantAccess(doctorId: $d, scopes: $s, expiresAt: $e) { id } }",
        json!({ "d": doctor_id, "s": ["READ", "WRITE"], "e": expires_at }),
    )
    .await;
    let key = doctor.proving_key(None).await.expect("the proving key");
    let opened = loop {
        match doctor
            .open_consent(&key, &secret, &patient_id, &[AccessScope::Write])
            .await
        {
            Ok(opened) => break opened,
            // The grant's root may not be anchored yet.
            Err(error) if error.to_string().contains("CONFLICT") => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(error) => panic!("open consent: {error}"),
        }
    };
    assert_eq!(opened.patient_id, patient_id);
    (doctor, patient_id)
}

/// The three founding validators running in `dir`, once they have a leader, and a new
/// database for a server.
pub(super) async fn founders_and_database(dir: &std::path::Path) -> (Cluster, String) {
    let cluster = Cluster::new(dir);
    for id in 1..=3 {
        cluster.start(id);
    }
    cluster.leader(&[1, 2, 3], Duration::from_secs(30)).await;
    let database_url = ScratchServer::get()
        .expect("a PostgreSQL server for tests")
        .create_database()
        .await
        .expect("a test database");
    (cluster, database_url)
}

/// Records the doctor's writes acknowledged by the server, by record id.
#[derive(Clone, Default)]
struct Acknowledged(Arc<Mutex<Vec<String>>>);

impl Acknowledged {
    fn ids(&self) -> Vec<String> {
        self.0.lock().expect("acknowledged").clone()
    }
}

/// How the test steers the write load.
#[derive(Default)]
struct LoadControl {
    /// Ends the load.
    stop: std::sync::atomic::AtomicBool,
    /// Holds the load while a phase is checked.
    paused: std::sync::atomic::AtomicBool,
}

impl LoadControl {
    fn set(flag: &std::sync::atomic::AtomicBool, value: bool) {
        flag.store(value, std::sync::atomic::Ordering::Relaxed);
    }

    fn is(flag: &std::sync::atomic::AtomicBool) -> bool {
        flag.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Holds the load, and waits out a request in flight.
    async fn pause(&self) {
        Self::set(&self.paused, true);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Writes one record after another until stopped; failures (the server down) are retried
/// after a pause.
fn write_load(
    doctor: MedvaultClient,
    patient_id: String,
    acknowledged: Acknowledged,
    control: Arc<LoadControl>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut value = 40;
        while !LoadControl::is(&control.stop) {
            if LoadControl::is(&control.paused) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            value = value % 150 + 1;
            let written = doctor
                .graphql(
                    "mutation($p: ID!, $r: MedicalRecordInput!) {
                       addMedicalRecord(patientId: $p, record: $r) { id } }",
                    json!({ "p": patient_id, "r": {
                        "kind": "OBSERVATION", "codeSystem": "LOINC", "code": "8867-4",
                        "value": value.to_string(), "unit": "/min",
                        "effectiveAt": "2026-01-15T08:30:00Z", "note": null } }),
                )
                .await;
            match written {
                Ok(data) => {
                    let id = data["addMedicalRecord"]["id"]
                        .as_str()
                        .expect("record id")
                        .to_owned();
                    acknowledged.0.lock().expect("acknowledged").push(id);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
}

/// Outbox rows not anchored yet.
async fn pending_anchors(database: &tokio_postgres::Client) -> i64 {
    database
        .query_one(
            "SELECT count(*) FROM anchor_outbox WHERE anchored_height IS NULL",
            &[],
        )
        .await
        .expect("count pending")
        .get(0)
}

/// Waits until the outbox holds nothing unanchored, then checks that every acknowledged record
/// is stored, and that every stored version's leaf is on the settled chain exactly once.
async fn assert_all_anchored_once(
    cluster: &Cluster,
    database: &tokio_postgres::Client,
    acknowledged: &[String],
    phase: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let pending = pending_anchors(database).await;
        if pending == 0 {
            break;
        }
        if Instant::now() > deadline {
            let rows = database
                .query(
                    "SELECT id, get_byte(entry, 0), chain_refusal FROM anchor_outbox
                     WHERE anchored_height IS NULL",
                    &[],
                )
                .await
                .expect("pending rows");
            let rows: Vec<(i64, i32, Option<String>)> = rows
                .iter()
                .map(|row| (row.get(0), row.get(1), row.get(2)))
                .collect();
            panic!("{phase}: {pending} entries never anchored: {rows:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored: HashSet<String> = database
        .query("SELECT id::text FROM records", &[])
        .await
        .expect("records")
        .iter()
        .map(|row| row.get(0))
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "{phase}: acknowledged but not stored: {lost:?}"
    );
    let chains = cluster
        .settled_chains(&[1, 2, 3], Duration::from_secs(60))
        .await;
    let on_chain = count_entries(&chains[0]);
    let leaves = database
        .query(
            "SELECT v.record_id::text, v.anchor_leaf, o.anchored_height
             FROM record_versions v
             JOIN anchor_outbox o ON o.entry = '\\x01'::bytea || v.anchor_leaf",
            &[],
        )
        .await
        .expect("leaves");
    let counts = database
        .query_one(
            "SELECT (SELECT count(*) FROM records), (SELECT count(*) FROM record_versions),
                    (SELECT count(*) FROM anchor_outbox WHERE get_byte(entry, 0) = 1),
                    (SELECT count(DISTINCT entry) FROM anchor_outbox WHERE get_byte(entry, 0) = 1)",
            &[],
        )
        .await
        .expect("counts");
    let counts: Vec<i64> = (0..4).map(|i| counts.get(i)).collect();
    assert_eq!(
        leaves.len(),
        stored.len(),
        "{phase}: one leaf per version (records, versions, record anchors queued, distinct: {counts:?})"
    );
    for row in &leaves {
        let leaf: Vec<u8> = row.get(1);
        let entry = Entry::RecordAnchor {
            leaf: Hash32(leaf.as_slice().try_into().expect("32 bytes")),
        };
        let places = on_chain.get(&entry.hash()).cloned().unwrap_or_default();
        let record: String = row.get(0);
        assert_eq!(places.len(), 1, "{phase}: record {record} is at {places:?}");
        assert_eq!(
            places[0].0 as i64,
            row.get::<_, i64>(2),
            "{phase}: the height recorded for record {record}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_is_anchored_once_through_server_kills_a_leader_kill_and_an_outage(
) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cluster, database_url) = founders_and_database(dir.path()).await;
    let (database, connection) = tokio_postgres::connect(&database_url, tokio_postgres::NoTls)
        .await
        .expect("a raw connection");
    tokio::spawn(connection);
    let mut server = Server::on(&cluster, database_url, dir.path());
    server.start();
    server.wait_until_serving().await;
    let (doctor, patient_id) = care_team(&server, "hospital 1").await;
    let acknowledged = Acknowledged::default();
    let control = Arc::new(LoadControl::default());
    let load = write_load(doctor, patient_id, acknowledged.clone(), control.clone());

    let mut rng = ChaCha8Rng::seed_from_u64(13);
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..1500))).await;
        server.kill();
        server.start();
        server.wait_until_serving().await;
    }
    control.pause().await;
    assert!(
        acknowledged.ids().len() >= 5,
        "the load made progress between kills"
    );
    assert_all_anchored_once(&cluster, &database, &acknowledged.ids(), "server kills").await;
    LoadControl::set(&control.paused, false);

    let leader = cluster.leader(&[1, 2, 3], Duration::from_secs(30)).await;
    let before = acknowledged.ids().len();
    cluster.kill(leader);
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.start(leader);
    tokio::time::sleep(Duration::from_secs(1)).await;
    control.pause().await;
    assert!(
        acknowledged.ids().len() > before,
        "writes go on without the leader"
    );
    assert_all_anchored_once(&cluster, &database, &acknowledged.ids(), "leader kill").await;
    LoadControl::set(&control.paused, false);

    for id in 1..=3 {
        cluster.kill(id);
    }
    let before = acknowledged.ids().len();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let during_outage = acknowledged.ids().len() - before;
    assert!(
        during_outage >= 10,
        "writes go on while the chain is down: {during_outage} in 30 s"
    );
    assert!(
        pending_anchors(&database).await >= during_outage as i64,
        "they wait in the outbox"
    );
    for id in 1..=3 {
        cluster.start(id);
    }
    LoadControl::set(&control.stop, true);
    load.await.expect("the load stops");
    assert_all_anchored_once(&cluster, &database, &acknowledged.ids(), "chain outage").await;
    server.kill();
}
