//! `state_dir/settings.toml`: the webhook secret, the admin token and the
//! read-only metrics token.
//!
//! Generated on first launch (mode 0600, atomic write). A missing key is
//! generated and written back; a file that does not parse is an error and is
//! never replaced, because regenerating it would silently change the webhook
//! URL every CI job calls.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::atomic::write_atomic;

pub const SETTINGS_FILE: &str = "settings.toml";

/// The daemon's secrets. `Debug` is redacted so a stray `{:?}` in a log line
/// cannot leak them.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    pub webhook_secret: String,
    pub admin_token: String,
    /// Opens `GET /metrics` and nothing else, so a Prometheus scraper never
    /// holds a token that can deploy or rotate the URL. Generated at start
    /// when absent; a file edited by hand without it (the two keys older
    /// versions wrote) is still a valid file, and then only the admin token
    /// opens `/metrics` until the next start generates one.
    pub metrics_token: Option<String>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "Secrets { webhook_secret: <redacted>, admin_token: <redacted>, metrics_token: <redacted> }",
        )
    }
}

/// What `settings.toml` may hold on disk: either key may be missing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartialSecrets {
    webhook_secret: Option<String>,
    admin_token: Option<String>,
    metrics_token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A fresh webhook secret: a UUID v4, as the contract fixes.
pub fn new_webhook_secret() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A fresh admin (or metrics) token: 256 bits from the OS's CSPRNG, hex.
///
/// Without the OS's random numbers there is no safe token to make, and no
/// input leads here: stopping is the only right answer.
#[allow(clippy::expect_used)]
pub fn new_admin_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random number generator is unavailable");
    hex::encode(bytes)
}

