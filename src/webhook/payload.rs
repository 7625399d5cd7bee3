//! Recognise a webhook body and find the image tags it says were pushed.
//!
//! wharf has one webhook URL. Whoever posts to it — a CI job with wharf's own
//! `{"image": "repo:tag"}` body, or a registry's push notification — is told
//! apart here by the *shape* of the JSON (plus the few headers that settle a
//! real ambiguity), so that nobody has to configure "which sender is this".
//!
//! Why the rules are the way they are:
//!
//! * **Pure and panic-free.** The body is attacker-controlled until the caller
//!   has checked a signature, and often even after. Nothing here indexes,
//!   unwraps or slices at an unchecked position, so any byte string yields a
//!   `Result`, never a crash of the daemon.
//! * **Ignored is not an error.** A registry notifies about far more than tag
//!   pushes: blob uploads, pulls, deletes, scans, untagged per-platform
//!   manifests, pings. Those are answered with `Ok` and a human reason in
//!   [`Payload::ignored`], because an error status makes some senders (CNCF
//!   distribution above all) retry the same envelope forever and hold back
//!   every later event queued behind it. Errors are kept for bodies that can
//!   not be understood at all, and for wharf's own format, where the caller is
//!   a person's script that benefits from a 400 saying what is wrong.
//! * **Never guess a registry host.** A repository without a host is read by
//!   the caller as Docker Hub. Only Docker Hub and the native format may
//!   leave the host out; for every other sender an event whose host can not
//!   be found is ignored (or an error for single-event bodies) rather than
//!   silently becoming `docker.io/...`, which would deploy someone else's image.
//! * **No deep validation.** Repository, tag and digest are handed over as the
//!   sender wrote them (apart from the lowercasing GHCR and Gitea need, see
//!   below); the caller parses them with its reference grammar, which is the
//!   one place that decides what a valid reference is.

use std::collections::HashSet;

use serde_json::{Map, Value};

/// One pushed image tag found in a webhook body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEvent {
    /// Repository as the sender names it, host included when the sender says it, NOT normalized:
    /// "localhost:5000/acme/web", "ghcr.io/octo-org/app", "acme/web" (Docker Hub), "harbor.example.com/library/app".
    pub repository: String,
    /// The pushed tag, never empty.
    pub tag: String,
    /// The manifest (or index) digest when the sender reports it, so the
    /// caller can deploy exactly what was pushed even if the tag moves again.
    pub digest: Option<String>,
    /// The sender's event id when it has one (distribution, ACR, Harbor CloudEvents), used by the caller to deduplicate redeliveries.
    ///
    /// For GitHub this is the `X-GitHub-Delivery` GUID, which GitHub keeps
    /// for redeliveries of the same event. The id names the *event*, not the
    /// push: every push found in one event carries the same id, so dedupe on
    /// (event_id, repository, tag).
    pub event_id: Option<String>,
}

/// What one webhook body says: who sent it, what to deploy, what was skipped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Payload {
    /// Which sender format was recognised: "native", "distribution", "dockerhub", "github", "harbor", "quay", "gitea", "acr".
    pub sender: &'static str,
    /// Tag pushes to deploy, in body order, without exact duplicates.
    pub pushes: Vec<PushEvent>,
    /// Human reasons for things in the body that carry nothing to deploy, e.g. "distribution event 63d0…: blob push (application/octet-stream) ignored", "github: untagged package version ignored", "ping ignored".
    ///
    /// Capped at [`MAX_IGNORED_REASONS`] lines plus one summary line, so a
    /// huge envelope of blob events can not flood the log.
    pub ignored: Vec<String>,
}

/// Why a body could not be read as any known webhook payload.
///
/// Messages are short and never echo more than a few dozen characters of the
/// input, because they end up in HTTP answers and logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Nothing (or only whitespace) was posted.
    #[error("body is empty")]
    Empty,
    /// The body is not valid JSON; carries serde_json's position message.
    #[error("body is not JSON: {0}")]
    NotJson(String),
    /// Valid JSON, but not an object (array, string, number, ...).
    #[error("body is a JSON {0}, expected an object")]
    NotAnObject(&'static str),
    /// An object no sender format matches.
    #[error("body is not a known webhook payload: expected {{\"image\": \"repo:tag\"}} or a registry's push notification")]
    UnknownShape,
    /// A recognised payload lacks something it can not do without,
    /// e.g. `image "nginx" has no tag`.
    #[error("{what} has no {field}")]
    MissingField {
        /// The thing that is incomplete, with a short excerpt of it.
        what: String,
        /// The part that is missing.
        field: &'static str,
    },
    /// A field wharf relies on has the wrong JSON type, e.g. `{"image": 5}`.
    #[error("`{field}` must be {expected}")]
    WrongType {
        /// Name of the field.
        field: &'static str,
        /// What it should have been, e.g. "a string".
        expected: &'static str,
    },
    /// The body says two different things, e.g. `image` ends in `@sha256:a…`
    /// while `digest` is `sha256:b…`; deploying either could be wrong.
    #[error("{0}")]
    Conflict(String),
}

/// At most this many ignored reasons are kept; the rest are counted in one
/// summary line. A distribution envelope can hold hundreds of blob events.
pub const MAX_IGNORED_REASONS: usize = 50;

/// Excerpts of untrusted text in reasons and errors are cut to this many chars.
const EXCERPT_CHARS: usize = 80;

/// Docker Hub is the only sender whose repositories carry no host; GHCR is
/// the fixed host of GitHub's container packages.
const GHCR_HOST: &str = "ghcr.io";

/// Manifest and index media types a tag can point at and a runtime can pull.
/// Docker schema 1 is left out on purpose: current Docker no longer pulls it.
const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
];

/// Detect the sender by shape (and headers where they disambiguate: X-GitHub-Event, X-Gitea-Event/X-Forgejo-Event, Content-Type of distribution events v1/v2, ce-type for Harbor CloudEvents) and extract pushes.
/// `headers` are (name, value) pairs; match names case-insensitively.
///
/// Headers are consulted first because they are explicit where shapes are
/// not: Gitea also sends `X-GitHub-Event`, so the Gitea/Forgejo headers win;
/// a distribution envelope may legally be `{}` (its `events` is omitempty);
/// Harbor's binary-mode CloudEvents carry the type only in `ce-type`.
pub fn parse(headers: &[(&str, &str)], body: &[u8]) -> Result<Payload, PayloadError> {
    // A UTF-8 byte order mark is not JSON, but some HTTP clients add one.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(PayloadError::Empty);
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    let obj = match &value {
        Value::Object(map) => map,
        Value::Array(_) => return Err(PayloadError::NotAnObject("array")),
        Value::String(_) => return Err(PayloadError::NotAnObject("string")),
        Value::Number(_) => return Err(PayloadError::NotAnObject("number")),
        Value::Bool(_) => return Err(PayloadError::NotAnObject("boolean")),
        Value::Null => return Err(PayloadError::NotAnObject("null")),
    };
    let mut out = Collector::default();
    let sender = dispatch(headers, obj, &mut out)?;
    Ok(out.finish(sender))
}

/// Choose the sender and run its extractor; returns the sender's name.
fn dispatch(
    headers: &[(&str, &str)],
    obj: &Map<String, Value>,
    out: &mut Collector,
) -> Result<&'static str, PayloadError> {
    // Gitea and Forgejo also send X-GitHub-Event for compatibility, so their
    // own header has to be looked at first.
    if let Some(event) = header(headers, "x-forgejo-event").or(header(headers, "x-gitea-event")) {
        if event.eq_ignore_ascii_case("package") {
            gitea_package(obj, out)?;
        } else {
            out.ignore(format!(
                "gitea: {} event ignored (only package events name images)",
                excerpt(event)
            ));
        }
        return Ok("gitea");
    }
    if let Some(event) = header(headers, "x-github-event") {
        return github_by_header(event, headers, obj, out);
    }
    if header(headers, "content-type").is_some_and(is_distribution_events_type) {
        distribution_envelope(obj, out)?;
        return Ok("distribution");
    }
    if let Some(ce_type) = header(headers, "ce-type") {
        if ce_type.starts_with("harbor.") {
            // Binary content mode: the body is the event's `data`.
            let id = header(headers, "ce-id").filter(|s| !s.is_empty());
            harbor_cloudevent(ce_type, id, Some(obj), out)?;
            return Ok("harbor");
        }
    }

    // No deciding header: go by shape, most specific keys first.
    if obj.contains_key("image") {
        native(obj, out)?;
        return Ok("native");
    }
    if obj.contains_key("events") {
        distribution_envelope(obj, out)?;
        return Ok("distribution");
    }
    if obj.contains_key("specversion") {
        let ty = text(obj.get("type")).unwrap_or("");
        if ty.starts_with("harbor.") {
            let id = text(obj.get("id"));
            harbor_cloudevent(ty, id, obj.get("data").and_then(Value::as_object), out)?;
            return Ok("harbor");
        }
        return Err(PayloadError::UnknownShape);
    }
    if obj.contains_key("event_data") && obj.contains_key("type") {
        harbor_default(obj, out)?;
        return Ok("harbor");
    }
    if obj.contains_key("registry_package") || obj.get("package").is_some_and(is_github_package) {
        github_package(None, headers, obj, out)?;
        return Ok("github");
    }
    if obj.get("package").is_some_and(Value::is_object) {
        gitea_package(obj, out)?;
        return Ok("gitea");
    }
    if obj.contains_key("zen") || obj.contains_key("hook_id") {
        out.ignore("ping ignored".to_string());
        return Ok("github");
    }
    if obj.contains_key("push_data") {
        dockerhub(obj, out)?;
        return Ok("dockerhub");
    }
    if obj.contains_key("updated_tags") || obj.contains_key("docker_url") {
        quay(obj, out)?;
        return Ok("quay");
    }
    if obj.contains_key("action")
        && (obj.contains_key("target")
            || obj.contains_key("request")
            || (obj.contains_key("id") && obj.contains_key("timestamp")))
    {
        // ACR posts one distribution-style event, not wrapped in `events`.
        registry_event("acr", 0, obj, &mut HashSet::new(), out);
        return Ok("acr");
    }
    Err(PayloadError::UnknownShape)
}

