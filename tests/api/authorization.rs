//! The authorization matrix: every role against every operation, including other hospitals'
//! users and revoked and expired grants. Each cell is checked both ways: what should be allowed
//! works, and everything else is refused.

use crate::helpers::{heart_rate, spawn_app, Answer, ConsentOpening, TestApp, PASSWORD};
use medvault_circuits::GranteeSecret;
use serde_json::json;

struct World {
    patient_id: String,
    /// A patient of admin-a's hospital who is no caller: the one the matrix erases.
    erasure_target_id: String,
    record_id: String,
    writer: String,
    grant_target_id: String,
    research_organization_id: String,
    /// A valid opening the writer prepared and never sent: what a caller who cannot prove
    /// consent of their own would replay.
    writers_opening: ConsentOpening,
    callers: Vec<(&'static str, Option<String>)>,
}

async fn build_world(app: &TestApp) -> World {
    let admin_a = app.bootstrap_admin("St. Mary's", "admin-a").await;
    let admin_b = app.bootstrap_admin("Riverside", "admin-b").await;
    let (patient_id, patient) = app.create_patient(&admin_a, "patient-p", "Petra Pan").await;
    let (_, other_patient) = app
        .create_patient(&admin_a, "patient-q", "Quentin Quill")
        .await;
    let (erasure_target_id, _) = app
        .create_patient(&admin_a, "patient-e", "Erin Erased")
        .await;
    let (writer_id, writer) = app.create_doctor(&admin_a, "dr-writer").await;
    let (reader_id, reader) = app.create_doctor(&admin_a, "dr-reader").await;
    let (revoked_id, revoked) = app.create_doctor(&admin_a, "dr-revoked").await;
    let (expired_id, expired) = app.create_doctor(&admin_a, "dr-expired").await;
    let (_, other_hospital_doctor) = app.create_doctor(&admin_b, "dr-elsewhere").await;
    // Patients grant this doctor during the matrix; it is no caller, so no cell depends on order.
    let (grant_target_id, _) = app.create_doctor(&admin_b, "dr-grant-target").await;
    app.grant(&patient, &writer_id, &["READ", "WRITE"]).await;
    app.open_consent(&writer, &patient_id, &["READ", "WRITE"])
        .await;
    app.grant(&patient, &reader_id, &["READ"]).await;
    app.open_consent(&reader, &patient_id, &["READ"]).await;
    // These two open consent sessions that their grant's revocation and expiry must end.
    let revoked_grant = app.grant(&patient, &revoked_id, &["READ", "WRITE"]).await;
    app.open_consent(&revoked, &patient_id, &["READ", "WRITE"])
        .await;
    app.graphql(
        Some(&patient),
        "mutation($g: ID!) { revokeAccess(grantId: $g) { id } }",
        json!({ "g": revoked_grant }),
    )
    .await
    .data();
    app.grant(&patient, &expired_id, &["READ", "WRITE"]).await;
    app.open_consent(&expired, &patient_id, &["READ", "WRITE"])
        .await;
    app.sql(&format!("UPDATE grants SET expires_at = now() - interval '1 minute' WHERE grantee_id = '{expired_id}'"))
        .await;
    let record_id = app.add_record(&writer, &patient_id, "64").await;
    let writers_opening = app
        .prepare_consent(&writer, &app.secret_of(&writer), &patient_id, &["READ"])
        .await;
    let mut callers = vec![
        ("admin-a", Some(admin_a.clone())),
        ("admin-b", Some(admin_b)),
        ("patient-p", Some(patient)),
        ("patient-q", Some(other_patient)),
        ("dr-writer", Some(writer.clone())),
        ("dr-reader", Some(reader)),
        ("dr-revoked", Some(revoked)),
        ("dr-expired", Some(expired)),
        ("dr-elsewhere", Some(other_hospital_doctor)),
        ("anonymous", None),
    ];
    // Each recipient role in an organization of its own kind, with a ceiling, so that its one
    // export request of the matrix is not refused for another organization's unfinished job.
    let mut research_organization_id = String::new();
    for (role, kind) in [
        ("INSURER", "INSURER"),
        ("RESEARCHER", "RESEARCH"),
        ("GOVERNMENT", "GOVERNMENT"),
    ] {
        let created = app
            .graphql(
                Some(&admin_a),
                "mutation($n: String!, $k: OrganizationKind!) {
                   createRecipientOrganization(name: $n, kind: $k) { id } }",
                json!({ "n": format!("{kind} recipient"), "k": kind }),
            )
            .await;
        let organization = created.data()["createRecipientOrganization"]["id"]
            .as_str()
            .expect("organization id")
            .to_owned();
        let username = role.to_lowercase();
        app.try_create_staff(&admin_a, &username, role, Some(&organization))
            .await
            .data();
        callers.push((leak(username.clone()), Some(app.login(&username).await)));
        app.graphql(
            Some(&admin_a),
            SET_CEILING,
            json!({ "role": role, "rules": ceiling_rules() }),
        )
        .await
        .data();
        if kind == "RESEARCH" {
            research_organization_id = organization;
        }
    }
    callers.push((
        "auditor",
        Some(app.create_staff(&admin_a, "auditor", "AUDITOR").await),
    ));
    World {
        patient_id,
        erasure_target_id,
        record_id,
        writer,
        grant_target_id,
        research_organization_id,
        writers_opening,
        callers,
    }
}

