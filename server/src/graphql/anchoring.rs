//! Where facts are anchored, as the API shows it: a fact's [`Anchoring`] (pending, or its block,
//! leaf index, RFC 9162 inclusion path and the block's signatures, with the chain's own proof
//! document) and the chain's head. Enough for a client to check a record version, an export or
//! a consent root against the chain alone, trusting nothing this server says. And the
//! auditors' database audits, which check the database against the chain.

use async_graphql::{Context, Enum, Json, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use medvault_anchor_chain::api::HeadResponse;
use medvault_anchor_chain::bytes::Hash32;
use medvault_anchor_chain::entry::Entry;
use medvault_anchor_chain::verify::EntryProof;
use medvault_vault::anchoring::db_audit::DbAuditReport;
use medvault_vault::anchoring::db_audit_jobs::{AuditJobStatus, DatabaseAuditJob};
use medvault_vault::anchoring::{AnchoringError, AnchoringWorker, QueuedFact};

/// The chain this server anchors on, if it has one: what the schema reads proofs from.
#[derive(Clone)]
pub struct ChainView(pub Option<AnchoringWorker>);

impl ChainView {
    /// The anchoring of `entry`: its proof when the chain holds it.
    pub async fn anchoring_of(ctx: &Context<'_>, entry: Entry) -> Result<Anchoring> {
        let entry_hash = entry.hash();
        let proof = match &ctx.data::<ChainView>()?.0 {
            Some(worker) => worker
                .chain()
                .proof(&entry_hash)
                .await
                .map_err(unavailable)?,
            None => None,
        };
        Ok(Anchoring { entry_hash, proof })
    }
}

fn unavailable(error: AnchoringError) -> async_graphql::Error {
    tracing::warn!(%error, "the anchor chain did not answer a proof request");
    crate::error::ApiError::Unavailable(crate::error::CHAIN_UNAVAILABLE).to_graphql()
}

/// Whether a fact is on the chain yet.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum AnchoringStatus {
    /// Queued in the server's outbox (or the chain cannot be asked): not provable yet.
    Pending,
    /// In a block of the chain.
    Anchored,
}

/// Where a fact is anchored. The fields other than `status` and `entryHash` are null while it
/// is pending.
pub struct Anchoring {
    entry_hash: Hash32,
    proof: Option<EntryProof>,
}

/// A validator's signature over a block header.
#[derive(SimpleObject)]
pub struct BlockSignature {
    /// The signing member's id on the chain.
    signer: u64,
    /// Ed25519 signature (hex) over the block's header hash, tagged as the chain signs it.
    signature: String,
}

#[Object]
impl Anchoring {
    async fn status(&self) -> AnchoringStatus {
        match self.proof {
            Some(_) => AnchoringStatus::Anchored,
            None => AnchoringStatus::Pending,
        }
    }
    /// SHA3-256 (hex) of the chain entry's canonical bytes: what `medvault audit entry --hash`
    /// takes.
    async fn entry_hash(&self) -> String {
        self.entry_hash.to_hex()
    }
    /// Height of the block holding the entry.
    async fn height(&self) -> Option<u64> {
        self.proof.as_ref().map(|proof| proof.header.height)
    }
    /// The entry's position among the block's leaves, from 0.
    async fn leaf_index(&self) -> Option<u64> {
        self.proof.as_ref().map(|proof| proof.inclusion.index)
    }
    /// Number of leaves in the block's tree.
    async fn tree_size(&self) -> Option<u64> {
        self.proof.as_ref().map(|proof| proof.inclusion.tree_size)
    }
    /// The RFC 9162 inclusion path (hex sibling hashes, nearest the leaf first) to the block's
    /// entries root.
    async fn path(&self) -> Option<Vec<String>> {
        self.proof
            .as_ref()
            .map(|proof| proof.inclusion.path.iter().map(Hash32::to_hex).collect())
    }
    /// The block's entries root (hex), which the path leads to.
    async fn entries_root(&self) -> Option<String> {
        self.proof
            .as_ref()
            .map(|proof| proof.header.entries_root.to_hex())
    }
    /// The block's header hash (hex), which the signatures sign.
    async fn block_hash(&self) -> Option<String> {
        self.proof
            .as_ref()
            .map(|proof| proof.header.hash().to_hex())
    }
    /// The validators' signatures over the block gathered so far.
    async fn signatures(&self) -> Option<Vec<BlockSignature>> {
        self.proof.as_ref().map(|proof| {
            proof
                .signatures
                .iter()
                .map(|signature| BlockSignature {
                    signer: signature.signer,
                    signature: signature.signature.to_hex(),
                })
                .collect()
        })
    }
    /// The whole proof as the chain's own API gives it (`GET /v1/entries/{hash}/proof`): the
    /// entry, the block header, the inclusion path and the signatures, for the chain's
    /// auditor library to verify.
    async fn proof(&self) -> Option<Json<EntryProof>> {
        self.proof.clone().map(Json)
    }
}

