//! Running a deployer's child processes: the one way plugins that shell out
//! (script, compose) start a program, log its output and stop it.
//!
//! - The program is an argv, never a shell string: the caller builds a
//!   [`tokio::process::Command`] and only values it chose reach it.
//! - The child gets a process group of its own, so that a timeout or a
//!   cancellation ends the program *and* whatever it started (SIGTERM to the
//!   group, SIGKILL after [`KILL_GRACE`]).
//! - stdout and stderr are forwarded to the deployment's [`LogSink`] a line
//!   at a time (lossy UTF-8, long lines cut), or kept for the caller when it
//!   wants to read the answer (`docker inspect`); see [`Output`].
//! - A deadline and a cancellation token bound every run; the caller
//!   decides what a timeout means for its deployment.

use std::ffi::OsStr;
use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{LogSink, LogStream};

/// After SIGTERM, how long the group gets before SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(5);
/// After the program exits, how long we keep reading output that background
/// children may still hold open before we stop listening.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);
/// Lines longer than this are cut, so one runaway line cannot fill the store.
pub const MAX_LINE_BYTES: usize = 8 * 1024;
/// At most this many lines of a stream are kept for the caller.
const MAX_CAPTURED_LINES: usize = 10_000;

/// Where the child's output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Both streams into the deployment log, a line at a time.
    Log,
    /// stdout kept for the caller in [`Finished::stdout`] (machine output
    /// such as JSON or container ids); stderr into the log.
    CaptureStdout,
    /// Both kept for the caller, nothing logged: probes whose failure is
    /// expected and explained by the caller (is `docker compose` there?).
    Quiet,
}

/// The bounds of one run: when it must be over, and the token that ends it
/// early.
#[derive(Debug, Clone)]
pub struct Limits {
    pub deadline: tokio::time::Instant,
    pub cancel: CancellationToken,
}

impl Limits {
    /// `timeout` from now, ended early by `cancel`.
    pub fn new(timeout: Duration, cancel: CancellationToken) -> Self {
        Limits {
            deadline: tokio::time::Instant::now() + timeout,
            cancel,
        }
    }

    /// Time left before the deadline (zero when it has passed).
    pub fn remaining(&self) -> Duration {
        self.deadline
            .saturating_duration_since(tokio::time::Instant::now())
    }
}

/// A program that ran to its end.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub elapsed: Duration,
    /// stdout lines, unless they went to the log ([`Output::Log`]).
    pub stdout: Vec<String>,
    /// stderr lines, with [`Output::Quiet`] only.
    pub stderr: Vec<String>,
}

impl Finished {
    /// "exited 0", "exited with status 3", "was killed by signal 9".
    pub fn describe(&self) -> String {
        describe(self.status)
    }
}

/// Why a run did not end on its own.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("could not start {program:?}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("could not wait for {program:?}: {source}")]
    Wait { program: String, source: io::Error },
    /// The deadline passed; the process group was terminated.
    #[error("{program:?} did not finish in time and was stopped")]
    TimedOut { program: String },
    /// The cancellation token fired; the process group was terminated.
    #[error("{program:?} was stopped: the deployment was cancelled")]
    Cancelled { program: String },
}

/// A started child, its output already flowing to the log.
#[derive(Debug)]
pub struct Running {
    child: Child,
    program: String,
    pid: u32,
    started: Instant,
    log: LogSink,
    readers: [Option<JoinHandle<()>>; 2],
    captured: [Option<mpsc::UnboundedReceiver<String>>; 2],
}

