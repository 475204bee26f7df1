//! The anchoring worker: drains the outbox onto the anchor chain and records the height each
//! entry was anchored at, so that every record version written and every export made can be
//! proven unaltered from the chain alone.

use deadpool_postgres::Pool;
use medvault_anchor_chain::embedded::EmbeddedChain;
use medvault_anchor_chain::state::EntryOutcome;
use medvault_anchor_chain::types::{Entry, Hash32};
use std::sync::Arc;
use std::time::Duration;

/// Leaves anchored per chain submission.
const BATCH: i64 = 4096;

/// Anchoring failed; the leaves stay in the outbox and are tried again.
#[derive(Debug, thiserror::Error)]
pub enum AnchoringError {
    /// Reading or updating the outbox failed.
    #[error("anchor outbox: {0}")]
    Database(#[from] tokio_postgres::Error),
    /// No connection could be had.
    #[error("anchor outbox: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The chain refused or failed the submission.
    #[error("anchor chain: {0}")]
    Chain(#[from] medvault_anchor_chain::embedded::EmbeddedError),
    /// An outbox row does not hold a 32-byte leaf of a known kind.
    #[error("anchor outbox row {0} holds no 32-byte leaf of a known kind")]
    MalformedLeaf(i64),
}

/// What an outbox row anchors, by its `kind` column.
pub mod outbox_kind {
    /// A record version's leaf (MISSION.md decision 3).
    pub const RECORD_VERSION: &str = "record_version";
    /// The SHA3-256 of an export's manifest (decision 7).
    pub const EXPORT_MANIFEST: &str = "export_manifest";
}

/// The chain entry an outbox row stands for.
fn outbox_entry(id: i64, kind: &str, leaf: &[u8]) -> Result<Entry, AnchoringError> {
    let hash = Hash32(
        leaf.try_into()
            .map_err(|_| AnchoringError::MalformedLeaf(id))?,
    );
    match kind {
        outbox_kind::RECORD_VERSION => Ok(Entry::RecordAnchor { leaf: hash }),
        outbox_kind::EXPORT_MANIFEST => Ok(Entry::ExportManifest {
            manifest_hash: hash,
        }),
        _ => Err(AnchoringError::MalformedLeaf(id)),
    }
}

/// Anchors up to one batch of pending entries; returns how many were anchored.
pub async fn anchor_pending(pool: &Pool, chain: &EmbeddedChain) -> Result<usize, AnchoringError> {
    let client = pool.get().await?;
    let pending = client
        .query(
            &client
                .prepare_cached(
                    "SELECT id, kind, leaf FROM anchor_outbox WHERE anchored_height IS NULL ORDER BY id LIMIT $1",
                )
                .await?,
            &[&BATCH],
        )
        .await?;
    if pending.is_empty() {
        return Ok(0);
    }
    let mut ids = Vec::with_capacity(pending.len());
    let mut entries = Vec::with_capacity(pending.len());
    for row in &pending {
        let id: i64 = row.get(0);
        entries.push(outbox_entry(id, row.get(1), row.get(2))?);
        ids.push(id);
    }
    let outcomes = chain.submit(entries).await?;
    let (mut anchored_ids, mut heights) = (Vec::new(), Vec::new());
    for (id, outcome) in ids.into_iter().zip(outcomes) {
        match outcome {
            EntryOutcome::Anchored(receipt) => {
                anchored_ids.push(id);
                heights.push(receipt.height as i64);
            }
            EntryOutcome::Rejected(reason) => {
                tracing::error!(outbox_id = id, %reason, "the chain refused a leaf")
            }
        }
    }
    client
        .execute(
            &client
                .prepare_cached(
                    "UPDATE anchor_outbox o SET anchored_height = a.height
                     FROM unnest($1::bigint[], $2::bigint[]) AS a(id, height) WHERE o.id = a.id",
                )
                .await?,
            &[&anchored_ids, &heights],
        )
        .await?;
    Ok(anchored_ids.len())
}

/// Runs [`anchor_pending`] until the process ends: at once while there is a backlog, every
/// `idle` otherwise. Failures are logged and retried.
pub fn spawn(pool: Pool, chain: Arc<EmbeddedChain>, idle: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match anchor_pending(&pool, &chain).await {
                Ok(anchored) if anchored > 0 => continue,
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "anchoring failed; will retry"),
            }
            tokio::time::sleep(idle).await;
        }
    })
}
