//! The `archon` CLI and `archon dev` as a library: [`run`] executes a parsed
//! [`cli::Cli`]; [`dev::run`] is the single-process cluster (manager + worker +
//! gRPC and REST APIs) that tests can start without the binary. Both daemons
//! compose their manager, store and worker through the facade crate's
//! [`archon::Builder`], as an embedding program does.

pub mod certs;
pub mod cli;
mod commands;
pub mod daemon;
pub mod dev;
pub mod logging;
mod render;
pub mod security;
pub mod serving;
pub mod settings;

use std::process::ExitCode;

pub use archon::{executors, host, postgres, replicated};

use tokio_util::sync::CancellationToken;

/// Exit code for bad input (flags, spec files, unknown ids, rejected jobs).
pub const EXIT_BAD_INPUT: u8 = 2;

/// Runs one CLI invocation to its end and returns the process exit code.
pub async fn run(cli: cli::Cli) -> ExitCode {
    match commands::dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            let code = commands::exit_code_for(&e);
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}

/// A token cancelled on Ctrl-C or SIGTERM.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = ctrl_c => {}
                        _ = term.recv() => {}
                    }
                }
                Err(_) => {
                    let _ = ctrl_c.await;
                }
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        t.cancel();
    });
    token
}
