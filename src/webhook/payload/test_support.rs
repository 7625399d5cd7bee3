//! What the sender modules' tests share: the captured fixtures and small
//! helpers to parse a body and compare its pushes.

pub(super) use serde_json::Value;

pub(super) use super::{parse, Payload, PayloadError, PushEvent};

pub(super) const DISTRIBUTION: &str =
    include_str!("../../../tests/fixtures/distribution-2.8.2-docker-push.jsonl");
pub(super) const DOCKERHUB: &str = include_str!("../../../tests/fixtures/dockerhub-push.json");
pub(super) const GITHUB: &str =
    include_str!("../../../tests/fixtures/github-registry-package-published.json");
pub(super) const HARBOR: &str = include_str!("../../../tests/fixtures/harbor-push-artifact.json");
pub(super) const QUAY: &str = include_str!("../../../tests/fixtures/quay-repo-push.json");
pub(super) const GITEA: &str = include_str!("../../../tests/fixtures/gitea-package-created.json");

pub(super) const MANIFEST_DIGEST: &str =
    "sha256:b2c85c3f0915aee5337f8061308f87d2d7306580e8cfd653a3b8d44a30f6a4b3";
pub(super) const V1: &str = "application/vnd.docker.distribution.events.v1+json";
pub(super) const V2: &str = "application/vnd.docker.distribution.events.v2+json";
/// One captured request of the distribution JSONL fixture.
pub(super) struct Captured {
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: String,
}

pub(super) fn captured() -> Vec<Captured> {
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

pub(super) fn parse_captured(c: &Captured) -> Result<Payload, PayloadError> {
    let headers: Vec<(&str, &str)> = c
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    parse(&headers, c.body.as_bytes())
}

pub(super) fn ok(headers: &[(&str, &str)], body: &str) -> Payload {
    match parse(headers, body.as_bytes()) {
        Ok(p) => p,
        Err(e) => panic!("expected Ok for {body}: {e}"),
    }
}

pub(super) fn err(headers: &[(&str, &str)], body: &str) -> PayloadError {
    match parse(headers, body.as_bytes()) {
        Ok(p) => panic!("expected an error for {body}, got {p:?}"),
        Err(e) => e,
    }
}

pub(super) fn push(
    repository: &str,
    tag: &str,
    digest: Option<&str>,
    id: Option<&str>,
) -> PushEvent {
    PushEvent {
        repository: repository.into(),
        tag: tag.into(),
        digest: digest.map(Into::into),
        event_id: id.map(Into::into),
    }
}

/// Asserts a known sender with nothing to deploy and returns its reasons.
pub(super) fn only_ignored(p: &Payload, sender: &str) -> String {
    assert_eq!(p.sender, sender, "{p:?}");
    assert!(p.pushes.is_empty(), "{p:?}");
    assert!(!p.ignored.is_empty(), "{p:?}");
    p.ignored.join("\n")
}
pub(super) fn distribution_event(
    id: &str,
    action: &str,
    media_type: &str,
    tag: Option<&str>,
) -> Value {
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