impl Secrets {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(SETTINGS_FILE)
    }

    /// Read `settings.toml`, creating it (and `state_dir`) on first launch and
    /// filling in a missing key.
    ///
    /// # Errors
    /// The file does not parse (file and line given), holds an unusable value,
    /// or cannot be read or written.
    pub fn load_or_create(state_dir: &Path) -> Result<Secrets, SettingsError> {
        let path = Self::path(state_dir);
        let io = |source| SettingsError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let existing = match wharf_plugin_api::files::read_limited_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io(e)),
        };
        let partial = match &existing {
            Some(text) => Self::parse_partial(&path, text)?,
            None => PartialSecrets {
                webhook_secret: None,
                admin_token: None,
                metrics_token: None,
            },
        };
        let complete = partial.webhook_secret.is_some()
            && partial.admin_token.is_some()
            && partial.metrics_token.is_some();
        let secrets = Secrets {
            webhook_secret: partial.webhook_secret.unwrap_or_else(new_webhook_secret),
            admin_token: partial.admin_token.unwrap_or_else(new_admin_token),
            metrics_token: Some(partial.metrics_token.unwrap_or_else(new_admin_token)),
        };
        secrets.check(&path)?;
        if !complete {
            secrets.save(state_dir)?;
        }
        Ok(secrets)
    }

    /// Read `settings.toml` without creating anything (the reloader and the
    /// CLI use this).
    ///
    /// # Errors
    /// As [`Secrets::load_or_create`], and a missing key is an error here.
    pub fn load(state_dir: &Path) -> Result<Secrets, SettingsError> {
        let path = Self::path(state_dir);
        let text = wharf_plugin_api::files::read_limited_to_string(&path).map_err(|source| {
            SettingsError::Io {
                path: path.clone(),
                source,
            }
        })?;
        Self::parse(&path, &text)
    }

    /// The secrets `text`, the contents of the settings file `path`, holds:
    /// what [`Secrets::load`] does after reading the file.
    ///
    /// # Errors
    /// `path:line: reason` ([`SettingsError::Parse`]): the text does not
    /// parse, a key is missing (the line is the end of the text) or a value
    /// is unusable (the line of its key; the value is never echoed).
    pub fn parse(path: &Path, text: &str) -> Result<Secrets, SettingsError> {
        let partial = Self::parse_partial(path, text)?;
        let at = |line, message| SettingsError::Parse {
            path: path.to_path_buf(),
            line,
            message,
        };
        let end = line_of(text, text.len());
        let missing = |key: &str| at(end, format!("{key} is missing"));
        let secrets = Secrets {
            webhook_secret: partial
                .webhook_secret
                .ok_or_else(|| missing("webhook_secret"))?,
            admin_token: partial.admin_token.ok_or_else(|| missing("admin_token"))?,
            metrics_token: partial.metrics_token,
        };
        secrets.check(path).map_err(|e| match e {
            // `check`'s messages start with the key they are about.
            SettingsError::Invalid { message, .. } => {
                let key = message.split(' ').next().unwrap_or_default();
                let line = super::locate::key_line(text, &[key]).unwrap_or(end);
                at(line, message)
            }
            other => other,
        })?;
        Ok(secrets)
    }

    fn parse_partial(path: &Path, text: &str) -> Result<PartialSecrets, SettingsError> {
        toml::from_str(text).map_err(|e| SettingsError::Parse {
            path: path.to_path_buf(),
            line: e.span().map(|s| line_of(text, s.start)).unwrap_or(1),
            message: without_secrets(super::locate::toml_reason(text, &e), text),
        })
    }

    /// Reject values that would make a weak or unusable URL or token. The
    /// message never includes the value itself.
    fn check(&self, path: &Path) -> Result<(), SettingsError> {
        let invalid = |message: &str| {
            Err(SettingsError::Invalid {
                path: path.to_path_buf(),
                message: message.to_string(),
            })
        };
        let url_safe = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
        };
        if self.webhook_secret.len() < 16 || !url_safe(&self.webhook_secret) {
            return invalid(
                "webhook_secret must be at least 16 characters of letters, digits, '-', '_', '.' or '~' (a UUID is generated when the key is absent)",
            );
        }
        if self.admin_token.len() < 32 || !url_safe(&self.admin_token) {
            return invalid(
                "admin_token must be at least 32 characters of letters, digits, '-', '_', '.' or '~' (one is generated when the key is absent)",
            );
        }
        let Some(metrics_token) = &self.metrics_token else {
            return Ok(());
        };
        if metrics_token.len() < 32 || !url_safe(metrics_token) {
            return invalid(
                "metrics_token must be at least 32 characters of letters, digits, '-', '_', '.' or '~' (one is generated when the key is absent)",
            );
        }
        if *metrics_token == self.admin_token {
            return invalid(
                "metrics_token must differ from admin_token: it is handed to scrapers, which must not be able to deploy",
            );
        }
        Ok(())
    }

    /// Write the secrets to `state_dir/settings.toml`, mode 0600, atomically.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save(&self, state_dir: &Path) -> Result<(), SettingsError> {
        let path = Self::path(state_dir);
        let mut text = format!(
            "# wharf's secrets: keep this file private (mode 0600).\n\
             # Edit by hand or run `wharf rotate`; a running wharf picks up changes.\n\
             webhook_secret = \"{}\"\nadmin_token = \"{}\"\n",
            self.webhook_secret, self.admin_token
        );
        if let Some(metrics_token) = &self.metrics_token {
            text.push_str(&format!(
                "# Opens GET /metrics only: give this one to a Prometheus scraper.\n\
                 metrics_token = \"{metrics_token}\"\n"
            ));
        }
        write_atomic(&path, text.as_bytes(), 0o600)
            .map_err(|source| SettingsError::Io { path, source })
    }

    /// A copy with a new webhook secret (rotation keeps both tokens).
    pub fn rotated(&self) -> Secrets {
        Secrets {
            webhook_secret: new_webhook_secret(),
            ..self.clone()
        }
    }
}

/// `message` with every string value of the settings file `text` (at least
/// 8 bytes: all of them secrets, or meant to be) cut out. serde echoes an
/// unknown key, and a key may hold a secret the operator pasted there too.
fn without_secrets(message: String, text: &str) -> String {
    let Ok(table) = text.parse::<toml::Table>() else {
        return message;
    };
    table
        .values()
        .filter_map(toml::Value::as_str)
        .filter(|value| value.len() >= 8)
        .fold(message, |message, secret| {
            message.replace(secret, "<redacted>")
        })
}

