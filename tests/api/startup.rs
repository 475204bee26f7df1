//! What `medvault serve` checks before it serves: the port, the master key against the
//! database, and the throwaway clusters of processes that died.

use crate::helpers::{consent_config, consent_keys, spawn_app, spawn_app_with, AppOptions};
use medvault_server::postgres_cluster::{ScratchServer, ThrowawayCluster};
use medvault_vault::anchoring::ChainMismatch;
use medvault_vault::database;
use medvault_vault::MasterKeySource;
use medvault_vault::{ChainTarget, Services, StartError, VaultConfig};
use medvault_vault::{OpenVaultError, Vault};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn scratch_dir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "medvault-{label}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

fn write_key_file(path: &Path, hex: &str) {
    std::fs::write(path, hex).expect("key file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// Runs `medvault serve` on a free port against `database_url` with the key file `key`, for a
/// start that is expected to fail.
fn serve_expecting_failure(database_url: &str, key: &Path, bind: &str) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_medvault"))
        .args(["serve", "--bind", bind])
        .env("DATABASE_URL", database_url)
        .env("MEDVAULT_MASTER_KEY_FILE", key)
        .env_remove("MEDVAULT_MASTER_KEY")
        .env("MEDVAULT_CONSENT_KEYS", &consent_keys().0)
        .output()
        .expect("run medvault serve");
    assert!(
        !output.status.success(),
        "serve started: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

const OTHER_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[tokio::test]
async fn a_wrong_master_key_refuses_to_start_and_names_the_file() {
    let app = spawn_app().await;
    app.care_team().await;
    let dir = scratch_dir("wrong-key");
    let key = dir.join("master.key");
    write_key_file(&key, OTHER_KEY);
    let output = serve_expecting_failure(&app.database_url, &key, "127.0.0.1:0");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&key.display().to_string()) && stderr.contains("is not the master key"),
        "{stderr}"
    );

    let opened = Vault::open(
        app.vault.pool().clone(),
        &MasterKeySource::Hex(OTHER_KEY.into()),
        chrono::Duration::hours(1),
        consent_config(),
    )
    .await;
    assert!(matches!(opened, Err(OpenVaultError::WrongKey { .. })));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_missing_key_file_for_a_database_in_use_is_an_error_not_a_new_key() {
    let app = spawn_app().await;
    app.care_team().await;
    let dir = scratch_dir("missing-key");
    let key = dir.join("mistyped.key");
    let output = serve_expecting_failure(&app.database_url, &key, "127.0.0.1:0");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&key.display().to_string()) && stderr.contains("does not exist"),
        "{stderr}"
    );
    assert!(!key.exists(), "no new key was made");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_database_from_before_key_checks_is_verified_against_its_patients() {
    let app = spawn_app().await;
    app.care_team().await;
    app.sql("DELETE FROM master_key_check").await;
    let open = |hex: &str| {
        let source = MasterKeySource::Hex(hex.into());
        let pool = app.vault.pool().clone();
        async move { Vault::open(pool, &source, chrono::Duration::hours(1), consent_config()).await }
    };
    assert!(matches!(
        open(OTHER_KEY).await,
        Err(OpenVaultError::WrongKey { .. })
    ));
    assert!(app.sql("SELECT 1 FROM master_key_check").await.is_empty());
    open(&app.master_key_hex)
        .await
        .expect("the right key opens");
    assert_eq!(app.sql("SELECT 1 FROM master_key_check").await.len(), 1);
}

#[tokio::test]
async fn the_port_is_bound_before_the_database_is_migrated() {
    let server = ScratchServer::get().expect("a PostgreSQL server");
    let database_url = server.create_database().await.expect("database");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let bind = taken.local_addr().expect("address").to_string();
    let dir = scratch_dir("port");
    let output = serve_expecting_failure(&database_url, &dir.join("master.key"), &bind);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot listen"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pool = database::connect_pool(&database_url, 1).expect("pool");
    let tables: i64 = pool
        .get()
        .await
        .expect("connection")
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .await
        .expect("count tables")
        .get(0);
    assert_eq!(tables, 0, "nothing was migrated");
    assert!(!dir.join("master.key").exists());
    let _ = std::fs::remove_dir_all(dir);
}

/// Whether `pid` has exited: gone, or a zombie its new parent has not reaped yet.
fn process_has_exited(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// The throwaway cluster directories whose owner file names `pid`.
fn clusters_owned_by(pid: u32) -> Vec<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .expect("temporary directory")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("medvault-pg-"))
                && std::fs::read_to_string(path.join("owner.pid"))
                    .is_ok_and(|owner| owner.trim() == pid.to_string())
        })
        .collect()
}

