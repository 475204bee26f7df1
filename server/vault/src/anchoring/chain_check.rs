//! Whether the chain a server is configured for is the one its database anchored on: the same
//! genesis, at least as high as the database says it anchored, and holding the last entry
//! recorded as anchored at the recorded height. A server on the wrong chain would record
//! heights that prove nothing, so it refuses to start (or, when the chain cannot be reached at
//! start, to anchor) until it is given the right one.

use super::{AnchorChain, AnchoringError};
use deadpool_postgres::GenericClient;
use medvault_anchor_chain::bytes::Hash32;
use medvault_anchor_chain::entry::Entry;

/// How the database and the configured chain disagree.
#[derive(Debug, thiserror::Error)]
pub enum ChainMismatch {
    /// The chain has another genesis than the one this database anchored on.
    #[error(
        "this database anchors on the chain whose genesis is {recorded}, but the configured chain's \
         genesis is {configured}: start the server with the chain this database was anchored on \
         (--chain-dir or --chain-node)"
    )]
    OtherChain {
        /// The genesis hash the database recorded.
        recorded: Hash32,
        /// The configured chain's genesis hash.
        configured: Hash32,
    },
    /// The chain ends below a height the database recorded an anchor at.
    #[error(
        "this database recorded anchors up to height {recorded}, but the configured chain ends at \
         height {head}: the chain is behind the database (a validator restored from an old copy, \
         or another chain)"
    )]
    Behind {
        /// The highest height the database recorded.
        recorded: u64,
        /// The chain's head height.
        head: u64,
    },
    /// The chain does not hold the last anchored entry where the database says it is.
    #[error(
        "outbox entry {outbox_id} is recorded as anchored at height {recorded}, but the configured \
         chain {found}"
    )]
    EntryElsewhere {
        /// The outbox row.
        outbox_id: i64,
        /// The height the database recorded.
        recorded: u64,
        /// What the chain holds instead.
        found: String,
    },
}

/// Checks the configured chain against what the database recorded, and records the chain's
/// identity the first time it passes.
pub(crate) async fn check(
    client: &impl GenericClient,
    chain: &AnchorChain,
) -> Result<(), AnchoringError> {
    let head = chain.head().await?;
    let recorded = client
        .query_opt("SELECT chain_id FROM anchor_chain", &[])
        .await?
        .map(|row| row.get::<_, Vec<u8>>(0));
    if let Some(recorded) = &recorded {
        same_chain(recorded, head.chain_id)?;
    }
    let last_anchored = client
        .query_opt(
            "SELECT id, entry, anchored_height FROM anchor_outbox
             WHERE anchored_height IS NOT NULL ORDER BY anchored_height DESC, id DESC LIMIT 1",
            &[],
        )
        .await?;
    if let Some(row) = last_anchored {
        let outbox_id: i64 = row.get(0);
        let recorded_height = row.get::<_, i64>(2) as u64;
        if recorded_height > head.height {
            return Err(ChainMismatch::Behind {
                recorded: recorded_height,
                head: head.height,
            }
            .into());
        }
        let entry = Entry::from_canonical_bytes(row.get(1))
            .map_err(|_| AnchoringError::MalformedEntry(outbox_id))?;
        let found = match chain.proof(&entry.hash()).await? {
            Some(proof) if proof.header.height == recorded_height => None,
            Some(proof) => Some(format!("holds it at height {}", proof.header.height)),
            None => Some("does not hold it".to_owned()),
        };
        if let Some(found) = found {
            return Err(ChainMismatch::EntryElsewhere {
                outbox_id,
                recorded: recorded_height,
                found,
            }
            .into());
        }
    }
    if recorded.is_none() {
        let kept: Vec<u8> = client
            .query_one(
                "INSERT INTO anchor_chain (chain_id) VALUES ($1)
                 ON CONFLICT (only_row) DO UPDATE SET only_row = anchor_chain.only_row
                 RETURNING chain_id",
                &[&head.chain_id.0.as_slice()],
            )
            .await?
            .get(0);
        same_chain(&kept, head.chain_id)?;
    }
    Ok(())
}

fn same_chain(recorded: &[u8], configured: Hash32) -> Result<(), ChainMismatch> {
    if recorded == configured.0.as_slice() {
        return Ok(());
    }
    Err(ChainMismatch::OtherChain {
        recorded: Hash32(recorded.try_into().unwrap_or_default()),
        configured,
    })
}
