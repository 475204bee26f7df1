//! Durable storage under openraft: the Raft log and vote in redb (each append one fsync'd
//! transaction, so a batch of proposals costs one sync), and the chain itself as an append-only
//! file of [`Record`]s in the checksummed format of [`chain_file`], each apply batch closed by a
//! checkpoint.
//!
//! The Raft log is what makes an entry durable: it is synced on a majority before the entry is
//! committed. The chain file is derived from it and is written without a sync of its own at
//! each apply; it is synced before every snapshot, so the log is never compacted past what the
//! file holds durably. A SIGKILL loses nothing written (the page cache survives the process);
//! after a power loss the file may end at an earlier checkpoint, possibly with a torn record
//! after it, and Raft re-applies what follows from its log, exactly as after an interrupted
//! append.
//!
//! The chain file is trusted only after it verifies, at every open: every record's length and
//! checksum, then the records replayed and audited like any other chain (links, Merkle roots,
//! signatures against the member set the chain records). Nothing rewrites or truncates a file
//! that does not verify; the one thing cut back is what a crash mid-append leaves after the last
//! checkpoint (complete records of the unfinished batch and an incomplete final record), and
//! those bytes are first copied aside. Raft then re-applies that batch from its log.
// The error types here are openraft's, fixed by the traits this module implements.
#![allow(clippy::result_large_err)]

use crate::chain_file::{self, FrameFault, Item, HEADER_LEN};
use crate::consensus::TypeConfig;
use crate::entry::{GenesisSpec, MemberId};
use crate::state::{ChainState, ProposalOutcome, Record, StateError};
use crate::verify::{AuditError, Auditor};
use bincode::Options;
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    Entry, EntryPayload, LogId, LogState, RaftLogReader, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt::{Debug, Display};
use std::fs::{File, OpenOptions};
use std::io::{Cursor, Write};
use std::ops::{ControlFlow, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// openraft's node id type.
type NodeId = u64;

const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const VOTE_KEY: &str = "vote";
const COMMITTED_KEY: &str = "committed";
const PURGED_KEY: &str = "last_purged";

/// File name of the chain records inside a validator's data directory.
pub const CHAIN_FILE: &str = "chain.records";
/// File name of the Raft log database inside a validator's data directory.
pub const LOG_FILE: &str = "raft-log.redb";

/// A failure opening a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The Raft log database cannot be opened.
    #[error("raft log {path}: {source}")]
    Log {
        /// The file.
        path: PathBuf,
        /// What redb reported.
        source: Box<redb::Error>,
    },
    /// The Raft log database cannot be read.
    #[error("raft log {path}: {source}")]
    LogRead {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: Box<StorageError<NodeId>>,
    },
    /// The chain file cannot be read or written.
    #[error("chain file {path}: {source}")]
    Chain {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The chain file does not verify; it is left exactly as it was found.
    #[error(transparent)]
    Corrupt(#[from] Box<ChainFileError>),
    /// The chain file and the Raft log beside it tell different stories.
    #[error("chain file {chain} against raft log {log}: {mismatch}")]
    LogMismatch {
        /// The chain file.
        chain: PathBuf,
        /// The Raft log.
        log: PathBuf,
        /// How they differ.
        mismatch: LogMismatch,
    },
}

/// Why a chain file does not verify, and where: the byte offset of the record at fault and the
/// block it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
#[error("chain file {path}: byte {offset}, {location}: {fault}")]
pub struct ChainFileError {
    /// The file.
    pub path: PathBuf,
    /// Offset of the record (or header) at fault.
    pub offset: u64,
    /// The block it concerns.
    pub location: BlockLocation,
    /// What is wrong.
    pub fault: ChainFileFault,
}

/// Which block a chain-file fault concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockLocation {
    /// The block at this height, or a signature over it, is at fault.
    Block(u64),
    /// A record that cannot be read, after the block at this height: it held the next block or
    /// a signature.
    After(u64),
}

impl Display for BlockLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlockLocation::Block(height) => write!(f, "block {height}"),
            BlockLocation::After(height) => write!(f, "after block {height}"),
        }
    }
}

/// What is wrong with a chain file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainFileFault {
    /// The bytes are damaged: header, length or checksum.
    #[error(transparent)]
    Frame(FrameFault),
    /// A record passes its checksum but is not a record of this format.
    #[error("the record does not decode: {0}")]
    Undecodable(bincode::Error),
    /// The records do not continue the chain.
    #[error(transparent)]
    Replay(StateError),
    /// The chain the records hold does not audit.
    #[error(transparent)]
    Audit(AuditError),
    /// What a crash mid-append leaves: records after the last checkpoint, the last possibly
    /// incomplete. Only the auditor reports it; a validator sets the bytes aside at its start.
    #[error(
        "{bytes} bytes after the last checkpoint are what an append interrupted by a crash \
         leaves; the validator copies them to {CHAIN_FILE}.interrupted-at-<offset>, cuts them \
         off and re-applies that batch from its Raft log at its next start"
    )]
    InterruptedAppend {
        /// How many bytes follow the last checkpoint.
        bytes: u64,
    },
}

/// How a chain file's last checkpoint disagrees with the Raft log beside it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogMismatch {
    /// The log was compacted past the file's end: the entries between are in neither.
    #[error(
        "the chain file ends at raft log index {}, but the log is compacted up to index \
         {purged}: the entries between are lost",
        shown(*applied)
    )]
    Compacted {
        /// Last log index the file reflects.
        applied: Option<u64>,
        /// Last log index compacted away.
        purged: u64,
    },
    /// The file's last applied entry is not the log's entry at that index.
    #[error("the chain file reflects raft entry {in_file}, the log holds {in_log} at that index")]
    Diverged {
        /// The entry id the file's checkpoint names.
        in_file: String,
        /// The entry id in the log.
        in_log: String,
    },
    /// The file reflects entries the log does not have.
    #[error(
        "the chain file reflects raft log entries up to index {applied}, beyond the log's last \
         entry {}",
        shown(*last)
    )]
    Ahead {
        /// Last log index the file reflects.
        applied: u64,
        /// The log's last index.
        last: Option<u64>,
    },
    /// The log has committed proposals the file does not hold: the file is a shorter chain than
    /// the validator had. A validator catches up by re-applying them; an auditor reports it.
    #[error(
        "the chain file ends at block {head_height} (raft log index {}), but the log has \
         committed proposals up to index {committed} that it does not hold, the first at index \
         {first_missing}",
        shown(*applied)
    )]
    Behind {
        /// The file's head.
        head_height: u64,
        /// Last log index the file reflects.
        applied: Option<u64>,
        /// The log's committed index.
        committed: u64,
        /// The first committed proposal missing from the file.
        first_missing: u64,
    },
}

