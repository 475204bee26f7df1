//! Anonymized exports end to end: research consent, ceilings, jobs, downloads, real readers and
//! the anchor.

use crate::helpers::{consent_keys, spawn_app, spawn_app_with, AppOptions, TestApp};
use medvault_anchor_chain::embedded::member_dir;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A hospital with an admin and a doctor, and a research institute with a researcher.
struct ExportSetting {
    hospital_id: String,
    admin: String,
    doctor: String,
    doctor_id: String,
    institute_id: String,
    researcher: String,
}

/// A hospital's admin and doctor: (hospital id, admin token, doctor id, doctor token).
async fn hospital_staff(
    app: &TestApp,
    hospital: &str,
    admin_username: &str,
    doctor_username: &str,
) -> (String, String, String, String) {
    let admin = app.bootstrap_admin(hospital, admin_username).await;
    let (doctor_id, doctor) = app.create_doctor(&admin, doctor_username).await;
    let me = app
        .graphql(Some(&admin), "{ me { organization { id } } }", json!({}))
        .await;
    let hospital_id = me.data()["me"]["organization"]["id"]
        .as_str()
        .expect("hospital id")
        .to_owned();
    (hospital_id, admin, doctor_id, doctor)
}

async fn export_setting(app: &TestApp) -> ExportSetting {
    let (hospital_id, admin, doctor_id, doctor) =
        hospital_staff(app, "St. Mary's", "admin-a", "dr-a").await;
    let created = app
        .graphql(
            Some(&admin),
            "mutation { createRecipientOrganization(name: \"Cohort Institute\", kind: RESEARCH) { id kind } }",
            json!({}),
        )
        .await;
    assert_eq!(
        created.data()["createRecipientOrganization"]["kind"],
        "RESEARCH"
    );
    let institute_id = created.data()["createRecipientOrganization"]["id"]
        .as_str()
        .expect("organization id")
        .to_owned();
    app.try_create_staff(&admin, "researcher-r", "RESEARCHER", Some(&institute_id))
        .await
        .data();
    let researcher = app.login("researcher-r").await;
    ExportSetting {
        hospital_id,
        admin,
        doctor,
        doctor_id,
        institute_id,
        researcher,
    }
}

const CEILING: &str = "mutation($role: Role!, $rules: ExportCeilingInput!) {
    setExportCeiling(role: $role, rules: $rules) { role rules { minK } } }";

fn ceiling_rules(min_k: u32) -> Value {
    json!({ "datasets": ["PATIENTS", "OBSERVATIONS", "CONDITIONS"], "minK": min_k, "minL": null,
            "maxSuppression": 0.1, "minBirthGranularityYears": 5, "allowZip3": true,
            "allowSex": true, "finestDates": "MONTH", "allowPerRecipientPseudonyms": false })
}

fn observations_policy(k: u32) -> Value {
    json!({ "dataset": "OBSERVATIONS", "ageBandYears": 10, "zip3": true, "dates": "YEAR", "k": k,
            "maxSuppression": 0.05 })
}

const REQUEST: &str =
    "mutation($policy: ExportPolicyInput!) { requestExport(policy: $policy) { id status } }";

const JOB: &str = "query($id: ID!) { exportJob(id: $id) {
    status progressDone progressTotal failure manifestSha3 anchoredHeight manifestPath
    manifest { personsIn personsOut personsSuppressed eventsOut kAchieved consentRoot
               files { name rows bytes sha3256 downloadPath } } } }";

/// A patient of the hospital who let the doctor write a heart rate of `value`, and consented
/// to research by the institute if `consents`; returns (patient token, research grant id).
async fn patient_with_record(
    app: &TestApp,
    setting: &ExportSetting,
    username: &str,
    full_name: &str,
    value: &str,
    consents: bool,
) -> (String, Option<String>) {
    let (patient_id, patient) = app
        .create_patient(&setting.admin, username, full_name)
        .await;
    app.grant(&patient, &setting.doctor_id, &["READ", "WRITE"])
        .await;
    app.open_consent(&setting.doctor, &patient_id, &["WRITE"])
        .await;
    app.add_record(&setting.doctor, &patient_id, value).await;
    let grant = if consents {
        let answer = app
            .graphql(
                Some(&patient),
                "mutation($o: ID!, $e: DateTime!) {
                   grantResearchConsent(organizationId: $o, expiresAt: $e) { id scopes organization { name } } }",
                json!({ "o": setting.institute_id,
                        "e": (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339() }),
            )
            .await;
        assert_eq!(
            answer.data()["grantResearchConsent"]["scopes"],
            json!(["RESEARCH"])
        );
        Some(
            answer.data()["grantResearchConsent"]["id"]
                .as_str()
                .expect("grant id")
                .to_owned(),
        )
    } else {
        None
    };
    (patient, grant)
}

