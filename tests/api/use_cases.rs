//! The paper's use cases for admin, patient and doctor, end to end.

use crate::helpers::{heart_rate, spawn_app, CareTeam};
use serde_json::json;

#[tokio::test]
async fn admin_creates_patients_and_doctors_and_lists_patients_with_limited_information() {
    let app = spawn_app().await;
    let admin = app.bootstrap_admin("St. Mary's", "admin-a").await;
    let other_admin = app.bootstrap_admin("Riverside", "admin-b").await;
    app.create_doctor(&admin, "dr-house").await;
    let (patient_id, _) = app.create_patient(&admin, "jane", "Jane Roe").await;
    app.create_patient(&other_admin, "john", "John Doe").await;

    let listed = app
        .graphql(
            Some(&admin),
            "{ patients { edges { node { id fullName birthYear hospital { name } } } } }",
            json!({}),
        )
        .await;
    let edges = listed.data()["patients"]["edges"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        edges.len(),
        1,
        "an admin lists only their own hospital's patients"
    );
    assert_eq!(edges[0]["node"]["id"], patient_id);
    assert_eq!(edges[0]["node"]["fullName"], "Jane Roe");
    assert_eq!(edges[0]["node"]["birthYear"], 1984);
    assert_eq!(edges[0]["node"]["hospital"]["name"], "St. Mary's");

    let medical = app
        .graphql(
            Some(&admin),
            "{ patients { edges { node { medical { bloodType } } } } }",
            json!({}),
        )
        .await;
    medical.expect_error("BAD_USER_INPUT");
    let details = app
        .graphql(
            Some(&admin),
            "query($id: ID!) { patient(id: $id) { medical { bloodType } } }",
            json!({ "id": patient_id }),
        )
        .await;
    details.expect_error("FORBIDDEN");
}

#[tokio::test]
async fn a_patient_reads_and_edits_their_details_and_sees_their_history() {
    let app = spawn_app().await;
    let admin = app.bootstrap_admin("St. Mary's", "admin-a").await;
    let (patient_id, patient) = app.create_patient(&admin, "jane", "Jane Roe").await;

    let me = app
        .graphql(
            Some(&patient),
            "{ me { id role username hospital { name } } }",
            json!({}),
        )
        .await;
    assert_eq!(me.data()["me"]["id"], patient_id);
    assert_eq!(me.data()["me"]["role"], "PATIENT");

    let own = app
        .graphql(
            Some(&patient),
            "query($id: ID!) { patient(id: $id) { profileVersion personal { fullName email } medical { bloodType allergies } } }",
            json!({ "id": patient_id }),
        )
        .await;
    assert_eq!(own.data()["patient"]["profileVersion"], 1);
    assert_eq!(own.data()["patient"]["personal"]["fullName"], "Jane Roe");
    assert_eq!(
        own.data()["patient"]["medical"]["allergies"],
        json!(["Penicillin"])
    );

    let edit = "mutation($v: Int!, $p: PersonalDetailsInput!) {
                  updatePersonalDetails(expectedVersion: $v, personal: $p) { profileVersion personal { fullName } medical { bloodType } } }";
    let personal = json!({ "fullName": "Jane Roe-Smith", "dateOfBirth": "1984-03-09", "sex": "FEMALE",
                           "address": "4 New Street", "postalCode": "02140", "phone": null, "email": null });
    let edited = app
        .graphql(Some(&patient), edit, json!({ "v": 1, "p": personal }))
        .await;
    assert_eq!(edited.data()["updatePersonalDetails"]["profileVersion"], 2);
    assert_eq!(
        edited.data()["updatePersonalDetails"]["medical"]["bloodType"],
        "O+",
        "medical details carry over"
    );

    let stale = app
        .graphql(Some(&patient), edit, json!({ "v": 1, "p": personal }))
        .await;
    stale.expect_error("CONFLICT");

    let history = app
        .graphql(
            Some(&patient),
            "query($id: ID!) { patient(id: $id) { profileHistory { version personal { fullName } author { role } } } }",
            json!({ "id": patient_id }),
        )
        .await;
    let versions = history.data()["patient"]["profileHistory"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["personal"]["fullName"], "Jane Roe");
    assert_eq!(versions[0]["author"]["role"], "ADMIN");
    assert_eq!(versions[1]["personal"]["fullName"], "Jane Roe-Smith");
    assert_eq!(versions[1]["author"]["role"], "PATIENT");
}

