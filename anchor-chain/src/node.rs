//! A running validator: its Raft node and the three tasks around it. The batcher turns many
//! submissions into one proposal (group commit: one log append and one chain-file sync for the
//! lot); the signer signs every block this validator applies and hands the signature to the
//! leader; the membership task makes the Raft voter set follow the chain's member set.

use crate::block::ValidatorKey;
use crate::consensus::{raft_config, ChainRaft, HttpNetwork, TypeConfig};
use crate::entry::{Entry, GenesisSpec, MemberId};
use crate::paths::SIGNATURES_PATH;
use crate::state::{ChainState, EntryOutcome, HeightSignature, Proposal};
use crate::storage::{ChainStore, LogStore, OpenError, CHAIN_FILE, LOG_FILE};
use openraft::error::{ClientWriteError, RaftError};
use openraft::raft::ClientWriteResponse;
use openraft::BasicNode;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot, watch};

/// Most entries sealed into one block.
pub const MAX_BLOCK_ENTRIES: usize = 4096;
/// Submissions queued before new ones are turned away as overload.
const SUBMISSION_QUEUE: usize = 4096;
/// A signature not yet recorded is sent again after this long.
const SIGNATURE_RESEND: Duration = Duration::from_secs(2);
/// How long signatures wait for entries to ride with before they are proposed alone. Under
/// load they always find some, which spares each block a second, signature-only round of
/// consensus; when the chain is idle this is the delay they add to finality.
const SIGNATURE_IDLE: Duration = Duration::from_millis(20);

/// How a validator is set up.
pub struct ValidatorConfig {
    /// Where the Raft log and the chain file live.
    pub data_dir: PathBuf,
    /// This validator's member id.
    pub member_id: MemberId,
    /// Its signing key; must match the public key the chain records for `member_id`.
    pub key: ValidatorKey,
    /// The chain's genesis.
    pub genesis: GenesisSpec,
}

/// Why a validator cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory cannot be created.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A store cannot be opened.
    #[error(transparent)]
    Store(#[from] OpenError),
    /// The Raft settings or node are invalid.
    #[error("consensus: {0}")]
    Consensus(String),
}

/// Why a submission was not anchored.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// This validator is not the leader; the leader's address when known.
    #[error("not the leader; leader is {leader:?}")]
    NotLeader {
        /// The leader's HTTP address.
        leader: Option<String>,
    },
    /// The submission queue is full: try again shortly.
    #[error("overloaded, retry shortly")]
    Overloaded,
    /// The validator is shutting down or its consensus failed.
    #[error("validator unavailable: {0}")]
    Unavailable(String),
}

enum Submission {
    Entries {
        entries: Vec<Entry>,
        reply: oneshot::Sender<Result<Vec<EntryOutcome>, SubmitError>>,
    },
    Signatures(Vec<HeightSignature>),
}

/// A submitter waiting for its entries' outcomes: where they start in the proposal, how many.
type Waiting = (
    usize,
    usize,
    oneshot::Sender<Result<Vec<EntryOutcome>, SubmitError>>,
);

/// The next proposal as the batcher gathers it, with the submitters waiting on it.
struct Batch {
    proposal: Proposal,
    waiting: Vec<Waiting>,
}

impl Batch {
    fn new(proposer: MemberId, signatures: Vec<HeightSignature>) -> Batch {
        Batch {
            proposal: Proposal {
                proposer,
                signatures,
                ..Proposal::default()
            },
            waiting: Vec::new(),
        }
    }

    /// Adds `first` and then whatever is queued, up to a full block.
    fn take_all(&mut self, first: Option<Submission>, queue: &mut mpsc::Receiver<Submission>) {
        let mut next = first;
        while let Some(submission) = next.take() {
            match submission {
                Submission::Entries { entries, reply } => {
                    self.waiting
                        .push((self.proposal.entries.len(), entries.len(), reply));
                    self.proposal.entries.extend(entries);
                }
                Submission::Signatures(signatures) => self.proposal.signatures.extend(signatures),
            }
            if self.proposal.entries.len() < MAX_BLOCK_ENTRIES {
                next = queue.try_recv().ok();
            }
        }
    }
}

/// Hands each waiting submitter its share of a proposal's outcome, or why it failed.
fn answer(
    waiting: Vec<Waiting>,
    result: Result<
        ClientWriteResponse<TypeConfig>,
        RaftError<u64, ClientWriteError<u64, BasicNode>>,
    >,
) {
    match result {
        Ok(response) => {
            for (start, count, reply) in waiting {
                let outcomes = response
                    .data
                    .outcomes
                    .get(start..start + count)
                    .map(<[_]>::to_vec);
                let _ = reply
                    .send(outcomes.ok_or_else(|| SubmitError::Unavailable("short outcome".into())));
            }
        }
        Err(error) => {
            let leader = match &error {
                RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
                    Some(forward.leader_node.as_ref().map(|node| node.addr.clone()))
                }
                _ => None,
            };
            for (_, _, reply) in waiting {
                let failure = match &leader {
                    Some(leader) => SubmitError::NotLeader {
                        leader: leader.clone(),
                    },
                    None => SubmitError::Unavailable(error.to_string()),
                };
                let _ = reply.send(Err(failure));
            }
        }
    }
}