/// Another hospital, `hospital`, with staff named after `prefix`, beside the same institute and
/// researcher as `setting`.
async fn another_hospital(
    app: &TestApp,
    setting: &ExportSetting,
    hospital: &str,
    prefix: &str,
) -> ExportSetting {
    let (hospital_id, admin, doctor_id, doctor) = hospital_staff(
        app,
        hospital,
        &format!("{prefix}-admin"),
        &format!("{prefix}-dr"),
    )
    .await;
    ExportSetting {
        hospital_id,
        admin,
        doctor,
        doctor_id,
        institute_id: setting.institute_id.clone(),
        researcher: setting.researcher.clone(),
    }
}

/// `count` patients of the setting's hospital (`{prefix}-0`, `{prefix}-1`, ...) with one heart
/// rate each, all consenting to research by the institute.
async fn consenting_patients(app: &TestApp, setting: &ExportSetting, prefix: &str, count: usize) {
    for index in 0..count {
        patient_with_record(
            app,
            setting,
            &format!("{prefix}-{index}"),
            "Pat Person",
            "70",
            true,
        )
        .await;
    }
}

/// The admin sets their hospital's researcher ceiling: k at least 5.
async fn set_researcher_ceiling(app: &TestApp, setting: &ExportSetting) {
    set_researcher_rules(app, setting, ceiling_rules(5)).await;
}

/// The admin sets their hospital's researcher ceiling to `rules`.
async fn set_researcher_rules(app: &TestApp, setting: &ExportSetting, rules: Value) {
    app.graphql(
        Some(&setting.admin),
        CEILING,
        json!({ "role": "RESEARCHER", "rules": rules }),
    )
    .await
    .data();
}

/// Requests an export and waits for the job to end; returns the job.
async fn run_export(app: &TestApp, token: &str, policy: Value) -> (String, Value) {
    let requested = app
        .graphql(Some(token), REQUEST, json!({ "policy": policy }))
        .await;
    let id = requested.data()["requestExport"]["id"]
        .as_str()
        .expect("job id")
        .to_owned();
    for _ in 0..600 {
        let job = app.graphql(Some(token), JOB, json!({ "id": id })).await;
        let job = job.data()["exportJob"].clone();
        if job["status"] == "SUCCEEDED" || job["status"] == "FAILED" {
            return (id, job);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("export job {id} did not finish within a minute");
}

/// Downloads every file of a finished job into a fresh directory.
async fn download(app: &TestApp, token: &str, job: &Value) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("medvault-download-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("download dir");
    let mut paths = vec![(
        "manifest.json".to_owned(),
        job["manifestPath"]
            .as_str()
            .expect("manifest path")
            .to_owned(),
    )];
    for file in job["manifest"]["files"].as_array().expect("files") {
        paths.push((
            file["name"].as_str().expect("name").to_owned(),
            file["downloadPath"].as_str().expect("path").to_owned(),
        ));
    }
    for (name, path) in paths {
        let response = app.get_with(Some(token), &path).await;
        assert_eq!(response.status().as_u16(), 200, "GET {path}");
        let bytes = response.bytes().await.expect("file body");
        std::fs::write(dir.join(name), bytes).expect("write download");
    }
    dir
}

fn python() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/setup",
        venv.display()
    );
    venv
}

/// Reads an export with pyarrow, polars and DuckDB; returns the readers' report.
fn read_with_real_readers(dir: &Path, tables: &str, k: u32, forbidden: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("exporter/tests/read_export.py");
    let output = Command::new(python())
        .arg(script)
        .arg(dir)
        .arg(tables)
        .arg(k.to_string())
        .arg("0")
        .args(forbidden)
        .output()
        .expect("run read_export.py");
    assert!(
        output.status.success(),
        "read_export.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("reader report")
}

fn audit_export(dir: &Path, chain: Option<&Path>) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_medvault"));
    command.args(["audit", "export"]).arg(dir);
    if let Some(chain) = chain {
        command
            .arg("--data-dir")
            .arg(member_dir(chain, 1))
            .arg("--genesis")
            .arg(chain.join("genesis.json"));
    }
    command.output().expect("run medvault audit export")
}

