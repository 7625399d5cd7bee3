//! Docker/OCI image references: parsing and normalization.
//!
//! This is a hand-written port of Docker's `distribution/reference` package
//! (`reference.go`, `regexp.go`, `normalize.go`): [`ImageRef::parse`] accepts
//! and rejects exactly what `ParseNormalizedNamed` (the function behind
//! `docker pull NAME`) accepts and rejects, and splits the result the same way,
//! with the few deliberate differences listed at the end of this doc.
//!
//! # Grammar
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [ domain "/" ] path
//! domain           := host [ ":" port ]
//! host             := domain-name | "[" ipv6 "]"
//! domain-name      := domain-component ( "." domain-component )*
//! domain-component := [a-zA-Z0-9] | [a-zA-Z0-9] [a-zA-Z0-9-]* [a-zA-Z0-9]
//! ipv6             := [a-fA-F0-9:]+            (no zone ids, no embedded IPv4)
//! port             := [0-9]+
//! path             := path-component ( "/" path-component )*
//! path-component   := [a-z0-9]+ ( separator [a-z0-9]+ )*
//! separator        := "." | "_" | "__" | "-"+
//! tag              := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
//! digest           := "sha256:" [a-f0-9]{64}
//!                   | "sha384:" [a-f0-9]{96}
//!                   | "sha512:" [a-f0-9]{128}
//! ```
//!
//! # Normalization (as `docker pull` does it)
//!
//! * The first `/`-separated component is the registry domain when it is
//!   `localhost`, contains a `.` or a `:`, or contains an uppercase letter
//!   (Docker's `splitDockerDomain`). Otherwise the domain is `docker.io`.
//! * A reference without any `/` always lives on `docker.io`, even `localhost`
//!   or `example.com` (those become `docker.io/library/localhost`, and
//!   `localhost:5000` is the repository `docker.io/library/localhost` with tag
//!   `5000`), exactly as in Docker.
//! * `index.docker.io` is rewritten to `docker.io`.
//! * A single path component on `docker.io` gets the `library/` prefix.
//! * Uppercase letters in the repository path are an error; uppercase letters
//!   are allowed in the domain and in the tag.
//! * A bare 64-character lowercase hex string is rejected (it would be an
//!   image id, not a name).
//! * No default tag is added: `nginx` has `tag == None`. Use
//!   [`ImageRef::with_default_tag`] for Docker's implicit `:latest`.
//!
//! # Deliberate differences from Docker
//!
//! * **Name length**: the full normalized name (`domain/path`, e.g.
//!   `docker.io/library/nginx`) may be at most 255 characters. This is the
//!   rule of `docker/distribution` and `distribution/reference` up to v0.5;
//!   v0.6 (2024) limits only the path. The stricter rule is kept so that
//!   every name accepted here is accepted by old and new clients alike.
//! * **Digests**: only `sha256`, `sha384` and `sha512` are accepted (the
//!   algorithms Docker registers), with exactly 64/96/128 lowercase hex
//!   characters; any other algorithm is an "unsupported digest algorithm"
//!   error. Docker rejects these too, with a different message.
//! * **Underscore "domains"**: for `foo_bar.com/app` Docker's regexp falls back
//!   to a name *without* a domain (`Domain() == ""`), which cannot be pulled
//!   from anywhere. It is rejected here with "not a valid registry domain".
//! * **Error messages** are more specific than Docker's single "invalid
//!   reference format", never echo more than about 100 characters of input,
//!   and escape control characters. The empty string is "reference is empty".

use std::fmt;
use std::str::FromStr;

/// The registry used when a reference names none.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// Docker Hub's legacy domain, rewritten to [`DEFAULT_DOMAIN`].
pub const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
/// Namespace of Docker Hub's official images (`nginx` is `library/nginx`).
pub const OFFICIAL_REPO_PREFIX: &str = "library/";
/// The tag `docker pull` uses when a reference has neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
/// Maximum length of the normalized name (`domain/path`).
pub const NAME_TOTAL_LENGTH_MAX: usize = 255;
/// Maximum length of a tag.
pub const TAG_MAX_LENGTH: usize = 128;

/// `localhost` is always a domain when it is the first of several components.
const LOCALHOST: &str = "localhost";
/// At most this many characters of (escaped) input are quoted in an error.
const ECHO_MAX: usize = 100;
/// The digest algorithms accepted, with the length of their hex encoding.
const DIGEST_ALGORITHMS: [(&str, usize); 3] = [("sha256", 64), ("sha384", 96), ("sha512", 128)];

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Registry domain, with port if any: `docker.io`, `localhost:5000`,
    /// `[::1]:5000`. Never empty.
    pub domain: String,
    /// Repository path inside the registry: `library/nginx`, `acme/web`.
    pub path: String,
    /// Tag, if the reference has one.
    pub tag: Option<String>,
    /// Digest (`sha256:<64 hex>`), if the reference has one.
    pub digest: Option<String>,
}

/// Why a string is not a valid image reference.
///
/// Every message quotes at most about 100 characters of the input, with
/// control characters escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The input is the empty string.
    #[error("reference is empty")]
    Empty,
    /// The input is a bare 64-character hex string (an image id).
    #[error("invalid repository name {input}, cannot specify 64-byte hexadecimal strings")]
    HexIdentifier {
        /// The quoted input.
        input: String,
    },
    /// The repository path contains uppercase letters.
    #[error("invalid reference format: repository name must be lowercase: {name}")]
    Uppercase {
        /// The quoted offending repository name.
        name: String,
    },
    /// The reference does not follow the grammar.
    #[error("invalid reference format: {input}: {reason}")]
    InvalidFormat {
        /// The quoted input.
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// The tag does not follow the tag grammar.
    #[error("tag {tag} is invalid: {reason}")]
    InvalidTag {
        /// The quoted tag.
        tag: String,
        /// What is wrong.
        reason: String,
    },
    /// The digest is malformed or uses an unsupported algorithm.
    #[error("invalid digest {digest}: {reason}")]
    InvalidDigest {
        /// The quoted digest.
        digest: String,
        /// What is wrong.
        reason: String,
    },
    /// The normalized name (`domain/path`) is longer than 255 characters.
    #[error("name is longer than 255 characters ({len} characters): {name}")]
    NameTooLong {
        /// The quoted normalized name.
        name: String,
        /// Its length.
        len: usize,
    },
    /// A tag or digest was given where only a repository is allowed.
    #[error("{input} must be a repository without {what}")]
    NotARepository {
        /// The quoted input.
        input: String,
        /// "a tag", "a digest" or "a tag or digest".
        what: &'static str,
    },
}

impl ImageRef {
    /// Parse and normalize like `docker pull` does. Errors say what is wrong.
    ///
    /// ```text
    /// nginx                         -> docker.io/library/nginx
    /// acme/web:1.2                  -> docker.io/acme/web:1.2
    /// localhost:5000/acme/web@sha256:… -> localhost:5000/acme/web@sha256:…
    /// ```
    ///
    /// # Errors
    /// `input` is not a reference `docker pull` would accept.
    pub fn parse(input: &str) -> Result<ImageRef, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        // ParseNormalizedNamed: a bare image id is not a name.
        if is_identifier(input) {
            return Err(ReferenceError::HexIdentifier { input: echo(input) });
        }
        let (domain, remainder) = split_docker_domain(input);
        // The repository is checked for uppercase before anything else; the
        // remote part is everything up to the first ':' (as in Docker).
        let remote = remainder.split(':').next().unwrap_or_default();
        if go_to_lower(remote) != remote {
            return Err(ReferenceError::Uppercase { name: echo(remote) });
        }

        // reference.Parse(domain + "/" + remainder)
        let full = format!("{domain}/{remainder}");
        let parts = match match_reference(&full, input) {
            Ok(parts) => parts,
            Err(err) => {
                let lower = go_to_lower(&full);
                if lower != full && match_reference(&lower, input).is_ok() {
                    return Err(ReferenceError::Uppercase { name: echo(input) });
                }
                return Err(err);
            }
        };
        if parts.name.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::NameTooLong {
                name: echo(parts.name),
                len: parts.name.len(),
            });
        }
        let Some(matched_domain) = parts.domain else {
            // Docker would return a name without a domain here (only possible
            // for a first component such as "foo_bar.com"): refuse it.
            return Err(ReferenceError::InvalidFormat {
                input: echo(input),
                reason: format!("{} is not a valid registry domain", echo(&domain)),
            });
        };
        if let Some(digest) = parts.digest {
            check_digest_algorithm(digest)?;
        }
        Ok(ImageRef {
            domain: matched_domain.to_string(),
            path: parts.path.to_string(),
            tag: parts.tag.map(str::to_string),
            digest: parts.digest.map(str::to_string),
        })
    }

    /// "docker.io/library/nginx", "localhost:5000/acme/web"
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The short form Docker shows to people: `docker.io/` and, for a
    /// single-component official image, `library/` are dropped
    /// (`nginx`, `acme/web`, `ghcr.io/acme/web`).
    pub fn familiar_repository(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.repository();
        }
        match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
            Some(rest) if !rest.contains('/') => rest.to_string(),
            _ => self.path.clone(),
        }
    }

    /// What to ask an engine to pull beside [`ImageRef::repository`]: the
    /// digest when there is one (it names the very image, whatever the tag
    /// says), else the tag, else [`DEFAULT_TAG`], as `docker pull` does.
    pub fn pull_version(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or(DEFAULT_TAG)
    }

    /// The reference `docker pull` actually fetches: with tag [`DEFAULT_TAG`]
    /// when it has neither tag nor digest (Docker's `TagNameOnly`).
    pub fn with_default_tag(mut self) -> ImageRef {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(DEFAULT_TAG.to_string());
        }
        self
    }
}

