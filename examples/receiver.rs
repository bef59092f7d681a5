//! The receiving half of the two-process example: a service instance that registers in a
//! running directory and answers every message. Start a directory, then this, then `sender`:
//!
//! ```text
//! cargo run --release --bin directory                      # terminal 1
//! cargo run --example receiver -- --service echo           # terminal 2
//! cargo run --example sender -- --service echo --count 10  # terminal 3
//! ```
//!
//! In containers, listen on all interfaces and advertise a name the others can resolve:
//! `receiver --listen 0.0.0.0:7000 --advertise receiver:7000 --directory http://node1:7700`.
//! Against a directory with ACLs and TLS, give the token and the CA, like the `directory`
//! CLI: `--token SECRET --ca ca.pem --directory https://node1:7700` (or `DIRECTORY_TOKEN`
//! and `DIRECTORY_CA`).

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use peer_sdk::Peer;
use support::DirectoryAccess;

/// Command-line options.
#[derive(Debug, Parser)]
struct Options {
    /// The directory: URLs, token and CA.
    #[command(flatten)]
    access: DirectoryAccess,
    /// Service name to register under.
    #[arg(long, env = "PEER_SERVICE", default_value = "echo")]
    service: String,
    /// Instance name (default: the service name plus a random suffix).
    #[arg(long, env = "PEER_INSTANCE")]
    instance: Option<String>,
    /// QUIC listen address.
    #[arg(long, env = "PEER_LISTEN", default_value = "127.0.0.1:0")]
    listen: String,
    /// Address to publish (`host:port`, resolved once at start) when the listen address is
    /// not reachable as is, e.g. `0.0.0.0:7000` in a container.
    #[arg(long, env = "PEER_ADVERTISE")]
    advertise: Option<String>,
    /// Print every message (otherwise a line per 1,000).
    #[arg(long)]
    verbose: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    support::init_logging("warn,receiver=info");
    let opts = Options::parse();
    let mut builder = opts
        .access
        .apply(Peer::builder(opts.service.clone()))?
        .listen(opts.listen.clone());
    if let Some(instance) = &opts.instance {
        builder = builder.instance(instance.clone());
    }
    if let Some(advertise) = &opts.advertise {
        builder = builder.advertise(resolve(advertise).await?);
    }
    let peer = builder.start().await.context("starting the peer")?;
    println!(
        "receiver {} of `{}` listening on {} (fingerprint {})",
        peer.instance(),
        peer.service(),
        peer.local_addr(),
        peer.fingerprint()
    );

    let mut inbox = peer.incoming();
    let mut handled = 0u64;
    loop {
        tokio::select! {
            _ = directory::shutdown_signal() => break,
            msg = inbox.next() => {
                let Some(msg) = msg else { break };
                handled += 1;
                if opts.verbose || handled.is_multiple_of(1_000) {
                    println!("handled={handled} from={}/{} attempt={}", msg.from_service(), msg.from_instance(), msg.attempt());
                }
                let mut reply = b"echo: ".to_vec();
                reply.extend_from_slice(msg.payload());
                msg.reply(reply);
            }
        }
    }
    println!("shutting down after {handled} messages");
    peer.shutdown().await;
    Ok(())
}

/// Resolves `host:port` to the first address (a container resolving its own name gets its
/// address on the network).
async fn resolve(addr: &str) -> anyhow::Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("resolving --advertise {addr}"))?
        .next()
        .with_context(|| format!("--advertise {addr} resolves to no address"))
}
