//! The `sluice` binary: parse the configuration, set up logging, run the broker (or a
//! subcommand), and exit 0 after a clean shutdown.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use broker::config::{BrokerConfig, Cli, Command};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match BrokerConfig::resolve(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sluice: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sluice: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Some(Command::Healthcheck {
            bootstrap,
            timeout_ms,
        }) => {
            let addr = bootstrap.unwrap_or_else(|| config.listen.to_string());
            match runtime.block_on(broker::run::healthcheck(
                &addr,
                Duration::from_millis(timeout_ms),
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("sluice healthcheck: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        None => {
            log_open_file_limit();
            match runtime.block_on(broker::run::run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "sluice failed");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Below this many open files the broker warns at start-up: at most about 5,000 partitions
/// (three files each, more with older segments) and their connections.
const FEW_OPEN_FILES: u64 = 16_384;

/// Raises the open-file limit to the hard one (`broker::open_files`) and says what it is.
fn log_open_file_limit() {
    match broker::open_files::raise_to_hard() {
        Ok(limit) => {
            if limit.after > limit.before {
                tracing::info!(
                    from = limit.before,
                    to = limit.after,
                    "raised the open-file limit"
                );
            }
            if limit.after < FEW_OPEN_FILES {
                tracing::warn!(
                    limit = limit.after,
                    "the open-file limit allows at most about {} partitions (three files each, one more per older segment); raise the hard limit (ulimit -Hn, LimitNOFILE=, docker --ulimit nofile=) for more",
                    limit.after / 3
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
}
