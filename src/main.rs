//! The `wharf` binary: parse the command line, load the config, set up
//! logging, and hand over to the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use wharf::cli::{self, Cli, Command};
use wharf::config::DaemonConfig;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match DaemonConfig::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("wharf: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("wharf: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => runtime.block_on(wharf::daemon::serve(config, cli.config.clone())),
        Command::Check => match cli::check(&config) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Command::Url => cli::url(&config),
        Command::Rotate => cli::rotate(&config),
        admin => runtime.block_on(cli::admin(&config, cli.server.as_deref(), admin)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wharf: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Human format with colours on a terminal; plain lines otherwise (journald
/// adds its own timestamps). `RUST_LOG` overrides the configured level.
fn init_logging(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(terminal)
        .with_target(false);
    // `try_init` would also install a bridge from the `log` crate, through
    // which Rocket would log request URIs (and so the webhook secret):
    // `set_global_default` installs the subscriber alone.
    let _ = tracing::subscriber::set_global_default(builder.finish());
}
