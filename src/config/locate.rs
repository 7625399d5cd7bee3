//! Where and why a TOML text is wrong, for `file:line: reason` messages.
//!
//! serde and figment keep the key path of an error but not its place in the
//! file; `toml_edit`'s span-keeping document (the parser `toml` itself uses)
//! gives it back, so an error found after parsing (a wrong type, a value that
//! fails validation) can name its line too.

use toml_edit::{ImDocument, Item, TableLike};

use super::settings::line_of;

/// Why `toml` rejected a text, on one line: its message (which may run
/// over several lines) with the lines joined by "; ". Some syntax errors
/// come with no message at all (a key with no value, `image =`): those say
/// the column where parsing stopped, so the reason is never empty.
pub fn toml_reason(text: &str, error: &toml::de::Error) -> String {
    let reason = error
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    if !reason.is_empty() {
        return escape_controls(&reason);
    }
    let offset = error.span().map_or(0, |s| s.start);
    let before = text.get(..offset).unwrap_or(text);
    let line = before.rsplit('\n').next().unwrap_or(before);
    let column = line.chars().count() + 1;
    format!("not valid TOML at column {column} (a key needs a value: key = \"value\")")
}

/// `message` fit for one `file:line: reason` line: control characters —
/// an operator's value echoed in it may hold any (`deployer = "sw\rm"`), a
/// newline, a carriage return, an escape sequence — are written as Rust
/// escapes (`\r`, `\u{1b}`), so a message can neither break a log line nor
/// drive the terminal showing it. Other characters are kept as they are.
pub fn escape_controls(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for c in message.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The 1-based line of the key at `path` (table names, then the key; a
/// number after an array of tables picks an entry) in `text`. When only a
/// prefix of the path is written, the line of its deepest written part;
/// `None` when not even the first key is, or the text does not parse.
pub fn key_line(text: &str, path: &[&str]) -> Option<usize> {
    key_offset(text, path).map(|offset| line_of(text, offset))
}

/// The byte offset of the key at `path` in `text`, as [`key_line`] finds it.
pub fn key_offset(text: &str, path: &[&str]) -> Option<usize> {
    let document = ImDocument::parse(text).ok()?;
    let mut table: &dyn TableLike = document.as_table();
    let mut found = None;
    let mut rest = path.iter();
    while let Some(segment) = rest.next() {
        let Some((key, item)) = table.get_key_value(segment) else {
            break;
        };
        found = key.span().map(|s| s.start).or(found);
        table = match item {
            Item::ArrayOfTables(entries) => {
                let entry = rest
                    .next()
                    .and_then(|index| index.parse::<usize>().ok())
                    .and_then(|index| entries.get(index));
                let Some(entry) = entry else {
                    break;
                };
                found = entry.span().map(|s| s.start).or(found);
                entry
            }
            item => match item.as_table_like() {
                Some(next) => next,
                None => break,
            },
        };
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_toml_error_has_a_one_line_reason() {
        let reason =
            |text: &str| toml_reason(text, &toml::from_str::<toml::Table>(text).unwrap_err());
        assert_eq!(
            reason("a = 1\nimage ="),
            "not valid TOML at column 8 (a key needs a value: key = \"value\")"
        );
        assert_eq!(reason("é = 1\nb = é"), reason("é = 1\nb = é"));
        assert_eq!(reason("a = ["), "invalid array; expected `]`");
    }

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(
            escape_controls("deployer 'sw\rm\n\u{1b}[31mé\u{85}' ü"),
            "deployer 'sw\\rm\\n\\u{1b}[31mé\\u{85}' ü"
        );
    }

    const TEXT: &str = "listen = \"x\"\n\n[webhook]\nbody_limit = 0\n\n[[notify]]\nurl = \"a\"\n\n[[notify]]\nurl = \"b\"\n[hosts.web1]\ndocker_host = \"h\"\ninline = { a = 1 }\n";

    #[test]
    fn finds_keys_tables_and_entries() {
        assert_eq!(key_line(TEXT, &["listen"]), Some(1));
        assert_eq!(key_line(TEXT, &["webhook", "body_limit"]), Some(4));
        assert_eq!(key_line(TEXT, &["notify", "1", "url"]), Some(10));
        assert_eq!(key_line(TEXT, &["notify", "0"]), Some(6));
        assert_eq!(key_line(TEXT, &["hosts", "web1", "docker_host"]), Some(12));
        assert_eq!(key_line(TEXT, &["hosts", "web1", "inline", "a"]), Some(13));
    }

    #[test]
    fn an_unwritten_key_gives_its_deepest_written_table() {
        assert_eq!(key_line(TEXT, &["webhook", "hmac_secret"]), Some(3));
        assert_eq!(key_line(TEXT, &["notify", "7", "url"]), Some(6));
        assert_eq!(key_line(TEXT, &["listen", "deeper"]), Some(1));
        assert_eq!(key_line(TEXT, &["state_dir"]), None);
        assert_eq!(key_line("listen = [", &["listen"]), None);
    }
}
