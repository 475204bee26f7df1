//! The anchor chain as separate validator processes of the real `medvault` binary on 127.0.0.1:
//! a leader killed with SIGKILL under load, a fourth organization admitted by governance, and
//! the auditor catching a flipped bit, a forged signature, a non-member's block and an
//! equivocating pair. Also `medvault audit chain` refusing a stopped embedded chain's file when
//! it is damaged, cut short or behind its Raft log, and `medvault audit export` checking an
//! export's anchor in such files. And a server anchoring on such a cluster through kills and
//! outages ([`vault_on_cluster`]), and a hospital joining it by governance
//! ([`hospital_admission`]).

mod hospital_admission;
mod vault_on_cluster;

use chrono::{NaiveDate, TimeZone, Utc};
use ed25519_dalek::SigningKey;
use medvault_anchor_chain::block::{Block, SignedBlock, ValidatorKey};
use medvault_anchor_chain::bytes::Hash32;
use medvault_anchor_chain::chain_file;
use medvault_anchor_chain::client::ChainClient;
use medvault_anchor_chain::embedded::{member_dir, EmbeddedChain};
use medvault_anchor_chain::entry::{
    ApprovalPolicy, Entry, GenesisSpec, Governance, GovernanceAction, Member, MemberId,
};
use medvault_anchor_chain::governance::approve;
use medvault_anchor_chain::state::EntryOutcome;
use medvault_anchor_chain::storage::CHAIN_FILE;
use medvault_anchor_chain::verify::{audit_chain, check_conflict, AuditError};
use medvault_exporter::policy::{
    BirthGeneralization, DateGeneralization, PseudonymScope, ZipGeneralization,
};
use medvault_exporter::{export, Dataset, ExportContext, ExportPolicy, Person};
use medvault_server::postgres_cluster::ScratchServer;
use medvault_vault::{ChainTarget, MasterKeySource, Services, VaultConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ENTRIES: usize = 10_000;
const CLIENTS: usize = 16;

/// Validator processes of one test; every one still running is killed on drop, pass or fail.
struct Cluster {
    dir: PathBuf,
    genesis: GenesisSpec,
    keys: HashMap<MemberId, ValidatorKey>,
    addresses: HashMap<MemberId, String>,
    children: Mutex<HashMap<MemberId, Child>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Ok(children) = self.children.get_mut() {
            for child in children.values_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").to_string()
}

fn member(id: MemberId, key: &ValidatorKey, address: &str) -> Member {
    Member {
        id,
        name: format!("hospital {id}"),
        public_key: key.public_key(),
        address: address.to_owned(),
    }
}

impl Cluster {
    /// Keys and addresses for members 1 to 4; 1 to 3 found the chain.
    fn new(dir: &Path) -> Cluster {
        let mut keys = HashMap::new();
        let mut addresses = HashMap::new();
        for id in 1..=4 {
            let key = ValidatorKey::generate();
            key.save(&dir.join(format!("key-{id}"))).unwrap();
            keys.insert(id, key);
            addresses.insert(id, free_address());
        }
        let genesis = GenesisSpec {
            chain_name: "test-consortium".into(),
            timestamp_ms: 1_700_000_000_000,
            approval_policy: ApprovalPolicy::Majority,
            founders: (1..=3)
                .map(|id| member(id, &keys[&id], &addresses[&id]))
                .collect(),
        };
        std::fs::write(
            dir.join("genesis.json"),
            serde_json::to_vec(&genesis).unwrap(),
        )
        .unwrap();
        Cluster {
            dir: dir.to_owned(),
            genesis,
            keys,
            addresses,
            children: Mutex::new(HashMap::new()),
        }
    }

    fn data_dir(&self, id: MemberId) -> PathBuf {
        self.dir.join(format!("node-{id}"))
    }

    fn start(&self, id: MemberId) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node-{id}.log")))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_medvault"))
            .args([
                "chain",
                "node",
                "--member-id",
                &id.to_string(),
                "--listen",
                &self.addresses[&id],
            ])
            .arg("--data-dir")
            .arg(self.data_dir(id))
            .arg("--genesis")
            .arg(self.dir.join("genesis.json"))
            .arg("--key")
            .arg(self.dir.join(format!("key-{id}")))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start a validator");
        self.children.lock().unwrap().insert(id, child);
    }

    /// SIGKILL: no shutdown path runs.
    fn kill(&self, id: MemberId) {
        if let Some(mut child) = self.children.lock().unwrap().remove(&id) {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn client(&self, id: MemberId) -> ChainClient {
        ChainClient::new(&self.addresses[&id])
    }

    fn genesis_hash(&self) -> Hash32 {
        Block::genesis(&self.genesis).header.hash()
    }

    async fn leader(&self, among: &[MemberId], deadline: Duration) -> MemberId {
        let start = Instant::now();
        while start.elapsed() < deadline {
            for &id in among {
                if let Ok(status) = self.client(id).status().await {
                    if let Some(leader) = status.leader_id.filter(|leader| among.contains(leader)) {
                        return leader;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no leader among {among:?} within {deadline:?}");
    }

    /// Waits until every node in `ids` serves the same head and every block is final.
    async fn settled_chains(&self, ids: &[MemberId], deadline: Duration) -> Vec<Vec<SignedBlock>> {
        let start = Instant::now();
        loop {
            let mut heads = Vec::new();
            for &id in ids {
                heads.push(self.client(id).head().await.ok());
            }
            let settled = heads.iter().all(|head| {
                head.as_ref()
                    .is_some_and(|h| h.final_height == Some(h.height))
                    && head.as_ref().map(|h| h.hash) == heads[0].as_ref().map(|h| h.hash)
            });
            if settled {
                let mut chains = Vec::new();
                for &id in ids {
                    chains.push(self.client(id).all_blocks().await.unwrap());
                }
                if chains.iter().all(|chain| chain == &chains[0]) {
                    return chains;
                }
            }
            assert!(
                start.elapsed() < deadline,
                "nodes {ids:?} did not settle: {heads:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn medvault(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medvault"))
        .args(args)
        .output()
        .expect("run medvault")
}

fn anchor(i: usize) -> Entry {
    Entry::RecordAnchor {
        leaf: Hash32::digest(&[b"record version", &(i as u64).to_be_bytes()]),
    }
}

/// Submits `entry` one per request, retrying other nodes until acknowledged or out of time.
async fn submit_until_acknowledged(
    clients: &[ChainClient],
    entry: Entry,
    first: usize,
) -> Option<(u64, u32)> {
    let start = Instant::now();
    let mut attempt = first;
    while start.elapsed() < Duration::from_secs(60) {
        let client = &clients[attempt % clients.len()];
        attempt += 1;
        match client.submit(vec![entry.clone()]).await {
            Ok(outcomes) => match outcomes.first() {
                Some(EntryOutcome::Anchored(receipt)) => {
                    return Some((receipt.height, receipt.index))
                }
                other => panic!("entry refused: {other:?}"),
            },
            Err(error) if error.is_retryable() => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(error) => panic!("submission failed: {error}"),
        }
    }
    None
}

fn count_entries(chain: &[SignedBlock]) -> HashMap<Hash32, Vec<(u64, u32)>> {
    let mut found: HashMap<Hash32, Vec<(u64, u32)>> = HashMap::new();
    for signed in chain {
        for (index, entry) in signed.block.entries.iter().enumerate() {
            found
                .entry(entry.hash())
                .or_default()
                .push((signed.block.header.height, index as u32));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_validators_survive_a_killed_leader_admit_a_fourth_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::new(dir.path());
    for id in 1..=3 {
        cluster.start(id);
    }
    let first_leader = cluster.leader(&[1, 2, 3], Duration::from_secs(30)).await;

    // 10,000 entries, one per request from 16 clients, while the leader is SIGKILLed and restarted.
    let clients: Arc<Vec<ChainClient>> = Arc::new((1..=3).map(|id| cluster.client(id)).collect());
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let receipts = Arc::new(Mutex::new(HashMap::new()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client_index in 0..CLIENTS {
        let (clients, acknowledged, receipts) =
            (clients.clone(), acknowledged.clone(), receipts.clone());
        tasks.push(tokio::spawn(async move {
            for i in (client_index..ENTRIES).step_by(CLIENTS) {
                let entry = anchor(i);
                if let Some(location) =
                    submit_until_acknowledged(&clients, entry.clone(), client_index + i).await
                {
                    receipts.lock().unwrap().insert(entry.hash(), location);
                    acknowledged.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    while acknowledged.load(Ordering::Relaxed) < ENTRIES / 4 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "load did not get going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.kill(first_leader);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.start(first_leader);
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let receipts = receipts.lock().unwrap().clone();
    eprintln!(
        "{} entries acknowledged in {elapsed:?} with leader {first_leader} killed",
        receipts.len()
    );
    assert_eq!(
        receipts.len(),
        ENTRIES,
        "every entry is acknowledged after retries"
    );

    let chains = cluster
        .settled_chains(&[1, 2, 3], Duration::from_secs(60))
        .await;
    let report =
        audit_chain(&chains[0], Some(cluster.genesis_hash())).expect("the honest chain audits");
    assert!(report.pending_tail.is_empty());
    let found = count_entries(&chains[0]);
    for (hash, location) in &receipts {
        assert_eq!(
            found.get(hash),
            Some(&vec![*location]),
            "entry {hash} is on the chain exactly once, where acknowledged"
        );
    }
    assert_eq!(
        found.len(),
        ENTRIES + 1,
        "nothing but the entries and genesis"
    );

    let genesis_path = dir.path().join("genesis.json");
    let genesis_arg = genesis_path.to_str().unwrap();
    let nodes: Vec<String> = (1..=3).map(|id| cluster.addresses[&id].clone()).collect();
    let audit = medvault(&[
        "audit",
        "chain",
        "--node",
        &nodes[0],
        "--node",
        &nodes[1],
        "--node",
        &nodes[2],
        "--genesis",
        genesis_arg,
    ]);
    assert!(
        audit.status.success(),
        "audit chain: {}",
        String::from_utf8_lossy(&audit.stderr)
    );
    let some_entry = anchor(4321).hash().to_hex();
    let audit = medvault(&[
        "audit",
        "entry",
        "--node",
        &nodes[1],
        "--genesis",
        genesis_arg,
        "--hash",
        &some_entry,
    ]);
    assert!(
        audit.status.success(),
        "audit entry: {}",
        String::from_utf8_lossy(&audit.stderr)
    );

    // A fourth organization: refused with one approval, admitted with a majority, then validates.
    cluster.start(4);
    let newcomer = member(4, &cluster.keys[&4], &cluster.addresses[&4]);
    let action = GovernanceAction::Admit {
        member: newcomer,
        epoch: 0,
    };
    let chain_id = cluster.genesis_hash();
    let approval = |id: MemberId| approve(&cluster.keys[&id], id, &chain_id, &action);
    let (one_approval, majority) = (vec![approval(2)], vec![approval(1), approval(3)]);
    let under_approved = Entry::Governance(Governance {
        action: action.clone(),
        approvals: one_approval,
    });
    let outcome = cluster
        .client(1)
        .submit(vec![under_approved])
        .await
        .unwrap();
    assert!(
        matches!(&outcome[0], EntryOutcome::Rejected(reason) if reason.contains("approvals")),
        "{outcome:?}"
    );
    assert!(!cluster.client(2).members().await.unwrap().contains(4));
    let admission = Entry::Governance(Governance {
        action,
        approvals: majority,
    });
    let outcome = cluster.client(3).submit(vec![admission]).await.unwrap();
    let EntryOutcome::Anchored(admitted) = &outcome[0] else {
        panic!("admission refused: {outcome:?}")
    };

    let start = Instant::now();
    loop {
        let voters = cluster
            .client(4)
            .status()
            .await
            .map(|s| s.voters)
            .unwrap_or_default();
        if voters == vec![1, 2, 3, 4] {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "node 4 never became a voter: {voters:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after: Vec<Entry> = (ENTRIES..ENTRIES + 20).map(anchor).collect();
    let outcomes = cluster.client(4).submit(after).await.unwrap();
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, EntryOutcome::Anchored(_))));
    let chains = cluster
        .settled_chains(&[1, 2, 3, 4], Duration::from_secs(60))
        .await;
    let report =
        audit_chain(&chains[3], Some(chain_id)).expect("the chain with four members audits");
    assert!(report.members.at(admitted.height + 1).unwrap().contains(4));
    let head = chains[3].last().unwrap();
    assert!(head.block.header.height > admitted.height);
    assert!(
        head.signatures.iter().any(|s| s.signer == 4),
        "the new member signs blocks"
    );
    assert!(
        chains[3][admitted.height as usize]
            .signatures
            .iter()
            .all(|s| s.signer != 4),
        "but not before it was admitted"
    );

    // A bit flipped in a stored block of a stopped validator.
    cluster.kill(3);
    let chain_file = cluster.data_dir(3).join(CHAIN_FILE);
    let mut stored = std::fs::read(&chain_file).unwrap();
    let Entry::RecordAnchor { leaf } = anchor(777) else {
        unreachable!()
    };
    let at = stored
        .windows(32)
        .position(|window| window == leaf.0)
        .expect("the leaf is stored");
    stored[at + 5] ^= 0x04;
    std::fs::write(&chain_file, &stored).unwrap();
    let data_dir = cluster.data_dir(3);
    let audit = medvault(&[
        "audit",
        "chain",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--genesis",
        genesis_arg,
    ]);
    let complaint = String::from_utf8_lossy(&audit.stderr);
    assert!(
        !audit.status.success() && complaint.contains("checksum does not match its contents"),
        "flipped bit missed: {complaint}"
    );

    // Tampering with what a node serves: a forged signature, a non-member's block, equivocation.
    let honest = &chains[0];
    let mut forged = honest.clone();
    forged[5].signatures[0].signature.0[7] ^= 1;
    assert!(matches!(
        audit_chain(&forged, Some(chain_id)),
        Err(AuditError::BadSignature { height: 5, .. })
    ));

    let outsider = ValidatorKey::generate();
    let mut usurped = honest[..6].to_vec();
    let last = &usurped[5].block.header;
    let rogue = Block::seal(6, last.hash(), last.timestamp_ms, 9, vec![anchor(999_999)]);
    usurped.push(SignedBlock {
        signatures: vec![outsider.sign_block(9, &rogue.header)],
        block: rogue.clone(),
    });
    assert!(matches!(
        audit_chain(&usurped, Some(chain_id)),
        Err(AuditError::NonMemberSignature {
            height: 6,
            signer: 9,
            ..
        })
    ));

    let rival = SignedBlock {
        signatures: vec![
            cluster.keys[&1].sign_block(1, &rogue.header),
            cluster.keys[&2].sign_block(2, &rogue.header),
        ],
        block: rogue,
    };
    let members = report.members.at(6).unwrap();
    let Err(AuditError::Equivocation(evidence)) = check_conflict(&honest[6], &rival, members)
    else {
        panic!("equivocating pair not caught");
    };
    assert_eq!(evidence.height, 6);
    assert!(!evidence.double_signers.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_answers_unknown_heights_and_malformed_entries_with_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::new(dir.path());
    let single = GenesisSpec {
        founders: cluster.genesis.founders[..1].to_vec(),
        ..cluster.genesis.clone()
    };
    std::fs::write(
        dir.path().join("genesis.json"),
        serde_json::to_vec(&single).unwrap(),
    )
    .unwrap();
    cluster.start(1);
    cluster.leader(&[1], Duration::from_secs(30)).await;
    let client = cluster.client(1);
    assert!(client.block(999).await.unwrap().is_none());
    let http = raw_post(
        &cluster.addresses[&1],
        r#"{"entries":[{"type":"record_anchor","leaf":"zz"}]}"#,
    );
    assert!(http.starts_with("HTTP/1.1 400"), "{http}");
    assert!(http.contains("malformed_entry"), "{http}");
    let outcomes = client.submit(vec![anchor(1), anchor(1)]).await.unwrap();
    assert_eq!(
        outcomes[0], outcomes[1],
        "the same entry twice is anchored once"
    );
    let again = client.submit(vec![anchor(1)]).await.unwrap();
    assert_eq!(
        again,
        outcomes[..1],
        "resubmitting returns the original receipt"
    );
}

/// A raw HTTP/1.1 POST, to see the status line and body exactly as a client would.
fn raw_post(address: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST /v1/entries HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// A patients-only export of 40 persons in four classes of ten, made at `chain_height`.
fn export_made_at(out: &Path, chain_height: u64) {
    let persons: Vec<Person> = (0..40u8)
        .map(|i| Person {
            patient_id: [i; 16],
            date_of_birth: NaiveDate::from_ymd_opt(1950 + i32::from(i % 4) * 20, 6, 1).unwrap(),
            sex: "female".into(),
            postal_code: Some("02139".into()),
        })
        .collect();
    let policy = ExportPolicy {
        dataset: Dataset::Patients,
        columns: Vec::new(),
        birth: BirthGeneralization::AgeBand { width: 20 },
        zip: ZipGeneralization::Zip3,
        include_sex: true,
        dates: DateGeneralization::Year,
        sensitive: None,
        k: 5,
        l: None,
        max_suppression: 0.0,
        pseudonym_scope: PseudonymScope::PerExport,
    };
    let context = ExportContext {
        organization: "St. Mary's".into(),
        signing_key: SigningKey::from_bytes(&[7; 32]),
        pseudonym_secret: [8; 32],
        consent_root: "cd".repeat(32),
        chain_height,
        as_of: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
    };
    export(&policy, &context, &persons, std::iter::empty, out).unwrap();
}

/// The entry the server anchors for an export: the SHA3-256 of its manifest as written.
fn manifest_entry(export: &Path) -> Entry {
    let manifest = std::fs::read(export.join("manifest.json")).unwrap();
    Entry::ExportManifest {
        manifest_hash: Hash32::digest(&[&manifest]),
    }
}

/// Stops an embedded chain once its validator has signed every block, so that its files audit.
async fn stop_once_signed(chain: EmbeddedChain) {
    let start = Instant::now();
    while !(0..=chain.head_height()).all(|height| {
        chain
            .block(height)
            .is_some_and(|b| !b.signatures.is_empty())
    }) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the embedded validator never signed its blocks"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    chain.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_chain_refuses_a_damaged_or_cut_chain_file_and_one_behind_its_raft_log() {
    let dir = tempfile::tempdir().unwrap();
    let chain_dir = dir.path().join("chain");
    let chain = EmbeddedChain::open(&chain_dir, &["St. Mary's".into()])
        .await
        .unwrap();
    let member_dir = member_dir(&chain_dir, 1);
    for i in 0..5 {
        chain.submit(vec![anchor(i)]).await.unwrap();
    }
    stop_once_signed(chain).await;
    let genesis = chain_dir.join("genesis.json");
    let audit = || {
        medvault(&[
            "audit",
            "chain",
            "--data-dir",
            member_dir.to_str().unwrap(),
            "--genesis",
            genesis.to_str().unwrap(),
        ])
    };
    let clean = audit();
    let summary = String::from_utf8_lossy(&clean.stdout);
    assert!(
        clean.status.success() && summary.contains("\"head_height\": 5"),
        "{summary}{}",
        String::from_utf8_lossy(&clean.stderr)
    );

    let path = member_dir.join(CHAIN_FILE);
    let bytes = std::fs::read(&path).unwrap();
    let refused = |damaged: &[u8], complaint: &str| {
        std::fs::write(&path, damaged).unwrap();
        let audit = audit();
        let stderr = String::from_utf8_lossy(&audit.stderr);
        assert!(
            !audit.status.success() && stderr.contains(complaint),
            "expected `{complaint}`: {stderr}"
        );
    };
    let mut length_flipped = bytes.clone();
    length_flipped[chain_file::HEADER_LEN as usize + 3] ^= 0x01;
    refused(
        &length_flipped,
        &format!(
            "{}: byte 12, after block 0: the record's length field is damaged",
            path.display()
        ),
    );
    refused(&bytes[..bytes.len() - 5], "interrupted by a crash");
    let record_ends: Vec<usize> = chain_file::items(&bytes)
        .unwrap()
        .filter_map(|item| match item.unwrap() {
            chain_file::Item::Record { end, .. } => Some(end as usize),
            chain_file::Item::Incomplete { .. } => None,
        })
        .collect();
    for &end in &record_ends[..record_ends.len() - 1] {
        std::fs::write(&path, &bytes[..end]).unwrap();
        let audit = audit();
        let stderr = String::from_utf8_lossy(&audit.stderr);
        assert!(
            !audit.status.success()
                && (stderr.contains("interrupted by a crash")
                    || stderr.contains("that it does not hold")),
            "a file cut at byte {end} of {} audited: {stderr}",
            bytes.len()
        );
    }
    std::fs::write(&path, &bytes).unwrap();
    assert!(audit().status.success(), "the restored file audits again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_export_finds_the_manifest_anchored_after_the_export_was_made() {
    let dir = tempfile::tempdir().unwrap();
    let chain_dir = dir.path().join("chain");
    let chain = EmbeddedChain::open(&chain_dir, &["St. Mary's".into()])
        .await
        .unwrap();
    let member_dir = member_dir(&chain_dir, 1);
    let made_at = chain.head_height();
    let anchored = dir.path().join("anchored");
    let never_anchored = dir.path().join("never-anchored");
    let claims_a_later_height = dir.path().join("claims-a-later-height");
    export_made_at(&anchored, made_at);
    export_made_at(&never_anchored, made_at);
    export_made_at(&claims_a_later_height, made_at + 1000);
    let outcomes = chain
        .submit(vec![
            manifest_entry(&anchored),
            manifest_entry(&claims_a_later_height),
        ])
        .await
        .unwrap();
    let EntryOutcome::Anchored(receipt) = &outcomes[0] else {
        panic!("manifest refused: {outcomes:?}")
    };
    stop_once_signed(chain).await;

    let genesis = chain_dir.join("genesis.json");
    let audit_export = |export_dir: &Path| {
        medvault(&[
            "audit",
            "export",
            export_dir.to_str().unwrap(),
            "--data-dir",
            member_dir.to_str().unwrap(),
            "--genesis",
            genesis.to_str().unwrap(),
        ])
    };
    let audit = audit_export(&anchored);
    let said = String::from_utf8_lossy(&audit.stdout);
    assert!(
        audit.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&audit.stderr)
    );
    assert!(
        said.contains(&format!(
            "manifest anchored: block {}, index {}",
            receipt.height, receipt.index
        )),
        "{said}"
    );

    let unchecked = medvault(&["audit", "export", anchored.to_str().unwrap()]);
    assert!(unchecked.status.success());
    let warning = String::from_utf8_lossy(&unchecked.stderr);
    assert!(
        warning.contains("the anchor was not checked") && warning.contains("--data-dir"),
        "{warning}"
    );

    for (refused, complaint) in [
        (
            &never_anchored,
            "the export's manifest hash is not anchored on this chain".to_owned(),
        ),
        (
            &claims_a_later_height,
            format!("before the chain height {} it says", made_at + 1000),
        ),
    ] {
        let audit = audit_export(refused);
        let stderr = String::from_utf8_lossy(&audit.stderr);
        assert!(
            !audit.status.success() && stderr.contains(&complaint),
            "{}: {stderr}",
            refused.display()
        );
    }

    let person = anchored.join("person.parquet");
    let mut bytes = std::fs::read(&person).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&person, &bytes).unwrap();
    let audit = audit_export(&anchored);
    let stderr = String::from_utf8_lossy(&audit.stderr);
    assert!(
        !audit.status.success() && stderr.contains("export does not verify"),
        "a changed byte passed: {stderr}"
    );
}

/// A server's anchoring worker on the members' cluster (`serve --chain-node`), given a follower
/// first and the leader second: what the outbox holds is anchored, the height is recorded, and
/// the cluster proves the entry's inclusion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anchoring_worker_anchors_on_the_validator_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::new(dir.path());
    for id in 1..=3 {
        cluster.start(id);
    }
    let leader = cluster.leader(&[1, 2, 3], Duration::from_secs(30)).await;
    let follower = (1..=3).find(|&id| id != leader).expect("a follower");
    let database_url = ScratchServer::get()
        .expect("a PostgreSQL server for tests")
        .create_database()
        .await
        .expect("a test database");
    let config = VaultConfig {
        consent_keys_dir: dir.path().join("consent-keys"),
        consent_depth: 1,
        chain: ChainTarget::Cluster(
            [follower, leader]
                .iter()
                .map(|id| cluster.addresses[id].clone())
                .collect(),
        ),
        ..VaultConfig::new(database_url.clone(), MasterKeySource::Hex("24".repeat(32)))
    };
    let services = Services::start(&config)
        .await
        .expect("the vault's services");
    let (client, connection) = tokio_postgres::connect(&database_url, tokio_postgres::NoTls)
        .await
        .expect("a raw connection");
    tokio::spawn(connection);
    let entry = anchor(ENTRIES + 1);
    client
        .execute(
            "INSERT INTO anchor_outbox (entry) VALUES ($1)",
            &[&entry.canonical_bytes()],
        )
        .await
        .expect("queue an entry");

    let anchoring = services.anchoring().expect("an anchoring worker");
    anchoring
        .wait_until_anchored()
        .await
        .expect("the outbox drains onto the cluster");
    let height: i64 = client
        .query_one(
            "SELECT anchored_height FROM anchor_outbox WHERE entry = $1",
            &[&entry.canonical_bytes()],
        )
        .await
        .expect("the outbox row")
        .get(0);
    let proof = cluster
        .client(leader)
        .proof(&entry.hash())
        .await
        .expect("the leader answers")
        .expect("an inclusion proof for the queued entry");
    assert_eq!(proof.entry, entry);
    assert_eq!(proof.header.height as i64, height);
    assert_eq!(
        anchoring.chain().head_height().await.expect("the head"),
        cluster.client(leader).head().await.expect("head").height
    );
    services.stop().await;
}