#[tokio::test]
async fn only_patients_with_live_research_consent_are_exported() {
    let app = spawn_app_with(AppOptions {
        anchoring: true,
        ..AppOptions::default()
    })
    .await;
    let setting = export_setting(&app).await;
    for index in 0..10 {
        patient_with_record(
            &app,
            &setting,
            &format!("consenting-{index}"),
            &format!("Consenting Person {index}"),
            &format!("{}", 61 + index),
            true,
        )
        .await;
    }
    patient_with_record(&app, &setting, "outsider", "Olive Outsider", "199.5", false).await;
    let (withdrawer, withdrawn_grant) = patient_with_record(
        &app,
        &setting,
        "withdrawer",
        "Wendy Withdrawer",
        "188.5",
        true,
    )
    .await;
    set_researcher_ceiling(&app, &setting).await;

    let (first_id, first) = run_export(&app, &setting.researcher, observations_policy(5)).await;
    assert_eq!(first["status"], "SUCCEEDED", "{first:#}");
    let manifest = &first["manifest"];
    assert_eq!(
        manifest["personsIn"], 11,
        "ten consenting patients and the withdrawer"
    );
    assert_eq!(manifest["personsOut"], 11);
    assert_eq!(manifest["eventsOut"], 11);
    assert!(manifest["kAchieved"].as_u64().expect("k") >= 5);
    assert_eq!(first["progressDone"], first["progressTotal"]);
    assert_eq!(
        first["progressTotal"], 22,
        "profiles, then one pass over the events"
    );

    let first_dir = download(&app, &setting.researcher, &first).await;
    let report = read_with_real_readers(
        &first_dir,
        "person,measurement",
        5,
        &[
            "199.5",
            "Olive",
            "Outsider",
            "Consenting Person",
            "Harbour Lane",
            "example.org",
        ],
    );
    assert_eq!(report["person"]["pyarrow"]["rows"], 11);
    assert_eq!(report["person"]["duckdb"]["rows"], 11);
    assert_eq!(report["measurement"]["polars"]["rows"], 11);
    assert_eq!(report["forbidden_found"], json!([]), "{report:#}");
    assert!(report["min_class_size"].as_u64() >= Some(5), "{report:#}");
    let audited = audit_export(&first_dir, None);
    assert!(
        audited.status.success(),
        "{}",
        String::from_utf8_lossy(&audited.stderr)
    );

    // The withdrawal applies to every later export.
    app.graphql(
        Some(&withdrawer),
        "mutation($g: ID!) { revokeAccess(grantId: $g) { revokedAt } }",
        json!({ "g": withdrawn_grant }),
    )
    .await
    .data();
    let (_, second) = run_export(&app, &setting.researcher, observations_policy(5)).await;
    assert_eq!(second["status"], "SUCCEEDED", "{second:#}");
    assert_eq!(second["manifest"]["personsIn"], 10);
    assert_ne!(
        second["manifest"]["consentRoot"], first["manifest"]["consentRoot"],
        "the consent root commits to who consented"
    );
    let second_dir = download(&app, &setting.researcher, &second).await;
    let report = read_with_real_readers(
        &second_dir,
        "person,measurement",
        5,
        &["199.5", "188.5", "Wendy", "Olive"],
    );
    assert_eq!(report["person"]["pyarrow"]["rows"], 10);
    assert_eq!(report["forbidden_found"], json!([]), "{report:#}");

    // Each export's manifest hash reaches the chain, and an auditor checks it there.
    let anchoring = app
        .anchoring
        .as_ref()
        .expect("the application's anchoring worker");
    anchoring.wait_until_anchored().await.expect("anchor");
    anchoring.stop().await;
    let chain_dir = app
        .chain_dir
        .clone()
        .expect("the application's chain directory");
    let anchored = app
        .graphql(Some(&setting.researcher), JOB, json!({ "id": first_id }))
        .await;
    assert!(anchored.data()["exportJob"]["anchoredHeight"]
        .as_i64()
        .is_some());
    let audited = audit_export(&first_dir, Some(&chain_dir));
    assert!(
        audited.status.success(),
        "{}{}",
        String::from_utf8_lossy(&audited.stdout),
        String::from_utf8_lossy(&audited.stderr)
    );
}