/// A validator of the chain: Raft node, chain state and background tasks.
#[derive(Clone)]
pub struct Validator {
    member_id: MemberId,
    raft: ChainRaft,
    state: Arc<RwLock<ChainState>>,
    queue: mpsc::Sender<Submission>,
    head: watch::Receiver<u64>,
    http: reqwest::Client,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Validator {
    /// Opens the stores, starts Raft and the background tasks. The founder with the lowest id
    /// initializes the Raft group from genesis the first time; others wait to be contacted.
    pub async fn start(config: ValidatorConfig) -> Result<Validator, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let log = LogStore::open(&config.data_dir.join(LOG_FILE))?;
        let chain = ChainStore::open(&config.data_dir.join(CHAIN_FILE), &config.genesis)?;
        chain.check_against_log(&log)?;
        let state = chain.state();
        let head = chain.subscribe();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| StartError::Consensus(e.to_string()))?;
        let raft_settings = raft_config(&config.genesis.chain_name)
            .map_err(|e| StartError::Consensus(e.to_string()))?;
        let raft = ChainRaft::new(
            config.member_id,
            Arc::new(raft_settings),
            HttpNetwork::new(http.clone()),
            log,
            chain,
        )
        .await
        .map_err(|e| StartError::Consensus(e.to_string()))?;

