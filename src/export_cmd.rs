//! `medvault export`: the operator's anonymized export, made straight from the vault's database
//! for a recipient account, with a progress bar.

use crate::vault_cmd::{open_database, StorageArgs};
use anyhow::{bail, Context};
use clap::Args;
use medvault_exporter::ExportPolicy;
use medvault_vault::auth::Operator;
use medvault_vault::exports::ExportProgress;
use medvault_vault::{ChainTarget, Services, VaultConfig};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    storage: StorageArgs,
    /// The export policy (TOML): data set, generalizations, k, l, suppression, pseudonyms.
    #[arg(long)]
    policy: PathBuf,
    /// The directory to create for the files and the signed manifest; must not exist.
    #[arg(long)]
    out: PathBuf,
    /// The insurer, researcher or agency account the export is for: its organization's research
    /// consents decide who is included, and its role's ceiling bounds the policy.
    #[arg(long)]
    requester: String,
    /// The exporting organization named in the manifest.
    #[arg(long, default_value = "medvault")]
    operator_name: String,
    /// Anchor the manifest hash at once on this embedded chain (when no server holds it);
    /// otherwise a server's anchoring worker anchors it.
    #[arg(long)]
    chain_dir: Option<PathBuf>,
}

pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let Some(database_url) = args.storage.database_url.clone() else {
        bail!("export needs DATABASE_URL: the vault to export from");
    };
    let text = std::fs::read_to_string(&args.policy)
        .with_context(|| format!("reading {}", args.policy.display()))?;
    let policy = ExportPolicy::from_toml(&text)?;
    crate::vault_cmd::runtime()?.block_on(async {
        let chain = match &args.chain_dir {
            Some(dir) => ChainTarget::Embedded {
                dir: dir.clone(),
                founders: Vec::new(),
            },
            None => ChainTarget::None,
        };
        let database = open_database(Some(database_url)).await?;
        let config = VaultConfig {
            pool_size: 4,
            operator_name: args.operator_name.clone(),
            ..args.storage.vault_config(&database, chain)
        };
        let services = Services::start(&config).await?;
        let requester = services
            .vault()
            .actor_by_username(&Operator::at_command_line(), &args.requester)
            .await
            .context("--requester")?;
        let exports = services.exports();
        let progress = Arc::new(ExportProgress::default());
        let bar = indicatif::ProgressBar::new(0).with_style(
            indicatif::ProgressStyle::with_template(
                "exporting {bar:40} {pos}/{len} patient reads, {elapsed}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let ticker = {
            let (bar, progress) = (bar.clone(), progress.clone());
            tokio::spawn(async move {
                loop {
                    let (done, total) = progress.get();
                    bar.set_length(total.max(0) as u64);
                    bar.set_position(done.max(0) as u64);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let exported = exports
            .export_to_directory(&requester, policy, args.out.clone(), progress.clone())
            .await;
        ticker.abort();
        let (done, total) = progress.get();
        bar.set_length(total.max(0) as u64);
        bar.set_position(done.max(0) as u64);
        bar.finish();
        let (manifest, digest) =
            exported.context("export failed")?;
        println!(
            "export {} written to {}: {} of {} consenting persons ({} suppressed), {} events, \
             k = {}, l = {}\nmanifest SHA3-256 {}",
            manifest.export_id,
            args.out.display(),
            manifest.persons_out,
            manifest.persons_in,
            manifest.persons_suppressed,
            manifest.events_out,
            manifest.k_achieved,
            manifest
                .l_achieved
                .map_or_else(|| "-".to_owned(), |l| l.to_string()),
            hex::encode(digest),
        );
        match services.anchoring() {
            Some(anchoring) => {
                let anchored = anchoring.wait_until_anchored().await;
                let height = anchoring.chain().head_height().await;
                services.stop().await;
                anchored?;
                let height = height?;
                println!("anchored: the chain's head is at height {height}");
            }
            None => println!(
                "queued for anchoring: a server's anchoring worker puts the manifest hash on the chain"
            ),
        }
        drop(database);
        Ok(())
    })
}
