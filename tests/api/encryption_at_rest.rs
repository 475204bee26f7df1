//! No plaintext health data in PostgreSQL: write known plaintext through the API, dump every
//! table, and find none of it, neither as text nor as the hex of a bytea column.

use crate::helpers::{spawn_app, PASSWORD};
use serde_json::json;

const CANARIES: [&str; 8] = [
    "Zephyrine Quillfeather",
    "77 Marmalade Crescent",
    "zq-canary@example.org",
    "Xylocaine hypersensitivity",
    "Chronic canary syndrome",
    "Canary-value-4711",
    "Canary note: prefers morning appointments",
    "Quillfeather-Renamed",
];

#[tokio::test]
async fn a_dump_of_every_table_contains_none_of_the_plaintext_written() {
    let app = spawn_app().await;
    let admin = app.bootstrap_admin("St. Mary's", "admin-a").await;
    let (doctor_id, doctor) = app.create_doctor(&admin, "dr-a").await;
    let created = app
        .graphql(
            Some(&admin),
            "mutation($i: CreatePatientInput!) { createPatient(input: $i) { id } }",
            json!({ "i": {
                "username": "patient-zq", "password": PASSWORD,
                "personal": { "fullName": CANARIES[0], "dateOfBirth": "1971-07-04", "sex": "FEMALE",
                              "address": CANARIES[1], "postalCode": "99501", "phone": "+1-555-0199", "email": CANARIES[2] },
                "medical": { "bloodType": "AB-", "allergies": [CANARIES[3]], "chronicConditions": [CANARIES[4]] } } }),
        )
        .await;
    let patient_id = created.data()["createPatient"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let patient = app.login("patient-zq").await;
    app.grant(&patient, &doctor_id, &["READ", "WRITE"]).await;
    app.open_consent(&doctor, &patient_id, &["READ", "WRITE"])
        .await;
    let record = json!({ "kind": "LAB_RESULT", "codeSystem": "LOINC", "code": "4548-4", "value": CANARIES[5],
                         "unit": "%", "effectiveAt": "2026-02-02T10:00:00Z", "note": CANARIES[6] });
    let added = app
        .graphql(Some(&doctor), "mutation($p: ID!, $r: MedicalRecordInput!) { addMedicalRecord(patientId: $p, record: $r) { id } }",
                 json!({ "p": patient_id, "r": record }))
        .await;
    added.data();
    let personal = json!({ "fullName": CANARIES[7], "dateOfBirth": "1971-07-04", "sex": "FEMALE" });
    app.graphql(Some(&patient), "mutation($p: PersonalDetailsInput!) { updatePersonalDetails(expectedVersion: 1, personal: $p) { profileVersion } }",
                json!({ "p": personal }))
        .await
        .data();

    let readback = app
        .graphql(Some(&doctor), "query($id: ID!) { patient(id: $id) { personal { fullName } records { edges { node { content { value note } } } } } }",
                 json!({ "id": patient_id }))
        .await;
    assert_eq!(
        readback.data()["patient"]["personal"]["fullName"],
        CANARIES[7],
        "the API still reads it back"
    );
    assert_eq!(
        readback.data()["patient"]["records"]["edges"][0]["node"]["content"]["value"],
        CANARIES[5]
    );

    let dump = app.pg_dump();
    assert!(
        dump.contains("COPY public.record_versions"),
        "the dump covers the vault's tables"
    );
    let dump_lower = dump.to_lowercase();
    for canary in CANARIES {
        assert!(
            !dump.contains(canary),
            "plaintext {canary:?} found in the database dump"
        );
        let hex: String = canary.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(
            !dump_lower.contains(&hex),
            "plaintext {canary:?} found hex-encoded in the database dump"
        );
        for word in canary.split_whitespace().filter(|word| word.len() >= 9) {
            assert!(
                !dump.contains(word),
                "the word {word:?} of {canary:?} found in the dump"
            );
        }
    }
}