const SET_CEILING: &str = "mutation($role: Role!, $rules: ExportCeilingInput!) {
    setExportCeiling(role: $role, rules: $rules) { role } }";

fn ceiling_rules() -> serde_json::Value {
    json!({ "datasets": ["OBSERVATIONS"], "minK": 5, "maxSuppression": 0.05,
            "minBirthGranularityYears": 5, "allowZip3": true, "allowSex": true,
            "finestDates": "MONTH", "allowPerRecipientPseudonyms": false })
}

fn leak(name: String) -> &'static str {
    Box::leak(name.into_boxed_str())
}

#[derive(Clone, Copy, Debug)]
enum Operation {
    ReadProfile,
    ReadRecords,
    ReadRecord,
    ReadRecordHistory,
    ReadPatientHistory,
    ReadProfileHistory,
    ReadAccessLog,
    AddRecord,
    UpdateRecord,
    DeleteRecord,
    EditOwnPersonalDetails,
    CreatePatient,
    CreateDoctor,
    ListPatients,
    ListDoctors,
    GrantAccess,
    ListOwnGrants,
    GrantResearchConsent,
    CreateRecipientOrganization,
    SetExportCeiling,
    ListHospitalCeilings,
    RequestExport,
    ReadConsentKeys,
    RegisterGranteeKey,
    AskConsentChallenge,
    ReadConsentWitness,
    OpenConsent,
    ReadPseudonym,
    ReadAccessProofs,
    ReadQueuedFacts,
    ErasePatient,
}

const OPERATIONS: [Operation; 31] = [
    Operation::ReadProfile,
    Operation::ReadRecords,
    Operation::ReadRecord,
    Operation::ReadRecordHistory,
    Operation::ReadPatientHistory,
    Operation::ReadProfileHistory,
    Operation::ReadAccessLog,
    Operation::AddRecord,
    Operation::UpdateRecord,
    Operation::DeleteRecord,
    Operation::EditOwnPersonalDetails,
    Operation::CreatePatient,
    Operation::CreateDoctor,
    Operation::ListPatients,
    Operation::ListDoctors,
    Operation::GrantAccess,
    Operation::ListOwnGrants,
    Operation::GrantResearchConsent,
    Operation::CreateRecipientOrganization,
    Operation::SetExportCeiling,
    Operation::ListHospitalCeilings,
    Operation::RequestExport,
    Operation::ReadConsentKeys,
    Operation::RegisterGranteeKey,
    Operation::AskConsentChallenge,
    Operation::ReadConsentWitness,
    Operation::OpenConsent,
    Operation::ReadPseudonym,
    Operation::ReadAccessProofs,
    Operation::ReadQueuedFacts,
    Operation::ErasePatient,
];