/// The chain's latest block and how far it is final.
pub struct ChainHead(pub HeadResponse);

#[Object]
impl ChainHead {
    /// The chain's identity: its genesis block's hash (hex).
    async fn chain_id(&self) -> String {
        self.0.chain_id.to_hex()
    }
    /// Height of the last block.
    async fn height(&self) -> u64 {
        self.0.height
    }
    /// The last block's header hash (hex).
    async fn hash(&self) -> String {
        self.0.hash.to_hex()
    }
    /// The highest height up to which every block carries a majority of the members'
    /// signatures: the latest final block.
    async fn final_height(&self) -> Option<u64> {
        self.0.final_height
    }
}

/// The head of the chain this server anchors on; null when it anchors on none.
pub async fn chain_head(ctx: &Context<'_>) -> Result<Option<ChainHead>> {
    match &ctx.data::<ChainView>()?.0 {
        Some(worker) => Ok(Some(ChainHead(
            worker.chain().head().await.map_err(unavailable)?,
        ))),
        None => Ok(None),
    }
}

/// Where a database audit is.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum DatabaseAuditStatus {
    /// Anchoring what the database holds, waiting for its blocks to be final, or checking.
    Running,
    /// Finished: `passed` and `problems` say what it found.
    Succeeded,
    /// Could not be carried out; `failure` says why.
    Failed,
}

/// `medvault audit db` run by the server for an auditor: every record version's leaf and every
/// access-log batch's root recomputed from what PostgreSQL holds, without any key, and looked up
/// in the final blocks of the audited chain. The report names rows by id and holds no health
/// data.
pub struct DatabaseAudit(pub DatabaseAuditJob);

/// One disagreement between the database and the chain.
#[derive(SimpleObject)]
pub struct DatabaseProblem {
    /// What is wrong, as `medvault audit db` names it (`version_modified`, `version_moved`,
    /// `version_deleted`, `version_inserted`, `version_unanchored`, `anchored_version_missing`,
    /// `data_key_missing`, `log_line_edited`, `log_lines_removed`, `log_lines_inserted`,
    /// `log_batch_altered`, `log_batch_missing`, `log_batch_unanchored`).
    kind: String,
    /// The ids and counts it names (record, version, patient, line, batch, ...).
    detail: Json<serde_json::Value>,
}

impl DatabaseAudit {
    fn report(&self) -> Option<&DbAuditReport> {
        self.0.report.as_ref()
    }
}

