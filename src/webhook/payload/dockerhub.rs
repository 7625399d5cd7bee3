//! Docker Hub push webhooks: the one sender whose repositories carry no host.

use serde_json::{Map, Value};

use super::common::{excerpt, text, Collector};
use super::PayloadError;

/// Docker Hub: `push_data.tag` + `repository.repo_name`, no host (the caller
/// normalizes to docker.io), no digest.
///
/// A body without a tag is *ignored*, not an error: it is a recognised Docker
/// Hub notification that simply names nothing deployable, and an error would
/// only make Hub report the webhook as failing.
pub(super) fn dockerhub(obj: &Map<String, Value>, out: &mut Collector) -> Result<(), PayloadError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::payload::test_support::*;

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
}
