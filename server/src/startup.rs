//! Building and running the process: the one wiring point ([`Application`], the HTTP server
//! over the vault's [`Services`]) and the one route table.

use crate::configuration::ApplicationConfig;
use crate::error::{parse_id, ApiError};
use crate::graphql::bounds::check_request;
use crate::graphql::{self, DocumentBounds, MedvaultSchema, RequestContext};
use crate::metrics::Metrics;
use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use async_graphql::http::GraphiQLSource;
use async_graphql::{BatchRequest, BatchResponse, ErrorExtensionValues, Response};
use medvault_vault::exports::Exports;
use medvault_vault::{Services, StartError, Vault};
use std::net::TcpListener;
use std::time::Instant;
use tracing::Instrument;

/// The process could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Binding the listening socket failed.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address asked for.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// The metrics registry refused a metric.
    #[error("metrics")]
    Metrics(#[from] prometheus::Error),
    /// The vault's services did not start.
    #[error(transparent)]
    Services(#[from] StartError),
}

/// A built, bound application, ready to run: the HTTP server and the [`Services`] under it.
pub struct Application {
    server: Server,
    port: u16,
    services: Services,
}

struct AppState {
    schema: MedvaultSchema,
    vault: Vault,
    exports: Exports,
    metrics: Metrics,
    graphiql: bool,
    max_batch_operations: usize,
    document_bounds: DocumentBounds,
}

impl Application {
    /// Builds the whole process from `config`. The port is bound first, so that a port in use
    /// fails at once and changes nothing; then the [`Services`] start; then the route table is
    /// built over them. Nothing is served until [`Application::run_until_stopped`].
    pub async fn build(config: ApplicationConfig) -> Result<Self, StartupError> {
        let settings = &config.settings;
        let bind_error = |source| StartupError::Bind {
            address: settings.bind.to_string(),
            source,
        };
        let listener = TcpListener::bind(settings.bind).map_err(bind_error)?;
        let port = listener.local_addr().map_err(bind_error)?.port();
        let services = Services::start(&config.vault).await?;
        let server_metrics = Metrics::new()?;
        let state = web::Data::new(AppState {
            schema: graphql::build_schema(&services, server_metrics.clone(), settings.limits),
            vault: services.vault().clone(),
            exports: services.exports().clone(),
            metrics: server_metrics,
            graphiql: settings.graphiql,
            max_batch_operations: settings.max_batch_operations,
            document_bounds: settings.limits.document,
        });
        let max_body_bytes = settings.max_body_bytes;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(max_body_bytes))
                .wrap(actix_web::middleware::from_fn(observe))
                .route("/graphql", web::post().to(graphql_endpoint))
                .route("/graphql", web::get().to(graphiql))
                .route("/exports/{job}/{file}", web::get().to(export_file))
                .route(
                    graphql::consent::PROVING_KEY_PATH,
                    web::get().to(consent_proving_key),
                )
                .route("/health", web::get().to(health))
                .route("/ready", web::get().to(ready))
                .route("/metrics", web::get().to(metrics))
        })
        .workers(settings.workers)
        .listen(listener)
        .map_err(bind_error)?
        .run();
        Ok(Application {
            server,
            port,
            services,
        })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The services the application runs (the vault, exports, the anchoring worker).
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Serves until the process is told to stop (SIGINT/SIGTERM), then stops the anchoring
    /// worker and shuts its chain down.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.services.stop().await;
        served
    }

    /// Stops what was started without serving (for `medvault demo --seed-only`).
    pub async fn stop(self) {
        self.services.stop().await;
    }
}

/// Gives each request an id, logs it without its body or query string, and records metrics.
async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4();
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().to_string();
    let state = request.app_data::<web::Data<AppState>>().cloned();
    let span = tracing::info_span!("request", %request_id, %method, %route);
    let mut response = next.call(request).instrument(span.clone()).await?;
    let status = response.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    if let Some(state) = state {
        state.metrics.observe_request(&route, status, seconds);
    }
    if let Ok(value) = HeaderValue::from_str(&request_id.to_string()) {
        response
            .headers_mut()
            .insert(header::HeaderName::from_static("x-request-id"), value);
    }
    span.in_scope(|| tracing::info!(status, latency_ms = seconds * 1000.0, "request finished"));
    Ok(response)
}

fn bearer_token(request: &HttpRequest) -> Option<String> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(token.trim().to_owned())
}

fn error_response(code: &'static str, message: String) -> Response {
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", code);
    let mut error = async_graphql::ServerError::new(message, None);
    error.extensions = Some(extensions);
    Response::from_errors(vec![error])
}

/// Whether the body is declared as JSON. Anything else (`text/plain`, forms) is refused, so
/// that a browser cannot send a GraphQL request across origins without a CORS preflight.
fn declares_json(request: &HttpRequest) -> bool {
    let Some(value) = request.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let essence = value
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    essence.eq_ignore_ascii_case("application/json")
        || essence.eq_ignore_ascii_case("application/graphql-response+json")
}

/// Checks every operation of a batch against the document bounds, parsing each once (the
/// parsed document is kept for execution).
fn check_batch(batch: &mut BatchRequest, bounds: &DocumentBounds) -> Result<(), String> {
    let many = matches!(batch, BatchRequest::Batch(requests) if requests.len() > 1);
    for (index, request) in batch.iter_mut().enumerate() {
        if let Err(error) = check_request(request, bounds) {
            return Err(if many {
                format!("operation {index} of the batch: {error}")
            } else {
                error.to_string()
            });
        }
    }
    Ok(())
}

