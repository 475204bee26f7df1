//! Consent proofs in front of every doctor's access, over HTTP: the doctor's client proves, the
//! server verifies and opens a consent session, and every bad opening is refused and logged.

use crate::helpers::{
    consent_config, consent_keys, spawn_app, spawn_app_with, AppOptions, CareTeam, ConsentOpening,
    TestApp, CONSENT_DEPTH, PASSWORD,
};
use medvault_anchor_chain::embedded::member_dir;
use medvault_circuits::GranteeSecret;
use medvault_client::{AccessScope, ClientError, MedvaultClient, StatementError};
use medvault_vault::auth::Operator;
use medvault_vault::consent::ConsentSettings;
use medvault_vault::{MasterKeySource, OpenVaultError, Vault};
use serde_json::json;
use std::process::Command;

const READ_RECORDS: &str = "query($id: ID!) { patient(id: $id) { records { nodes { id } } } }";

/// How many `openConsent` refusals the access log holds with `reason`.
async fn refusals(app: &TestApp, reason: &str) -> i64 {
    app.sql(&format!(
        "SELECT count(*) FROM access_log WHERE action = 'open_consent' AND outcome = 'denied'
         AND reason = '{reason}'"
    ))
    .await[0]
        .get(0)
}

/// A challenge issued to `doctor` for `patient` and `scopes`, in its hex form.
async fn challenge(app: &TestApp, doctor: &str, patient: &str, scopes: &[&str]) -> String {
    let answer = app
        .graphql(
            Some(doctor),
            "mutation($p: ID!, $s: [AccessScope!]!) { consentChallenge(patientId: $p, scopes: $s) { challenge } }",
            json!({ "p": patient, "s": scopes }),
        )
        .await;
    answer.data()["consentChallenge"]["challenge"]
        .as_str()
        .expect("challenge")
        .to_owned()
}

fn client_of(app: &TestApp, token: &str) -> MedvaultClient {
    MedvaultClient::new(&app.address)
        .expect("client")
        .with_token(token)
}

#[tokio::test]
async fn a_doctor_registers_a_key_proves_consent_and_reads_through_the_client() {
    let app = spawn_app().await;
    let admin = app.bootstrap_admin("St. Mary's", "admin-a").await;
    let (doctor_id, _) = app.create_doctor_without_key(&admin, "dr-c").await;
    let (patient_id, patient) = app.create_patient(&admin, "jane", "Jane Roe").await;
    let grant = "mutation($d: ID!, $e: DateTime!) {
        grantAccess(doctorId: $d, scopes: [READ], expiresAt: $e) { id } }";
    let expires = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let refused = app
        .graphql(
            Some(&patient),
            grant,
            json!({ "d": doctor_id, "e": expires }),
        )
        .await;
    refused.expect_error("BAD_USER_INPUT");
    assert!(
        refused.body["errors"][0]["message"]
            .as_str()
            .is_some_and(|message| message.contains("has not registered a grantee key")),
        "{:#}",
        refused.body
    );

    let mut client = MedvaultClient::new(&app.address).expect("client");
    client.login("dr-c", PASSWORD).await.expect("login");
    let secret = GranteeSecret::generate(&mut medvault_circuits::OsRng);
    let registered = client
        .register_grantee_key(&secret)
        .await
        .expect("register");
    assert_eq!(registered.rekeyed_grants, 0);
    app.graphql(
        Some(&patient),
        grant,
        json!({ "d": doctor_id, "e": expires }),
    )
    .await
    .data();
    let token = client.token().expect("token").to_owned();
    app.graphql(Some(&token), READ_RECORDS, json!({ "id": patient_id }))
        .await
        .expect_error("FORBIDDEN");

    let keys = client.consent_keys().await.expect("consent keys");
    assert_eq!(keys.depth, CONSENT_DEPTH);
    let proving_key = client.proving_key(None).await.expect("proving key");
    let opened = client
        .open_consent(&proving_key, &secret, &patient_id, &[AccessScope::Read])
        .await
        .expect("the proof opens a consent session");
    assert_eq!(opened.scopes, vec![AccessScope::Read]);
    let records = client.read_records(&patient_id).await.expect("records");
    assert_eq!(records, json!([]));

    let named: Vec<Option<uuid::Uuid>> = app
        .sql("SELECT consent_session_id FROM access_log WHERE action = 'read_records' AND outcome = 'allowed'")
        .await
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(named, vec![Some(opened.session_id.parse().expect("uuid"))]);
    let pseudonym = app
        .graphql(
            Some(&token),
            "query($id: ID!) { patient(id: $id) { pseudonym } }",
            json!({ "id": patient_id }),
        )
        .await;
    assert_eq!(
        pseudonym.data()["patient"]["pseudonym"],
        medvault_circuits::field::field_to_hex(opened.public.patient_pseudonym)
    );
    let writes = app.try_add_record(&token, &patient_id, "61").await;
    writes.expect_error("FORBIDDEN");
}

