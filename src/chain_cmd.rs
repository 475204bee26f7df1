//! `medvault chain` and `medvault audit`: the command-line face of `medvault-anchor-chain`.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use medvault_anchor_chain::api;
use medvault_anchor_chain::audit::{
    audit_sources, audited_inclusion, audited_inclusions, audited_manifest_anchor, ChainSources,
};
use medvault_anchor_chain::block::{Block, ValidatorKey};
use medvault_anchor_chain::bytes::{Hash32, PublicKeyBytes};
use medvault_anchor_chain::client::ChainClient;
use medvault_anchor_chain::entry::{
    Approval, ApprovalPolicy, Entry, GenesisSpec, Governance, GovernanceAction, Member,
};
use medvault_anchor_chain::files::{read_json, to_json, write_json};
use medvault_anchor_chain::governance::approve;
use medvault_anchor_chain::node::{Validator, ValidatorConfig};
use medvault_anchor_chain::state::EntryOutcome;
use medvault_anchor_chain::verify::AuditSummary;
use medvault_vault::anchoring::db_audit::audit_database;
use medvault_vault::consent::audit::{AccessEvidence, AnchoredAt};
use std::collections::HashMap;
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
    /// Check every consent proof a vault's database keeps against the chain: each verifying key
    /// and root anchored (a root before the session it opened), each proof valid, and each
    /// allowed doctor access inside a verified consent session of that doctor and patient.
    /// Prints a JSON report and fails if anything is wrong. Needs no master key.
    Access {
        /// The vault's PostgreSQL.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        #[command(flatten)]
        source: ChainSource,
    },
    /// Check a vault's database against the chain, without any key: recompute every record
    /// version's leaf from its row and every access-log batch's root from its lines, and look
    /// each up in the audited chain's final blocks. Prints a JSON report naming modified,
    /// deleted, inserted, moved and unanchored versions and edited, removed or inserted log
    /// lines (an erased patient's versions are counted as erased), and fails if any is found.
    Db {
        /// The vault's PostgreSQL.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        #[command(flatten)]
        source: ChainSource,
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
    /// The sources as the auditor takes them, with the genesis spec read and the hash parsed.
    fn to_sources(&self) -> anyhow::Result<ChainSources> {
        let genesis: Option<GenesisSpec> = self.genesis.as_deref().map(read_json).transpose()?;
        let genesis_hash = self
            .genesis_hash
            .as_deref()
            .map(|hex| Hash32::from_hex(hex).context("--genesis-hash must be 64 hex digits"))
            .transpose()?;
        Ok(ChainSources {
            nodes: self.nodes.clone(),
            data_dir: self.data_dir.clone(),
            genesis,
            genesis_hash,
            allow_pending: self.allow_pending,
        })
    }
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
            match outcomes.first() {
                Some(EntryOutcome::Anchored(_)) => Ok(()),
                Some(EntryOutcome::Rejected(reason)) => {
                    bail!("the chain refused the action: {reason}")
                }
                None => bail!("the chain answered no outcome"),
            }
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
                let audited = audit_sources(&source.to_sources()?).await?;
                println!("{}", to_json(&AuditSummary::of(&audited.report)));
                Ok(())
            }
            AuditCommand::Export { dir, source } => audit_export(&dir, &source.to_sources()?).await,
            AuditCommand::Access {
                database_url,
                source,
            } => audit_access(&database_url, &source.to_sources()?).await,
            AuditCommand::Db {
                database_url,
                source,
            } => audit_db(&database_url, &source.to_sources()?).await,
            AuditCommand::Entry { source, hash } => {
                let hash =
                    Hash32::from_hex(&hash).context("the entry hash must be 64 hex digits")?;
                let proof = audited_inclusion(&source.to_sources()?, &hash)
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

/// Reads the database's consent evidence, looks up the entries it needs on the audited chain,
/// and checks it.
async fn audit_access(database_url: &str, sources: &ChainSources) -> anyhow::Result<()> {
    let pool = medvault_vault::database::connect_pool(database_url, 1)?;
    let client = pool.get().await.context("connecting to the database")?;
    let evidence = AccessEvidence::read(&client)
        .await
        .context("reading the consent evidence")?;
    let hashes: Vec<Hash32> = evidence
        .entries_to_look_up()
        .iter()
        .map(|entry| entry.hash())
        .collect();
    let anchored: HashMap<Hash32, AnchoredAt> = audited_inclusions(sources, &hashes)
        .await?
        .into_iter()
        .map(|(hash, proof)| {
            let at = AnchoredAt {
                height: proof.header.height,
                timestamp_ms: proof.header.timestamp_ms,
            };
            (hash, at)
        })
        .collect();
    let report = tokio::task::spawn_blocking(move || evidence.check(&anchored)).await?;
    println!("{}", to_json(&report));
    if !report.problems.is_empty() {
        bail!(
            "{} problem(s) found in the consent evidence",
            report.problems.len()
        );
    }
    Ok(())
}

/// Audits the chain, then the database against it.
async fn audit_db(database_url: &str, sources: &ChainSources) -> anyhow::Result<()> {
    let audited = audit_sources(sources).await?;
    let pool = medvault_vault::database::connect_pool(database_url, 1)?;
    let client = pool.get().await.context("connecting to the database")?;
    let report = audit_database(&client, |entry_hash| audited.final_height_of(entry_hash))
        .await
        .context("auditing the database")?;
    println!("{}", to_json(&report));
    if !report.problems.is_empty() {
        bail!(
            "{} problem(s) found between the database and the chain",
            report.problems.len()
        );
    }
    Ok(())
}

/// Checks an export's files and signature, and, given a chain source, that its manifest is
/// anchored on that chain after the height the manifest says it was made at.
async fn audit_export(dir: &Path, sources: &ChainSources) -> anyhow::Result<()> {
    let manifest = medvault_exporter::verify_export(dir)?;
    let manifest_sha3 = medvault_exporter::manifest::manifest_hash(dir)?;
    let anchor = if sources.is_given() {
        let manifest_hash =
            Hash32::from_hex(&manifest_sha3).context("the manifest hash is not 32 bytes")?;
        let proof = audited_manifest_anchor(sources, manifest_hash, manifest.chain_height)
            .await?
            .context("the export's manifest hash is not anchored on this chain")?;
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
