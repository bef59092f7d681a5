//! The `directory` command line: `serve` (the default) runs a node; `services`, `lookup`,
//! `register`, `heartbeat`, `deregister`, `watch`, `topics`, `members` and `health` talk to a running
//! node over HTTP; `completions` prints shell completions.
//!
//! Layout: `serve` — the node's flags; `client` — the client commands and their connection
//! flags; `output` — `-o table|json|yaml`; `watch` — the change stream; `keep_alive` —
//! `register --keep-alive`; `topics` — the topic listing; `acl` — the ACL file commands.

mod acl;
mod client;
mod connect;
mod keep_alive;
mod output;
mod serve;
mod topics;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use acl::{AclCommand, TokenCommand};
pub use connect::{ClientArgs, ClientError, http_client};
pub use keep_alive::RENEWALS_PER_TTL;
pub use output::Output;
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
    /// List subscribed topic patterns with their consumer groups; with TOPIC, the groups a
    /// message published on it goes to and their instances.
    Topics {
        /// Connection options.
        #[command(flatten)]
        client: ClientArgs,
        /// A topic such as `orders.eu.created`.
        topic: Option<String>,
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
    /// Register (or replace) an instance. It expires after --ttl unless renewed: with
    /// --keep-alive this command renews it until Ctrl-C, then deregisters it; otherwise
    /// renew it with `directory heartbeat`.
    Register {
        /// Connection options.
        #[command(flatten)]
        client: ClientArgs,
        /// Service name.
        service: String,
        /// Instance id.
        instance: String,
        /// Where the instance listens: host:port (the instance's address, not the node's:
        /// that is --node).
        #[arg(long, value_name = "HOST:PORT")]
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
        /// Subscribe to topics matching PATTERN for consumer group GROUP (default: the
        /// service); written PATTERN or PATTERN:GROUP, e.g. `orders.*.created:billing`
        /// (repeatable, at most 32).
        #[arg(long = "subscribe", value_name = "PATTERN[:GROUP]")]
        subscriptions: Vec<String>,
        /// Keep the lease alive (a heartbeat every third of the TTL) until Ctrl-C or SIGTERM,
        /// then deregister the instance [default: register once and exit].
        #[arg(long)]
        keep_alive: bool,
    },
    /// Renew an instance's lease once and print the renewed record (fails with
    /// instance_not_found once the lease has run out: register again).
    Heartbeat {
        /// Connection options.
        #[command(flatten)]
        client: ClientArgs,
        /// Service name.
        service: String,
        /// Instance id.
        instance: String,
    },
    /// Print every change (registered, updated, expired, deregistered) as it happens, until
    /// Ctrl-C. Only changes after the start are shown: use `lookup` for the current state.
    Watch {
        /// Connection options.
        #[command(flatten)]
        client: ClientArgs,
        /// Only this service's changes [default: every service].
        service: Option<String>,
    },
    /// Print a shell completion script, e.g. `directory completions bash >
    /// /etc/bash_completion.d/directory` or `source <(directory completions zsh)`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
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
        Some(Command::Completions { shell }) => completions(shell),
        Some(other) => client::run(other).await.map_err(anyhow::Error::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// Writes the completion script for `shell` to stdout. The script is generated in memory
/// first: clap_complete panics when its writer fails, and a reader that stops early
/// (`| head`) is no error.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    let mut command = <Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "directory", &mut script);
    match std::io::Write::write_all(&mut std::io::stdout().lock(), &script) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// `error: cause: cause...` on one line, without repeating a cause that an outer message
/// already quotes (an error that prints its source would otherwise show it twice, as in
/// "Address already in use (os error 98): Address already in use (os error 98)").
fn error_chain(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.is_empty() {
            text = part;
        } else if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_the_message_already_quotes_is_not_repeated() {
        let io = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let quoted = anyhow::Error::new(io).context(format!(
            "cannot listen for HTTP on 127.0.0.1:1: {}",
            std::io::Error::from(std::io::ErrorKind::AddrInUse)
        ));
        let text = error_chain(&quoted);
        assert_eq!(text.matches("in use").count(), 1, "{text}");
        let io = std::io::Error::other("disk full");
        let new_cause = anyhow::Error::new(io).context("cannot save");
        assert_eq!(error_chain(&new_cause), "cannot save: disk full");
    }
}
