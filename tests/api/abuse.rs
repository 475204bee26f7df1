//! The attacks of issue 10, each as a test: the request is refused with a typed error, and the
//! server still answers `/health` at once afterwards.

use crate::helpers::{spawn_app, spawn_app_with, AppOptions, TestApp, PASSWORD};
use medvault_vault::LoginThrottle;
use serde_json::{json, Value};
use std::time::Duration;

/// `/health` answers within 100 ms. Three tries absorb a scheduler hiccup on a loaded machine;
/// a stalled or crashed server fails all three.
async fn assert_healthy(app: &TestApp) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .expect("client");
    for _ in 0..3 {
        let answered = client.get(format!("{}/health", app.address)).send().await;
        if answered.is_ok_and(|response| response.status().is_success()) {
            return;
        }
    }
    panic!("/health did not answer within 100 ms");
}

#[tokio::test]
async fn deeply_nested_values_are_refused_and_the_server_stays_up() {
    let app = spawn_app().await;
    let lists = format!(
        "{{ me(x: {}1{}) {{ id }} }}",
        "[".repeat(2_000),
        "]".repeat(2_000)
    );
    let objects = format!(
        "{{ me(x: {}1{}) {{ id }} }}",
        "{a: ".repeat(5_000),
        "}".repeat(5_000)
    );
    let selections = format!("{{ me {}id{} }}", "{ me ".repeat(1_000), " }".repeat(1_000));
    for query in [lists, objects, selections] {
        let answer = app.graphql(None, &query, json!({})).await;
        answer.expect_error("BAD_USER_INPUT");
        assert!(
            answer.body["errors"][0]["message"]
                .as_str()
                .is_some_and(|message| message.contains("nests")),
            "{:#}",
            answer.body
        );
        assert_healthy(&app).await;
    }
}

#[tokio::test]
async fn doubling_fragments_are_refused_without_expanding_them() {
    let app = spawn_app().await;
    let mut query = String::from("{ me { ...L0 } }\n");
    for level in 0..30 {
        query.push_str(&format!(
            "fragment L{level} on User {{ id ...L{next} ...L{next} }}\n",
            next = level + 1
        ));
    }
    query.push_str("fragment L30 on User { id }\n");
    let few_fragments: String =
        query.lines().take(26).collect::<Vec<_>>().join("\n") + "\nfragment L25 on User { id }";
    for query in [query, few_fragments] {
        let started = std::time::Instant::now();
        app.graphql(None, &query, json!({}))
            .await
            .expect_error("BAD_USER_INPUT");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "refused only after {:?}",
            started.elapsed()
        );
        assert_healthy(&app).await;
    }
    let cycle = "{ me { ...A } } fragment A on User { id ...B } fragment B on User { ...A }";
    app.graphql(None, cycle, json!({}))
        .await
        .expect_error("BAD_USER_INPUT");
    assert_healthy(&app).await;
}

#[tokio::test]
async fn many_aliases_and_root_fields_are_refused() {
    let app = spawn_app().await;
    let aliased: String = (0..100).map(|i| format!("a{i}: me {{ id }} ")).collect();
    app.graphql(None, &format!("{{ {aliased} }}"), json!({}))
        .await
        .expect_error("BAD_USER_INPUT");
    assert_healthy(&app).await;
}

