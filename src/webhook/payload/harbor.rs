//! Harbor push events: the default format and CloudEvents (structured or
//! binary mode).

use serde_json::{Map, Value};

use super::common::{excerpt, starts_with_registry_host, text, Collector};
use super::PayloadError;
use crate::reference::ImageRef;

/// Harbor's default format: `{"type": "PUSH_ARTIFACT", "event_data": {...}}`.
/// Harbor has no event id in this format.
pub(super) fn harbor_default(
    obj: &Map<String, Value>,
    out: &mut Collector,
) -> Result<(), PayloadError> {
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
pub(super) fn harbor_cloudevent(
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
        // Harbor's own name of the artifact, `host/project/repo:tag` or
        // `…@digest`; one that does not parse is no usable resource_url.
        let from_url = ImageRef::parse(url).ok();
        let url_repo = from_url.as_ref().map(ImageRef::repository);
        let digest = text(resource.get("digest"))
            .or_else(|| from_url.as_ref().and_then(|r| r.digest.as_deref()));
        let tag = text(resource.get("tag"))
            .or_else(|| from_url.as_ref().and_then(|r| r.tag.as_deref()))
            .filter(|t| !t.starts_with("sha256:"));
        let Some(tag) = tag else {
            out.ignore(format!(
                "harbor: untagged artifact #{index} ({}) ignored",
                excerpt(digest.unwrap_or("no digest"))
            ));
            continue;
        };
        // The host check is on the text Harbor sent: the parsed name has
        // `docker.io` filled in when the text names no registry.
        let Some(url_repo) = url_repo.filter(|_| starts_with_registry_host(url)) else {
            out.ignore(format!(
                "harbor: artifact #{index} (tag {}) has no usable resource_url, ignored",
                excerpt(tag)
            ));
            continue;
        };
        out.push(&url_repo, tag, digest, id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::payload::test_support::*;

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
}