/// Who may do what to patient P's data, per Algorithm 1 and the paper's roles.
fn allowed(caller: &str, operation: Operation) -> bool {
    let admin = caller.starts_with("admin");
    let patient = caller.starts_with("patient");
    let doctor = caller.starts_with("dr-");
    match operation {
        Operation::ReadProfile
        | Operation::ReadRecords
        | Operation::ReadRecord
        | Operation::ReadRecordHistory
        | Operation::ReadPatientHistory
        | Operation::ReadProfileHistory
        | Operation::ReadPseudonym => {
            matches!(caller, "patient-p" | "dr-writer" | "dr-reader")
        }
        Operation::ReadConsentKeys => true,
        Operation::RegisterGranteeKey | Operation::AskConsentChallenge => doctor,
        Operation::ReadConsentWitness | Operation::OpenConsent => {
            matches!(caller, "dr-writer" | "dr-reader")
        }
        Operation::ReadAccessProofs | Operation::ReadQueuedFacts => caller == "auditor",
        Operation::ReadAccessLog => caller == "patient-p",
        Operation::AddRecord | Operation::UpdateRecord | Operation::DeleteRecord => {
            caller == "dr-writer"
        }
        Operation::EditOwnPersonalDetails
        | Operation::GrantAccess
        | Operation::ListOwnGrants
        | Operation::GrantResearchConsent => patient,
        Operation::CreatePatient
        | Operation::CreateDoctor
        | Operation::CreateRecipientOrganization
        | Operation::SetExportCeiling => admin,
        Operation::ListHospitalCeilings | Operation::RequestExport => {
            matches!(caller, "insurer" | "researcher" | "government")
        }
        Operation::ListPatients => admin || doctor,
        Operation::ListDoctors => admin || doctor || patient,
        // admin-a, the first caller, erases patient E; every later attempt finds E erased.
        Operation::ErasePatient => caller == "admin-a",
    }
}

