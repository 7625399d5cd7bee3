//! What every sender's extractor shares: the [`Collector`] of pushes and
//! reasons, lenient readers of JSON fields and headers, the registry-host
//! rule, and [`excerpt`] for quoting untrusted text.

use std::collections::HashSet;

use serde_json::Value;

use super::{Payload, PushEvent, MAX_IGNORED_REASONS};

/// Excerpts of untrusted text in reasons and errors are cut to this many chars.
pub(super) const EXCERPT_CHARS: usize = 80;

/// Accumulates pushes and reasons; drops exact duplicate pushes (Quay can
/// list a tag twice, a registry can batch the same push twice).
#[derive(Default)]
pub(super) struct Collector {
    pushes: Vec<PushEvent>,
    seen: HashSet<(String, String, Option<String>)>,
    ignored: Vec<String>,
    ignored_overflow: usize,
}

impl Collector {
    pub(super) fn push(
        &mut self,
        repository: &str,
        tag: &str,
        digest: Option<&str>,
        id: Option<&str>,
    ) {
        let key = (
            repository.to_string(),
            tag.to_string(),
            digest.map(str::to_string),
        );
        if self.seen.contains(&key) {
            self.ignore(format!(
                "duplicate push of {}:{} ignored",
                excerpt(repository),
                excerpt(tag)
            ));
            return;
        }
        self.pushes.push(PushEvent {
            repository: key.0.clone(),
            tag: key.1.clone(),
            digest: key.2.clone(),
            event_id: id.map(str::to_string),
        });
        self.seen.insert(key);
    }

    pub(super) fn ignore(&mut self, reason: String) {
        if self.ignored.len() < MAX_IGNORED_REASONS {
            self.ignored.push(reason);
        } else {
            self.ignored_overflow += 1;
        }
    }

    pub(super) fn finish(mut self, sender: &'static str) -> Payload {
        if self.ignored_overflow > 0 {
            self.ignored
                .push(format!("… and {} more ignored", self.ignored_overflow));
        }
        Payload {
            sender,
            pushes: self.pushes,
            ignored: self.ignored,
        }
    }
}

/// First value of a header, name matched case-insensitively, value trimmed.
pub(super) fn header<'h>(headers: &[(&str, &'h str)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// A non-empty JSON string; anything else (missing, null, number, "") is None.
/// Registry formats are read leniently: a wrong type counts as absent.
pub(super) fn text(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Like [`text`], but only a `sha256:` digest.
pub(super) fn sha256_text(value: Option<&Value>) -> Option<&str> {
    text(value).filter(|s| s.starts_with("sha256:"))
}

/// Whether the caller's reference parser reads `host` as a registry host when
/// it leads a repository (Docker's `splitDockerDomain` rule: `localhost`, or
/// a '.' or ':', or an uppercase letter). Any other first component is a
/// Docker Hub namespace: `registry/acme/web` is `docker.io/registry/acme/web`.
pub(super) fn is_registry_host(host: &str) -> bool {
    host == "localhost" || host.contains(['.', ':']) || host.to_lowercase() != host
}

/// Whether `repository` has several components and the first is a registry
/// host (see [`is_registry_host`]), i.e. it will not be read as Docker Hub's.
pub(super) fn starts_with_registry_host(repository: &str) -> bool {
    repository
        .split_once('/')
        .is_some_and(|(host, _)| is_registry_host(host))
}

/// `host[:port]` of an absolute URL, parsed by hand (no url crate):
/// after "scheme://", up to the first '/', '?' or '#', without userinfo.
pub(super) fn url_host(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..end)?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some(host).filter(|h| !h.is_empty())
}

/// Untrusted text for a message: at most [`EXCERPT_CHARS`] characters,
/// control characters replaced, so a hostile body can neither flood a log
/// line nor forge a new one.
pub(super) fn excerpt(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if s.chars().nth(EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_are_char_boundary_safe() {
        assert_eq!(url_host("http://é:1/x"), Some("é:1"));
        assert_eq!(url_host("http://"), None);
        assert_eq!(url_host("no-scheme/x"), None);
        assert_eq!(excerpt(&"é".repeat(100)).chars().count(), EXCERPT_CHARS + 1);
        assert_eq!(excerpt("a\nb"), "a?b");
    }
}
