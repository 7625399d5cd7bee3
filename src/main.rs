//! The `wharf` binary: parse the command line, load the config, set up
//! logging, and hand over to the library.

use std::process::ExitCode;

use clap::Parser;
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
    // Human format on a terminal, plain lines for journald otherwise; never
    // the `log` bridge (Rocket would log URIs holding the webhook secret).
    wharf::daemon::logging::init(&config.log_level);
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
        Command::Routes => runtime.block_on(cli::routes(&config)),
        Command::Proxy { state_dir } => runtime.block_on(wharf::proxy::run(
            state_dir.unwrap_or_else(|| config.state_dir.clone()),
        )),
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
