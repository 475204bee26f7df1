//! Ordering and replication among honest validators, delegated to openraft: the type
//! configuration, the HTTP transport between validators, and the Raft settings.
//!
//! This module knows nothing of signatures or auditing: Raft makes every honest validator apply
//! the same proposals in the same order; `state` and `verify` make a dishonest one detectable.
// The error types here are openraft's, fixed by the traits this module implements.
#![allow(clippy::result_large_err)]

use crate::paths::{APPEND_PATH, SNAPSHOT_PATH, VOTE_PATH};
use crate::state::{Proposal, ProposalOutcome};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Config, SnapshotPolicy};
use serde::{de::DeserializeOwned, Serialize};
use std::io::Cursor;
use std::time::Duration;

openraft::declare_raft_types!(
    /// The chain's Raft types: proposals in, per-entry outcomes out, validators addressed by
    /// their member id and HTTP address.
    pub TypeConfig:
        D = Proposal,
        R = ProposalOutcome,
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A running Raft node of the chain.
pub type ChainRaft = openraft::Raft<TypeConfig>;

/// Raft timing for validators on one site or a LAN: heartbeats every 150 ms, elections after
/// 0.8–1.6 s of silence (long enough not to fire while a busy 2-core machine fsyncs), snapshots
/// every 20,000 log entries with 2,000 kept behind for slow followers.
pub fn raft_config(cluster_name: &str) -> Result<Config, openraft::ConfigError> {
    Config {
        cluster_name: cluster_name.to_owned(),
        heartbeat_interval: 150,
        election_timeout_min: 800,
        election_timeout_max: 1600,
        max_payload_entries: 64,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(20_000),
        max_in_snapshot_log_to_keep: 2_000,
        ..Config::default()
    }
    .validate()
}

/// Creates one HTTP connection handle per peer.
#[derive(Clone)]
pub struct HttpNetwork {
    client: reqwest::Client,
}

impl HttpNetwork {
    /// A network over a shared HTTP client.
    pub fn new(client: reqwest::Client) -> HttpNetwork {
        HttpNetwork { client }
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = HttpPeer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> HttpPeer {
        HttpPeer {
            client: self.client.clone(),
            target,
            node: node.clone(),
        }
    }
}

/// Sends Raft RPCs to one peer, bincode over HTTP.
pub struct HttpPeer {
    client: reqwest::Client,
    target: u64,
    node: BasicNode,
}

impl HttpPeer {
    async fn call<Req, Resp, Err>(
        &self,
        path: &str,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, RPCError<u64, BasicNode, Err>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        Err: std::error::Error + DeserializeOwned,
    {
        let body =
            bincode::serialize(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let response = self
            .client
            .post(format!("http://{}{}", self.node.addr, path))
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let bytes = response
            .bytes()
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let answer: Result<Resp, Err> =
            bincode::deserialize(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for HttpPeer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(APPEND_PATH, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call(SNAPSHOT_PATH, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(VOTE_PATH, &rpc, option.hard_ttl()).await
    }
}
