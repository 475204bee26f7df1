//! `medvault demo`, `serve` and `admin`: the command-line face of `medvault-server`.

use clap::{Args, Subcommand};

#[derive(Args)]
pub struct DemoArgs {}

#[derive(Args)]
pub struct ServeArgs {}

#[derive(Subcommand)]
pub enum AdminCommand {}

pub fn demo(_args: DemoArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet built")
}

pub fn serve(_args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet built")
}

pub fn admin(command: AdminCommand) -> anyhow::Result<()> {
    match command {}
}
