//! Record versions reach the anchor chain: the worker drains the outbox into an embedded
//! validator and each leaf has an inclusion proof, checked as an auditor would, in a final block.

use crate::helpers::{spawn_app_with, AppOptions, CareTeam};
use medvault_anchor_chain::bytes::Hash32;
use medvault_anchor_chain::entry::Entry;
use medvault_anchor_chain::verify::{audit_chain, verify_entry};
use serde_json::json;

#[tokio::test]
async fn every_record_version_is_anchored_with_an_inclusion_proof() {
    let app = spawn_app_with(AppOptions {
        anchoring: true,
        ..AppOptions::default()
    })
    .await;
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
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let blocks = loop {
        let blocks: Vec<_> = (0..=chain.head_height())
            .filter_map(|height| chain.block(height))
            .collect();
        if blocks.iter().all(|block| !block.signatures.is_empty())
            || std::time::Instant::now() > deadline
        {
            break blocks;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let report = audit_chain(&blocks, None).expect("the chain audits");
    assert_eq!(
        verify_entry(&proof, &report),
        Ok(()),
        "the inclusion path and the block's signatures check out"
    );
    anchoring.stop().await;
    if let Some(chain_dir) = &app.chain_dir {
        let _ = std::fs::remove_dir_all(chain_dir);
    }
}
