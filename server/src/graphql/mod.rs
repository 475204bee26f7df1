//! The GraphQL schema: built by one function, exported as SDL to `schema.graphql`, and mounted by
//! the HTTP application. Only this module, `startup` and `error` (the mapping of vault errors)
//! know GraphQL exists.

pub mod anchoring;
pub mod bounds;
pub mod consent;
mod exports;
mod loaders;
mod mutation;
mod query;
mod types;
mod vocabulary;

use crate::error::{ApiError, ApiResult, VaultErrorCodes};
use crate::metrics::Metrics;
use async_graphql::connection::{Connection, Edge};
use async_graphql::dataloader::DataLoader;
use async_graphql::{
    Context, EmptySubscription, OutputType, SDLExportOptions, Schema, SchemaBuilder,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use medvault_vault::auth::Actor;
use medvault_vault::Services;
use medvault_vault::{AuditedAction, Page, PageRequest, Permit, Vault};
use std::net::IpAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use uuid::Uuid;

pub use bounds::DocumentBounds;
pub use mutation::MutationRoot;
pub use query::QueryRoot;

/// The medvault schema type.
pub type MedvaultSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// The limits that keep one request from exhausting the server (OWASP GraphQL cheat sheet).
#[derive(Clone, Copy, Debug)]
pub struct QueryLimits {
    /// Deepest selection nesting accepted.
    pub max_depth: usize,
    /// Highest total complexity accepted; connections count `first` times their children.
    pub max_complexity: usize,
    /// Whether introspection queries are answered; field suggestions ("Did you mean …") are
    /// given only with it, since they reveal the schema too.
    pub introspection: bool,
    /// Size bounds checked before parsing and validation.
    pub document: DocumentBounds,
}

impl QueryLimits {
    /// The production limits, with introspection on or off. The standard introspection query
    /// that GraphiQL sends nests `ofType` nine deep, so with introspection on the depth limit is
    /// raised to let it through.
    pub fn new(introspection: bool) -> Self {
        let max_depth = if introspection { 16 } else { 10 };
        QueryLimits {
            max_depth,
            max_complexity: 5_000,
            introspection,
            document: DocumentBounds::default(),
        }
    }
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits::new(false)
    }
}

/// Builds the schema over a process's services (the vault, its export jobs, the auditors'
/// database audits and the chain it anchors on), counting logins in `metrics`.
pub fn build_schema(services: &Services, metrics: Metrics, limits: QueryLimits) -> MedvaultSchema {
    limited_schema(limits)
        .data(services.vault().clone())
        .data(services.exports().clone())
        .data(services.database_audits().clone())
        .data(anchoring::ChainView(services.anchoring().cloned()))
        .data(metrics)
        .finish()
}

/// The schema with its limits and no data yet: what [`build_schema`] adds the vault and jobs
/// to, and what the request-path fuzz target (`server/fuzz`) runs requests against, so that both
/// enforce the same limits.
pub fn limited_schema(
    limits: QueryLimits,
) -> SchemaBuilder<QueryRoot, MutationRoot, EmptySubscription> {
    let builder = Schema::build(QueryRoot, MutationRoot, EmptySubscription)
        .extension(VaultErrorCodes)
        .limit_depth(limits.max_depth)
        .limit_complexity(limits.max_complexity)
        .limit_recursive_depth(32)
        .limit_directives(16);
    if limits.introspection {
        builder
    } else {
        builder.disable_introspection().disable_suggestions()
    }
}

/// The schema's SDL with fields sorted, as committed in `schema.graphql`.
pub fn sdl() -> String {
    Schema::build(QueryRoot, MutationRoot, EmptySubscription)
        .finish()
        .sdl_with_options(SDLExportOptions::new().sorted_fields().sorted_enum_items())
}

/// What the HTTP layer attaches to each request before executing it. Every operation of one
/// HTTP request (a batch) shares it.
#[derive(Clone)]
pub struct RequestContext {
    /// The caller, if a live bearer token was sent.
    pub actor: Option<Actor>,
    /// The bearer token as sent, for `logout`.
    pub token: Option<String>,
    /// The client's address, for counting failed logins.
    pub client_address: Option<IpAddr>,
    /// Set by the first `login` of the HTTP request: aliases and batches cannot multiply
    /// password guesses.
    pub login_attempted: Arc<AtomicBool>,
    /// Whom directory data (users, organizations) is read for: the caller, or the account a
    /// `login` of this request opened, so that the login's own answer can show its user. It
    /// authorizes nothing else: operations authorize with [`RequestContext::actor`].
    pub viewer: Arc<OnceLock<Actor>>,
}

