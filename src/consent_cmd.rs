//! `medvault keys` and `medvault consent`: the command-line face of `medvault-circuits`.
//! JSON formats are described in circuits/README.md.

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use medvault_circuits::ceremony::TRANSCRIPT_HASH_FILE;
use medvault_circuits::circuit::consent_circuit_size;
use medvault_circuits::encoding::{ProofDocument, VerdictDocument, WitnessDocument};
use medvault_circuits::field::field_from_hex;
use medvault_circuits::setup::{PROVING_KEY_FILE, VERIFYING_KEY_FILE};
use medvault_circuits::{
    grantee_commitment, random_field_element, Ceremony, ConsentProvingKey, ConsentTree,
    ConsentVerifyingKey, ConsentWitness, Grant, OsRng, Phase, PublicInputs, Scope,
};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Generate the Groth16 proving and verifying keys of the consent circuit for one depth, on
    /// one machine, which learns the trapdoor: for development; production keys come from
    /// `keys ceremony`.
    Setup(SetupArgs),
    /// Print the consent circuit's constraint count by tree depth.
    Constraints(ConstraintsArgs),
    /// The multi-party setup of the member hospitals: the keys are sound if one contributor was
    /// honest and destroyed their randomness.
    #[command(subcommand)]
    Ceremony(CeremonyCommand),
}

#[derive(Subcommand)]
pub enum CeremonyCommand {
    /// Start a transcript for one tree depth, with no contribution yet.
    Init(CeremonyInitArgs),
    /// Verify a transcript and add one contribution with fresh randomness: one file in, one file
    /// out, no network.
    Contribute(ContributeArgs),
    /// Verify a whole transcript with pairings and list its contributions.
    Verify(CeremonyVerifyArgs),
    /// Verify a transcript and write the final keys and the transcript's SHA3-256 to anchor.
    Finalize(FinalizeArgs),
}

#[derive(Args)]
pub struct CeremonyInitArgs {
    /// Depth of the 4-ary consent tree (1 to 16; depth 10 holds 2^20 grants).
    #[arg(long, default_value_t = medvault_circuits::DEFAULT_DEPTH)]
    depth: u32,
    /// Where to write the new transcript.
    #[arg(long)]
    out: PathBuf,
}

/// The phase a contribution goes to.
#[derive(Clone, Copy, ValueEnum)]
enum CeremonyPhase {
    /// Phase 1, powers of tau: every member contributes here first.
    Tau,
    /// Phase 2, the consent circuit's delta: once phase 1 is closed by the first contribution
    /// here.
    Circuit,
}

#[derive(Args)]
pub struct ContributeArgs {
    /// The transcript received from the previous contributor.
    #[arg(long)]
    transcript: PathBuf,
    /// Where to write the transcript with this contribution, for the next contributor.
    #[arg(long)]
    out: PathBuf,
    /// The contributor's name as it will stand in the transcript (1 to 64 bytes).
    #[arg(long)]
    name: String,
    /// The phase to contribute to.
    #[arg(long, value_enum)]
    phase: CeremonyPhase,
}

#[derive(Args)]
pub struct CeremonyVerifyArgs {
    /// The transcript to verify.
    #[arg(long)]
    transcript: PathBuf,
}