#[tokio::test]
async fn a_killed_server_leaves_no_throwaway_cluster_behind_its_next_start() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let dir = scratch_dir("killed");
    let mut server = Command::new(env!("CARGO_BIN_EXE_medvault"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        // A fresh throwaway database has no hospital to found an embedded chain with; a
        // cluster that cannot be reached is checked later and delays nothing.
        .args(["--chain-node", "127.0.0.1:9"])
        .env_remove("DATABASE_URL")
        .env("MEDVAULT_MASTER_KEY_FILE", dir.join("master.key"))
        .env("MEDVAULT_CONSENT_KEYS", &consent_keys().0)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start medvault serve");
    let health = format!("http://127.0.0.1:{port}/health");
    let mut up = false;
    for _ in 0..600 {
        if reqwest::get(&health).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "medvault serve did not come up");
    let left = clusters_owned_by(server.id());
    assert_eq!(left.len(), 1, "one throwaway cluster for the server");
    let postmaster_pid = std::fs::read_to_string(left[0].join("data/postmaster.pid"))
        .expect("postmaster.pid")
        .lines()
        .next()
        .and_then(|line| line.trim().parse::<i32>().ok())
        .expect("postmaster pid");
    server.kill().expect("kill");
    server.wait().expect("reap");
    assert!(
        left[0].exists(),
        "a killed server cannot clean up after itself"
    );

    let next = tokio::task::spawn_blocking(ThrowawayCluster::start)
        .await
        .expect("join")
        .expect("the next cluster starts");
    assert!(!left[0].exists(), "the next start removed the leftover");
    let mut stopped = false;
    for _ in 0..100 {
        if process_has_exited(postmaster_pid) {
            stopped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(stopped, "the leftover's postmaster was stopped");
    drop(next);
    let _ = std::fs::remove_dir_all(dir);
}

/// Services over the app's database anchoring on the embedded chain in `chain_dir`.
async fn services_on(
    app: &crate::helpers::TestApp,
    chain_dir: &Path,
) -> Result<Services, StartError> {
    Services::start(&VaultConfig {
        chain: ChainTarget::Embedded {
            dir: chain_dir.to_owned(),
            founders: Vec::new(),
        },
        consent_keys_dir: consent_keys().0.clone(),
        ..VaultConfig::new(
            app.database_url.clone(),
            MasterKeySource::Hex(app.master_key_hex.clone()),
        )
    })
    .await
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("copy directory");
    for file in std::fs::read_dir(from).expect("read directory") {
        let file = file.expect("directory entry");
        if file.file_type().expect("file type").is_dir() {
            copy_dir(&file.path(), &to.join(file.file_name()));
        } else {
            std::fs::copy(file.path(), to.join(file.file_name())).expect("copy a file");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refuses_a_chain_of_another_genesis_or_behind_its_database() {
    let app = spawn_app_with(AppOptions {
        anchoring: true,
        ..AppOptions::default()
    })
    .await;
    let care_team = app.care_team().await;
    app.add_record(&care_team.doctor, &care_team.patient_id, "61")
        .await;
    let anchoring = app.anchoring.as_ref().expect("anchoring");
    anchoring.wait_until_anchored().await.expect("anchored");
    anchoring.stop().await;
    let chain_dir = app.chain_dir.clone().expect("chain dir");
    let dir = scratch_dir("chain-check");
    let old_copy = dir.join("old-chain");
    copy_dir(&chain_dir, &old_copy);

    let other = services_on(&app, &dir.join("another-chain")).await;
    let Err(StartError::ChainMismatch(mismatch)) = other else {
        panic!("a chain of another genesis was accepted");
    };
    assert!(
        matches!(mismatch, ChainMismatch::OtherChain { .. }),
        "{mismatch}"
    );
    assert!(mismatch.to_string().contains("genesis"), "{mismatch}");

    let services = services_on(&app, &chain_dir)
        .await
        .expect("the database's own chain is accepted");
    let client = services.vault().pool().get().await.expect("connection");
    client
        .execute(
            "INSERT INTO anchor_outbox (entry) VALUES ($1)",
            &[&medvault_anchor_chain::entry::Entry::RecordAnchor {
                leaf: medvault_anchor_chain::bytes::Hash32::digest(&[b"later"]),
            }
            .canonical_bytes()],
        )
        .await
        .expect("queue an entry");
    drop(client);
    let worker = services.anchoring().expect("anchoring").clone();
    worker.wait_until_anchored().await.expect("anchored");
    services.stop().await;

    let behind = services_on(&app, &old_copy).await;
    let Err(StartError::ChainMismatch(mismatch)) = behind else {
        panic!("a chain behind the database was accepted");
    };
    assert!(
        matches!(
            mismatch,
            ChainMismatch::Behind { .. } | ChainMismatch::EntryElsewhere { .. }
        ),
        "{mismatch}"
    );

    let output = Command::new(env!("CARGO_BIN_EXE_medvault"))
        .args(["serve", "--bind", "127.0.0.1:0", "--chain-dir"])
        .arg(dir.join("another-chain"))
        .env("DATABASE_URL", &app.database_url)
        .env("MEDVAULT_MASTER_KEY", &app.master_key_hex)
        .env_remove("MEDVAULT_MASTER_KEY_FILE")
        .env("MEDVAULT_CONSENT_KEYS", &consent_keys().0)
        .output()
        .expect("run medvault serve");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success()
            && stderr.contains("refusing to start")
            && stderr.contains("genesis"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(chain_dir);
}
