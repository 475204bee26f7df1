//! `medvault demo`, `serve`, `admin` and `schema`: the command-line face of `medvault-server`.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use medvault_server::configuration::{ApplicationConfig, ServerSettings};
use medvault_server::graphql::QueryLimits;
use medvault_server::postgres_cluster::ThrowawayCluster;
use medvault_server::startup::Application;
use medvault_server::telemetry;
use medvault_vault::auth::Operator;
use medvault_vault::demo::{self, DemoSize};
use medvault_vault::domain::Role;
use medvault_vault::{database, ChainTarget, MasterKeySource, NewStaffUser, Services, VaultConfig};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Where the database and the master key come from.
#[derive(Args)]
pub struct StorageArgs {
    /// PostgreSQL connection string; when unset, a private throwaway cluster is started from the
    /// machine's PostgreSQL binaries and deleted on exit.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The master key file; created with mode 0600 if missing and the database holds nothing
    /// sealed yet. A missing or wrong key for a database in use refuses to start.
    #[arg(
        long,
        env = "MEDVAULT_MASTER_KEY_FILE",
        default_value = ".medvault/master.key"
    )]
    master_key_file: PathBuf,
    /// The master key as 64 hex digits, instead of a file.
    #[arg(
        long,
        env = "MEDVAULT_MASTER_KEY",
        hide_env_values = true,
        conflicts_with = "master_key_file"
    )]
    master_key: Option<String>,
    /// The directory of the consent circuit's Groth16 keys (from `medvault keys ceremony`);
    /// when it holds none, development keys are made there with a single-party setup.
    #[arg(
        long,
        env = "MEDVAULT_CONSENT_KEYS",
        default_value = ".medvault/consent-keys"
    )]
    consent_keys: PathBuf,
    /// The consent tree depth (4-ary levels; 10 holds 2^20 grants) of development keys made on
    /// a first start; existing keys bring their own.
    #[arg(long, env = "MEDVAULT_CONSENT_DEPTH", default_value_t = medvault_circuits::DEFAULT_DEPTH)]
    consent_depth: u32,
}

#[derive(Args)]
pub struct DemoArgs {
    #[command(flatten)]
    storage: StorageArgs,
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Patients per hospital.
    #[arg(long, default_value_t = 500)]
    patients_per_hospital: usize,
    /// Records per patient.
    #[arg(long, default_value_t = 20)]
    records_per_patient: usize,
    /// Seed, print the logins, and exit instead of serving.
    #[arg(long)]
    seed_only: bool,
    /// Where the demo doctors' grantee secrets are kept, as each doctor's own machine would.
    #[arg(long, default_value = ".medvault/doctors")]
    doctor_secrets: PathBuf,
    /// With DATABASE_URL set, where the demo's embedded chain (one validator per demo hospital)
    /// is kept with the database between runs; a throwaway database gets a throwaway chain.
    #[arg(long, default_value = ".medvault/demo-chain")]
    chain_dir: PathBuf,
}

/// Which anchor chain a command works with.
#[derive(Args)]
pub struct ChainArgs {
    /// Where the embedded anchor chain keeps its keys, genesis and blocks when no --chain-node
    /// is given: one validator per founding hospital, each serving the chain's API on loopback.
    /// A new one is founded by the database's hospitals (by the hospital `admin create` makes
    /// first, on a new database).
    #[arg(long, env = "MEDVAULT_CHAIN_DIR", default_value = ".medvault/chain")]
    chain_dir: PathBuf,
    /// Anchor on the members' validator cluster instead of an embedded chain, through these
    /// validators (`host:port` or URL; repeat the flag or separate with commas), following the
    /// leader among them.
    #[arg(
        long = "chain-node",
        env = "MEDVAULT_CHAIN_NODE",
        value_delimiter = ',',
        conflicts_with = "chain_dir"
    )]
    chain_nodes: Vec<String>,
}