#[derive(Args)]
pub struct FinalizeArgs {
    /// The complete transcript.
    #[arg(long)]
    transcript: PathBuf,
    /// Directory to write consent_proving_key.bin, consent_verifying_key.bin and
    /// ceremony_transcript.sha3-256 into.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
pub struct SetupArgs {
    /// Depth of the 4-ary consent tree (1 to 16; depth 10 holds 2^20 grants).
    #[arg(long, default_value_t = medvault_circuits::DEFAULT_DEPTH)]
    depth: u32,
    /// Directory to write consent_proving_key.bin and consent_verifying_key.bin into.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
pub struct ConstraintsArgs {
    /// Depths to report.
    #[arg(long = "depth", default_values_t = [5u32, 10, 16])]
    depths: Vec<u32>,
}

#[derive(Subcommand)]
pub enum ConsentCommand {
    /// Prove a consent statement: witness JSON and the verifier's challenge in, proof JSON out.
    Prove(ProveArgs),
    /// Verify a proof JSON document; prints {"valid": ..., "depth": ...} and fails if invalid.
    Verify(VerifyArgs),
    /// Write a witness JSON for a fresh sample tree, to try `prove` and `verify` with.
    SampleWitness(SampleWitnessArgs),
}

#[derive(Args)]
pub struct ProveArgs {
    /// Directory holding the keys written by `medvault keys setup`.
    #[arg(long)]
    keys: PathBuf,
    /// The witness JSON file (`-` for standard input).
    #[arg(long)]
    witness: PathBuf,
    /// The verifier's challenge: 0x and 64 hex digits, below the field modulus.
    #[arg(long)]
    challenge: String,
    /// Where to write the proof JSON (standard output if absent).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// Directory holding the verifying key.
    #[arg(long)]
    keys: PathBuf,
    /// The proof JSON file (`-` or absent for standard input).
    #[arg(long)]
    proof: Option<PathBuf>,
}

#[derive(Args)]
pub struct SampleWitnessArgs {
    /// Depth of the sample tree; must match the keys you will prove with.
    #[arg(long, default_value_t = medvault_circuits::DEFAULT_DEPTH)]
    depth: u32,
    /// Where to write the witness JSON (standard output if absent).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Setup(args) => keys_setup(args),
        KeysCommand::Constraints(args) => keys_constraints(args),
        KeysCommand::Ceremony(command) => ceremony(command),
    }
}

fn ceremony(command: CeremonyCommand) -> anyhow::Result<()> {
    match command {
        CeremonyCommand::Init(args) => {
            let ceremony = Ceremony::new(args.depth)?;
            write_file(&args.out, ceremony.transcript())?;
            println!(
                "started a depth-{} ceremony in {}; pass it to the first contributor",
                args.depth,
                args.out.display()
            );
            Ok(())
        }
        CeremonyCommand::Contribute(args) => {
            let mut ceremony = read_transcript(&args.transcript)?;
            let phase = match args.phase {
                CeremonyPhase::Tau => Phase::PowersOfTau,
                CeremonyPhase::Circuit => Phase::Circuit,
            };
            ceremony.contribute(phase, &args.name, &mut OsRng)?;
            write_file(&args.out, ceremony.transcript())?;
            let contribution = ceremony
                .contributors()
                .last()
                .context("the contribution was recorded")?;
            println!(
                "contribution {} ({} phase) by {} written to {}\nits hash, to find in the verified transcript: {}",
                ceremony.contributors().len(),
                contribution.phase,
                contribution.name,
                args.out.display(),
                hex::encode(contribution.hash)
            );
            Ok(())
        }
        CeremonyCommand::Verify(args) => {
            let ceremony = read_transcript(&args.transcript)?;
            print_transcript(&ceremony);
            Ok(())
        }
        CeremonyCommand::Finalize(args) => {
            let ceremony = read_transcript(&args.transcript)?;
            let (proving_key, verifying_key) = ceremony.keys()?;
            std::fs::create_dir_all(&args.out)
                .with_context(|| format!("creating {}", args.out.display()))?;
            proving_key.write(&args.out.join(PROVING_KEY_FILE))?;
            verifying_key.write(&args.out.join(VERIFYING_KEY_FILE))?;
            let hash = hex::encode(ceremony.transcript_hash());
            write_file(
                &args.out.join(TRANSCRIPT_HASH_FILE),
                format!("{hash}\n").as_bytes(),
            )?;
            print_transcript(&ceremony);
            println!("wrote the consent keys to {}", args.out.display());
            Ok(())
        }
    }
}

/// Reads and fully verifies a transcript.
fn read_transcript(path: &Path) -> anyhow::Result<Ceremony> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ceremony::from_transcript(&bytes).with_context(|| format!("verifying {}", path.display()))
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn print_transcript(ceremony: &Ceremony) {
    println!(
        "verified: depth-{} ceremony with {} contributions",
        ceremony.depth(),
        ceremony.contributors().len()
    );
    for (number, contributor) in ceremony.contributors().iter().enumerate() {
        println!(
            "{:>4}  {:<13}  {:<20}  {}",
            number + 1,
            contributor.phase.to_string(),
            contributor.name,
            hex::encode(contributor.hash)
        );
    }
    println!(
        "transcript SHA3-256: {}",
        hex::encode(ceremony.transcript_hash())
    );
}

pub fn consent(command: ConsentCommand) -> anyhow::Result<()> {
    match command {
        ConsentCommand::Prove(args) => consent_prove(args),
        ConsentCommand::Verify(args) => consent_verify(args),
        ConsentCommand::SampleWitness(args) => sample_witness(args),
    }
}

fn keys_setup(args: SetupArgs) -> anyhow::Result<()> {
    let size = consent_circuit_size(args.depth)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let (proving_key, verifying_key) = medvault_circuits::setup(args.depth, &mut OsRng)?;
    proving_key.write(&args.out.join(PROVING_KEY_FILE))?;
    verifying_key.write(&args.out.join(VERIFYING_KEY_FILE))?;
    println!(
        "wrote depth-{} consent keys ({} constraints) to {}",
        args.depth,
        size.constraints,
        args.out.display()
    );
    Ok(())
}

fn keys_constraints(args: ConstraintsArgs) -> anyhow::Result<()> {
    println!("{:>5}  {:>11}  {:>9}", "depth", "constraints", "witnesses");
    for depth in args.depths {
        let size = consent_circuit_size(depth)?;
        println!(
            "{depth:>5}  {:>11}  {:>9}",
            size.constraints, size.witnesses
        );
    }
    Ok(())
}

fn read_input(path: Option<&Path>) -> anyhow::Result<String> {
    match path {
        Some(path) if path != Path::new("-") => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
        }
        _ => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading standard input")?;
            Ok(text)
        }
    }
}

