//! The three files an operator writes: a project file
//! (`wharf::config::project::parse`), `wharf.toml`
//! (`DaemonConfig::from_toml`, what `DaemonConfig::load` runs on the file's
//! text) and `settings.toml` (`Secrets::parse`, what `Secrets::load` runs).
//!
//! Input: one selector byte (`% 3`: 0 project file, 1 wharf.toml,
//! 2 settings.toml), then the file's text (invalid UTF-8 read lossily).
//!
//! Beyond "no panic", a crash is any of:
//! * a rejection that does not render as `file:line: reason` on one line,
//!   with a line inside the text (1 to its line count + 1) and a reason
//!   free of control characters (an echoed `"sw\rm"` once broke the line);
//! * a `wharf.toml` rejection that is not located in the file (the
//!   environment is empty here, so every error comes from the text);
//! * a project error whose `line` field differs from the rendered one;
//! * a settings error that echoes the value of `webhook_secret` or
//!   `admin_token` (secrets never reach a log line), even through a key
//!   that holds it;
//! * an accepted project with a stage that has no tag glob.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use wharf::config::project;
use wharf::config::settings::Secrets;
use wharf::config::{ConfigError, DaemonConfig};
use wharf_plugin_api::Registry;

static REGISTRY: LazyLock<Registry> =
    LazyLock::new(|| wharf::plugins::registry(&Default::default()));

const PROJECT: &str = "/etc/wharf/projects/web.toml";
const DAEMON: &str = "/etc/wharf/wharf.toml";
const SETTINGS: &str = "/var/lib/wharf/settings.toml";

/// `rendered` is `file:line: reason`, one line, the line inside `text`.
/// Returns the line.
fn assert_located(rendered: &str, file: &str, text: &str) -> usize {
    let rest = rendered
        .strip_prefix(file)
        .and_then(|r| r.strip_prefix(':'))
        .unwrap_or_else(|| panic!("not '{file}:line: reason': {rendered:?}"));
    let (line, reason) = rest
        .split_once(": ")
        .unwrap_or_else(|| panic!("no 'line: ' after the file: {rendered:?}"));
    let line: usize = line
        .parse()
        .unwrap_or_else(|_| panic!("line is not a number: {rendered:?}"));
    let last = text.lines().count() + 1;
    assert!(
        (1..=last).contains(&line),
        "line {line} outside 1..={last}: {rendered:?}"
    );
    assert!(!reason.trim().is_empty(), "empty reason: {rendered:?}");
    assert!(
        !reason.contains(char::is_control),
        "control character (a line break, an escape sequence) in the reason: {rendered:?}"
    );
    line
}

fn project_file(text: &str) {
    match project::parse(Path::new(PROJECT), text, &REGISTRY) {
        Ok(project) => {
            for stage in project.stages.values() {
                assert!(!stage.tags.is_empty(), "stage {} has no tags", stage.name);
            }
        }
        Err(error) => {
            let line = assert_located(&error.to_string(), PROJECT, text);
            assert_eq!(line, error.line);
        }
    }
}

fn daemon_file(text: &str) {
    match DaemonConfig::from_toml(Path::new(DAEMON), text) {
        Ok(_) => {}
        Err(error @ ConfigError::At { .. }) => {
            assert_located(&error.to_string(), DAEMON, text);
        }
        Err(other) => panic!("not located in the file: {other}"),
    }
}

fn settings_file(text: &str) {
    let Err(error) = Secrets::parse(Path::new(SETTINGS), text) else {
        return;
    };
    let rendered = error.to_string();
    assert_located(&rendered, SETTINGS, text);
    // "<key> must be …" and "<key> is missing" are fixed wording (string
    // literals, which a value may happen to be part of): only the parser's
    // messages, which quote the file, could carry a secret.
    let reason = rendered.split_once(": ").map_or("", |(_, reason)| reason);
    let fixed = reason.split_once(' ').is_some_and(|(key, rest)| {
        key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            && (rest.starts_with("must be ") || rest == "is missing")
    });
    if fixed {
        return;
    }
    if let Ok(table) = text.parse::<toml::Table>() {
        for key in ["webhook_secret", "admin_token"] {
            if let Some(value) = table.get(key).and_then(toml::Value::as_str) {
                // Shorter values could be in the message by chance (and
                // are no secret: under 16 bytes is refused).
                assert!(
                    value.len() < 8 || !rendered.contains(value),
                    "{key}'s value echoed: {rendered:?}"
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    match selector % 3 {
        0 => project_file(&text),
        1 => daemon_file(&text),
        _ => settings_file(&text),
    }
});