impl ChainArgs {
    /// The chain to work with; `founders` found a new embedded one besides the database's
    /// hospitals.
    fn target(&self, founders: Vec<String>) -> ChainTarget {
        if self.chain_nodes.is_empty() {
            ChainTarget::Embedded {
                dir: self.chain_dir.clone(),
                founders,
            }
        } else {
            ChainTarget::Cluster(self.chain_nodes.clone())
        }
    }
}

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    storage: StorageArgs,
    /// Address to serve on.
    #[arg(long, env = "MEDVAULT_BIND", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Answer introspection queries and serve GraphiQL on GET /graphql.
    #[arg(long, env = "MEDVAULT_INTROSPECTION")]
    introspection: bool,
    /// Most database connections.
    #[arg(long, env = "MEDVAULT_POOL_SIZE", default_value_t = 32)]
    pool_size: usize,
    /// Log JSON lines instead of text.
    #[arg(long, env = "MEDVAULT_LOG_JSON")]
    log_json: bool,
    /// Where everything the server makes true is anchored.
    #[command(flatten)]
    chain: ChainArgs,
    /// Where export jobs write their files.
    #[arg(long, env = "MEDVAULT_EXPORT_DIR", default_value = ".medvault/exports")]
    export_dir: PathBuf,
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create the first admin of a hospital (the hospital too, if new). Reads the password from
    /// MEDVAULT_ADMIN_PASSWORD or, if unset, from the first line of standard input.
    Create(AdminCreateArgs),
}

#[derive(Args)]
pub struct AdminCreateArgs {
    #[command(flatten)]
    storage: StorageArgs,
    /// The hospital's name.
    #[arg(long)]
    hospital: String,
    /// The admin's login name.
    #[arg(long)]
    username: String,
    /// The admin's full name.
    #[arg(long, default_value = "Administrator")]
    display_name: String,
    /// The chain whose members the hospital must be among.
    #[command(flatten)]
    chain: ChainArgs,
}

/// A database to use, and the throwaway cluster behind it if one was started (dropped last, so
/// the cluster stops after the server).
pub struct Database {
    url: String,
    /// Stopped and deleted when dropped.
    cluster: Option<ThrowawayCluster>,
}

impl Database {
    /// The connection string.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the database vanishes when this process stops.
    pub fn is_throwaway(&self) -> bool {
        self.cluster.is_some()
    }
}

pub async fn open_database(database_url: Option<String>) -> anyhow::Result<Database> {
    if let Some(url) = database_url {
        return Ok(Database { url, cluster: None });
    }
    eprintln!("DATABASE_URL is unset: starting a private throwaway PostgreSQL cluster…");
    let cluster = tokio::task::spawn_blocking(ThrowawayCluster::start).await??;
    database::create_database(&cluster.connection_string("postgres"), "medvault").await?;
    Ok(Database {
        url: cluster.connection_string("medvault"),
        cluster: Some(cluster),
    })
}