#[tokio::test]
async fn downloads_are_only_for_the_requesting_organization() {
    let app = spawn_app().await;
    let setting = export_setting(&app).await;
    consenting_patients(&app, &setting, "p", 5).await;
    set_researcher_ceiling(&app, &setting).await;
    let (id, job) = run_export(&app, &setting.researcher, observations_policy(5)).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job:#}");
    let manifest_path = job["manifestPath"].as_str().expect("path").to_owned();

    assert_eq!(
        app.get_with(None, &manifest_path).await.status().as_u16(),
        401
    );
    assert_eq!(
        app.get_with(Some(&setting.doctor), &manifest_path)
            .await
            .status()
            .as_u16(),
        404
    );
    // A researcher of another institute sees neither the job nor its files.
    let other = app
        .graphql(
            Some(&setting.admin),
            "mutation { createRecipientOrganization(name: \"Other Institute\", kind: RESEARCH) { id } }",
            json!({}),
        )
        .await;
    let other_id = other.data()["createRecipientOrganization"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.try_create_staff(
        &setting.admin,
        "researcher-o",
        "RESEARCHER",
        Some(&other_id),
    )
    .await
    .data();
    let outsider = app.login("researcher-o").await;
    assert_eq!(
        app.get_with(Some(&outsider), &manifest_path)
            .await
            .status()
            .as_u16(),
        404
    );
    app.graphql(Some(&outsider), JOB, json!({ "id": id }))
        .await
        .expect_error("NOT_FOUND");
    for name in ["secret.txt", "..%2F..%2Fetc%2Fpasswd", ".manifest.json"] {
        let response = app
            .get_with(Some(&setting.researcher), &format!("/exports/{id}/{name}"))
            .await;
        assert_eq!(response.status().as_u16(), 404, "{name}");
    }
    let response = app
        .get_with(
            Some(&setting.researcher),
            "/exports/not-a-uuid/manifest.json",
        )
        .await;
    assert_eq!(response.status().as_u16(), 404);
    let manifest = app
        .get_with(Some(&setting.researcher), &manifest_path)
        .await
        .bytes()
        .await
        .expect("manifest");
    let digest = hex_sha3(&manifest);
    assert_eq!(job["manifestSha3"].as_str(), Some(digest.as_str()));
}

fn hex_sha3(bytes: &[u8]) -> String {
    use sha3::Digest;
    hex::encode(sha3::Sha3_256::digest(bytes))
}

#[tokio::test]
async fn exports_stay_within_the_ceiling_and_fail_whole() {
    let app = spawn_app().await;
    let setting = export_setting(&app).await;
    consenting_patients(&app, &setting, "p", 6).await;
    let answer = app
        .graphql(
            Some(&setting.researcher),
            REQUEST,
            json!({ "policy": observations_policy(5) }),
        )
        .await;
    answer.expect_error("BAD_USER_INPUT");
    assert!(answer.body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("ceiling"));

    app.graphql(
        Some(&setting.researcher),
        CEILING,
        json!({ "role": "RESEARCHER", "rules": ceiling_rules(5) }),
    )
    .await
    .expect_error("FORBIDDEN");
    app.graphql(
        Some(&setting.admin),
        CEILING,
        json!({ "role": "DOCTOR", "rules": ceiling_rules(5) }),
    )
    .await
    .expect_error("BAD_USER_INPUT");
    set_researcher_ceiling(&app, &setting).await;
    let own = app
        .graphql(
            Some(&setting.researcher),
            "query($h: ID!) { exportCeiling(role: RESEARCHER, hospitalId: $h) {
                 hospital { name } role rules { minK finestDates } setBy { username } } }",
            json!({ "h": setting.hospital_id }),
        )
        .await;
    assert_eq!(
        own.data()["exportCeiling"],
        json!({ "hospital": { "name": "St. Mary's" }, "role": "RESEARCHER",
                "rules": { "minK": 5, "finestDates": "MONTH" },
                "setBy": { "username": "admin-a" } })
    );
    for (caller, role) in [
        (&setting.researcher, "INSURER"),
        (&setting.doctor, "DOCTOR"),
    ] {
        app.graphql(
            Some(caller),
            "query($r: Role!) { exportCeiling(role: $r) { role } }",
            json!({ "r": role }),
        )
        .await
        .expect_error("FORBIDDEN");
    }

    let below = app
        .graphql(
            Some(&setting.researcher),
            REQUEST,
            json!({ "policy": observations_policy(3) }),
        )
        .await;
    below.expect_error("BAD_USER_INPUT");
    let finer_dates = json!({ "dataset": "OBSERVATIONS", "dates": "SHIFT_PER_PERSON",
                              "maxShiftDays": 30, "k": 5 });
    app.graphql(
        Some(&setting.researcher),
        REQUEST,
        json!({ "policy": finer_dates }),
    )
    .await
    .expect_error("BAD_USER_INPUT");
    for caller in [&setting.doctor, &setting.admin] {
        app.graphql(
            Some(caller),
            REQUEST,
            json!({ "policy": observations_policy(5) }),
        )
        .await
        .expect_error("FORBIDDEN");
    }

    // Six persons cannot form classes of 50 within 5% suppression: the job fails and nothing
    // is left in the export directory.
    let (id, job) = run_export(&app, &setting.researcher, observations_policy(50)).await;
    assert_eq!(job["status"], "FAILED");
    assert!(job["failure"]
        .as_str()
        .unwrap_or_default()
        .contains("cannot be met"));
    assert!(job["manifest"].is_null());
    let leftovers: Vec<_> = std::fs::read_dir(&app.export_dir)
        .map(|entries| entries.flatten().map(|entry| entry.file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?} left for job {id}");
}