impl Running {
    /// Start `command` in a process group of its own, stdin closed, its
    /// output going where `output` says.
    ///
    /// # Errors
    /// [`RunError::Spawn`] when the program cannot be started (not found,
    /// not executable); the message names it.
    pub fn spawn(mut command: Command, log: &LogSink, output: Output) -> Result<Running, RunError> {
        let program = program_name(command.as_std().get_program());
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A group of its own, so a timeout can end the program and its children.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|source| RunError::Spawn {
            program: program.clone(),
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        let keep_stdout = output != Output::Log;
        let keep_stderr = output == Output::Quiet;
        let (out_reader, out_kept) = match child.stdout.take() {
            Some(out) if keep_stdout => {
                let (reader, kept) = capture_lines(out);
                (Some(reader), Some(kept))
            }
            Some(out) => (
                Some(forward_lines(out, LogStream::Stdout, log.clone())),
                None,
            ),
            None => (None, None),
        };
        let (err_reader, err_kept) = match child.stderr.take() {
            Some(err) if keep_stderr => {
                let (reader, kept) = capture_lines(err);
                (Some(reader), Some(kept))
            }
            Some(err) => (
                Some(forward_lines(err, LogStream::Stderr, log.clone())),
                None,
            ),
            None => (None, None),
        };
        Ok(Running {
            child,
            program,
            pid,
            started: Instant::now(),
            log: log.clone(),
            readers: [out_reader, err_reader],
            captured: [out_kept, err_kept],
        })
    }

    /// The child's pid, which is also its process group's id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Wait for the child to exit, or stop its whole group when `limits`
    /// run out first.
    ///
    /// # Errors
    /// [`RunError::TimedOut`] or [`RunError::Cancelled`] after the group was
    /// terminated; [`RunError::Wait`] if waiting itself failed.
    pub async fn finish(mut self, limits: &Limits) -> Result<Finished, RunError> {
        let ending = tokio::select! {
            status = self.child.wait() => Ok(status),
            _ = tokio::time::sleep_until(limits.deadline) => Err(RunError::TimedOut {
                program: self.program.clone(),
            }),
            _ = limits.cancel.cancelled() => Err(RunError::Cancelled {
                program: self.program.clone(),
            }),
        };
        match ending {
            Ok(status) => {
                let status = status.map_err(|source| RunError::Wait {
                    program: self.program.clone(),
                    source,
                })?;
                drain(std::mem::take(&mut self.readers)).await;
                let [stdout, stderr] = std::mem::take(&mut self.captured).map(|kept| {
                    let mut lines = Vec::new();
                    if let Some(mut kept) = kept {
                        while let Ok(line) = kept.try_recv() {
                            lines.push(line);
                        }
                    }
                    lines
                });
                Ok(Finished {
                    status,
                    elapsed: self.started.elapsed(),
                    stdout,
                    stderr,
                })
            }
            Err(stopped) => {
                terminate_group(&mut self.child, self.pid, &self.log).await;
                drain(std::mem::take(&mut self.readers)).await;
                Err(stopped)
            }
        }
    }
}

/// Spawn `command` and wait for it within `limits`: [`Running::spawn`] then
/// [`Running::finish`].
///
/// # Errors
/// As those two.
pub async fn run(
    command: Command,
    log: &LogSink,
    output: Output,
    limits: &Limits,
) -> Result<Finished, RunError> {
    Running::spawn(command, log, output)?.finish(limits).await
}

/// "exited 0", "exited with status 3", "was killed by signal 9".
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => "exited 0".to_string(),
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended: {status}"),
    }
}

fn program_name(program: &OsStr) -> String {
    program.to_string_lossy().into_owned()
}

/// SIGTERM to the whole group, then SIGKILL if it lingers.
async fn terminate_group(child: &mut Child, pid: u32, log: &LogSink) {
    if pid == 0 {
        return;
    }
    let Ok(raw) = i32::try_from(pid) else { return };
    let group = Pid::from_raw(raw);
    log.info(format!("stopping process group {pid} (SIGTERM)"));
    let _ = killpg(group, Signal::SIGTERM);
    if tokio::time::timeout(KILL_GRACE, child.wait())
        .await
        .is_err()
    {
        log.info(format!("process group {pid} still alive: SIGKILL"));
    }
    // Kill stragglers of the group even when the leader obeyed SIGTERM.
    let _ = killpg(group, Signal::SIGKILL);
    let _ = child.wait().await;
}

/// Read a stream one line at a time, lossy on bad UTF-8, long lines cut.
///
/// At most [`MAX_LINE_BYTES`] of a line are ever held: the rest, up to its
/// newline, is skipped as it arrives, so a program that writes gigabytes
/// without a newline costs one buffer, not gigabytes.
fn each_line<R, F>(stream: R, mut each: F) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    F: FnMut(String) + Send + 'static,
{
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::with_capacity(256);
        while let Ok(Some(())) = read_bounded_line(&mut reader, &mut line).await {
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            each(String::from_utf8_lossy(&line).into_owned());
        }
    })
}

/// Read one line into `line` (cleared first), keeping at most
/// [`MAX_LINE_BYTES`] of it and the newline; `None` at the end of the
/// stream with nothing read.
async fn read_bounded_line<R>(
    reader: &mut BufReader<R>,
    line: &mut Vec<u8>,
) -> std::io::Result<Option<()>>
where
    R: AsyncRead + Unpin,
{
    line.clear();
    let mut seen_any = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(seen_any.then_some(()));
        }
        seen_any = true;
        let (chunk, complete) = match available.iter().position(|b| *b == b'\n') {
            Some(end) => (available.get(..=end).unwrap_or(available), true),
            None => (available, false),
        };
        let room = MAX_LINE_BYTES.saturating_sub(line.len());
        line.extend_from_slice(chunk.get(..room).unwrap_or(chunk));
        let used = chunk.len();
        reader.consume(used);
        if complete {
            return Ok(Some(()));
        }
    }
}

/// Forward a stream into the log.
fn forward_lines<R>(stream: R, kind: LogStream, log: LogSink) -> JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    each_line(stream, move |line| log.line(kind, line))
}

