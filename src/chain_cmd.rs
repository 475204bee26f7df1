//! `medvault chain` and `medvault audit`: the command-line face of `medvault-anchor-chain`.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use medvault_anchor_chain::api;
use medvault_anchor_chain::block::{Block, SignedBlock, ValidatorKey};
use medvault_anchor_chain::client::ChainClient;
use medvault_anchor_chain::files::{read_json, to_json, write_json};
use medvault_anchor_chain::governance::approve;
use medvault_anchor_chain::node::{Validator, ValidatorConfig};
use medvault_anchor_chain::state::ChainState;
use medvault_anchor_chain::storage::{ChainStore, CHAIN_FILE, LOG_FILE};
use medvault_anchor_chain::types::{
    Approval, ApprovalPolicy, Entry, GenesisSpec, Governance, GovernanceAction, Hash32, Member,
    PublicKeyBytes,
};
use medvault_anchor_chain::verify::{
    audit_chain, check_conflict, verify_entry, AuditReport, AuditSummary, EntryProof,
};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Subcommand)]
pub enum ChainCommand {
    /// Create a validator signing key (hex, mode 0600) and print its public key.
    Keygen {
        /// Where to write the key; refuses to overwrite.
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a genesis spec naming the founding members.
    Genesis {
        /// Consortium name.
        #[arg(long)]
        name: String,
        /// A founder as `id,name,public-key-hex,host:port`; repeat for each.
        #[arg(long = "founder", required = true)]
        founders: Vec<String>,
        /// Approvals needed to admit or remove a member: `majority` or `all`.
        #[arg(long, default_value = "majority")]
        policy: String,
        /// Where to write the spec (JSON).
        #[arg(long)]
        out: PathBuf,
    },
    /// Run a validator: Raft replication, block signing and the HTTP API.
    Node(NodeArgs),
    /// Sign a governance action (JSON file) as a current member; prints the approval as JSON.
    Approve {
        /// The approving member's key.
        #[arg(long)]
        key: PathBuf,
        /// The approving member's id.
        #[arg(long)]
        member_id: u64,
        /// The chain's genesis spec.
        #[arg(long)]
        genesis: PathBuf,
        /// The action, e.g. `{"action":"admit","epoch":0,"member":{...}}`.
        #[arg(long)]
        action: PathBuf,
    },
    /// Submit a governance action with its approvals to a validator.
    Govern {
        /// Any validator's `host:port`.
        #[arg(long)]
        node: String,
        /// The action (JSON file).
        #[arg(long)]
        action: PathBuf,
        /// Approval files written by `chain approve`; repeat for each.
        #[arg(long = "approval", required = true)]
        approvals: Vec<PathBuf>,
    },
}

#[derive(Args)]
pub struct NodeArgs {
    /// Directory of this validator's Raft log and chain file.
    #[arg(long)]
    data_dir: PathBuf,
    /// The chain's genesis spec.
    #[arg(long)]
    genesis: PathBuf,
    /// This validator's signing key.
    #[arg(long)]
    key: PathBuf,
    /// This validator's member id.
    #[arg(long)]
    member_id: u64,
    /// Address to listen on; must match the address the chain records for this member.
    #[arg(long)]
    listen: String,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check hash links, Merkle roots, signatures and governance from genesis; with several
    /// nodes, also compare them block by block for equivocation.
    Chain(ChainSource),
    /// Check that an entry is included in a final block of an audited chain; the proof comes
    /// from --data-dir if given, else from the first --node.
    Entry {
        #[command(flatten)]
        source: ChainSource,
        /// The entry's hash (hex).
        #[arg(long)]
        hash: String,
    },
    /// Re-hash an export's files and check them and the signature against its manifest; with a
    /// chain source, also check that the manifest's hash is anchored in a final block no older
    /// than the chain height the manifest was made at.
    Export {
        /// The export directory (holding manifest.json).
        dir: PathBuf,
        #[command(flatten)]
        source: ChainSource,
    },
}

#[derive(Args)]
pub struct ChainSource {
    /// A validator's `host:port`; repeat to cross-check several.
    #[arg(long = "node")]
    nodes: Vec<String>,
    /// Read a stopped validator's chain file from its data directory instead (needs --genesis):
    /// every record is checked, and the head is compared with the Raft log when there is one.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The genesis spec to trust; its hash must match the chain's block 0.
    #[arg(long)]
    genesis: Option<PathBuf>,
    /// The genesis hash to trust, when the spec itself is not at hand.
    #[arg(long)]
    genesis_hash: Option<String>,
    /// Accept trailing blocks still short of a majority of signatures.
    #[arg(long)]
    allow_pending: bool,
}

impl ChainSource {
    /// Whether any chain flag was given: `audit export` checks the anchor only then.
    fn is_given(&self) -> bool {
        !self.nodes.is_empty()
            || self.data_dir.is_some()
            || self.genesis.is_some()
            || self.genesis_hash.is_some()
            || self.allow_pending
    }
}

/// A source's audited chain, with the chain state read from --data-dir when one was given, so
/// that proofs can be taken from the very blocks that were audited.
struct AuditedChain {
    report: AuditReport,
    stored_state: Option<ChainState>,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn chain(command: ChainCommand) -> anyhow::Result<()> {
    match command {
        ChainCommand::Keygen { out } => {
            let key = ValidatorKey::generate();
            key.save(&out)?;
            println!("{}", key.public_key());
            Ok(())
        }
        ChainCommand::Genesis {
            name,
            founders,
            policy,
            out,
        } => {
            let approval_policy = match policy.as_str() {
                "majority" => ApprovalPolicy::Majority,
                "all" => ApprovalPolicy::All,
                other => bail!("policy must be `majority` or `all`, not `{other}`"),
            };
            let founders = founders
                .iter()
                .map(|text| parse_founder(text))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let timestamp_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
            let spec = GenesisSpec {
                chain_name: name,
                timestamp_ms,
                approval_policy,
                founders,
            };
            write_json(&out, &spec)?;
            println!("{}", Block::genesis(&spec).header.hash());
            Ok(())
        }
        ChainCommand::Node(args) => runtime()?.block_on(run_node(args)),
        ChainCommand::Approve {
            key,
            member_id,
            genesis,
            action,
        } => {
            let key = ValidatorKey::load(&key)?;
            let spec: GenesisSpec = read_json(&genesis)?;
            let action: GovernanceAction = read_json(&action)?;
            let chain_id = Block::genesis(&spec).header.hash();
            println!("{}", to_json(&approve(&key, member_id, &chain_id, &action)));
            Ok(())
        }
        ChainCommand::Govern {
            node,
            action,
            approvals,
        } => {
            let action: GovernanceAction = read_json(&action)?;
            let approvals = approvals
                .iter()
                .map(|path| read_json::<Approval>(path))
                .collect::<Result<_, _>>()?;
            let entry = Entry::Governance(Governance { action, approvals });
            let outcomes = runtime()?.block_on(ChainClient::new(&node).submit(vec![entry]))?;
            println!("{}", to_json(&outcomes));
            Ok(())
        }
    }
}

fn parse_founder(text: &str) -> anyhow::Result<Member> {
    let parts: Vec<&str> = text.splitn(4, ',').collect();
    let [id, name, key, address] = parts.as_slice() else {
        bail!("founder `{text}` is not `id,name,public-key-hex,host:port`");
    };
    Ok(Member {
        id: id.parse().with_context(|| format!("founder id `{id}`"))?,
        name: (*name).to_owned(),
        public_key: PublicKeyBytes::from_hex(key)
            .with_context(|| format!("founder key `{key}`"))?,
        address: (*address).to_owned(),
    })
}

async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let genesis: GenesisSpec = read_json(&args.genesis)?;
    let key = ValidatorKey::load(&args.key)?;
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let validator = Validator::start(ValidatorConfig {
        data_dir: args.data_dir,
        member_id: args.member_id,
        key,
        genesis,
    })
    .await?;
    eprintln!("validator {} listening on {}", args.member_id, args.listen);
    let server = tokio::spawn(api::serve(listener, validator.clone()));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        served = server => served?.context("HTTP server stopped")?,
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    validator.shutdown().await;
    Ok(())
}

pub fn audit(command: AuditCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        match command {
            AuditCommand::Chain(source) => {
                let audited = audit_source(&source).await?;
                println!("{}", to_json(&AuditSummary::of(&audited.report)));
                Ok(())
            }
            AuditCommand::Export { dir, source } => audit_export(&dir, &source).await,
            AuditCommand::Entry { source, hash } => {
                let hash =
                    Hash32::from_hex(&hash).context("the entry hash must be 64 hex digits")?;
                let proof = audited_inclusion(&source, &hash)
                    .await?
                    .context("the entry is not anchored")?;
                println!(
                    "entry {hash} verified: block {}, index {}",
                    proof.header.height, proof.inclusion.index
                );
                Ok(())
            }
        }
    })
}

