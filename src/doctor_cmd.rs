//! `medvault doctor`: the command-line face of `medvault-client`, a doctor's side of consent.
//! The grantee secret stays in its file on this machine; only its commitment and proofs made
//! with it are sent.

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use medvault_circuits::field::field_to_hex;
use medvault_circuits::{GranteeSecret, OsRng};
use medvault_client::{AccessScope, MedvaultClient, OpenedConsent};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum DoctorCommand {
    /// Write a new grantee secret (readable by you only, never replacing one) and print its
    /// commitment.
    Keygen(KeygenArgs),
    /// Log in and register the secret's commitment as your grantee key.
    Register(RegisterArgs),
    /// Prove consent on this machine and open a consent session; prints its bearer token.
    Open(OpenArgs),
    /// Open a read session and print the patient's records as JSON.
    Read(ReadArgs),
}

#[derive(Args)]
pub struct KeygenArgs {
    /// Where to write the secret; an existing file is never replaced.
    #[arg(long, default_value = "doctor.secret")]
    secret: PathBuf,
}

/// Who logs in where, and with which secret.
#[derive(Args)]
pub struct LoginArgs {
    /// The medvault server.
    #[arg(long, env = "MEDVAULT_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Your login name.
    #[arg(long)]
    username: String,
    /// Your password; prefer MEDVAULT_PASSWORD, which other users of the machine cannot see in
    /// the process list.
    #[arg(long, env = "MEDVAULT_PASSWORD", hide_env_values = true)]
    password: String,
    /// Your grantee secret, as written by `doctor keygen`.
    #[arg(long, default_value = "doctor.secret")]
    secret: PathBuf,
}

#[derive(Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    login: LoginArgs,
}

/// A consent session to open: who, for which patient, and where the proving key is kept.
#[derive(Args)]
pub struct SessionArgs {
    #[command(flatten)]
    login: LoginArgs,
    /// The patient's id.
    #[arg(long)]
    patient: String,
    /// Keep the server's proving key in this directory instead of downloading it every time
    /// (checked against the server's hash whenever it is read).
    #[arg(long)]
    key_cache: Option<PathBuf>,
}

#[derive(Args)]
pub struct OpenArgs {
    #[command(flatten)]
    session: SessionArgs,
    /// The scopes to open (repeat the flag or separate with commas).
    #[arg(long = "scope", value_enum, value_delimiter = ',', default_values = ["read"])]
    scopes: Vec<ScopeArg>,
}

#[derive(Args)]
pub struct ReadArgs {
    #[command(flatten)]
    session: SessionArgs,
}

/// A scope to open, as typed on the command line.
#[derive(Clone, Copy, ValueEnum)]
enum ScopeArg {
    /// View records, details and history.
    Read,
    /// Add, update and delete records.
    Write,
}

impl From<ScopeArg> for AccessScope {
    fn from(scope: ScopeArg) -> Self {
        match scope {
            ScopeArg::Read => AccessScope::Read,
            ScopeArg::Write => AccessScope::Write,
        }
    }
}

pub fn doctor(command: DoctorCommand) -> anyhow::Result<()> {
    match command {
        DoctorCommand::Keygen(args) => keygen(&args.secret),
        DoctorCommand::Register(args) => crate::vault_cmd::runtime()?.block_on(register(args)),
        DoctorCommand::Open(args) => crate::vault_cmd::runtime()?.block_on(open(args)),
        DoctorCommand::Read(args) => crate::vault_cmd::runtime()?.block_on(read(args)),
    }
}

fn keygen(path: &Path) -> anyhow::Result<()> {
    let secret = GranteeSecret::generate(&mut OsRng);
    if let Err(error) = secret.write_new(path) {
        if let medvault_circuits::Error::Io { source, .. } = &error {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                bail!(
                    "{} already exists: keygen never replaces a secret (proving the grants made \
                     to its commitment needs it); move it away first to make a new one",
                    path.display()
                );
            }
        }
        return Err(error).context("writing the grantee secret");
    }
    println!(
        "wrote a new grantee secret to {} (readable by you only; keep it and back it up)\n\
         commitment: {}\n\
         only the commitment is ever sent to a server: register it with `medvault doctor register`",
        path.display(),
        field_to_hex(secret.commitment())
    );
    Ok(())
}

/// The secret, and a client logged in as the doctor.
async fn log_in(args: &LoginArgs) -> anyhow::Result<(GranteeSecret, MedvaultClient)> {
    let secret = GranteeSecret::read(&args.secret)
        .with_context(|| format!("reading the grantee secret {}", args.secret.display()))?;
    let mut client = MedvaultClient::new(&args.server)?;
    client
        .login(&args.username, &args.password)
        .await
        .with_context(|| format!("logging in to {} as {}", args.server, args.username))?;
    Ok((secret, client))
}

async fn register(args: RegisterArgs) -> anyhow::Result<()> {
    let (secret, client) = log_in(&args.login).await?;
    let registered = client
        .register_grantee_key(&secret)
        .await
        .context("registering the grantee key")?;
    println!(
        "registered commitment {} for {} at {}; {} existing grants now commit to it",
        field_to_hex(registered.commitment),
        args.login.username,
        registered.registered_at,
        registered.rekeyed_grants
    );
    Ok(())
}

/// Logs in, fetches the proving key and opens a session with `scopes` on the client's token.
async fn open_session(
    args: &SessionArgs,
    scopes: &[AccessScope],
) -> anyhow::Result<(MedvaultClient, OpenedConsent)> {
    let (secret, client) = log_in(&args.login).await?;
    let key = client
        .proving_key(args.key_cache.as_deref())
        .await
        .context("fetching the consent proving key")?;
    let opened = client
        .open_consent(&key, &secret, &args.patient, scopes)
        .await
        .with_context(|| format!("opening consent for patient {}", args.patient))?;
    Ok((client, opened))
}

fn scope_list(scopes: &[AccessScope]) -> String {
    scopes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

async fn open(args: OpenArgs) -> anyhow::Result<()> {
    let scopes: Vec<AccessScope> = args.scopes.iter().copied().map(AccessScope::from).collect();
    let (client, opened) = open_session(&args.session, &scopes).await?;
    let token = client.token().context("no bearer token after logging in")?;
    println!(
        "consent session {} for patient {}\n\
         scopes:  {}\n\
         expires: {}\n\
         token:   {token}\n\
         (send it as the header {{\"Authorization\": \"Bearer {token}\"}}, in GraphiQL too)",
        opened.session_id,
        opened.patient_id,
        scope_list(&opened.scopes),
        opened.expires_at,
    );
    Ok(())
}

async fn read(args: ReadArgs) -> anyhow::Result<()> {
    let (client, opened) = open_session(&args.session, &[AccessScope::Read]).await?;
    eprintln!(
        "consent session {} ({}) until {}",
        opened.session_id,
        scope_list(&opened.scopes),
        opened.expires_at
    );
    let patient = &args.session.patient;
    let records = client
        .read_records(patient)
        .await
        .with_context(|| format!("reading the records of patient {patient}"))?;
    println!("{records:#}");
    Ok(())
}
