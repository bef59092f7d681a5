//! The `directory` command line: `serve` (the default) runs a node; `services`, `lookup`,
//! `register`, `deregister`, `members` and `health` talk to a running node over HTTP.

mod acl;
mod client;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use acl::{AclCommand, TokenCommand};
pub use client::{ClientArgs, ClientError, http_client};
pub use serve::{LogFormat, ServeArgs, host_node_name};

/// A lightweight service directory: register endpoints with a TTL lease, look them up,
/// watch them. Without a subcommand, runs a node (same as `directory serve`).
#[derive(Debug, Parser)]
#[command(name = "directory", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Node options when no subcommand is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a directory node (the default).
    Serve(Box<ServeArgs>),
    /// List services and their instance counts (like `consul catalog services`).
    Services {
        /// Connection options.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the live instances of a service.
    Lookup {
        /// Connection options.
        #[command(flatten)]
        client: ClientArgs,
        /// Service name.
        service: String,
        /// Only instances with this tag (repeatable; all must match).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Only instances with this meta pair, written key=value (repeatable; all must match).
        #[arg(long = "meta")]
        meta: Vec<String>,
    },
    /// Register (or replace) an instance. It expires after --ttl unless renewed; this
    /// command does not renew it.
    Register {
        /// Connection options.
        #[command(flatten)]
        client: ClientArgs,
        /// Service name.
        service: String,
        /// Instance id.
        instance: String,
        /// Where the instance listens: host:port.
        #[arg(long)]
        address: String,
        /// A tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// A meta pair written key=value (repeatable).
        #[arg(long = "meta")]
        meta: Vec<String>,
        /// Lease length, 1s to 1h [default: 30s].
        #[arg(long)]
        ttl: Option<String>,
        /// SHA-256 of the instance certificate's SubjectPublicKeyInfo (64 hex digits).
        #[arg(long)]
        fingerprint: Option<String>,
    },
    /// List the cluster members as one node sees them (like `consul members`).
    Members {
        /// Connection options.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Manage ACL tokens in an ACL file (see `directory serve --acl-file`).
    #[command(subcommand)]
    Acl(AclCommand),
    /// Print a new random cluster key for --cluster-key (like `consul keygen`).
    Keygen,
    /// Check that a node answers `GET /v1/health`; exits 0 if it does, 1 otherwise. Meant for
    /// container health checks, where the image holds nothing but this binary.
    Health {
        /// Connection options.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove an instance (succeeds if it is already gone).
    Deregister {
        /// Connection options.
        #[command(flatten)]
        client: ClientArgs,
        /// Service name.
        service: String,
        /// Instance id.
        instance: String,
    },
}

/// Runs the parsed command line; the exit code is 0 on success, 1 on any failure (with a
/// message on stderr).
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        None => serve::run(cli.serve).await,
        Some(Command::Serve(args)) => serve::run(*args).await,
        Some(Command::Keygen) => {
            println!("{}", crate::gossip::ClusterKey::generate().to_base64());
            Ok(())
        }
        Some(Command::Acl(command)) => acl::run(command),
        Some(other) => client::run(other).await.map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