impl fmt::Display for ImageRef {
    /// Full normalized form: `repository[:tag][@digest]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

/// Normalize a repository WITHOUT tag or digest (what a project file's
/// `image` key holds). A tag or digest is an error here.
///
/// `nginx` → `docker.io/library/nginx`; `localhost:5000` is an error, since
/// Docker reads it as the image `localhost` with tag `5000`. The result is
/// its own normalization and names the same registry as `input`.
///
/// # Errors
/// `input` is not a valid reference, or it has a tag or digest.
pub fn normalize_repository(input: &str) -> Result<String, ReferenceError> {
    let parsed = ImageRef::parse(input)?;
    let what = match (&parsed.tag, &parsed.digest) {
        (None, None) => return Ok(lowercase_domain(&parsed)),
        (Some(_), None) => "a tag",
        (None, Some(_)) => "a digest",
        (Some(_), Some(_)) => "a tag or digest",
    };
    Err(ReferenceError::NotARepository {
        input: echo(input),
        what,
    })
}

/// `domain/path` with the registry host in lower case, when that keeps its
/// meaning.
///
/// Host names are case-insensitive (DNS): one spelling, so
/// `Registry.example.com/app` and `registry.example.com/app` match. But an
/// uppercase letter is also what makes Docker read a first component without
/// '.' or ':' as a host: `Owner/app` is the registry `Owner`, while
/// `owner/app` is Docker Hub's `docker.io/owner/app`, someone else's image.
/// So the lowercased name is parsed again and used only if it names the same
/// registry (`DOCKER.IO/nginx` then becomes `docker.io/library/nginx`, as Hub
/// names it); otherwise the host keeps its case.
fn lowercase_domain(parsed: &ImageRef) -> String {
    let domain = parsed.domain.to_ascii_lowercase();
    match ImageRef::parse(&format!("{domain}/{}", parsed.path)) {
        Ok(again)
            if again.domain == domain
                || (again.domain == DEFAULT_DOMAIN && domain == LEGACY_DEFAULT_DOMAIN) =>
        {
            again.repository()
        }
        _ => parsed.repository(),
    }
}

/// true when `tag` matches the tag grammar
pub fn is_valid_tag(tag: &str) -> bool {
    check_tag(tag).is_ok()
}

/// Check a tag, with an error that says what is wrong.
///
/// # Errors
/// `tag` does not match the tag grammar.
pub fn validate_tag(tag: &str) -> Result<(), ReferenceError> {
    check_tag(tag).map_err(|reason| ReferenceError::InvalidTag {
        tag: echo(tag),
        reason: reason.to_string(),
    })
}

/// true when `digest` matches the digest grammar (a supported algorithm with
/// the right number of lowercase hex characters, as [`ImageRef::parse`]
/// requires).
pub fn is_valid_digest(digest: &str) -> bool {
    validate_digest(digest).is_ok()
}

/// Check a digest, with an error that says what is wrong.
///
/// # Errors
/// `digest` is malformed or uses an unsupported algorithm.
pub fn validate_digest(digest: &str) -> Result<(), ReferenceError> {
    check_digest_grammar(digest).map_err(|reason| ReferenceError::InvalidDigest {
        digest: echo(digest),
        reason,
    })?;
    check_digest_algorithm(digest)
}

/// A reference cut where the grammar cuts it, as written: nothing is
/// checked, normalized or defaulted. See [`split`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split<'a> {
    /// Everything before the tag and digest: `localhost:5000/acme/web`,
    /// `nginx`, or a template such as `${REGISTRY}/web`.
    pub name: &'a str,
    /// What follows the name's `:`, if any.
    pub tag: Option<&'a str>,
    /// What follows the first `@`, if any.
    pub digest: Option<&'a str>,
}

impl Split<'_> {
    /// The last `/`-separated component of the name with its tag, without
    /// registry, namespace or digest: `web:v2` for
    /// `127.0.0.1:5000/acme/web:v2@sha256:…`, what a reader of a log
    /// recognizes.
    pub fn short(&self) -> String {
        let last = self.name.rsplit('/').next().unwrap_or(self.name);
        match self.tag {
            Some(tag) => format!("{last}:{tag}"),
            None => last.to_string(),
        }
    }
}

/// Cut `reference` into name, tag and digest the way [`ImageRef::parse`]
/// does, without judging the pieces.
///
/// For text that need not be a valid reference: an image line of a compose
/// file (which may hold `${VAR}` templates) or an engine's answer shown in a
/// log. The digest is whatever follows the first `@`; the tag is whatever
/// follows the last `:` before it when no `/` comes after that `:` (a `:`
/// followed by a `/` is a registry's port). Anything that must be a real
/// reference goes through [`ImageRef::parse`] instead.
pub fn split(reference: &str) -> Split<'_> {
    let (name_tag, digest) = match reference.split_once('@') {
        Some((name_tag, digest)) => (name_tag, Some(digest)),
        None => (reference, None),
    };
    let (name, tag) = match name_tag.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (name_tag, None),
    };
    Split { name, tag, digest }
}

/// The normalized repository of a full reference, tag and digest dropped,
/// spelled as [`normalize_repository`] spells a project's `image`: so a
/// reference an engine lists (`nginx:1.25`, `Registry.example.com/a/b:c`,
/// `127.0.0.1:5000/a/b@sha256:…`) compares equal to the repository it
/// belongs to.
///
/// # Errors
/// `reference` is not a valid image reference.
pub fn repository_of(reference: &str) -> Result<String, ReferenceError> {
    ImageRef::parse(reference).map(|parsed| lowercase_domain(&parsed))
}

// ---------------------------------------------------------------------------
// Internals. Every split below is on an ASCII byte, so every slice lands on a
// char boundary.

/// The pieces of a reference that matched the grammar (Docker's
/// `ReferenceRegexp` followed by `anchoredNameRegexp`).
#[derive(Debug, PartialEq, Eq)]
struct Parts<'a> {
    /// `domain/path`, or just `path`.
    name: &'a str,
    /// `None` when the first component is not a domain (Docker's `""`).
    domain: Option<&'a str>,
    path: &'a str,
    tag: Option<&'a str>,
    digest: Option<&'a str>,
}

/// Docker's anchored `identifier` regexp: `[a-f0-9]{64}`.
fn is_identifier(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Go's `strings.ToLower` (simple case mapping, one char for one char).
fn go_to_lower(s: &str) -> String {
    s.chars()
        .map(|c| c.to_lowercase().next().unwrap_or(c))
        .collect()
}

/// Docker's `splitDockerDomain`: (domain, remainder) where the remainder is
/// the path with any tag and digest still attached.
fn split_docker_domain(name: &str) -> (String, String) {
    let Some((maybe_domain, maybe_remote)) = name.split_once('/') else {
        // A single element ("nginx", "nginx:1.2", even "localhost:5000") is
        // always an official image on Docker Hub.
        return (
            DEFAULT_DOMAIN.to_string(),
            format!("{OFFICIAL_REPO_PREFIX}{name}"),
        );
    };
    let (domain, remote) = if maybe_domain == LOCALHOST {
        (maybe_domain, maybe_remote)
    } else if maybe_domain == LEGACY_DEFAULT_DOMAIN {
        (DEFAULT_DOMAIN, maybe_remote)
    } else if maybe_domain.contains(['.', ':']) {
        (maybe_domain, maybe_remote)
    } else if go_to_lower(maybe_domain) != maybe_domain {
        // Namespaces are lowercase, so an uppercase first element is a host.
        (maybe_domain, maybe_remote)
    } else {
        (DEFAULT_DOMAIN, name)
    };
    if domain == DEFAULT_DOMAIN && !remote.contains('/') {
        (
            domain.to_string(),
            format!("{OFFICIAL_REPO_PREFIX}{remote}"),
        )
    } else {
        (domain.to_string(), remote.to_string())
    }
}

/// Match `s` against the full reference grammar. `original` is the user's
/// input, quoted in errors.
fn match_reference<'a>(s: &'a str, original: &str) -> Result<Parts<'a>, ReferenceError> {
    let format_error = |reason: String| ReferenceError::InvalidFormat {
        input: echo(original),
        reason,
    };
    if let Some(c) = s.chars().find(|c| !is_reference_char(*c)) {
        let what = if c.is_whitespace() {
            "whitespace"
        } else if c.is_control() {
            "control character"
        } else {
            "character"
        };
        return Err(format_error(format!(
            "invalid {what} {} (allowed: letters, digits and . _ - / : @ [ ] +)",
            echo(&c.to_string())
        )));
    }

    let Split { name, tag, digest } = split(s);
    let (domain, path) = match_name(name).map_err(format_error)?;
    if let Some(tag) = tag {
        check_tag(tag).map_err(|reason| ReferenceError::InvalidTag {
            tag: echo(tag),
            reason: reason.to_string(),
        })?;
    }
    if let Some(digest) = digest {
        if digest.contains('@') {
            return Err(format_error("more than one '@'".to_string()));
        }
        check_digest_grammar(digest).map_err(|reason| ReferenceError::InvalidDigest {
            digest: echo(digest),
            reason,
        })?;
    }
    Ok(Parts {
        name,
        domain,
        path,
        tag,
        digest,
    })
}

/// Characters that can appear anywhere in a valid reference.
fn is_reference_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | '@' | '[' | ']' | '+')
}

/// Docker's `anchoredNameRegexp`: `^(?:(domain)/)?(path)$`, which prefers to
/// read the first component as a domain.
fn match_name(name: &str) -> Result<(Option<&str>, &str), String> {
    let (first, rest) = match name.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (name, None),
    };
    if let Some(rest) = rest {
        if is_domain_and_port(first) && check_path(rest).is_ok() {
            return Ok((Some(first), rest));
        }
    }
    if check_path(name).is_ok() {
        return Ok((None, name));
    }
    // Explain the failure.
    match rest {
        Some(rest) => {
            if !is_domain_and_port(first) && check_path_component(first).is_err() {
                Err(format!("{} is not a valid registry domain", echo(first)))
            } else {
                check_path(rest).map(|()| (None, name))
            }
        }
        None => check_path(name).map(|()| (None, name)),
    }
}

/// `path-component ("/" path-component)*`
fn check_path(path: &str) -> Result<(), String> {
    for component in path.split('/') {
        if component.is_empty() {
            return Err("empty path component (leading, trailing or doubled '/')".to_string());
        }
        check_path_component(component)
            .map_err(|reason| format!("path component {} {reason}", echo(component)))?;
    }
    Ok(())
}

