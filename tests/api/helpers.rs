//! `spawn_app()`: a real server on a free port over a fresh database, and a small GraphQL client.
//!
//! With `DATABASE_URL` unset, one throwaway PostgreSQL cluster serves the whole test binary
//! (started on first use, stopped at exit); each test gets its own database in it.

use medvault_circuits::field::field_to_hex;
use medvault_circuits::{ConsentProvingKey, GranteeSecret};
use medvault_client::{AccessScope, MedvaultClient};
use medvault_server::configuration::{ApplicationConfig, ServerSettings};
use medvault_server::graphql::QueryLimits;
use medvault_server::postgres_cluster::ScratchServer;
use medvault_server::startup::Application;
use medvault_vault::anchoring::AnchoringWorker;
use medvault_vault::auth::Operator;
use medvault_vault::{
    ChainTarget, LoginThrottle, MasterKeySource, NewStaffUser, Vault, VaultConfig,
};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery staple";

/// The consent tree depth of test servers: 4^3 = 64 grants per hospital, keys made in a second.
pub const CONSENT_DEPTH: u32 = 3;

/// The consent side a vault reopened by a test (as a restarted server would) is opened with.
pub fn consent_config() -> medvault_vault::consent::ConsentConfig {
    medvault_vault::consent::ConsentConfig {
        keys_dir: consent_keys().0.clone(),
        depth_if_created: CONSENT_DEPTH,
        settings: medvault_vault::consent::ConsentSettings::default(),
    }
}

/// The consent keys every test server of this binary uses, made once in a temporary directory,
/// and the proving key loaded from it.
pub fn consent_keys() -> &'static (PathBuf, Arc<ConsentProvingKey>) {
    static KEYS: OnceLock<(PathBuf, Arc<ConsentProvingKey>)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("medvault-consent-keys-{}", Uuid::new_v4()));
        medvault_vault::consent::keys::ConsentKeys::load_or_create(&dir, CONSENT_DEPTH)
            .expect("test consent keys");
        let proving =
            ConsentProvingKey::read(&dir.join(medvault_circuits::setup::PROVING_KEY_FILE))
                .expect("read the proving key");
        (dir, Arc::new(proving))
    })
}

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    pub address: String,
    pub database_url: String,
    /// The master key, for running the binary against the same vault.
    pub master_key_hex: String,
    /// Where the server's export jobs write.
    pub export_dir: std::path::PathBuf,
    pub vault: Vault,
    /// The application's anchoring worker, with [`AppOptions::anchoring`].
    pub anchoring: Option<AnchoringWorker>,
    /// Where the application's embedded chain lives, with [`AppOptions::anchoring`].
    pub chain_dir: Option<std::path::PathBuf>,
    http: reqwest::Client,
    /// The grantee secret of each doctor [`TestApp::create_doctor`] made, by their token: what
    /// each doctor's own machine would hold.
    secrets: Mutex<HashMap<String, GranteeSecret>>,
}

/// Everything a server can be configured with in tests.
#[derive(Default)]
pub struct AppOptions {
    pub introspection: bool,
    pub login_throttle: LoginThrottle,
    /// Anchor on an embedded chain in a fresh temporary directory (slower to start, so only
    /// for the tests that look at anchors).
    pub anchoring: bool,
    /// The consent proof flow's time limits.
    pub consent: medvault_vault::consent::ConsentSettings,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    let server = ScratchServer::get().expect("a PostgreSQL server for tests");
    let database_url = server
        .create_database()
        .await
        .expect("create test database");
    let master_key_hex = format!(
        "{:032x}{:032x}",
        Uuid::new_v4().as_u128(),
        Uuid::new_v4().as_u128()
    );
    let export_dir =
        std::env::temp_dir().join(format!("medvault-exports-{}", Uuid::new_v4().simple()));
    let chain_dir = options
        .anchoring
        .then(|| std::env::temp_dir().join(format!("medvault-chain-{}", Uuid::new_v4().simple())));
    let config = ApplicationConfig {
        settings: ServerSettings {
            bind: "127.0.0.1:0".parse().expect("address"),
            limits: QueryLimits::new(options.introspection),
            graphiql: options.introspection,
            workers: 1,
            ..ServerSettings::default()
        },
        vault: VaultConfig {
            pool_size: 16,
            session_ttl: chrono::Duration::hours(1),
            export_dir: export_dir.clone(),
            login_throttle: options.login_throttle,
            // Founded by the hospital of `care_team`, the one the anchoring tests use.
            chain: chain_dir
                .clone()
                .map_or(ChainTarget::None, |dir| ChainTarget::Embedded {
                    dir,
                    founders: vec!["St. Mary's".into()],
                }),
            consent_keys_dir: consent_keys().0.clone(),
            consent: options.consent,
            ..VaultConfig::new(
                database_url.clone(),
                MasterKeySource::Hex(master_key_hex.clone()),
            )
        },
    };
    let application = Application::build(config).await.expect("build application");
    let address = format!("http://127.0.0.1:{}", application.port());
    let vault = application.services().vault().clone();
    let anchoring = application.services().anchoring().cloned();
    tokio::spawn(application.run_until_stopped());
    TestApp {
        address,
        database_url,
        master_key_hex,
        export_dir,
        vault,
        anchoring,
        chain_dir,
        http: reqwest::Client::new(),
        secrets: Mutex::new(HashMap::new()),
    }
}

