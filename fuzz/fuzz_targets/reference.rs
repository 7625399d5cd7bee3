//! `wharf::reference`: `ImageRef::parse`, `normalize_repository`, the tag and
//! digest validators, on any string (invalid UTF-8 is read lossily).
//!
//! Beyond "no panic", a crash is any of:
//! * an accepted reference that does not print back to itself
//!   (`parse(r.to_string()) == r`) or that breaks the grammar limits
//!   (name <= 255, valid tag, supported digest);
//! * a difference from distribution/reference's own regular expression
//!   (`regexp.go`, compiled here with the `regex` crate): every accepted
//!   reference prints to a string the regexp matches with the same parts,
//!   and every fully qualified string the regexp matches (on a host Docker
//!   reads as a registry) is accepted with exactly those parts;
//! * `is_valid_tag` / `is_valid_digest` disagreeing with their regexps;
//! * `normalize_repository` returning a name that is not its own
//!   normalization, or that names a different registry when parsed again;
//! * an error message that is unbounded or carries a control character.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use regex::Regex;
use wharf::reference::{
    is_valid_digest, is_valid_tag, normalize_repository, validate_digest, validate_tag, ImageRef,
    ReferenceError, DEFAULT_DOMAIN, LEGACY_DEFAULT_DOMAIN, NAME_TOTAL_LENGTH_MAX,
};

// distribution/reference regexp.go, ASCII only like Go's RE2 classes.
const ALNUM: &str = "[a-z0-9]+";
const SEPARATOR: &str = "(?:[._]|__|[-]+)";
const DOMAIN_COMPONENT: &str = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const IPV6: &str = r"\[(?:[a-fA-F0-9:]+)\]";
const TAG: &str = r"[0-9A-Za-z_][0-9A-Za-z_.-]{0,127}";
const DIGEST: &str = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}";

fn path_component() -> String {
    format!("{ALNUM}(?:{SEPARATOR}{ALNUM})*")
}

fn domain_and_port() -> String {
    let name = format!("{DOMAIN_COMPONENT}(?:\\.{DOMAIN_COMPONENT})*");
    format!("(?:{name}|{IPV6})(?::[0-9]+)?")
}

/// `ReferenceRegexp`, with named groups for the parts.
static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    let pc = path_component();
    let remote = format!("{pc}(?:/{pc})*");
    let re = format!(
        "^(?P<name>(?:(?P<domain>{})/)?(?P<path>{remote}))(?::(?P<tag>{TAG}))?(?:@(?P<digest>{DIGEST}))?$",
        domain_and_port()
    );
    Regex::new(&re).expect("reference regexp")
});
static ANCHORED_TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("^{TAG}$")).expect("tag regexp"));
/// go-digest's registered algorithms, lowercase hex of the exact length.
static SUPPORTED_DIGEST: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new("^(?:sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$")
        .expect("digest regexp")
});

const MAX_MESSAGE_CHARS: usize = 600;

fn check_error(context: &str, err: &ReferenceError) {
    let message = err.to_string();
    assert!(
        message.chars().count() <= MAX_MESSAGE_CHARS,
        "{context}: error is {} chars long: {message:?}",
        message.chars().count()
    );
    assert!(
        !message.chars().any(char::is_control),
        "{context}: error carries a control character: {message:?}"
    );
}

/// Whether Docker's `splitDockerDomain` reads `first` as a registry host.
fn is_docker_domain(first: &str) -> bool {
    first == "localhost" || first.contains(['.', ':']) || first.to_lowercase() != first
}

fn check_accepted(input: &str, r: &ImageRef) {
    assert!(
        !r.domain.is_empty() && !r.path.is_empty(),
        "{input:?} -> {r:?}"
    );
    assert!(
        r.repository().len() <= NAME_TOTAL_LENGTH_MAX,
        "{input:?}: name longer than {NAME_TOTAL_LENGTH_MAX}: {r:?}"
    );
    if let Some(tag) = &r.tag {
        assert!(is_valid_tag(tag), "{input:?}: accepted invalid tag {tag:?}");
    }
    if let Some(digest) = &r.digest {
        assert!(
            is_valid_digest(digest),
            "{input:?}: accepted invalid digest {digest:?}"
        );
    }
    let printed = r.to_string();
    match ImageRef::parse(&printed) {
        Ok(again) => assert_eq!(&again, r, "{input:?} prints as {printed:?}"),
        Err(e) => panic!("{input:?} prints as {printed:?}, which is rejected: {e}"),
    }
    let caps = REFERENCE
        .captures(&printed)
        .unwrap_or_else(|| panic!("{input:?} prints as {printed:?}, which the regexp rejects"));
    let group = |n: &str| caps.name(n).map(|m| m.as_str());
    assert_eq!(group("domain"), Some(r.domain.as_str()), "{printed:?}");
    assert_eq!(group("path"), Some(r.path.as_str()), "{printed:?}");
    assert_eq!(group("tag"), r.tag.as_deref(), "{printed:?}");
    assert_eq!(group("digest"), r.digest.as_deref(), "{printed:?}");
    let defaulted = r.clone().with_default_tag();
    assert!(defaulted.tag.is_some() || defaulted.digest.is_some());
    assert_eq!(defaulted.clone().with_default_tag(), defaulted);
}

