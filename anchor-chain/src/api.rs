//! The validator's HTTP face: the JSON API for submitters and auditors, the endpoint where
//! followers hand their block signatures to the leader, and the bincode Raft RPCs between
//! validators. Errors are JSON `{"error": code, "detail": text}` with a fitting status.

use crate::bytes::Hash32;
use crate::entry::Entry;
use crate::node::{SubmitError, Validator, MAX_BLOCK_ENTRIES};
use crate::paths::{APPEND_PATH, SIGNATURES_PATH, SNAPSHOT_PATH, VOTE_PATH};
use crate::state::{EntryOutcome, HeightSignature};
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Marks a submission already forwarded once, so it is never forwarded in a loop.
const FORWARDED_HEADER: &str = "x-medvault-forwarded";
/// Largest request body: a Raft append carries up to 64 proposals of up to 4,096 entries.
const MAX_BODY_BYTES: usize = 64 << 20;
/// Most blocks returned by one range request.
pub const MAX_BLOCKS_PER_PAGE: u64 = 256;

/// Body of `POST /v1/entries`.
#[derive(Debug, Serialize, Deserialize)]
pub struct SubmitRequest {
    /// Entries to anchor, at most [`MAX_BLOCK_ENTRIES`].
    pub entries: Vec<Entry>,
}

/// Answer of `POST /v1/entries`: one result per submitted entry.
#[derive(Debug, Serialize, Deserialize)]
pub struct SubmitResponse {
    /// Receipts or rejections, in submission order.
    pub results: Vec<EntryOutcome>,
}

/// Answer of `GET /v1/head`.
#[derive(Debug, Serialize, Deserialize)]
pub struct HeadResponse {
    /// Hash of the genesis block.
    pub chain_id: Hash32,
    /// Height of the last block.
    pub height: u64,
    /// Its header hash.
    pub hash: Hash32,
    /// Highest height up to which every block has a majority of signatures.
    pub final_height: Option<u64>,
}

impl HeadResponse {
    /// The head of `state`.
    pub fn of(state: &crate::state::ChainState) -> HeadResponse {
        HeadResponse {
            chain_id: state.chain_id(),
            height: state.head_height(),
            hash: state.head().block.header.hash(),
            final_height: state.final_height(),
        }
    }
}

/// Answer of `GET /v1/status`.
#[derive(Debug, Serialize, Deserialize)]
pub struct StatusResponse {
    /// This validator's member id.
    pub member_id: u64,
    /// The current leader's id, if known.
    pub leader_id: Option<u64>,
    /// Raft term.
    pub term: u64,
    /// Raft voters.
    pub voters: Vec<u64>,
    /// Chain head height.
    pub height: u64,
    /// Highest final height.
    pub final_height: Option<u64>,
}

/// An API error as sent to clients.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApiError {
    /// Stable machine-readable code.
    pub error: String,
    /// Explanation for people.
    pub detail: String,
}

fn error(status: StatusCode, code: &str, detail: impl Into<String>) -> Response {
    (
        status,
        Json(ApiError {
            error: code.into(),
            detail: detail.into(),
        }),
    )
        .into_response()
}

fn retry_later(code: &str, detail: impl Into<String>) -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, code, detail);
    response
        .headers_mut()
        .insert("retry-after", HeaderValue::from_static("1"));
    response
}

/// The validator's routes.
pub fn router(validator: Validator) -> Router {
    Router::new()
        .route("/v1/entries", post(submit))
        .route("/v1/entries/{hash}/proof", get(proof))
        .route("/v1/head", get(head))
        .route("/v1/blocks", get(blocks))
        .route("/v1/blocks/{height}", get(block))
        .route("/v1/members", get(members))
        .route("/v1/status", get(status))
        .route(SIGNATURES_PATH, post(signatures))
        .route(APPEND_PATH, post(raft_append))
        .route(VOTE_PATH, post(raft_vote))
        .route(SNAPSHOT_PATH, post(raft_snapshot))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(validator)
}

/// Serves the API on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, validator: Validator) -> std::io::Result<()> {
    axum::serve(listener, router(validator)).await
}

async fn submit(
    State(validator): State<Validator>,
    headers: HeaderMap,
    body: Result<Json<SubmitRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                "malformed_entry",
                rejection.body_text(),
            )
        }
    };
    if request.entries.is_empty() || request.entries.len() > MAX_BLOCK_ENTRIES {
        return error(
            StatusCode::BAD_REQUEST,
            "batch_size",
            format!("submit 1 to {MAX_BLOCK_ENTRIES} entries"),
        );
    }
    if let Some(reason) = request
        .entries
        .iter()
        .enumerate()
        .find_map(|(index, entry)| {
            entry
                .check_shape()
                .err()
                .map(|reason| format!("entry {index}: {reason}"))
        })
    {
        return error(StatusCode::BAD_REQUEST, "malformed_entry", reason);
    }
    match validator.submit(request.entries.clone()).await {
        Ok(results) => Json(SubmitResponse { results }).into_response(),
        Err(SubmitError::NotLeader {
            leader: Some(address),
        }) if !headers.contains_key(FORWARDED_HEADER) => {
            forward(&validator, &address, &request).await
        }
        Err(SubmitError::NotLeader { .. }) => retry_later("no_leader", "no leader is known yet"),
        Err(SubmitError::Overloaded) => retry_later("overloaded", "submission queue is full"),
        Err(SubmitError::Unavailable(detail)) => retry_later("unavailable", detail),
    }
}