async fn attempt(
    app: &TestApp,
    world: &World,
    caller: &str,
    token: Option<&str>,
    operation: Operation,
) -> Answer {
    let p = &world.patient_id;
    let unique = format!("{caller}-{operation:?}").to_lowercase();
    match operation {
        Operation::ReadProfile => {
            app.graphql(
                token,
                "query($id: ID!) { patient(id: $id) { personal { fullName } } }",
                json!({ "id": p }),
            )
            .await
        }
        Operation::ReadRecords => {
            let query = "query($id: ID!) { patient(id: $id) { records { edges { node { content { value } } } } } }";
            app.graphql(token, query, json!({ "id": p })).await
        }
        Operation::ReadRecord => {
            app.graphql(
                token,
                "query($id: ID!) { record(id: $id) { content { value } } }",
                json!({ "id": world.record_id }),
            )
            .await
        }
        Operation::ReadRecordHistory => {
            let query =
                "query($id: ID!) { recordHistory(recordId: $id) { version content { value } } }";
            app.graphql(token, query, json!({ "id": world.record_id }))
                .await
        }
        Operation::ReadPatientHistory => {
            let query =
                "query($id: ID!) { patient(id: $id) { history { edges { node { version } } } } }";
            app.graphql(token, query, json!({ "id": p })).await
        }
        Operation::ReadProfileHistory => {
            let query = "query($id: ID!) { patient(id: $id) { profileHistory { version } } }";
            app.graphql(token, query, json!({ "id": p })).await
        }
        Operation::ReadAccessLog => {
            let query =
                "query($id: ID!) { patient(id: $id) { accessLog { edges { node { action } } } } }";
            app.graphql(token, query, json!({ "id": p })).await
        }
        Operation::AddRecord => app.try_add_record(token.unwrap_or_default(), p, "66").await,
        Operation::UpdateRecord => {
            let record = app.add_record(&world.writer, p, "67").await;
            let query = "mutation($id: ID!, $p: ID!, $r: MedicalRecordInput!) {
                           updateMedicalRecord(recordId: $id, patientId: $p, expectedVersion: 1, record: $r) { version } }";
            app.graphql(
                token,
                query,
                json!({ "id": record, "p": p, "r": heart_rate("68") }),
            )
            .await
        }
        Operation::DeleteRecord => {
            let record = app.add_record(&world.writer, p, "69").await;
            let query = "mutation($id: ID!, $p: ID!) { deleteMedicalRecord(recordId: $id, patientId: $p, expectedVersion: 1) { version } }";
            app.graphql(token, query, json!({ "id": record, "p": p }))
                .await
        }
        Operation::EditOwnPersonalDetails => {
            let query = "mutation($p: PersonalDetailsInput!) { updatePersonalDetails(expectedVersion: 1, personal: $p) { profileVersion } }";
            let personal =
                json!({ "fullName": "Renamed", "dateOfBirth": "1990-01-01", "sex": "OTHER" });
            app.graphql(token, query, json!({ "p": personal })).await
        }
        Operation::CreatePatient => {
            let query = "mutation($i: CreatePatientInput!) { createPatient(input: $i) { id } }";
            let input = json!({ "username": unique, "password": PASSWORD,
                                "personal": { "fullName": "New Patient", "dateOfBirth": "2000-02-02", "sex": "MALE" },
                                "medical": { "allergies": [], "chronicConditions": [] } });
            app.graphql(token, query, json!({ "i": input })).await
        }
        Operation::ErasePatient => {
            let query = "mutation($p: ID!) { erasePatient(patientId: $p) { patientId } }";
            app.graphql(token, query, json!({ "p": world.erasure_target_id }))
                .await
        }
        Operation::CreateDoctor => {
            let query = "mutation($i: CreateDoctorInput!) { createDoctor(input: $i) { id } }";
            let input = json!({ "username": unique, "password": PASSWORD, "fullName": "Dr. New", "specialty": "GP" });
            app.graphql(token, query, json!({ "i": input })).await
        }
        Operation::ListPatients => {
            app.graphql(
                token,
                "{ patients { edges { node { fullName } } } }",
                json!({}),
            )
            .await
        }
        Operation::ListDoctors => {
            app.graphql(
                token,
                "{ doctors { edges { node { username } } } }",
                json!({}),
            )
            .await
        }
        Operation::GrantAccess => {
            let query = "mutation($d: ID!, $e: DateTime!) { grantAccess(doctorId: $d, scopes: [READ], expiresAt: $e) { id } }";
            let expires = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
            app.graphql(
                token,
                query,
                json!({ "d": world.grant_target_id, "e": expires }),
            )
            .await
        }
        Operation::ListOwnGrants => {
            app.graphql(token, "{ myGrants { edges { node { id } } } }", json!({}))
                .await
        }
        Operation::GrantResearchConsent => {
            let query = "mutation($o: ID!, $e: DateTime!) { grantResearchConsent(organizationId: $o, expiresAt: $e) { id } }";
            let expires = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
            app.graphql(
                token,
                query,
                json!({ "o": world.research_organization_id, "e": expires }),
            )
            .await
        }
        Operation::CreateRecipientOrganization => {
            let query = "mutation($n: String!) { createRecipientOrganization(name: $n, kind: INSURER) { id } }";
            app.graphql(token, query, json!({ "n": unique })).await
        }
        Operation::SetExportCeiling => {
            app.graphql(
                token,
                SET_CEILING,
                json!({ "role": "INSURER", "rules": ceiling_rules() }),
            )
            .await
        }
        Operation::ListHospitalCeilings => {
            let query = "{ exportCeilings { hospital { name } ceiling { role } } }";
            app.graphql(token, query, json!({})).await
        }
        Operation::RequestExport => {
            let query = "mutation { requestExport(policy: { dataset: OBSERVATIONS, ageBandYears: 10, dates: YEAR }) { id } }";
            app.graphql(token, query, json!({})).await
        }
        Operation::ReadConsentKeys => {
            let query = "{ consentKeys { depth verifyingKeyHash provingKeyHash } }";
            app.graphql(token, query, json!({})).await
        }
        Operation::RegisterGranteeKey => {
            // A doctor registers the key they hold again (a new one would re-key their grants
            // under the matrix's feet); anyone else offers a key of their own.
            let secret = match token {
                Some(token) if caller.starts_with("dr-") => app.secret_of(token),
                _ => GranteeSecret::generate(&mut medvault_circuits::OsRng),
            };
            match token {
                Some(token) => app.register_grantee_key(token, &secret).await,
                None => {
                    let query = "mutation($c: String!) { registerGranteeKey(commitment: $c) { commitment } }";
                    let commitment = medvault_circuits::field::field_to_hex(secret.commitment());
                    app.graphql(None, query, json!({ "c": commitment })).await
                }
            }
        }
        Operation::AskConsentChallenge => {
            let query = "mutation($p: ID!) { consentChallenge(patientId: $p, scopes: [READ]) { challenge } }";
            app.graphql(token, query, json!({ "p": p })).await
        }
        Operation::ReadConsentWitness => {
            let query = "query($p: ID!) { consentWitness(patientId: $p) { root leafIndex } }";
            app.graphql(token, query, json!({ "p": p })).await
        }
        Operation::OpenConsent => {
            let opening = match token {
                Some(token) if matches!(caller, "dr-writer" | "dr-reader") => {
                    app.prepare_consent(token, &app.secret_of(token), p, &["READ"])
                        .await
                }
                _ => world.writers_opening.clone(),
            };
            match token {
                Some(token) => app.try_open_consent(token, p, &["READ"], &opening).await,
                None => {
                    let query = "mutation($p: ID!, $c: String!, $r: String!, $x: String!) {
                        openConsent(patientId: $p, scopes: [READ], challenge: $c, root: $r, proof: $x) { id } }";
                    let variables = json!({ "p": p, "c": opening.challenge, "r": opening.root,
                                            "x": opening.proof });
                    app.graphql(None, query, variables).await
                }
            }
        }
        Operation::ReadPseudonym => {
            let query = "query($id: ID!) { patient(id: $id) { pseudonym } }";
            app.graphql(token, query, json!({ "id": p })).await
        }
        Operation::ReadAccessProofs => {
            let query =
                "{ accessProofs { nodes { sessionId root rootAnchoring { status } proof } } }";
            app.graphql(token, query, json!({})).await
        }
        Operation::ReadQueuedFacts => {
            let query = "{ queuedFacts { nodes { id kind entry anchoring { status } } } }";
            app.graphql(token, query, json!({})).await
        }
    }
}

