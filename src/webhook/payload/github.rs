//! GitHub `package` / `registry_package` events for GHCR containers.

use serde_json::{Map, Value};

use super::common::{excerpt, header, sha256_text, text, Collector};
use super::gitea::gitea_package;
use super::PayloadError;
use crate::reference::ImageRef;

/// GHCR is the fixed host of GitHub's container packages.
const GHCR_HOST: &str = "ghcr.io";

/// A request that carries `X-GitHub-Event`: the header names the event, so
/// anything but a package event is a known sender with nothing to deploy.
pub(super) fn github_by_header(
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
pub(super) fn is_github_package(package: &Value) -> bool {
    package.get("package_type").is_some()
}

/// `package` / `registry_package` event for a GHCR container.
///
/// Repository is `ghcr.io/` + lowercase(namespace/name): GHCR paths are
/// lowercase while GitHub logins keep their display case, and `name` may
/// itself hold a '/' (`cadence/api`).
pub(super) fn github_package(
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
            // Last resort: `package_url` is "ghcr.io/Owner/name:tag", with the
            // login in its display case, so it is read lowercased.
            let url = text(version.and_then(|v| v.get("package_url"))).unwrap_or("");
            match ImageRef::parse(&url.to_lowercase()) {
                Ok(reference) if reference.domain == GHCR_HOST => reference.path,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::payload::test_support::*;

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
}