/// What `openConsent` is sent: the challenge, the root proved against and the proof, in the
/// API's hex forms.
#[derive(Clone, Debug)]
pub struct ConsentOpening {
    pub challenge: String,
    pub root: String,
    pub proof: String,
}

/// A hospital with an admin, a doctor, and a patient who granted that doctor read and write.
pub struct CareTeam {
    pub admin: String,
    pub doctor: String,
    pub patient: String,
    pub patient_id: String,
}

/// A GraphQL answer: data and errors.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// The data, asserting there were no errors.
    pub fn data(&self) -> &Value {
        assert!(
            self.body.get("errors").is_none(),
            "unexpected errors: {:#}",
            self.body
        );
        &self.body["data"]
    }

    /// The first error's `extensions.code`, or None.
    pub fn error_code(&self) -> Option<&str> {
        self.body["errors"][0]["extensions"]["code"].as_str()
    }

    /// Asserts the request failed with `code` and returned no data: `data` is absent, null, or
    /// null in every field.
    pub fn expect_error(&self, code: &str) {
        assert_eq!(
            self.error_code(),
            Some(code),
            "expected {code}, got {:#}",
            self.body
        );
        let data = &self.body["data"];
        let nothing = match data {
            Value::Null => true,
            Value::Object(fields) => fields.values().all(Value::is_null),
            _ => false,
        };
        assert!(nothing, "{code} came with data: {:#}", self.body);
    }
}

impl TestApp {
    /// Posts a GraphQL request with an optional bearer token.
    pub async fn graphql(&self, token: Option<&str>, query: &str, variables: Value) -> Answer {
        self.post_json(token, &json!({ "query": query, "variables": variables }))
            .await
    }