#[tokio::test]
async fn every_bad_opening_is_refused_and_logged() {
    let app = spawn_app_with(AppOptions {
        consent: ConsentSettings {
            root_window: chrono::Duration::seconds(1),
            ..ConsentSettings::default()
        },
        ..AppOptions::default()
    })
    .await;
    let CareTeam {
        admin,
        doctor,
        patient_id,
        ..
    } = app.care_team().await;
    let secret = app.secret_of(&doctor);
    let open = |opening: ConsentOpening,
                token: String,
                patient: String,
                scopes: &'static [&'static str]| {
        let app = &app;
        async move {
            app.try_open_consent(&token, &patient, scopes, &opening)
                .await
        }
    };

    let opening = app
        .prepare_consent(&doctor, &secret, &patient_id, &["READ"])
        .await;
    open(
        opening.clone(),
        doctor.clone(),
        patient_id.clone(),
        &["READ"],
    )
    .await
    .data();
    open(opening, doctor.clone(), patient_id.clone(), &["READ"])
        .await
        .expect_error("FORBIDDEN");
    assert_eq!(refusals(&app, "the challenge was already used").await, 1);

    let other_session = app.login("dr-a").await;
    let opening = app
        .prepare_consent(&doctor, &secret, &patient_id, &["READ"])
        .await;
    open(
        opening.clone(),
        other_session.clone(),
        patient_id.clone(),
        &["READ"],
    )
    .await
    .expect_error("FORBIDDEN");
    assert_eq!(
        refusals(&app, "the challenge was issued to another session").await,
        1
    );

    let (other_id, other_patient) = app.create_patient(&admin, "john", "John Doe").await;
    app.grant(
        &other_patient,
        &app_doctor_id(&app, "dr-a").await,
        &["READ"],
    )
    .await;
    open(opening.clone(), doctor.clone(), other_id.clone(), &["READ"])
        .await
        .expect_error("FORBIDDEN");
    open(
        opening.clone(),
        doctor.clone(),
        patient_id.clone(),
        &["WRITE"],
    )
    .await
    .expect_error("FORBIDDEN");
    assert_eq!(
        refusals(
            &app,
            "the challenge was issued for another patient or scope"
        )
        .await,
        2
    );
    // John's grant touched this doctor: a fresh opening, against the root after it.
    let opening = app
        .prepare_consent(&doctor, &secret, &patient_id, &["READ"])
        .await;
    let for_other_patient = ConsentOpening {
        challenge: challenge(&app, &doctor, &other_id, &["READ"]).await,
        ..opening.clone()
    };
    open(
        for_other_patient,
        doctor.clone(),
        other_id.clone(),
        &["READ"],
    )
    .await
    .expect_error("FORBIDDEN");
    let for_write = ConsentOpening {
        challenge: challenge(&app, &doctor, &patient_id, &["WRITE"]).await,
        ..opening.clone()
    };
    open(for_write, doctor.clone(), patient_id.clone(), &["WRITE"])
        .await
        .expect_error("FORBIDDEN");
    let replayed_elsewhere = ConsentOpening {
        challenge: challenge(&app, &other_session, &patient_id, &["READ"]).await,
        ..opening.clone()
    };
    open(
        replayed_elsewhere,
        other_session.clone(),
        patient_id.clone(),
        &["READ"],
    )
    .await
    .expect_error("FORBIDDEN");
    let mut flipped = hex::decode(&opening.proof).expect("hex");
    flipped[40] ^= 0x01;
    let flipped = ConsentOpening {
        challenge: challenge(&app, &doctor, &patient_id, &["READ"]).await,
        proof: hex::encode(flipped),
        ..opening.clone()
    };
    let answer = open(flipped, doctor.clone(), patient_id.clone(), &["READ"]).await;
    assert!(
        matches!(answer.error_code(), Some("FORBIDDEN" | "BAD_USER_INPUT")),
        "{:#}",
        answer.body
    );
    assert_eq!(
        refusals(&app, "the proof does not verify").await
            + refusals(&app, "the proof is not well-formed").await,
        4
    );
    let garbage = ConsentOpening {
        challenge: challenge(&app, &doctor, &patient_id, &["READ"]).await,
        proof: "00".repeat(10),
        ..opening.clone()
    };
    open(garbage, doctor.clone(), patient_id.clone(), &["READ"])
        .await
        .expect_error("BAD_USER_INPUT");
    let not_hex = ConsentOpening {
        proof: "zz".into(),
        ..opening.clone()
    };
    open(not_hex, doctor.clone(), patient_id.clone(), &["READ"])
        .await
        .expect_error("BAD_USER_INPUT");

    let (dr_b_id, dr_b) = app.create_doctor(&admin, "dr-b").await;
    app.grant(&app.login("jane").await, &dr_b_id, &["READ"])
        .await;
    let proved_with_another_secret = MedvaultClient::new(&app.address)
        .expect("client")
        .with_token(dr_b.clone())
        .prepare_proof(
            &consent_keys().1,
            &secret,
            &patient_id,
            &[AccessScope::Read],
        )
        .await;
    assert!(
        matches!(
            proved_with_another_secret,
            Err(ClientError::Statement(StatementError::NotInTree))
        ),
        "another doctor's secret proves nothing: {proved_with_another_secret:?}"
    );

    let old_root = app
        .prepare_consent(&doctor, &secret, &patient_id, &["READ"])
        .await;
    let (_, third) = app.create_patient(&admin, "mary", "Mary Major").await;
    app.grant(&third, &dr_b_id, &["READ"]).await;
    open(old_root, doctor.clone(), patient_id.clone(), &["READ"])
        .await
        .data();
    let old_root = app
        .prepare_consent(&doctor, &secret, &patient_id, &["READ"])
        .await;
    let (_, fourth) = app.create_patient(&admin, "ann", "Ann Other").await;
    app.grant(&fourth, &dr_b_id, &["READ"]).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    open(old_root, doctor.clone(), patient_id.clone(), &["READ"])
        .await
        .expect_error("FORBIDDEN");
    assert_eq!(
        refusals(&app, "the root is older than the accepted window").await,
        1
    );
}