// ---------------------------------------------------------------------------
// native

/// wharf's own body: `{"image": "registry/org/app:tag", "digest": "sha256:…"}`.
///
/// Strict, unlike the registry formats: whoever wrote this body can fix it,
/// and an error naming the problem helps them more than a silent 200.
fn native(obj: &Map<String, Value>, out: &mut Collector) -> Result<(), PayloadError> {
    let image = match obj.get("image") {
        Some(Value::String(s)) => s.trim(),
        _ => {
            return Err(PayloadError::WrongType {
                field: "image",
                expected: "a string like \"registry/org/app:tag\"",
            })
        }
    };
    let field_digest = match obj.get("digest") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.trim()).filter(|s| !s.is_empty()),
        Some(_) => {
            return Err(PayloadError::WrongType {
                field: "digest",
                expected: "a string like \"sha256:…\"",
            })
        }
    };
    let what = || format!("image \"{}\"", excerpt(image));
    let (repository, tag, image_digest) = split_reference(image);
    if repository.is_empty() {
        return Err(PayloadError::MissingField {
            what: what(),
            field: "repository",
        });
    }
    let Some(tag) = tag else {
        return Err(PayloadError::MissingField {
            what: what(),
            field: "tag",
        });
    };
    let digest = match (image_digest, field_digest) {
        (Some(a), Some(b)) if a != b => {
            return Err(PayloadError::Conflict(format!(
                "image digest {} differs from digest field {}",
                excerpt(a),
                excerpt(b)
            )))
        }
        (a, b) => a.or(b),
    };
    out.push(repository, tag, digest, None);
    Ok(())
}

/// Split `name[:tag][@digest]` into its parts without validating them.
///
/// The tag is after the last ':' that follows the last '/', so a registry
/// port (`localhost:5000/app`) is not mistaken for a tag. Empty tag or
/// digest parts count as absent. Only ASCII positions found by `find` are
/// used for slicing, so this can not split inside a UTF-8 character.
fn split_reference(reference: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest).filter(|d| !d.is_empty())),
        None => (reference, None),
    };
    let last_segment_start = rest.rfind('/').map_or(0, |i| i + 1);
    let last_segment = rest.get(last_segment_start..).unwrap_or("");
    match last_segment.rfind(':') {
        Some(colon) => {
            let split = last_segment_start + colon;
            let name = rest.get(..split).unwrap_or("");
            let tag = rest.get(split + 1..).filter(|t| !t.is_empty());
            (name, tag, digest)
        }
        None => (rest, None, digest),
    }
}

// ---------------------------------------------------------------------------
// CNCF distribution (and ACR, which posts the same event shape)

/// `{"events": [...]}` from CNCF distribution (`docker-registry`, `registry:2/3`).
///
/// `events` is `omitempty` upstream, so a missing or empty list is a valid,
/// empty envelope. An event id seen twice in one envelope is counted once,
/// so a repeated event can not deploy twice.
fn distribution_envelope(
    obj: &Map<String, Value>,
    out: &mut Collector,
) -> Result<(), PayloadError> {
    let events: &[Value] = match obj.get("events") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(events)) => events,
        Some(_) => {
            return Err(PayloadError::WrongType {
                field: "events",
                expected: "an array",
            })
        }
    };
    if events.is_empty() {
        out.ignore("distribution: envelope with no events ignored".to_string());
    }
    let mut seen = HashSet::new();
    for (index, event) in events.iter().enumerate() {
        match event.as_object() {
            Some(event) => registry_event("distribution", index, event, &mut seen, out),
            None => out.ignore(format!(
                "distribution event #{index}: not an object, ignored"
            )),
        }
    }
    Ok(())
}

/// One distribution-format event: a push counts when the action is `push`,
/// the target is a manifest or index, and it was pushed under a tag.
///
/// Blob uploads come first in every `docker push` and untagged per-platform
/// manifests come with every multi-arch push; neither names a tag to deploy.
fn registry_event<'a>(
    label: &str,
    index: usize,
    event: &'a Map<String, Value>,
    seen: &mut HashSet<&'a str>,
    out: &mut Collector,
) {
    let id = text(event.get("id"));
    let name = match id {
        Some(id) => excerpt(id),
        None => format!("#{index}"),
    };
    if let Some(id) = id {
        if !seen.insert(id) {
            out.ignore(format!(
                "{label} event {name}: repeated in the envelope, ignored"
            ));
            return;
        }
    }
    let target = event.get("target");
    let field = |key: &str| text(target.and_then(|t| t.get(key)));
    let repo = field("repository");
    let repo_txt = excerpt(repo.unwrap_or("?"));
    let action = text(event.get("action")).unwrap_or("");
    match action {
        "push" => {}
        "" => {
            out.ignore(format!("{label} event {name}: no action, ignored"));
            return;
        }
        "ping" => {
            out.ignore(format!("{label} event {name}: ping ignored"));
            return;
        }
        other => {
            out.ignore(format!(
                "{label} event {name}: {} of {repo_txt} ignored",
                excerpt(other)
            ));
            return;
        }
    }
    let media_type = field("mediaType").unwrap_or("");
    if !is_manifest_type(media_type) {
        let reason = if media_type.is_empty() {
            "push without a media type".to_string()
        } else if media_type.contains("manifest") {
            format!(
                "push of unsupported manifest type ({})",
                excerpt(media_type)
            )
        } else {
            format!("blob push ({})", excerpt(media_type))
        };
        out.ignore(format!("{label} event {name}: {reason} ignored"));
        return;
    }
    let digest = field("digest");
    let Some(tag) = field("tag") else {
        out.ignore(format!(
            "{label} event {name}: untagged manifest push ({}) to {repo_txt} ignored",
            excerpt(digest.unwrap_or("no digest"))
        ));
        return;
    };
    let Some(repo) = repo else {
        out.ignore(format!(
            "{label} event {name}: push of tag {} without a repository ignored",
            excerpt(tag)
        ));
        return;
    };
    // target.url is the registry's own link to the content (built from its
    // configured `http.host`, else the request's host); request.host is the
    // Host header the pusher used. Both name the registry as clients see it.
    let host = field("url")
        .and_then(url_host)
        .or_else(|| text(event.get("request").and_then(|r| r.get("host"))));
    let Some(host) = host else {
        out.ignore(format!(
            "{label} event {name}: push of {repo_txt}:{} names no registry host, ignored",
            excerpt(tag)
        ));
        return;
    };
    let repository = format!("{host}/{repo}");
    if !starts_with_registry_host(&repository) {
        out.ignore(format!(
            "{label} event {name}: registry host {} would be read as a Docker Hub namespace, ignored",
            excerpt(host)
        ));
        return;
    }
    out.push(&repository, tag, digest, id);
}

/// Whether a media type (parameters ignored) is a pullable manifest or index.
fn is_manifest_type(media_type: &str) -> bool {
    let base = media_type.split(';').next().unwrap_or("").trim();
    MANIFEST_MEDIA_TYPES
        .iter()
        .any(|known| known.eq_ignore_ascii_case(base))
}

/// `application/vnd.docker.distribution.events.v1+json` (distribution 2.x)
/// or `…v2+json` (3.x), parameters ignored.
fn is_distribution_events_type(content_type: &str) -> bool {
    let base = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    base.starts_with("application/vnd.docker.distribution.events.") && base.ends_with("+json")
}

// ---------------------------------------------------------------------------
// GitHub (GHCR)