#[Object]
impl DatabaseAudit {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn status(&self) -> DatabaseAuditStatus {
        match self.0.status {
            AuditJobStatus::Running => DatabaseAuditStatus::Running,
            AuditJobStatus::Succeeded => DatabaseAuditStatus::Succeeded,
            AuditJobStatus::Failed => DatabaseAuditStatus::Failed,
        }
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
    /// Why the audit could not be carried out.
    async fn failure(&self) -> Option<&str> {
        self.0.failure.as_deref()
    }
    /// Whether the database agrees with the chain: finished with no problem. Null until the
    /// audit finished.
    async fn passed(&self) -> Option<bool> {
        self.report().map(|report| report.problems.is_empty())
    }
    /// Record versions whose leaves were recomputed.
    async fn versions_checked(&self) -> Option<u64> {
        self.report().map(|report| report.versions_checked)
    }
    /// Of those, versions of patients erased at their request (unreadable, still anchored).
    async fn erased_versions(&self) -> Option<u64> {
        self.report().map(|report| report.erased_versions)
    }
    /// The patients erased at their request.
    async fn erased_patients(&self) -> Option<Vec<ID>> {
        self.report().map(|report| {
            report
                .erased_patients
                .iter()
                .map(|id| ID(id.to_string()))
                .collect()
        })
    }
    /// Access-log batches whose roots were recomputed.
    async fn log_batches_checked(&self) -> Option<u64> {
        self.report().map(|report| report.log_batches_checked)
    }
    /// Sealed access-log lines checked.
    async fn log_lines_checked(&self) -> Option<u64> {
        self.report().map(|report| report.log_lines_checked)
    }
    /// Lines logged after the audit's snapshot was sealed, not checked.
    async fn log_lines_unsealed(&self) -> Option<u64> {
        self.report().map(|report| report.log_lines_unsealed)
    }
    /// Every disagreement found, in the order found.
    async fn problems(&self) -> Result<Option<Vec<DatabaseProblem>>> {
        let Some(report) = self.report() else {
            return Ok(None);
        };
        let problems = report
            .problems
            .iter()
            .map(|problem| {
                let mut detail = serde_json::to_value(problem)?;
                let kind = detail
                    .as_object_mut()
                    .and_then(|fields| fields.remove("kind"))
                    .and_then(|kind| kind.as_str().map(str::to_owned))
                    .unwrap_or_default();
                Ok(DatabaseProblem {
                    kind,
                    detail: Json(detail),
                })
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()
            .map_err(|error| crate::error::ApiError::internal(&error).to_graphql())?;
        Ok(Some(problems))
    }
}

/// What kind of fact a chain entry anchors.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum FactKind {
    /// A record version's leaf.
    RecordVersion,
    /// A hospital's consent tree root.
    ConsentRoot,
    /// An export's manifest hash.
    ExportManifest,
    /// The root over a batch of access-log lines.
    AccessLogBatch,
    /// The hash of a consent verifying key.
    VerifyingKey,
    /// A change to the chain's member set.
    Governance,
    /// The chain's founding.
    Genesis,
}

impl From<&Entry> for FactKind {
    fn from(entry: &Entry) -> Self {
        match entry {
            Entry::RecordAnchor { .. } => FactKind::RecordVersion,
            Entry::ConsentRoot { .. } => FactKind::ConsentRoot,
            Entry::ExportManifest { .. } => FactKind::ExportManifest,
            Entry::AccessLogBatch { .. } => FactKind::AccessLogBatch,
            Entry::VerifyingKey { .. } => FactKind::VerifyingKey,
            Entry::Governance(_) => FactKind::Governance,
            Entry::Genesis(_) => FactKind::Genesis,
        }
    }
}

/// A fact this server's database queued for the chain, for auditors: its chain entry (hashes
/// and counts, no content) and where it is anchored.
pub struct QueuedFactView(pub QueuedFact);

#[Object(name = "QueuedFact")]
impl QueuedFactView {
    /// The outbox row, in queueing order.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn kind(&self) -> FactKind {
        FactKind::from(&self.0.entry)
    }
    /// The entry as the chain records it (JSON, as the chain's API gives entries).
    async fn entry(&self) -> Json<Entry> {
        Json(self.0.entry.clone())
    }
    /// When the transaction that made the fact true queued it.
    async fn queued_at(&self) -> DateTime<Utc> {
        self.0.queued_at
    }
    /// The height the server recorded it anchored at.
    async fn anchored_height(&self) -> Option<i64> {
        self.0.anchored_height
    }
    /// Why the chain refused the entry by its rules, if it did (it is not submitted again).
    async fn chain_refusal(&self) -> Option<&str> {
        self.0.chain_refusal.as_deref()
    }
    /// Where the chain holds it, with the proof to check it against the chain alone.
    async fn anchoring(&self, ctx: &Context<'_>) -> Result<Anchoring> {
        ChainView::anchoring_of(ctx, self.0.entry.clone()).await
    }
}