/// The id of the user `username`.
async fn app_doctor_id(app: &TestApp, username: &str) -> String {
    let rows = app
        .sql(&format!(
            "SELECT id::text FROM users WHERE username = '{username}'"
        ))
        .await;
    rows[0].get(0)
}

#[tokio::test]
async fn revoking_or_expiring_a_grant_ends_its_consent_and_refuses_a_prepared_proof() {
    let app = spawn_app().await;
    let CareTeam {
        admin,
        doctor,
        patient,
        patient_id,
    } = app.care_team().await;
    app.graphql(Some(&doctor), READ_RECORDS, json!({ "id": patient_id }))
        .await
        .data();
    let secret = app.secret_of(&doctor);
    let prepared = app
        .prepare_consent(&doctor, &secret, &patient_id, &["READ"])
        .await;
    let grant: String = app
        .sql("SELECT id::text FROM grants WHERE revoked_at IS NULL")
        .await[0]
        .get(0);
    app.graphql(
        Some(&patient),
        "mutation($g: ID!) { revokeAccess(grantId: $g) { live } }",
        json!({ "g": grant }),
    )
    .await
    .data();
    app.graphql(Some(&doctor), READ_RECORDS, json!({ "id": patient_id }))
        .await
        .expect_error("FORBIDDEN");
    let ended = app
        .sql("SELECT count(*) FROM consent_sessions WHERE ended_at IS NULL")
        .await;
    assert_eq!(ended[0].get::<_, i64>(0), 0, "revoking ended the session");
    app.try_open_consent(&doctor, &patient_id, &["READ"], &prepared)
        .await
        .expect_error("FORBIDDEN");
    app.graphql(
        Some(&doctor),
        "query($p: ID!) { consentWitness(patientId: $p) { root } }",
        json!({ "p": patient_id }),
    )
    .await
    .expect_error("FORBIDDEN");

    let (doctor_id, expiring) = app.create_doctor(&admin, "dr-e").await;
    app.grant(&patient, &doctor_id, &["READ"]).await;
    app.open_consent(&expiring, &patient_id, &["READ"]).await;
    let prepared = app
        .prepare_consent(&expiring, &app.secret_of(&expiring), &patient_id, &["READ"])
        .await;
    app.sql(&format!(
        "UPDATE grants SET expires_at = now() - interval '1 second' WHERE grantee_id = '{doctor_id}'"
    ))
    .await;
    app.graphql(Some(&expiring), READ_RECORDS, json!({ "id": patient_id }))
        .await
        .expect_error("FORBIDDEN");
    app.try_open_consent(&expiring, &patient_id, &["READ"], &prepared)
        .await
        .expect_error("FORBIDDEN");
    assert_eq!(
        refusals(&app, "no live grant with the required scope").await
            + refusals(
                &app,
                "the consent between this doctor and patient changed since the root"
            )
            .await,
        2
    );
}

