//! The `directory` binary: a thin shell over [`directory::cli`].

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    directory::cli::run(directory::cli::Cli::parse()).await
}