/// A log index for a message: `none` before the first.
fn shown(index: Option<u64>) -> String {
    index.map_or_else(|| "none".to_owned(), |index| index.to_string())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, bincode::Error> {
    bincode::serialize(value)
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, bincode::Error> {
    bincode::deserialize(bytes)
}

/// Decodes a chain-file record body strictly: bytes left over are an error, not ignored.
fn decode_file_item(body: &[u8]) -> Result<FileItem, bincode::Error> {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .reject_trailing_bytes()
        .deserialize(body)
}

/// The Raft log and vote, in one redb database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    path: PathBuf,
}

impl LogStore {
    /// Opens (or creates) the log database at `path`.
    pub fn open(path: &Path) -> Result<LogStore, OpenError> {
        let failed = |source: redb::Error| OpenError::Log {
            path: path.to_owned(),
            source: Box::new(source),
        };
        let db = Database::create(path).map_err(|e| failed(e.into()))?;
        let txn = db.begin_write().map_err(|e| failed(e.into()))?;
        txn.open_table(LOGS).map_err(|e| failed(e.into()))?;
        txn.open_table(META).map_err(|e| failed(e.into()))?;
        txn.commit().map_err(|e| failed(e.into()))?;
        Ok(LogStore {
            db: Arc::new(db),
            path: path.to_owned(),
        })
    }

    /// How a chain file that reflects the log up to `applied`, ending at block `head_height`,
    /// stands against this log: `None` when in step.
    fn mismatch_with_chain(
        &self,
        applied: Option<LogId<NodeId>>,
        head_height: u64,
    ) -> Result<Option<LogMismatch>, OpenError> {
        let read_failed = |source| OpenError::LogRead {
            path: self.path.clone(),
            source: Box::new(source),
        };
        let purged: Option<LogId<NodeId>> = self.read_meta(PURGED_KEY).map_err(read_failed)?;
        let committed = self
            .read_meta::<Option<LogId<NodeId>>>(COMMITTED_KEY)
            .map_err(read_failed)?
            .flatten();
        let last_entry = self.last_entry().map_err(read_failed)?.map(|e| e.log_id);
        let applied_index = applied.map(|id| id.index);
        if let Some(purged) = purged {
            if applied_index.is_none_or(|index| index < purged.index) {
                return Ok(Some(LogMismatch::Compacted {
                    applied: applied_index,
                    purged: purged.index,
                }));
            }
        }
        if let Some(applied) = applied {
            let last = last_entry.max(purged).map(|id| id.index);
            if last.is_none_or(|last| applied.index > last) {
                return Ok(Some(LogMismatch::Ahead {
                    applied: applied.index,
                    last,
                }));
            }
            let at_applied = self
                .read_entries(applied.index..=applied.index)
                .map_err(read_failed)?;
            if let Some(in_log) = at_applied.first().filter(|entry| entry.log_id != applied) {
                return Ok(Some(LogMismatch::Diverged {
                    in_file: applied.to_string(),
                    in_log: in_log.log_id.to_string(),
                }));
            }
        }
        let Some(committed) = committed else {
            return Ok(None);
        };
        let first_unapplied = applied_index.map_or(0, |index| index + 1);
        let mut first_missing = None;
        self.scan_entries(first_unapplied..=committed.index, |entry| {
            let adds_to_the_chain = match &entry.payload {
                EntryPayload::Normal(proposal) => {
                    !proposal.entries.is_empty() || !proposal.signatures.is_empty()
                }
                EntryPayload::Blank | EntryPayload::Membership(_) => false,
            };
            if adds_to_the_chain {
                first_missing = Some(entry.log_id.index);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })
        .map_err(read_failed)?;
        Ok(first_missing.map(|first_missing| LogMismatch::Behind {
            head_height,
            applied: applied_index,
            committed: committed.index,
            first_missing,
        }))
    }

    fn read_meta<T: for<'de> Deserialize<'de>>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StorageError<NodeId>> {
        let read = |e: &dyn std::fmt::Display| {
            StorageIOError::<NodeId>::read(openraft::AnyError::error(e))
        };
        let txn = self.db.begin_read().map_err(|e| read(&e))?;
        let table = txn.open_table(META).map_err(|e| read(&e))?;
        let Some(value) = table.get(key).map_err(|e| read(&e))? else {
            return Ok(None);
        };
        Ok(Some(decode(value.value()).map_err(|e| read(&e))?))
    }

    fn write_meta<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StorageError<NodeId>> {
        self.write_meta_with(key, value, Durability::Immediate)
    }

    fn write_meta_with<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        durability: Durability,
    ) -> Result<(), StorageError<NodeId>> {
        let write = |e: &dyn std::fmt::Display| {
            StorageIOError::<NodeId>::write(openraft::AnyError::error(e))
        };
        let bytes = encode(value).map_err(|e| write(&e))?;
        let mut txn = self.db.begin_write().map_err(|e| write(&e))?;
        txn.set_durability(durability);
        {
            let mut table = txn.open_table(META).map_err(|e| write(&e))?;
            table.insert(key, bytes.as_slice()).map_err(|e| write(&e))?;
        }
        txn.commit().map_err(|e| write(&e))?;
        Ok(())
    }

    fn last_entry(&self) -> Result<Option<Entry<TypeConfig>>, StorageError<NodeId>> {
        let read = |e: &dyn std::fmt::Display| {
            StorageIOError::<NodeId>::read_logs(openraft::AnyError::error(e))
        };
        let txn = self.db.begin_read().map_err(|e| read(&e))?;
        let table = txn.open_table(LOGS).map_err(|e| read(&e))?;
        let Some((_, value)) = table.last().map_err(|e| read(&e))? else {
            return Ok(None);
        };
        Ok(Some(decode(value.value()).map_err(|e| read(&e))?))
    }

    fn remove_range(&self, range: impl RangeBounds<u64>) -> Result<(), StorageError<NodeId>> {
        let write = |e: &dyn std::fmt::Display| {
            StorageIOError::<NodeId>::write_logs(openraft::AnyError::error(e))
        };
        let txn = self.db.begin_write().map_err(|e| write(&e))?;
        {
            let mut table = txn.open_table(LOGS).map_err(|e| write(&e))?;
            table
                .retain_in(range, |_, _| false)
                .map_err(|e| write(&e))?;
        }
        txn.commit().map_err(|e| write(&e))?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        self.read_entries(range)
    }
}

impl LogStore {
    fn read_entries(
        &self,
        range: impl RangeBounds<u64>,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let mut entries = Vec::new();
        self.scan_entries(range, |entry| {
            entries.push(entry);
            ControlFlow::Continue(())
        })?;
        Ok(entries)
    }

    /// Hands the entries in `range` to `visit` in order, one at a time, until it breaks.
    fn scan_entries(
        &self,
        range: impl RangeBounds<u64>,
        mut visit: impl FnMut(Entry<TypeConfig>) -> ControlFlow<()>,
    ) -> Result<(), StorageError<NodeId>> {
        let read = |e: &dyn std::fmt::Display| {
            StorageIOError::<NodeId>::read_logs(openraft::AnyError::error(e))
        };
        let txn = self.db.begin_read().map_err(|e| read(&e))?;
        let table = txn.open_table(LOGS).map_err(|e| read(&e))?;
        for item in table.range(range).map_err(|e| read(&e))? {
            let (_, value) = item.map_err(|e| read(&e))?;
            if visit(decode(value.value()).map_err(|e| read(&e))?).is_break() {
                break;
            }
        }
        Ok(())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged_log_id: Option<LogId<NodeId>> = self.read_meta(PURGED_KEY)?;
        let last_log_id = match self.last_entry()? {
            Some(entry) => Some(entry.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.write_meta(VOTE_KEY, vote)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.read_meta(VOTE_KEY)
    }

    /// Records the committed index without a sync of its own: it becomes durable with the next
    /// log append, which is synced. A committed index lost to a crash is only a lower bound
    /// that is too low: every committed entry is already durable in a majority's log, openraft
    /// takes the chain file's applied index when it is higher, and the leader sends the
    /// committed index again. Syncing it would put one more fsync in front of every apply.
    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        self.write_meta_with(COMMITTED_KEY, &committed, Durability::None)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self
            .read_meta::<Option<LogId<NodeId>>>(COMMITTED_KEY)?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        fn write(e: &dyn std::fmt::Display) -> StorageError<NodeId> {
            StorageIOError::<NodeId>::write_logs(openraft::AnyError::error(e)).into()
        }
        let rows = entries
            .into_iter()
            .map(|entry| Ok((entry.log_id.index, encode(&entry).map_err(|e| write(&e))?)))
            .collect::<Result<Vec<_>, StorageError<NodeId>>>()?;
        let db = self.db.clone();
        // The commit syncs the file: on a thread of its own, so that the runtime's few workers
        // go on serving the other validators' RPCs and submissions meanwhile.
        let outcome = tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().map_err(|e| write(&e))?;
            {
                let mut table = txn.open_table(LOGS).map_err(|e| write(&e))?;
                for (index, bytes) in rows {
                    table
                        .insert(index, bytes.as_slice())
                        .map_err(|e| write(&e))?;
                }
            }
            txn.commit().map_err(|e| write(&e))
        })
        .await
        .map_err(|e| write(&e))
        .and_then(|written| written);
        let flushed = outcome
            .as_ref()
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string()));
        callback.log_io_completed(flushed);
        outcome
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.remove_range(log_id.index..)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.write_meta(PURGED_KEY, &log_id)?;
        self.remove_range(..=log_id.index)
    }
}

