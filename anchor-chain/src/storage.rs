//! Durable storage under openraft: the Raft log and vote in redb (each append one fsync'd
//! transaction, so a batch of proposals costs one sync), and the chain itself as an append-only
//! file of [`Record`]s, each apply batch closed by a checkpoint and synced before it returns.
//!
//! Both survive `kill -9`: redb commits atomically, and a chain file torn mid-batch is cut back
//! to its last checkpoint on open, so a half-written batch is re-applied from the log rather
//! than kept twice.
// The error types here are openraft's, fixed by the traits this module implements.
#![allow(clippy::result_large_err)]

use crate::consensus::TypeConfig;
use crate::state::{ChainState, ProposalOutcome, Record, StateError};
use crate::types::GenesisSpec;
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    Entry, EntryPayload, LogId, LogState, RaftLogReader, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

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
pub enum OpenError {
    /// The Raft log database cannot be opened.
    #[error("raft log {path}: {source}")]
    Log {
        /// The file.
        path: PathBuf,
        /// What redb reported.
        source: Box<redb::Error>,
    },
    /// The chain file cannot be read or repaired.
    #[error("chain file {path}: {source}")]
    Chain {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The chain file holds records that do not continue the chain.
    #[error("chain file {path}: {source}")]
    Inconsistent {
        /// The file.
        path: PathBuf,
        /// What does not fit.
        source: StateError,
    },
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, bincode::Error> {
    bincode::serialize(value)
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, bincode::Error> {
    bincode::deserialize(bytes)
}

/// The Raft log and vote, in one redb database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
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
        Ok(LogStore { db: Arc::new(db) })
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
        let write = |e: &dyn std::fmt::Display| {
            StorageIOError::<NodeId>::write(openraft::AnyError::error(e))
        };
        let bytes = encode(value).map_err(|e| write(&e))?;
        let txn = self.db.begin_write().map_err(|e| write(&e))?;
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
        let read = |e: &dyn std::fmt::Display| {
            StorageIOError::<NodeId>::read_logs(openraft::AnyError::error(e))
        };
        let txn = self.db.begin_read().map_err(|e| read(&e))?;
        let table = txn.open_table(LOGS).map_err(|e| read(&e))?;
        let mut entries = Vec::new();
        for item in table.range(range).map_err(|e| read(&e))? {
            let (_, value) = item.map_err(|e| read(&e))?;
            entries.push(decode(value.value()).map_err(|e| read(&e))?);
        }
        Ok(entries)
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

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        self.write_meta(COMMITTED_KEY, &committed)
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
        let write = |e: &dyn std::fmt::Display| {
            StorageIOError::<NodeId>::write_logs(openraft::AnyError::error(e))
        };
        let outcome = (|| {
            let txn = self.db.begin_write().map_err(|e| write(&e))?;
            {
                let mut table = txn.open_table(LOGS).map_err(|e| write(&e))?;
                for entry in entries {
                    let bytes = encode(&entry).map_err(|e| write(&e))?;
                    table
                        .insert(entry.log_id.index, bytes.as_slice())
                        .map_err(|e| write(&e))?;
                }
            }
            txn.commit().map_err(|e| write(&e))
        })();
        let flushed = outcome
            .as_ref()
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string()));
        callback.log_io_completed(flushed);
        Ok(outcome?)
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

/// Reads the records of a chain file up to its last checkpoint, and that checkpoint's end offset.
/// Rebuilds the chain state from genesis by replaying the file's records in order.
fn replay_records(
    path: &Path,
    spec: &GenesisSpec,
    records: Vec<Record>,
) -> Result<ChainState, OpenError> {
    let inconsistent = |source| OpenError::Inconsistent {
        path: path.to_owned(),
        source,
    };
    let mut state = ChainState::new(spec).map_err(inconsistent)?;
    for record in records {
        state.replay(record).map_err(inconsistent)?;
    }
    Ok(state)
}

fn read_chain_file(file: &mut File) -> std::io::Result<(Vec<Record>, Option<Checkpoint>, u64)> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut bytes)?;
    let mut offset = 0usize;
    let mut pending = Vec::new();
    let mut records = Vec::new();
    let mut checkpoint = None;
    let mut durable_end = 0u64;
    while let Some(length_bytes) = bytes.get(offset..offset + 4) {
        let length = u32::from_be_bytes(length_bytes.try_into().unwrap_or_default()) as usize;
        let Some(body) = bytes.get(offset + 4..offset + 4 + length) else {
            break;
        };
        match decode::<FileItem>(body) {
            Ok(FileItem::Record(record)) => pending.push(record),
            Ok(FileItem::Checkpoint(point)) => {
                records.append(&mut pending);
                checkpoint = Some(point);
                durable_end = (offset + 4 + length) as u64;
            }
            Err(error) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, error)),
        }
        offset += 4 + length;
    }
    Ok((records, checkpoint, durable_end))
}

