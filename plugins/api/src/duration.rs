//! Durations as operators write them (`"90s"`, `"5m"`, `"1h 30m"`): one
//! parser with one error wording, one display form, and a serde adapter, for
//! `wharf.toml` and every plugin's table alike.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// A duration shown to people: `1m 30s`.
pub use humantime::FormattedDuration;

/// Why a text is not a duration. It quotes the text; a caller prefixes the
/// key it came from (`timeout 'soon' is not a duration like …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{text}' is not a duration like \"30s\" or \"5m\": {reason}")]
pub struct DurationError {
    text: String,
    reason: String,
}

/// Parse a humantime duration: a number with a unit, several summed
/// (`"1h 30m"`). A bare number has no unit and is refused.
///
/// # Errors
/// `text` is not a duration; the error quotes it and says why.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    humantime::parse_duration(text).map_err(|e| DurationError {
        text: text.to_string(),
        reason: e.to_string(),
    })
}

/// The form [`parse`] reads back, for logs and messages.
pub fn format(value: Duration) -> FormattedDuration {
    humantime::format_duration(value)
}

/// `#[serde(with = "wharf_plugin_api::duration")]`: write [`format`]'s form.
///
/// # Errors
/// Whatever the serializer refuses.
pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*value).to_string())
}

/// `#[serde(with = "wharf_plugin_api::duration")]`: read a string with
/// [`parse`].
///
/// # Errors
/// The value is not a string, or not a duration ([`DurationError`]'s text).
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_operators_write_and_says_why_not() {
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5400)));
        let e = parse("soon").unwrap_err().to_string();
        assert!(
            e.starts_with("'soon' is not a duration like \"30s\" or \"5m\": "),
            "{e}"
        );
        assert!(parse("30").is_err(), "a bare number has no unit");
        assert_eq!(format(Duration::from_secs(90)).to_string(), "1m 30s");
        assert_eq!(
            parse(&format(Duration::from_millis(1500)).to_string()),
            Ok(Duration::from_millis(1500))
        );
    }

    #[test]
    fn serde_round_trips_through_the_text_form() {
        #[derive(Debug, PartialEq, serde::Serialize, Deserialize)]
        struct Table {
            #[serde(with = "super")]
            grace: Duration,
        }
        let table: Table = toml::from_str("grace = \"2m\"").unwrap();
        assert_eq!(table.grace, Duration::from_secs(120));
        assert_eq!(toml::to_string(&table).unwrap(), "grace = \"2m\"\n");
        let e = toml::from_str::<Table>("grace = \"later\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'later' is not a duration"), "{e}");
    }
}
