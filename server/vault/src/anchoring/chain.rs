//! The chain the anchoring worker anchors on, and what the vault reads back from it: the head,
//! inclusion proofs and the member set. An enum, not a trait: there are two targets, both known
//! here.

use super::AnchoringError;
use medvault_anchor_chain::api::HeadResponse;
use medvault_anchor_chain::audit::{audit_blocks, audit_sources, AuditedChain, ChainSources};
use medvault_anchor_chain::bytes::Hash32;
use medvault_anchor_chain::client::ChainClient;
use medvault_anchor_chain::embedded::EmbeddedChain;
use medvault_anchor_chain::entry::Entry;
use medvault_anchor_chain::governance::MemberSet;
use medvault_anchor_chain::state::EntryOutcome;
use medvault_anchor_chain::verify::EntryProof;

/// Where anchors go.
pub enum AnchorChain {
    /// The validators of a one-machine chain, in this process.
    Embedded(EmbeddedChain),
    /// The members' validator cluster, through any of its nodes, following the leader.
    Cluster(ChainClient),
}

impl AnchorChain {
    /// Anchors `entries`; one outcome per entry. An entry already on the chain answers with its
    /// first receipt.
    pub(super) async fn submit(
        &self,
        entries: Vec<Entry>,
    ) -> Result<Vec<EntryOutcome>, AnchoringError> {
        Ok(match self {
            AnchorChain::Embedded(chain) => chain.submit(entries).await?,
            AnchorChain::Cluster(client) => client.submit(entries).await?,
        })
    }

    /// The chain's identity (its genesis hash), head and final height.
    pub async fn head(&self) -> Result<HeadResponse, AnchoringError> {
        Ok(match self {
            AnchorChain::Embedded(chain) => chain.head()?,
            AnchorChain::Cluster(client) => client.head().await?,
        })
    }

    /// The height of the chain's last block.
    pub async fn head_height(&self) -> Result<u64, AnchoringError> {
        Ok(self.head().await?.height)
    }

    /// The inclusion proof of an anchored entry, with its block's header and signatures;
    /// `None` while the entry is not on the chain.
    pub async fn proof(&self, entry_hash: &Hash32) -> Result<Option<EntryProof>, AnchoringError> {
        Ok(match self {
            AnchorChain::Embedded(chain) => chain.inclusion_proof(entry_hash),
            AnchorChain::Cluster(client) => client.proof(entry_hash).await?,
        })
    }

    /// The member set in force for the next block: the organizations the chain has admitted.
    pub async fn members(&self) -> Result<MemberSet, AnchoringError> {
        Ok(match self {
            AnchorChain::Embedded(chain) => chain.members()?,
            AnchorChain::Cluster(client) => client.members().await?,
        })
    }

    /// The chain as an auditor checks it: every block of every validator this server reaches
    /// (each embedded validator, or each node of the cluster), audited from the genesis
    /// `trusted` and compared with each other. Blocks still short of signatures are allowed;
    /// their entries are not final.
    pub async fn audited(&self, trusted: Hash32) -> Result<AuditedChain, AnchoringError> {
        Ok(match self {
            AnchorChain::Embedded(chain) => audit_blocks(chain.blocks_of_each()?, Some(trusted))?,
            AnchorChain::Cluster(client) => {
                audit_sources(&ChainSources {
                    nodes: client.nodes().to_vec(),
                    genesis_hash: Some(trusted),
                    allow_pending: true,
                    ..ChainSources::default()
                })
                .await?
            }
        })
    }

    /// The embedded validators, for reading their blocks in process.
    pub fn embedded(&self) -> Option<&EmbeddedChain> {
        match self {
            AnchorChain::Embedded(chain) => Some(chain),
            AnchorChain::Cluster(_) => None,
        }
    }

    /// Stops the embedded validator; a cluster needs nothing stopped.
    pub(crate) async fn shutdown(&self) {
        if let AnchorChain::Embedded(chain) = self {
            chain.shutdown().await;
        }
    }
}
