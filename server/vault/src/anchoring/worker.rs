//! The anchoring worker: drains the outbox onto the anchor chain and records the height each
//! entry was anchored at, so that every record version written and every export made can be
//! proven unaltered from the chain alone.

use super::{chain_check, log_batches, outbox, AnchorChain};
use deadpool_postgres::Pool;
use medvault_anchor_chain::client::ClientError;
use medvault_anchor_chain::embedded::EmbeddedError;
use medvault_anchor_chain::state::EntryOutcome;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

/// Leaves anchored per chain submission.
const BATCH: i64 = 4096;

/// Anchoring failed; the leaves stay in the outbox and are tried again.
#[derive(Debug, thiserror::Error)]
pub enum AnchoringError {
    /// Reading or updating the outbox failed.
    #[error("anchor outbox")]
    Database(#[from] tokio_postgres::Error),
    /// No connection could be had.
    #[error("anchor outbox")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The embedded validator refused or failed the submission.
    #[error("embedded anchor chain")]
    Embedded(#[from] EmbeddedError),
    /// No node of the validator cluster could be reached, or the cluster failed the submission.
    #[error("anchor chain cluster")]
    Cluster(#[from] ClientError),
    /// The configured chain is not the one the database anchored on.
    #[error(transparent)]
    Mismatch(#[from] super::ChainMismatch),
    /// The chain's blocks did not pass the auditor's checks, or could not be read for them.
    #[error("auditing the anchor chain")]
    Audit(#[from] medvault_anchor_chain::audit::SourceAuditError),
    /// An outbox row does not hold an entry in the chain's canonical encoding.
    #[error("anchor outbox row {0} holds no entry in the chain's canonical encoding")]
    MalformedEntry(i64),
    /// A pass of the anchoring worker failed (it retries on its own).
    #[error("anchoring worker")]
    Pass(#[source] Arc<AnchoringError>),
    /// The anchoring worker was stopped while someone waited on it.
    #[error("the anchoring worker has stopped")]
    Stopped,
}

/// Anchors up to one batch of pending entries; returns how many were anchored or refused. Only
/// the worker calls it, so that one place decides when the outbox is drained.
///
/// The batch's rows stay locked (`FOR UPDATE SKIP LOCKED`) from reading to recording, so that
/// the workers of several servers over one database share the outbox instead of submitting the
/// same rows. A server that dies after submitting leaves its rows pending; they are submitted
/// again and the chain, which keeps every entry once, answers with the receipts of the first
/// submission: an entry is anchored exactly once.
async fn anchor_pending(pool: &Pool, chain: &AnchorChain) -> Result<usize, AnchoringError> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    let pending = outbox::lock_pending(&transaction, BATCH).await?;
    if pending.is_empty() {
        return Ok(0);
    }
    let (ids, entries): (Vec<i64>, Vec<_>) = pending.into_iter().unzip();
    let outcomes = chain.submit(entries).await?;
    let (mut anchored_ids, mut heights) = (Vec::new(), Vec::new());
    let (mut refused_ids, mut reasons) = (Vec::new(), Vec::new());
    for (id, outcome) in ids.into_iter().zip(outcomes) {
        match outcome {
            EntryOutcome::Anchored(receipt) => {
                anchored_ids.push(id);
                heights.push(receipt.height as i64);
            }
            EntryOutcome::Rejected(reason) => {
                tracing::error!(outbox_id = id, %reason, "the chain refused an entry");
                refused_ids.push(id);
                reasons.push(reason);
            }
        }
    }
    outbox::mark_anchored(&transaction, &anchored_ids, &heights).await?;
    outbox::mark_refused(&transaction, &refused_ids, &reasons).await?;
    transaction.commit().await?;
    Ok(anchored_ids.len() + refused_ids.len())
}

/// How long the worker waits between passes that found nothing to anchor: also how long a new
/// consent root can wait before a doctor may prove against it.
const IDLE: Duration = Duration::from_millis(200);

/// The longest wait between passes while the chain cannot be reached: failures double the wait
/// from [`IDLE`] up to this, so that an unreachable chain costs little and a returning one is
/// used within seconds.
const MOST_BACKOFF: Duration = Duration::from_secs(5);

/// What the worker last did, for callers waiting on it.
#[derive(Clone, Default)]
struct Passes {
    /// Passes begun so far.
    started: u64,
    /// The last pass finished, and how it ended.
    finished: Option<(u64, PassOutcome)>,
}

#[derive(Clone)]
enum PassOutcome {
    /// The pass found nothing left to anchor.
    Drained,
    /// The pass anchored entries; more may be waiting.
    Anchored,
    /// The pass failed; the worker retries after its idle wait.
    Failed(Arc<AnchoringError>),
}

/// The anchoring worker on its chain: drains the outbox in the background, at once while there
/// is a backlog and every second otherwise, logging and retrying failures. Cloning gives another
/// handle to the same worker, so that the application can stop it while tests wait on it.
#[derive(Clone)]
pub struct AnchoringWorker {
    chain: Arc<AnchorChain>,
    wake: Arc<Notify>,
    seal_now: Arc<AtomicBool>,
    passes: watch::Receiver<Passes>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl AnchoringWorker {
    /// Starts draining the outbox of `pool` onto `chain`. Crate-private: only
    /// `Services::start` starts the worker.
    /// `checked` says whether [`chain_check::check`] has passed on this chain; if not, the
    /// worker runs it before its first submission and anchors nothing until it passes.
    pub(crate) fn start(pool: Pool, chain: Arc<AnchorChain>, checked: bool) -> Self {
        let wake = Arc::new(Notify::new());
        let (report, passes) = watch::channel(Passes::default());
        let seal_now = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(drain_forever(
            pool,
            chain.clone(),
            checked,
            wake.clone(),
            seal_now.clone(),
            report,
        ));
        AnchoringWorker {
            chain,
            wake,
            seal_now,
            passes,
            task: Arc::new(Mutex::new(Some(task))),
        }
    }

    /// The chain the worker anchors on (for proofs and blocks).
    pub fn chain(&self) -> &AnchorChain {
        &self.chain
    }

    /// Wakes the worker, has it seal the access log's unsealed lines at once, and waits for a
    /// pass begun after this call to find the outbox empty: everything queued and every line
    /// logged before the call is then anchored (or refused by the chain and logged), unless
    /// another server's worker holds it. A failed pass is returned rather than waited out.
    pub async fn wait_until_anchored(&self) -> Result<(), AnchoringError> {
        let mut passes = self.passes.clone();
        let begun_before = passes.borrow_and_update().started;
        self.seal_now.store(true, Ordering::Release);
        self.wake.notify_one();
        loop {
            if let Some((pass, outcome)) = passes.borrow_and_update().finished.clone() {
                if pass > begun_before {
                    match outcome {
                        PassOutcome::Drained => return Ok(()),
                        PassOutcome::Failed(error) => return Err(AnchoringError::Pass(error)),
                        PassOutcome::Anchored => {}
                    }
                }
            }
            passes
                .changed()
                .await
                .map_err(|_| AnchoringError::Stopped)?;
        }
    }

    /// Stops the worker and then the chain. Later calls, from any handle, do nothing.
    pub async fn stop(&self) {
        let task = match self.task.lock() {
            Ok(mut task) => task.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
            self.chain.shutdown().await;
        }
    }
}

/// The worker's loop: a pass at once while the last one anchored something, otherwise after
/// [`IDLE`] (doubled after each failure in a row, up to [`MOST_BACKOFF`]) or as soon as someone
/// waits for the outbox to drain.
async fn drain_forever(
    pool: Pool,
    chain: Arc<AnchorChain>,
    mut checked: bool,
    wake: Arc<Notify>,
    seal_now: Arc<AtomicBool>,
    report: watch::Sender<Passes>,
) {
    let mut failures_in_a_row = 0u32;
    loop {
        let mut pass = 0;
        report.send_modify(|passes| {
            passes.started += 1;
            pass = passes.started;
        });
        let anchored = async {
            if !checked {
                chain_check::check(&pool.get().await?, &chain).await?;
                checked = true;
            }
            let sealed =
                log_batches::seal_due(&pool, seal_now.swap(false, Ordering::AcqRel)).await?;
            Ok::<_, AnchoringError>(sealed + anchor_pending(&pool, &chain).await?)
        };
        let outcome = match anchored.await {
            Ok(0) => PassOutcome::Drained,
            Ok(_) => PassOutcome::Anchored,
            Err(error) => PassOutcome::Failed(Arc::new(error)),
        };
        let wait = match &outcome {
            PassOutcome::Anchored => None,
            PassOutcome::Drained => Some(IDLE),
            PassOutcome::Failed(error) => {
                failures_in_a_row += 1;
                let wait = IDLE
                    .saturating_mul(1 << failures_in_a_row.min(8))
                    .min(MOST_BACKOFF);
                tracing::warn!(
                    error = %crate::error::Causes(error.as_ref()),
                    failures_in_a_row,
                    retry_in_ms = wait.as_millis() as u64,
                    "anchoring failed; the entries stay in the outbox"
                );
                Some(wait)
            }
        };
        if !matches!(outcome, PassOutcome::Failed(_)) {
            if failures_in_a_row > 0 {
                tracing::info!(failures_in_a_row, "anchoring resumed");
            }
            failures_in_a_row = 0;
        }
        report.send_modify(|passes| passes.finished = Some((pass, outcome)));
        if let Some(wait) = wait {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = wake.notified() => {}
            }
        }
    }
}
