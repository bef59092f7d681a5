//! `peer outbox list|replay|purge` and `peer dead-letters list|replay|purge`, on the store
//! of a stopped peer (a running peer holds the store's lock: opening it then fails clearly).

use crate::args::{PeerArgs, StoreAction, StoreArgs};
use crate::json::{self, StoredLine};
use crate::send;
use anyhow::Context;
use peer_sdk::Store;
use std::path::Path;
use std::process::ExitCode;

fn open(dir: &Path) -> anyhow::Result<Store> {
    if !dir.join(peer_sdk::store::FILE_NAME).exists() {
        anyhow::bail!("{} holds no peer store", dir.display());
    }
    Store::open(dir).with_context(|| format!("opening the store in {}", dir.display()))
}

/// `peer outbox ...`.
pub async fn outbox(args: StoreArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        StoreAction::List(dir) => {
            for m in open(&dir.store)?.outbox()? {
                if !json::print_line(&json::line(&StoredLine::message(&m?)))? {
                    break;
                }
            }
        }
        StoreAction::Replay(r) => {
            if r.id.is_some() {
                anyhow::bail!("--id selects a dead letter; the outbox is resumed as a whole");
            }
            let peer = PeerArgs {
                access: r.access,
                listen: r.listen,
                instance: None,
                store: Some(r.dir.store),
            };
            return send::resume_outbox(&peer).await;
        }
        StoreAction::Purge(dir) => {
            let n = open(&dir.store)?.purge_outbox()?;
            eprintln!("purged {n} message(s) from the outbox");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `peer dead-letters ...`.
pub async fn dead_letters(args: StoreArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        StoreAction::List(dir) => {
            for d in open(&dir.store)?.dead_letters()? {
                if !json::print_line(&json::line(&StoredLine::dead_letter(&d?)))? {
                    break;
                }
            }
        }
        StoreAction::Replay(r) => {
            let store = open(&r.dir.store)?;
            let n = match r.id {
                Some(id) => u64::from(store.replay_dead_letter(id, r.deadline)?),
                None => store.replay_dead_letters(r.deadline)?,
            };
            if r.id.is_some() && n == 0 {
                anyhow::bail!("no dead letter with id {}", r.id.unwrap_or_default());
            }
            eprintln!("moved {n} dead letter(s) back to the outbox; the next start sends them");
        }
        StoreAction::Purge(dir) => {
            let n = open(&dir.store)?.purge_dead_letters()?;
            eprintln!("purged {n} dead letter(s)");
        }
    }
    Ok(ExitCode::SUCCESS)
}