/// Checks an export's files and signature, and, given a chain source, that its manifest is
/// anchored on that chain after the height the manifest says it was made at.
async fn audit_export(dir: &Path, source: &ChainSource) -> anyhow::Result<()> {
    let manifest = medvault_exporter::verify_export(dir)?;
    let manifest_sha3 = medvault_exporter::manifest::manifest_hash(dir)?;
    let anchor = if source.is_given() {
        let manifest_hash =
            Hash32::from_hex(&manifest_sha3).context("the manifest hash is not 32 bytes")?;
        let entry_hash = Entry::ExportManifest { manifest_hash }.hash();
        let proof = audited_inclusion(source, &entry_hash)
            .await?
            .context("the export's manifest hash is not anchored on this chain")?;
        if proof.header.height < manifest.chain_height {
            bail!(
                "the export's manifest is anchored in block {}, before the chain height {} it \
                 says it was made at",
                proof.header.height,
                manifest.chain_height
            );
        }
        Some(proof)
    } else {
        None
    };
    println!(
        "export {} verifies: {} files, {} persons (k = {}, l = {}), consent root {}, \
         chain height {}, manifest SHA3-256 {manifest_sha3}",
        manifest.export_id,
        manifest.files.len(),
        manifest.persons_out,
        manifest.k_achieved,
        manifest
            .l_achieved
            .map_or_else(|| "-".to_owned(), |l| l.to_string()),
        manifest.consent_root,
        manifest.chain_height,
    );
    match anchor {
        Some(proof) => println!(
            "manifest anchored: block {}, index {}",
            proof.header.height, proof.inclusion.index
        ),
        None => eprintln!(
            "the anchor was not checked: give --node HOST:PORT, or --data-dir DIR --genesis FILE, \
             to check that the manifest hash is anchored on the chain"
        ),
    }
    Ok(())
}

