//! The PostgreSQL connection pool and the schema migrations applied at start.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Connecting or migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// `DATABASE_URL` is not a valid connection string.
    #[error("invalid database URL")]
    InvalidUrl(#[source] tokio_postgres::Error),
    /// The pool could not be built.
    #[error("database pool")]
    Pool(#[from] deadpool_postgres::BuildError),
    /// No connection could be had.
    #[error("database connection")]
    Connect(#[from] deadpool_postgres::PoolError),
    /// A statement failed.
    #[error("database")]
    Query(#[from] tokio_postgres::Error),
    /// A migration failed.
    #[error("schema migration")]
    Migration(#[from] refinery::Error),
}

/// Builds a pool of at most `max_size` connections; connections are opened lazily.
pub fn connect_pool(url: &str, max_size: usize) -> Result<Pool, DatabaseError> {
    let config: tokio_postgres::Config = url.parse().map_err(DatabaseError::InvalidUrl)?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager).max_size(max_size).build()?)
}

/// Applies the embedded migrations. An advisory lock makes concurrent starts of several servers
/// against one database safe: one migrates, the others wait and find nothing to do.
pub async fn migrate(pool: &Pool) -> Result<(), DatabaseError> {
    const MIGRATION_LOCK: i64 = 0x6d65_6476_6175_6c74; // "medvault"
    let mut connection = pool.get().await?;
    connection
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let client: &mut tokio_postgres::Client = &mut connection;
    let migrated = embedded::migrations::runner().run_async(client).await;
    connection
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    migrated?;
    Ok(())
}

/// Creates an empty database `name` through a maintenance connection (for tests and the demo).
pub async fn create_database(maintenance_url: &str, name: &str) -> Result<(), DatabaseError> {
    let (client, connection) = tokio_postgres::connect(maintenance_url, NoTls).await?;
    let driver = tokio::spawn(connection);
    let quoted = name.replace('"', "\"\"");
    client
        .batch_execute(&format!("CREATE DATABASE \"{quoted}\""))
        .await?;
    drop(client);
    let _ = driver.await;
    Ok(())
}