#[tokio::test]
async fn research_consent_goes_only_to_recipient_organizations() {
    let app = spawn_app().await;
    let setting = export_setting(&app).await;
    let (patient_id, patient) = app.create_patient(&setting.admin, "jane", "Jane Roe").await;
    let hospitals = app
        .graphql(
            Some(&patient),
            "{ organizations(kind: HOSPITAL) { edges { node { id name } } } }",
            json!({}),
        )
        .await;
    let hospital_id = hospitals.data()["organizations"]["edges"][0]["node"]["id"]
        .as_str()
        .expect("hospital")
        .to_owned();
    let expires = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let consent = "mutation($o: ID!, $e: DateTime!) { grantResearchConsent(organizationId: $o, expiresAt: $e) { id } }";
    app.graphql(
        Some(&patient),
        consent,
        json!({ "o": hospital_id, "e": expires }),
    )
    .await
    .expect_error("BAD_USER_INPUT");
    app.graphql(
        Some(&patient),
        consent,
        json!({ "o": uuid::Uuid::new_v4().to_string(), "e": expires }),
    )
    .await
    .expect_error("NOT_FOUND");
    app.graphql(
        Some(&setting.researcher),
        consent,
        json!({ "o": setting.institute_id, "e": expires }),
    )
    .await
    .expect_error("FORBIDDEN");
    app.graphql(
        Some(&patient),
        "mutation($d: ID!, $e: DateTime!) { grantAccess(doctorId: $d, scopes: [READ, RESEARCH], expiresAt: $e) { id } }",
        json!({ "d": setting.doctor_id, "e": expires }),
    )
    .await
    .expect_error("BAD_USER_INPUT");
    app.try_create_staff(
        &setting.admin,
        "wrong-role",
        "INSURER",
        Some(&setting.institute_id),
    )
    .await
    .expect_error("BAD_USER_INPUT");

    // Consent lets the institute's exports include the patient, and nothing more: its
    // researcher still cannot read the patient's data.
    app.graphql(
        Some(&patient),
        consent,
        json!({ "o": setting.institute_id, "e": expires }),
    )
    .await
    .data();
    let grants = app
        .graphql(
            Some(&patient),
            "{ myGrants { edges { node { scopes doctor { id } organization { name kind } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        grants.data()["myGrants"]["edges"][0]["node"],
        json!({ "scopes": ["RESEARCH"], "doctor": null,
                "organization": { "name": "Cohort Institute", "kind": "RESEARCH" } })
    );
    app.graphql(
        Some(&setting.researcher),
        "query($id: ID!) { patient(id: $id) { personal { fullName } } }",
        json!({ "id": patient_id }),
    )
    .await
    .expect_error("FORBIDDEN");

    // A new consent replaces the live one to the same organization, and leaves the patient's
    // access grant to a doctor alone.
    app.grant(&patient, &setting.doctor_id, &["READ"]).await;
    app.graphql(
        Some(&patient),
        consent,
        json!({ "o": setting.institute_id, "e": expires }),
    )
    .await
    .data();
    let grants = app
        .graphql(
            Some(&patient),
            "{ myGrants { edges { node { live doctor { id } organization { name } } } } }",
            json!({}),
        )
        .await;
    let live: Vec<Value> = grants.data()["myGrants"]["edges"]
        .as_array()
        .expect("grants")
        .iter()
        .map(|edge| edge["node"].clone())
        .filter(|node| node["live"] == true)
        .collect();
    assert_eq!(
        grants.data()["myGrants"]["edges"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(live.len(), 2, "{live:#?}");
    assert!(live
        .iter()
        .any(|node| node["doctor"]["id"] == json!(setting.doctor_id)));
    assert!(live
        .iter()
        .any(|node| node["organization"]["name"] == "Cohort Institute"));
}

#[tokio::test]
async fn the_operator_exports_from_the_command_line_and_anchors_at_once() {
    let app = spawn_app().await;
    let setting = export_setting(&app).await;
    consenting_patients(&app, &setting, "p", 5).await;
    patient_with_record(&app, &setting, "outsider", "Olive Outsider", "199.5", false).await;
    set_researcher_ceiling(&app, &setting).await;
    let work = tempfile::tempdir().expect("work dir");
    let export = |k: u32, requester: &str, out: &str| {
        let policy = work.path().join(format!("policy-{k}.toml"));
        std::fs::write(
            &policy,
            format!(
                "dataset = \"observations\"\nbirth = {{ kind = \"age_band\", width = 10 }}\n\
                 zip = \"zip3\"\ndates = {{ kind = \"year\" }}\nk = {k}\n"
            ),
        )
        .expect("policy file");
        Command::new(env!("CARGO_BIN_EXE_medvault"))
            .args(["export", "--requester", requester, "--policy"])
            .arg(&policy)
            .arg("--out")
            .arg(work.path().join(out))
            .arg("--chain-dir")
            .arg(work.path().join("chain"))
            .env("DATABASE_URL", &app.database_url)
            .env("MEDVAULT_MASTER_KEY", &app.master_key_hex)
            .env("MEDVAULT_CONSENT_KEYS", &consent_keys().0)
            .output()
            .expect("run medvault export")
    };

    let made = export(5, "researcher-r", "out");
    let stdout = String::from_utf8_lossy(&made.stdout);
    assert!(
        made.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert!(stdout.contains("5 of 5 consenting persons"), "{stdout}");
    assert!(stdout.contains("anchored"), "{stdout}");
    let out = work.path().join("out");
    let report = read_with_real_readers(&out, "person,measurement", 5, &["199.5", "Olive"]);
    assert_eq!(report["person"]["pyarrow"]["rows"], 5);
    assert_eq!(report["forbidden_found"], json!([]), "{report:#}");
    let audited = audit_export(&out, Some(&work.path().join("chain")));
    assert!(
        audited.status.success(),
        "{}",
        String::from_utf8_lossy(&audited.stderr)
    );

    let above = export(3, "researcher-r", "above");
    assert!(!above.status.success());
    assert!(String::from_utf8_lossy(&above.stderr).contains("ceiling"));
    assert!(!work.path().join("above").exists());
    let doctor = export(5, "dr-a", "doctor");
    assert!(!doctor.status.success());
    assert!(!work.path().join("doctor").exists());

    // A failure inside the vault prints its cause, not only "internal error".
    std::fs::write(work.path().join("a-file"), b"").expect("a file");
    let unwritable = export(5, "researcher-r", "a-file/below/out");
    let stderr = String::from_utf8_lossy(&unwritable.stderr);
    assert!(!unwritable.status.success());
    assert!(
        stderr.contains("export failed: internal error: ") && stderr.contains("Not a directory"),
        "{stderr}"
    );
    let unknown = export(5, "nobody", "nobody");
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("--requester: user not found"), "{stderr}");
}

#[tokio::test]
async fn one_unfinished_export_per_organization_unless_its_server_stopped() {
    let app = spawn_app().await;
    let setting = export_setting(&app).await;
    consenting_patients(&app, &setting, "p", 5).await;
    set_researcher_ceiling(&app, &setting).await;
    let me = app
        .graphql(Some(&setting.researcher), "{ me { id } }", json!({}))
        .await;
    let researcher_id = me.data()["me"]["id"].as_str().expect("id").to_owned();
    // A job another server is running right now, as far as its heartbeat tells.
    let running = uuid::Uuid::now_v7();
    app.sql(&format!(
        "INSERT INTO export_jobs (id, requested_by, organization_id, policy, status)
         VALUES ('{running}', '{researcher_id}', '{}', '{{}}', 'running')",
        setting.institute_id
    ))
    .await;
    app.graphql(
        Some(&setting.researcher),
        REQUEST,
        json!({ "policy": observations_policy(5) }),
    )
    .await
    .expect_error("CONFLICT");

    // Its server stopped: the heartbeat went silent, and the next request proceeds.
    app.sql(&format!(
        "UPDATE export_jobs SET heartbeat_at = now() - interval '1 minute' WHERE id = '{running}'"
    ))
    .await;
    let (_, job) = run_export(&app, &setting.researcher, observations_policy(5)).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job:#}");
    let abandoned = app
        .sql(&format!(
            "SELECT status, failure FROM export_jobs WHERE id = '{running}'"
        ))
        .await;
    assert_eq!(abandoned[0].get::<_, &str>(0), "failed");
    assert!(abandoned[0]
        .get::<_, Option<&str>>(1)
        .unwrap_or_default()
        .contains("abandoned"));
}

const HOSPITAL_CEILING: &str = "{ exportCeiling(role: RESEARCHER) {
    hospital { name } rules { minK } setBy { username } } }";

