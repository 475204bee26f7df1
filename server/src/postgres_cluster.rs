//! A private, throwaway PostgreSQL cluster started from the machine's own binaries, for
//! `medvault demo`, `serve` without `DATABASE_URL`, and the tests (MISSION.md decision 8).
//!
//! The cluster listens only on a unix socket in its own temporary directory (no TCP port to
//! collide with), runs without fsync since it is thrown away, and is stopped and deleted when the
//! handle is dropped. As root, PostgreSQL refuses to run, so every command goes through
//! `runuser -u postgres`.
//!
//! A process that crashes or is killed never drops its handle, so each cluster directory names
//! its owner's process id, and every start first stops and deletes the clusters whose owner is
//! gone.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// initdb or pg_ctl is not installed where we look.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH or in \
         /usr/lib/postgresql/*/bin: install them (Debian/Ubuntu: apt-get install postgresql) \
         or set DATABASE_URL to an existing server"
    )]
    BinariesMissing,
    /// Running as root, but there is no `postgres` user to run the server as.
    #[error("running as root needs a 'postgres' system user to own the cluster (apt-get install postgresql creates it)")]
    NoPostgresUser,
    /// A set-up command failed; its output is in the log named.
    #[error("{step} failed ({status}); see {log}")]
    CommandFailed {
        /// What was being done.
        step: &'static str,
        /// How the command ended.
        status: String,
        /// The log file with its output.
        log: String,
    },
    /// A file system operation failed.
    #[error("throwaway cluster: {0}")]
    Io(#[from] std::io::Error),
}

/// A running throwaway cluster. Dropping it stops the server and deletes its files.
pub struct ThrowawayCluster {
    root: PathBuf,
    bin_dir: PathBuf,
    run_as_postgres: bool,
    running: bool,
}

impl ThrowawayCluster {
    /// Creates and starts a cluster in a new temporary directory; blocks until it accepts
    /// connections.
    pub fn start() -> Result<Self, ClusterError> {
        let bin_dir = find_bin_dir().ok_or(ClusterError::BinariesMissing)?;
        let run_as_postgres = running_as_root();
        if run_as_postgres && !postgres_user_exists() {
            return Err(ClusterError::NoPostgresUser);
        }
        reap_abandoned_clusters(&bin_dir, run_as_postgres);
        let root = std::env::temp_dir().join(format!(
            "{CLUSTER_DIR_PREFIX}{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&root)?;
        std::fs::write(root.join(OWNER_FILE), std::process::id().to_string())?;
        let mut cluster = ThrowawayCluster {
            root,
            bin_dir,
            run_as_postgres,
            running: false,
        };
        if run_as_postgres {
            cluster.run(
                "chown",
                Command::new("chown").arg("postgres:").arg(&cluster.root),
            )?;
        }
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            cluster.pg_command("initdb").arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ]),
        )?;
        let options = format!(
            "-c listen_addresses='' -k {} -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300 -c shared_buffers=256MB",
            cluster.root.display()
        );
        cluster.run(
            "pg_ctl start",
            cluster
                .pg_command("pg_ctl")
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(cluster.root.join("postgres.log"))
                .args(["-w", "-t", "60", "-o", &options, "start"]),
        )?;
        cluster.running = true;
        Ok(cluster)
    }

    /// A handle on a cluster directory left behind by another process, to stop and delete it.
    fn abandoned(root: PathBuf, bin_dir: &Path, run_as_postgres: bool) -> Self {
        let running = root.join("data").join("postmaster.pid").exists();
        ThrowawayCluster {
            root,
            bin_dir: bin_dir.to_path_buf(),
            run_as_postgres,
            running,
        }
    }

    /// A libpq-style connection string for `database` on this cluster.
    pub fn connection_string(&self, database: &str) -> String {
        format!(
            "host={} user=postgres dbname={database}",
            self.root.display()
        )
    }

    /// The directory holding the server's binaries (for `pg_dump` and friends).
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// A command for one of the PostgreSQL binaries, run as the cluster's owner.
    pub fn pg_command(&self, program: &str) -> Command {
        let binary = self.bin_dir.join(program);
        let mut command = if self.run_as_postgres {
            let mut runuser = Command::new("runuser");
            runuser.args(["-u", "postgres", "--"]).arg(binary);
            runuser
        } else {
            Command::new(binary)
        };
        command.current_dir(&self.root);
        command
    }

    fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    fn run(&self, step: &'static str, command: &mut Command) -> Result<(), ClusterError> {
        let log_path = self.root.join("setup.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let status = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(ClusterError::CommandFailed {
                step,
                status: status.to_string(),
                log: log_path.display().to_string(),
            })
        }
    }
}

impl Drop for ThrowawayCluster {
    fn drop(&mut self) {
        if self.running {
            let stopped = self.run(
                "pg_ctl stop",
                self.pg_command("pg_ctl")
                    .arg("-D")
                    .arg(self.data_dir())
                    .args(["-m", "immediate", "-w", "stop"]),
            );
            if let Err(error) = stopped {
                tracing::warn!(%error, "could not stop the throwaway PostgreSQL cluster");
                return;
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Every throwaway cluster directory is named with this prefix in the temporary directory.
const CLUSTER_DIR_PREFIX: &str = "medvault-pg-";
/// The file in a cluster directory holding the owning process's id.
const OWNER_FILE: &str = "owner.pid";
/// A directory without an owner file this old is a leftover, not one being set up.
const UNOWNED_GRACE: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// Stops and deletes the throwaway clusters whose owning process no longer runs. Best effort:
/// a leftover that cannot be removed now is tried again at the next start.
fn reap_abandoned_clusters(bin_dir: &Path, run_as_postgres: bool) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let is_cluster = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(CLUSTER_DIR_PREFIX));
        if !is_cluster || !is_abandoned(&entry.path()) {
            continue;
        }
        tracing::info!(directory = %entry.path().display(), "removing a throwaway PostgreSQL cluster left by a stopped process");
        drop(ThrowawayCluster::abandoned(
            entry.path(),
            bin_dir,
            run_as_postgres,
        ));
    }
}

/// Whether the cluster directory's owner is gone: its process id names no live process, or it
/// has had no owner file for longer than setting one up takes.
fn is_abandoned(root: &Path) -> bool {
    match std::fs::read_to_string(root.join(OWNER_FILE)) {
        Ok(pid) => pid
            .trim()
            .parse::<libc::pid_t>()
            .is_ok_and(|pid| !process_is_alive(pid)),
        Err(_) => std::fs::metadata(root)
            .and_then(|metadata| metadata.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > UNOWNED_GRACE),
    }
}

fn process_is_alive(pid: libc::pid_t) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn find_bin_dir() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .find(|dir| has_both(dir))
        // A PATH entry may hold only links to initdb and pg_ctl; the real directory has the
        // rest of the tools (pg_dump) too.
        .map(|dir| {
            std::fs::canonicalize(dir.join("initdb"))
                .ok()
                .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
                .filter(|real| has_both(real))
                .unwrap_or(dir)
        });
    on_path.or_else(|| {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = entry.path().join("bin");
                has_both(&bin).then_some((version, bin))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, bin)| bin)
    })
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn postgres_user_exists() -> bool {
    Command::new("id")
        .args(["-u", "postgres"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A PostgreSQL server on which tests and benchmarks create scratch databases: the one
/// `DATABASE_URL` names or, when it is unset, a throwaway cluster started on first use and
/// stopped when the process exits.
pub struct ScratchServer {
    maintenance_url: String,
    bin_dir: Option<PathBuf>,
}

static SCRATCH_CLUSTER: std::sync::Mutex<Option<ThrowawayCluster>> = std::sync::Mutex::new(None);

extern "C" fn stop_scratch_cluster() {
    if let Ok(mut cluster) = SCRATCH_CLUSTER.lock() {
        cluster.take();
    }
}

impl ScratchServer {
    /// The process's scratch server, started on first call.
    pub fn get() -> Result<&'static ScratchServer, ClusterError> {
        static SERVER: std::sync::OnceLock<ScratchServer> = std::sync::OnceLock::new();
        if let Some(server) = SERVER.get() {
            return Ok(server);
        }
        let server = match std::env::var("DATABASE_URL") {
            Ok(url) => ScratchServer {
                maintenance_url: url,
                bin_dir: None,
            },
            Err(_) => {
                let cluster = ThrowawayCluster::start()?;
                let server = ScratchServer {
                    maintenance_url: cluster.connection_string("postgres"),
                    bin_dir: Some(cluster.bin_dir().to_path_buf()),
                };
                if let Ok(mut slot) = SCRATCH_CLUSTER.lock() {
                    if slot.is_none() {
                        *slot = Some(cluster);
                        // SAFETY: registers a function without arguments to run at exit; it only
                        // takes the cluster out of a mutex and drops it.
                        unsafe { libc::atexit(stop_scratch_cluster) };
                    }
                }
                server
            }
        };
        Ok(SERVER.get_or_init(|| server))
    }

    /// Creates a new, empty database and returns its connection string.
    pub async fn create_database(&self) -> Result<String, medvault_vault::database::DatabaseError> {
        let name = format!("scratch_{}", uuid::Uuid::new_v4().simple());
        medvault_vault::database::create_database(&self.maintenance_url, &name).await?;
        Ok(connection_string_for(&self.maintenance_url, &name))
    }

    /// The path of a PostgreSQL client program (`pg_dump`, `psql`) matching the server.
    pub fn program(&self, name: &str) -> PathBuf {
        match &self.bin_dir {
            Some(dir) => dir.join(name),
            None => PathBuf::from(name),
        }
    }
}

/// The connection string of database `name` on the server `url` points at, for both URL and
/// key-value forms.
fn connection_string_for(url: &str, name: &str) -> String {
    let url_form = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"));
    match url_form {
        Some(rest) => {
            let (authority_and_path, query) = rest
                .split_once('?')
                .map_or((rest, None), |(a, q)| (a, Some(q)));
            let authority = authority_and_path
                .split_once('/')
                .map_or(authority_and_path, |(a, _)| a);
            match query {
                Some(query) => format!("postgresql://{authority}/{name}?{query}"),
                None => format!("postgresql://{authority}/{name}"),
            }
        }
        None => {
            let kept: Vec<&str> = url
                .split_whitespace()
                .filter(|part| !part.starts_with("dbname="))
                .collect();
            format!("{} dbname={name}", kept.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{connection_string_for, is_abandoned, OWNER_FILE};

    #[test]
    fn a_cluster_whose_owner_is_gone_is_abandoned() {
        let root = std::env::temp_dir().join(format!("owner-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join(OWNER_FILE), std::process::id().to_string()).unwrap();
        assert!(!is_abandoned(&root), "this process is alive");
        let mut finished = std::process::Command::new("true").spawn().unwrap();
        let gone = finished.id();
        finished.wait().unwrap();
        std::fs::write(root.join(OWNER_FILE), gone.to_string()).unwrap();
        assert!(is_abandoned(&root), "a reaped child is gone");
        std::fs::remove_file(root.join(OWNER_FILE)).unwrap();
        assert!(
            !is_abandoned(&root),
            "a fresh directory may be being set up"
        );
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn scratch_databases_keep_the_server_and_change_the_name() {
        assert_eq!(
            connection_string_for("postgresql://u:p@db:5433/postgres?sslmode=disable", "t1"),
            "postgresql://u:p@db:5433/t1?sslmode=disable"
        );
        assert_eq!(
            connection_string_for("postgres://localhost", "t1"),
            "postgresql://localhost/t1"
        );
        assert_eq!(
            connection_string_for("host=/tmp/x user=postgres dbname=postgres", "t1"),
            "host=/tmp/x user=postgres dbname=t1"
        );
    }
}
