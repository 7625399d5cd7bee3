//! CNCF distribution (`docker-registry`, `registry:2/3`) notification
//! envelopes, and ACR, which posts one event of the same shape unwrapped.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::common::{excerpt, starts_with_registry_host, text, url_host, Collector};
use super::PayloadError;

/// Manifest and index media types a tag can point at and a runtime can pull.
/// Docker schema 1 is left out on purpose: current Docker no longer pulls it.
pub(super) const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
];

/// `{"events": [...]}` from CNCF distribution (`docker-registry`, `registry:2/3`).
///
/// `events` is `omitempty` upstream, so a missing or empty list is a valid,
/// empty envelope. An event id seen twice in one envelope is counted once,
/// so a repeated event can not deploy twice.
pub(super) fn distribution_envelope(
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

/// ACR's notification: one event of the distribution shape, not wrapped in
/// an `events` envelope.
pub(super) fn acr_event(event: &Map<String, Value>, out: &mut Collector) {
    registry_event("acr", 0, event, &mut HashSet::new(), out);
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
pub(super) fn is_distribution_events_type(content_type: &str) -> bool {
    let base = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    base.starts_with("application/vnd.docker.distribution.events.") && base.ends_with("+json")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::payload::test_support::*;

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
}
