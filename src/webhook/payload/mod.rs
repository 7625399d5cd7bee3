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
//!   below); the caller parses them with its reference grammar
//!   ([`crate::reference`]), which is the one place that decides what a valid
//!   reference is. Where a sender packs a whole reference into one string
//!   (Harbor's `resource_url`, GitHub's `package_url`), that grammar splits
//!   it too. wharf's own format is only cut at its `:` and `@` (see
//!   `native`), so that a malformed part is reported by name.
//!
//! One module per sender format; this one tells them apart ([`parse`]) and
//! holds what they share: the result types, and in `common` the collector
//! and the lenient field readers.
//!
//! - `native`: wharf's own `{"image": "repo:tag"}` body.
//! - `distribution`: CNCF distribution envelopes, and ACR's single event.
//! - `dockerhub`, `github` (GHCR), `gitea` (and Forgejo), `harbor` (default
//!   and CloudEvents formats), `quay`.

mod common;
mod distribution;
mod dockerhub;
mod gitea;
mod github;
mod harbor;
mod native;
mod quay;
#[cfg(test)]
mod test_support;

use serde_json::{Map, Value};

use common::{excerpt, header, text, Collector};
use distribution::{acr_event, distribution_envelope, is_distribution_events_type};
use dockerhub::dockerhub;
use gitea::gitea_package;
use github::{github_by_header, github_package, is_github_package};
use harbor::{harbor_cloudevent, harbor_default};
use native::native;
use quay::quay;

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
        acr_event(obj, out);
        return Ok("acr");
    }
    Err(PayloadError::UnknownShape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use distribution::MANIFEST_MEDIA_TYPES;
    use test_support::*;

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