/// A request that carries `X-GitHub-Event`: the header names the event, so
/// anything but a package event is a known sender with nothing to deploy.
fn github_by_header(
    event: &str,
    headers: &[(&str, &str)],
    obj: &Map<String, Value>,
    out: &mut Collector,
) -> Result<&'static str, PayloadError> {
    match event {
        "ping" => {
            out.ignore("ping ignored".to_string());
            Ok("github")
        }
        "package" | "registry_package" => {
            // A Gitea body behind a proxy that dropped X-Gitea-Event still
            // has Gitea's shape (`package.type`, no `package_type`).
            let pkg = obj.get(event);
            if pkg.is_some_and(|p| p.is_object() && !is_github_package(p))
                && pkg.and_then(|p| p.get("type")).is_some()
            {
                gitea_package(obj, out)?;
                return Ok("gitea");
            }
            github_package(Some(event), headers, obj, out)?;
            Ok("github")
        }
        other => {
            out.ignore(format!(
                "github: {} event ignored (only package events name images)",
                excerpt(other)
            ));
            Ok("github")
        }
    }
}

/// GitHub's package objects say `package_type`; Gitea's say `type`.
fn is_github_package(package: &Value) -> bool {
    package.get("package_type").is_some()
}

/// `package` / `registry_package` event for a GHCR container.
///
/// Repository is `ghcr.io/` + lowercase(namespace/name): GHCR paths are
/// lowercase while GitHub logins keep their display case, and `name` may
/// itself hold a '/' (`cadence/api`).
fn github_package(
    key: Option<&str>,
    headers: &[(&str, &str)],
    obj: &Map<String, Value>,
    out: &mut Collector,
) -> Result<(), PayloadError> {
    let pkg = key
        .and_then(|k| obj.get(k))
        .or_else(|| obj.get("registry_package"))
        .or_else(|| obj.get("package"))
        .filter(|p| p.is_object())
        .ok_or_else(|| PayloadError::MissingField {
            what: "github package event".to_string(),
            field: "package object",
        })?;
    let action = text(obj.get("action")).unwrap_or("");
    if !(action.eq_ignore_ascii_case("published") || action.eq_ignore_ascii_case("updated")) {
        out.ignore(format!(
            "github: package {} ignored",
            if action.is_empty() {
                "event without action".to_string()
            } else {
                excerpt(action)
            }
        ));
        return Ok(());
    }
    let package_type = text(pkg.get("package_type")).unwrap_or("");
    if !package_type.eq_ignore_ascii_case("container") {
        out.ignore(format!(
            "github: {} package ignored (only container packages are images)",
            excerpt(if package_type.is_empty() {
                "untyped"
            } else {
                package_type
            })
        ));
        return Ok(());
    }
    let version = pkg.get("package_version");
    let meta = version.and_then(|v| v.get("container_metadata"));
    let tag = text(meta.and_then(|m| m.get("tag")).and_then(|t| t.get("name")));
    let digest = text(
        meta.and_then(|m| m.get("manifest"))
            .and_then(|m| m.get("digest")),
    )
    .or_else(|| {
        text(
            meta.and_then(|m| m.get("tag"))
                .and_then(|t| t.get("digest")),
        )
    })
    .or_else(|| sha256_text(version.and_then(|v| v.get("name"))))
    .or_else(|| sha256_text(version.and_then(|v| v.get("version"))));
    let Some(tag) = tag else {
        out.ignore(match digest {
            Some(d) => format!("github: untagged package version {} ignored", excerpt(d)),
            None => "github: untagged package version ignored".to_string(),
        });
        return Ok(());
    };
    let namespace =
        text(pkg.get("namespace")).or_else(|| text(pkg.get("owner").and_then(|o| o.get("login"))));
    let path = match (namespace, text(pkg.get("name"))) {
        (Some(ns), Some(name)) => format!("{ns}/{name}"),
        _ => {
            // Last resort: `package_url` is "ghcr.io/owner/name:tag".
            let url = text(version.and_then(|v| v.get("package_url"))).unwrap_or("");
            let (repo, _, _) = split_reference(url);
            match repo.strip_prefix("ghcr.io/") {
                Some(path) if !path.is_empty() => path.to_string(),
                _ => {
                    return Err(PayloadError::MissingField {
                        what: "github container package".to_string(),
                        field: "namespace and name",
                    })
                }
            }
        }
    };
    let repository = format!("{GHCR_HOST}/{}", path.to_lowercase());
    let delivery = header(headers, "x-github-delivery").filter(|s| !s.is_empty());
    out.push(&repository, tag, digest, delivery);
    Ok(())
}

// ---------------------------------------------------------------------------
// Gitea / Forgejo

/// Gitea/Forgejo `package` event: `action == "created"`, `package.type ==
/// "container"`, the tag is `package.version`.
///
/// The registry is Gitea itself, so the host comes from the package's (or
/// repository's) `html_url`. Owner and name are lowercased because image
/// paths must be lowercase while Gitea logins keep their display case.
/// Gitea's payload carries no digest.
fn gitea_package(obj: &Map<String, Value>, out: &mut Collector) -> Result<(), PayloadError> {
    let pkg = obj
        .get("package")
        .filter(|p| p.is_object())
        .ok_or_else(|| PayloadError::MissingField {
            what: "gitea package event".to_string(),
            field: "package object",
        })?;
    let action = text(obj.get("action")).unwrap_or("");
    if action != "created" {
        out.ignore(format!(
            "gitea: package {} ignored",
            if action.is_empty() {
                "event without action".to_string()
            } else {
                excerpt(action)
            }
        ));
        return Ok(());
    }
    let package_type = text(pkg.get("type")).unwrap_or("");
    if !package_type.eq_ignore_ascii_case("container") {
        out.ignore(format!(
            "gitea: {} package ignored (only container packages are images)",
            excerpt(if package_type.is_empty() {
                "untyped"
            } else {
                package_type
            })
        ));
        return Ok(());
    }
    let Some(version) = text(pkg.get("version")) else {
        out.ignore("gitea: container package without a version ignored".to_string());
        return Ok(());
    };
    if version.starts_with("sha256:") {
        out.ignore(format!(
            "gitea: untagged manifest {} ignored",
            excerpt(version)
        ));
        return Ok(());
    }
    let owner = text(pkg.get("owner").and_then(|o| o.get("login")));
    let name = text(pkg.get("name"));
    let (Some(owner), Some(name)) = (owner, name) else {
        return Err(PayloadError::MissingField {
            what: "gitea container package".to_string(),
            field: "owner login and name",
        });
    };
    let host = [
        pkg.get("html_url"),
        pkg.get("repository").and_then(|r| r.get("html_url")),
        obj.get("repository").and_then(|r| r.get("html_url")),
    ]
    .into_iter()
    .find_map(|url| text(url).and_then(url_host).filter(|h| is_registry_host(h)))
    .ok_or_else(|| PayloadError::MissingField {
        what: "gitea container package".to_string(),
        field: "html_url to take the registry host from",
    })?;
    let repository = format!("{host}/{}/{}", owner.to_lowercase(), name.to_lowercase());
    out.push(&repository, version, None, None);
    Ok(())
}

// ---------------------------------------------------------------------------
// Harbor

/// Harbor's default format: `{"type": "PUSH_ARTIFACT", "event_data": {...}}`.
/// Harbor has no event id in this format.
fn harbor_default(obj: &Map<String, Value>, out: &mut Collector) -> Result<(), PayloadError> {
    let ty = text(obj.get("type")).unwrap_or("");
    if ty != "PUSH_ARTIFACT" {
        out.ignore(format!(
            "harbor: {} event ignored",
            excerpt(if ty.is_empty() { "untyped" } else { ty })
        ));
        return Ok(());
    }
    harbor_resources(obj.get("event_data").and_then(Value::as_object), None, out);
    Ok(())
}

/// Harbor's CloudEvents format, structured (`specversion` in the body, data
/// in `data`) or binary (`ce-type` header, data is the body).
fn harbor_cloudevent(
    ce_type: &str,
    id: Option<&str>,
    data: Option<&Map<String, Value>>,
    out: &mut Collector,
) -> Result<(), PayloadError> {
    if ce_type != "harbor.artifact.pushed" {
        out.ignore(format!("harbor: {} event ignored", excerpt(ce_type)));
        return Ok(());
    }
    if data.is_none() {
        return Err(PayloadError::MissingField {
            what: "harbor.artifact.pushed event".to_string(),
            field: "data object",
        });
    }
    harbor_resources(data, id, out);
    Ok(())
}

