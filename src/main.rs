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
    let command = cli.command.unwrap_or(Command::Serve);
    if matches!(command, Command::Serve) {
        // This thread is the daemon's runtime (see `runtime_for`).
        wharf::daemon::logging::batch_this_thread();
        wharf::daemon::logging::flush_on_panic();
    }
    let runtime = match runtime_for(&command) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("wharf: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
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
    drop(runtime);
    wharf::daemon::logging::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wharf: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The daemon runs on one thread: its async work is short (parse, match,
/// hand over to the store's writer thread, ask the engine), anything that
/// blocks runs on the blocking pool, and a second worker thread only adds
/// wake-ups between the two (measured: a fifth of the CPU of a webhook
/// answer) and memory. Its log lines go out whenever that thread runs out
/// of work. The route proxy carries the deployed services' traffic and
/// takes every core.
fn runtime_for(command: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match command {
        Command::Proxy { .. } => tokio::runtime::Builder::new_multi_thread(),
        _ => tokio::runtime::Builder::new_current_thread(),
    };
    if matches!(command, Command::Serve) {
        builder.on_thread_park(wharf::daemon::logging::flush);
    }
    builder.enable_all().build()
}