    /// Posts any JSON body to /graphql.
    pub async fn post_json(&self, token: Option<&str>, body: &Value) -> Answer {
        let mut request = self
            .http
            .post(format!("{}/graphql", self.address))
            .json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("send request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("read the answer");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("the answer ({status}) is not JSON: {text}"));
        Answer { status, body }
    }

    /// Posts raw bytes to /graphql.
    pub async fn post_raw(&self, body: Vec<u8>) -> reqwest::Response {
        self.http
            .post(format!("{}/graphql", self.address))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("send request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("send request")
    }

    /// Logs in and returns the token.
    pub async fn login(&self, username: &str) -> String {
        let answer = self
            .graphql(
                None,
                "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }",
                json!({ "u": username, "p": PASSWORD }),
            )
            .await;
        answer.data()["login"]["token"]
            .as_str()
            .expect("token")
            .to_owned()
    }

    /// The usual cast of a test: admin `admin-a`, doctor `dr-a`, patient `jane` ("Jane Roe")
    /// who granted dr-a read and write, and a consent session dr-a opened with a proof.
    pub async fn care_team(&self) -> CareTeam {
        let admin = self.bootstrap_admin("St. Mary's", "admin-a").await;
        let (doctor_id, doctor) = self.create_doctor(&admin, "dr-a").await;
        let (patient_id, patient) = self.create_patient(&admin, "jane", "Jane Roe").await;
        self.grant(&patient, &doctor_id, &["READ", "WRITE"]).await;
        self.open_consent(&doctor, &patient_id, &["READ", "WRITE"])
            .await;
        CareTeam {
            admin,
            doctor,
            patient,
            patient_id,
        }
    }

    /// Bootstraps a hospital and its first admin as `medvault admin create` does; returns the
    /// admin's token.
    pub async fn bootstrap_admin(&self, hospital: &str, username: &str) -> String {
        let admin = NewStaffUser {
            username: username.into(),
            password: PASSWORD.into(),
            role: medvault_vault::domain::Role::Admin,
            display_name: format!("Admin of {hospital}"),
            specialty: None,
        };
        self.vault
            .create_hospital_admin(&Operator::at_command_line(), hospital, admin)
            .await
            .expect("admin");
        self.login(username).await
    }

    /// An admin creates a doctor, who makes a grantee secret and registers its commitment;
    /// returns (id, token).
    pub async fn create_doctor(&self, admin: &str, username: &str) -> (String, String) {
        let (id, token) = self.create_doctor_without_key(admin, username).await;
        let secret = GranteeSecret::generate(&mut medvault_circuits::OsRng);
        self.register_grantee_key(&token, &secret).await.data();
        self.secrets
            .lock()
            .expect("secrets")
            .insert(token.clone(), secret);
        (id, token)
    }

    /// A doctor registers the commitment to `secret`.
    pub async fn register_grantee_key(&self, doctor: &str, secret: &GranteeSecret) -> Answer {
        self.graphql(
            Some(doctor),
            "mutation($c: String!) { registerGranteeKey(commitment: $c) { commitment rekeyedGrants } }",
            json!({ "c": field_to_hex(secret.commitment()) }),
        )
        .await
    }

    /// The secret [`TestApp::create_doctor`] made for the doctor signed in with `doctor`.
    pub fn secret_of(&self, doctor: &str) -> GranteeSecret {
        self.secrets
            .lock()
            .expect("secrets")
            .get(doctor)
            .cloned()
            .expect("a doctor made by create_doctor")
    }

    /// Proves the doctor's consent to `scopes` on the patient and opens a consent session for
    /// the doctor's token, asserting it opens.
    pub async fn open_consent(&self, doctor: &str, patient_id: &str, scopes: &[&str]) {
        let opening = self
            .prepare_consent(doctor, &self.secret_of(doctor), patient_id, scopes)
            .await;
        self.try_open_consent(doctor, patient_id, scopes, &opening)
            .await
            .data();
    }

    /// A challenge and witness fetched for the doctor, and a proof made with `secret` by the
    /// doctor's client library: an opening not yet sent.
    pub async fn prepare_consent(
        &self,
        doctor: &str,
        secret: &GranteeSecret,
        patient_id: &str,
        scopes: &[&str],
    ) -> ConsentOpening {
        let scopes: Vec<AccessScope> = scopes
            .iter()
            .map(|scope| match *scope {
                "READ" => AccessScope::Read,
                "WRITE" => AccessScope::Write,
                other => panic!("no consent session scope {other}"),
            })
            .collect();
        let prepared = MedvaultClient::new(&self.address)
            .expect("client")
            .with_token(doctor)
            .prepare_proof(&consent_keys().1, secret, patient_id, &scopes)
            .await
            .expect("prepare a consent proof");
        ConsentOpening {
            challenge: field_to_hex(prepared.public.challenge),
            root: field_to_hex(prepared.public.root),
            proof: hex::encode(prepared.proof.to_bytes()),
        }
    }

    /// Sends an opening.
    pub async fn try_open_consent(
        &self,
        doctor: &str,
        patient_id: &str,
        scopes: &[&str],
        opening: &ConsentOpening,
    ) -> Answer {
        self.graphql(
            Some(doctor),
            "mutation($p: ID!, $s: [AccessScope!]!, $c: String!, $r: String!, $x: String!) {
               openConsent(patientId: $p, scopes: $s, challenge: $c, root: $r, proof: $x) {
                 id scopes expiresAt } }",
            json!({ "p": patient_id, "s": scopes, "c": opening.challenge, "r": opening.root,
                    "x": opening.proof }),
        )
        .await
    }

    /// An admin creates a doctor who registers no grantee key; returns (id, token).
    pub async fn create_doctor_without_key(&self, admin: &str, username: &str) -> (String, String) {
        let answer = self
            .graphql(
                Some(admin),
                "mutation($input: CreateDoctorInput!) { createDoctor(input: $input) { id } }",
                json!({ "input": { "username": username, "password": PASSWORD,
                                   "fullName": format!("Dr. {username}"), "specialty": "Cardiology" } }),
            )
            .await;
        let id = answer.data()["createDoctor"]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        (id, self.login(username).await)
    }

    /// An admin creates a staff user of another role in their hospital; returns the token.
    pub async fn create_staff(&self, admin: &str, username: &str, role: &str) -> String {
        self.try_create_staff(admin, username, role, None)
            .await
            .data();
        self.login(username).await
    }

    /// An admin creates a staff user, in `organization` if given.
    pub async fn try_create_staff(
        &self,
        admin: &str,
        username: &str,
        role: &str,
        organization: Option<&str>,
    ) -> Answer {
        self.graphql(
            Some(admin),
            "mutation($input: CreateUserInput!) { createUser(input: $input) { id } }",
            json!({ "input": { "username": username, "password": PASSWORD, "role": role,
                               "displayName": username, "organizationId": organization } }),
        )
        .await
    }

    /// GETs a path with an optional bearer token.
    pub async fn get_with(&self, token: Option<&str>, path: &str) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("send request")
    }

