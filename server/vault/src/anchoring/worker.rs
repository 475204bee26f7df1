//! The anchoring worker: drains the outbox onto the anchor chain and records the height each
//! entry was anchored at, so that every record version written and every export made can be
//! proven unaltered from the chain alone.

use super::outbox;
use deadpool_postgres::Pool;
use medvault_anchor_chain::client::{ChainClient, ClientError};
use medvault_anchor_chain::embedded::{EmbeddedChain, EmbeddedError};
use medvault_anchor_chain::entry::Entry;
use medvault_anchor_chain::state::EntryOutcome;
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
    /// The validator cluster could not be reached or failed the submission.
    #[error("anchor chain cluster")]
    Cluster(#[from] ClientError),
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

/// The chain the worker anchors on. An enum, not a trait: there are two targets, both known
/// here.
pub enum AnchorChain {
    /// A single validator in this process.
    Embedded(EmbeddedChain),
    /// The members' validator cluster, through one of its nodes.
    Cluster(ChainClient),
}

impl AnchorChain {
    async fn submit(&self, entries: Vec<Entry>) -> Result<Vec<EntryOutcome>, AnchoringError> {
        Ok(match self {
            AnchorChain::Embedded(chain) => chain.submit(entries).await?,
            AnchorChain::Cluster(client) => client.submit(entries).await?,
        })
    }

    /// The height of the chain's last block.
    pub async fn head_height(&self) -> Result<u64, AnchoringError> {
        Ok(match self {
            AnchorChain::Embedded(chain) => chain.head_height(),
            AnchorChain::Cluster(client) => client.head().await?.height,
        })
    }

    /// The embedded validator, for reading its blocks and proofs in process.
    pub fn embedded(&self) -> Option<&EmbeddedChain> {
        match self {
            AnchorChain::Embedded(chain) => Some(chain),
            AnchorChain::Cluster(_) => None,
        }
    }

    async fn shutdown(&self) {
        if let AnchorChain::Embedded(chain) = self {
            chain.shutdown().await;
        }
    }
}

/// Anchors up to one batch of pending entries; returns how many were anchored. Only the worker
/// calls it, so that one place decides when the outbox is drained.
async fn anchor_pending(pool: &Pool, chain: &AnchorChain) -> Result<usize, AnchoringError> {
    let client = pool.get().await?;
    let pending = outbox::pending(&client, BATCH).await?;
    if pending.is_empty() {
        return Ok(0);
    }
    let (ids, entries): (Vec<i64>, Vec<_>) = pending.into_iter().unzip();
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
    outbox::mark_anchored(&client, &anchored_ids, &heights).await?;
    Ok(anchored_ids.len())
}

/// How long the worker waits between passes that found nothing to anchor: also how long a new
/// consent root can wait before a doctor may prove against it.
const IDLE: Duration = Duration::from_millis(200);

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
    passes: watch::Receiver<Passes>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl AnchoringWorker {
    /// Starts draining the outbox of `pool` onto `chain`. Crate-private: only
    /// `Services::start` starts the worker.
    pub(crate) fn start(pool: Pool, chain: AnchorChain) -> Self {
        let chain = Arc::new(chain);
        let wake = Arc::new(Notify::new());
        let (report, passes) = watch::channel(Passes::default());
        let task = tokio::spawn(drain_forever(pool, chain.clone(), wake.clone(), report));
        AnchoringWorker {
            chain,
            wake,
            passes,
            task: Arc::new(Mutex::new(Some(task))),
        }
    }

    /// The chain the worker anchors on (for proofs and blocks).
    pub fn chain(&self) -> &AnchorChain {
        &self.chain
    }

    /// Wakes the worker and waits for a pass begun after this call to find the outbox empty:
    /// everything queued before the call is then anchored (or refused by the chain and logged).
    /// A failed pass is returned rather than waited out.
    pub async fn wait_until_anchored(&self) -> Result<(), AnchoringError> {
        let mut passes = self.passes.clone();
        let begun_before = passes.borrow_and_update().started;
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
/// [`IDLE`] or as soon as someone waits for the outbox to drain.
async fn drain_forever(
    pool: Pool,
    chain: Arc<AnchorChain>,
    wake: Arc<Notify>,
    report: watch::Sender<Passes>,
) {
    loop {
        let mut pass = 0;
        report.send_modify(|passes| {
            passes.started += 1;
            pass = passes.started;
        });
        let outcome = match anchor_pending(&pool, &chain).await {
            Ok(0) => PassOutcome::Drained,
            Ok(_) => PassOutcome::Anchored,
            Err(error) => {
                tracing::warn!(%error, "anchoring failed; will retry");
                PassOutcome::Failed(Arc::new(error))
            }
        };
        let again_at_once = matches!(outcome, PassOutcome::Anchored);
        report.send_modify(|passes| passes.finished = Some((pass, outcome)));
        if !again_at_once {
            tokio::select! {
                () = tokio::time::sleep(IDLE) => {}
                () = wake.notified() => {}
            }
        }
    }
}
