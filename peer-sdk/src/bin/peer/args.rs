//! The command line: every subcommand and flag, with its environment variable and default.

use clap::{Args, Parser, Subcommand};
use peer_sdk::cli::DirectoryAccess;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

/// Send, receive and inspect brokerless messages from a shell.
#[derive(Debug, Parser)]
#[command(name = "peer", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register as an instance of SERVICE and ack every delivery, printing one JSON line each.
    Listen(ListenArgs),
    /// Subscribe to topics matching PATTERN for a consumer group and ack every delivery,
    /// printing one JSON line each (as `listen`, with the topic).
    Subscribe(SubscribeArgs),
    /// Send generated messages (`--count`) or stdin lines to SERVICE; exit 1 if any is
    /// dead-lettered.
    Send(SendArgs),
    /// Publish generated messages (`--count`) or stdin lines on TOPIC, one copy to each
    /// subscribed group; exit 1 if any copy failed.
    Publish(PublishArgs),
    /// Send one request to SERVICE and print the reply.
    Request(RequestArgs),
    /// Measure acked latency and throughput against SERVICE or an in-process receiver.
    Bench(BenchArgs),
    /// List, replay or purge the outbox of a stopped peer's store.
    Outbox(StoreArgs),
    /// List, replay or purge the dead letters of a stopped peer's store.
    DeadLetters(StoreArgs),
}

/// `peer outbox` / `peer dead-letters`.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: StoreAction,
}

/// What to do with the messages of a store.
#[derive(Debug, Subcommand)]
pub enum StoreAction {
    /// Print one JSON line per message.
    List(StoreDir),
    /// Dead letters: move them back to the outbox (original id, payload and key, a new
    /// deadline); the next start of the peer sends them again. Outbox: start a peer on the
    /// store and deliver everything it holds, then stop.
    Replay(ReplayArgs),
    /// Delete them.
    Purge(StoreDir),
}

/// The store of a stopped peer.
#[derive(Debug, Args)]
pub struct StoreDir {
    /// Store directory (the `--store` of the peer).
    #[arg(long, env = "PEER_STORE")]
    pub store: PathBuf,
}

/// `replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The store.
    #[command(flatten)]
    pub dir: StoreDir,
    /// Only this message id (dead letters).
    #[arg(long)]
    pub id: Option<u64>,
    /// Deadline of the replayed dead letters, from now.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
    pub deadline: Duration,
    /// Outbox: the directory to deliver through (URLs, token, CA).
    #[command(flatten)]
    pub access: DirectoryAccess,
    /// Outbox: QUIC listen address of the resuming peer.
    #[arg(long, env = "PEER_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: String,
}

/// How to reach the directory and how this peer presents itself.
#[derive(Debug, Args)]
pub struct PeerArgs {
    /// The directory: URLs, ACL token, CA.
    #[command(flatten)]
    pub access: DirectoryAccess,
    /// QUIC listen address; `0.0.0.0:0` to be reachable from other hosts.
    #[arg(long, env = "PEER_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Instance name; default `<service>-<random hex>` (with `--store`, the stored one).
    #[arg(long, env = "PEER_INSTANCE")]
    pub instance: Option<String>,
    /// Make the peer durable with a store in this directory: accepted messages survive a
    /// crash and resume at the next start, handled ones are recorded, dead letters kept.
    #[arg(long)]
    pub store: Option<PathBuf>,
}

/// How messages are sent.
#[derive(Debug, Args)]
pub struct DeliveryArgs {
    /// Give up on a message this long after it was accepted (dead letter).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub deadline: Option<Duration>,
    /// Wait this long for an ack or a progress signal before the next attempt.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ack_timeout: Option<Duration>,
    /// Dead-letter a message after this many attempts, even before its deadline.
    #[arg(long)]
    pub max_attempts: Option<NonZeroU32>,
    /// Fail at once ("no responders") when the service has no registered instance, instead
    /// of waiting for one until the deadline.
    #[arg(long)]
    pub no_responders: bool,
}

/// `peer listen`.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Service to register as.
    pub service: String,
    /// Logging, handling and the peer.
    #[command(flatten)]
    pub options: ListenOptions,
}

