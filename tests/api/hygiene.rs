//! API hygiene: the committed schema, health, readiness, metrics, request ids, introspection.

use crate::helpers::{spawn_app, spawn_app_with, AppOptions};
use serde_json::json;

#[test]
fn schema_graphql_matches_the_code() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .expect("schema.graphql");
    let generated = medvault_server::graphql::sdl();
    assert!(
        committed == generated,
        "schema.graphql is stale: run `cargo run -- schema > schema.graphql`"
    );
}

/// The vault knows no transport: its own dependency list names no HTTP, GraphQL or MQTT crate.
#[test]
fn the_vault_depends_on_no_transport() {
    const TRANSPORTS: [&str; 7] = [
        "actix",
        "async-graphql",
        "axum",
        "hyper",
        "reqwest",
        "rumqtt",
        "mqtt",
    ];
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/server/vault/Cargo.toml"
    ))
    .expect("server/vault/Cargo.toml");
    let dependencies: Vec<&str> = manifest
        .split("\n[")
        .filter(|section| section.starts_with("dependencies]"))
        .flat_map(|section| section.lines().skip(1))
        .filter_map(|line| line.split(['=', '.']).next())
        .map(str::trim)
        .filter(|name| !name.is_empty() && !name.starts_with('#'))
        .collect();
    assert!(dependencies.contains(&"tokio-postgres"), "{dependencies:?}");
    for dependency in &dependencies {
        assert!(
            !TRANSPORTS
                .iter()
                .any(|transport| dependency.contains(transport)),
            "the vault depends on {dependency}"
        );
    }
}

#[tokio::test]
async fn health_ready_and_metrics_answer() {
    let app = spawn_app().await;
    let health = app.get("/health").await;
    assert_eq!(health.status().as_u16(), 200);
    assert!(health.headers().contains_key("x-request-id"));
    assert_eq!(app.get("/ready").await.status().as_u16(), 200);

    app.graphql(None, "{ me { username } }", json!({}))
        .await
        .expect_error("UNAUTHENTICATED");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("medvault_http_requests_total{route=\"/graphql\",status=\"200\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("medvault_http_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains("medvault_graphql_errors_total{code=\"UNAUTHENTICATED\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("medvault_db_pool_connections"),
        "{metrics}"
    );
}

#[tokio::test]
async fn introspection_and_graphiql_are_off_unless_configured() {
    let introspect = "{ __schema { queryType { name } } }";
    let closed = spawn_app().await;
    let hidden = closed.graphql(None, introspect, json!({})).await;
    assert!(
        hidden.body["data"]["__schema"].is_null(),
        "introspection answered: {:#}",
        hidden.body
    );
    assert_eq!(closed.get("/graphql").await.status().as_u16(), 404);

    let open = spawn_app_with(AppOptions {
        introspection: true,
        ..AppOptions::default()
    })
    .await;
    let answer = open.graphql(None, introspect, json!({})).await;
    assert_eq!(answer.data()["__schema"]["queryType"]["name"], "QueryRoot");
    let full = open
        .graphql(None, FULL_INTROSPECTION_QUERY, json!({}))
        .await;
    assert!(
        full.data()["__schema"]["types"].as_array().unwrap().len() > 20,
        "GraphiQL's introspection fits the limits"
    );
    let page = open.get("/graphql").await;
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("graphiql"));
}

/// The introspection query GraphiQL sends (TypeRef nested nine deep).
const FULL_INTROSPECTION_QUERY: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) { name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } } }
}
"#;
