//! A hospital joins only when the chain's members admit it (the paper's channel rule): against
//! three validator processes and a `medvault serve` anchoring on them, `admin create` for a
//! hospital the chain has not admitted is refused with the way to propose it; one member's
//! approval is not enough; once a majority approved it with `medvault chain approve` and `chain
//! govern`, and its validator runs, its admin, doctor and patient work like any other, and its
//! records are anchored.

use super::vault_on_cluster::{care_team, founders_and_database, graphql, logged_in, Server};
use super::{member, Cluster};
use medvault_anchor_chain::entry::GovernanceAction;
use serde_json::json;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

const NEWCOMER: &str = "hospital 4";

fn admin_create(server: &Server) -> Output {
    server
        .medvault()
        .args([
            "admin",
            "create",
            "--hospital",
            NEWCOMER,
            "--username",
            "admin",
        ])
        .env("MEDVAULT_ADMIN_PASSWORD", "correct horse battery staple")
        .output()
        .expect("run medvault admin create")
}

/// `medvault chain approve` of the action in `action` by member `id`; returns the approval's
/// file.
fn approve(server: &Server, dir: &Path, id: u64) -> std::path::PathBuf {
    let output = server
        .medvault()
        .args(["chain", "approve", "--member-id", &id.to_string()])
        .arg("--key")
        .arg(dir.join(format!("key-{id}")))
        .arg("--genesis")
        .arg(dir.join("genesis.json"))
        .arg("--action")
        .arg(dir.join("admit.json"))
        .output()
        .expect("run medvault chain approve");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = dir.join(format!("approval-{id}.json"));
    std::fs::write(&path, &output.stdout).expect("approval file");
    path
}

fn govern(server: &Server, cluster: &Cluster, dir: &Path, approvals: &[&Path]) -> Output {
    let mut command = server.medvault();
    command
        .args(["chain", "govern", "--node", &cluster.addresses[&2]])
        .arg("--action")
        .arg(dir.join("admit.json"));
    for approval in approvals {
        command.arg("--approval").arg(approval);
    }
    command.output().expect("run medvault chain govern")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_hospital_is_refused_until_a_majority_of_the_members_admit_it() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (cluster, database_url) = founders_and_database(dir.path()).await;
    let mut server = Server::on(&cluster, database_url, dir.path());
    server.start();
    server.wait_until_serving().await;

    let refused = admin_create(&server);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && stderr.contains("not a member of the anchor chain")
            && stderr.contains("hospital 1, hospital 2, hospital 3")
            && stderr.contains("medvault chain approve")
            && stderr.contains("medvault chain govern"),
        "{stderr}"
    );

    let action = GovernanceAction::Admit {
        member: member(4, &cluster.keys[&4], &cluster.addresses[&4]),
        epoch: 0,
    };
    std::fs::write(
        dir.path().join("admit.json"),
        serde_json::to_vec(&action).expect("action JSON"),
    )
    .expect("action file");
    let first = approve(&server, dir.path(), 1);
    let one = govern(&server, &cluster, dir.path(), &[&first]);
    assert!(
        !one.status.success() && String::from_utf8_lossy(&one.stderr).contains("approvals"),
        "one approval of three admitted a member: {}",
        String::from_utf8_lossy(&one.stdout)
    );
    assert!(
        !admin_create(&server).status.success(),
        "refused while only one member approved"
    );

    let third = approve(&server, dir.path(), 3);
    let majority = govern(&server, &cluster, dir.path(), &[&first, &third]);
    assert!(
        majority.status.success(),
        "{}",
        String::from_utf8_lossy(&majority.stderr)
    );
    cluster.start(4);
    let deadline = Instant::now() + Duration::from_secs(60);
    while cluster
        .client(4)
        .status()
        .await
        .map(|status| status.voters)
        .unwrap_or_default()
        != [1, 2, 3, 4]
    {
        assert!(Instant::now() < deadline, "hospital 4 never became a voter");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let (doctor, patient_id) = care_team(&server, NEWCOMER).await;
    let written = graphql(
        &doctor,
        "mutation($p: ID!, $r: MedicalRecordInput!) {
           addMedicalRecord(patientId: $p, record: $r) { id } }",
        json!({ "p": patient_id, "r": {
            "kind": "OBSERVATION", "codeSystem": "LOINC", "code": "8867-4", "value": "72",
            "unit": "/min", "effectiveAt": "2026-01-15T08:30:00Z", "note": null } }),
    )
    .await;
    let record_id = written["addMedicalRecord"]["id"]
        .as_str()
        .expect("record id");
    // The doctor's consent session covers writing only; the patient reads their own records.
    let (patient, _) = logged_in(&server, "pat-anchor").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let read = graphql(
            &patient,
            "query($p: ID!) { patient(id: $p) { records(first: 5) { edges { node {
               id anchoring { status height } } } } } }",
            json!({ "p": patient_id }),
        )
        .await;
        let node = &read["patient"]["records"]["edges"][0]["node"];
        assert_eq!(node["id"], record_id);
        if node["anchoring"]["status"] == "ANCHORED" {
            assert!(node["anchoring"]["height"].as_u64() > Some(0));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new hospital's record was never anchored"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