/// `[a-z0-9]+ ( ("." | "_" | "__" | "-"+) [a-z0-9]+ )*`
fn check_path_component(component: &str) -> Result<(), &'static str> {
    if component.contains(['[', ']']) {
        return Err("may not contain '[' or ']' (a bracketed IPv6 registry must be followed by '/<repository>')");
    }
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    loop {
        let start = i;
        while bytes.get(i).copied().is_some_and(alnum) {
            i += 1;
        }
        if i == start {
            return Err(if start == 0 {
                "must start with a lowercase letter or digit"
            } else if start == bytes.len() {
                "must not end with a separator"
            } else {
                "has invalid separators: use one '.', one or two '_', or any number of '-' between letters or digits"
            });
        }
        let Some(&separator) = bytes.get(i) else {
            return Ok(());
        };
        match separator {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if bytes.get(i) == Some(&b'_') {
                    i += 1;
                }
            }
            b'-' => {
                while bytes.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            b if b.is_ascii_uppercase() => return Err("must be lowercase"),
            _ => {
                return Err("may only contain lowercase letters, digits and the separators '.', '_', '__', '-'");
            }
        }
    }
}

/// Docker's `domainAndPort`: `(domain-name | "[" ipv6 "]") (":" [0-9]+)?`.
fn is_domain_and_port(s: &str) -> bool {
    let port = if let Some(bracketed) = s.strip_prefix('[') {
        let Some((ipv6, after)) = bracketed.split_once(']') else {
            return false;
        };
        if ipv6.is_empty() || !ipv6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        if after.is_empty() {
            return true;
        }
        match after.strip_prefix(':') {
            Some(port) => port,
            None => return false,
        }
    } else {
        let (host, port) = match s.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        };
        if !host.split('.').all(is_domain_component) {
            return false;
        }
        match port {
            Some(port) => port,
            None => return true,
        }
    };
    !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
}

/// `[a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`
fn is_domain_component(s: &str) -> bool {
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
        }
        _ => false,
    }
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
fn check_tag(tag: &str) -> Result<(), &'static str> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    match bytes.first() {
        None => Err("tag is empty"),
        Some(first) if !word(*first) => Err("must start with a letter, digit or '_'"),
        Some(_) if !bytes.iter().all(|b| word(*b) || matches!(b, b'.' | b'-')) => {
            Err("may only contain letters, digits, '_', '.' and '-'")
        }
        Some(_) if bytes.len() > TAG_MAX_LENGTH => Err("must be at most 128 characters long"),
        Some(_) => Ok(()),
    }
}

/// Docker's `digestPat`:
/// `[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}`.
fn check_digest_grammar(digest: &str) -> Result<(), String> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err("expected <algorithm>:<hex>, e.g. sha256:<64 hex characters>".to_string());
    };
    let valid_algorithm = algorithm.split(['-', '_', '+', '.']).all(|part| {
        let bytes = part.as_bytes();
        bytes.first().is_some_and(u8::is_ascii_alphabetic)
            && bytes.iter().all(u8::is_ascii_alphanumeric)
    });
    if !valid_algorithm {
        return Err(format!("malformed algorithm {}", echo(algorithm)));
    }
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("the encoded part must be hexadecimal".to_string());
    }
    if hex.len() < 32 {
        return Err(format!(
            "the encoded part must be at least 32 hexadecimal characters, got {}",
            hex.len()
        ));
    }
    Ok(())
}

/// go-digest's `Digest.Validate` for the registered algorithms. Assumes
/// [`check_digest_grammar`] passed.
fn check_digest_algorithm(digest: &str) -> Result<(), ReferenceError> {
    let fail = |reason: String| ReferenceError::InvalidDigest {
        digest: echo(digest),
        reason,
    };
    let (algorithm, hex) = digest.split_once(':').unwrap_or((digest, ""));
    let Some(&(_, expected)) = DIGEST_ALGORITHMS.iter().find(|(a, _)| *a == algorithm) else {
        return Err(fail(format!(
            "unsupported digest algorithm {} (supported: sha256, sha384, sha512)",
            echo(algorithm)
        )));
    };
    if hex.len() != expected {
        return Err(fail(format!(
            "a {algorithm} digest has {expected} hex characters, got {}",
            hex.len()
        )));
    }
    if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(fail("hex characters must be lowercase".to_string()));
    }
    Ok(())
}