#[tokio::test]
async fn a_new_grantee_key_rekeys_live_grants_and_the_old_secret_proves_nothing() {
    let app = spawn_app().await;
    let CareTeam {
        doctor, patient_id, ..
    } = app.care_team().await;
    let old = app.secret_of(&doctor);
    let prepared_with_old = app
        .prepare_consent(&doctor, &old, &patient_id, &["READ"])
        .await;
    let new = GranteeSecret::generate(&mut medvault_circuits::OsRng);
    let rotated = app.register_grantee_key(&doctor, &new).await;
    assert_eq!(rotated.data()["registerGranteeKey"]["rekeyedGrants"], 1);
    app.try_open_consent(&doctor, &patient_id, &["READ"], &prepared_with_old)
        .await
        .expect_error("FORBIDDEN");
    let with_old = client_of(&app, &doctor)
        .prepare_proof(&consent_keys().1, &old, &patient_id, &[AccessScope::Read])
        .await;
    assert!(matches!(
        with_old,
        Err(ClientError::Statement(StatementError::NotInTree))
    ));
    let with_new = app
        .prepare_consent(&doctor, &new, &patient_id, &["READ"])
        .await;
    app.try_open_consent(&doctor, &patient_id, &["READ"], &with_new)
        .await
        .data();
}

