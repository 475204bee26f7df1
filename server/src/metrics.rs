//! Prometheus metrics: requests and latency by route, GraphQL errors by code, and the database
//! pool, served in the text exposition format on `/metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// The server's metrics, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    graphql_errors: IntCounterVec,
    logins: IntCounterVec,
    pool_size: IntGauge,
    pool_available: IntGauge,
    pool_waiting: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "medvault_http_requests_total",
                "HTTP requests by route and status",
            ),
            &["route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "medvault_http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["route"],
        )?;
        let graphql_errors = IntCounterVec::new(
            Opts::new(
                "medvault_graphql_errors_total",
                "GraphQL errors by extensions.code",
            ),
            &["code"],
        )?;
        let logins = IntCounterVec::new(
            Opts::new(
                "medvault_login_attempts_total",
                "Login attempts by outcome: success, wrong_password, throttled, error",
            ),
            &["outcome"],
        )?;
        let pool_size = IntGauge::new("medvault_db_pool_connections", "Open database connections")?;
        let pool_available =
            IntGauge::new("medvault_db_pool_available", "Idle database connections")?;
        let pool_waiting = IntGauge::new(
            "medvault_db_pool_waiting",
            "Requests waiting for a connection",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(graphql_errors.clone()))?;
        registry.register(Box::new(logins.clone()))?;
        registry.register(Box::new(pool_size.clone()))?;
        registry.register(Box::new(pool_available.clone()))?;
        registry.register(Box::new(pool_waiting.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            latency,
            graphql_errors,
            logins,
            pool_size,
            pool_available,
            pool_waiting,
        })
    }

    /// Counts one finished request.
    pub fn observe_request(&self, route: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        self.latency.with_label_values(&[route]).observe(seconds);
    }

    /// Counts one GraphQL error.
    pub fn observe_graphql_error(&self, code: &str) {
        self.graphql_errors.with_label_values(&[code]).inc();
    }

    /// Counts one login attempt by its outcome.
    pub fn observe_login(&self, outcome: &str) {
        self.logins.with_label_values(&[outcome]).inc();
    }

    /// Renders every metric, sampling the pool first.
    pub fn render(&self, pool: &deadpool_postgres::Pool) -> String {
        let status = pool.status();
        self.pool_size.set(status.size as i64);
        self.pool_available.set(status.available as i64);
        self.pool_waiting.set(status.waiting as i64);
        let mut buffer = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::error!(%error, "could not encode metrics");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}
