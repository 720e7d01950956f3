//! Command line and environment configuration. Every flag can also be given
//! as an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The default embedded database: an SQLite file under `./data/`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite:data/switchyard.db";

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Self-hosted execution control plane with a live operator console"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: console, API and kernel.
    Serve(ServeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SWITCHYARD_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    /// Database URL: `sqlite:PATH` (created and migrated on first start) or
    /// `postgres://USER@HOST:PORT/DB`.
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
    pub database_url: String,

    /// Folder holding the built site (pkg/, favicon). Defaults to the `site`
    /// folder next to the executable or one level up.
    #[arg(long, env = "SWITCHYARD_SITE_ROOT")]
    pub site_root: Option<PathBuf>,
}