#[tokio::test]
async fn a_restart_keeps_the_trees_and_a_corrupted_tree_refuses_to_start() {
    let app = spawn_app().await;
    let CareTeam {
        doctor, patient_id, ..
    } = app.care_team().await;
    let witness = "query($p: ID!) { consentWitness(patientId: $p) { root sequence } }";
    let before = app
        .graphql(Some(&doctor), witness, json!({ "p": patient_id }))
        .await
        .data()["consentWitness"]
        .clone();
    let reopen = || {
        let pool = app.vault.pool().clone();
        let key = MasterKeySource::Hex(app.master_key_hex.clone());
        async move { Vault::open(pool, &key, chrono::Duration::hours(1), consent_config()).await }
    };
    let restarted = reopen().await.expect("a restart over the same database");
    let doctor_actor = restarted
        .actor_by_username(&Operator::at_command_line(), "dr-a")
        .await
        .expect("dr-a");
    let patient = patient_id.parse().expect("uuid");
    let after = restarted
        .consent_witness(&doctor_actor, patient)
        .await
        .expect("the restarted vault gives the same witness");
    assert_eq!(
        before["root"],
        medvault_circuits::field::field_to_hex(after.root)
    );
    assert_eq!(before["sequence"], after.sequence);

    app.sql("UPDATE consent_leaves SET leaf = '\\x0100000000000000000000000000000000000000000000000000000000000000' WHERE leaf_index = 0")
        .await;
    let refused = reopen()
        .await
        .err()
        .expect("a corrupted leaf refuses to start");
    let message = format!("{refused}");
    assert!(matches!(refused, OpenVaultError::Consent(_)), "{message}");
    assert!(
        message.contains("leaf 0") && message.contains("does not match the database"),
        "{message}"
    );
}

#[tokio::test]
async fn audit_access_passes_an_honest_run_and_reports_what_was_tampered_with() {
    let app = spawn_app_with(AppOptions {
        anchoring: true,
        ..AppOptions::default()
    })
    .await;
    let CareTeam {
        doctor, patient_id, ..
    } = app.care_team().await;
    app.add_record(&doctor, &patient_id, "72").await;
    app.graphql(Some(&doctor), READ_RECORDS, json!({ "id": patient_id }))
        .await
        .data();
    let anchoring = app.anchoring.as_ref().expect("anchoring");
    anchoring.wait_until_anchored().await.expect("anchored");
    let keys = app
        .graphql(
            None,
            "{ consentKeys { anchoredHeight verifyingKeyHash } }",
            json!({}),
        )
        .await;
    assert!(
        keys.data()["consentKeys"]["anchoredHeight"].as_u64() > Some(0),
        "the verifying key's hash is anchored: {:#}",
        keys.body
    );
    anchoring.stop().await;
    let chain_dir = app.chain_dir.clone().expect("chain dir");
    let audit = || {
        let output = Command::new(env!("CARGO_BIN_EXE_medvault"))
            .args(["audit", "access", "--data-dir"])
            .arg(member_dir(&chain_dir, 1))
            .arg("--genesis")
            .arg(chain_dir.join("genesis.json"))
            .env("DATABASE_URL", &app.database_url)
            .output()
            .expect("run medvault audit access");
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("a JSON report");
        (output.status.success(), report)
    };
    let (passed, report) = audit();
    assert!(passed, "{report:#}");
    assert_eq!(report["sessions_checked"], 1);
    assert!(
        report["accesses_checked"].as_u64() >= Some(2),
        "the write and the read: {report:#}"
    );

    app.sql(&format!(
        "INSERT INTO access_log (actor_id, actor_role, action, patient_id, outcome)
         SELECT id, 'doctor', 'read_records', '{patient_id}', 'allowed' FROM users WHERE username = 'dr-a'"
    ))
    .await;
    app.sql("UPDATE consent_sessions SET proof = set_byte(proof, 5, get_byte(proof, 5) # 1)")
        .await;
    let (passed, report) = audit();
    assert!(!passed);
    let problems = report["problems"].as_array().expect("problems");
    let found = |kind: &str, text: &str| {
        problems.iter().any(|problem| {
            problem["kind"] == kind
                && problem["problem"]
                    .as_str()
                    .is_some_and(|p| p.contains(text))
        })
    };
    assert!(found("access", "names no consent session"), "{report:#}");
    assert!(
        found("session", "proof does not verify")
            || found("session", "proof is unreadable")
            || found("session", "proof cannot be checked"),
        "{report:#}"
    );
    if let Some(chain_dir) = &app.chain_dir {
        let _ = std::fs::remove_dir_all(chain_dir);
    }
}