const RECIPIENT_CEILINGS: &str =
    "{ exportCeilings { hospital { name } ceiling { rules { minK allowZip3 } } } }";

const JOB_HOSPITALS: &str = "query($id: ID!) { exportJob(id: $id) {
    hospitals { hospital { name } included rules { minK allowZip3 } } } }";

#[tokio::test]
async fn one_hospitals_ceiling_leaves_anothers_alone() {
    let app = spawn_app().await;
    let st_marys = export_setting(&app).await;
    let riverside = another_hospital(&app, &st_marys, "Riverside", "riverside").await;
    set_researcher_ceiling(&app, &st_marys).await;
    set_researcher_rules(&app, &riverside, ceiling_rules(10)).await;

    let own = app
        .graphql(Some(&st_marys.admin), HOSPITAL_CEILING, json!({}))
        .await;
    assert_eq!(
        own.data()["exportCeiling"],
        json!({ "hospital": { "name": "St. Mary's" }, "rules": { "minK": 5 },
                "setBy": { "username": "admin-a" } }),
        "Riverside's admin did not overwrite St. Mary's ceiling"
    );
    let other = app
        .graphql(Some(&riverside.admin), HOSPITAL_CEILING, json!({}))
        .await;
    assert_eq!(
        other.data()["exportCeiling"],
        json!({ "hospital": { "name": "Riverside" }, "rules": { "minK": 10 },
                "setBy": { "username": "riverside-admin" } })
    );
    app.graphql(
        Some(&riverside.admin),
        "query($h: ID!) { exportCeiling(role: RESEARCHER, hospitalId: $h) { role } }",
        json!({ "h": st_marys.hospital_id }),
    )
    .await
    .expect_error("FORBIDDEN");

    let listed = app
        .graphql(Some(&st_marys.researcher), RECIPIENT_CEILINGS, json!({}))
        .await;
    assert_eq!(
        listed.data()["exportCeilings"],
        json!([
            { "hospital": { "name": "Riverside" },
              "ceiling": { "rules": { "minK": 10, "allowZip3": true } } },
            { "hospital": { "name": "St. Mary's" },
              "ceiling": { "rules": { "minK": 5, "allowZip3": true } } },
        ])
    );
    app.graphql(Some(&st_marys.researcher), HOSPITAL_CEILING, json!({}))
        .await
        .expect_error("BAD_USER_INPUT");
    for caller in [&st_marys.admin, &st_marys.doctor] {
        app.graphql(Some(caller), RECIPIENT_CEILINGS, json!({}))
            .await
            .expect_error("FORBIDDEN");
    }
}

