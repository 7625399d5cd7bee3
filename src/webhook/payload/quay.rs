//! Quay `repo_push` notifications.

use serde_json::{Map, Value};

use super::common::{excerpt, starts_with_registry_host, text, Collector};
use super::PayloadError;

/// Quay `repo_push`: one push per `updated_tags` entry, repository from
/// `docker_url` ("quay.io/ns/name"). Quay sends no digest.
pub(super) fn quay(obj: &Map<String, Value>, out: &mut Collector) -> Result<(), PayloadError> {
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

#[cfg(test)]
mod tests {
    use crate::webhook::payload::test_support::*;

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
}
