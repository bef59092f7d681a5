//! `peer publish TOPIC`: publishes generated payloads or stdin lines one at a time (so
//! per-key order holds in every group), prints a summary on stderr, exits 1 if any group's
//! copy failed or, with `--no-subscribers`, when no group subscribes.

use crate::args::PublishArgs;
use crate::common::{self, EXIT_DEAD_LETTERED, SENDER_SERVICE};
use crate::send::{Source, key_of};
use peer_sdk::{PublishError, PublishOptions};
use std::collections::BTreeSet;
use std::process::ExitCode;

/// What this run's copies did.
#[derive(Debug, Default)]
struct Tally {
    published: u64,
    acked: u64,
    failed: u64,
    groups: BTreeSet<String>,
}

/// Publishes everything, then prints the summary.
pub async fn run(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let peer = common::start_peer(SENDER_SERVICE, &args.peer, 1).await?;
    let result = publish_all(&peer, &args).await;
    peer.shutdown().await;
    let tally = match result {
        Ok(tally) => tally,
        Err(e) => match e.downcast_ref::<PublishError>() {
            Some(PublishError::NoSubscribers(topic)) => {
                eprintln!("no group subscribes to {topic}");
                return Ok(ExitCode::from(EXIT_DEAD_LETTERED));
            }
            _ => return Err(e),
        },
    };
    let groups: Vec<&str> = tally.groups.iter().map(String::as_str).collect();
    eprintln!(
        "published {} on {} to groups [{}]: {} copies acked, {} failed",
        tally.published,
        args.topic,
        groups.join(", "),
        tally.acked,
        tally.failed
    );
    Ok(match tally.failed {
        0 => ExitCode::SUCCESS,
        _ => ExitCode::from(EXIT_DEAD_LETTERED),
    })
}

async fn publish_all(peer: &peer_sdk::Peer, args: &PublishArgs) -> anyhow::Result<Tally> {
    let mut source = Source::new(args.count, 1);
    let mut tally = Tally::default();
    loop {
        let Some((seq, payload)) = source.next(args.keys).await? else {
            return Ok(tally);
        };
        let mut opts = PublishOptions {
            send: common::send_options(&args.delivery),
            no_subscribers: args.no_subscribers,
        };
        opts.send.key = key_of(seq, args.keys).map(Into::into);
        let outcome = peer.publish_with(&args.topic, payload, opts).await?;
        tally.published += 1;
        for group in outcome.groups {
            match group.result {
                Ok(()) => tally.acked += 1,
                Err(e) => {
                    tally.failed += 1;
                    eprintln!("copy {seq} to group {} failed: {e}", group.group);
                }
            }
            tally.groups.insert(group.group);
        }
    }
}
