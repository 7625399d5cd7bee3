//! `wharf::webhook::payload::parse` on any (headers, body).
//!
//! Input layout: one selector byte, then the body.
//! * selector < 0x80: a fixed header set (`HEADER_SETS[selector % len]`), so
//!   every header-driven branch of `dispatch` (distribution Content-Type,
//!   X-GitHub-Event, X-Gitea-Event / X-Forgejo-Event, Harbor ce-type) is
//!   reachable with a fixture body behind it;
//! * selector >= 0x80: one header named `FUZZED_NAMES[selector & 0x7f % len]`
//!   whose value is the input up to the first '\n' (lossy UTF-8); the body is
//!   the rest. This fuzzes the header *values* too.
//!
//! Beyond "no panic", a crash is any broken promise of the module docs: empty
//! repository/tag/digest/event id in a push, an exact duplicate push, more
//! than MAX_IGNORED_REASONS + 1 reasons, an Ok with neither a push nor a
//! reason, a message (reason or error) that is unbounded or carries a
//! control character, or a guessed registry host: only the native format and
//! Docker Hub may hand over a repository whose first component the caller's
//! reference parser does not read as a host (and so reads as Docker Hub).
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use wharf::webhook::payload::{parse, MAX_IGNORED_REASONS};

const V1: &str = "application/vnd.docker.distribution.events.v1+json";

const HEADER_SETS: &[&[(&str, &str)]] = &[
    &[],
    &[("Content-Type", V1)],
    &[(
        "content-type",
        "application/vnd.docker.distribution.events.v2+json; charset=utf-8",
    )],
    &[
        ("X-GitHub-Event", "package"),
        ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ],
    &[("X-GitHub-Event", "registry_package")],
    &[("X-GitHub-Event", "ping")],
    &[("X-GitHub-Event", "push")],
    &[("X-Gitea-Event", "package")],
    &[("X-Forgejo-Event", "package")],
    &[("X-Gitea-Event", "push")],
    // What Gitea really sends: its own header and GitHub's.
    &[("X-GitHub-Event", "package"), ("X-Gitea-Event", "package")],
    &[
        ("ce-type", "harbor.artifact.pushed"),
        ("ce-id", "a3b2c1d0-0000-4000-8000-000000000001"),
    ],
    &[("ce-type", "harbor.artifact.pulled")],
    &[("ce-type", "io.example.other")],
    &[("Content-Type", "application/json")],
    &[(
        " CONTENT-TYPE ",
        "APPLICATION/VND.DOCKER.DISTRIBUTION.EVENTS.V1+JSON",
    )],
    &[("ce-type", "harbor.artifact.pushed"), ("ce-id", "")],
];

const FUZZED_NAMES: &[&str] = &[
    "Content-Type",
    "X-GitHub-Event",
    "X-Gitea-Event",
    "X-Forgejo-Event",
    "ce-type",
    "ce-id",
    "X-GitHub-Delivery",
];

const SENDERS: &[&str] = &[
    "native",
    "distribution",
    "dockerhub",
    "github",
    "harbor",
    "quay",
    "gitea",
    "acr",
];

/// Longest acceptable message: a few excerpts of 80 characters plus text.
const MAX_MESSAGE_CHARS: usize = 600;

fn check_message(kind: &str, message: &str) {
    assert!(
        message.chars().count() <= MAX_MESSAGE_CHARS,
        "{kind} is {} chars long: {message:?}",
        message.chars().count()
    );
    assert!(
        !message.chars().any(char::is_control),
        "{kind} carries a control character: {message:?}"
    );
}

/// Docker's `splitDockerDomain` rule, as `wharf::reference` applies it: the
/// first of several components is a registry host when it is `localhost`,
/// contains '.' or ':', or has an uppercase letter.
fn starts_with_registry_host(repository: &str) -> bool {
    repository.split_once('/').is_some_and(|(first, _)| {
        first == "localhost" || first.contains(['.', ':']) || first.to_lowercase() != first
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let value_holder;
    let fuzzed_header;
    let (headers, body): (&[(&str, &str)], &[u8]) = if selector < 0x80 {
        (HEADER_SETS[usize::from(selector) % HEADER_SETS.len()], rest)
    } else {
        let name = FUZZED_NAMES[usize::from(selector & 0x7f) % FUZZED_NAMES.len()];
        let (value, body) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        value_holder = String::from_utf8_lossy(value).into_owned();
        fuzzed_header = [(name, value_holder.as_str())];
        (&fuzzed_header[..], body)
    };

    match parse(headers, body) {
        Ok(payload) => {
            assert!(
                SENDERS.contains(&payload.sender),
                "unknown sender {:?}",
                payload.sender
            );
            let mut seen = HashSet::new();
            for push in &payload.pushes {
                assert!(!push.repository.is_empty(), "empty repository: {push:?}");
                assert!(!push.tag.is_empty(), "empty tag: {push:?}");
                assert!(
                    push.digest.as_deref().is_none_or(|d| !d.is_empty()),
                    "empty digest: {push:?}"
                );
                assert!(
                    push.event_id.as_deref().is_none_or(|d| !d.is_empty()),
                    "empty event id: {push:?}"
                );
                assert!(
                    matches!(payload.sender, "native" | "dockerhub")
                        || starts_with_registry_host(&push.repository),
                    "{} push without a registry host: {push:?}",
                    payload.sender
                );
                assert!(
                    seen.insert((&push.repository, &push.tag, &push.digest)),
                    "duplicate push: {push:?}"
                );
            }
            assert!(
                payload.ignored.len() <= MAX_IGNORED_REASONS + 1,
                "{} ignored reasons",
                payload.ignored.len()
            );
            assert!(
                !(payload.pushes.is_empty() && payload.ignored.is_empty()),
                "Ok with neither a push nor a reason ({})",
                payload.sender
            );
            for reason in &payload.ignored {
                check_message("ignored reason", reason);
            }
        }
        Err(err) => check_message("error", &err.to_string()),
    }
});
