//! The `directory` binary: a thin shell over [`directory::cli`].

use std::process::ExitCode;

use clap::Parser;

/// jemalloc with background purging hands freed memory back to the OS: after a
/// connection flood the node's RSS falls back near its baseline, where glibc's malloc kept
/// it (see tests/limits_process.rs).
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    #[cfg(unix)]
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!("warning: cannot start jemalloc's purging thread: {e}");
    }
    directory::cli::run(directory::cli::Cli::parse()).await
}
