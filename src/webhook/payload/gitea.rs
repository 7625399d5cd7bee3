//! Gitea and Forgejo `package` events (Gitea's own container registry).

use serde_json::{Map, Value};

use super::common::{excerpt, is_registry_host, text, url_host, Collector};
use super::PayloadError;

/// Gitea/Forgejo `package` event: `action == "created"`, `package.type ==
/// "container"`, the tag is `package.version`.
///
/// The registry is Gitea itself, so the host comes from the package's (or
/// repository's) `html_url`. Owner and name are lowercased because image
/// paths must be lowercase while Gitea logins keep their display case.
/// Gitea's payload carries no digest.
pub(super) fn gitea_package(
    obj: &Map<String, Value>,
    out: &mut Collector,
) -> Result<(), PayloadError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::payload::test_support::*;

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
}
