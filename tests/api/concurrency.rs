//! Optimistic concurrency: eight writers racing on one record never lose an update.

use crate::helpers::{heart_rate, spawn_app, CareTeam, TestApp};
use futures_util::future::join_all;
use serde_json::json;

const WRITERS: usize = 8;
const UPDATES_PER_WRITER: usize = 6;

const UPDATE: &str = "mutation($id: ID!, $p: ID!, $v: Int!, $r: MedicalRecordInput!) {
  updateMedicalRecord(recordId: $id, patientId: $p, expectedVersion: $v, record: $r) { version } }";

async fn current_version(app: &TestApp, token: &str, record: &str) -> i64 {
    let answer = app
        .graphql(
            Some(token),
            "query($id: ID!) { record(id: $id) { version } }",
            json!({ "id": record }),
        )
        .await;
    answer.data()["record"]["version"].as_i64().unwrap()
}

#[tokio::test]
async fn of_eight_writers_with_the_same_expected_version_exactly_one_wins() {
    let app = spawn_app().await;
    let CareTeam {
        doctor, patient_id, ..
    } = app.care_team().await;
    let record = app.add_record(&doctor, &patient_id, "60").await;

    let attempts = (0..WRITERS).map(|writer| {
        let variables = json!({ "id": record, "p": patient_id, "v": 1, "r": heart_rate(&format!("{}", 100 + writer)) });
        app.graphql(Some(&doctor), UPDATE, variables)
    });
    let answers = join_all(attempts).await;
    let winners = answers
        .iter()
        .filter(|answer| answer.error_code().is_none())
        .count();
    let conflicts = answers
        .iter()
        .filter(|answer| answer.error_code() == Some("CONFLICT"))
        .count();
    assert_eq!((winners, conflicts), (1, WRITERS - 1), "{answers:#?}");
    assert_eq!(current_version(&app, &doctor, &record).await, 2);
}

#[tokio::test]
async fn eight_writers_retrying_on_conflict_lose_no_update() {
    let app = spawn_app().await;
    let CareTeam {
        doctor, patient_id, ..
    } = app.care_team().await;
    let record = app.add_record(&doctor, &patient_id, "60").await;

    let writers = (0..WRITERS).map(|writer| {
        let (app, doctor, record, patient_id) = (&app, &doctor, &record, &patient_id);
        async move {
            for update in 0..UPDATES_PER_WRITER {
                loop {
                    let version = current_version(app, doctor, record).await;
                    let value = format!("w{writer}-u{update}");
                    let variables = json!({ "id": record, "p": patient_id, "v": version, "r": heart_rate(&value) });
                    let answer = app.graphql(Some(doctor), UPDATE, variables).await;
                    match answer.error_code() {
                        None => break,
                        Some("CONFLICT") => continue,
                        Some(other) => panic!("writer {writer}: unexpected {other}: {:#}", answer.body),
                    }
                }
            }
        }
    });
    join_all(writers).await;

    let history = app
        .graphql(
            Some(&doctor),
            "query($id: ID!) { recordHistory(recordId: $id) { version content { value } } }",
            json!({ "id": record }),
        )
        .await;
    let versions = history.data()["recordHistory"].as_array().unwrap().clone();
    assert_eq!(
        versions.len(),
        1 + WRITERS * UPDATES_PER_WRITER,
        "every successful update is a version"
    );
    let numbers: Vec<i64> = versions
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(
        numbers,
        (1..=numbers.len() as i64).collect::<Vec<_>>(),
        "versions are gapless"
    );
    let mut values: Vec<&str> = versions[1..]
        .iter()
        .map(|v| v["content"]["value"].as_str().unwrap())
        .collect();
    values.sort_unstable();
    values.dedup();
    assert_eq!(
        values.len(),
        WRITERS * UPDATES_PER_WRITER,
        "no update was lost or applied twice"
    );
}