/// Quote user input for an error message: escaped, and cut to about
/// [`ECHO_MAX`] characters (never inside a character).
///
/// Public because the daemon quotes other untrusted names (tags, project and
/// stage names in admin requests) the same way: a message never carries a
/// control character or an unbounded echo of what a caller sent.
pub fn echo(s: &str) -> String {
    let mut out = String::from("'");
    let mut used = 0;
    for c in s.chars() {
        let escaped: String = c.escape_debug().collect();
        let width = escaped.chars().count();
        if used + width > ECHO_MAX {
            out.push_str(&format!("…' ({} bytes)", s.len()));
            return out;
        }
        used += width;
        out.push_str(&escaped);
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA256_F: &str =
        "sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
    const HEX64: &str = "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a";

    fn sha512_f() -> String {
        format!("sha512:{}", "f".repeat(128))
    }

    /// Parse that must succeed.
    fn ok(input: &str) -> ImageRef {
        ImageRef::parse(input).unwrap_or_else(|e| panic!("{input:?} should parse, got: {e}"))
    }

    /// Parse that must fail.
    fn err(input: &str) -> ReferenceError {
        match ImageRef::parse(input) {
            Ok(r) => panic!("{input:?} should be rejected, got {r}"),
            Err(e) => e,
        }
    }

    fn kind(e: &ReferenceError) -> &'static str {
        match e {
            ReferenceError::Empty => "empty",
            ReferenceError::HexIdentifier { .. } => "hex",
            ReferenceError::Uppercase { .. } => "upper",
            ReferenceError::InvalidFormat { .. } => "format",
            ReferenceError::InvalidTag { .. } => "tag",
            ReferenceError::InvalidDigest { .. } => "digest",
            ReferenceError::NameTooLong { .. } => "toolong",
            ReferenceError::NotARepository { .. } => "notrepo",
        }
    }

    fn check(input: &str, domain: &str, path: &str, tag: Option<&str>, digest: Option<&str>) {
        let r = ok(input);
        assert_eq!(r.domain, domain, "domain of {input:?}");
        assert_eq!(r.path, path, "path of {input:?}");
        assert_eq!(r.tag.as_deref(), tag, "tag of {input:?}");
        assert_eq!(r.digest.as_deref(), digest, "digest of {input:?}");
    }

    fn check_err(input: &str, expected_kind: &str) {
        let e = err(input);
        assert_eq!(kind(&e), expected_kind, "{input:?} gave: {e}");
    }

    // ----- distribution/reference reference_test.go: TestReferenceParse,
    // run through normalization (ParseNormalizedNamed) -----

    #[test]
    fn docker_reference_parse_vectors() {
        let f = SHA256_F;
        check("test_com", "docker.io", "library/test_com", None, None);
        check(
            "test.com:tag",
            "docker.io",
            "library/test.com",
            Some("tag"),
            None,
        );
        check(
            "test.com:5000",
            "docker.io",
            "library/test.com",
            Some("5000"),
            None,
        );
        check("test.com/repo:tag", "test.com", "repo", Some("tag"), None);
        check("test:5000/repo", "test:5000", "repo", None, None);
        check("test:5000/repo:tag", "test:5000", "repo", Some("tag"), None);
        check(
            &format!("test:5000/repo@{f}"),
            "test:5000",
            "repo",
            None,
            Some(f),
        );
        check(
            &format!("test:5000/repo:tag@{f}"),
            "test:5000",
            "repo",
            Some("tag"),
            Some(f),
        );
        check_err("", "empty");
        check_err(":justtag", "format");
        check_err(&format!("@{f}"), "format");
        check_err("repo@sha256:ffffffffffffffffffffffffffffffffff", "digest");
        check_err(
            "validname@invaliddigest:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "digest",
        );
        check_err("Uppercase:tag", "upper");
        check_err("test:5000/Uppercase/lowercase:tag", "upper");
        check(
            "lowercase:Uppercase",
            "docker.io",
            "library/lowercase",
            Some("Uppercase"),
            None,
        );
        check_err(&format!("{}a:tag", "a/".repeat(128)), "toolong");
        // Docker's own vector is a 255-char name *before* normalization; after
        // "docker.io/" is prepended it is 265 characters: too long here, as in
        // Docker before distribution/reference v0.6.
        check_err(
            &format!("{}a:tag-puts-this-over-max", "a/".repeat(127)),
            "toolong",
        );
        check(
            &format!("{}a:tag-puts-this-over-max", "a/".repeat(122)),
            "docker.io",
            &format!("{}a", "a/".repeat(122)),
            Some("tag-puts-this-over-max"),
            None,
        );
        check_err("aa/asdf$$^/aa", "format");
        check(
            "sub-dom1.foo.com/bar/baz/quux",
            "sub-dom1.foo.com",
            "bar/baz/quux",
            None,
            None,
        );
        check(
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
            "sub-dom1.foo.com",
            "bar/baz/quux",
            Some("some-long-tag"),
            None,
        );
        check(
            "b.gcr.io/test.example.com/my-app:test.example.com",
            "b.gcr.io",
            "test.example.com/my-app",
            Some("test.example.com"),
            None,
        );
        check(
            "xn--n3h.com/myimage:xn--n3h.com",
            "xn--n3h.com",
            "myimage",
            Some("xn--n3h.com"),
            None,
        );
        let d512 = sha512_f();
        check(
            &format!("xn--7o8h.com/myimage:xn--7o8h.com@{d512}"),
            "xn--7o8h.com",
            "myimage",
            Some("xn--7o8h.com"),
            Some(&d512),
        );
        check(
            "foo_bar.com:8080",
            "docker.io",
            "library/foo_bar.com",
            Some("8080"),
            None,
        );
        check(
            "foo/foo_bar.com:8080",
            "docker.io",
            "foo/foo_bar.com",
            Some("8080"),
            None,
        );
        check(
            "192.168.1.1",
            "docker.io",
            "library/192.168.1.1",
            None,
            None,
        );
        check(
            "192.168.1.1:tag",
            "docker.io",
            "library/192.168.1.1",
            Some("tag"),
            None,
        );
        check(
            "192.168.1.1:5000",
            "docker.io",
            "library/192.168.1.1",
            Some("5000"),
            None,
        );
        check("192.168.1.1/repo", "192.168.1.1", "repo", None, None);
        check(
            "192.168.1.1:5000/repo",
            "192.168.1.1:5000",
            "repo",
            None,
            None,
        );
        check(
            "192.168.1.1:5000/repo:5050",
            "192.168.1.1:5000",
            "repo",
            Some("5050"),
            None,
        );
        check_err("[2001:db8::1]", "format");
        check_err("[2001:db8::1]:5000", "format");
        check_err("[2001:db8::1]:tag", "format");
        check("[2001:db8::1]/repo", "[2001:db8::1]", "repo", None, None);
        check(
            "[2001:db8:1:2:3:4:5:6]/repo:tag",
            "[2001:db8:1:2:3:4:5:6]",
            "repo",
            Some("tag"),
            None,
        );
        check(
            "[2001:db8::1]:5000/repo",
            "[2001:db8::1]:5000",
            "repo",
            None,
            None,
        );
        check(
            "[2001:db8::1]:5000/repo:tag",
            "[2001:db8::1]:5000",
            "repo",
            Some("tag"),
            None,
        );
        check(
            &format!("[2001:db8::1]:5000/repo@{f}"),
            "[2001:db8::1]:5000",
            "repo",
            None,
            Some(f),
        );
        check(
            &format!("[2001:db8::1]:5000/repo:tag@{f}"),
            "[2001:db8::1]:5000",
            "repo",
            Some("tag"),
            Some(f),
        );
        check(
            "[2001:db8::]:5000/repo",
            "[2001:db8::]:5000",
            "repo",
            None,
            None,
        );
        check("[::1]:5000/repo", "[::1]:5000", "repo", None, None);
        check_err("[fe80::1%eth0]:5000/repo", "format");
        check_err("[fe80::1%@invalidzone]:5000/repo", "format");
    }

    // ----- reference_test.go: TestWithNameFailure, TestDomainAndPath,
    // TestSerialization (through normalization) -----

    #[test]
    fn docker_with_name_failure_and_domain_and_path() {
        for bad in [
            "",
            ":justtag",
            &format!("@{SHA256_F}"),
            "validname@invaliddigest:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            &format!("{}a:tag", "a/".repeat(128)),
            "aa/asdf$$^/aa",
        ] {
            err(bad);
        }
        check("test.com/foo", "test.com", "foo", None, None);
        check("test_com/foo", "docker.io", "test_com/foo", None, None);
        check("test:8080/foo", "test:8080", "foo", None, None);
        check("test.com:8080/foo", "test.com:8080", "foo", None, None);
        check("test-com:8080/foo", "test-com:8080", "foo", None, None);
        check(
            "xn--n3h.com:18080/foo",
            "xn--n3h.com:18080",
            "foo",
            None,
            None,
        );
        check(
            "example.com:8000/named",
            "example.com:8000",
            "named",
            None,
            None,
        );
        check(
            "example.com:8000/named:tagged",
            "example.com:8000",
            "named",
            Some("tagged"),
            None,
        );
        let d = "sha256:1234567890098765432112345667890098765432112345667890098765432112";
        check(
            &format!("other.com/named@{d}"),
            "other.com",
            "named",
            None,
            Some(d),
        );
        // TestWithTag: uppercase tags are fine.
        check(
            "test.com:8000/foo:TAG5",
            "test.com:8000",
            "foo",
            Some("TAG5"),
            None,
        );
    }

    // ----- normalize_test.go -----

    #[test]
    fn docker_validate_reference_name() {
        let valid = [
            "docker/docker",
            "library/debian",
            "debian",
            "docker.io/docker/docker",
            "docker.io/library/debian",
            "docker.io/debian",
            "index.docker.io/docker/docker",
            "index.docker.io/library/debian",
            "index.docker.io/debian",
            "127.0.0.1:5000/docker/docker",
            "127.0.0.1:5000/library/debian",
            "127.0.0.1:5000/debian",
            "192.168.0.1",
            "192.168.0.1:80",
            "192.168.0.1:8/debian",
            "192.168.0.2:25000/debian",
            "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
            "[fc00::1]:5000/docker",
            "[fc00::1]:5000/docker/docker",
            "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
            "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            "Docker/docker",
            "DOCKER/docker",
        ];
        for name in valid {
            ok(name);
        }
        let invalid = [
            "https://github.com/docker/docker",
            "docker/Docker",
            "-docker",
            "-docker/docker",
            "-docker.io/docker/docker",
            "docker///docker",
            "docker.io/docker/Docker",
            "docker.io/docker///docker",
            "[fc00::1]",
            "[fc00::1]:5000",
            "fc00::1:5000/debian",
            "[fe80::1%eth0]:5000/debian",
            "[2001:db8:3:4::192.0.2.33]:5000/debian",
            "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
        ];
        for name in invalid {
            err(name);
        }
        check_err("docker/Docker", "upper");
        check_err("docker.io/docker/Docker", "upper");
        check_err(HEX64, "hex");
        check("Docker/docker", "Docker", "docker", None, None);
        check("DOCKER/docker", "DOCKER", "docker", None, None);
        check(
            "192.168.0.1:80",
            "docker.io",
            "library/192.168.0.1",
            Some("80"),
            None,
        );
    }

    #[test]
    fn docker_validate_remote_name() {
        for name in [
            "docker/docker",
            "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
            "docker-rules/docker",
            "docker---rules/docker",
            "doc/docker",
            "d/docker",
            "jess/t",
            "dock__er/docker",
        ] {
            ok(name);
        }
        for name in [
            "docker/Docker",
            "docker///docker",
            HEX64,
            "-docker/docker",
            "docker-/docker",
            "-docker-/docker",
            "____/____",
            "_docker/_docker",
            "dock..er/docker",
            "dock_.er/docker",
            "dock-.er/docker",
            "docker/",
            "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker",
        ] {
            err(name);
        }
    }

    #[test]
    fn docker_parse_repository_info() {
        // (path, familiar, full, ambiguous, domain)
        let cases = [
            (
                "fooo/bar",
                "fooo/bar",
                "docker.io/fooo/bar",
                "index.docker.io/fooo/bar",
                "docker.io",
            ),
            (
                "library/ubuntu",
                "ubuntu",
                "docker.io/library/ubuntu",
                "library/ubuntu",
                "docker.io",
            ),
            (
                "nonlibrary/ubuntu",
                "nonlibrary/ubuntu",
                "docker.io/nonlibrary/ubuntu",
                "",
                "docker.io",
            ),
            (
                "other/library",
                "other/library",
                "docker.io/other/library",
                "",
                "docker.io",
            ),
            (
                "private/moonbase",
                "127.0.0.1:8000/private/moonbase",
                "127.0.0.1:8000/private/moonbase",
                "",
                "127.0.0.1:8000",
            ),
            (
                "privatebase",
                "127.0.0.1:8000/privatebase",
                "127.0.0.1:8000/privatebase",
                "",
                "127.0.0.1:8000",
            ),
            (
                "private/moonbase",
                "example.com/private/moonbase",
                "example.com/private/moonbase",
                "",
                "example.com",
            ),
            (
                "privatebase",
                "example.com/privatebase",
                "example.com/privatebase",
                "",
                "example.com",
            ),
            (
                "private/moonbase",
                "example.com:8000/private/moonbase",
                "example.com:8000/private/moonbase",
                "",
                "example.com:8000",
            ),
            (
                "privatebasee",
                "example.com:8000/privatebasee",
                "example.com:8000/privatebasee",
                "",
                "example.com:8000",
            ),
            (
                "library/ubuntu-12.04-base",
                "ubuntu-12.04-base",
                "docker.io/library/ubuntu-12.04-base",
                "index.docker.io/library/ubuntu-12.04-base",
                "docker.io",
            ),
            (
                "library/foo",
                "foo",
                "docker.io/library/foo",
                "docker.io/foo",
                "docker.io",
            ),
            (
                "library/foo/bar",
                "library/foo/bar",
                "docker.io/library/foo/bar",
                "",
                "docker.io",
            ),
            (
                "store/foo/bar",
                "store/foo/bar",
                "docker.io/store/foo/bar",
                "",
                "docker.io",
            ),
            ("bar", "Foo/bar", "Foo/bar", "", "Foo"),
            ("bar", "FOO/bar", "FOO/bar", "", "FOO"),
        ];
        for (path, familiar, full, ambiguous, domain) in cases {
            for input in [familiar, full, ambiguous] {
                if input.is_empty() {
                    continue;
                }
                let r = ok(input);
                assert_eq!(r.repository(), full, "full name of {input}");
                assert_eq!(
                    r.familiar_repository(),
                    familiar,
                    "familiar name of {input}"
                );
                assert_eq!(r.domain, domain, "domain of {input}");
                assert_eq!(r.path, path, "path of {input}");
                assert_eq!(r.to_string(), full);
            }
        }
    }

    #[test]
    fn docker_tag_and_digest_together() {
        let short = "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa";
        let r = ok(short);
        assert_eq!(r.to_string(), format!("docker.io/library/{short}"));
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert!(r.digest.is_some());
        assert_eq!(
            format!("{}:latest@{}", r.familiar_repository(), r.digest.unwrap()),
            short
        );
        // TestInvalidReferenceComponents
        err("-foo");
        assert!(!is_valid_tag("-foo"));
        assert!(!is_valid_digest("foo"));
    }

    #[test]
    fn docker_parse_any_reference_named() {
        let d = "sha256:dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c";
        let cases = [
            ("redis".to_string(), "docker.io/library/redis".to_string()),
            (
                "redis:latest".into(),
                "docker.io/library/redis:latest".into(),
            ),
            (
                "docker.io/library/redis:latest".into(),
                "docker.io/library/redis:latest".into(),
            ),
            (format!("redis@{d}"), format!("docker.io/library/redis@{d}")),
            (
                format!("docker.io/library/redis@{d}"),
                format!("docker.io/library/redis@{d}"),
            ),
            ("dmcgowan/myapp".into(), "docker.io/dmcgowan/myapp".into()),
            (
                "dmcgowan/myapp:latest".into(),
                "docker.io/dmcgowan/myapp:latest".into(),
            ),
            (
                "docker.io/mcgowan/myapp:latest".into(),
                "docker.io/mcgowan/myapp:latest".into(),
            ),
            (
                format!("dmcgowan/myapp@{d}"),
                format!("docker.io/dmcgowan/myapp@{d}"),
            ),
            (
                format!("docker.io/dmcgowan/myapp@{d}"),
                format!("docker.io/dmcgowan/myapp@{d}"),
            ),
            (
                "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9".into(),
                "docker.io/library/dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9"
                    .into(),
            ),
            ("dbcc1".into(), "docker.io/library/dbcc1".into()),
        ];
        for (input, expected) in cases {
            assert_eq!(ok(&input).to_string(), expected, "{input}");
        }
        // ParseNormalizedNamed refuses what ParseAnyReference would read as an
        // image id or a bare digest.
        check_err(
            "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c",
            "hex",
        );
        // ...and a bare digest is, as in Docker, the image "sha256" with a tag.
        check(d, "docker.io", "library/sha256", Some(&d[7..]), None);
    }

    #[test]
    fn docker_normalized_split_hostname() {
        let cases = [
            ("test.com/foo", "test.com", "foo"),
            ("test_com/foo", "docker.io", "test_com/foo"),
            ("docker/migrator", "docker.io", "docker/migrator"),
            ("test.com:8080/foo", "test.com:8080", "foo"),
            ("test-com:8080/foo", "test-com:8080", "foo"),
            ("foo", "docker.io", "library/foo"),
            ("xn--n3h.com/foo", "xn--n3h.com", "foo"),
            ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
            ("docker.io/foo", "docker.io", "library/foo"),
            ("docker.io/library/foo", "docker.io", "library/foo"),
            ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
        ];
        for (input, domain, path) in cases {
            check(input, domain, path, None, None);
        }
    }

    #[test]
    fn split_docker_domain_rules() {
        let split = |s: &str| split_docker_domain(s);
        assert_eq!(split("nginx"), ("docker.io".into(), "library/nginx".into()));
        assert_eq!(
            split("localhost"),
            ("docker.io".into(), "library/localhost".into())
        );
        assert_eq!(
            split("localhost:5000"),
            ("docker.io".into(), "library/localhost:5000".into())
        );
        assert_eq!(split("localhost/foo"), ("localhost".into(), "foo".into()));
        assert_eq!(
            split("index.docker.io/foo"),
            ("docker.io".into(), "library/foo".into())
        );
        assert_eq!(
            split("index.docker.io/a/b"),
            ("docker.io".into(), "a/b".into())
        );
        assert_eq!(
            split("docker.io/foo:1"),
            ("docker.io".into(), "library/foo:1".into())
        );
        assert_eq!(
            split("example/foo"),
            ("docker.io".into(), "example/foo".into())
        );
        assert_eq!(split("Example/foo"), ("Example".into(), "foo".into()));
        assert_eq!(split("ex:1/foo"), ("ex:1".into(), "foo".into()));
        assert_eq!(split("[::1]/foo"), ("[::1]".into(), "foo".into()));
        // "localhost" with no other component is an image on Docker Hub.
        check("localhost", "docker.io", "library/localhost", None, None);
        check(
            "localhost:5000",
            "docker.io",
            "library/localhost",
            Some("5000"),
            None,
        );
        check(
            "example.com",
            "docker.io",
            "library/example.com",
            None,
            None,
        );
        check("localhost/foo", "localhost", "foo", None, None);
        check("localhost:5000/foo", "localhost:5000", "foo", None, None);
        // A domain that is not lowercase stays as written.
        check("Example.COM/foo", "Example.COM", "foo", None, None);
    }

    // ----- regexp_test.go -----

    #[test]
    fn docker_domain_regexp() {
        let cases = [
            ("test.com", true),
            ("test.com:10304", true),
            ("test.com:http", false),
            ("localhost", true),
            ("localhost:8080", true),
            ("a", true),
            ("a.b", true),
            ("ab.cd.com", true),
            ("a-b.com", true),
            ("-ab.com", false),
            ("ab-.com", false),
            ("ab.c-om", true),
            ("ab.-com", false),
            ("ab.com-", false),
            ("0101.com", true),
            ("001a.com", true),
            ("b.gbc.io:443", true),
            ("b.gbc.io", true),
            ("xn--n3h.com", true),
            ("Asdf.com", true),
            ("192.168.1.1:75050", true),
            ("192.168.1.1:750050", true),
            ("[fd00:1:2::3]:75050", true),
            ("[fd00:1:2::3]75050", false),
            ("[fd00:1:2::3]::75050", false),
            ("[fd00:1:2::3%eth0]:75050", false),
            ("[fd00123123123]:75050", true),
            ("[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:75050", true),
            ("[2001:0db8:85a3:0000:0000:8a2e:0370:7334]:750505", true),
            ("fd00:1:2::3:75050", false),
            // extra
            ("", false),
            ("[]", false),
            ("[::1]:", false),
            ("a.", false),
            (".a", false),
            ("a..b", false),
            ("a:", false),
            ("a_b.com", false),
            ("[::1]]", false),
        ];
        for (input, expected) in cases {
            assert_eq!(is_domain_and_port(input), expected, "{input:?}");
        }
    }

    #[test]
    fn docker_full_name_regexp() {
        // (input, Some((domain, path))) or None for no match
        let a128 = format!("{}a", "a/".repeat(128));
        let a127 = format!("{}a", "a/".repeat(127));
        let cases: Vec<(&str, Option<(&str, &str)>)> = vec![
            ("", None),
            ("short", Some(("", "short"))),
            ("simple/name", Some(("simple", "name"))),
            ("library/ubuntu", Some(("library", "ubuntu"))),
            ("docker/stevvooe/app", Some(("docker", "stevvooe/app"))),
            (
                "aa/aa/aa/aa/aa/aa/aa/aa/aa/bb/bb/bb/bb/bb/bb",
                Some(("aa", "aa/aa/aa/aa/aa/aa/aa/aa/bb/bb/bb/bb/bb/bb")),
            ),
            ("aa/aa/bb/bb/bb", Some(("aa", "aa/bb/bb/bb"))),
            ("a/a/a/a", Some(("a", "a/a/a"))),
            ("a/a/a/a/", None),
            ("a//a/a", None),
            ("a", Some(("", "a"))),
            ("a/aa", Some(("a", "aa"))),
            ("a/aa/a", Some(("a", "aa/a"))),
            ("foo.com", Some(("", "foo.com"))),
            ("foo.com/", None),
            ("foo.com:8080/bar", Some(("foo.com:8080", "bar"))),
            ("foo.com:http/bar", None),
            ("foo.com/bar", Some(("foo.com", "bar"))),
            ("foo.com/bar/baz", Some(("foo.com", "bar/baz"))),
            ("localhost:8080/bar", Some(("localhost:8080", "bar"))),
            (
                "sub-dom1.foo.com/bar/baz/quux",
                Some(("sub-dom1.foo.com", "bar/baz/quux")),
            ),
            ("blog.foo.com/bar/baz", Some(("blog.foo.com", "bar/baz"))),
            ("a^a", None),
            ("aa/asdf$$^/aa", None),
            ("asdf$$^/aa", None),
            ("aa-a/a", Some(("aa-a", "a"))),
            (&a128, Some(("a", &a127))),
            ("a-/a/a/a", None),
            ("foo.com/a-/a/a", None),
            ("-foo/bar", None),
            ("foo/bar-", None),
            ("foo-/bar", None),
            ("foo/-bar", None),
            ("_foo/bar", None),
            ("foo_bar", Some(("", "foo_bar"))),
            ("foo_bar.com", Some(("", "foo_bar.com"))),
            ("foo_bar.com:8080", None),
            ("foo_bar.com:8080/app", None),
            ("foo.com/foo_bar", Some(("foo.com", "foo_bar"))),
            ("____/____", None),
            ("_docker/_docker", None),
            ("docker_/docker_", None),
            (
                "b.gcr.io/test.example.com/my-app",
                Some(("b.gcr.io", "test.example.com/my-app")),
            ),
            ("xn--n3h.com/myimage", Some(("xn--n3h.com", "myimage"))),
            ("xn--7o8h.com/myimage", Some(("xn--7o8h.com", "myimage"))),
            (
                "example.com/xn--7o8h.com/myimage",
                Some(("example.com", "xn--7o8h.com/myimage")),
            ),
            (
                "example.com/some_separator__underscore/myimage",
                Some(("example.com", "some_separator__underscore/myimage")),
            ),
            ("example.com/__underscore/myimage", None),
            ("example.com/..dots/myimage", None),
            ("example.com/.dots/myimage", None),
            ("example.com/nodouble..dots/myimage", None),
            ("docker./docker", None),
            (".docker/docker", None),
            ("docker-/docker", None),
            ("-docker/docker", None),
            ("do..cker/docker", None),
            ("do__cker:8080/docker", None),
            ("do__cker/docker", Some(("", "do__cker/docker"))),
            (
                "registry.io/foo/project--id.module--name.ver---sion--name",
                Some((
                    "registry.io",
                    "foo/project--id.module--name.ver---sion--name",
                )),
            ),
            ("Asdf.com/foo/bar", Some(("Asdf.com", "foo/bar"))),
            ("Foo/FarB", None),
        ];
        for (input, expected) in cases {
            let got = match_name(input).ok().map(|(d, p)| (d.unwrap_or(""), p));
            assert_eq!(got, expected, "{input:?}");
        }
    }

    /// Expected (name, tag, digest) captures, or `None` for no match.
    type ReferenceSubs = Option<(&'static str, &'static str, &'static str)>;

    #[test]
    fn docker_reference_regexp() {
        let d = "sha256:be178c0543eb17f5f3043021c9e5fcf30285e557a4fc309cce97ff9ca6182912";
        let cases: Vec<(String, ReferenceSubs)> = vec![
            (
                "registry.com:8080/myapp:tag".into(),
                Some(("registry.com:8080/myapp", "tag", "")),
            ),
            (
                format!("registry.com:8080/myapp@{d}"),
                Some(("registry.com:8080/myapp", "", d)),
            ),
            (
                format!("registry.com:8080/myapp:tag2@{d}"),
                Some(("registry.com:8080/myapp", "tag2", d)),
            ),
            ("registry.com:8080/myapp@sha256:badbadbadbad".into(), None),
            ("registry.com:8080/myapp:invalid~tag".into(), None),
            ("bad_hostname.com:8080/myapp:tag".into(), None),
            (
                format!("localhost:8080@{d}"),
                Some(("localhost", "8080", d)),
            ),
            (
                format!("localhost:8080/name@{d}"),
                Some(("localhost:8080/name", "", d)),
            ),
            (format!("localhost:http/name@{d}"), None),
            (format!("localhost@{d}"), Some(("localhost", "", d))),
            ("registry.com:8080/myapp@bad".into(), None),
            ("registry.com:8080/myapp@2bad".into(), None),
        ];
        for (input, expected) in cases {
            let got = match_reference(&input, &input)
                .ok()
                .map(|p| (p.name, p.tag.unwrap_or(""), p.digest.unwrap_or("")));
            assert_eq!(got, expected, "{input:?}");
        }
    }

    #[test]
    fn docker_identifier_regexp() {
        assert!(is_identifier(
            "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821"
        ));
        assert!(!is_identifier(
            "7EC43B381E5AEFE6E04EFB0B3F0693FF2A4A50652D64AEC573905F2DB5889A1C"
        ));
        assert!(!is_identifier(
            "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf"
        ));
        assert!(!is_identifier(
            "sha256:da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf9821"
        ));
        assert!(!is_identifier(
            "da304e823d8ca2b9d863a3c897baeb852ba21ea9a9f1414736394ae7fcaf98218482"
        ));
        // Uppercase 64-hex is not an identifier, but it is not a valid name
        // either: the repository must be lowercase.
        check_err(
            "7EC43B381E5AEFE6E04EFB0B3F0693FF2A4A50652D64AEC573905F2DB5889A1C",
            "upper",
        );
    }

    // ----- digests (go-digest's rules for the registered algorithms) -----

    #[test]
    fn digests() {
        let good = [
            "sha256:e58fcf7418d4390dec8e8fb69d88c06ec07039d651fedd3aa72af9972e7d046b",
            "sha384:d3fc7881460b7e22e3d172954463dddd7866d17597e7248453c48b3e9d26d9596bf9c4a9cf8072c9d5bad76e19af801d",
            &sha512_f(),
        ];
        for d in good {
            assert!(is_valid_digest(d), "{d}");
            validate_digest(d).unwrap();
            check(&format!("a/b@{d}"), "docker.io", "a/b", None, Some(d));
        }
        let bad = [
            "",
            ":",
            "sha256",
            "sha256:",
            "sha256:e58fcf7418d4390dec8e8fb69d88c06ec07039d651fedd3aa72af9972e7d046", // 63
            "sha256:e58fcf7418d4390dec8e8fb69d88c06ec07039d651fedd3aa72af9972e7d046bb", // 65
            "sha256:E58FCF7418D4390DEC8E8FB69D88C06EC07039D651FEDD3AA72AF9972E7D046B",
            "sha256:e58fcf7418d4390dec8e8fb69d88c06ec07039d651fedd3aa72af9972e7d046g",
            "sha384:d3fc7881460b7e22e3d172954463dddd7866d17597e7248453c48b3e9d26d9596bf9c4a9cf8072c9d5bad76e19af801",
            "e58fcf7418d4390dec8e8fb69d88c06ec07039d651fedd3aa72af9972e7d046b",
            "foo:d41d8cd98f00b204e9800998ecf8427e",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha256:d41d8cd98f00b204e9800998ecf8427e",
            "SHA256:e58fcf7418d4390dec8e8fb69d88c06ec07039d651fedd3aa72af9972e7d046b",
            "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
            "1sha256:e58fcf7418d4390dec8e8fb69d88c06ec07039d651fedd3aa72af9972e7d046b",
            "sha256:e58fcf7418d4390dec8e8fb69d88c06ec07039d651fedd3aa72af9972e7d046b:",
            " sha256:e58fcf7418d4390dec8e8fb69d88c06ec07039d651fedd3aa72af9972e7d046b",
        ];
        for d in bad {
            assert!(!is_valid_digest(d), "{d:?}");
            assert!(ImageRef::parse(&format!("a/b@{d}")).is_err(), "a/b@{d:?}");
        }
        let e = validate_digest("md5:d41d8cd98f00b204e9800998ecf8427e").unwrap_err();
        assert!(
            e.to_string().contains("unsupported digest algorithm 'md5'"),
            "{e}"
        );
        let e = validate_digest("sha256:abcdabcdabcdabcdabcdabcdabcdabcdabcd").unwrap_err();
        assert!(e.to_string().contains("64 hex characters, got 36"), "{e}");
        // A bare digest is the image "sha256" with a tag (Docker does the
        // same); a tag after the digest, or two digests, are errors.
        check(
            SHA256_F,
            "docker.io",
            "library/sha256",
            Some(&SHA256_F[7..]),
            None,
        );
        err(&format!("a/b@{SHA256_F}:tag"));
        err(&format!("a/b@{SHA256_F}@{SHA256_F}"));
    }

    // ----- tags -----

    #[test]
    fn tags() {
        for t in [
            "latest",
            "1.2.3",
            "v1",
            "_",
            "A",
            "TAG5",
            "a-b_c.d",
            "0",
            "__init__",
            "-".replace('-', "x").as_str(),
        ] {
            assert!(is_valid_tag(t), "{t}");
            validate_tag(t).unwrap();
        }
        let t128 = format!("a{}", "b".repeat(127));
        let t129 = format!("a{}", "b".repeat(128));
        assert!(is_valid_tag(&t128));
        assert!(!is_valid_tag(&t129));
        check(
            &format!("foo:{t128}"),
            "docker.io",
            "library/foo",
            Some(&t128),
            None,
        );
        let e = err(&format!("foo:{t129}"));
        assert_eq!(kind(&e), "tag");
        assert!(e.to_string().contains("at most 128 characters"), "{e}");
        for t in [
            "", "-a", ".a", "a b", "a/b", "a:b", "a@b", "é", "a~", "a+b", "a\n", "$(x)",
        ] {
            assert!(!is_valid_tag(t), "{t:?}");
            assert!(validate_tag(t).is_err(), "{t:?}");
        }
        check_err("foo:", "tag");
        check_err("foo:-x", "tag");
        check_err("foo:.x", "tag");
        check_err("foo:a+b", "tag");
        assert_eq!(err("foo:").to_string(), "tag '' is invalid: tag is empty");
    }

    // ----- cases from the brief -----

    #[test]
    fn wharf_normalization() {
        check("nginx", "docker.io", "library/nginx", None, None);
        assert_eq!(ok("nginx").repository(), "docker.io/library/nginx");
        check("acme/web", "docker.io", "acme/web", None, None);
        assert_eq!(ok("acme/web").repository(), "docker.io/acme/web");
        check(
            "localhost:5000/acme/web:1.2.3",
            "localhost:5000",
            "acme/web",
            Some("1.2.3"),
            None,
        );
        assert_eq!(
            ok("localhost:5000/acme/web:1.2.3").repository(),
            "localhost:5000/acme/web"
        );
        check(
            "index.docker.io/nginx",
            "docker.io",
            "library/nginx",
            None,
            None,
        );
        check(
            "docker.io/library/nginx:latest",
            "docker.io",
            "library/nginx",
            Some("latest"),
            None,
        );
        check("[::1]:5000/foo", "[::1]:5000", "foo", None, None);
        check("[::1]/foo:1", "[::1]", "foo", Some("1"), None);
        check("ghcr.io/owner/app", "ghcr.io", "owner/app", None, None);
        check("a/b/c/d", "docker.io", "a/b/c/d", None, None);
        let d = format!("sha256:{}", "0123456789abcdef".repeat(4));
        check(&format!("a/b@{d}"), "docker.io", "a/b", None, Some(&d));
        check(
            &format!("a/b:t@{d}"),
            "docker.io",
            "a/b",
            Some("t"),
            Some(&d),
        );
        assert_eq!(
            ok(&format!("a/b:t@{d}")).to_string(),
            format!("docker.io/a/b:t@{d}")
        );
    }

    #[test]
    fn wharf_uppercase() {
        let e = err("ghcr.io/Owner/app");
        assert_eq!(kind(&e), "upper");
        assert_eq!(
            e.to_string(),
            "invalid reference format: repository name must be lowercase: 'Owner/app'"
        );
        check_err("Nginx", "upper");
        check_err("acme/Web:tag", "upper");
        check_err("localhost:5000/Acme", "upper");
        check_err("Foo_Bar/x", "upper"); // lowercase form would be valid
                                         // Uppercase first component of several is a domain (Docker's rule).
        check("Owner/app", "Owner", "app", None, None);
    }

    #[test]
    fn wharf_rejects_garbage() {
        for bad in [
            "$(rm -rf /)",
            "a;b",
            "a/../b",
            "a b",
            "web\n",
            "\nweb",
            "web\r",
            "web\t",
            " web",
            "web ",
            "a/./b",
            "a//b",
            "/a",
            "a/",
            "a.",
            ".a",
            "a-",
            "-a",
            "a_",
            "_a",
            "a___b",
            "a..b",
            "a.-b",
            "`id`",
            "a|b",
            "a&b",
            "a>b",
            "a\\b",
            "a'b",
            "a\"b",
            "a\0b",
            "a\u{7f}",
            "https://ghcr.io/a/b",
            "ghcr.io:/a",
            "ghcr.io:abc/a",
            "ghcr.io/",
            "ghcr.io//a",
            "ghcr..io/a",
            "-ghcr.io/a",
            "ghcr-.io/a",
            "[::1/a",
            "[]:5000/a",
            "[::1]x/a",
            "foo:",
            "foo@",
            "foo:@",
            "foo:bar:baz",
            ":",
            "@",
            "/",
            "a@b",
            "é",
            "caf\u{e9}/x",
            "🐳",
            "a/🐳",
            "\u{212a}", // Kelvin sign: lowercases to ASCII 'k'
            "\u{130}",  // dotted capital I
            "foo_bar.com/app",
            "ex_ample.com:5000/app",
        ] {
            err(bad);
        }
        check_err("foo@", "digest");
        check_err("a b", "format");
        check_err("\u{212a}", "upper");
        assert!(err("$(rm -rf /)")
            .to_string()
            .contains("invalid character '$'"));
        assert!(err("a b").to_string().contains("invalid whitespace ' '"));
        let e = err("web\n").to_string();
        assert!(!e.contains('\n'), "{e:?}");
        assert!(e.contains("\\n"), "{e:?}");
        let e = err("foo_bar.com/app").to_string();
        assert!(
            e.contains("'foo_bar.com' is not a valid registry domain"),
            "{e}"
        );
        let e = err("a//b").to_string();
        assert!(e.contains("empty path component"), "{e}");
        let e = err("a/../b").to_string();
        assert!(e.contains("path component '..'"), "{e}");
    }

    #[test]
    fn name_length_limit() {
        // localhost/ + 245 = 255
        let ok255 = format!("localhost/{}", "a".repeat(245));
        assert_eq!(ok255.len(), 255);
        assert_eq!(ok(&ok255).repository(), ok255);
        check_err(&format!("localhost/{}", "a".repeat(246)), "toolong");
        // The limit is on the normalized name, including "docker.io/".
        let x240 = "x".repeat(240);
        assert_eq!(ok(&format!("acme/{x240}")).repository().len(), 255);
        check_err(&format!("acme/{x240}x"), "toolong");
        // "docker.io/library/" is 18 characters.
        assert_eq!(ok(&"n".repeat(237)).repository().len(), 255);
        check_err(&"n".repeat(238), "toolong");
        // Tags and digests do not count.
        ok(&format!(
            "localhost/{}:{}@{SHA256_F}",
            "a".repeat(245),
            "t".repeat(128)
        ));
        let e = err(&format!("localhost/{}", "a".repeat(1000)));
        assert!(
            e.to_string()
                .starts_with("name is longer than 255 characters (1010 characters)"),
            "{e}"
        );
    }

    #[test]
    fn hex_identifier_rejected() {
        let e = err(HEX64);
        assert_eq!(kind(&e), "hex");
        assert!(
            e.to_string()
                .contains("cannot specify 64-byte hexadecimal strings"),
            "{e}"
        );
        // 63 or 65 hex characters are ordinary names.
        ok(&HEX64[..63]);
        ok(&format!("{HEX64}0"));
        // With a tag, or with a domain, it is a name again.
        ok(&format!("{HEX64}:tag"));
        ok(&format!("docker.io/{HEX64}"));
    }

    #[test]
    fn empty_reference() {
        assert_eq!(err(""), ReferenceError::Empty);
        assert_eq!(err("").to_string(), "reference is empty");
        assert!(normalize_repository("").is_err());
    }

    #[test]
    fn normalize_repository_cases() {
        assert_eq!(
            normalize_repository("nginx").unwrap(),
            "docker.io/library/nginx"
        );
        assert_eq!(
            normalize_repository("acme/web").unwrap(),
            "docker.io/acme/web"
        );
        assert_eq!(
            normalize_repository("index.docker.io/acme/web").unwrap(),
            "docker.io/acme/web"
        );
        assert_eq!(
            normalize_repository("localhost:5000/acme/web").unwrap(),
            "localhost:5000/acme/web"
        );
        assert_eq!(
            normalize_repository("[::1]:5000/foo").unwrap(),
            "[::1]:5000/foo"
        );
        assert_eq!(
            normalize_repository("docker.io/library/nginx").unwrap(),
            "docker.io/library/nginx"
        );
        let e = normalize_repository("nginx:latest").unwrap_err();
        assert_eq!(
            e.to_string(),
            "'nginx:latest' must be a repository without a tag"
        );
        let e = normalize_repository(&format!("nginx@{SHA256_F}")).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("must be a repository without a digest"),
            "{e}"
        );
        let e = normalize_repository(&format!("nginx:1@{SHA256_F}")).unwrap_err();
        assert!(e.to_string().ends_with("without a tag or digest"), "{e}");
        // Docker reads "localhost:5000" as image "localhost", tag "5000".
        assert_eq!(
            kind(&normalize_repository("localhost:5000").unwrap_err()),
            "notrepo"
        );
        assert_eq!(
            kind(&normalize_repository("ghcr.io/Owner/app").unwrap_err()),
            "upper"
        );
        assert!(normalize_repository("web\n").is_err());
    }

    /// Found by `fuzz/` (target `reference`): lowercasing the host turned the
    /// registry `Owner` into Docker Hub's namespace `owner`, and left
    /// `DOCKER.IO/x` / `INDEX.DOCKER.IO/x` in forms that normalize again
    /// differently.
    #[test]
    fn normalize_repository_keeps_the_registry_and_is_idempotent() {
        for (input, normalized) in [
            ("Owner/app", "Owner/app"),
            ("Owner/app/web", "Owner/app/web"),
            ("Registry.Example.com/app", "registry.example.com/app"),
            (
                "Registry.Example.com:5000/app",
                "registry.example.com:5000/app",
            ),
            ("LOCALHOST/app", "localhost/app"),
            ("[FE80::1]:5000/app", "[fe80::1]:5000/app"),
            ("DOCKER.IO/nginx", "docker.io/library/nginx"),
            ("Docker.io/acme/web", "docker.io/acme/web"),
            ("INDEX.DOCKER.IO/acme/web", "docker.io/acme/web"),
            ("Index.Docker.IO/nginx", "docker.io/library/nginx"),
        ] {
            assert_eq!(
                normalize_repository(input).as_deref(),
                Ok(normalized),
                "{input}"
            );
            assert_eq!(
                normalize_repository(normalized).as_deref(),
                Ok(normalized),
                "{normalized} normalizes to itself"
            );
        }
        // Lowercasing would need `library/` and overflow: the host keeps its case.
        let long = format!("DOCKER.IO/{}", "a".repeat(244));
        assert_eq!(normalize_repository(&long).as_deref(), Ok(long.as_str()));
    }

    #[test]
    fn display_familiar_and_default_tag() {
        let r = ok("nginx");
        assert_eq!(r.to_string(), "docker.io/library/nginx");
        assert_eq!(r.familiar_repository(), "nginx");
        assert_eq!(
            r.clone().with_default_tag().to_string(),
            "docker.io/library/nginx:latest"
        );
        let r = ok(&format!("acme/web@{SHA256_F}"));
        assert_eq!(r.clone().with_default_tag(), r);
        assert_eq!(r.familiar_repository(), "acme/web");
        let r = ok("acme/web:1");
        assert_eq!(r.clone().with_default_tag(), r);
        assert_eq!(
            ok("docker.io/library/a/b").familiar_repository(),
            "library/a/b"
        );
        assert_eq!(
            ok("ghcr.io/library/a").familiar_repository(),
            "ghcr.io/library/a"
        );
        let parsed: ImageRef = "localhost:5000/acme/web:1.2.3".parse().unwrap();
        assert_eq!(parsed.to_string(), "localhost:5000/acme/web:1.2.3");
        assert!("a b".parse::<ImageRef>().is_err());
        // Normalization is idempotent.
        for input in [
            "nginx",
            "acme/web:1",
            "index.docker.io/nginx",
            "Foo/bar",
            "[::1]:5000/x@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            let once = ok(input);
            assert_eq!(ok(&once.to_string()), once, "{input}");
        }
    }

    #[test]
    fn error_messages_are_bounded() {
        let long = "A".repeat(10_000);
        let inputs = [
            format!("{long}/x"),
            format!("x/{long}"),
            format!("x:{long}"),
            format!("x@{long}"),
            format!("x@sha256:{}", "a".repeat(10_000)),
            format!("x@md5{}:{}", "a".repeat(10_000), "a".repeat(64)),
            format!("x/{}", "\u{1}".repeat(10_000)),
            format!("x/{}", "é".repeat(10_000)),
            "a/".repeat(5_000),
            "a".repeat(10_000),
            format!("{}:{}", "a".repeat(10_000), "t".repeat(10_000)),
        ];
        for input in &inputs {
            let e = err(input);
            let msg = e.to_string();
            assert!(
                msg.chars().count() <= 400,
                "{} chars: {msg}",
                msg.chars().count()
            );
            assert!(!msg.chars().any(char::is_control), "{msg:?}");
        }
        assert!(
            normalize_repository(&format!("{}:t", "a".repeat(200)))
                .unwrap_err()
                .to_string()
                .len()
                < 200
        );
        let e = validate_tag(&"t".repeat(10_000)).unwrap_err().to_string();
        assert!(e.len() < 250, "{e}");
        let e = validate_digest(&"d".repeat(10_000))
            .unwrap_err()
            .to_string();
        assert!(e.len() < 250, "{e}");
    }

    #[test]
    fn echo_truncates_on_char_boundaries() {
        assert_eq!(echo("abc"), "'abc'");
        assert_eq!(echo("a\nb"), "'a\\nb'");
        let e = echo(&"é".repeat(300));
        assert!(e.starts_with("'éé") && e.ends_with("…' (600 bytes)"), "{e}");
        assert_eq!(e.chars().filter(|c| *c == 'é').count(), ECHO_MAX);
        let e = echo(&"\u{1}".repeat(300));
        assert!(e.chars().count() < ECHO_MAX + 20, "{e}");
    }

    // ----- what the plugins' deleted splitters relied on -----

    /// The docker plugin pulls `repository()` at `pull_version()`: the
    /// registry's port is no tag, a digest wins over a tag, and a reference
    /// with neither pulls `latest`.
    #[test]
    fn pulls_split_at_the_tag_not_the_port() {
        let pull = |input: &str| {
            let r = ok(input);
            (r.repository(), r.pull_version().to_string())
        };
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            pull("localhost:5000/acme/web:v1"),
            pair("localhost:5000/acme/web", "v1")
        );
        assert_eq!(
            pull("localhost:5000/acme/web"),
            pair("localhost:5000/acme/web", "latest")
        );
        assert_eq!(
            pull(&format!("docker.io/library/nginx@{SHA256_F}")),
            pair("docker.io/library/nginx", SHA256_F)
        );
        assert_eq!(
            pull(&format!("localhost:5000/app:1@{SHA256_F}")),
            pair("localhost:5000/app", SHA256_F)
        );
        assert_eq!(pull("nginx"), pair("docker.io/library/nginx", "latest"));
    }

    /// keep_images finds a repository's images by the references the engine
    /// lists for them, compared with the project's normalized `image`.
    #[test]
    fn engine_references_normalize_like_projects() {
        let with_digest = format!("127.0.0.1:5000/acme/web@{SHA256_F}");
        let with_both = format!("localhost:5000/app:1@{SHA256_F}");
        for (reference, repository) in [
            ("nginx:1.25", "docker.io/library/nginx"),
            ("acme/web:v1", "docker.io/acme/web"),
            ("docker.io/library/nginx:latest", "docker.io/library/nginx"),
            ("index.docker.io/nginx:1", "docker.io/library/nginx"),
            ("127.0.0.1:5000/acme/web:v2", "127.0.0.1:5000/acme/web"),
            (with_digest.as_str(), "127.0.0.1:5000/acme/web"),
            (with_both.as_str(), "localhost:5000/app"),
            ("localhost/web:1", "localhost/web"),
            ("Registry.Example.com/a/b:c", "registry.example.com/a/b"),
            // An uppercase first component is a registry host (Docker's
            // rule), not Docker Hub's namespace `owner`.
            ("Owner/app:1", "Owner/app"),
        ] {
            assert_eq!(
                repository_of(reference).as_deref(),
                Ok(repository),
                "{reference}"
            );
            assert_eq!(
                normalize_repository(repository).as_deref(),
                Ok(repository),
                "{repository} is a project's spelling"
            );
        }
        assert!(repository_of("<none>:<none>").is_err());
        assert!(repository_of("web@sha256:abc").is_err());
    }

    /// `split` cuts as the parser does but judges nothing: compose image
    /// lines may be templates, engine answers are shown as they come.
    #[test]
    fn split_cuts_like_the_parser_without_judging() {
        let cut = |input| {
            let Split { name, tag, digest } = split(input);
            (name, tag, digest)
        };
        assert_eq!(
            cut("localhost:5000/acme/web:v1"),
            ("localhost:5000/acme/web", Some("v1"), None)
        );
        assert_eq!(
            cut("localhost:5000/acme/web"),
            ("localhost:5000/acme/web", None, None)
        );
        assert_eq!(
            cut("docker.io/library/nginx@sha256:abc"),
            ("docker.io/library/nginx", None, Some("sha256:abc"))
        );
        assert_eq!(
            cut("127.0.0.1:5000/acme/web:v2@sha256:abc"),
            ("127.0.0.1:5000/acme/web", Some("v2"), Some("sha256:abc"))
        );
        assert_eq!(cut("localhost:5000"), ("localhost", Some("5000"), None));
        assert_eq!(
            cut("${REGISTRY:-localhost:5000}/web:1"),
            ("${REGISTRY:-localhost:5000}/web", Some("1"), None)
        );
        assert_eq!(cut("postgres:16"), ("postgres", Some("16"), None));
        assert_eq!(cut(""), ("", None, None));
        assert_eq!(
            split("127.0.0.1:5000/acme/web:v2@sha256:abc").short(),
            "web:v2"
        );
        assert_eq!(split("nginx:1.27").short(), "nginx:1.27");
        assert_eq!(split("acme/web").short(), "web");
        // On valid references it agrees with the parser.
        for input in [
            "nginx",
            "acme/web:1",
            "localhost:5000/acme/web:v1",
            "[::1]:5000/x:y",
            &format!("ghcr.io/a/b:c@{SHA256_F}"),
        ] {
            let parsed = ok(input);
            let cut = split(input);
            assert_eq!(cut.tag, parsed.tag.as_deref(), "{input}");
            assert_eq!(cut.digest, parsed.digest.as_deref(), "{input}");
            assert_eq!(ok(cut.name).repository(), parsed.repository(), "{input}");
        }
    }

    // ----- never panics -----

    /// Parse `input`; on success, check the invariants of the result; on
    /// failure, check the message is bounded and printable.
    fn exercise(input: &str) {
        let _ = is_valid_tag(input);
        let _ = is_valid_digest(input);
        let _ = normalize_repository(input);
        match ImageRef::parse(input) {
            Ok(r) => {
                assert!(!r.domain.is_empty(), "{input:?}");
                assert!(is_domain_and_port(&r.domain), "{input:?}");
                assert!(check_path(&r.path).is_ok(), "{input:?}");
                assert!(r.repository().len() <= NAME_TOTAL_LENGTH_MAX, "{input:?}");
                if let Some(t) = &r.tag {
                    assert!(is_valid_tag(t), "{input:?}");
                }
                if let Some(d) = &r.digest {
                    assert!(is_valid_digest(d), "{input:?}");
                }
                let again = ImageRef::parse(&r.to_string())
                    .unwrap_or_else(|e| panic!("{input:?} -> {r} does not reparse: {e}"));
                assert_eq!(again, r, "{input:?}");
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.chars().count() <= 400, "{input:?}: {msg}");
                assert!(!msg.chars().any(char::is_control), "{input:?}: {msg:?}");
            }
        }
    }

    #[test]
    fn never_panics_on_short_strings() {
        let alphabet = [
            'a', 'A', '0', '/', ':', '@', '.', '_', '-', '[', ']', ' ', 'é', '🐳', '\n', '\u{212a}',
        ];
        let mut buf = String::new();
        fn rec(alphabet: &[char], depth: usize, buf: &mut String) {
            exercise(buf);
            if depth == 0 {
                return;
            }
            for &c in alphabet {
                buf.push(c);
                rec(alphabet, depth - 1, buf);
                buf.pop();
            }
        }
        rec(&alphabet, 4, &mut buf);
    }

    #[test]
    fn never_panics_on_truncations() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let valid = [
            format!("localhost:5000/acme/web:1.2.3@{d}"),
            format!("[2001:db8::1]:5000/repo:tag@{d}"),
            format!("index.docker.io/library/nginx:latest@{}", sha512_f()),
            "docker.io/library/nginx:latest".to_string(),
            "Foo/bar:Tag".to_string(),
            "é/🐳:tâg@sha256:ü".to_string(),
            format!("{HEX64}:x"),
        ];
        for s in &valid {
            let bytes = s.as_bytes();
            for i in 0..=bytes.len() {
                // Every byte prefix and suffix, as the lossy string and, where
                // the index is a char boundary, as a plain slice.
                exercise(&String::from_utf8_lossy(&bytes[..i]));
                exercise(&String::from_utf8_lossy(&bytes[i..]));
                if let Some(prefix) = s.get(..i) {
                    exercise(prefix);
                }
                if let Some(suffix) = s.get(i..) {
                    exercise(suffix);
                }
                // And with each byte dropped or doubled.
                let mut dropped = bytes.to_vec();
                if i < dropped.len() {
                    dropped.remove(i);
                    exercise(&String::from_utf8_lossy(&dropped));
                    let mut doubled = bytes.to_vec();
                    doubled.insert(i, bytes[i]);
                    exercise(&String::from_utf8_lossy(&doubled));
                }
            }
        }
    }

    #[test]
    fn never_panics_on_generated_references() {
        let hex = "f".repeat(64);
        let pieces: Vec<String> = [
            "a",
            "b9",
            "A",
            "Foo",
            "docker.io",
            "index.docker.io",
            "localhost",
            "ghcr.io",
            "[::1]",
            "[fe80::1%eth0]",
            "[",
            "]",
            "192.168.1.1",
            ":5000",
            ":",
            "/",
            "//",
            "@",
            ".",
            "..",
            "_",
            "__",
            "___",
            "-",
            "--",
            "latest",
            "TAG",
            " ",
            "\n",
            "\t",
            "\0",
            "$",
            ";",
            "é",
            "\u{212a}",
            "\u{130}",
            "🐳",
            "+",
            "~",
            "library",
            "foo_bar.com",
            "\u{301}",
            "\u{fffd}",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            format!("sha256:{hex}"),
            format!("sha512:{}", "e".repeat(128)),
            format!("sha256:{}", hex.to_uppercase()),
            format!("md5:{}", "f".repeat(32)),
            hex.clone(),
            "x".repeat(130),
            "a/".repeat(70),
        ])
        .collect();
        // xorshift64*, fixed seed: deterministic.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let mut accepted = 0;
        for _ in 0..30_000 {
            let n = 1 + (next() % 7) as usize;
            let mut s = String::new();
            for _ in 0..n {
                s.push_str(&pieces[(next() % pieces.len() as u64) as usize]);
            }
            exercise(&s);
            if ImageRef::parse(&s).is_ok() {
                accepted += 1;
            }
        }
        // The generator must reach both outcomes to be worth anything.
        assert!(accepted > 1_000, "only {accepted} accepted");
    }
}
