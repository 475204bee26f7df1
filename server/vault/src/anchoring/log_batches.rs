//! Sealing the access log into anchored batches, so that no line can be changed, removed or
//! inserted unseen once sealed: the lines not yet in a batch, oldest first, go under one RFC 9162
//! Merkle root whose first leaf is the batch's header ([`leaf::access_log_batch_header`]), and the
//! root is queued as an `AccessLogBatch` entry in the transaction that seals them.

use super::{leaf, outbox, AnchoringError};
use deadpool_postgres::Pool;
use medvault_anchor_chain::bytes::Hash32;
use medvault_anchor_chain::entry::Entry;
use medvault_anchor_chain::merkle;

/// Most lines under one batch.
pub const MOST_LINES: i64 = 10_000;

/// A run of unsealed lines is sealed once its oldest line is this old (or it holds
/// [`MOST_LINES`]): how long a line can be changed unseen.
pub const SEAL_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

/// The advisory lock key sealing holds, so that one server seals at a time.
const SEALING_LOCK: i64 = 0x6d76_6c6f_6773_6561; // "mvlogsea"

/// The root of a batch over its header and its lines' leaves, in line order.
pub fn batch_root(number: i64, previous_root: &[u8; 32], line_leaves: &[[u8; 32]]) -> [u8; 32] {
    let leaves: Vec<Hash32> = std::iter::once(leaf::access_log_batch_header(number, previous_root))
        .chain(line_leaves.iter().copied())
        .map(|data| merkle::leaf_hash(&data))
        .collect();
    merkle::root(&leaves).0
}

/// The chain entry anchoring a batch.
pub fn batch_entry(root: &[u8; 32], line_count: usize) -> Entry {
    Entry::AccessLogBatch {
        root: Hash32(*root),
        count: line_count as u64,
    }
}

/// Seals one batch of unsealed lines if it is due (its oldest line older than [`SEAL_AFTER`],
/// [`MOST_LINES`] waiting, or `now` set); returns how many lines it sealed.
pub(super) async fn seal_due(pool: &Pool, now: bool) -> Result<usize, AnchoringError> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    let locked: bool = transaction
        .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&SEALING_LOCK])
        .await?
        .get(0);
    if !locked {
        return Ok(0);
    }
    let due: bool = transaction
        .query_one(
            &transaction
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM access_log WHERE batch_number IS NULL
                         AND ($1::boolean OR at < now() - $2::float8 * interval '1 millisecond')
                         ORDER BY id LIMIT 1)
                     OR EXISTS (SELECT 1 FROM access_log WHERE batch_number IS NULL
                         ORDER BY id OFFSET $3::bigint - 1 LIMIT 1)",
                )
                .await?,
            &[&now, &(SEAL_AFTER.as_millis() as f64), &MOST_LINES],
        )
        .await?
        .get(0);
    if !due {
        return Ok(0);
    }
    let rows = transaction
        .query(
            &format!(
                "SELECT {} FROM access_log WHERE batch_number IS NULL ORDER BY id LIMIT $1
                 FOR UPDATE",
                leaf::LOGGED_LINE_COLUMNS
            ),
            &[&MOST_LINES],
        )
        .await?;
    let lines: Vec<leaf::LoggedLine> = rows.iter().map(leaf::LoggedLine::from_row).collect();
    let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
        return Ok(0);
    };
    let previous = transaction
        .query_opt(
            "SELECT number, root FROM access_log_batches ORDER BY number DESC LIMIT 1",
            &[],
        )
        .await?;
    let (number, previous_root) = match previous {
        Some(row) => {
            let root: Vec<u8> = row.get(1);
            (
                row.get::<_, i64>(0) + 1,
                root.as_slice().try_into().unwrap_or([0; 32]),
            )
        }
        None => (1, [0; 32]),
    };
    let line_leaves: Vec<[u8; 32]> = lines.iter().map(leaf::LoggedLine::leaf).collect();
    let root = batch_root(number, &previous_root, &line_leaves);
    let outbox_id = outbox::queue(&transaction, &batch_entry(&root, lines.len())).await?;
    transaction
        .execute(
            "INSERT INTO access_log_batches
                 (number, root, line_count, first_line, last_line, anchor_outbox_id)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &number,
                &root.as_slice(),
                &(lines.len() as i32),
                &first.id,
                &last.id,
                &outbox_id,
            ],
        )
        .await?;
    let ids: Vec<i64> = lines.iter().map(|line| line.id).collect();
    let leaves: Vec<&[u8]> = line_leaves.iter().map(|leaf| leaf.as_slice()).collect();
    transaction
        .execute(
            "UPDATE access_log l SET batch_number = $1, sealed_leaf = s.leaf
             FROM unnest($2::bigint[], $3::bytea[]) AS s(id, leaf) WHERE l.id = s.id",
            &[&number, &ids, &leaves],
        )
        .await?;
    transaction.commit().await?;
    Ok(lines.len())
}
