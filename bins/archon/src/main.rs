//! The `archon` command: parses arguments and hands them to [`archon_cli::run`].

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: far fewer cycles than glibc's malloc under the manager's
/// many small, cross-thread allocations (see benches/RESULTS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Started by a worker of this process as its lease keeper: nothing else.
    if let Some(code) = archon_exec::lease_keeper_main_if_asked() {
        return code;
    }
    let cli = archon_cli::cli::Cli::parse();
    archon_cli::logging::init(&cli.log, cli.verbose, &archon_cli::logging::LogOptions::default());
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt.block_on(archon_cli::run(cli)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
