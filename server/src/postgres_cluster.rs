//! A private, throwaway PostgreSQL cluster started from the machine's own binaries, for
//! `medvault demo`, `serve` without `DATABASE_URL`, and the tests (MISSION.md decision 8).
//!
//! The cluster listens only on a unix socket in its own temporary directory (no TCP port to
//! collide with), runs without fsync since it is thrown away, and is stopped and deleted when the
//! handle is dropped. As root, PostgreSQL refuses to run, so every command goes through
//! `runuser -u postgres`.

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
        let root =
            std::env::temp_dir().join(format!("medvault-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&root)?;
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