#[tokio::test]
async fn every_role_is_allowed_exactly_what_algorithm_1_allows() {
    let app = spawn_app().await;
    let world = build_world(&app).await;
    let mut unexpected = Vec::new();
    for (caller, token) in &world.callers {
        for operation in OPERATIONS {
            let answer = attempt(&app, &world, caller, token.as_deref(), operation).await;
            let expected_code = if token.is_none() {
                "UNAUTHENTICATED"
            } else {
                "FORBIDDEN"
            };
            let outcome = answer.error_code();
            let fine = if allowed(caller, operation) {
                outcome.is_none()
            } else {
                outcome == Some(expected_code)
            };
            if !fine {
                unexpected.push(format!("{caller} {operation:?}: {}", answer.body));
            }
        }
    }
    assert!(
        unexpected.is_empty(),
        "unexpected outcomes:\n{}",
        unexpected.join("\n")
    );
}

#[tokio::test]
async fn updates_and_deletes_must_name_the_records_own_patient() {
    let app = spawn_app().await;
    let admin = app.bootstrap_admin("St. Mary's", "admin-a").await;
    let (doctor_id, doctor) = app.create_doctor(&admin, "dr-both").await;
    let (p_id, p) = app.create_patient(&admin, "patient-p", "Petra Pan").await;
    let (q_id, q) = app
        .create_patient(&admin, "patient-q", "Quentin Quill")
        .await;
    app.grant(&p, &doctor_id, &["READ", "WRITE"]).await;
    app.grant(&q, &doctor_id, &["READ", "WRITE"]).await;
    app.open_consent(&doctor, &p_id, &["READ", "WRITE"]).await;
    app.open_consent(&doctor, &q_id, &["READ", "WRITE"]).await;
    let q_record = app.add_record(&doctor, &q_id, "70").await;

    let update = "mutation($id: ID!, $p: ID!, $r: MedicalRecordInput!) {
                    updateMedicalRecord(recordId: $id, patientId: $p, expectedVersion: 1, record: $r) { version } }";
    app.graphql(
        Some(&doctor),
        update,
        json!({ "id": q_record, "p": p_id, "r": heart_rate("1") }),
    )
    .await
    .expect_error("FORBIDDEN");
    let delete = "mutation($id: ID!, $p: ID!) { deleteMedicalRecord(recordId: $id, patientId: $p, expectedVersion: 1) { version } }";
    app.graphql(Some(&doctor), delete, json!({ "id": q_record, "p": p_id }))
        .await
        .expect_error("FORBIDDEN");

    let unchanged = app
        .graphql(
            Some(&doctor),
            "query($id: ID!) { record(id: $id) { version content { value } } }",
            json!({ "id": q_record }),
        )
        .await;
    assert_eq!(unchanged.data()["record"]["version"], 1);
    assert_eq!(unchanged.data()["record"]["content"]["value"], "70");

    let log = app
        .sql("SELECT count(*) FROM access_log WHERE outcome = 'denied' AND reason = 'record belongs to another patient'")
        .await;
    assert_eq!(log[0].get::<_, i64>(0), 2, "both refusals are logged");
}
