//! wharf's own body, posted by a CI job or a person's script.

use serde_json::{Map, Value};

use super::common::{excerpt, Collector};
use super::PayloadError;

/// wharf's own body: `{"image": "registry/org/app:tag", "digest": "sha256:…"}`.
///
/// Strict, unlike the registry formats: whoever wrote this body can fix it,
/// and an error naming the problem helps them more than a silent 200.
pub(super) fn native(obj: &Map<String, Value>, out: &mut Collector) -> Result<(), PayloadError> {
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

/// `name[:tag][@digest]` in its parts, not validated: the reference crate's
/// [`split`](crate::reference::split), cut where its parser cuts.
///
/// Not [`crate::reference::ImageRef::parse`]: that refuses the whole string
/// at the first malformed part, while this format answers what is wrong by
/// part ("has no tag", a digest that differs from the `digest` field, the
/// caller's "invalid digest …"), and hands the parts, as written, to the
/// caller, which validates them with that grammar.
fn split_reference(reference: &str) -> (&str, Option<&str>, Option<&str>) {
    let parts = crate::reference::split(reference);
    // An empty tag or digest (`web:`, `web@`) is absent, so the caller says
    // "has no tag" rather than "invalid tag ''".
    (
        parts.name,
        parts.tag.filter(|t| !t.is_empty()),
        parts.digest.filter(|d| !d.is_empty()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::payload::test_support::*;

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
    fn split_reference_is_char_boundary_safe() {
        assert_eq!(split_reference("é/ü:ö@ß"), ("é/ü", Some("ö"), Some("ß")));
        assert_eq!(split_reference("h:1/a"), ("h:1/a", None, None));
        assert_eq!(split_reference(""), ("", None, None));
        assert_eq!(split_reference(":"), ("", None, None));
        assert_eq!(split_reference("@"), ("", None, None));
    }
}