/// A chain-file checkpoint: everything before it is one applied, durable batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Checkpoint {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, openraft::BasicNode>,
}

/// One framed item of the chain file.
#[derive(Debug, Serialize, Deserialize)]
enum FileItem {
    Record(Record),
    Checkpoint(Checkpoint),
}

/// What a snapshot carries: the whole chain as records plus the Raft position it reflects.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    checkpoint: Checkpoint,
    records: Vec<Record>,
}

/// The chain state machine: the in-memory [`ChainState`], shared read-only with the HTTP API,
/// and its append-only file.
pub struct ChainStore {
    state: Arc<RwLock<ChainState>>,
    spec: GenesisSpec,
    path: PathBuf,
    file: File,
    checkpoint: Checkpoint,
    applied: tokio::sync::watch::Sender<u64>,
}

/// A chain file read and verified from its first byte to its last.
struct VerifiedFile {
    state: ChainState,
    /// The last checkpoint: the Raft position the records before it reflect.
    checkpoint: Option<Checkpoint>,
    /// Offset just past the last checkpoint; anything after it is an interrupted append.
    durable_end: u64,
}

/// Where each block and signature record sits in a chain file, so that an audit failure can be
/// reported at the offset of the record that causes it.
#[derive(Default)]
struct RecordOffsets {
    blocks: HashMap<u64, u64>,
    signatures: HashMap<(u64, MemberId), u64>,
}