/// `resources[]` of a Harbor push: one push per resource.
///
/// The repository (with host) comes from `resource_url`; `tag` wins over the
/// tag in the URL. A resource pushed by digest only has an empty tag (or the
/// digest as tag) and is ignored. Without `resource_url` the host is unknown
/// and the resource is ignored rather than read as a Docker Hub image.
fn harbor_resources(data: Option<&Map<String, Value>>, id: Option<&str>, out: &mut Collector) {
    let resources = data
        .and_then(|d| d.get("resources"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if resources.is_empty() {
        out.ignore("harbor: push event without resources ignored".to_string());
    }
    for (index, resource) in resources.iter().enumerate() {
        let url = text(resource.get("resource_url")).unwrap_or("");
        let (url_repo, url_tag, url_digest) = split_reference(url);
        let digest = text(resource.get("digest")).or(url_digest);
        let tag = text(resource.get("tag"))
            .or(url_tag)
            .filter(|t| !t.starts_with("sha256:"));
        let Some(tag) = tag else {
            out.ignore(format!(
                "harbor: untagged artifact #{index} ({}) ignored",
                excerpt(digest.unwrap_or("no digest"))
            ));
            continue;
        };
        if !starts_with_registry_host(url_repo) {
            out.ignore(format!(
                "harbor: artifact #{index} (tag {}) has no usable resource_url, ignored",
                excerpt(tag)
            ));
            continue;
        }
        out.push(url_repo, tag, digest, id);
    }
}

// ---------------------------------------------------------------------------
// Quay, Docker Hub

/// Quay `repo_push`: one push per `updated_tags` entry, repository from
/// `docker_url` ("quay.io/ns/name"). Quay sends no digest.
fn quay(obj: &Map<String, Value>, out: &mut Collector) -> Result<(), PayloadError> {
    let tags: &[Value] = match obj.get("updated_tags") {
        Some(Value::Array(tags)) => tags,
        _ => &[],
    };
    if tags.is_empty() {
        out.ignore("quay: notification without updated_tags ignored (not a repo_push)".to_string());
        return Ok(());
    }
    let docker_url = text(obj.get("docker_url")).ok_or_else(|| PayloadError::MissingField {
        what: "quay repo_push".to_string(),
        field: "docker_url",
    })?;
    // Defensive: docker_url is documented without a scheme.
    let repository = docker_url
        .strip_prefix("https://")
        .or_else(|| docker_url.strip_prefix("http://"))
        .unwrap_or(docker_url)
        .trim_end_matches('/');
    if !starts_with_registry_host(repository) {
        return Err(PayloadError::MissingField {
            what: format!("quay docker_url \"{}\"", excerpt(repository)),
            field: "registry host",
        });
    }
    for (index, tag) in tags.iter().enumerate() {
        match text(Some(tag)) {
            Some(tag) => out.push(repository, tag, None, None),
            None => out.ignore(format!("quay: updated_tags #{index} is not a tag, ignored")),
        }
    }
    Ok(())
}

/// Docker Hub: `push_data.tag` + `repository.repo_name`, no host (the caller
/// normalizes to docker.io), no digest.
///
/// A body without a tag is *ignored*, not an error: it is a recognised Docker
/// Hub notification that simply names nothing deployable, and an error would
/// only make Hub report the webhook as failing.
fn dockerhub(obj: &Map<String, Value>, out: &mut Collector) -> Result<(), PayloadError> {
    let repo = obj.get("repository");
    let repo_name = text(repo.and_then(|r| r.get("repo_name")))
        .map(str::to_string)
        .or_else(|| {
            let ns = text(repo.and_then(|r| r.get("namespace")))?;
            let name = text(repo.and_then(|r| r.get("name")))?;
            Some(format!("{ns}/{name}"))
        });
    let Some(tag) = text(obj.get("push_data").and_then(|p| p.get("tag"))) else {
        out.ignore(format!(
            "dockerhub: push of {} without a tag ignored",
            excerpt(repo_name.as_deref().unwrap_or("?"))
        ));
        return Ok(());
    };
    let Some(repo_name) = repo_name else {
        return Err(PayloadError::MissingField {
            what: "docker hub push".to_string(),
            field: "repository.repo_name",
        });
    };
    out.push(&repo_name, tag, None, None);
    Ok(())
}

// ---------------------------------------------------------------------------
// helpers

/// Accumulates pushes and reasons; drops exact duplicate pushes (Quay can
/// list a tag twice, a registry can batch the same push twice).
#[derive(Default)]
struct Collector {
    pushes: Vec<PushEvent>,
    seen: HashSet<(String, String, Option<String>)>,
    ignored: Vec<String>,
    ignored_overflow: usize,
}

impl Collector {
    fn push(&mut self, repository: &str, tag: &str, digest: Option<&str>, id: Option<&str>) {
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

    fn ignore(&mut self, reason: String) {
        if self.ignored.len() < MAX_IGNORED_REASONS {
            self.ignored.push(reason);
        } else {
            self.ignored_overflow += 1;
        }
    }

    fn finish(mut self, sender: &'static str) -> Payload {
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
fn header<'h>(headers: &[(&str, &'h str)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// A non-empty JSON string; anything else (missing, null, number, "") is None.
/// Registry formats are read leniently: a wrong type counts as absent.
fn text(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Like [`text`], but only a `sha256:` digest.
fn sha256_text(value: Option<&Value>) -> Option<&str> {
    text(value).filter(|s| s.starts_with("sha256:"))
}

/// Whether the caller's reference parser reads `host` as a registry host when
/// it leads a repository (Docker's `splitDockerDomain` rule: `localhost`, or
/// a '.' or ':', or an uppercase letter). Any other first component is a
/// Docker Hub namespace: `registry/acme/web` is `docker.io/registry/acme/web`.
fn is_registry_host(host: &str) -> bool {
    host == "localhost" || host.contains(['.', ':']) || host.to_lowercase() != host
}

/// Whether `repository` has several components and the first is a registry
/// host (see [`is_registry_host`]), i.e. it will not be read as Docker Hub's.
fn starts_with_registry_host(repository: &str) -> bool {
    repository
        .split_once('/')
        .is_some_and(|(host, _)| is_registry_host(host))
}

/// `host[:port]` of an absolute URL, parsed by hand (no url crate):
/// after "scheme://", up to the first '/', '?' or '#', without userinfo.
fn url_host(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = rest.get(..end)?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some(host).filter(|h| !h.is_empty())
}

/// Untrusted text for a message: at most [`EXCERPT_CHARS`] characters,
/// control characters replaced, so a hostile body can neither flood a log
/// line nor forge a new one.
fn excerpt(s: &str) -> String {
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

    const DISTRIBUTION: &str =
        include_str!("../../tests/fixtures/distribution-2.8.2-docker-push.jsonl");
    const DOCKERHUB: &str = include_str!("../../tests/fixtures/dockerhub-push.json");
    const GITHUB: &str =
        include_str!("../../tests/fixtures/github-registry-package-published.json");
    const HARBOR: &str = include_str!("../../tests/fixtures/harbor-push-artifact.json");
    const QUAY: &str = include_str!("../../tests/fixtures/quay-repo-push.json");
    const GITEA: &str = include_str!("../../tests/fixtures/gitea-package-created.json");

    const MANIFEST_DIGEST: &str =
        "sha256:b2c85c3f0915aee5337f8061308f87d2d7306580e8cfd653a3b8d44a30f6a4b3";
    const V1: &str = "application/vnd.docker.distribution.events.v1+json";
    const V2: &str = "application/vnd.docker.distribution.events.v2+json";

    /// One captured request of the distribution JSONL fixture.
    struct Captured {
        headers: Vec<(String, String)>,
        body: String,
    }

    fn captured() -> Vec<Captured> {
        DISTRIBUTION
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let v: Value = serde_json::from_str(line).expect("fixture line is JSON");
                let headers = v["headers"]
                    .as_object()
                    .expect("headers object")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().expect("header string").to_string()))
                    .collect();
                let body = v["body"].as_str().expect("body string").to_string();
                Captured { headers, body }
            })
            .collect()
    }

    fn parse_captured(c: &Captured) -> Result<Payload, PayloadError> {
        let headers: Vec<(&str, &str)> = c
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        parse(&headers, c.body.as_bytes())
    }

    fn ok(headers: &[(&str, &str)], body: &str) -> Payload {
        match parse(headers, body.as_bytes()) {
            Ok(p) => p,
            Err(e) => panic!("expected Ok for {body}: {e}"),
        }
    }

    fn err(headers: &[(&str, &str)], body: &str) -> PayloadError {
        match parse(headers, body.as_bytes()) {
            Ok(p) => panic!("expected an error for {body}, got {p:?}"),
            Err(e) => e,
        }
    }

    fn push(repository: &str, tag: &str, digest: Option<&str>, id: Option<&str>) -> PushEvent {
        PushEvent {
            repository: repository.into(),
            tag: tag.into(),
            digest: digest.map(Into::into),
            event_id: id.map(Into::into),
        }
    }

    /// Asserts a known sender with nothing to deploy and returns its reasons.
    fn only_ignored(p: &Payload, sender: &str) -> String {
        assert_eq!(p.sender, sender, "{p:?}");
        assert!(p.pushes.is_empty(), "{p:?}");
        assert!(!p.ignored.is_empty(), "{p:?}");
        p.ignored.join("\n")
    }

    // ---- fixtures -------------------------------------------------------

    #[test]
    fn distribution_docker_push_yields_exactly_the_tagged_manifest() {
        let lines = captured();
        assert_eq!(lines.len(), 9, "a docker push sends 9 notifications");
        let mut pushes = Vec::new();
        for c in &lines {
            let p = parse_captured(c).expect("every captured body parses");
            assert_eq!(p.sender, "distribution");
            if p.pushes.is_empty() {
                assert_eq!(p.ignored.len(), 1, "{p:?}");
            }
            pushes.extend(p.pushes);
        }
        assert_eq!(
            pushes,
            vec![push(
                "localhost:5000/acme/web",
                "1.2.3",
                Some(MANIFEST_DIGEST),
                Some("2be758fc-54c9-4bff-8f7c-9868c359a6d0"),
            )]
        );
    }

    #[test]
    fn distribution_blob_and_pull_reasons() {
        let lines = captured();
        let first = parse_captured(&lines[0]).unwrap();
        assert_eq!(
            first.ignored,
            vec!["distribution event 63d0a5b5-f0b6-46f1-befb-1d1c63f4a22e: blob push (application/octet-stream) ignored"]
        );
        let pull = parse_captured(&lines[2]).unwrap();
        assert!(
            pull.ignored[0].contains("pull of acme/web ignored"),
            "{pull:?}"
        );
    }

    #[test]
    fn distribution_bodies_parse_without_headers_too() {
        let pushes: usize = captured()
            .iter()
            .map(|c| ok(&[], &c.body).pushes.len())
            .sum();
        assert_eq!(pushes, 1);
    }

    #[test]
    fn dockerhub_fixture() {
        let p = ok(&[], DOCKERHUB);
        assert_eq!(p.sender, "dockerhub");
        assert_eq!(
            p.pushes,
            vec![push("svendowideit/testhook", "latest", None, None)]
        );
        assert!(p.ignored.is_empty());
    }

    #[test]
    fn github_fixture_with_headers() {
        let headers = [
            ("X-GitHub-Event", "registry_package"),
            ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ];
        let p = ok(&headers, GITHUB);
        assert_eq!(p.sender, "github");
        assert_eq!(
            p.pushes,
            vec![push(
                "ghcr.io/codertocat/hello-world",
                "v1.4.0",
                Some("sha256:3da1996a8115d7616457760d9920b815241d0a03b34cf5f04e9a0e9d8de37498"),
                Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            )]
        );
    }

    #[test]
    fn github_fixture_by_shape() {
        let p = ok(&[], GITHUB);
        assert_eq!(p.sender, "github");
        assert_eq!(p.pushes.len(), 1);
        assert_eq!(p.pushes[0].repository, "ghcr.io/codertocat/hello-world");
        assert_eq!(p.pushes[0].event_id, None);
    }

    #[test]
    fn harbor_fixture() {
        let p = ok(&[("Authorization", "Bearer x")], HARBOR);
        assert_eq!(p.sender, "harbor");
        assert_eq!(
            p.pushes,
            vec![push(
                "hub.harbor.com/test-webhook/debian",
                "latest",
                Some("sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8"),
                None,
            )]
        );
    }

    #[test]
    fn quay_fixture() {
        let p = ok(&[], QUAY);
        assert_eq!(p.sender, "quay");
        assert_eq!(
            p.pushes,
            vec![push("quay.io/dgangaia/test", "latest", None, None)]
        );
    }

    #[test]
    fn gitea_fixture_with_and_without_headers() {
        let want = vec![push(
            "localhost:3000/user1/giteacontainer",
            "latest",
            None,
            None,
        )];
        for headers in [
            &[][..],
            &[("X-Gitea-Event", "package"), ("X-GitHub-Event", "package")][..],
            &[("x-forgejo-event", "package")][..],
            // X-Gitea-Event dropped by a proxy: the body shape still decides.
            &[("X-GitHub-Event", "package")][..],
        ] {
            let p = ok(headers, GITEA);
            assert_eq!(p.sender, "gitea", "{headers:?}");
            assert_eq!(p.pushes, want, "{headers:?}");
        }
    }

    // ---- other senders and shapes --------------------------------------

    #[test]
    fn native_formats() {
        let cases = [
            (
                r#"{"image":"localhost:5000/acme/web:1.2.3"}"#,
                "localhost:5000/acme/web",
                "1.2.3",
                None,
            ),
            (
                r#"{"image":"acme/web:v1","digest":"sha256:ab"}"#,
                "acme/web",
                "v1",
                Some("sha256:ab"),
            ),
            (
                r#"{"image":"ghcr.io/o/app:v2@sha256:cd"}"#,
                "ghcr.io/o/app",
                "v2",
                Some("sha256:cd"),
            ),
            (
                r#"{"image":"ghcr.io/o/app:v2@sha256:cd","digest":"sha256:cd"}"#,
                "ghcr.io/o/app",
                "v2",
                Some("sha256:cd"),
            ),
            (r#"{"image":" nginx:1 ","digest":null}"#, "nginx", "1", None),
            (r#"{"image":"[::1]:5000/a:b"}"#, "[::1]:5000/a", "b", None),
        ];
        for (body, repo, tag, digest) in cases {
            let p = ok(&[], body);
            assert_eq!(p.sender, "native");
            assert_eq!(p.pushes, vec![push(repo, tag, digest, None)], "{body}");
        }
    }

    #[test]
    fn native_errors() {
        assert_eq!(
            err(&[], r#"{"image": 5}"#),
            PayloadError::WrongType {
                field: "image",
                expected: "a string like \"registry/org/app:tag\""
            }
        );
        assert_eq!(
            err(&[], r#"{"image": null}"#).to_string(),
            "`image` must be a string like \"registry/org/app:tag\""
        );
        let no_tag = err(&[], r#"{"image":"nginx"}"#);
        assert_eq!(no_tag.to_string(), "image \"nginx\" has no tag");
        assert!(matches!(
            err(&[], r#"{"image":"localhost:5000/web"}"#),
            PayloadError::MissingField { field: "tag", .. }
        ));
        assert!(matches!(
            err(&[], r#"{"image":"web:"}"#),
            PayloadError::MissingField { field: "tag", .. }
        ));
        assert!(matches!(
            err(&[], r#"{"image":"web@sha256:ab"}"#),
            PayloadError::MissingField { field: "tag", .. }
        ));
        assert!(matches!(
            err(&[], r#"{"image":":v1"}"#),
            PayloadError::MissingField {
                field: "repository",
                ..
            }
        ));
        assert!(matches!(
            err(&[], r#"{"image":"a:b","digest":5}"#),
            PayloadError::WrongType {
                field: "digest",
                ..
            }
        ));
        assert!(matches!(
            err(&[], r#"{"image":"a:b@sha256:1","digest":"sha256:2"}"#),
            PayloadError::Conflict(_)
        ));
        // Long input is not echoed whole.
        let long = format!(r#"{{"image":"{}"}}"#, "a".repeat(10_000));
        assert!(err(&[], &long).to_string().len() < 200);
    }

    #[test]
    fn body_errors() {
        assert_eq!(err(&[], ""), PayloadError::Empty);
        assert_eq!(err(&[], "  \n"), PayloadError::Empty);
        assert!(matches!(err(&[], "not json"), PayloadError::NotJson(_)));
        assert!(err(&[], "{").to_string().starts_with("body is not JSON: "));
        assert_eq!(err(&[], "\u{FEFF}{}"), PayloadError::UnknownShape);
        assert_eq!(err(&[], "\u{FEFF}"), PayloadError::Empty);
        assert_eq!(ok(&[], &format!("\u{FEFF}{QUAY}")).pushes.len(), 1);
        assert_eq!(err(&[], "[]"), PayloadError::NotAnObject("array"));
        assert_eq!(
            err(&[], r#"[{"image":"a:b"}]"#),
            PayloadError::NotAnObject("array")
        );
        assert_eq!(err(&[], "\"x\""), PayloadError::NotAnObject("string"));
        assert_eq!(err(&[], "{}"), PayloadError::UnknownShape);
        assert_eq!(err(&[], r#"{"hello":"world"}"#), PayloadError::UnknownShape);
        assert_eq!(
            err(&[], r#"{"specversion":"1.0","type":"com.example.other"}"#),
            PayloadError::UnknownShape
        );
        assert_eq!(
            err(&[], "{}").to_string(),
            "body is not a known webhook payload: expected {\"image\": \"repo:tag\"} or a registry's push notification"
        );
        assert!(matches!(
            parse(&[], &[b'{', 0xff, b'}']),
            Err(PayloadError::NotJson(_))
        ));
    }

    fn distribution_event(id: &str, action: &str, media_type: &str, tag: Option<&str>) -> Value {
        let mut target = serde_json::json!({
            "mediaType": media_type,
            "digest": MANIFEST_DIGEST,
            "repository": "acme/web",
            "url": format!("https://registry.example.com:5443/v2/acme/web/manifests/{MANIFEST_DIGEST}"),
        });
        if let Some(tag) = tag {
            target["tag"] = tag.into();
        }
        serde_json::json!({
            "id": id, "action": action, "target": target,
            "request": {"host": "ignored.example.com"},
        })
    }

    #[test]
    fn distribution_envelope_many_events() {
        let oci = "application/vnd.oci.image.index.v1+json";
        let body = serde_json::json!({"events": [
            distribution_event("a", "push", "application/octet-stream", None),
            distribution_event("b", "push", oci, Some("2.0")),
            distribution_event("b", "push", oci, Some("2.0")),
            distribution_event("c", "push", "application/vnd.oci.image.manifest.v1+json", None),
            distribution_event("d", "pull", oci, Some("2.0")),
            distribution_event("e", "delete", oci, None),
            distribution_event("f", "mount", "application/vnd.oci.image.layer.v1.tar+gzip", None),
            distribution_event("g", "push", "application/vnd.docker.distribution.manifest.v1+prettyjws", Some("old")),
            distribution_event("h", "push", "application/vnd.docker.distribution.manifest.list.v2+json; charset=utf-8", Some("3.0")),
            5,
        ]})
        .to_string();
        let p = ok(&[("content-type", V2)], &body);
        assert_eq!(p.sender, "distribution");
        assert_eq!(
            p.pushes,
            vec![
                push(
                    "registry.example.com:5443/acme/web",
                    "2.0",
                    Some(MANIFEST_DIGEST),
                    Some("b")
                ),
                push(
                    "registry.example.com:5443/acme/web",
                    "3.0",
                    Some(MANIFEST_DIGEST),
                    Some("h")
                ),
            ]
        );
        let reasons = p.ignored.join("\n");
        for needle in [
            "event a: blob push (application/octet-stream) ignored",
            "event b: repeated in the envelope, ignored",
            "event c: untagged manifest push (sha256:b2c8",
            "event d: pull of acme/web ignored",
            "event e: delete of acme/web ignored",
            "event f: mount of acme/web ignored",
            "event g: push of unsupported manifest type",
            "event #9: not an object, ignored",
        ] {
            assert!(reasons.contains(needle), "missing {needle:?} in\n{reasons}");
        }
    }

    #[test]
    fn distribution_host_falls_back_to_request_host_and_never_guesses() {
        let mut ev = distribution_event("x", "push", MANIFEST_MEDIA_TYPES[0], Some("t"));
        ev["target"]["url"] = "not a url".into();
        let p = ok(
            &[],
            &serde_json::json!({"events": [ev.clone()]}).to_string(),
        );
        assert_eq!(p.pushes[0].repository, "ignored.example.com/acme/web");

        ev["target"]["url"] = "http://user:pw@[::1]:5000/v2/acme/web/manifests/t".into();
        let p = ok(
            &[],
            &serde_json::json!({"events": [ev.clone()]}).to_string(),
        );
        assert_eq!(p.pushes[0].repository, "[::1]:5000/acme/web");

        ev["target"].as_object_mut().unwrap().remove("url");
        ev.as_object_mut().unwrap().remove("request");
        let p = ok(&[], &serde_json::json!({"events": [ev]}).to_string());
        assert!(only_ignored(&p, "distribution").contains("names no registry host"));
    }

    #[test]
    fn distribution_media_type_header_v1_and_v2() {
        for ct in [
            V1,
            V2,
            "Application/Vnd.Docker.Distribution.Events.V2+JSON; charset=utf-8",
        ] {
            // `events` is omitempty upstream: `{}` is an empty envelope.
            let p = ok(&[("Content-Type", ct)], "{}");
            assert_eq!(
                only_ignored(&p, "distribution"),
                "distribution: envelope with no events ignored"
            );
            let body = &captured()[8].body;
            assert_eq!(ok(&[("CONTENT-TYPE", ct)], body).pushes.len(), 1);
        }
        let p = ok(&[], r#"{"events": []}"#);
        assert_eq!(
            only_ignored(&p, "distribution"),
            "distribution: envelope with no events ignored"
        );
        assert!(matches!(
            err(&[], r#"{"events": {}}"#),
            PayloadError::WrongType {
                field: "events",
                ..
            }
        ));
        assert_eq!(
            err(&[("Content-Type", V1)], "[]"),
            PayloadError::NotAnObject("array")
        );
    }

    #[test]
    fn acr_single_event() {
        let body = r#"{
          "id": "cb8c3971-9adc-488b-bdd8-43cbb4974ff5",
          "timestamp": "2017-11-17T16:52:01.343145347Z",
          "action": "push",
          "target": {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "size": 524,
            "digest": "sha256:80f0d5c8786bb9e621a45ece0db56d11cdc624ad20da9fe62e9d25490f331d7d",
            "length": 524,
            "repository": "hello-world",
            "tag": "v1"
          },
          "request": {
            "id": "3cbb6949-7549-4fa1-86cd-a6d5451dffc7",
            "host": "myregistry.azurecr.io",
            "method": "PUT",
            "useragent": "docker/17.09.0-ce"
          }
        }"#;
        let p = ok(&[], body);
        assert_eq!(p.sender, "acr");
        assert_eq!(
            p.pushes,
            vec![push(
                "myregistry.azurecr.io/hello-world",
                "v1",
                Some("sha256:80f0d5c8786bb9e621a45ece0db56d11cdc624ad20da9fe62e9d25490f331d7d"),
                Some("cb8c3971-9adc-488b-bdd8-43cbb4974ff5"),
            )]
        );
        let del = body.replace("\"push\"", "\"delete\"");
        assert!(only_ignored(&ok(&[], &del), "acr").contains("delete of hello-world ignored"));
        let ping = r#"{"id":"1","timestamp":"2017-11-17T16:52:01Z","action":"ping"}"#;
        assert_eq!(
            only_ignored(&ok(&[], ping), "acr"),
            "acr event 1: ping ignored"
        );
    }

    #[test]
    fn github_ignores() {
        let ping = ok(
            &[("X-GitHub-Event", "ping")],
            r#"{"zen":"Design for failure.","hook_id":1}"#,
        );
        assert_eq!(only_ignored(&ping, "github"), "ping ignored");
        let ping = ok(
            &[],
            r#"{"zen":"Keep it logically awesome.","hook_id":1,"hook":{}}"#,
        );
        assert_eq!(only_ignored(&ping, "github"), "ping ignored");
        let push_event = ok(
            &[("x-github-event", "push")],
            r#"{"ref":"refs/heads/main"}"#,
        );
        assert!(only_ignored(&push_event, "github").contains("push event ignored"));

        let mut untagged: Value = serde_json::from_str(GITHUB).unwrap();
        untagged["registry_package"]["package_version"]["container_metadata"]["tag"]["name"] =
            "".into();
        let p = ok(
            &[("X-GitHub-Event", "registry_package")],
            &untagged.to_string(),
        );
        assert_eq!(
            only_ignored(&p, "github"),
            "github: untagged package version sha256:3da1996a8115d7616457760d9920b815241d0a03b34cf5f04e9a0e9d8de37498 ignored"
        );

        let mut npm: Value = serde_json::from_str(GITHUB).unwrap();
        npm["registry_package"]["package_type"] = "npm".into();
        assert!(only_ignored(&ok(&[], &npm.to_string()), "github").contains("npm package ignored"));

        let mut deleted: Value = serde_json::from_str(GITHUB).unwrap();
        deleted["action"] = "deleted".into();
        assert_eq!(
            only_ignored(&ok(&[], &deleted.to_string()), "github"),
            "github: package deleted ignored"
        );
    }

    #[test]
    fn github_package_event_key_and_slash_in_name() {
        let mut v: Value = serde_json::from_str(GITHUB).unwrap();
        let mut pkg = v["registry_package"].take();
        pkg["name"] = "Cadence/API".into();
        pkg["namespace"] = "Octo-Org".into();
        pkg["package_type"] = "container".into();
        let body = serde_json::json!({"action": "updated", "package": pkg}).to_string();
        let p = ok(&[("X-GitHub-Event", "package")], &body);
        assert_eq!(p.sender, "github");
        assert_eq!(p.pushes[0].repository, "ghcr.io/octo-org/cadence/api");
        assert_eq!(p.pushes[0].tag, "v1.4.0");
    }

    #[test]
    fn github_falls_back_to_owner_and_package_url() {
        let mut v: Value = serde_json::from_str(GITHUB).unwrap();
        v["registry_package"]
            .as_object_mut()
            .unwrap()
            .remove("namespace");
        assert_eq!(
            ok(&[], &v.to_string()).pushes[0].repository,
            "ghcr.io/codertocat/hello-world"
        );
        v["registry_package"]
            .as_object_mut()
            .unwrap()
            .remove("name");
        assert_eq!(
            ok(&[], &v.to_string()).pushes[0].repository,
            "ghcr.io/codertocat/hello-world"
        );
        v["registry_package"]["package_version"]
            .as_object_mut()
            .unwrap()
            .remove("package_url");
        assert!(matches!(
            err(&[], &v.to_string()),
            PayloadError::MissingField { .. }
        ));
    }

    #[test]
    fn gitea_ignores() {
        let mut v: Value = serde_json::from_str(GITEA).unwrap();
        v["package"]["version"] =
            "sha256:0f5d3bd8c9a28ec8a0d6cdbd33b3ad5a1b4f3e4f1ff6b03df1ab7b0c1a5a7f0e".into();
        let p = ok(&[("X-Gitea-Event", "package")], &v.to_string());
        assert!(only_ignored(&p, "gitea").starts_with("gitea: untagged manifest sha256:0f5d"));

        let mut v: Value = serde_json::from_str(GITEA).unwrap();
        v["action"] = "deleted".into();
        assert_eq!(
            only_ignored(&ok(&[], &v.to_string()), "gitea"),
            "gitea: package deleted ignored"
        );

        let mut v: Value = serde_json::from_str(GITEA).unwrap();
        v["package"]["type"] = "npm".into();
        assert!(only_ignored(&ok(&[], &v.to_string()), "gitea").contains("npm package ignored"));

        let p = ok(&[("X-Gitea-Event", "push")], r#"{"ref":"refs/heads/main"}"#);
        assert!(only_ignored(&p, "gitea").contains("push event ignored"));
    }

    #[test]
    fn gitea_without_any_host_is_an_error_not_docker_hub() {
        let mut v: Value = serde_json::from_str(GITEA).unwrap();
        v["package"].as_object_mut().unwrap().remove("html_url");
        assert!(matches!(
            err(&[], &v.to_string()),
            PayloadError::MissingField { .. }
        ));
        v["repository"] = serde_json::json!({"html_url": "https://git.example.com/User1/repo"});
        assert_eq!(
            ok(&[], &v.to_string()).pushes[0].repository,
            "git.example.com/user1/giteacontainer"
        );
    }

    #[test]
    fn harbor_ignores_and_cloudevents() {
        for ty in ["PULL_ARTIFACT", "DELETE_ARTIFACT", "SCANNING_COMPLETED"] {
            let body = HARBOR.replace("PUSH_ARTIFACT", ty);
            assert_eq!(
                only_ignored(&ok(&[], &body), "harbor"),
                format!("harbor: {ty} event ignored")
            );
        }
        let untagged = serde_json::json!({
            "type": "PUSH_ARTIFACT",
            "event_data": {"resources": [{
                "digest": "sha256:dd", "tag": "",
                "resource_url": "harbor.dev/library/busybox@sha256:dd"}]}
        });
        assert!(only_ignored(&ok(&[], &untagged.to_string()), "harbor")
            .contains("untagged artifact #0 (sha256:dd)"));
        let no_url = serde_json::json!({
            "type": "PUSH_ARTIFACT",
            "event_data": {"resources": [{"digest": "sha256:dd", "tag": "v1"}],
                           "repository": {"repo_full_name": "library/busybox"}}
        });
        assert!(only_ignored(&ok(&[], &no_url.to_string()), "harbor")
            .contains("no usable resource_url"));

        // Structured CloudEvents, as Harbor 2.8+ posts them.
        let data: Value = serde_json::from_str::<Value>(HARBOR).unwrap()["event_data"].clone();
        let ce = serde_json::json!({
            "specversion": "1.0", "id": "4b2f89a6-548d-4c12-9993-a1f5790b97d2",
            "requestid": "r", "source": "/projects/1/webhook/policies/3",
            "type": "harbor.artifact.pushed", "datacontenttype": "application/json",
            "time": "2023-03-06T06:08:43Z", "data": data, "operator": "admin"
        });
        let p = ok(
            &[("Content-Type", "application/cloudevents+json")],
            &ce.to_string(),
        );
        assert_eq!(p.sender, "harbor");
        assert_eq!(
            p.pushes,
            vec![push(
                "hub.harbor.com/test-webhook/debian",
                "latest",
                Some("sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8"),
                Some("4b2f89a6-548d-4c12-9993-a1f5790b97d2"),
            )]
        );
        let mut pulled = ce.clone();
        pulled["type"] = "harbor.artifact.pulled".into();
        assert_eq!(
            only_ignored(&ok(&[], &pulled.to_string()), "harbor"),
            "harbor: harbor.artifact.pulled event ignored"
        );

        // Binary mode: attributes in ce-* headers, the body is `data`.
        let headers = [
            ("ce-specversion", "1.0"),
            ("Ce-Type", "harbor.artifact.pushed"),
            ("ce-id", "ev-1"),
        ];
        let p = ok(&headers, &data.to_string());
        assert_eq!(p.pushes[0].repository, "hub.harbor.com/test-webhook/debian");
        assert_eq!(p.pushes[0].event_id.as_deref(), Some("ev-1"));
    }

    #[test]
    fn dockerhub_without_tag_is_ignored() {
        let mut v: Value = serde_json::from_str(DOCKERHUB).unwrap();
        v["push_data"].as_object_mut().unwrap().remove("tag");
        assert_eq!(
            only_ignored(&ok(&[], &v.to_string()), "dockerhub"),
            "dockerhub: push of svendowideit/testhook without a tag ignored"
        );
        let no_repo = r#"{"push_data":{"tag":"v1"},"repository":{}}"#;
        assert!(matches!(
            err(&[], no_repo),
            PayloadError::MissingField { .. }
        ));
    }

    #[test]
    fn quay_many_tags_and_no_tags() {
        let body = r#"{"docker_url":"quay.io/ns/app","updated_tags":["v1","latest","v1",7]}"#;
        let p = ok(&[], body);
        assert_eq!(
            p.pushes,
            vec![
                push("quay.io/ns/app", "v1", None, None),
                push("quay.io/ns/app", "latest", None, None)
            ]
        );
        assert_eq!(p.ignored.len(), 2, "{p:?}");
        let build = r#"{"docker_url":"quay.io/ns/app","build_id":"x","docker_tags":["v1"]}"#;
        assert!(only_ignored(&ok(&[], build), "quay").contains("not a repo_push"));
    }

    /// Found by `fuzz/` (target `payload`): Quay `docker_url` "/" gave a
    /// push with an empty repository; more generally a repository whose
    /// first component is not a registry host was handed over, and the
    /// caller reads it as Docker Hub's: Harbor `resource_url` "library/app:v1"
    /// or Quay `docker_url` "ns/app" became `docker.io/library/app` and
    /// `docker.io/ns/app`; a Gitea `html_url` (or distribution `request.host`)
    /// host without '.' or ':' ("gitea") did the same.
    #[test]
    fn never_hands_over_a_repository_that_reads_as_docker_hub() {
        for docker_url in ["/", "https://", "http:///"] {
            let quay = format!(r#"{{"docker_url":"{docker_url}","updated_tags":["v1"]}}"#);
            assert!(matches!(err(&[], &quay), PayloadError::MissingField { .. }));
        }
        let harbor = HARBOR.replace("hub.harbor.com/", "");
        assert!(only_ignored(&ok(&[], &harbor), "harbor").contains("no usable resource_url"));
        let harbor = HARBOR.replace("hub.harbor.com/", "harbor/");
        assert!(only_ignored(&ok(&[], &harbor), "harbor").contains("no usable resource_url"));

        let quay = r#"{"docker_url":"https://ns/app","updated_tags":["v1"]}"#;
        assert!(matches!(err(&[], quay), PayloadError::MissingField { .. }));
        assert!(err(&[], r#"{"docker_url":"app","updated_tags":["v1"]}"#)
            .to_string()
            .contains("registry host"));

        let mut event = distribution_event("a", "push", MANIFEST_MEDIA_TYPES[0], Some("1"));
        event["target"].as_object_mut().unwrap().remove("url");
        event["request"]["host"] = "registry".into();
        let body = serde_json::json!({ "events": [event] }).to_string();
        assert!(
            only_ignored(&ok(&[("Content-Type", V1)], &body), "distribution")
                .contains("would be read as a Docker Hub namespace")
        );
        // Hosts Docker does read as hosts are kept.
        for host in [
            "registry:5000",
            "localhost",
            "Registry",
            "[::1]",
            "reg.example",
        ] {
            event["request"]["host"] = host.into();
            let body = serde_json::json!({ "events": [event] }).to_string();
            let p = ok(&[("Content-Type", V1)], &body);
            assert_eq!(p.pushes[0].repository, format!("{host}/acme/web"));
        }

        let mut gitea: Value = serde_json::from_str(GITEA).unwrap();
        gitea["package"]["html_url"] = "http://gitea/User1/-/packages/container/x/1".into();
        assert!(matches!(
            err(&[], &gitea.to_string()),
            PayloadError::MissingField { .. }
        ));
        gitea["repository"] = serde_json::json!({"html_url": "http://gitea:3000/User1/repo"});
        assert_eq!(
            ok(&[], &gitea.to_string()).pushes[0].repository,
            "gitea:3000/user1/giteacontainer"
        );
    }

    #[test]
    fn ignored_reasons_are_capped() {
        let events: Vec<Value> = (0..500)
            .map(|i| distribution_event(&i.to_string(), "pull", "application/octet-stream", None))
            .collect();
        let p = ok(&[], &serde_json::json!({ "events": events }).to_string());
        assert_eq!(p.ignored.len(), MAX_IGNORED_REASONS + 1);
        assert_eq!(p.ignored.last().unwrap(), "… and 450 more ignored");
    }

    #[test]
    fn helpers_are_char_boundary_safe() {
        assert_eq!(split_reference("é/ü:ö@ß"), ("é/ü", Some("ö"), Some("ß")));
        assert_eq!(split_reference("h:1/a"), ("h:1/a", None, None));
        assert_eq!(split_reference(""), ("", None, None));
        assert_eq!(split_reference(":"), ("", None, None));
        assert_eq!(split_reference("@"), ("", None, None));
        assert_eq!(url_host("http://é:1/x"), Some("é:1"));
        assert_eq!(url_host("http://"), None);
        assert_eq!(url_host("no-scheme/x"), None);
        assert_eq!(excerpt(&"é".repeat(100)).chars().count(), EXCERPT_CHARS + 1);
        assert_eq!(excerpt("a\nb"), "a?b");
    }

    // ---- robustness -----------------------------------------------------

    /// Every fixture body with the headers its sender would send.
    fn corpus() -> Vec<(Vec<(String, String)>, String)> {
        let mut out: Vec<(Vec<(String, String)>, String)> = captured()
            .into_iter()
            .map(|c| (c.headers, c.body))
            .collect();
        let gh = vec![("X-GitHub-Event".to_string(), "registry_package".to_string())];
        let gitea = vec![("X-Gitea-Event".to_string(), "package".to_string())];
        out.push((vec![], DOCKERHUB.to_string()));
        out.push((gh, GITHUB.to_string()));
        out.push((vec![], HARBOR.to_string()));
        out.push((vec![], QUAY.to_string()));
        out.push((gitea, GITEA.to_string()));
        out.push((
            vec![],
            r#"{"image":"localhost:5000/acme/web:1.2.3@sha256:ab","digest":"sha256:ab"}"#
                .to_string(),
        ));
        out
    }

    fn parse_owned(headers: &[(String, String)], body: &[u8]) -> Result<Payload, PayloadError> {
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let result = parse(&h, body);
        // Whatever comes back must also be printable without panicking.
        match &result {
            Ok(p) => {
                let _ = format!("{p:?}");
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
        result
    }

    #[test]
    fn truncated_and_byte_flipped_fixtures_never_panic() {
        for (headers, body) in corpus() {
            let bytes = body.as_bytes();
            for cut in 0..=bytes.len() {
                let _ = parse_owned(&headers, &bytes[..cut]);
                let _ = parse_owned(&[], &bytes[..cut]);
            }
            for pos in 0..bytes.len() {
                for replacement in [b'"', b'{', b']', b':', b'0', 0x00, 0xC3, 0xFF] {
                    let mut mutated = bytes.to_vec();
                    mutated[pos] = replacement;
                    let _ = parse_owned(&headers, &mutated);
                }
            }
        }
    }

    /// Every JSON path in `v`, as a list of object keys / array indexes.
    fn paths(v: &Value, prefix: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        out.push(prefix.clone());
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    prefix.push(Step::Key(k.clone()));
                    paths(child, prefix, out);
                    prefix.pop();
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    prefix.push(Step::Index(i));
                    paths(child, prefix, out);
                    prefix.pop();
                }
            }
            _ => {}
        }
    }

    #[derive(Clone)]
    enum Step {
        Key(String),
        Index(usize),
    }

    fn at<'v>(v: &'v mut Value, path: &[Step]) -> &'v mut Value {
        path.iter().fold(v, |v, step| match step {
            Step::Key(k) => &mut v[k.as_str()],
            Step::Index(i) => &mut v[*i],
        })
    }

    #[test]
    fn structurally_mutated_fixtures_never_panic() {
        let replacements = [
            Value::Null,
            serde_json::json!(5),
            serde_json::json!(-1.5),
            serde_json::json!(true),
            serde_json::json!([]),
            serde_json::json!(["x", 1]),
            serde_json::json!({}),
            serde_json::json!(""),
            serde_json::json!("é:/@"),
            serde_json::json!("sha256:"),
            serde_json::json!("://@/"),
            serde_json::json!("a".repeat(300)),
        ];
        for (headers, body) in corpus() {
            let original: Value = serde_json::from_str(&body).expect("fixture is JSON");
            let mut all = Vec::new();
            paths(&original, &mut Vec::new(), &mut all);
            for path in &all {
                for replacement in &replacements {
                    let mut mutated = original.clone();
                    *at(&mut mutated, path) = replacement.clone();
                    let text = mutated.to_string();
                    let _ = parse_owned(&headers, text.as_bytes());
                    let _ = parse_owned(&[], text.as_bytes());
                }
                // Also drop the node entirely.
                if let Some((Step::Key(k), parent)) = path.split_last() {
                    let mut mutated = original.clone();
                    if let Some(obj) = at(&mut mutated, parent).as_object_mut() {
                        obj.remove(k);
                    }
                    let _ = parse_owned(&headers, mutated.to_string().as_bytes());
                }
            }
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            parse(&[], deep.as_bytes()),
            Err(PayloadError::NotJson(_))
        ));
        let deep_obj = format!("{}{}", r#"{"events":"#.repeat(10_000), "}".repeat(10_000));
        assert!(parse(&[], deep_obj.as_bytes()).is_err());
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn header_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
            let names = proptest::sample::select(vec![
                "X-GitHub-Event",
                "X-Gitea-Event",
                "X-Forgejo-Event",
                "Content-Type",
                "ce-type",
                "ce-id",
                "X-GitHub-Delivery",
            ]);
            let values = proptest::sample::select(vec![
                "package",
                "registry_package",
                "ping",
                "push",
                V1,
                V2,
                "harbor.artifact.pushed",
                "harbor.artifact.pulled",
                "",
                "é",
            ]);
            proptest::collection::vec((names, values), 0..3).prop_map(|v| {
                v.into_iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect()
            })
        }

        fn json_strategy() -> impl Strategy<Value = Value> {
            let keys = proptest::sample::select(vec![
                "image",
                "digest",
                "events",
                "id",
                "action",
                "target",
                "mediaType",
                "tag",
                "repository",
                "url",
                "request",
                "host",
                "registry_package",
                "package",
                "package_type",
                "package_version",
                "container_metadata",
                "name",
                "namespace",
                "manifest",
                "type",
                "version",
                "owner",
                "login",
                "html_url",
                "event_data",
                "resources",
                "resource_url",
                "specversion",
                "data",
                "push_data",
                "repo_name",
                "docker_url",
                "updated_tags",
                "zen",
                "hook_id",
                "timestamp",
            ]);
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                proptest::sample::select(vec![
                    "push",
                    "pull",
                    "published",
                    "created",
                    "container",
                    "CONTAINER",
                    "PUSH_ARTIFACT",
                    "harbor.artifact.pushed",
                    "a/b:c",
                    "h:1/a:b@sha256:x",
                    "http://h:1/v2/x",
                    "sha256:ab",
                    MANIFEST_MEDIA_TYPES[0],
                    "",
                    "é:/@",
                    "1.0",
                ])
                .prop_map(Value::from),
                ".{0,12}".prop_map(Value::from),
            ];
            leaf.prop_recursive(5, 64, 6, move |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    proptest::collection::vec((keys.clone(), inner), 0..6).prop_map(|kv| {
                        Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                    }),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn arbitrary_bytes_never_panic(headers in header_strategy(), body in proptest::collection::vec(any::<u8>(), 0..256)) {
                let _ = parse_owned(&headers, &body);
            }

            #[test]
            fn arbitrary_webhook_like_json_never_panics(headers in header_strategy(), v in json_strategy()) {
                let result = parse_owned(&headers, v.to_string().as_bytes());
                if let Ok(p) = result {
                    for push in &p.pushes {
                        prop_assert!(!push.repository.is_empty());
                        prop_assert!(!push.tag.is_empty());
                    }
                    prop_assert!(p.ignored.len() <= MAX_IGNORED_REASONS + 1);
                }
            }
        }
    }
}