/// Relays a submission to the leader and its answer back, status and body unchanged.
async fn forward(validator: &Validator, leader: &str, request: &SubmitRequest) -> Response {
    let sent = validator
        .http()
        .post(format!("http://{leader}/v1/entries"))
        .header(FORWARDED_HEADER, "1")
        .timeout(Duration::from_secs(30))
        .json(request)
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(failure) => return retry_later("leader_unreachable", failure.to_string()),
    };
    let status =
        StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    match response.bytes().await {
        Ok(bytes) => (status, [("content-type", "application/json")], bytes).into_response(),
        Err(failure) => retry_later("leader_unreachable", failure.to_string()),
    }
}

fn read_state(
    validator: &Validator,
    read: impl FnOnce(&crate::state::ChainState) -> Response,
) -> Response {
    match validator.state().read() {
        Ok(state) => read(&state),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "chain state unavailable",
        ),
    }
}

async fn head(State(validator): State<Validator>) -> Response {
    read_state(&validator, |state| {
        Json(HeadResponse::of(state)).into_response()
    })
}

async fn block(State(validator): State<Validator>, Path(height): Path<String>) -> Response {
    let Ok(height) = height.parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_height",
            "height must be a non-negative integer",
        );
    };
    read_state(&validator, |state| match state.block(height) {
        Some(block) => Json(block).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "unknown_height",
            format!("no block {height}; head is {}", state.head_height()),
        ),
    })
}

/// Query of `GET /v1/blocks`.
#[derive(Debug, Deserialize)]
struct BlockRange {
    from: u64,
    limit: Option<u64>,
}

async fn blocks(State(validator): State<Validator>, Query(range): Query<BlockRange>) -> Response {
    let limit = range
        .limit
        .unwrap_or(MAX_BLOCKS_PER_PAGE)
        .min(MAX_BLOCKS_PER_PAGE);
    read_state(&validator, |state| {
        let blocks: Vec<_> = (range.from..range.from.saturating_add(limit))
            .map_while(|h| state.block(h).cloned())
            .collect();
        Json(blocks).into_response()
    })
}

async fn proof(State(validator): State<Validator>, Path(hash): Path<String>) -> Response {
    let Some(hash) = Hash32::from_hex(&hash) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_hash",
            "entry hash must be 64 hex digits",
        );
    };
    read_state(&validator, |state| match state.proof(&hash) {
        Some(proof) => Json(proof).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "unknown_entry",
            format!("entry {hash} is not anchored"),
        ),
    })
}

/// Query of `GET /v1/members`.
#[derive(Debug, Deserialize)]
struct MembersQuery {
    height: Option<u64>,
}

async fn members(
    State(validator): State<Validator>,
    Query(query): Query<MembersQuery>,
) -> Response {
    read_state(&validator, |state| {
        let height = query.height.unwrap_or(state.head_height() + 1);
        match state.members_at(height) {
            Some(members) if height <= state.head_height() + 1 => Json(members).into_response(),
            _ => error(
                StatusCode::NOT_FOUND,
                "unknown_height",
                format!("no member set for height {height}"),
            ),
        }
    })
}

async fn status(State(validator): State<Validator>) -> Response {
    let metrics = validator.raft().metrics().borrow().clone();
    read_state(&validator, |state| {
        Json(StatusResponse {
            member_id: validator.member_id(),
            leader_id: metrics.current_leader,
            term: metrics.current_term,
            voters: metrics.membership_config.membership().voter_ids().collect(),
            height: state.head_height(),
            final_height: state.final_height(),
        })
        .into_response()
    })
}

async fn signatures(
    State(validator): State<Validator>,
    body: Result<Json<Vec<HeightSignature>>, JsonRejection>,
) -> Response {
    let Ok(Json(signatures)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "malformed_signature",
            "expected a list of block signatures",
        );
    };
    if validator.leader().map(|(id, _)| id) != Some(validator.member_id()) {
        return retry_later("not_leader", "signatures go to the leader");
    }
    match validator.accept_signatures(signatures) {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(_) => retry_later("overloaded", "submission queue is full"),
    }
}

fn bincode_reply<T: Serialize>(value: &T) -> Response {
    match bincode::serialize(value) {
        Ok(bytes) => bytes.into_response(),
        Err(failure) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            failure.to_string(),
        ),
    }
}

fn malformed_rpc(failure: bincode::Error) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "malformed_rpc",
        failure.to_string(),
    )
}

async fn raft_append(State(validator): State<Validator>, body: Bytes) -> Response {
    match bincode::deserialize(&body) {
        Ok(request) => bincode_reply(&validator.raft().append_entries(request).await),
        Err(failure) => malformed_rpc(failure),
    }
}

async fn raft_vote(State(validator): State<Validator>, body: Bytes) -> Response {
    match bincode::deserialize(&body) {
        Ok(request) => bincode_reply(&validator.raft().vote(request).await),
        Err(failure) => malformed_rpc(failure),
    }
}

async fn raft_snapshot(State(validator): State<Validator>, body: Bytes) -> Response {
    match bincode::deserialize(&body) {
        Ok(request) => bincode_reply(&validator.raft().install_snapshot(request).await),
        Err(failure) => malformed_rpc(failure),
    }
}