        let first_founder = config.genesis.founders.iter().map(|m| m.id).min();
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Consensus(e.to_string()))?;
        if !initialized && first_founder == Some(config.member_id) {
            let voters: BTreeMap<u64, BasicNode> = config
                .genesis
                .founders
                .iter()
                .map(|m| {
                    (
                        m.id,
                        BasicNode {
                            addr: m.address.clone(),
                        },
                    )
                })
                .collect();
            raft.initialize(voters)
                .await
                .map_err(|e| StartError::Consensus(e.to_string()))?;
        }

        let (queue, submissions) = mpsc::channel(SUBMISSION_QUEUE);
        let validator = Validator {
            member_id: config.member_id,
            raft,
            state,
            queue,
            head,
            http,
        };
        tokio::spawn(validator.clone().run_batcher(submissions));
        tokio::spawn(validator.clone().run_signer(Arc::new(config.key)));
        tokio::spawn(validator.clone().run_membership());
        Ok(validator)
    }

    /// This validator's member id.
    pub fn member_id(&self) -> MemberId {
        self.member_id
    }

    /// The Raft node (for the HTTP layer's RPC endpoints and metrics).
    pub fn raft(&self) -> &ChainRaft {
        &self.raft
    }

    /// The chain as this validator holds it.
    pub fn state(&self) -> &Arc<RwLock<ChainState>> {
        &self.state
    }

    /// A shared HTTP client, for forwarding to the leader.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The current leader's id and HTTP address, when one is known.
    pub fn leader(&self) -> Option<(MemberId, String)> {
        let metrics = self.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        let address = metrics
            .membership_config
            .membership()
            .get_node(&leader)?
            .addr
            .clone();
        Some((leader, address))
    }

    /// Anchors `entries` through consensus; returns once they are committed and applied, one
    /// outcome per entry. Only the leader accepts; others answer [`SubmitError::NotLeader`].
    pub async fn submit(&self, entries: Vec<Entry>) -> Result<Vec<EntryOutcome>, SubmitError> {
        if self.raft.metrics().borrow().current_leader != Some(self.member_id) {
            return Err(SubmitError::NotLeader {
                leader: self.leader().map(|(_, address)| address),
            });
        }
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Submission::Entries { entries, reply })
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => SubmitError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => {
                    SubmitError::Unavailable("batcher stopped".into())
                }
            })?;
        answer
            .await
            .map_err(|_| SubmitError::Unavailable("proposal dropped".into()))?
    }

    /// Accepts validators' block signatures for the next proposal (leader only).
    pub fn accept_signatures(&self, signatures: Vec<HeightSignature>) -> Result<(), SubmitError> {
        self.queue
            .try_send(Submission::Signatures(signatures))
            .map_err(|_| SubmitError::Overloaded)
    }

    /// Stops Raft.
    pub async fn shutdown(&self) {
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, "raft shutdown");
        }
    }

    /// Turns queued submissions into proposals, one at a time: each proposal carries
    /// everything that queued while the one before it was being committed. openraft appends
    /// each proposal with a sync of its own and every proposal seals a block that each
    /// validator signs and verifies, so on few cores one round of many entries is cheaper than
    /// several rounds of few, and the entries wait less in all.
    async fn run_batcher(self, mut submissions: mpsc::Receiver<Submission>) {
        let mut held_signatures: Vec<HeightSignature> = Vec::new();
        let mut held_until = tokio::time::Instant::now();
        loop {
            // `None` once signatures have waited their time without entries to ride with.
            let received = if held_signatures.is_empty() {
                Some(submissions.recv().await)
            } else {
                tokio::time::timeout_at(held_until, submissions.recv())
                    .await
                    .ok()
            };
            let first = match received {
                Some(None) => return,
                Some(Some(Submission::Signatures(signatures))) => {
                    if held_signatures.is_empty() {
                        held_until = tokio::time::Instant::now() + SIGNATURE_IDLE;
                    }
                    held_signatures.extend(signatures);
                    continue;
                }
                Some(Some(entries)) => Some(entries),
                None => None,
            };
            let mut batch = Batch::new(self.member_id, std::mem::take(&mut held_signatures));
            batch.take_all(first, &mut submissions);
            batch.proposal.timestamp_ms = now_ms();
            let result = self.raft.client_write(batch.proposal).await;
            answer(batch.waiting, result);
        }
    }

    async fn run_signer(self, key: Arc<ValidatorKey>) {
        let mut head = self.head.clone();
        let mut sent: HashMap<u64, Instant> = HashMap::new();
        let mut lowest_unsigned = 0u64;
        loop {
            let unsigned: Vec<HeightSignature> = {
                let Ok(state) = self.state.read() else {
                    return;
                };
                while lowest_unsigned <= state.head_height()
                    && (state.has_signed(self.member_id, lowest_unsigned)
                        || !state
                            .members_at(lowest_unsigned)
                            .is_some_and(|m| m.contains(self.member_id)))
                {
                    lowest_unsigned += 1;
                }
                sent.retain(|&height, _| height >= lowest_unsigned);
                (lowest_unsigned..=state.head_height())
                    .filter(|&height| {
                        !state.has_signed(self.member_id, height)
                            && state
                                .members_at(height)
                                .is_some_and(|m| m.contains(self.member_id))
                            && sent
                                .get(&height)
                                .is_none_or(|at| at.elapsed() > SIGNATURE_RESEND)
                    })
                    .take(MAX_BLOCK_ENTRIES)
                    .filter_map(|height| {
                        let header = &state.block(height)?.block.header;
                        Some(HeightSignature {
                            height,
                            signature: key.sign_block(self.member_id, header),
                        })
                    })
                    .collect()
            };
            if !unsigned.is_empty() && self.send_signatures(&unsigned).await {
                for signature in &unsigned {
                    sent.insert(signature.height, Instant::now());
                }
            }
            // The chain store drops its sender when Raft stops: then `changed` would return at
            // once, for ever, and this loop would spin a core.
            if let Ok(Err(_stopped)) =
                tokio::time::timeout(Duration::from_millis(500), head.changed()).await
            {
                return;
            }
        }
    }

    async fn send_signatures(&self, signatures: &[HeightSignature]) -> bool {
        match self.leader() {
            Some((leader, _)) if leader == self.member_id => {
                self.accept_signatures(signatures.to_vec()).is_ok()
            }
            Some((_, address)) => {
                let url = format!("http://{address}{}", SIGNATURES_PATH);
                let sent = self
                    .http
                    .post(url)
                    .timeout(Duration::from_secs(2))
                    .json(signatures)
                    .send()
                    .await;
                sent.is_ok_and(|response| response.status().is_success())
            }
            None => false,
        }
    }

    async fn run_membership(self) {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Err(error) = self.reconcile_membership().await {
                tracing::warn!(%error, "membership change");
            }
        }
    }

    /// On the leader, makes the Raft voters equal the chain's current members: new members are
    /// first added as learners (and caught up), then the voter set is changed in one step.
    async fn reconcile_membership(&self) -> Result<(), String> {
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.current_leader != Some(self.member_id) {
            return Ok(());
        }
        let members = match self.state.read() {
            Ok(state) => state.current_members().clone(),
            Err(error) => return Err(error.to_string()),
        };
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let wanted: BTreeSet<u64> = members.members.keys().copied().collect();
        if voters == wanted || membership.get_joint_config().len() > 1 {
            return Ok(());
        }
        for member in members.members.values() {
            if membership.get_node(&member.id).is_none() {
                let node = BasicNode {
                    addr: member.address.clone(),
                };
                self.raft
                    .add_learner(member.id, node, true)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        self.raft
            .change_membership(wanted, false)
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}