#[tokio::test]
async fn each_hospitals_patients_are_exported_under_its_own_ceiling() {
    let app = spawn_app().await;
    let st_marys = export_setting(&app).await;
    let riverside = another_hospital(&app, &st_marys, "Riverside", "riverside").await;
    let lakeside = another_hospital(&app, &st_marys, "Lakeside", "lakeside").await;
    consenting_patients(&app, &st_marys, "mary", 5).await;
    consenting_patients(&app, &riverside, "river", 5).await;
    consenting_patients(&app, &lakeside, "lake", 3).await;
    set_researcher_ceiling(&app, &st_marys).await;
    let mut no_zip = ceiling_rules(3);
    no_zip["allowZip3"] = json!(false);
    set_researcher_rules(&app, &riverside, no_zip).await;

    let policy = json!({ "dataset": "OBSERVATIONS", "ageBandYears": 10, "zip3": false,
                         "dates": "YEAR", "k": 5, "maxSuppression": 0.05 });
    let (id, job) = run_export(&app, &st_marys.researcher, policy).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job:#}");
    assert_eq!(
        job["manifest"]["personsIn"], 10,
        "St. Mary's and Riverside's consenting patients; Lakeside set no ceiling"
    );
    let hospitals = app
        .graphql(
            Some(&st_marys.researcher),
            JOB_HOSPITALS,
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        hospitals.data()["exportJob"]["hospitals"],
        json!([
            { "hospital": { "name": "Lakeside" }, "included": false, "rules": null },
            { "hospital": { "name": "Riverside" }, "included": true,
              "rules": { "minK": 3, "allowZip3": false } },
            { "hospital": { "name": "St. Mary's" }, "included": true,
              "rules": { "minK": 5, "allowZip3": true } },
        ])
    );
    let exported = app
        .sql(
            "SELECT o.name, count(*) FROM access_log a
             JOIN users p ON p.id = a.patient_id JOIN organizations o ON o.id = p.organization_id
             WHERE a.action = 'export_for_research' AND a.outcome = 'allowed'
             GROUP BY o.name ORDER BY o.name",
        )
        .await;
    let exported: Vec<(String, i64)> = exported
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        exported,
        [("Riverside".to_owned(), 5), ("St. Mary's".to_owned(), 5)],
        "no Lakeside patient was read for the export"
    );
}

