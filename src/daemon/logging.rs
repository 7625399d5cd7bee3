//! Log output: `tracing` events to stderr, in the format the reader needs.
//!
//! - On a terminal: the human format, with colours and timestamps.
//! - Otherwise (a pipe, a file, journald): plain lines without colours or
//!   timestamps — journald and most log collectors add their own.
//! - When stderr is the journal itself (systemd sets `JOURNAL_STREAM` to its
//!   device and inode): each line also starts with a `<N>` syslog priority,
//!   which journald turns into the entry's priority, so
//!   `journalctl -u wharf -p warning` shows warnings and errors only.
//!
//! Events carry structured fields (`project`, `stage`, `deployment`, …) that
//! every format prints as `key=value`. No field or message ever holds the
//! webhook secret or the admin token; request lines carry the route, see
//! [`crate::api::RequestLog`].

use std::fmt;
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Where log lines go, which decides their format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Terminal,
    Plain,
    Journal,
}

impl Output {
    /// What stderr is connected to right now.
    pub fn detect() -> Output {
        if std::io::stderr().is_terminal() {
            Output::Terminal
        } else if stderr_is_journal() {
            Output::Journal
        } else {
            Output::Plain
        }
    }
}

/// Install the global subscriber. `RUST_LOG` overrides `level` (the
/// config's `log_level`).
///
/// Only the `tracing` subscriber is installed, never a bridge from the `log`
/// crate (which `try_init` would add): Rocket logs through `log`, and its
/// lines include request URIs — and so the webhook secret.
pub fn init(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let subscriber: Box<dyn Subscriber + Send + Sync> = match Output::detect() {
        Output::Terminal => Box::new(builder.with_ansi(true).finish()),
        Output::Plain => Box::new(builder.with_ansi(false).without_time().finish()),
        Output::Journal => {
            let plain = tracing_subscriber::fmt::format()
                .with_target(false)
                .with_ansi(false)
                .without_time();
            Box::new(
                builder
                    .with_ansi(false)
                    .event_format(Prioritized(plain))
                    .finish(),
            )
        }
    };
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// `JOURNAL_STREAM=<dev>:<inode>` names the socket systemd connected to
/// stdout/stderr; it only counts when stderr is still that socket (not
/// redirected by a wrapper script).
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(meta) => dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino()),
        Err(_) => false,
    }
}

/// The sd-daemon priority prefix (`<3>` error … `<7>` debug) in front of
/// the plain format.
struct Prioritized<F>(F);

impl<S, N, F> FormatEvent<S, N> for Prioritized<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(writer, "<{}>", priority(*event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// syslog priorities, as journald reads them.
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(priority(Level::ERROR), 3);
        assert_eq!(priority(Level::WARN), 4);
        assert_eq!(priority(Level::INFO), 6);
        assert_eq!(priority(Level::DEBUG), 7);
        assert_eq!(priority(Level::TRACE), 7);
    }
}