impl RecordOffsets {
    fn note(&mut self, offset: u64, record: &Record) {
        match record {
            Record::Block(block) => {
                self.blocks.insert(block.header.height, offset);
            }
            Record::Signature(signature) => {
                self.signatures
                    .insert((signature.height, signature.signature.signer), offset);
            }
        }
    }

    /// The record behind `error`: the signature's when it is about one, else the block's
    /// (genesis, which is not stored, at the file's start).
    fn of(&self, error: &AuditError, height: u64) -> u64 {
        let signature = error
            .signer()
            .and_then(|signer| self.signatures.get(&(height, signer)));
        signature
            .or_else(|| self.blocks.get(&height))
            .copied()
            .unwrap_or(0)
    }
}

/// Audits a validator's stored chain from genesis, as any auditor would.
fn audit_stored(state: &ChainState) -> Result<(), AuditError> {
    let mut auditor = Auditor::for_stored_chain(state.chain_id());
    for height in 0..=state.head_height() {
        if let Some(signed) = state.block(height) {
            auditor.push(signed)?;
        }
    }
    Ok(())
}

/// Verifies a chain file's bytes: header, every record's length and checksum, then the chain
/// the checkpointed records replay to, audited. Records after the last checkpoint must decode
/// too, but are not replayed: they are an unfinished batch.
fn verify_chain_bytes(
    path: &Path,
    spec: &GenesisSpec,
    bytes: &[u8],
) -> Result<VerifiedFile, Box<ChainFileError>> {
    let fault_at = |offset, location, fault| {
        Box::new(ChainFileError {
            path: path.to_owned(),
            offset,
            location,
            fault,
        })
    };
    let mut state = ChainState::new(spec)
        .map_err(|e| fault_at(0, BlockLocation::Block(0), ChainFileFault::Replay(e)))?;
    let items = chain_file::items(bytes).map_err(|e| {
        fault_at(
            e.offset,
            BlockLocation::After(0),
            ChainFileFault::Frame(e.fault),
        )
    })?;
    let mut offsets = RecordOffsets::default();
    let mut unfinished_batch: Vec<(u64, Record)> = Vec::new();
    let mut blocks_read = 0u64;
    let mut checkpoint = None;
    let mut durable_end = HEADER_LEN;
    for item in items {
        let (offset, end, body) = match item {
            Ok(Item::Record { offset, end, body }) => (offset, end, body),
            Ok(Item::Incomplete { .. }) => break,
            Err(e) => {
                return Err(fault_at(
                    e.offset,
                    BlockLocation::After(blocks_read),
                    ChainFileFault::Frame(e.fault),
                ))
            }
        };
        let item = decode_file_item(body).map_err(|e| {
            fault_at(
                offset,
                BlockLocation::After(blocks_read),
                ChainFileFault::Undecodable(e),
            )
        })?;
        match item {
            FileItem::Record(record) => {
                if matches!(record, Record::Block(_)) {
                    blocks_read += 1;
                }
                unfinished_batch.push((offset, record));
            }
            FileItem::Checkpoint(point) => {
                for (record_offset, record) in unfinished_batch.drain(..) {
                    offsets.note(record_offset, &record);
                    state.replay(record).map_err(|e| {
                        let height = match e {
                            StateError::Discontinuous { height } => height,
                            StateError::Genesis(_) => 0,
                        };
                        fault_at(
                            record_offset,
                            BlockLocation::Block(height),
                            ChainFileFault::Replay(e),
                        )
                    })?;
                }
                checkpoint = Some(point);
                durable_end = end;
            }
        }
    }
    audit_stored(&state).map_err(|e| {
        let height = e.height().unwrap_or(0);
        fault_at(
            offsets.of(&e, height),
            BlockLocation::Block(height),
            ChainFileFault::Audit(e),
        )
    })?;
    Ok(VerifiedFile {
        state,
        checkpoint,
        durable_end,
    })
}

/// Appends `item` to `out` as one chain-file record.
fn frame_item(item: &FileItem, out: &mut Vec<u8>) -> std::io::Result<()> {
    let body = encode(item).map_err(std::io::Error::other)?;
    chain_file::frame(&body, out).map_err(std::io::Error::other)
}

/// Replaces the file at `path` with `bytes` all at once: written beside it, synced, renamed over
/// it and the directory synced, so a crash leaves either the old file or the new one.
fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let staging = path.with_extension("staging");
    std::fs::write(&staging, bytes)?;
    File::open(&staging)?.sync_all()?;
    std::fs::rename(&staging, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Copies what follows the last checkpoint to `<file>.interrupted-at-<offset>` before it is cut
/// off, so that cutting it back never destroys anything.
fn set_aside_interrupted_append(
    path: &Path,
    bytes: &[u8],
    durable_end: u64,
) -> std::io::Result<()> {
    let remains = bytes.get(durable_end as usize..).unwrap_or_default();
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".interrupted-at-{durable_end}"));
    let aside = path.with_file_name(name);
    std::fs::write(&aside, remains)?;
    File::open(&aside)?.sync_all()?;
    tracing::warn!(
        chain_file = %path.display(),
        offset = durable_end,
        bytes = remains.len(),
        copy = %aside.display(),
        "an append interrupted by a crash is cut off; Raft re-applies it from the log"
    );
    Ok(())
}

/// A stopped validator's chain file, read and verified for an auditor.
pub struct StoredChain {
    /// The chain the file holds.
    pub state: ChainState,
    path: PathBuf,
    last_applied: Option<LogId<NodeId>>,
}

impl StoredChain {
    /// Compares the file with the stopped validator's Raft log at `log_path`: any mismatch is
    /// an error, a file behind the log's committed proposals included. The log is read from a
    /// copy, so the auditor never writes to the validator's files.
    pub fn check_against_log(&self, log_path: &Path) -> Result<(), OpenError> {
        let copy = TemporaryCopy::of(log_path).map_err(|source| OpenError::Chain {
            path: log_path.to_owned(),
            source,
        })?;
        let log = LogStore::open(&copy.path)?;
        let mismatch = log.mismatch_with_chain(self.last_applied, self.state.head_height())?;
        match mismatch {
            None => Ok(()),
            Some(mismatch) => Err(OpenError::LogMismatch {
                chain: self.path.clone(),
                log: log_path.to_owned(),
                mismatch,
            }),
        }
    }
}