fn frame(item: &FileItem, out: &mut Vec<u8>) -> Result<(), bincode::Error> {
    let body = encode(item)?;
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

impl ChainStore {
    /// Opens (or creates) the chain file at `path` for the chain founded by `spec`.
    pub fn open(path: &Path, spec: &GenesisSpec) -> Result<ChainStore, OpenError> {
        let io_failed = |source| OpenError::Chain {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io_failed)?;
        let (records, checkpoint, durable_end) = read_chain_file(&mut file).map_err(io_failed)?;
        file.set_len(durable_end).map_err(io_failed)?;
        file.sync_all().map_err(io_failed)?;
        let state = replay_records(path, spec, records)?;
        let checkpoint = checkpoint.unwrap_or(Checkpoint {
            last_applied: None,
            membership: StoredMembership::default(),
        });
        let (applied, _) = tokio::sync::watch::channel(state.head_height());
        Ok(ChainStore {
            state: Arc::new(RwLock::new(state)),
            spec: spec.clone(),
            path: path.to_owned(),
            file,
            checkpoint,
            applied,
        })
    }

    /// Reads a chain file without opening it for writing: what the offline auditor uses.
    pub fn read_blocks(path: &Path, spec: &GenesisSpec) -> Result<ChainState, OpenError> {
        let io_failed = |source| OpenError::Chain {
            path: path.to_owned(),
            source,
        };
        let mut file = File::open(path).map_err(io_failed)?;
        let (records, _, _) = read_chain_file(&mut file).map_err(io_failed)?;
        replay_records(path, spec, records)
    }

    /// The chain state, shared with readers.
    pub fn state(&self) -> Arc<RwLock<ChainState>> {
        self.state.clone()
    }

    /// Notifies each new head height once it is durable.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.subscribe()
    }

    fn snapshot(&self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let failed = |e: &dyn std::fmt::Display| {
            StorageIOError::<NodeId>::read_state_machine(openraft::AnyError::error(e))
        };
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

    fn append_items(&mut self, items: &[FileItem]) -> Result<(), StorageError<NodeId>> {
        let failed = |e: &dyn std::fmt::Display| {
            StorageIOError::<NodeId>::write_state_machine(openraft::AnyError::error(e))
        };
        let mut buffer = Vec::new();
        for item in items {
            frame(item, &mut buffer).map_err(|e| failed(&e))?;
        }
        self.file.write_all(&buffer).map_err(|e| failed(&e))?;
        self.file.sync_data().map_err(|e| failed(&e))?;
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
        let checkpoint = Checkpoint {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        let mut buffer = Vec::new();
        for record in body.records {
            frame(&FileItem::Record(record), &mut buffer).map_err(|e| failed(&e))?;
        }
        frame(&FileItem::Checkpoint(checkpoint.clone()), &mut buffer).map_err(|e| failed(&e))?;
        let staging = self.path.with_extension("installing");
        std::fs::write(&staging, &buffer).map_err(|e| failed(&e))?;
        File::open(&staging)
            .and_then(|f| f.sync_all())
            .map_err(|e| failed(&e))?;
        std::fs::rename(&staging, &self.path).map_err(|e| failed(&e))?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| failed(&e))?;
        }
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
