//! The anchor outbox: chain entries waiting to be anchored, in PostgreSQL.
//!
//! A row is added by the statement (or transaction) that makes its fact true, so that a fact is
//! never stored without its anchor being queued: a record version's leaf in the statement that
//! writes the version, an export's manifest hash in the transaction that marks the job done.
//! Each row holds its [`Entry`] in the chain's one canonical encoding
//! ([`Entry::canonical_bytes`]), so every kind of entry the chain knows goes through the same
//! column; [`encode`] is the only way one is written and [`lock_pending`] the only way one is read
//! for anchoring. Auditors list the rows, entries and standing, with [`Vault::queued_facts`].

use super::AnchoringError;
use crate::auth::Actor;
use crate::domain::Role;
use crate::error::{VaultError, VaultResult};
use crate::policy::require_role;
use crate::{Page, PageRequest, Vault};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use medvault_anchor_chain::entry::Entry;

/// The outbox column value for `entry`.
pub(crate) fn encode(entry: &Entry) -> Vec<u8> {
    entry.canonical_bytes()
}

/// The outbox column value for a record version's leaf.
pub(crate) fn record_version(leaf: &[u8; 32]) -> Vec<u8> {
    encode(&super::leaf::record_version_entry(leaf))
}

/// Queues one entry on its own (inside the caller's transaction, if it is one); returns its
/// outbox id.
pub(crate) async fn queue(
    client: &impl GenericClient,
    entry: &Entry,
) -> Result<i64, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "INSERT INTO anchor_outbox (entry) VALUES ($1) RETURNING id",
            &[&encode(entry)],
        )
        .await?
        .get(0))
}

/// Up to `limit` entries neither anchored nor refused yet, oldest first, with their outbox ids,
/// locked until the caller's transaction ends; rows another transaction holds are skipped.
pub(super) async fn lock_pending(
    client: &impl GenericClient,
    limit: i64,
) -> Result<Vec<(i64, Entry)>, AnchoringError> {
    let rows = client
        .query(
            &client
                .prepare_cached(
                    "SELECT id, entry FROM anchor_outbox
                     WHERE anchored_height IS NULL AND chain_refusal IS NULL
                     ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                )
                .await?,
            &[&limit],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let id: i64 = row.get(0);
            let entry = Entry::from_canonical_bytes(row.get(1))
                .map_err(|_| AnchoringError::MalformedEntry(id))?;
            Ok((id, entry))
        })
        .collect()
}

/// Records the height each of `ids` was anchored at.
pub(super) async fn mark_anchored(
    client: &impl GenericClient,
    ids: &[i64],
    heights: &[i64],
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            &client
                .prepare_cached(
                    "UPDATE anchor_outbox o SET anchored_height = a.height
                     FROM unnest($1::bigint[], $2::bigint[]) AS a(id, height) WHERE o.id = a.id",
                )
                .await?,
            &[&ids, &heights],
        )
        .await?;
    Ok(())
}

/// Records why the chain refused each of `ids`, so that they are not submitted again and an
/// operator can see them.
pub(super) async fn mark_refused(
    client: &impl GenericClient,
    ids: &[i64],
    reasons: &[String],
) -> Result<(), tokio_postgres::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    client
        .execute(
            "UPDATE anchor_outbox o SET chain_refusal = a.reason
             FROM unnest($1::bigint[], $2::text[]) AS a(id, reason) WHERE o.id = a.id",
            &[&ids, &reasons],
        )
        .await?;
    Ok(())
}

/// The highest chain height anything of this database was anchored at (0 before the first).
pub(crate) async fn latest_anchored_height(
    client: &impl GenericClient,
) -> Result<i64, tokio_postgres::Error> {
    Ok(client
        .query_one(
            "SELECT COALESCE(max(anchored_height), 0) FROM anchor_outbox",
            &[],
        )
        .await?
        .get(0))
}

/// A fact this database queued for the chain, as an auditor sees it: the chain entry (hashes
/// and counts, never content) and where it stands.
#[derive(Clone, Debug)]
pub struct QueuedFact {
    /// The outbox row.
    pub id: i64,
    /// The entry, as it goes to the chain.
    pub entry: Entry,
    /// When the transaction that made it true queued it.
    pub queued_at: DateTime<Utc>,
    /// The height the worker recorded it anchored at.
    pub anchored_height: Option<i64>,
    /// Why the chain refused it, if it did.
    pub chain_refusal: Option<String>,
}

impl Vault {
    /// For auditors: every fact this database queued for the chain, in the order queued.
    pub async fn queued_facts(
        &self,
        auditor: &Actor,
        page: PageRequest<i64>,
    ) -> VaultResult<Page<QueuedFact>> {
        require_role(auditor, Role::Auditor)?;
        let client = self.pool().get().await?;
        let rows = client
            .query(
                "SELECT id, entry, created_at, anchored_height, chain_refusal FROM anchor_outbox
                 WHERE ($1::bigint IS NULL OR id > $1) ORDER BY id LIMIT $2",
                &[&page.after, &(page.first + 1)],
            )
            .await?;
        let items = rows
            .iter()
            .map(|row| {
                let id: i64 = row.get(0);
                Ok(QueuedFact {
                    id,
                    entry: Entry::from_canonical_bytes(row.get(1))
                        .map_err(|_| VaultError::internal(AnchoringError::MalformedEntry(id)))?,
                    queued_at: row.get(2),
                    anchored_height: row.get(3),
                    chain_refusal: row.get(4),
                })
            })
            .collect::<VaultResult<_>>()?;
        Ok(Page::from_overfetched(items, page.first))
    }
}