/// A copy of a file in the temporary directory, removed when dropped.
struct TemporaryCopy {
    path: PathBuf,
}

impl TemporaryCopy {
    fn of(original: &Path) -> std::io::Result<TemporaryCopy> {
        let unique = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "medvault-audit-{}-{unique}.redb",
            std::process::id()
        ));
        std::fs::copy(original, &path)?;
        Ok(TemporaryCopy { path })
    }
}

impl Drop for TemporaryCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl ChainStore {
    /// Opens (or creates) the chain file at `path` for the chain founded by `spec`, after
    /// verifying all of it. A file that does not verify is refused and left untouched; only the
    /// remains of an interrupted append after the last checkpoint are cut off (copied aside
    /// first), for Raft to re-apply.
    pub fn open(path: &Path, spec: &GenesisSpec) -> Result<ChainStore, OpenError> {
        let io_failed = |source| OpenError::Chain {
            path: path.to_owned(),
            source,
        };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let empty = chain_file::header().to_vec();
                replace_file(path, &empty).map_err(io_failed)?;
                empty
            }
            Err(error) => return Err(io_failed(error)),
        };
        let verified = verify_chain_bytes(path, spec, &bytes)?;
        let interrupted = bytes.len() as u64 > verified.durable_end;
        if interrupted {
            set_aside_interrupted_append(path, &bytes, verified.durable_end).map_err(io_failed)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map_err(io_failed)?;
        if interrupted {
            file.set_len(verified.durable_end).map_err(io_failed)?;
            file.sync_all().map_err(io_failed)?;
        }
        let checkpoint = verified.checkpoint.unwrap_or(Checkpoint {
            last_applied: None,
            membership: StoredMembership::default(),
        });
        let (applied, _) = tokio::sync::watch::channel(verified.state.head_height());
        Ok(ChainStore {
            state: Arc::new(RwLock::new(verified.state)),
            spec: spec.clone(),
            path: path.to_owned(),
            file,
            checkpoint,
            applied,
        })
    }

    /// Reads and verifies a chain file without opening it for writing: what the offline
    /// auditor uses. Unlike [`ChainStore::open`] it reports the remains of an interrupted
    /// append as an error, since the file then holds more than the chain it verifies to.
    pub fn read_verified(path: &Path, spec: &GenesisSpec) -> Result<StoredChain, OpenError> {
        let bytes = std::fs::read(path).map_err(|source| OpenError::Chain {
            path: path.to_owned(),
            source,
        })?;
        let verified = verify_chain_bytes(path, spec, &bytes)?;
        let length = bytes.len() as u64;
        if length > verified.durable_end {
            return Err(Box::new(ChainFileError {
                path: path.to_owned(),
                offset: verified.durable_end,
                location: BlockLocation::After(verified.state.head_height()),
                fault: ChainFileFault::InterruptedAppend {
                    bytes: length - verified.durable_end,
                },
            })
            .into());
        }
        Ok(StoredChain {
            state: verified.state,
            path: path.to_owned(),
            last_applied: verified.checkpoint.and_then(|point| point.last_applied),
        })
    }

    /// Refuses to go on when the Raft log shows this file lost entries or belongs to another
    /// history. A file merely behind the log's committed proposals is fine, as Raft re-applies
    /// them; so is one ahead of it, which a crash right after installing a snapshot (before the
    /// log is compacted to it) leaves.
    pub fn check_against_log(&self, log: &LogStore) -> Result<(), OpenError> {
        let head_height = self.state.read().map_or(0, |state| state.head_height());
        match log.mismatch_with_chain(self.checkpoint.last_applied, head_height)? {
            None | Some(LogMismatch::Behind { .. } | LogMismatch::Ahead { .. }) => Ok(()),
            Some(mismatch) => Err(OpenError::LogMismatch {
                chain: self.path.clone(),
                log: log.path.clone(),
                mismatch,
            }),
        }
    }

    /// The chain state, shared with readers.
    pub fn state(&self) -> Arc<RwLock<ChainState>> {
        self.state.clone()
    }

    /// Notifies each new head height once it is applied (and so durable in the Raft log).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// The chain as a snapshot, once the file is synced: openraft compacts the log up to a
    /// snapshot, and the entries it removes must be durable in the file.
    fn snapshot(&self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let failed = |e: &dyn std::fmt::Display| {
            StorageIOError::<NodeId>::read_state_machine(openraft::AnyError::error(e))
        };
        self.file.sync_data().map_err(|e| failed(&e))?;
        let records = self.state.read().map_err(|e| failed(&e))?.to_records();
        let body = SnapshotBody {
            checkpoint: self.checkpoint.clone(),
            records,
        };
        let bytes = encode(&body).map_err(|e| failed(&e))?;
        let last = self.checkpoint.last_applied;
        let snapshot_id = match last {
            Some(log_id) => format!("{}-{}", log_id.leader_id, log_id.index),
            None => "empty".to_owned(),
        };
        Ok(Snapshot {
            meta: SnapshotMeta {
                last_log_id: last,
                last_membership: self.checkpoint.membership.clone(),
                snapshot_id,
            },
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }

    /// Appends `items` in one write, not synced (see the module's documentation).
    fn append_items(&mut self, items: &[FileItem]) -> Result<(), StorageError<NodeId>> {
        let failed = |e: &dyn std::fmt::Display| {
            StorageIOError::<NodeId>::write_state_machine(openraft::AnyError::error(e))
        };
        let mut buffer = Vec::new();
        for item in items {
            frame_item(item, &mut buffer).map_err(|e| failed(&e))?;
        }
        self.file.write_all(&buffer).map_err(|e| failed(&e))?;
        Ok(())
    }
}

/// Builds snapshots from the current chain.
pub struct ChainSnapshotBuilder {
    snapshot: Result<Snapshot<TypeConfig>, StorageError<NodeId>>,
}

impl RaftSnapshotBuilder<TypeConfig> for ChainSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        match &self.snapshot {
            Ok(snapshot) => Ok(Snapshot {
                meta: snapshot.meta.clone(),
                snapshot: Box::new(Cursor::new(snapshot.snapshot.get_ref().clone())),
            }),
            Err(error) => Err(error.clone()),
        }
    }
}

