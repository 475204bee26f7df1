//! Bad input gets a typed error and changes nothing.

use crate::helpers::{heart_rate, spawn_app, CareTeam, TestApp};
use serde_json::json;

struct Fixture {
    doctor: String,
    patient_id: String,
    record_id: String,
}

async fn fixture(app: &TestApp) -> Fixture {
    let CareTeam {
        doctor, patient_id, ..
    } = app.care_team().await;
    let record_id = app.add_record(&doctor, &patient_id, "70").await;
    Fixture {
        doctor,
        patient_id,
        record_id,
    }
}

const ADD: &str = "mutation($p: ID!, $r: MedicalRecordInput!) { addMedicalRecord(patientId: $p, record: $r) { id } }";

#[tokio::test]
async fn malformed_ids_and_cursors_are_bad_user_input() {
    let app = spawn_app().await;
    let f = fixture(&app).await;
    for id in [
        "not-a-uuid",
        "",
        "'; DROP TABLE records; --",
        "00000000-0000-0000-0000-00000000000g",
    ] {
        app.graphql(
            Some(&f.doctor),
            "query($id: ID!) { record(id: $id) { version } }",
            json!({ "id": id }),
        )
        .await
        .expect_error("BAD_USER_INPUT");
        app.graphql(
            Some(&f.doctor),
            ADD,
            json!({ "p": id, "r": heart_rate("1") }),
        )
        .await
        .expect_error("BAD_USER_INPUT");
    }
    let unknown = "00000000-0000-7000-8000-000000000000";
    app.graphql(
        Some(&f.doctor),
        "query($id: ID!) { record(id: $id) { version } }",
        json!({ "id": unknown }),
    )
    .await
    .expect_error("FORBIDDEN");
    let page = "query($id: ID!, $a: String, $n: Int) { patient(id: $id) { records(first: $n, after: $a) { edges { cursor } } } }";
    for (after, first) in [
        (json!("bm90IGEgY3Vyc29y"), json!(5)),
        (json!("%%%"), json!(5)),
        (json!(null), json!(101)),
        (json!(null), json!(-1)),
    ] {
        app.graphql(
            Some(&f.doctor),
            page,
            json!({ "id": f.patient_id, "a": after, "n": first }),
        )
        .await
        .expect_error("BAD_USER_INPUT");
    }
}

#[tokio::test]
async fn oversized_strings_invalid_dates_and_unknown_codes_are_refused_and_store_nothing() {
    let app = spawn_app().await;
    let f = fixture(&app).await;
    let before = app.sql("SELECT count(*) FROM record_versions").await[0].get::<_, i64>(0);
    let mut bad_records = Vec::new();
    let mut oversized_note = heart_rate("1");
    oversized_note["note"] = json!("x".repeat(8193));
    bad_records.push(oversized_note);
    let mut oversized_code = heart_rate("1");
    oversized_code["code"] = json!("1".repeat(33));
    bad_records.push(oversized_code);
    for date in [
        "2026-13-45T00:00:00Z",
        "yesterday",
        "1850-01-01T00:00:00Z",
        "2999-01-01T00:00:00Z",
    ] {
        let mut record = heart_rate("1");
        record["effectiveAt"] = json!(date);
        bad_records.push(record);
    }
    for (system, code) in [
        ("LOINC", "8867-5"),
        ("LOINC", "hello"),
        ("ICD10", "e11.9"),
        ("SNOMED_CT", "44054007"),
        ("READ_V2", "C10.."),
    ] {
        let mut record = heart_rate("1");
        record["codeSystem"] = json!(system);
        record["code"] = json!(code);
        bad_records.push(record);
    }
    let mut wrong_kind = heart_rate("1");
    wrong_kind["kind"] = json!("HOROSCOPE");
    bad_records.push(wrong_kind);
    for record in bad_records {
        let answer = app
            .graphql(
                Some(&f.doctor),
                ADD,
                json!({ "p": f.patient_id, "r": record }),
            )
            .await;
        assert_eq!(
            answer.error_code(),
            Some("BAD_USER_INPUT"),
            "{record}: {:#}",
            answer.body
        );
    }
    let after = app.sql("SELECT count(*) FROM record_versions").await[0].get::<_, i64>(0);
    assert_eq!(before, after, "no refused write stored anything");

    let update = "mutation($id: ID!, $p: ID!, $v: Int!, $r: MedicalRecordInput!) {
                    updateMedicalRecord(recordId: $id, patientId: $p, expectedVersion: $v, record: $r) { version } }";
    for version in [0, -4] {
        app.graphql(
            Some(&f.doctor),
            update,
            json!({ "id": f.record_id, "p": f.patient_id, "v": version, "r": heart_rate("2") }),
        )
        .await
        .expect_error("BAD_USER_INPUT");
    }
    let unchanged = app
        .graphql(
            Some(&f.doctor),
            "query($id: ID!) { record(id: $id) { version content { value } } }",
            json!({ "id": f.record_id }),
        )
        .await;
    assert_eq!(unchanged.data()["record"]["version"], 1);
    assert_eq!(unchanged.data()["record"]["content"]["value"], "70");
}