#[tokio::test]
async fn audit_access_reports_roots_and_keys_that_were_never_anchored() {
    let app = spawn_app().await;
    let CareTeam {
        doctor, patient_id, ..
    } = app.care_team().await;
    app.graphql(Some(&doctor), READ_RECORDS, json!({ "id": patient_id }))
        .await
        .data();
    let chain_dir =
        std::env::temp_dir().join(format!("medvault-empty-chain-{}", uuid::Uuid::new_v4()));
    medvault_anchor_chain::embedded::EmbeddedChain::open(&chain_dir, &["St. Mary's".into()])
        .await
        .expect("an empty chain")
        .shutdown()
        .await;
    let output = Command::new(env!("CARGO_BIN_EXE_medvault"))
        .args(["audit", "access", "--data-dir"])
        .arg(member_dir(&chain_dir, 1))
        .arg("--genesis")
        .arg(chain_dir.join("genesis.json"))
        .arg("--allow-pending")
        .env("DATABASE_URL", &app.database_url)
        .output()
        .expect("run medvault audit access");
    assert!(!output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "no JSON report: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let text = report.to_string();
    assert!(
        text.contains("the verifying key was never anchored"),
        "{report:#}"
    );
    assert!(text.contains("its root was never anchored"), "{report:#}");
    let _ = std::fs::remove_dir_all(chain_dir);
}

#[tokio::test]
async fn concurrent_grants_leave_a_tree_that_every_witness_and_a_restart_agree_with() {
    let app = spawn_app().await;
    let admin = app.bootstrap_admin("St. Mary's", "admin-a").await;
    let (doctor_id, doctor) = app.create_doctor(&admin, "dr-a").await;
    let mut patients = Vec::new();
    for n in 0..8 {
        patients.push(
            app.create_patient(&admin, &format!("patient-{n}"), "Pat Ient")
                .await,
        );
    }
    futures_util::future::join_all(
        patients
            .iter()
            .map(|(_, token)| app.grant(token, &doctor_id, &["READ"])),
    )
    .await;
    for (patient_id, _) in patients.iter().step_by(3) {
        app.open_consent(&doctor, patient_id, &["READ"]).await;
    }
    let sequence: i64 = app.sql("SELECT sequence FROM consent_trees").await[0].get(0);
    assert_eq!(sequence, 8, "one change per grant");
    Vault::open(
        app.vault.pool().clone(),
        &MasterKeySource::Hex(app.master_key_hex.clone()),
        chrono::Duration::hours(1),
        consent_config(),
    )
    .await
    .expect("the stored tree is the one its grants give");
}

#[tokio::test]
async fn a_consent_session_ends_when_its_time_is_up() {
    let app = spawn_app_with(AppOptions {
        consent: ConsentSettings {
            session_ttl: chrono::Duration::seconds(1),
            ..ConsentSettings::default()
        },
        ..AppOptions::default()
    })
    .await;
    let CareTeam {
        doctor, patient_id, ..
    } = app.care_team().await;
    app.graphql(Some(&doctor), READ_RECORDS, json!({ "id": patient_id }))
        .await
        .data();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    app.graphql(Some(&doctor), READ_RECORDS, json!({ "id": patient_id }))
        .await
        .expect_error("FORBIDDEN");
    app.open_consent(&doctor, &patient_id, &["READ"]).await;
    app.graphql(Some(&doctor), READ_RECORDS, json!({ "id": patient_id }))
        .await
        .data();
}