impl StorageArgs {
    /// The configuration of a vault over `database` with this master key, anchoring on `chain`.
    pub fn vault_config(&self, database: &Database, chain: ChainTarget) -> VaultConfig {
        let master_key = match &self.master_key {
            Some(hex) => MasterKeySource::Hex(hex.clone()),
            None => MasterKeySource::File(self.master_key_file.clone()),
        };
        VaultConfig {
            chain,
            consent_keys_dir: self.consent_keys.clone(),
            consent_depth: self.consent_depth,
            ..VaultConfig::new(database.url.clone(), master_key)
        }
    }
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

pub fn demo(args: DemoArgs) -> anyhow::Result<()> {
    telemetry::init(false);
    runtime()?.block_on(async {
        let settings = ServerSettings {
            bind: args.bind,
            limits: QueryLimits::new(true),
            graphiql: true,
            ..ServerSettings::default()
        };
        let database = open_database(args.storage.database_url.clone()).await?;
        // A throwaway database gets a throwaway chain: never a fresh database on an old chain.
        let throwaway_chain = database.is_throwaway().then(|| {
            ThrowawayDir(
                std::env::temp_dir().join(format!("medvault-demo-chain-{}", std::process::id())),
            )
        });
        let chain_dir = throwaway_chain
            .as_ref()
            .map_or(args.chain_dir.clone(), |dir| dir.0.clone());
        let size = DemoSize {
            patients_per_hospital: args.patients_per_hospital,
            records_per_patient: args.records_per_patient,
            ..DemoSize::default()
        };
        let chain = ChainTarget::Embedded {
            dir: chain_dir.clone(),
            founders: size.hospital_names(),
        };
        let vault = args.storage.vault_config(&database, chain);
        let application = Application::build(ApplicationConfig { settings, vault }).await?;
        let services = application.services();
        let bar = indicatif::ProgressBar::new(0).with_style(
            indicatif::ProgressStyle::with_template(
                "seeding {bar:40} {pos}/{len} steps, {elapsed}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let logins = demo::seed(
            &Operator::at_command_line(),
            services.vault(),
            services.exports(),
            size,
            &args.doctor_secrets,
            |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            },
        )
        .await
        .context(
            "seeding failed (a database that already holds the demo data set cannot be seeded \
             again: unset DATABASE_URL for a fresh throwaway cluster)",
        )?;
        bar.finish();
        let anchoring = services
            .anchoring()
            .context("the demo started without an anchoring worker")?;
        anchoring.wait_until_anchored().await?;
        eprintln!(
            "every record version is anchored: the embedded chain's head is at height {}",
            anchoring.chain().head_height().await?
        );
        let chain_node = anchoring
            .chain()
            .embedded()
            .context("the demo's chain is not embedded")?
            .address()
            .to_owned();
        let address = format!("http://{}:{}", args.bind.ip(), application.port());
        let banner = DemoBanner {
            address: &address,
            logins: &logins,
            doctor_secrets: &args.doctor_secrets,
            chain_node: &chain_node,
            database_url: database.url(),
            medvault: &std::env::current_exe()?.display().to_string(),
        };
        println!("{}", banner.render());
        if args.seed_only {
            application.stop().await;
        } else {
            application.run_until_stopped().await?;
        }
        drop(database);
        drop(throwaway_chain);
        Ok(())
    })
}

/// A directory removed when dropped: the demo's chain beside a throwaway database.
struct ThrowawayDir(PathBuf);

impl Drop for ThrowawayDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the demo's banner tells a newcomer.
struct DemoBanner<'a> {
    address: &'a str,
    logins: &'a demo::DemoLogins,
    doctor_secrets: &'a std::path::Path,
    chain_node: &'a str,
    database_url: &'a str,
    medvault: &'a str,
}