#[tokio::test]
async fn a_policy_above_one_hospitals_ceiling_is_refused_naming_it() {
    let app = spawn_app().await;
    let st_marys = export_setting(&app).await;
    let riverside = another_hospital(&app, &st_marys, "Riverside", "riverside").await;
    consenting_patients(&app, &st_marys, "mary", 5).await;
    consenting_patients(&app, &riverside, "river", 5).await;
    set_researcher_ceiling(&app, &st_marys).await;
    let mut strict = ceiling_rules(10);
    strict["allowZip3"] = json!(false);
    set_researcher_rules(&app, &riverside, strict).await;

    let refused = app
        .graphql(
            Some(&st_marys.researcher),
            REQUEST,
            json!({ "policy": observations_policy(5) }),
        )
        .await;
    refused.expect_error("BAD_USER_INPUT");
    let message = refused.body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("Riverside"), "{message}");
    assert!(
        message.contains("k = 5 is below the ceiling's minimum of 10"),
        "{message}"
    );
    assert!(message.contains("allow_zip3 = false"), "{message}");
    assert!(
        !message.contains("St. Mary's"),
        "St. Mary's ceiling is met: {message}"
    );
    let jobs = app.sql("SELECT count(*) FROM export_jobs").await;
    assert_eq!(jobs[0].get::<_, i64>(0), 0, "nothing was queued");

    // Within both ceilings, both hospitals' patients are exported.
    let within = json!({ "dataset": "OBSERVATIONS", "ageBandYears": 10, "zip3": false,
                         "dates": "YEAR", "k": 10, "maxSuppression": 0.05 });
    let (_, job) = run_export(&app, &st_marys.researcher, within).await;
    assert_eq!(job["status"], "SUCCEEDED", "{job:#}");
    assert_eq!(job["manifest"]["personsIn"], 10);
}

/// V4 on a deployment that had one ceiling per role: each becomes the ceiling of the hospital
/// of the admin who set it, no other hospital's, and a ceiling whose setter is in no hospital
/// is dropped. Run on the migrations up to V2 in a schema of its own.
#[tokio::test]
async fn v4_gives_a_deployment_wide_ceiling_to_its_setters_hospital_only() {
    let app = spawn_app().await;
    let (client, connection) = tokio_postgres::connect(&app.database_url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let migration = |name: &str| {
        std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("server/vault/migrations")
                .join(name),
        )
        .expect("migration file")
    };
    client
        .batch_execute("CREATE SCHEMA before_v4; SET search_path TO before_v4")
        .await
        .expect("schema");
    for name in ["V1__vault.sql", "V2__research_exports.sql"] {
        client
            .batch_execute(&migration(name))
            .await
            .expect("old migration");
    }
    client
        .batch_execute(
            "INSERT INTO organizations (id, name, kind) VALUES
               ('00000000-0000-0000-0000-00000000000a', 'St. Mary''s', 'hospital'),
               ('00000000-0000-0000-0000-00000000000b', 'Riverside', 'hospital'),
               ('00000000-0000-0000-0000-00000000000c', 'Cohort Institute', 'research');
             INSERT INTO users (id, organization_id, username, role, password_hash) VALUES
               ('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-00000000000a',
                'admin-a', 'admin', 'x'),
               ('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-00000000000c',
                'researcher-r', 'researcher', 'x');
             INSERT INTO export_ceilings (role, ceiling, set_by) VALUES
               ('researcher', '{\"min_k\": 5}', '00000000-0000-0000-0000-0000000000a1'),
               ('insurer', '{\"min_k\": 7}', '00000000-0000-0000-0000-0000000000c1');",
        )
        .await
        .expect("a deployment-wide ceiling");
    client
        .batch_execute(&migration("V4__hospital_export_ceilings.sql"))
        .await
        .expect("V4");
    let kept: Vec<(String, String)> = client
        .query(
            "SELECT o.name, c.role FROM export_ceilings c
             JOIN organizations o ON o.id = c.organization_id ORDER BY o.name, c.role",
            &[],
        )
        .await
        .expect("ceilings")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(kept, [("St. Mary's".to_owned(), "researcher".to_owned())]);
    client
        .batch_execute(
            "INSERT INTO export_ceilings (organization_id, role, ceiling, set_by) VALUES
               ('00000000-0000-0000-0000-00000000000b', 'researcher', '{}',
                '00000000-0000-0000-0000-0000000000a1')",
        )
        .await
        .expect("another hospital sets its own researcher ceiling beside St. Mary's");
}