async fn graphql_endpoint(
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    if !declares_json(&request) {
        state.metrics.observe_graphql_error("BAD_REQUEST");
        let response = error_response(
            "BAD_REQUEST",
            "send GraphQL requests as Content-Type: application/json".into(),
        );
        return HttpResponse::UnsupportedMediaType().json(response);
    }
    let mut batch: BatchRequest = match serde_json::from_slice(&body) {
        Ok(batch) => batch,
        Err(_) => {
            state.metrics.observe_graphql_error("BAD_REQUEST");
            let response = error_response(
                "BAD_REQUEST",
                "body is not a GraphQL request in JSON".into(),
            );
            return HttpResponse::BadRequest().json(response);
        }
    };
    let operations = match &batch {
        BatchRequest::Single(_) => 1,
        BatchRequest::Batch(requests) => requests.len(),
    };
    if operations == 0 || operations > state.max_batch_operations {
        state.metrics.observe_graphql_error("BAD_REQUEST");
        let message = format!(
            "a batch carries 1 to {} operations",
            state.max_batch_operations
        );
        return HttpResponse::BadRequest().json(error_response("BAD_REQUEST", message));
    }
    if let Err(message) = check_batch(&mut batch, &state.document_bounds) {
        state.metrics.observe_graphql_error("BAD_USER_INPUT");
        return HttpResponse::BadRequest().json(error_response("BAD_USER_INPUT", message));
    }
    let token = bearer_token(&request);
    let actor = match &token {
        Some(token) => match state.vault.authenticate(token).await {
            Ok(actor) => actor,
            Err(error) => {
                return HttpResponse::ServiceUnavailable().json(ApiError::from(error).to_response())
            }
        },
        None => None,
    };
    let context = RequestContext::new(actor, token, request.peer_addr().map(|peer| peer.ip()));
    let batch = match batch {
        BatchRequest::Single(single) => {
            BatchRequest::Single(graphql::attach_request_data(single, &state.vault, context))
        }
        BatchRequest::Batch(requests) => BatchRequest::Batch(
            requests
                .into_iter()
                .map(|single| graphql::attach_request_data(single, &state.vault, context.clone()))
                .collect(),
        ),
    };
    let mut response = state.schema.execute_batch(batch).await;
    match &mut response {
        BatchResponse::Single(single) => label_errors(&state.metrics, single),
        BatchResponse::Batch(responses) => responses
            .iter_mut()
            .for_each(|single| label_errors(&state.metrics, single)),
    }
    HttpResponse::Ok().json(response)
}

/// Gives every error an `extensions.code`: ours carry one already; what async-graphql itself
/// rejects (syntax, unknown fields, wrong argument types, depth and complexity limits) is the
/// caller's input.
fn label_errors(metrics: &Metrics, response: &mut Response) {
    for error in &mut response.errors {
        let extensions = error
            .extensions
            .get_or_insert_with(ErrorExtensionValues::default);
        let code = match extensions.get("code") {
            Some(async_graphql::Value::String(code)) => code.clone(),
            _ => {
                extensions.set("code", "BAD_USER_INPUT");
                "BAD_USER_INPUT".to_owned()
            }
        };
        metrics.observe_graphql_error(&code);
    }
}

/// Streams one file of a finished export to a member of the requesting organization.
async fn export_file(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (job, file) = path.into_inner();
    let refuse = |status: actix_web::http::StatusCode, error: ApiError| {
        HttpResponse::build(status).json(error.to_response())
    };
    let actor = match bearer_token(&request) {
        Some(token) => state.vault.authenticate(&token).await,
        None => Ok(None),
    };
    let actor = match actor {
        Ok(Some(actor)) => actor,
        Ok(None) => {
            return refuse(
                actix_web::http::StatusCode::UNAUTHORIZED,
                ApiError::Unauthenticated("send Authorization: Bearer <token>"),
            )
        }
        Err(error) => {
            return refuse(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                error.into(),
            )
        }
    };
    let located = match parse_id(&async_graphql::ID(job), "job") {
        Ok(job) => state
            .exports
            .file(&actor, job, &file)
            .await
            .map_err(ApiError::from),
        Err(_) => Err(ApiError::NotFound("export job")),
    };
    let path = match located {
        Ok(path) => path,
        Err(error @ ApiError::Internal(_)) => {
            return refuse(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR, error)
        }
        Err(error) => return refuse(actix_web::http::StatusCode::NOT_FOUND, error),
    };
    let opened = match tokio::fs::File::open(&path).await {
        Ok(opened) => opened,
        Err(error) => {
            tracing::error!(%error, "an export file listed in its manifest cannot be opened");
            return refuse(
                actix_web::http::StatusCode::NOT_FOUND,
                ApiError::NotFound("export file"),
            );
        }
    };
    let content_type = match file.rsplit_once('.').map(|(_, extension)| extension) {
        Some("json") => "application/json",
        Some("arrow") => "application/vnd.apache.arrow.file",
        Some("parquet") => "application/vnd.apache.parquet",
        _ => "application/octet-stream",
    };
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{file}\""),
        ))
        .streaming(tokio_util::io::ReaderStream::new(opened))
}

async fn graphiql(state: web::Data<AppState>) -> HttpResponse {
    if !state.graphiql {
        return HttpResponse::NotFound().body("GraphiQL is off; POST GraphQL requests to /graphql");
    }
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(GraphiQLSource::build().endpoint("/graphql").finish())
}

/// The consent circuit's proving key, public: a client checks it against `consentKeys
/// { provingKeyHash }` before proving with it.
async fn consent_proving_key(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header(("Cache-Control", "public, max-age=3600"))
        .body(actix_web::web::Bytes::from_owner(
            state.vault.consent_proving_key(),
        ))
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let reachable = match state.vault.pool().get().await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    };
    if reachable {
        HttpResponse::Ok().body("ready")
    } else {
        HttpResponse::ServiceUnavailable().body("database unreachable")
    }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render(state.vault.pool()))
}