impl DemoBanner<'_> {
    fn render(&self) -> String {
        let password = demo::DEMO_PASSWORD;
        let logins = self.logins;
        let (address, medvault) = (self.address, self.medvault);
        let secret = demo::doctor_secret_path(self.doctor_secrets, &logins.doctor);
        format!(
            "\nmedvault demo: {records} encrypted records are ready.\n\
             GraphiQL:  {address}/graphql\n\
             Metrics:   {address}/metrics\n\n\
             Logins (password {password}):\n  admin       {admin}\n  doctor      {doctor}\n  patient     {patient}\n  researcher  {researcher}\n\n\
             A patient reads their own data after logging in; paste into GraphiQL:\n\
             mutation {{ login(username: \"{patient}\", password: \"{password}\") {{ token }} }}\n\
             then set the header {{\"Authorization\": \"Bearer <token>\"}} and run:\n\
             {{ patient(id: \"{patient_id}\") {{ pseudonym personal {{ fullName }} records(first: 5) {{ edges {{ node {{ \
             version anchorLeaf content {{ kind codeSystem code value unit effectiveAt }} }} }} }} }} }}\n\n\
             A doctor proves the patient's consent first (Groth16, on the doctor's side, with the grantee \
             secret in {secret}):\n\
             MEDVAULT_PASSWORD={password} {medvault} doctor open --server {address} --username {doctor} \
             --secret {secret} --patient {patient_id}\n\
             prints a bearer token whose consent session reads that patient for 15 minutes: use it in \
             GraphiQL for the same query (and {{ patients(first: 5) {{ edges {{ node {{ id fullName }} }} }} }}).\n\n\
             As {researcher}, request an anonymized export of the consenting patients:\n\
             mutation {{ requestExport(policy: {{ dataset: CONDITIONS, ageBandYears: 20, dates: YEAR }}) {{ id status }} }}\n\
             then follow it with {{ exportJob(id: \"<id>\") {{ status progressDone progressTotal manifestPath \
             manifest {{ personsOut kAchieved files {{ name downloadPath }} }} }} }}\n\
             and download each path with the same Authorization header.\n\n\
             Audit every doctor's access against the chain, while the demo runs:\n\
             DATABASE_URL='{database_url}' {medvault} audit access --node {chain_node}\n",
            records = logins.records,
            admin = logins.admin,
            doctor = logins.doctor,
            patient = logins.patient,
            researcher = logins.researcher,
            patient_id = logins.patient_id,
            secret = secret.display(),
            database_url = self.database_url,
            chain_node = self.chain_node,
        )
    }
}

pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_json);
    runtime()?.block_on(async {
        let settings = ServerSettings {
            bind: args.bind,
            limits: QueryLimits::new(args.introspection),
            graphiql: args.introspection,
            ..ServerSettings::default()
        };
        if args.storage.database_url.is_none() {
            eprintln!("warning: without DATABASE_URL everything is lost when the server stops");
        }
        let database = open_database(args.storage.database_url.clone()).await?;
        let vault = VaultConfig {
            pool_size: args.pool_size,
            export_dir: args.export_dir.clone(),
            ..args
                .storage
                .vault_config(&database, args.chain.target(Vec::new()))
        };
        let application = Application::build(ApplicationConfig { settings, vault }).await?;
        tracing::info!(port = application.port(), "serving GraphQL on /graphql");
        application.run_until_stopped().await?;
        drop(database);
        Ok(())
    })
}

pub fn admin(command: AdminCommand) -> anyhow::Result<()> {
    let AdminCommand::Create(args) = command;
    let Some(database_url) = args.storage.database_url.clone() else {
        bail!("admin create needs DATABASE_URL: a throwaway cluster would vanish with the admin");
    };
    let password = match std::env::var("MEDVAULT_ADMIN_PASSWORD") {
        Ok(password) => password,
        Err(_) => {
            eprintln!("password for {}:", args.username);
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    runtime()?.block_on(async {
        let database = open_database(Some(database_url)).await?;
        let chain = args.chain.target(vec![args.hospital.clone()]);
        let config = VaultConfig {
            pool_size: 2,
            ..args.storage.vault_config(&database, chain)
        };
        let services = Services::start(&config).await?;
        let user = NewStaffUser {
            username: args.username,
            password,
            role: Role::Admin,
            display_name: args.display_name,
            specialty: None,
        };
        let created = services
            .vault()
            .create_hospital_admin(&Operator::at_command_line(), &args.hospital, user)
            .await;
        services.stop().await;
        let (hospital, admin) = created.context("creating the admin")?;
        println!(
            "created admin {} ({}) of {}",
            admin.username, admin.id, hospital.name
        );
        Ok(())
    })
}

/// Prints the GraphQL schema (SDL), as committed in schema.graphql.
pub fn schema() -> anyhow::Result<()> {
    print!("{}", medvault_server::graphql::sdl());
    Ok(())
}