impl RaftStateMachine<TypeConfig> for ChainStore {
    type SnapshotBuilder = ChainSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId<NodeId>>,
            StoredMembership<NodeId, openraft::BasicNode>,
        ),
        StorageError<NodeId>,
    > {
        Ok((
            self.checkpoint.last_applied,
            self.checkpoint.membership.clone(),
        ))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ProposalOutcome>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let failed = |e: &dyn std::fmt::Display| {
            StorageIOError::<NodeId>::write_state_machine(openraft::AnyError::error(e))
        };
        let mut items = Vec::new();
        let mut outcomes = Vec::new();
        let head = {
            let mut state = self.state.write().map_err(|e| failed(&e))?;
            for entry in entries {
                self.checkpoint.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => outcomes.push(ProposalOutcome::default()),
                    EntryPayload::Normal(proposal) => {
                        let (outcome, records) = state.apply(&proposal);
                        items.extend(records.into_iter().map(FileItem::Record));
                        outcomes.push(outcome);
                    }
                    EntryPayload::Membership(membership) => {
                        self.checkpoint.membership =
                            StoredMembership::new(Some(entry.log_id), membership);
                        outcomes.push(ProposalOutcome::default());
                    }
                }
            }
            state.head_height()
        };
        items.push(FileItem::Checkpoint(self.checkpoint.clone()));
        self.append_items(&items)?;
        self.applied.send_replace(head);
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        ChainSnapshotBuilder {
            snapshot: self.snapshot(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let failed = |e: &dyn std::fmt::Display| {
            StorageIOError::<NodeId>::write_snapshot(
                Some(meta.signature()),
                openraft::AnyError::error(e),
            )
        };
        let body: SnapshotBody = decode(snapshot.get_ref()).map_err(|e| failed(&e))?;
        let mut state = ChainState::new(&self.spec).map_err(|e| failed(&e))?;
        for record in body.records.iter().cloned() {
            state.replay(record).map_err(|e| failed(&e))?;
        }
        audit_stored(&state).map_err(|e| failed(&format!("the snapshot does not audit: {e}")))?;
        let checkpoint = Checkpoint {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        let mut buffer = chain_file::header().to_vec();
        for record in body.records {
            frame_item(&FileItem::Record(record), &mut buffer).map_err(|e| failed(&e))?;
        }
        frame_item(&FileItem::Checkpoint(checkpoint.clone()), &mut buffer)
            .map_err(|e| failed(&e))?;
        replace_file(&self.path, &buffer).map_err(|e| failed(&e))?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| failed(&e))?;
        let head = state.head_height();
        *self.state.write().map_err(|e| failed(&e))? = state;
        self.checkpoint = checkpoint;
        self.applied.send_replace(head);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        if self.checkpoint.last_applied.is_none() {
            return Ok(None);
        }
        self.snapshot().map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::ValidatorKey;
    use crate::bytes::{Hash32, PublicKeyBytes};
    use crate::entry::{ApprovalPolicy, Entry as ChainEntry, Member};
    use crate::state::{HeightSignature, Proposal};
    use crate::verify::audit_chain;
    use openraft::testing::{StoreBuilder, Suite};
    use openraft::CommittedLeaderId;

    const VALIDATOR: MemberId = 1;
    const BLOCKS: u64 = 5;

    /// The log id of the `index`-th proposal, all from one term.
    fn log_id(index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(1, VALIDATOR), index)
    }

    /// A chain file of genesis and five blocks, every one signed, written through `apply` as a
    /// single validator writes it: proposal `i` seals block `i` (the sixth seals none) and
    /// carries the signature over block `i - 1`. Everything is fixed, so the bytes are too.
    /// Returns the genesis spec and the Raft log entries behind the file.
    async fn five_signed_blocks(path: &Path) -> (GenesisSpec, Vec<Entry<TypeConfig>>) {
        let key = ValidatorKey::from_seed([7; 32]);
        let spec = GenesisSpec {
            chain_name: "integrity".into(),
            timestamp_ms: 1_000,
            approval_policy: ApprovalPolicy::Majority,
            founders: vec![Member::for_tests(VALIDATOR, &key)],
        };
        let mut store = ChainStore::open(path, &spec).unwrap();
        let mut log = Vec::new();
        for index in 1..=BLOCKS + 1 {
            let signed = store.state.read().unwrap().head().block.header.clone();
            let entries = if index <= BLOCKS {
                vec![ChainEntry::RecordAnchor {
                    leaf: Hash32::digest(&[&index.to_be_bytes()]),
                }]
            } else {
                Vec::new()
            };
            let entry = Entry {
                log_id: log_id(index),
                payload: EntryPayload::Normal(Proposal {
                    proposer: VALIDATOR,
                    timestamp_ms: 2_000 + index,
                    entries,
                    signatures: vec![HeightSignature {
                        height: signed.height,
                        signature: key.sign_block(VALIDATOR, &signed),
                    }],
                }),
            };
            store.apply([entry.clone()]).await.unwrap();
            log.push(entry);
        }
        (spec, log)
    }

    /// A clean five-block chain file in a fresh directory, with what made it.
    struct CleanFile {
        dir: tempfile::TempDir,
        path: PathBuf,
        spec: GenesisSpec,
        bytes: Vec<u8>,
        log_entries: Vec<Entry<TypeConfig>>,
    }

    async fn clean_file() -> CleanFile {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CHAIN_FILE);
        let (spec, log_entries) = five_signed_blocks(&path).await;
        let bytes = std::fs::read(&path).unwrap();
        CleanFile {
            dir,
            path,
            spec,
            bytes,
            log_entries,
        }
    }

    /// A Raft log holding `entries`, all committed.
    fn committed_log(path: &Path, entries: &[Entry<TypeConfig>]) -> LogStore {
        let log = LogStore::open(path).unwrap();
        let txn = log.db.begin_write().unwrap();
        {
            let mut table = txn.open_table(LOGS).unwrap();
            for entry in entries {
                table
                    .insert(entry.log_id.index, encode(entry).unwrap().as_slice())
                    .unwrap();
            }
        }
        txn.commit().unwrap();
        log.write_meta(COMMITTED_KEY, &entries.last().map(|entry| entry.log_id))
            .unwrap();
        log
    }

    fn corrupt(error: OpenError) -> ChainFileError {
        match error {
            OpenError::Corrupt(error) => *error,
            other => panic!("expected a chain file that does not verify, got {other}"),
        }
    }

    /// Offsets just past each checkpoint: the only places a file may end and still verify.
    fn checkpoint_ends(bytes: &[u8]) -> Vec<u64> {
        chain_file::items(bytes)
            .unwrap()
            .filter_map(|item| match item.unwrap() {
                Item::Record { end, body, .. } => {
                    matches!(decode_file_item(body).unwrap(), FileItem::Checkpoint(_))
                        .then_some(end)
                }
                Item::Incomplete { .. } => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_clean_chain_file_opens_and_verifies() {
        let CleanFile {
            dir,
            path,
            spec,
            bytes,
            log_entries,
        } = clean_file().await;
        let stored = ChainStore::read_verified(&path, &spec).unwrap();
        assert_eq!(stored.state.head_height(), BLOCKS);
        let blocks: Vec<_> = (0..=BLOCKS)
            .map(|height| stored.state.block(height).unwrap().clone())
            .collect();
        let report = audit_chain(&blocks, Some(stored.state.chain_id())).unwrap();
        assert!(report.pending_tail.is_empty(), "every block is final");
        let log = committed_log(&dir.path().join(LOG_FILE), &log_entries);
        assert_eq!(
            log.mismatch_with_chain(stored.last_applied, BLOCKS)
                .unwrap(),
            None
        );

        let reopened = ChainStore::open(&path, &spec).unwrap();
        assert_eq!(reopened.state.read().unwrap().head_height(), BLOCKS);
        reopened.check_against_log(&log).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "opening writes nothing"
        );
    }

    #[tokio::test]
    async fn every_single_bit_flip_is_refused_at_open_and_by_the_auditor_and_changes_nothing() {
        use std::os::unix::fs::FileExt;
        let CleanFile {
            dir,
            path,
            spec,
            bytes,
            ..
        } = clean_file().await;
        // Flipped in place, one byte written and restored per bit: rewriting the whole file each
        // time costs a flush per truncation on some file systems and makes the test slow.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            file.write_all_at(&flipped[bit / 8..=bit / 8], (bit / 8) as u64)
                .unwrap();
            let audited = ChainStore::read_verified(&path, &spec);
            assert!(
                audited.is_err(),
                "the auditor read a chain with bit {bit} flipped"
            );
            let opened = ChainStore::open(&path, &spec);
            let refusal = corrupt(opened.err().unwrap());
            assert!(
                refusal.offset <= (bit / 8) as u64,
                "bit {bit} reported at byte {}",
                refusal.offset
            );
            assert_eq!(
                std::fs::read(&path).unwrap(),
                flipped,
                "a refused open changed the file (bit {bit})"
            );
            file.write_all_at(&bytes[bit / 8..=bit / 8], (bit / 8) as u64)
                .unwrap();
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "nothing was set aside or staged"
        );
    }

    #[tokio::test]
    async fn a_truncated_file_is_an_error_or_a_checkpoint_the_raft_log_shows_is_behind() {
        let CleanFile {
            dir,
            spec,
            bytes,
            log_entries,
            ..
        } = clean_file().await;
        let log = committed_log(&dir.path().join(LOG_FILE), &log_entries);
        let mut ends = checkpoint_ends(&bytes);
        assert_eq!(ends.len() as u64, BLOCKS + 1);
        ends.push(HEADER_LEN);
        for cut in 0..bytes.len() as u64 {
            // A new file per cut: truncating one file again and again flushes it each time on
            // some file systems, which makes the test slow.
            let path = dir.path().join(format!("cut-at-{cut}"));
            std::fs::write(&path, &bytes[..cut as usize]).unwrap();
            match ChainStore::read_verified(&path, &spec) {
                Ok(stored) => {
                    assert!(ends.contains(&cut), "a cut at byte {cut} read as a chain");
                    let mismatch = log
                        .mismatch_with_chain(stored.last_applied, stored.state.head_height())
                        .unwrap();
                    assert!(
                        matches!(mismatch, Some(LogMismatch::Behind { .. })),
                        "a cut at checkpoint {cut} is not reported behind the log: {mismatch:?}"
                    );
                }
                Err(error) => {
                    let refusal = corrupt(error);
                    assert!(refusal.offset <= cut, "cut at {cut}: {refusal}");
                }
            }
        }
    }

    #[tokio::test]
    async fn an_interrupted_append_is_copied_aside_and_cut_back_at_open() {
        let clean = clean_file().await;
        let ends = checkpoint_ends(&clean.bytes);
        let durable_end = ends[ends.len() - 2];
        let torn = clean.bytes.len() - 3;
        std::fs::write(&clean.path, &clean.bytes[..torn]).unwrap();

        let refusal = corrupt(
            ChainStore::read_verified(&clean.path, &clean.spec)
                .err()
                .unwrap(),
        );
        assert!(matches!(
            refusal.fault,
            ChainFileFault::InterruptedAppend { .. }
        ));
        assert_eq!(refusal.offset, durable_end);
        assert_eq!(refusal.location, BlockLocation::After(BLOCKS));

        let store = ChainStore::open(&clean.path, &clean.spec).unwrap();
        assert_eq!(store.checkpoint.last_applied, Some(log_id(BLOCKS)));
        assert_eq!(
            std::fs::read(&clean.path).unwrap(),
            &clean.bytes[..durable_end as usize]
        );
        let aside = clean
            .dir
            .path()
            .join(format!("{CHAIN_FILE}.interrupted-at-{durable_end}"));
        assert_eq!(
            std::fs::read(aside).unwrap(),
            &clean.bytes[durable_end as usize..torn]
        );
    }

    /// Rewrites the file's records through `change`, with fresh checksums: tampering that the
    /// checksums alone cannot catch.
    fn reframe(bytes: &[u8], mut change: impl FnMut(FileItem) -> Option<FileItem>) -> Vec<u8> {
        let mut out = chain_file::header().to_vec();
        for item in chain_file::items(bytes).unwrap() {
            let Item::Record { body, .. } = item.unwrap() else {
                unreachable!("the clean file is complete")
            };
            if let Some(item) = change(decode_file_item(body).unwrap()) {
                frame_item(&item, &mut out).unwrap();
            }
        }
        out
    }

    #[tokio::test]
    async fn records_with_valid_checksums_are_still_audited_at_open() {
        let CleanFile {
            dir: _dir,
            path,
            spec,
            bytes,
            ..
        } = clean_file().await;
        let restamped = reframe(&bytes, |item| match item {
            FileItem::Record(Record::Block(mut block)) if block.header.height == 3 => {
                block.header.timestamp_ms += 1;
                Some(FileItem::Record(Record::Block(block)))
            }
            other => Some(other),
        });
        std::fs::write(&path, &restamped).unwrap();
        let refusal = corrupt(ChainStore::open(&path, &spec).err().unwrap());
        assert!(
            matches!(
                refusal.fault,
                ChainFileFault::Audit(AuditError::BadSignature { height: 3, .. })
            ),
            "{refusal}"
        );
        assert_eq!(refusal.location, BlockLocation::Block(3));

        let without_block_2 = reframe(&bytes, |item| match item {
            FileItem::Record(Record::Block(block)) if block.header.height == 2 => None,
            other => Some(other),
        });
        std::fs::write(&path, &without_block_2).unwrap();
        let refusal = corrupt(ChainStore::open(&path, &spec).err().unwrap());
        assert!(
            matches!(refusal.fault, ChainFileFault::Replay(_)),
            "{refusal}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), without_block_2);
    }

    #[tokio::test]
    async fn a_format_1_file_is_refused_not_read_as_empty() {
        let CleanFile {
            dir: _dir,
            path,
            spec,
            ..
        } = clean_file().await;
        let mut format_1 = Vec::new();
        let body = encode(&FileItem::Checkpoint(Checkpoint {
            last_applied: Some(log_id(1)),
            membership: StoredMembership::default(),
        }))
        .unwrap();
        format_1.extend_from_slice(&(body.len() as u32).to_be_bytes());
        format_1.extend_from_slice(&body);
        std::fs::write(&path, &format_1).unwrap();
        let refusal = corrupt(ChainStore::open(&path, &spec).err().unwrap());
        assert!(matches!(
            refusal.fault,
            ChainFileFault::Frame(FrameFault::NotAChainFile)
        ));
        assert_eq!(std::fs::read(&path).unwrap(), format_1);
    }

    #[tokio::test]
    async fn a_file_the_raft_log_shows_lost_or_foreign_is_refused_one_behind_it_is_not() {
        let CleanFile {
            dir,
            path,
            spec,
            bytes,
            mut log_entries,
        } = clean_file().await;
        let ends = checkpoint_ends(&bytes);
        std::fs::write(&path, &bytes[..ends[ends.len() - 2] as usize]).unwrap();
        let store = ChainStore::open(&path, &spec).unwrap();
        assert_eq!(store.checkpoint.last_applied, Some(log_id(BLOCKS)));

        let ahead_of_the_file = committed_log(&dir.path().join("behind.redb"), &log_entries);
        store.check_against_log(&ahead_of_the_file).unwrap();

        let compacted = committed_log(&dir.path().join("compacted.redb"), &log_entries);
        compacted
            .write_meta(PURGED_KEY, &log_id(BLOCKS + 1))
            .unwrap();
        assert!(matches!(
            store.check_against_log(&compacted),
            Err(OpenError::LogMismatch {
                mismatch: LogMismatch::Compacted { .. },
                ..
            })
        ));

        log_entries[BLOCKS as usize - 1].log_id =
            LogId::new(CommittedLeaderId::new(2, VALIDATOR), BLOCKS);
        let foreign = committed_log(&dir.path().join("foreign.redb"), &log_entries);
        assert!(matches!(
            store.check_against_log(&foreign),
            Err(OpenError::LogMismatch {
                mismatch: LogMismatch::Diverged { .. },
                ..
            })
        ));
    }

    struct TempStores;

    impl StoreBuilder<TypeConfig, LogStore, ChainStore, tempfile::TempDir> for TempStores {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore, ChainStore), StorageError<u64>> {
            let dir = tempfile::tempdir().map_err(|e| openraft::StorageIOError::write(&e))?;
            let spec = GenesisSpec {
                chain_name: "suite".into(),
                timestamp_ms: 0,
                approval_policy: ApprovalPolicy::Majority,
                founders: vec![Member {
                    id: 1,
                    name: "one".into(),
                    public_key: PublicKeyBytes([1; 32]),
                    address: "127.0.0.1:1".into(),
                }],
            };
            let log = LogStore::open(&dir.path().join("log.redb"))
                .map_err(|e| openraft::StorageIOError::write(&e))?;
            let chain = ChainStore::open(&dir.path().join("chain"), &spec)
                .map_err(|e| openraft::StorageIOError::write(&e))?;
            Ok((dir, log, chain))
        }
    }

    #[test]
    fn storage_passes_the_openraft_suite() {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .try_init();
        Suite::test_all(TempStores).unwrap();
    }
}
