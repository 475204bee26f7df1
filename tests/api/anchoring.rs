//! Record versions reach the anchor chain: the worker drains the outbox into an embedded
//! validator and each leaf has an inclusion proof, checked as an auditor would, in a final block.

use crate::helpers::{spawn_app_with, AppOptions, CareTeam};
use medvault_anchor_chain::bytes::Hash32;
use medvault_anchor_chain::embedded::member_dir;
use medvault_anchor_chain::entry::Entry;
use medvault_anchor_chain::verify::{audit_chain, verify_entry};
use serde_json::json;

/// An application anchoring on an embedded chain of its own.
async fn anchoring_app() -> crate::helpers::TestApp {
    spawn_app_with(AppOptions {
        anchoring: true,
        ..AppOptions::default()
    })
    .await
}

#[tokio::test]
async fn every_record_version_is_anchored_with_an_inclusion_proof() {
    let app = anchoring_app().await;
    let CareTeam {
        doctor, patient_id, ..
    } = app.care_team().await;
    let record = app.add_record(&doctor, &patient_id, "61").await;
    let update = "mutation($id: ID!, $p: ID!, $r: MedicalRecordInput!) {
                    updateMedicalRecord(recordId: $id, patientId: $p, expectedVersion: 1, record: $r) { anchorLeaf } }";
    let updated = app
        .graphql(
            Some(&doctor),
            update,
            json!({ "id": record, "p": patient_id, "r": crate::helpers::heart_rate("62") }),
        )
        .await;
    let leaf_hex = updated.data()["updateMedicalRecord"]["anchorLeaf"]
        .as_str()
        .unwrap()
        .to_owned();

    let anchoring = app
        .anchoring
        .as_ref()
        .expect("the application's anchoring worker");
    let chain = anchoring
        .chain()
        .embedded()
        .expect("the test application anchors on an embedded validator");
    let record_anchors_on_chain = || {
        (0..=chain.head_height())
            .filter_map(|height| chain.block(height))
            .flat_map(|block| block.block.entries)
            .filter(|entry| matches!(entry, Entry::RecordAnchor { .. }))
            .count()
    };
    anchoring.wait_until_anchored().await.expect("anchor");
    assert_eq!(record_anchors_on_chain(), 2);
    anchoring.wait_until_anchored().await.expect("anchor");
    assert_eq!(record_anchors_on_chain(), 2, "nothing is anchored twice");
    let pending = app
        .sql("SELECT count(*) FROM anchor_outbox WHERE anchored_height IS NULL")
        .await;
    assert_eq!(pending[0].get::<_, i64>(0), 0);

    let leaf = Hash32::from_hex(&leaf_hex).expect("hex leaf");
    let entry = Entry::RecordAnchor { leaf };
    wait_until_final(anchoring.chain()).await;
    let proof = chain
        .inclusion_proof(&entry.hash())
        .expect("an inclusion proof for the updated version");
    assert_eq!(proof.entry, entry);
    let height = app
        .sql(&format!(
            "SELECT anchored_height FROM anchor_outbox WHERE entry = '\\x{}'::bytea",
            hex::encode(entry.canonical_bytes())
        ))
        .await[0]
        .get::<_, i64>(0);
    assert_eq!(proof.header.height as i64, height);
    let blocks: Vec<_> = (0..=chain.head_height())
        .filter_map(|height| chain.block(height))
        .collect();
    let report = audit_chain(&blocks, None).expect("the chain audits");
    assert_eq!(
        verify_entry(&proof, &report),
        Ok(()),
        "the inclusion path and the block's signatures check out"
    );

    let history = app
        .graphql(
            Some(&doctor),
            "query($id: ID!) {
               chainHead { chainId height hash finalHeight }
               recordHistory(recordId: $id) {
                 version anchorLeaf anchoring { status entryHash height leafIndex treeSize path
                   entriesRoot blockHash signatures { signer signature } proof } } }",
            json!({ "id": record }),
        )
        .await;
    let data = history.data();
    let head = &data["chainHead"];
    assert_eq!(head["chainId"], report.genesis_hash.to_hex());
    assert!(
        head["height"].as_u64() >= Some(proof.header.height),
        "{head}"
    );
    let versions = data["recordHistory"].as_array().expect("versions");
    assert_eq!(versions.len(), 2);
    for version in versions {
        let anchoring = &version["anchoring"];
        assert_eq!(anchoring["status"], "ANCHORED", "{anchoring}");
        let leaf =
            Hash32::from_hex(version["anchorLeaf"].as_str().expect("leaf")).expect("hex leaf");
        let entry = Entry::RecordAnchor { leaf };
        assert_eq!(anchoring["entryHash"], entry.hash().to_hex());
        let from_api: medvault_anchor_chain::verify::EntryProof =
            serde_json::from_value(anchoring["proof"].clone()).expect("the chain's proof form");
        assert_eq!(from_api.entry, entry);
        assert_eq!(
            verify_entry(&from_api, &report),
            Ok(()),
            "the API's proof checks out against the audited chain"
        );
        let path: Vec<Hash32> = anchoring["path"]
            .as_array()
            .expect("path")
            .iter()
            .map(|hash| Hash32::from_hex(hash.as_str().expect("hex")).expect("a hash"))
            .collect();
        let inclusion = medvault_anchor_chain::merkle::InclusionProof {
            index: anchoring["leafIndex"].as_u64().expect("index"),
            tree_size: anchoring["treeSize"].as_u64().expect("size"),
            path,
        };
        let root = Hash32::from_hex(anchoring["entriesRoot"].as_str().expect("root")).expect("hex");
        assert!(inclusion.verify(
            &medvault_anchor_chain::merkle::leaf_hash(&entry.canonical_bytes()),
            &root
        ));
        assert_eq!(
            anchoring["blockHash"],
            report.header_hashes[anchoring["height"].as_u64().expect("height") as usize].to_hex()
        );
        assert!(!anchoring["signatures"]
            .as_array()
            .expect("signatures")
            .is_empty());
    }
    anchoring.stop().await;
    if let Some(chain_dir) = &app.chain_dir {
        let _ = std::fs::remove_dir_all(chain_dir);
    }
}