#[tokio::test]
async fn a_patient_lists_the_doctors_of_every_hospital() {
    let app = spawn_app().await;
    let admin_a = app.bootstrap_admin("St. Mary's", "admin-a").await;
    let admin_b = app.bootstrap_admin("Riverside", "admin-b").await;
    app.create_doctor(&admin_a, "dr-a").await;
    app.create_doctor(&admin_b, "dr-b").await;
    let (_, patient) = app.create_patient(&admin_a, "jane", "Jane Roe").await;

    let doctors = app
        .graphql(
            Some(&patient),
            "{ doctors { edges { node { username specialty hospital { name } } } } }",
            json!({}),
        )
        .await;
    let mut hospitals: Vec<String> = doctors.data()["doctors"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| {
            edge["node"]["hospital"]["name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    hospitals.sort();
    assert_eq!(hospitals, vec!["Riverside", "St. Mary's"]);
}

#[tokio::test]
async fn granting_and_revoking_access_opens_and_closes_a_doctors_view() {
    let app = spawn_app().await;
    let admin = app.bootstrap_admin("St. Mary's", "admin-a").await;
    let (doctor_id, doctor) = app.create_doctor(&admin, "dr-a").await;
    let (patient_id, patient) = app.create_patient(&admin, "jane", "Jane Roe").await;
    let read_profile = "query($id: ID!) { patient(id: $id) { personal { fullName } } }";

    app.graphql(Some(&doctor), read_profile, json!({ "id": patient_id }))
        .await
        .expect_error("FORBIDDEN");
    let grant_id = app.grant(&patient, &doctor_id, &["READ"]).await;
    app.graphql(Some(&doctor), read_profile, json!({ "id": patient_id }))
        .await
        .expect_error("FORBIDDEN");
    app.open_consent(&doctor, &patient_id, &["READ"]).await;

    let listed = app
        .graphql(
            Some(&doctor),
            "{ patients { edges { node { id fullName } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed.data()["patients"]["edges"][0]["node"]["fullName"],
        "Jane Roe"
    );
    let profile = app
        .graphql(Some(&doctor), read_profile, json!({ "id": patient_id }))
        .await;
    assert_eq!(
        profile.data()["patient"]["personal"]["fullName"],
        "Jane Roe"
    );

    let grants = app
        .graphql(
            Some(&patient),
            "{ myGrants { edges { node { id live scopes doctor { username } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(grants.data()["myGrants"]["edges"][0]["node"]["live"], true);
    assert_eq!(
        grants.data()["myGrants"]["edges"][0]["node"]["doctor"]["username"],
        "dr-a"
    );

    let revoked = app
        .graphql(
            Some(&patient),
            "mutation($g: ID!) { revokeAccess(grantId: $g) { live revokedAt } }",
            json!({ "g": grant_id }),
        )
        .await;
    assert_eq!(revoked.data()["revokeAccess"]["live"], false);
    app.graphql(Some(&doctor), read_profile, json!({ "id": patient_id }))
        .await
        .expect_error("FORBIDDEN");
    let listed = app
        .graphql(
            Some(&doctor),
            "{ patients { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(listed.data()["patients"]["edges"], json!([]));
}

#[tokio::test]
async fn a_doctor_adds_views_updates_and_deletes_records_and_reads_their_history() {
    let app = spawn_app().await;
    let CareTeam {
        doctor,
        patient,
        patient_id,
        ..
    } = app.care_team().await;

    let me = app
        .graphql(
            Some(&doctor),
            "{ me { username role specialty displayName } }",
            json!({}),
        )
        .await;
    assert_eq!(me.data()["me"]["specialty"], "Cardiology");

    let record_id = app.add_record(&doctor, &patient_id, "72").await;
    let condition = json!({ "kind": "CONDITION", "codeSystem": "ICD10", "code": "E11.9",
                            "value": "Type 2 diabetes mellitus", "unit": null,
                            "effectiveAt": "2025-06-01T00:00:00Z", "note": "diet first" });
    let batch = app
        .graphql(
            Some(&doctor),
            "mutation($p: ID!, $r: [MedicalRecordInput!]!) { addMedicalRecords(patientId: $p, records: $r) { id version } }",
            json!({ "p": patient_id, "r": [condition, heart_rate("80")] }),
        )
        .await;
    assert_eq!(
        batch.data()["addMedicalRecords"].as_array().unwrap().len(),
        2
    );

    let read = app
        .graphql(
            Some(&doctor),
            "query($id: ID!) { record(id: $id) { version content { kind code value unit } author { username } anchorLeaf ciphertextSha3 } }",
            json!({ "id": record_id }),
        )
        .await;
    let record = &read.data()["record"];
    assert_eq!(record["content"]["value"], "72");
    assert_eq!(record["author"]["username"], "dr-a");
    assert_eq!(record["anchorLeaf"].as_str().unwrap().len(), 64);

    let update = "mutation($id: ID!, $p: ID!, $v: Int!, $r: MedicalRecordInput!) {
                    updateMedicalRecord(recordId: $id, patientId: $p, expectedVersion: $v, record: $r) { version content { value } } }";
    let updated = app
        .graphql(
            Some(&doctor),
            update,
            json!({ "id": record_id, "p": patient_id, "v": 1, "r": heart_rate("75") }),
        )
        .await;
    assert_eq!(updated.data()["updateMedicalRecord"]["version"], 2);
    let stale = app
        .graphql(
            Some(&doctor),
            update,
            json!({ "id": record_id, "p": patient_id, "v": 1, "r": heart_rate("99") }),
        )
        .await;
    stale.expect_error("CONFLICT");

    let listing = app
        .graphql(
            Some(&patient),
            "query($id: ID!) { patient(id: $id) { records(first: 2) { edges { cursor node { id } } pageInfo { hasNextPage endCursor } } } }",
            json!({ "id": patient_id }),
        )
        .await;
    let page = &listing.data()["patient"]["records"];
    assert_eq!(page["edges"].as_array().unwrap().len(), 2);
    assert_eq!(page["pageInfo"]["hasNextPage"], true);
    let next = app
        .graphql(
            Some(&patient),
            "query($id: ID!, $after: String) { patient(id: $id) { records(first: 2, after: $after) { edges { node { id } } pageInfo { hasNextPage } } } }",
            json!({ "id": patient_id, "after": page["pageInfo"]["endCursor"] }),
        )
        .await;
    assert_eq!(
        next.data()["patient"]["records"]["edges"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        next.data()["patient"]["records"]["pageInfo"]["hasNextPage"],
        false
    );

    let delete = "mutation($id: ID!, $p: ID!, $v: Int!) { deleteMedicalRecord(recordId: $id, patientId: $p, expectedVersion: $v) { id version } }";
    let deleted = app
        .graphql(
            Some(&doctor),
            delete,
            json!({ "id": record_id, "p": patient_id, "v": 2 }),
        )
        .await;
    assert_eq!(deleted.data()["deleteMedicalRecord"]["version"], 3);
    app.graphql(
        Some(&doctor),
        "query($id: ID!) { record(id: $id) { version } }",
        json!({ "id": record_id }),
    )
    .await
    .expect_error("NOT_FOUND");

    let history = app
        .graphql(
            Some(&patient),
            "query($id: ID!) { recordHistory(recordId: $id) { version operation shredded content { value } author { username } ciphertextSha3 } }",
            json!({ "id": record_id }),
        )
        .await;
    let versions = history.data()["recordHistory"].as_array().unwrap().clone();
    let operations: Vec<&str> = versions
        .iter()
        .map(|v| v["operation"].as_str().unwrap())
        .collect();
    assert_eq!(operations, vec!["CREATE", "UPDATE", "DELETE"]);
    assert!(
        versions.iter().all(|v| v["content"].is_null()),
        "a delete shreds every version: {versions:#?}"
    );
    assert_eq!(versions[0]["shredded"], true);
    assert_eq!(versions[2]["shredded"], false);
    assert!(
        versions
            .iter()
            .all(|v| v["ciphertextSha3"].as_str().unwrap().len() == 64),
        "hashes stay"
    );

    let patient_history = app
        .graphql(
            Some(&doctor),
            "query($id: ID!) { patient(id: $id) { history(first: 50) { edges { node { recordId version operation content { value } } } } } }",
            json!({ "id": patient_id }),
        )
        .await;
    let entries = patient_history.data()["patient"]["history"]["edges"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        entries.len(),
        5,
        "3 versions of the deleted record and 2 live records"
    );
    assert_eq!(
        app.sql("SELECT count(*) FROM record_version_keys").await[0].get::<_, i64>(0),
        2
    );
}

#[tokio::test]
async fn the_access_log_shows_the_patient_every_allowed_and_refused_access() {
    let app = spawn_app().await;
    let CareTeam {
        admin,
        doctor,
        patient,
        patient_id,
    } = app.care_team().await;
    let (_, stranger) = app.create_doctor(&admin, "dr-stranger").await;
    app.add_record(&doctor, &patient_id, "70").await;
    app.try_add_record(&stranger, &patient_id, "71")
        .await
        .expect_error("FORBIDDEN");

    let log = app
        .graphql(
            Some(&patient),
            "query($id: ID!) { patient(id: $id) { accessLog(first: 50) { edges { node { action allowed reason actor { username } actorRole at } } } } }",
            json!({ "id": patient_id }),
        )
        .await;
    let entries: Vec<(String, String, bool)> = log.data()["patient"]["accessLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| {
            let node = &edge["node"];
            (
                node["actor"]["username"].as_str().unwrap().to_owned(),
                node["action"].as_str().unwrap().to_owned(),
                node["allowed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(
        entries.contains(&("dr-a".into(), "add_record".into(), true)),
        "{entries:?}"
    );
    assert!(
        entries.contains(&("dr-stranger".into(), "add_record".into(), false)),
        "{entries:?}"
    );
    assert!(
        entries.contains(&("jane".into(), "read_profile".into(), true)),
        "{entries:?}"
    );

    app.graphql(
        Some(&doctor),
        "query($id: ID!) { patient(id: $id) { accessLog { edges { node { action } } } } }",
        json!({ "id": patient_id }),
    )
    .await
    .expect_error("FORBIDDEN");
}

#[tokio::test]
async fn logout_revokes_the_token() {
    let app = spawn_app().await;
    let admin = app.bootstrap_admin("St. Mary's", "admin-a").await;
    app.graphql(Some(&admin), "{ me { username } }", json!({}))
        .await
        .data();
    let out = app
        .graphql(Some(&admin), "mutation { logout }", json!({}))
        .await;
    assert_eq!(out.data()["logout"], true);
    app.graphql(Some(&admin), "{ me { username } }", json!({}))
        .await
        .expect_error("UNAUTHENTICATED");
    let wrong = app
        .graphql(
            None,
            "mutation { login(username: \"admin-a\", password: \"wrong password!!\") { token } }",
            json!({}),
        )
        .await;
    wrong.expect_error("UNAUTHENTICATED");
    let unknown = app
        .graphql(
            None,
            "mutation { login(username: \"nobody\", password: \"wrong password!!\") { token } }",
            json!({}),
        )
        .await;
    unknown.expect_error("UNAUTHENTICATED");
}