#[tokio::test]
async fn deep_complex_batched_and_oversized_requests_are_refused() {
    let app = spawn_app().await;
    let f = fixture(&app).await;
    let deep = "query($id: ID!) { record(id: $id) { patient { records { edges { node { patient { records { edges { node { patient { personal { fullName } } } } } } } } } } } }";
    app.graphql(Some(&f.doctor), deep, json!({ "id": f.record_id }))
        .await
        .expect_error("BAD_USER_INPUT");

    let complex = "query($id: ID!) { patient(id: $id) { records(first: 100) { edges { node { patient { records(first: 100) { edges { node { id } } } } } } } } }";
    app.graphql(Some(&f.doctor), complex, json!({ "id": f.patient_id }))
        .await
        .expect_error("BAD_USER_INPUT");

    let one = json!({ "query": "{ me { username } }" });
    let batch = app
        .post_json(Some(&f.doctor), &json!(vec![one.clone(); 11]))
        .await;
    assert_eq!(batch.status, 400);
    assert_eq!(batch.error_code(), Some("BAD_REQUEST"));
    let allowed_batch = app.post_json(Some(&f.doctor), &json!(vec![one; 3])).await;
    assert_eq!(allowed_batch.body.as_array().map(Vec::len), Some(3));

    let oversized = app.post_raw(vec![b' '; 3 * 1024 * 1024]).await;
    assert_eq!(oversized.status().as_u16(), 413);
    let garbage = app.post_raw(b"{ this is not json".to_vec()).await;
    assert_eq!(garbage.status().as_u16(), 400);
    let syntax = app
        .graphql(Some(&f.doctor), "{ me { username ", json!({}))
        .await;
    syntax.expect_error("BAD_USER_INPUT");
    let unknown_field = app
        .graphql(Some(&f.doctor), "{ me { passwordHash } }", json!({}))
        .await;
    unknown_field.expect_error("BAD_USER_INPUT");
}

#[tokio::test]
async fn bad_registrations_are_refused() {
    let app = spawn_app().await;
    let admin = app.bootstrap_admin("St. Mary's", "admin-a").await;
    let create = "mutation($i: CreatePatientInput!) { createPatient(input: $i) { id } }";
    let valid = json!({ "username": "jane", "password": "long enough password",
                        "personal": { "fullName": "Jane", "dateOfBirth": "1990-01-01", "sex": "FEMALE" },
                        "medical": { "allergies": [], "chronicConditions": [] } });
    let mut cases = Vec::new();
    let mut short_password = valid.clone();
    short_password["password"] = json!("short");
    cases.push(short_password);
    let mut future_birth = valid.clone();
    future_birth["personal"]["dateOfBirth"] = json!("2999-01-01");
    cases.push(future_birth);
    let mut bad_email = valid.clone();
    bad_email["personal"]["email"] = json!("not an email");
    cases.push(bad_email);
    let mut blood = valid.clone();
    blood["medical"]["bloodType"] = json!("Z+");
    cases.push(blood);
    let mut long_name = valid.clone();
    long_name["personal"]["fullName"] = json!("n".repeat(201));
    cases.push(long_name);
    let mut bad_username = valid.clone();
    bad_username["username"] = json!("has space");
    cases.push(bad_username);
    for input in cases {
        let answer = app
            .graphql(Some(&admin), create, json!({ "i": input }))
            .await;
        assert_eq!(
            answer.error_code(),
            Some("BAD_USER_INPUT"),
            "{input}: {:#}",
            answer.body
        );
    }
    app.graphql(Some(&admin), create, json!({ "i": valid }))
        .await
        .data();
    app.graphql(Some(&admin), create, json!({ "i": valid }))
        .await
        .expect_error("CONFLICT");
    assert_eq!(
        app.sql("SELECT count(*) FROM users WHERE role = 'patient'")
            .await[0]
            .get::<_, i64>(0),
        1
    );
}
