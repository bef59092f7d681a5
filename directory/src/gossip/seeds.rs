//! The seed resolver: every `--join` name is looked up again on each round, every
//! [`SEED_RESOLVE_INTERVAL`], and the driver gets the fresh list. A name that does not
//! resolve yet (a peer's DNS record not published, a headless service still empty) is
//! retried; one that changes address is followed.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::command::Command;

/// How often seed names are resolved again (DNS may change, e.g. a headless service).
pub(super) const SEED_RESOLVE_INTERVAL: Duration = Duration::from_secs(5);

/// Resolves `join` with the system resolver until `cancel` fires.
pub(super) async fn resolve_seeds(
    join: Vec<String>,
    commands: mpsc::Sender<Command>,
    cancel: CancellationToken,
) {
    let lookup = |name: String| async move {
        tokio::net::lookup_host(name.as_str())
            .await
            .map(Iterator::collect)
    };
    resolve_seeds_with(join, commands, cancel, lookup).await;
}

/// The resolver loop over any `lookup` (tests pass a hosts table of their own).
async fn resolve_seeds_with<F, Fut>(
    join: Vec<String>,
    commands: mpsc::Sender<Command>,
    cancel: CancellationToken,
    mut lookup: F,
) where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = std::io::Result<Vec<SocketAddr>>>,
{
    if join.is_empty() {
        return;
    }
    loop {
        let mut seeds = Vec::new();
        for name in &join {
            match lookup(name.clone()).await {
                Ok(addrs) => seeds.extend(addrs),
                Err(err) => tracing::warn!(seed = %name, %err, "cannot resolve seed"),
            }
        }
        seeds.sort();
        seeds.dedup();
        if commands.send(Command::Seeds(seeds)).await.is_err() {
            return;
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(SEED_RESOLVE_INTERVAL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use super::*;

    type Hosts = Arc<Mutex<HashMap<String, Vec<SocketAddr>>>>;

    /// A hosts table the test edits while the resolver runs.
    fn lookup_in(
        hosts: Hosts,
    ) -> impl FnMut(String) -> std::future::Ready<std::io::Result<Vec<SocketAddr>>> {
        move |name: String| {
            let found = hosts.lock().map(|h| h.get(&name).cloned()).ok().flatten();
            std::future::ready(found.ok_or_else(|| std::io::Error::other("no such host")))
        }
    }

    async fn next_seeds(rx: &mut mpsc::Receiver<Command>) -> Vec<SocketAddr> {
        match rx.recv().await {
            Some(Command::Seeds(seeds)) => seeds,
            _ => panic!("the resolver stopped or sent something else"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_join_name_is_resolved_again_each_round_and_followed_when_it_appears_or_moves() {
        let hosts = Hosts::default();
        let (tx, mut rx) = mpsc::channel(8);
        let cancel = CancellationToken::new();
        let join = vec!["seed.test:7701".to_owned(), "127.0.0.9:7701".to_owned()];
        let literal: SocketAddr = "127.0.0.9:7701".parse().unwrap();
        hosts.lock().unwrap().insert(join[1].clone(), vec![literal]);
        let resolver = tokio::spawn(resolve_seeds_with(
            join.clone(),
            tx,
            cancel.clone(),
            lookup_in(hosts.clone()),
        ));

        let started = tokio::time::Instant::now();
        assert_eq!(
            next_seeds(&mut rx).await,
            vec![literal],
            "not resolvable yet"
        );
        let first: SocketAddr = "127.0.0.2:7701".parse().unwrap();
        hosts.lock().unwrap().insert(join[0].clone(), vec![first]);
        assert_eq!(
            next_seeds(&mut rx).await,
            vec![first, literal],
            "resolved once it appeared"
        );
        assert_eq!(started.elapsed(), SEED_RESOLVE_INTERVAL);
        let moved: SocketAddr = "127.0.0.3:7701".parse().unwrap();
        hosts.lock().unwrap().insert(join[0].clone(), vec![moved]);
        assert_eq!(
            next_seeds(&mut rx).await,
            vec![moved, literal],
            "followed its move"
        );

        cancel.cancel();
        resolver.await.unwrap();
    }
}