fn login_query(password: &str) -> String {
    format!(r#"login(username: "victim", password: "{password}") {{ token }}"#)
}

#[tokio::test]
async fn aliases_and_batches_get_one_login_per_request() {
    let app = spawn_app().await;
    app.bootstrap_admin("St. Mary's", "victim").await;
    let mut guesses: String = (0..499)
        .map(|i| format!("g{i}: {} ", login_query(&format!("wrong-{i}"))))
        .collect();
    guesses.push_str(&format!("right: {}", login_query(PASSWORD)));
    let answer = app
        .graphql(None, &format!("mutation {{ {guesses} }}"), json!({}))
        .await;
    assert!(
        !answer.body.to_string().contains("\"token\":\""),
        "a token came back: {:#}",
        answer.body
    );
    assert_healthy(&app).await;

    let two = format!(
        "mutation {{ first: {} second: {} }}",
        login_query("wrong"),
        login_query(PASSWORD)
    );
    let answer = app.graphql(None, &two, json!({})).await;
    let errors = answer.body["errors"].as_array().expect("errors");
    assert!(
        errors
            .iter()
            .any(|error| error["message"] == "one login per request"),
        "{:#}",
        answer.body
    );
    assert!(answer.body["data"]["second"].is_null(), "{:#}", answer.body);

    let batch: Vec<Value> = ["wrong", "wrong-again"]
        .iter()
        .map(|password| json!({ "query": format!("mutation {{ {} }}", login_query(password)) }))
        .collect();
    let answer = app.post_json(None, &Value::Array(batch)).await;
    let refused = (0..2)
        .filter(|&i| answer.body[i]["errors"][0]["message"] == "one login per request")
        .count();
    assert_eq!(refused, 1, "{:#}", answer.body);
}

async fn try_login(app: &TestApp, username: &str, password: &str) -> crate::helpers::Answer {
    app.graphql(
        None,
        "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }",
        json!({ "u": username, "p": password }),
    )
    .await
}

/// A server whose locks start at 2 s and whose addresses lock after 12 failures, with an admin
/// `victim` to guess the password of.
async fn throttled_app() -> TestApp {
    let app = spawn_app_with(AppOptions {
        login_throttle: LoginThrottle {
            account_free_failures: 5,
            address_free_failures: 12,
            first_lock: Duration::from_secs(2),
            ..LoginThrottle::default()
        },
        ..AppOptions::default()
    })
    .await;
    app.bootstrap_admin("St. Mary's", "victim").await;
    app
}

#[tokio::test]
async fn failed_logins_lock_the_account_and_a_right_password_waits_too() {
    let app = throttled_app().await;
    for _ in 0..5 {
        try_login(&app, "victim", "wrong")
            .await
            .expect_error("UNAUTHENTICATED");
    }
    let locked = try_login(&app, "victim", PASSWORD).await;
    locked.expect_error("TOO_MANY_REQUESTS");
    assert!(locked.body["data"].is_null() || locked.body["data"]["login"].is_null());
    let wait = locked.body["errors"][0]["extensions"]["retryAfterSeconds"]
        .as_u64()
        .expect("retryAfterSeconds");
    assert!((1..=2).contains(&wait), "{:#}", locked.body);
    assert!(locked.body["errors"][0]["message"]
        .as_str()
        .is_some_and(|message| message.contains("retry in")));

    tokio::time::sleep(Duration::from_secs(wait)).await;
    try_login(&app, "victim", PASSWORD).await.data();
    for _ in 0..5 {
        try_login(&app, "victim", "wrong")
            .await
            .expect_error("UNAUTHENTICATED");
    }
    try_login(&app, "victim", "wrong")
        .await
        .expect_error("TOO_MANY_REQUESTS");

    let metrics = app.get("/metrics").await.text().await.expect("metrics");
    assert!(
        metrics.contains("medvault_login_attempts_total{outcome=\"throttled\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("medvault_login_attempts_total{outcome=\"wrong_password\"} 10"),
        "{metrics}"
    );
}

#[tokio::test]
async fn parallel_guesses_get_no_more_tries_than_sequential_ones() {
    let app = throttled_app().await;
    let guesses = (0..40).map(|i| {
        let app = &app;
        async move { try_login(app, "victim", &format!("wrong-{i}")).await }
    });
    let answers = futures_util::future::join_all(guesses).await;
    let checked = answers
        .iter()
        .filter(|answer| answer.error_code() == Some("UNAUTHENTICATED"))
        .count();
    let refused = answers
        .iter()
        .filter(|answer| answer.error_code() == Some("TOO_MANY_REQUESTS"))
        .count();
    assert_eq!((checked, refused), (5, 35));
    assert_healthy(&app).await;
}

#[tokio::test]
async fn one_address_guessing_many_accounts_is_locked_too() {
    let app = throttled_app().await;
    for i in 0..12 {
        try_login(&app, &format!("nobody-{i}"), "wrong")
            .await
            .expect_error("UNAUTHENTICATED");
    }
    let locked = try_login(&app, "victim", PASSWORD).await;
    locked.expect_error("TOO_MANY_REQUESTS");
    assert!(locked.body["errors"][0]["message"]
        .as_str()
        .is_some_and(|message| message.contains("this address")));
}

#[tokio::test]
async fn nul_bytes_in_text_are_bad_user_input() {
    let app = spawn_app().await;
    let admin = app.bootstrap_admin("St. Mary's", "admin-a").await;
    try_login(&app, "ad\u{0}min", PASSWORD)
        .await
        .expect_error("BAD_USER_INPUT");
    app.graphql(
        None,
        r#"mutation { login(username: "ad\u0000min", password: "x") { token } }"#,
        json!({}),
    )
    .await
    .expect_error("BAD_USER_INPUT");
    app.try_create_staff(&admin, "nul\u{0}user", "AUDITOR", None)
        .await
        .expect_error("BAD_USER_INPUT");
    let users = app
        .sql("SELECT count(*) FROM users WHERE username LIKE 'nul%'")
        .await;
    assert_eq!(users[0].get::<_, i64>(0), 0);
}

#[tokio::test]
async fn no_field_suggestions_without_introspection() {
    let app = spawn_app().await;
    let answer = app.graphql(None, "{ mee { id } }", json!({})).await;
    answer.expect_error("BAD_USER_INPUT");
    assert!(
        !answer.body.to_string().contains("Did you mean"),
        "{:#}",
        answer.body
    );
    let answer = app
        .graphql(
            None,
            r#"mutation { login(usernam: "a", password: "b") { token } }"#,
            json!({}),
        )
        .await;
    assert!(
        !answer.body.to_string().contains("Did you mean"),
        "{:#}",
        answer.body
    );
}

#[tokio::test]
async fn an_unknown_record_and_another_patients_record_get_the_same_answer() {
    let app = spawn_app().await;
    let team = app.care_team().await;
    let record = app.add_record(&team.doctor, &team.patient_id, "70").await;
    let admin = app.bootstrap_admin("Northgate", "admin-b").await;
    let (_, other_doctor) = app.create_doctor(&admin, "dr-b").await;
    let read = "query($id: ID!) { record(id: $id) { version } }";
    for id in [record.as_str(), "00000000-0000-7000-8000-000000000000"] {
        app.graphql(Some(&other_doctor), read, json!({ "id": id }))
            .await
            .expect_error("FORBIDDEN");
    }
    let update = "mutation($id: ID!, $p: ID!, $r: MedicalRecordInput!) {
        updateMedicalRecord(recordId: $id, patientId: $p, expectedVersion: 1, record: $r) { version } }";
    app.graphql(
        Some(&team.doctor),
        update,
        json!({ "id": "00000000-0000-7000-8000-000000000000", "p": team.patient_id,
                "r": crate::helpers::heart_rate("71") }),
    )
    .await
    .expect_error("FORBIDDEN");
}

#[tokio::test]
async fn a_mutation_refuses_a_result_it_could_not_show_before_writing() {
    let app = spawn_app().await;
    let admin = app.bootstrap_admin("St. Mary's", "admin-a").await;
    let (doctor_id, doctor) = app.create_doctor(&admin, "dr-w").await;
    let (patient_id, patient) = app.create_patient(&admin, "jane", "Jane Roe").await;
    app.grant(&patient, &doctor_id, &["WRITE"]).await;
    app.open_consent(&doctor, &patient_id, &["WRITE"]).await;
    let add = "mutation($p: ID!, $r: MedicalRecordInput!) {
        addMedicalRecord(patientId: $p, record: $r) { id patient { personal { fullName } } } }";
    app.graphql(
        Some(&doctor),
        add,
        json!({ "p": patient_id, "r": crate::helpers::heart_rate("70") }),
    )
    .await
    .expect_error("FORBIDDEN");
    let records = app.sql("SELECT count(*) FROM records").await;
    assert_eq!(records[0].get::<_, i64>(0), 0, "nothing was written");
    app.add_record(&doctor, &patient_id, "70").await;

    let create = "mutation($input: CreatePatientInput!) { createPatient(input: $input) { id records { edges { cursor } } } }";
    app.graphql(
        Some(&admin),
        create,
        json!({ "input": { "username": "john", "password": PASSWORD,
            "personal": { "fullName": "John Roe", "dateOfBirth": "1980-01-01", "sex": "MALE",
                          "address": "1 Main St", "postalCode": "02139", "phone": "+1-555-0100",
                          "email": "john@example.org" },
            "medical": { "bloodType": "A+", "heightCm": 180.0, "weightKg": 80.0,
                         "allergies": [], "chronicConditions": [] } } }),
    )
    .await
    .expect_error("FORBIDDEN");
    let john = app
        .sql("SELECT count(*) FROM users WHERE username = 'john'")
        .await;
    assert_eq!(john[0].get::<_, i64>(0), 0, "no patient was created");
}

#[tokio::test]
async fn only_json_bodies_are_executed() {
    let app = spawn_app().await;
    app.bootstrap_admin("St. Mary's", "victim").await;
    let body = json!({ "query": format!("mutation {{ {} }}", login_query(PASSWORD)) }).to_string();
    let sessions_before = app.sql("SELECT count(*) FROM sessions").await[0].get::<_, i64>(0);
    let client = reqwest::Client::new();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        None,
    ] {
        let mut request = client
            .post(format!("{}/graphql", app.address))
            .body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.expect("send");
        assert_eq!(response.status().as_u16(), 415, "{content_type:?}");
    }
    let sessions_after = app.sql("SELECT count(*) FROM sessions").await[0].get::<_, i64>(0);
    assert_eq!(sessions_before, sessions_after, "no login ran");
    let accepted = client
        .post(format!("{}/graphql", app.address))
        .header(
            "content-type",
            "application/graphql-response+json; charset=utf-8",
        )
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(accepted.status().as_u16(), 200);
}