/// Audits the source's chain, then checks that `entry_hash` is in one of its final blocks.
/// Returns the checked proof, or `None` when the chain does not hold the entry.
async fn audited_inclusion(
    source: &ChainSource,
    entry_hash: &Hash32,
) -> anyhow::Result<Option<EntryProof>> {
    let audited = audit_source(source).await?;
    let proof = if let Some(state) = &audited.stored_state {
        state.proof(entry_hash)
    } else if let Some(node) = source.nodes.first() {
        ChainClient::new(node).proof(entry_hash).await?
    } else {
        bail!("give --node or --data-dir to fetch the proof from");
    };
    let Some(proof) = proof else {
        return Ok(None);
    };
    let proven = proof.entry.hash();
    if proven != *entry_hash {
        bail!("asked for a proof of entry {entry_hash}, the chain source proved entry {proven}");
    }
    verify_entry(&proof, &audited.report)?;
    Ok(Some(proof))
}

/// Audits each source's chain, then compares the chains height by height.
async fn audit_source(source: &ChainSource) -> anyhow::Result<AuditedChain> {
    let spec: Option<GenesisSpec> = source.genesis.as_deref().map(read_json).transpose()?;
    let trusted = match (&spec, &source.genesis_hash) {
        (Some(spec), _) => Some(Block::genesis(spec).header.hash()),
        (None, Some(hash)) => {
            Some(Hash32::from_hex(hash).context("--genesis-hash must be 64 hex digits")?)
        }
        (None, None) => None,
    };
    let mut chains: Vec<(String, Vec<SignedBlock>)> = Vec::new();
    let mut stored_state = None;
    if let Some(dir) = &source.data_dir {
        let spec = spec.as_ref().context("--data-dir needs --genesis")?;
        let stored = ChainStore::read_verified(&dir.join(CHAIN_FILE), spec)?;
        let log = dir.join(LOG_FILE);
        if log.exists() {
            stored.check_against_log(&log)?;
        }
        let state = stored.state;
        let blocks = (0..=state.head_height())
            .filter_map(|height| state.block(height).cloned())
            .collect();
        chains.push((dir.display().to_string(), blocks));
        stored_state = Some(state);
    }
    for node in &source.nodes {
        chains.push((node.clone(), ChainClient::new(node).all_blocks().await?));
    }
    let mut reports = Vec::new();
    for (name, blocks) in &chains {
        let report = audit_chain(blocks, trusted).with_context(|| format!("auditing {name}"))?;
        if !source.allow_pending && !report.pending_tail.is_empty() {
            bail!(
                "{name}: blocks {:?} are not yet signed by a majority",
                report.pending_tail
            );
        }
        reports.push(report);
    }
    for (index, (name, blocks)) in chains.iter().enumerate().skip(1) {
        let (first_name, first_blocks) = &chains[0];
        for (mine, theirs) in blocks.iter().zip(first_blocks) {
            let height = mine.block.header.height;
            let members = reports[index].members.at(height).context("member set")?;
            check_conflict(theirs, mine, members)
                .with_context(|| format!("comparing {first_name} with {name}"))?;
        }
    }
    let report = reports
        .into_iter()
        .next()
        .context("give --node or --data-dir")?;
    Ok(AuditedChain {
        report,
        stored_state,
    })
}