impl RequestContext {
    /// The context of one HTTP request from `client_address`.
    pub fn new(
        actor: Option<Actor>,
        token: Option<String>,
        client_address: Option<IpAddr>,
    ) -> Self {
        let viewer = OnceLock::new();
        if let Some(actor) = actor {
            let _ = viewer.set(actor);
        }
        RequestContext {
            actor,
            token,
            client_address,
            login_attempted: Arc::new(AtomicBool::new(false)),
            viewer: Arc::new(viewer),
        }
    }

    /// Makes the account a login opened the viewer of the rest of this request's answer, unless
    /// the caller already is someone.
    pub fn sign_in(&self, actor: Actor) {
        let _ = self.viewer.set(actor);
    }
}

/// Adds the per-request data (caller, user loader) to a request.
pub fn attach_request_data(
    request: async_graphql::Request,
    vault: &Vault,
    context: RequestContext,
) -> async_graphql::Request {
    let loader = loaders::UserLoader {
        vault: vault.clone(),
        viewer: context.viewer.clone(),
    };
    request
        .data(context)
        .data(DataLoader::new(loader, tokio::spawn))
}

/// The refusal of a request that needs a signed-in caller.
const NOT_SIGNED_IN: ApiError =
    ApiError::Unauthenticated("sign in first: send Authorization: Bearer <token>");

/// The caller, or UNAUTHENTICATED.
fn actor(ctx: &Context<'_>) -> ApiResult<Actor> {
    ctx.data_opt::<RequestContext>()
        .and_then(|request| request.actor)
        .ok_or(NOT_SIGNED_IN)
}

/// Whom directory data is read for ([`RequestContext::viewer`]), or UNAUTHENTICATED.
fn viewer(ctx: &Context<'_>) -> ApiResult<Actor> {
    ctx.data_opt::<RequestContext>()
        .and_then(|request| request.viewer.get().copied())
        .ok_or(NOT_SIGNED_IN)
}

/// The vault, and the caller's permit to perform `action` on `patient`'s data: how every field
/// that reaches health data starts.
async fn permit<'ctx>(
    ctx: &Context<'ctx>,
    patient: Uuid,
    action: AuditedAction,
    record: Option<Uuid>,
) -> async_graphql::Result<(&'ctx Vault, Permit)> {
    let vault = ctx.data::<Vault>()?;
    let permit = vault
        .authorize(&actor(ctx)?, patient, action, record)
        .await?;
    Ok((vault, permit))
}

/// A list position that can travel as an opaque cursor.
trait Cursor: Sized {
    fn encode(&self) -> String;
    fn decode(text: &str) -> Option<Self>;
}

const DEFAULT_PAGE_SIZE: i32 = 20;
const MAX_PAGE_SIZE: i32 = 100;

/// Checks Relay pagination arguments and decodes the cursor.
fn page_request<C: Cursor>(after: Option<String>, first: Option<i32>) -> ApiResult<PageRequest<C>> {
    let first = first.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(0..=MAX_PAGE_SIZE).contains(&first) {
        return Err(ApiError::BadUserInput(format!(
            "first must be between 0 and {MAX_PAGE_SIZE}"
        )));
    }
    let after = match after {
        None => None,
        Some(cursor) => Some(
            URL_SAFE_NO_PAD
                .decode(cursor)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .and_then(|text| C::decode(&text))
                .ok_or_else(|| {
                    ApiError::BadUserInput("after is not a cursor of this list".into())
                })?,
        ),
    };
    Ok(PageRequest {
        after,
        first: i64::from(first),
    })
}

/// Turns a vault page into a Relay connection.
fn to_connection<T, G: OutputType, C: Cursor>(
    page: Page<T>,
    cursor: impl Fn(&T) -> C,
    wrap: impl Fn(T) -> G,
) -> Connection<String, G> {
    let mut connection = Connection::new(false, page.has_next_page);
    connection.edges.extend(page.items.into_iter().map(|item| {
        let position = URL_SAFE_NO_PAD.encode(cursor(&item).encode());
        Edge::new(position, wrap(item))
    }));
    connection
}