/// Waits until every block of the chain is final (signed by a majority), so that a stopped
/// chain's files audit without a pending tail.
async fn wait_until_final(chain: &medvault_vault::anchoring::AnchorChain) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let head = chain.head().await.expect("the chain head");
        if head.final_height == Some(head.height) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the chain stays unsigned"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Anchors everything queued and logged, waits for it to be final, and stops the app's embedded
/// chain so that its files audit; returns the chain's directory.
async fn anchor_everything_and_stop(app: &crate::helpers::TestApp) -> std::path::PathBuf {
    let anchoring = app.anchoring.as_ref().expect("anchoring");
    anchoring.wait_until_anchored().await.expect("anchored");
    wait_until_final(anchoring.chain()).await;
    anchoring.stop().await;
    app.chain_dir.clone().expect("chain dir")
}

/// Runs `medvault audit db` against the stopped embedded chain in `chain_dir`; returns whether
/// it passed and its JSON report.
fn audit_db(database_url: &str, chain_dir: &std::path::Path) -> (bool, serde_json::Value) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_medvault"))
        .args(["audit", "db", "--data-dir"])
        .arg(member_dir(chain_dir, 1))
        .arg("--genesis")
        .arg(chain_dir.join("genesis.json"))
        .env("DATABASE_URL", database_url)
        .output()
        .expect("run medvault audit db");
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "no JSON report: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.success(), report)
}