/// A fully qualified reference the regexp matches must be accepted as is.
fn check_regexp_accepts(input: &str, parsed: &Result<ImageRef, ReferenceError>) {
    let Some(caps) = REFERENCE.captures(input) else {
        return;
    };
    let group = |n: &str| caps.name(n).map(|m| m.as_str());
    let Some(domain) = group("domain") else {
        return;
    };
    // Docker Hub names are rewritten (library/, index.docker.io); a first
    // component Docker does not read as a host is a Hub namespace.
    if !is_docker_domain(domain) || domain == DEFAULT_DOMAIN || domain == LEGACY_DEFAULT_DOMAIN {
        return;
    }
    if group("name").map_or(0, str::len) > NAME_TOTAL_LENGTH_MAX {
        return;
    }
    if group("digest").is_some_and(|d| !SUPPORTED_DIGEST.is_match(d)) {
        return;
    }
    match parsed {
        Ok(r) => {
            assert_eq!(r.domain, domain, "{input:?}");
            assert_eq!(Some(r.path.as_str()), group("path"), "{input:?}");
            assert_eq!(r.tag.as_deref(), group("tag"), "{input:?}");
            assert_eq!(r.digest.as_deref(), group("digest"), "{input:?}");
        }
        Err(e) => panic!("{input:?} matches Docker's regexp but is rejected: {e}"),
    }
}

fn check_normalize(input: &str, parsed: &Result<ImageRef, ReferenceError>) {
    match normalize_repository(input) {
        Ok(name) => {
            let r = parsed.as_ref().unwrap_or_else(|e| {
                panic!("{input:?} normalizes to {name:?} but parse fails: {e}")
            });
            assert!(r.tag.is_none() && r.digest.is_none(), "{input:?}");
            // The normalized name is its own normalization, and still names
            // the same registry (host names compare case-insensitively).
            assert_eq!(
                normalize_repository(&name).as_deref(),
                Ok(name.as_str()),
                "{input:?} normalizes to {name:?}, which normalizes differently"
            );
            let again = ImageRef::parse(&name).expect("checked just above");
            // Only Docker Hub's `library/` may be added (e.g. for `DOCKER.IO/x`).
            assert!(
                again.path == r.path
                    || (again.domain == DEFAULT_DOMAIN
                        && again.path == format!("library/{}", r.path)),
                "{input:?} -> {name:?}: path {:?} became {:?}",
                r.path,
                again.path
            );
            let same_registry = again.domain.eq_ignore_ascii_case(&r.domain)
                || (again.domain == DEFAULT_DOMAIN
                    && r.domain.eq_ignore_ascii_case(LEGACY_DEFAULT_DOMAIN));
            assert!(
                same_registry,
                "{input:?} (registry {:?}) normalizes to {name:?}, registry {:?}",
                r.domain, again.domain
            );
        }
        Err(e) => check_error("normalize_repository", &e),
    }
}

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let input = input.as_ref();

    let parsed = ImageRef::parse(input);
    match &parsed {
        Ok(r) => check_accepted(input, r),
        Err(e) => check_error("parse", e),
    }
    assert_eq!(input.parse::<ImageRef>(), parsed);
    check_regexp_accepts(input, &parsed);
    check_normalize(input, &parsed);

    assert_eq!(
        is_valid_tag(input),
        ANCHORED_TAG.is_match(input),
        "is_valid_tag({input:?})"
    );
    if let Err(e) = validate_tag(input) {
        check_error("validate_tag", &e);
    }
    assert_eq!(
        is_valid_digest(input),
        SUPPORTED_DIGEST.is_match(input),
        "is_valid_digest({input:?})"
    );
    if let Err(e) = validate_digest(input) {
        check_error("validate_digest", &e);
    }
});