    /// An admin registers a patient named `full_name`; returns (id, token).
    pub async fn create_patient(
        &self,
        admin: &str,
        username: &str,
        full_name: &str,
    ) -> (String, String) {
        let answer = self
            .graphql(
                Some(admin),
                "mutation($input: CreatePatientInput!) { createPatient(input: $input) { id } }",
                json!({ "input": {
                    "username": username, "password": PASSWORD,
                    "personal": { "fullName": full_name, "dateOfBirth": "1984-03-09", "sex": "FEMALE",
                                  "address": "12 Harbour Lane", "postalCode": "02139",
                                  "phone": "+1-555-0101", "email": format!("{username}@example.org") },
                    "medical": { "bloodType": "O+", "heightCm": 168.0, "weightKg": 61.5,
                                 "allergies": ["Penicillin"], "chronicConditions": ["Asthma"] } } }),
            )
            .await;
        let id = answer.data()["createPatient"]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        (id, self.login(username).await)
    }

    /// The patient grants a doctor `scopes` for a day; returns the grant id.
    pub async fn grant(&self, patient: &str, doctor_id: &str, scopes: &[&str]) -> String {
        let expires_at = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
        let answer = self
            .graphql(
                Some(patient),
                "mutation($d: ID!, $s: [AccessScope!]!, $e: DateTime!) {
                   grantAccess(doctorId: $d, scopes: $s, expiresAt: $e) { id } }",
                json!({ "d": doctor_id, "s": scopes, "e": expires_at }),
            )
            .await;
        answer.data()["grantAccess"]["id"]
            .as_str()
            .expect("grant id")
            .to_owned()
    }

    /// A doctor adds a heart-rate observation; returns the record id.
    pub async fn add_record(&self, doctor: &str, patient_id: &str, value: &str) -> String {
        let answer = self.try_add_record(doctor, patient_id, value).await;
        answer.data()["addMedicalRecord"]["id"]
            .as_str()
            .expect("record id")
            .to_owned()
    }

    pub async fn try_add_record(&self, token: &str, patient_id: &str, value: &str) -> Answer {
        self.graphql(
            Some(token),
            "mutation($p: ID!, $r: MedicalRecordInput!) { addMedicalRecord(patientId: $p, record: $r) { id version } }",
            json!({ "p": patient_id, "r": heart_rate(value) }),
        )
        .await
    }

    /// Runs plain SQL against the test database (for arranging what the API cannot, such as an
    /// expired grant, and for inspecting what was stored).
    pub async fn sql(&self, statement: &str) -> Vec<tokio_postgres::Row> {
        let client = self.vault.pool().get().await.expect("connection");
        client.query(statement, &[]).await.expect("sql")
    }

    /// `pg_dump` of the whole test database, as text.
    pub fn pg_dump(&self) -> String {
        let program = ScratchServer::get()
            .expect("scratch server")
            .program("pg_dump");
        let output = std::process::Command::new(program)
            .arg(format!("--dbname={}", self.database_url))
            .args(["--data-only", "--no-owner"])
            .output()
            .expect("run pg_dump");
        assert!(
            output.status.success(),
            "pg_dump failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("utf-8 dump")
    }
}

/// A heart-rate observation with the given value text.
pub fn heart_rate(value: &str) -> Value {
    json!({ "kind": "OBSERVATION", "codeSystem": "LOINC", "code": "8867-4", "value": value,
            "unit": "/min", "effectiveAt": "2026-01-15T08:30:00Z", "note": null })
}
