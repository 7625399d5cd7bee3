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
use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::sync::{Mutex, PoisonError, TryLockError};

use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
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
        .with_writer(Batched)
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

/// Where log lines go: stderr, one `write` per line — except the lines of
/// a thread that asked for [`batch_this_thread`] (the daemon's one runtime
/// thread), which wait in a buffer that [`flush`] writes out in one `write`.
///
/// Under a burst of webhooks the request lines — formatted, then a `write`
/// each — were a sixth of the CPU of a 404 answer. Batched, a line waits at
/// most until the runtime has nothing left to do (microseconds when idle),
/// or until 16 KiB are waiting; `WARN` and `ERROR` lines flush at once, with everything
/// before them, so the lines an operator needs after a crash are out
/// before it. A panic flushes too (see [`flush_on_panic`]). Other threads
/// (the store's writer, the blocking pool, the file watcher) write at once:
/// nothing would flush their lines while the runtime sleeps.
#[derive(Clone, Copy)]
pub struct Batched;

thread_local! {
    static BATCHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Lines of this thread below `WARN` wait for [`flush`] from now on.
pub fn batch_this_thread() {
    BATCHING.with(|batching| batching.set(true));
}

/// What is written out at once, whatever the runtime does.
const BATCH_LIMIT: usize = 16 * 1024;

static PENDING: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// The writer of one log line.
pub struct LineWriter {
    /// Write out now, with everything pending.
    urgent: bool,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut pending = PENDING.lock().unwrap_or_else(PoisonError::into_inner);
        pending.extend_from_slice(bytes);
        if self.urgent || pending.len() >= BATCH_LIMIT {
            write_out(&mut pending);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Batched {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter { urgent: true }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter {
        LineWriter {
            urgent: *meta.level() <= Level::WARN || !BATCHING.with(std::cell::Cell::get),
        }
    }
}

/// Write out the lines waiting. Called by the daemon's runtime each time it
/// is about to wait for work, and before the process exits.
pub fn flush() {
    let mut pending = PENDING.lock().unwrap_or_else(PoisonError::into_inner);
    if !pending.is_empty() {
        write_out(&mut pending);
    }
}

/// The lines waiting go out before a panic's message (and before an abort
/// could lose them). Only if the buffer is free: a panic while this thread
/// holds it must not wait for itself.
pub fn flush_on_panic() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let pending = match PENDING.try_lock() {
            Ok(pending) => Some(pending),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
        if let Some(mut pending) = pending {
            write_out(&mut pending);
        }
        previous(info);
    }));
}

/// Under the lock, so lines from several threads keep their order. A log
/// that cannot be written (stderr closed) loses its lines, as an unbatched
/// one would.
fn write_out(pending: &mut Vec<u8>) {
    let _ = std::io::stderr().lock().write_all(pending);
    pending.clear();
    // Keep a burst's buffer, not a giant one.
    if pending.capacity() > 4 * BATCH_LIMIT {
        pending.shrink_to(BATCH_LIMIT);
    }
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
    fn batched_lines_wait_until_a_flush_or_an_urgent_line() {
        let pending = || PENDING.lock().unwrap().len();
        let line = b"(a log line of the logging unit test)\n";
        LineWriter { urgent: false }.write_all(line).unwrap();
        LineWriter { urgent: false }.write_all(line).unwrap();
        assert_eq!(pending(), 2 * line.len());
        flush();
        assert_eq!(pending(), 0);
        LineWriter { urgent: false }.write_all(line).unwrap();
        LineWriter { urgent: true }.write_all(line).unwrap();
        assert_eq!(pending(), 0, "an urgent line takes the waiting ones along");
        for _ in 0..=BATCH_LIMIT / line.len() {
            LineWriter { urgent: false }.write_all(line).unwrap();
        }
        assert!(pending() < BATCH_LIMIT, "a full buffer is written out");
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(priority(Level::ERROR), 3);
        assert_eq!(priority(Level::WARN), 4);
        assert_eq!(priority(Level::INFO), 6);
        assert_eq!(priority(Level::DEBUG), 7);
        assert_eq!(priority(Level::TRACE), 7);
    }
}
