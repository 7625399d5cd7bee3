//! The three response headers the registry client reads besides the digest:
//! `WWW-Authenticate` (which login a registry wants), `Link` (the next page
//! of `tags/list`) and `Retry-After` (how long a rate limit lasts). Pure
//! parsers over the header text, so that every registry's spelling can be
//! unit-tested without a server.

use std::time::{Duration, SystemTime};

/// What a `401`'s `WWW-Authenticate` header asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// The token flow (Docker Hub, GHCR, Harbor, distribution with a token
    /// server): get a token from `realm` for `service` and `scope`.
    Bearer(BearerChallenge),
    /// Basic auth (distribution with htpasswd, Artifactory, Nexus).
    Basic,
    /// A scheme wharf does not speak.
    Other(String),
}

/// The parameters of a `Bearer` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerChallenge {
    pub realm: String,
    pub service: Option<String>,
    pub scope: Option<String>,
}

/// Parse `WWW-Authenticate`, e.g.
/// `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"`.
/// Quoted values may hold commas (`scope="repository:a:pull,push"`). A
/// `Bearer` challenge without a realm is no usable challenge (`None`).
pub fn challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, params) = value.split_once(char::is_whitespace).unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return (!scheme.is_empty()).then(|| Challenge::Other(scheme.to_string()));
    }
    let mut realm = None;
    let mut service = None;
    let mut scope = None;
    for (key, value) in auth_params(params) {
        match key.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value),
            "service" => service = Some(value),
            "scope" => scope = Some(value),
            _ => {}
        }
    }
    Some(Challenge::Bearer(BearerChallenge {
        realm: realm.filter(|r| !r.is_empty())?,
        service,
        scope,
    }))
}

/// `key=value` and `key="quoted, value"` pairs separated by commas
/// (RFC 9110 auth-params), with `\"` escapes inside quotes.
fn auth_params(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(c) = chars.peek().copied() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() && chars.peek().is_none() {
            return pairs;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => value.extend(chars.next()),
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(c) = chars.peek().copied() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
                value = value.trim_end().to_string();
            }
        }
        let key = key.trim();
        if !key.is_empty() {
            pairs.push((key.to_string(), value));
        }
    }
}

/// The target of the `rel="next"` entry of a `Link` header, e.g.
/// `</v2/acme/web/tags/list?last=b&n=2>; rel="next"`, as written (often a
/// path, to be resolved against the request's URL).
pub fn next_link(value: &str) -> Option<&str> {
    let mut rest = value;
    loop {
        let (_, after) = rest.split_once('<')?;
        let (target, after) = after.split_once('>')?;
        let params = after.split_once('<').map_or(after, |(params, _)| params);
        let is_next = params.split(';').any(|param| {
            param.split_once('=').is_some_and(|(key, value)| {
                key.trim().eq_ignore_ascii_case("rel")
                    && value
                        .trim()
                        .trim_matches(|c| c == '"' || c == ',')
                        .split_whitespace()
                        .any(|rel| rel.eq_ignore_ascii_case("next"))
            })
        });
        if is_next {
            return Some(target.trim());
        }
        rest = after;
    }
}

/// How long a `Retry-After` asks to wait, from `now`: delay-seconds
/// (`120`) or an HTTP date (a date already past is no wait). `None` when the
/// value is neither.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(realm: &str, service: Option<&str>, scope: Option<&str>) -> Option<Challenge> {
        Some(Challenge::Bearer(BearerChallenge {
            realm: realm.into(),
            service: service.map(Into::into),
            scope: scope.map(Into::into),
        }))
    }

    #[test]
    fn challenges_as_registries_write_them() {
        // Docker Hub
        assert_eq!(
            challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#
            ),
            bearer(
                "https://auth.docker.io/token",
                Some("registry.docker.io"),
                Some("repository:library/nginx:pull")
            )
        );
        // GHCR, with a comma inside the quoted scope
        assert_eq!(
            challenge(
                r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:acme/web:pull,push""#
            ),
            bearer(
                "https://ghcr.io/token",
                Some("ghcr.io"),
                Some("repository:acme/web:pull,push")
            )
        );
        // Harbor: lower-case scheme, spaces after the commas, no scope
        assert_eq!(
            challenge(
                r#"bearer realm="https://harbor.example.com/service/token", service="harbor-registry""#
            ),
            bearer(
                "https://harbor.example.com/service/token",
                Some("harbor-registry"),
                None
            )
        );
        // Unquoted values and an escaped quote
        assert_eq!(
            challenge(r#"Bearer realm=https://t.example/token,service="a\"b""#),
            bearer("https://t.example/token", Some("a\"b"), None)
        );
        assert_eq!(
            challenge(r#"Basic realm="wharf-test""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            challenge("Negotiate"),
            Some(Challenge::Other("Negotiate".into()))
        );
        assert_eq!(challenge(r#"Bearer service="x""#), None, "no realm");
        assert_eq!(challenge(""), None);
    }

    #[test]
    fn next_links() {
        assert_eq!(
            next_link(r#"</v2/acme/web/tags/list?last=b&n=2>; rel="next""#),
            Some("/v2/acme/web/tags/list?last=b&n=2")
        );
        assert_eq!(
            next_link(
                r#"<https://r.example/v2/a/tags/list?n=1&last=x>; rel=prev, <https://r.example/v2/a/tags/list?n=1&last=y>; rel=next"#
            ),
            Some("https://r.example/v2/a/tags/list?n=1&last=y")
        );
        assert_eq!(next_link(r#"</a>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:29:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
    }
}