fn write_output(path: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match path {
        Some(path) => std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("writing {}", path.display())),
        None => {
            println!("{text}");
            Ok(())
        }
    }
}

fn consent_prove(args: ProveArgs) -> anyhow::Result<()> {
    let document = WitnessDocument::from_json(&read_input(Some(&args.witness))?)?;
    let challenge = field_from_hex("challenge", &args.challenge)?;
    let (public, witness) = document.decode(challenge)?;
    let proving_key = ConsentProvingKey::read(&args.keys.join(PROVING_KEY_FILE))?;
    if proving_key.depth() != document.depth {
        bail!(
            "the witness is for depth {}, the keys in {} for depth {}",
            document.depth,
            args.keys.display(),
            proving_key.depth()
        );
    }
    let proof = medvault_circuits::prove(&proving_key, &public, &witness, &mut OsRng)?;
    let output = ProofDocument::new(proving_key.depth(), &public, &proof);
    write_output(args.out.as_deref(), &output.to_json())
}

fn consent_verify(args: VerifyArgs) -> anyhow::Result<()> {
    let document = ProofDocument::from_json(&read_input(args.proof.as_deref())?)?;
    let verifying_key = ConsentVerifyingKey::read(&args.keys.join(VERIFYING_KEY_FILE))?;
    if verifying_key.depth() != document.depth {
        bail!(
            "the proof is for depth {}, the key in {} for depth {}",
            document.depth,
            args.keys.display(),
            verifying_key.depth()
        );
    }
    let (public, proof) = document.decode()?;
    let valid = medvault_circuits::verify(&verifying_key.prepare(), &public, &proof)?;
    let verdict = VerdictDocument {
        valid,
        depth: verifying_key.depth(),
    };
    println!("{}", verdict.to_json());
    if !valid {
        bail!("the proof does not verify");
    }
    Ok(())
}

fn sample_witness(args: SampleWitnessArgs) -> anyhow::Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let mut rng = OsRng;
    let patient = random_field_element(&mut rng);
    let mut tree = ConsentTree::new(args.depth)?;
    let mut grant_for = |secret, scope| -> anyhow::Result<(u64, Grant)> {
        let grant = Grant {
            grantee_commitment: grantee_commitment(secret),
            patient_pseudonym: patient,
            scope,
            expiry: now + 30 * 24 * 3600,
            salt: random_field_element(&mut rng),
        };
        Ok((tree.insert(grant.leaf())?, grant))
    };
    grant_for(random_field_element(&mut OsRng), Scope::RESEARCH)?;
    let doctor_secret = random_field_element(&mut OsRng);
    let (index, doctor) = grant_for(doctor_secret, Scope::READ | Scope::WRITE)?;
    grant_for(random_field_element(&mut OsRng), Scope::READ)?;
    let public = PublicInputs {
        root: tree.root(),
        patient_pseudonym: patient,
        required_scope: Scope::READ,
        now,
        challenge: Default::default(),
    };
    let witness = ConsentWitness {
        grantee_secret: doctor_secret,
        granted_scope: doctor.scope,
        expiry: doctor.expiry,
        salt: doctor.salt,
        path: tree.path(index)?,
    };
    write_output(
        args.out.as_deref(),
        &WitnessDocument::new(&public, &witness).to_json(),
    )
}