/// 1-based line number of byte `offset` in `text`.
pub fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset)
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn first_launch_generates_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = Secrets::load_or_create(dir.path()).unwrap();
        let parsed = uuid::Uuid::parse_str(&secrets.webhook_secret).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(secrets.admin_token.len(), 64);
        let path = Secrets::path(dir.path());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Secrets::load_or_create(dir.path()).unwrap(), secrets);
        assert_eq!(Secrets::load(dir.path()).unwrap(), secrets);
    }

    #[test]
    fn a_missing_key_is_filled_in_and_the_other_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = Secrets::path(dir.path());
        std::fs::write(&path, "webhook_secret = \"0123456789abcdef-kept\"\n").unwrap();
        let secrets = Secrets::load_or_create(dir.path()).unwrap();
        assert_eq!(secrets.webhook_secret, "0123456789abcdef-kept");
        let metrics_token = secrets.metrics_token.clone().unwrap();
        assert_eq!(metrics_token.len(), 64);
        assert_ne!(metrics_token, secrets.admin_token);
        assert_eq!(Secrets::load(dir.path()).unwrap(), secrets);
    }

    #[test]
    fn an_unparsable_file_is_an_error_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = Secrets::path(dir.path());
        let broken = "webhook_secret = \"abc\"\nadmin_token = \n";
        std::fs::write(&path, broken).unwrap();
        let error = Secrets::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(error.contains("settings.toml:2"), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);
    }

    #[test]
    fn weak_values_are_rejected_without_echoing_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = Secrets::path(dir.path());
        std::fs::write(&path, "webhook_secret = \"a b/c\"\nadmin_token = \"x\"\n").unwrap();
        let error = Secrets::load_or_create(dir.path()).unwrap_err().to_string();
        assert!(error.contains("webhook_secret"), "{error}");
        assert!(!error.contains("a b/c"), "{error}");
    }

    #[test]
    fn a_hand_written_file_without_metrics_token_is_valid() {
        let text = format!(
            "webhook_secret = \"{}\"\nadmin_token = \"{}\"\n",
            new_webhook_secret(),
            new_admin_token()
        );
        let secrets = Secrets::parse(Path::new("/s/settings.toml"), &text).unwrap();
        assert_eq!(secrets.metrics_token, None);
        let same = format!("{text}metrics_token = \"{}\"\n", secrets.admin_token);
        let error = Secrets::parse(Path::new("/s/settings.toml"), &same).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("settings.toml:3: metrics_token must differ"),
            "{error}"
        );
    }

    #[test]
    fn debug_output_is_redacted() {
        let secrets = Secrets {
            webhook_secret: new_webhook_secret(),
            admin_token: new_admin_token(),
            metrics_token: Some(new_admin_token()),
        };
        let shown = format!("{secrets:?}");
        assert!(!shown.contains(&secrets.webhook_secret));
        assert!(!shown.contains(&secrets.admin_token));
        assert!(!shown.contains(secrets.metrics_token.as_deref().unwrap()));
    }

    #[test]
    fn parse_names_the_line_of_every_rejection() {
        let path = Path::new("/s/settings.toml");
        let good_token = "0123456789abcdef0123456789abcdef";
        let cases = [
            (
                format!("# c\nadmin_token = \"{good_token}\"\n"),
                3,
                "webhook_secret is missing",
            ),
            (
                format!("admin_token = \"{good_token}\"\n\nwebhook_secret = \"a b/c\"\n"),
                3,
                "webhook_secret must be",
            ),
            (
                "webhook_secret = \"0123456789abcdef\"\nadmin_token = \"short\"".to_string(),
                2,
                "admin_token must be",
            ),
            ("webhook_secret = 1\n".to_string(), 1, "invalid type"),
            (
                "# c\nwebhook_secret =".to_string(),
                2,
                "not valid TOML at column 17",
            ),
            (
                "\"admin\\r_token\" = 1".to_string(),
                1,
                "unknown field `admin\\r_token`",
            ),
            (
                "webhook_secret = \"a b/c-0123456789\"\n\"xa b/c-0123456789\" = 1\n".to_string(),
                2,
                "unknown field `x<redacted>`",
            ),
        ];
        for (text, line, needle) in cases {
            let error = Secrets::parse(path, &text).unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("/s/settings.toml:{line}: ")),
                "{text:?}: {error}"
            );
            assert!(error.contains(needle), "{text:?}: {error}");
            assert!(
                !error.contains("a b/c") && !error.contains("short"),
                "{error}"
            );
            assert!(!error.contains(char::is_control), "{error:?}");
        }
    }
}
