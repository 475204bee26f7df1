//! The HTTP paths one validator posts to on another: the Raft RPCs and the block-signature
//! handoff to the leader. They live here, depending on nothing, so that the senders (`consensus`
//! and `node`) and the router that serves them (`api`) share them without depending on each
//! other.

/// Path of the append-entries RPC on a validator.
pub const APPEND_PATH: &str = "/raft/append";
/// Path of the vote RPC.
pub const VOTE_PATH: &str = "/raft/vote";
/// Path of the snapshot-chunk RPC.
pub const SNAPSHOT_PATH: &str = "/raft/snapshot";
/// Where followers post their block signatures to the leader.
pub const SIGNATURES_PATH: &str = "/v1/internal/signatures";