/// Runs statements in one transaction with foreign keys and triggers off, as someone with the
/// database's superuser password could.
async fn tamper(app: &crate::helpers::TestApp, statements: &str) {
    let client = app.vault.pool().get().await.expect("connection");
    client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL session_replication_role = replica; {statements}; COMMIT;"
        ))
        .await
        .expect("tamper");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_db_passes_an_honest_database_and_names_every_kind_of_tampering() {
    let app = anchoring_app().await;
    let CareTeam {
        admin,
        doctor,
        patient_id,
        ..
    } = app.care_team().await;
    let (other_patient, _) = app
        .create_patient(&admin, "pat-other", "Other Patient")
        .await;
    let mut records = Vec::new();
    for value in 60..66 {
        records.push(
            app.add_record(&doctor, &patient_id, &value.to_string())
                .await,
        );
    }
    app.graphql(
        Some(&doctor),
        "mutation($id: ID!, $p: ID!, $r: MedicalRecordInput!) {
           updateMedicalRecord(recordId: $id, patientId: $p, expectedVersion: 1, record: $r) { version } }",
        json!({ "id": records[1], "p": patient_id, "r": crate::helpers::heart_rate("70") }),
    )
    .await
    .data();
    let chain_dir = anchor_everything_and_stop(&app).await;

    let (passed, report) = audit_db(&app.database_url, &chain_dir);
    assert!(passed, "{report:#}");
    assert_eq!(report["versions_checked"], 7, "{report:#}");
    assert!(
        report["log_batches_checked"].as_u64() >= Some(1),
        "{report:#}"
    );
    assert!(
        report["log_lines_checked"].as_u64() >= Some(7),
        "{report:#}"
    );

    let [changed_byte, renumbered, deleted, copied, moved, ..] = &records[..] else {
        unreachable!("six records")
    };
    tamper(
        &app,
        &format!(
            "UPDATE record_versions SET ciphertext = set_byte(ciphertext, 20, get_byte(ciphertext, 20) # 1)
               WHERE record_id = '{changed_byte}';
             UPDATE record_versions SET version = 3 WHERE record_id = '{renumbered}' AND version = 2;
             DELETE FROM record_version_keys WHERE record_id = '{deleted}';
             DELETE FROM record_versions WHERE record_id = '{deleted}';
             INSERT INTO record_versions (record_id, version, operation, ciphertext, ciphertext_sha3,
                                          author_id, created_at, anchor_leaf)
               SELECT record_id, 2, 'update', ciphertext, ciphertext_sha3, author_id,
                      created_at + interval '1 second', anchor_leaf
               FROM record_versions WHERE record_id = '{copied}';
             UPDATE records SET patient_id = '{other_patient}' WHERE id = '{moved}';
             UPDATE access_log SET action = 'read_profile'
               WHERE id = (SELECT min(id) FROM access_log WHERE batch_number IS NOT NULL);
             DELETE FROM access_log
               WHERE id = (SELECT max(id) FROM access_log WHERE batch_number IS NOT NULL)"
        ),
    )
    .await;
    let (passed, report) = audit_db(&app.database_url, &chain_dir);
    assert!(!passed, "{report:#}");
    let problems = report["problems"].as_array().expect("problems");
    let found = |expected: serde_json::Value| {
        let expected = expected.as_object().expect("an object");
        problems.iter().any(|problem| {
            expected
                .iter()
                .all(|(field, value)| problem.get(field) == Some(value))
        })
    };
    for expected in [
        json!({ "kind": "version_modified", "record": changed_byte, "version": 1 }),
        json!({ "kind": "version_modified", "record": renumbered, "version": 3 }),
        json!({ "kind": "version_deleted", "record": renumbered, "version": 2 }),
        json!({ "kind": "version_deleted", "record": deleted, "version": 1 }),
        json!({ "kind": "version_inserted", "record": copied, "version": 2 }),
        json!({ "kind": "version_moved", "record": moved, "version": 1,
                "from_patient": patient_id, "to_patient": other_patient }),
        json!({ "kind": "log_line_edited" }),
        json!({ "kind": "log_lines_removed", "count": 1 }),
    ] {
        assert!(found(expected.clone()), "{expected} not in {report:#}");
    }
    let _ = std::fs::remove_dir_all(chain_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_patient_is_unreadable_and_audit_db_reports_them_erased_not_tampered() {
    let app = anchoring_app().await;
    let CareTeam {
        admin,
        doctor,
        patient,
        patient_id,
    } = app.care_team().await;
    for value in ["61", "62"] {
        app.add_record(&doctor, &patient_id, value).await;
    }
    let erase =
        "mutation($p: ID!) { erasePatient(patientId: $p) { patientId erasedAt revokedGrants } }";
    app.graphql(Some(&doctor), erase, json!({ "p": patient_id }))
        .await
        .expect_error("FORBIDDEN");
    let erased = app
        .graphql(Some(&admin), erase, json!({ "p": patient_id }))
        .await;
    assert_eq!(erased.data()["erasePatient"]["revokedGrants"], 1);
    app.graphql(Some(&admin), erase, json!({ "p": patient_id }))
        .await
        .expect_error("FORBIDDEN");

    let read = "query($id: ID!) { patient(id: $id) { records { nodes { id } } } }";
    app.graphql(Some(&doctor), read, json!({ "id": patient_id }))
        .await
        .expect_error("FORBIDDEN");
    app.graphql(Some(&patient), read, json!({ "id": patient_id }))
        .await
        .expect_error("UNAUTHENTICATED");
    app.graphql(
        None,
        "mutation { login(username: \"jane\", password: \"correct horse battery staple\") { token } }",
        json!({}),
    )
    .await
    .expect_error("UNAUTHENTICATED");
    let kept = app
        .sql(&format!(
            "SELECT (SELECT count(*) FROM patient_keys WHERE patient_id = '{patient_id}'),
                    (SELECT count(*) FROM record_versions v JOIN records r ON r.id = v.record_id
                     WHERE r.patient_id = '{patient_id}'),
                    (SELECT count(*) FROM access_log WHERE patient_id = '{patient_id}'
                     AND action = 'erase_patient' AND outcome = 'allowed'),
                    (SELECT count(*) FROM users WHERE username = 'jane')"
        ))
        .await;
    assert_eq!(
        (
            kept[0].get::<_, i64>(0),
            kept[0].get::<_, i64>(1),
            kept[0].get::<_, i64>(2),
            kept[0].get::<_, i64>(3)
        ),
        (0, 2, 1, 0),
        "no data key, both versions, the erasure logged, the login name gone"
    );

    let chain_dir = anchor_everything_and_stop(&app).await;
    let (passed, report) = audit_db(&app.database_url, &chain_dir);
    assert!(passed, "{report:#}");
    assert_eq!(report["erased_patients"], json!([patient_id]), "{report:#}");
    assert_eq!(report["erased_versions"], 2, "{report:#}");
    let _ = std::fs::remove_dir_all(chain_dir);
}

/// Polls the auditor's database audit until it ends; returns it.
async fn finished_audit(
    app: &crate::helpers::TestApp,
    auditor: &str,
    id: &str,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let answer = app
            .graphql(
                Some(auditor),
                "query($id: ID!) { databaseAudit(id: $id) { id status failure passed
                   versionsChecked logBatchesChecked logLinesChecked problems { kind detail } } }",
                json!({ "id": id }),
            )
            .await;
        let audit = answer.data()["databaseAudit"].clone();
        if audit["status"] != "RUNNING" {
            return audit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the audit never ended"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_audits_the_database_as_a_job_and_sees_every_anchor_without_content() {
    let app = anchoring_app().await;
    let CareTeam {
        admin,
        doctor,
        patient_id,
        ..
    } = app.care_team().await;
    let auditor = app.create_staff(&admin, "auditor", "AUDITOR").await;
    let record = app.add_record(&doctor, &patient_id, "61").await;
    let request = "mutation { requestDatabaseAudit { id status } }";
    for caller in [&admin, &doctor] {
        app.graphql(Some(caller), request, json!({}))
            .await
            .expect_error("FORBIDDEN");
    }
    app.graphql(None, request, json!({}))
        .await
        .expect_error("UNAUTHENTICATED");

    // Requested while the record's anchor may still be queued: the job anchors it first.
    let started = app.graphql(Some(&auditor), request, json!({})).await;
    let id = started.data()["requestDatabaseAudit"]["id"]
        .as_str()
        .expect("job id")
        .to_owned();
    app.graphql(
        Some(&admin),
        "query($id: ID!) { databaseAudit(id: $id) { id } }",
        json!({ "id": id }),
    )
    .await
    .expect_error("FORBIDDEN");
    let audit = finished_audit(&app, &auditor, &id).await;
    assert_eq!(audit["status"], "SUCCEEDED", "{audit:#}");
    assert_eq!(audit["passed"], true, "{audit:#}");
    assert_eq!(audit["versionsChecked"], 1, "{audit:#}");
    assert!(audit["logLinesChecked"].as_u64() >= Some(1), "{audit:#}");

    let facts = app
        .graphql(
            Some(&auditor),
            "{ queuedFacts(first: 100) { nodes { kind entry anchoredHeight
                 anchoring { status height proof } } }
               accessProofs { nodes { root rootAnchoring { status height } } }
               consentKeys { anchoredHeight anchoring { status height } } }",
            json!({}),
        )
        .await;
    let data = facts.data();
    let kinds: Vec<&str> = data["queuedFacts"]["nodes"]
        .as_array()
        .expect("facts")
        .iter()
        .map(|fact| {
            assert_eq!(fact["anchoring"]["status"], "ANCHORED", "{fact}");
            assert_eq!(
                fact["anchoring"]["height"].as_i64(),
                fact["anchoredHeight"].as_i64()
            );
            fact["kind"].as_str().expect("kind")
        })
        .collect();
    for kind in [
        "VERIFYING_KEY",
        "CONSENT_ROOT",
        "RECORD_VERSION",
        "ACCESS_LOG_BATCH",
    ] {
        assert!(kinds.contains(&kind), "{kind} not among {kinds:?}");
    }
    let dump = facts.body.to_string();
    assert!(
        !dump.contains("Jane Roe") && !dump.contains("8867-4"),
        "an auditor sees no content"
    );
    let proof = &data["accessProofs"]["nodes"][0];
    assert_eq!(proof["rootAnchoring"]["status"], "ANCHORED", "{proof}");
    let keys = &data["consentKeys"];
    assert_eq!(keys["anchoring"]["status"], "ANCHORED", "{keys}");
    assert_eq!(keys["anchoring"]["height"], keys["anchoredHeight"]);

    let again = app.graphql(Some(&auditor), request, json!({})).await;
    let second = again.data()["requestDatabaseAudit"]["id"]
        .as_str()
        .expect("job id")
        .to_owned();
    finished_audit(&app, &auditor, &second).await;
    tamper(
        &app,
        &format!(
            "UPDATE record_versions SET ciphertext = set_byte(ciphertext, 20, get_byte(ciphertext, 20) # 1)
               WHERE record_id = '{record}'"
        ),
    )
    .await;
    let third = app.graphql(Some(&auditor), request, json!({})).await;
    let third = third.data()["requestDatabaseAudit"]["id"]
        .as_str()
        .expect("job id")
        .to_owned();
    let audit = finished_audit(&app, &auditor, &third).await;
    assert_eq!(audit["passed"], false, "{audit:#}");
    let problems = audit["problems"].as_array().expect("problems");
    assert!(
        problems
            .iter()
            .any(|problem| problem["kind"] == "version_modified"
                && problem["detail"]["record"] == record.as_str()),
        "{audit:#}"
    );
    app.anchoring.as_ref().expect("anchoring").stop().await;
    if let Some(chain_dir) = &app.chain_dir {
        let _ = std::fs::remove_dir_all(chain_dir);
    }
}
