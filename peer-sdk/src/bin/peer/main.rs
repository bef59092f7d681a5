//! `peer`: the SDK's command-line face for operators and scripts (in the spirit of the
//! `nats` CLI). Thin: parse, set up logging, run one subcommand module.
//!
//! # Layout
//! - `args`: every subcommand and flag.
//! - `common`: starting a peer from the flags, waiting for Ctrl-C / SIGTERM.
//! - `json`: the JSON lines printed per delivery and per dead letter.
//! - `listen` (also `subscribe`), `send`, `publish`, `request`, `bench`: one subcommand
//!   each.
//! - `store`: `outbox` and `dead-letters` on a stopped peer's store.

mod args;
mod bench;
mod common;
mod json;
mod listen;
mod publish;
mod request;
mod send;
mod store;

use clap::Parser;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colours only for a person at a terminal: never escape codes in a file or a pipe.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    let cli = args::Cli::parse();
    let result = match cli.command {
        args::Command::Listen(a) => listen::run(a).await,
        args::Command::Subscribe(a) => listen::subscribe(a).await,
        args::Command::Send(a) => send::run(a).await,
        args::Command::Publish(a) => publish::run(a).await,
        args::Command::Request(a) => request::run(a).await,
        args::Command::Bench(a) => bench::run(a).await,
        args::Command::Outbox(a) => store::outbox(a).await,
        args::Command::DeadLetters(a) => store::dead_letters(a).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", common::describe(&e));
            ExitCode::from(common::EXIT_FAILURE)
        }
    }
}
