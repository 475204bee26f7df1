//! Where facts are anchored, as the API shows it: a fact's [`Anchoring`] (pending, or its block,
//! leaf index, RFC 9162 inclusion path and the block's signatures, with the chain's own proof
//! document) and the chain's head. Enough for a client to check a record version, an export or
//! a consent root against the chain alone, trusting nothing this server says.

use async_graphql::{Context, Enum, Json, Object, Result, SimpleObject};
use medvault_anchor_chain::api::HeadResponse;
use medvault_anchor_chain::bytes::Hash32;
use medvault_anchor_chain::entry::Entry;
use medvault_anchor_chain::verify::EntryProof;
use medvault_vault::anchoring::{AnchoringError, AnchoringWorker};

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
    crate::error::ApiError::Unavailable("the anchor chain cannot be reached; try again shortly")
        .to_graphql()
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
