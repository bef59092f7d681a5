//! What every subcommand shares: a peer started from the flags, message options, and the
//! signals that end a long-running command.

use crate::args::{DeliveryArgs, PeerArgs};
use anyhow::Context;
use peer_sdk::{Peer, PeerBuilder, SendOptions};

/// Exit code of a command that could not run (bad flags are clap's 2).
pub const EXIT_FAILURE: u8 = 3;
/// Exit code when messages were dead-lettered or a request failed.
pub const EXIT_DEAD_LETTERED: u8 = 1;

/// Starts a peer of `service` registered in the flags' directories.
pub async fn start_peer(service: &str, args: &PeerArgs, window: usize) -> anyhow::Result<Peer> {
    start(builder(service, args, window)?, service).await
}

/// Starts a peer of `service` subscribed to `(pattern, group)`.
pub async fn start_subscriber(
    service: &str,
    args: &PeerArgs,
    (pattern, group): (String, Option<String>),
) -> anyhow::Result<Peer> {
    let builder = builder(service, args, 1)?;
    let builder = match group {
        Some(group) => builder.subscribe_group(pattern, group),
        None => builder.subscribe(pattern),
    };
    start(builder, service).await
}

async fn start(builder: PeerBuilder, service: &str) -> anyhow::Result<Peer> {
    builder
        .start()
        .await
        .with_context(|| format!("starting a peer of {service:?}"))
}

fn builder(service: &str, args: &PeerArgs, window: usize) -> anyhow::Result<PeerBuilder> {
    let builder = Peer::builder(service)
        .listen(args.listen.clone())
        .configure(|c| c.window = window);
    let mut builder = args.access.apply(builder)?;
    if let Some(instance) = &args.instance {
        builder = builder.instance(instance.clone());
    }
    if let Some(dir) = &args.store {
        builder = builder.store(dir.clone());
    }
    Ok(builder)
}

/// The service name a sending command registers under.
pub const SENDER_SERVICE: &str = "peer-cli";

/// Message options from the flags.
pub fn send_options(args: &DeliveryArgs) -> SendOptions {
    SendOptions {
        deadline: args.deadline,
        ack_timeout: args.ack_timeout,
        max_attempts: args.max_attempts,
        no_responders: args.no_responders,
        ..SendOptions::default()
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// The error and its causes on one line, skipping a cause whose text the line already holds
/// (library errors often print their source in their own message).
pub fn describe(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}