/// `peer subscribe`.
#[derive(Debug, Args)]
pub struct SubscribeArgs {
    /// Topic pattern: dot-separated tokens, `*` for one token, a final `>` for the rest.
    pub pattern: String,
    /// Consumer group [default: the service].
    #[arg(long)]
    pub group: Option<String>,
    /// Service to register as.
    #[arg(long = "as", value_name = "SERVICE", default_value = "peer-cli")]
    pub service: String,
    /// Logging, handling and the peer.
    #[command(flatten)]
    pub options: ListenOptions,
}

/// What `listen` and `subscribe` share.
#[derive(Debug, Args)]
pub struct ListenOptions {
    /// Append the JSON lines to this file (flushed per line) instead of stdout.
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Pretend each delivery takes this long to handle before it is acked.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    pub handle_time: Duration,
    /// While handling, signal progress this often (see `Message::in_progress`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub progress_every: Option<Duration>,
    /// Directory and identity.
    #[command(flatten)]
    pub peer: PeerArgs,
}

/// `peer send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Destination service.
    pub service: String,
    /// Send this many generated payloads `{"seq":N,"key":"kM"}` (N from 1); without it,
    /// every line of stdin is one payload.
    #[arg(long)]
    pub count: Option<u64>,
    /// Number of the first generated message (to continue a numbering across runs).
    #[arg(long, default_value_t = 1, requires = "count",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub first_seq: u64,
    /// Ordering keys: message N gets key `k{N % K}`; 0 sends without a key.
    #[arg(long, default_value_t = 1)]
    pub keys: u64,
    /// Messages per second at most; 0 for as fast as the window allows.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Messages accepted and not yet resolved at once.
    #[arg(long, default_value_t = 256)]
    pub window: usize,
    /// Retry and deadline options.
    #[command(flatten)]
    pub delivery: DeliveryArgs,
    /// Directory and identity.
    #[command(flatten)]
    pub peer: PeerArgs,
}

/// `peer publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Topic, e.g. `orders.eu.created`.
    pub topic: String,
    /// Publish this many generated payloads `{"seq":N,"key":"kM"}` (N from 1); without it,
    /// every line of stdin is one payload.
    #[arg(long)]
    pub count: Option<u64>,
    /// Ordering keys: message N gets key `k{N % K}`; 0 publishes without a key.
    #[arg(long, default_value_t = 1)]
    pub keys: u64,
    /// Fail at once when no group subscribes to the topic (exit 1).
    #[arg(long)]
    pub no_subscribers: bool,
    /// Retry and deadline options of each copy.
    #[command(flatten)]
    pub delivery: DeliveryArgs,
    /// Directory and identity.
    #[command(flatten)]
    pub peer: PeerArgs,
}

/// `peer request`.
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// Destination service.
    pub service: String,
    /// Request payload (UTF-8).
    pub payload: String,
    /// Retry and deadline options.
    #[command(flatten)]
    pub delivery: DeliveryArgs,
    /// Directory and identity.
    #[command(flatten)]
    pub peer: PeerArgs,
}

/// `peer bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Service to send to (a running `peer listen`); omit with `--loopback`.
    #[arg(required_unless_present = "loopback", conflicts_with = "loopback")]
    pub service: Option<String>,
    /// Start a receiver in this process and send to it over loopback QUIC (no directory).
    #[arg(long)]
    pub loopback: bool,
    /// Messages to send.
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    /// Payload size in bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Messages in flight at once.
    #[arg(long, default_value_t = 256)]
    pub window: usize,
    /// Directory and identity (ignored with `--loopback`).
    #[command(flatten)]
    pub peer: PeerArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn directories_split_on_commas_and_repeat() {
        let cli = Cli::parse_from([
            "peer",
            "request",
            "echo",
            "hi",
            "--directory",
            "http://a:1,http://b:2",
            "--directory",
            "http://c:3",
        ]);
        let Command::Request(r) = cli.command else {
            panic!("{cli:?}")
        };
        assert_eq!(
            r.peer.access.directory,
            ["http://a:1", "http://b:2", "http://c:3"]
        );
    }

    #[test]
    fn bench_needs_a_service_or_loopback() {
        assert!(Cli::try_parse_from(["peer", "bench"]).is_err());
        assert!(Cli::try_parse_from(["peer", "bench", "--loopback"]).is_ok());
        assert!(Cli::try_parse_from(["peer", "bench", "svc", "--loopback"]).is_err());
    }
}