/// Keep a stream's lines for the caller, up to [`MAX_CAPTURED_LINES`].
fn capture_lines<R>(stream: R) -> (JoinHandle<()>, mpsc::UnboundedReceiver<String>)
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let (sender, receiver) = mpsc::unbounded_channel();
    let mut kept = 0;
    let reader = each_line(stream, move |line| {
        if kept < MAX_CAPTURED_LINES {
            kept += 1;
            let _ = sender.send(line);
        }
    });
    (reader, receiver)
}

/// Wait for the output readers, but not forever: a background child may keep
/// the pipes open long after the program itself exited.
async fn drain(readers: [Option<JoinHandle<()>>; 2]) {
    let deadline = tokio::time::Instant::now() + OUTPUT_DRAIN;
    for reader in readers.into_iter().flatten() {
        let abort = reader.abort_handle();
        if tokio::time::timeout_at(deadline, reader).await.is_err() {
            abort.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LogLine;

    fn sh(snippet: &str) -> Command {
        let mut command = Command::new("/bin/sh");
        command.arg("-c").arg(snippet);
        command
    }

    fn lines_of(receiver: &mut tokio::sync::mpsc::UnboundedReceiver<LogLine>) -> Vec<LogLine> {
        let mut lines = Vec::new();
        while let Ok(line) = receiver.try_recv() {
            lines.push(line);
        }
        lines
    }

    #[tokio::test]
    async fn output_goes_to_the_log_or_the_caller() {
        let (log, mut receiver) = LogSink::channel();
        let limits = Limits::new(Duration::from_secs(10), CancellationToken::new());
        let finished = run(sh("echo out; echo err >&2"), &log, Output::Log, &limits)
            .await
            .unwrap();
        assert!(finished.status.success());
        assert!(finished.stdout.is_empty());
        let lines = lines_of(&mut receiver);
        assert!(lines
            .iter()
            .any(|l| l.stream == LogStream::Stdout && l.text == "out"));
        assert!(lines
            .iter()
            .any(|l| l.stream == LogStream::Stderr && l.text == "err"));

        let finished = run(
            sh("echo one; echo two; exit 4"),
            &log,
            Output::CaptureStdout,
            &limits,
        )
        .await
        .unwrap();
        assert_eq!(finished.stdout, ["one", "two"]);
        assert_eq!(finished.describe(), "exited with status 4");
        assert!(lines_of(&mut receiver)
            .iter()
            .all(|l| l.stream != LogStream::Stdout));

        let finished = run(
            sh("echo quiet; echo hush >&2"),
            &log,
            Output::Quiet,
            &limits,
        )
        .await
        .unwrap();
        assert_eq!(
            (finished.stdout, finished.stderr),
            (vec!["quiet".to_string()], vec!["hush".to_string()])
        );
        assert!(lines_of(&mut receiver).is_empty());
    }

    #[tokio::test]
    async fn a_line_without_end_is_cut_and_never_held_whole() {
        let (log, _receiver) = LogSink::channel();
        let limits = Limits::new(Duration::from_secs(30), CancellationToken::new());
        // 64 MiB without a newline, then a short line.
        let finished = run(
            sh("head -c 67108864 /dev/zero | tr '\\0' x; echo; echo after"),
            &log,
            Output::CaptureStdout,
            &limits,
        )
        .await
        .unwrap();
        assert_eq!(finished.stdout.len(), 2);
        assert_eq!(finished.stdout[0].len(), MAX_LINE_BYTES);
        assert_eq!(finished.stdout[1], "after");
    }

    #[tokio::test]
    async fn a_deadline_stops_the_whole_group() {
        let marker = std::env::temp_dir().join(format!("wharf-process-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let (log, _receiver) = LogSink::channel();
        let limits = Limits::new(Duration::from_millis(300), CancellationToken::new());
        let snippet = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let error = run(sh(&snippet), &log, Output::Log, &limits)
            .await
            .unwrap_err();
        assert!(matches!(error, RunError::TimedOut { .. }), "{error}");
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!marker.exists(), "a child survived the deadline");
    }

    #[tokio::test]
    async fn cancellation_stops_the_run() {
        let (log, _receiver) = LogSink::channel();
        let cancel = CancellationToken::new();
        let limits = Limits::new(Duration::from_secs(60), cancel.clone());
        let running = Running::spawn(sh("sleep 30"), &log, Output::Log).unwrap();
        assert!(running.pid() > 0);
        cancel.cancel();
        let started = Instant::now();
        let error = running.finish(&limits).await.unwrap_err();
        assert!(matches!(error, RunError::Cancelled { .. }), "{error}");
        assert!(started.elapsed() < KILL_GRACE);
    }

    #[tokio::test]
    async fn a_missing_program_is_named() {
        let (log, _receiver) = LogSink::channel();
        let error = Running::spawn(Command::new("/nonexistent/tool"), &log, Output::Log)
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/tool"), "{error}");
    }
}
