//! Drafting a project's table from an image, for auto-created projects.
//!
//! When a push names an image no project has and `auto_create` allows it,
//! wharf writes `<projects_dir>/<name>.toml` itself. Everything outside the
//! deployer's table (the header, `image`, the stage) is wharf's; the
//! table, and the comments that explain it, are the deployer's
//! ([`Drafter`]), from what the image declares. A deployer that cannot
//! draft a table that loads (a script needs its command, compose its file)
//! does not implement [`Drafter`], and auto-create refuses clearly.

use std::collections::BTreeSet;

use crate::ImageFacts;

/// What a draft is made from.
#[derive(Debug, Clone, Copy)]
pub struct DraftInput<'a> {
    /// What the image declares; `Err(why)` when it could not be inspected
    /// (no engine, pull refused), and the draft should say so.
    pub facts: Result<&'a ImageFacts, &'a str>,
    /// The host ports stages of loaded projects already publish
    /// ([`crate::routes::Claim::Published`]), so that the draft picks others.
    pub taken_ports: &'a BTreeSet<u16>,
}

/// A deployer's part of an auto-created project file. Each `Vec<String>`
/// is comment text, one line each, written after `# `.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Draft {
    /// The defaults the draft chose, for the file's header ("Safe
    /// defaults: …"). Empty: nothing to say.
    pub defaults: Vec<String>,
    /// What the draft could not fill in, and how to, after the image's
    /// labels in the header. Empty: nothing is missing.
    pub missing: Vec<String>,
    /// The table's body as TOML text (comments allowed), written under
    /// `[<deployer>]`. It must load: wharf loads the file it writes, and
    /// refuses the push if it does not.
    pub table: String,
}

/// Optional capability: draft a table from an image.
pub trait Drafter: Send + Sync {
    /// The table for an image. Runs on a blocking thread: it may probe the
    /// machine (is a port free?).
    fn draft(&self, input: &DraftInput<'_>) -> Draft;
}

/// `text` as one line that is safe inside a `# ` comment of a drafted file
/// (control characters blanked, at most 200 characters): image labels and
/// error messages are someone else's text.
pub fn comment_text(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    line.trim().to_string()
}

/// `text` as a TOML string literal, quoted and escaped.
pub fn quoted(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}
