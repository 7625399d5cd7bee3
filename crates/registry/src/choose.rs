//! Which tag polling deploys: pure functions over what the registry lists
//! and what the stage has already deployed or recorded (the caller keeps
//! that record, so these stay testable without a registry or a store).
//!
//! - Semver tags (`1.2.3`, `v1.10.0`, `v2.0.0-rc.1`): [`choose`] the highest
//!   by semver precedence, only when it is above the current one: polling
//!   never downgrades, and pre-releases are skipped unless asked for.
//! - Every other tag (`latest`, `main`, `1.2`): a digest watch; [`changed`]
//!   says whether the digest a tag points to now is one the stage has not
//!   recorded for it yet, so a moving tag is deployed once per new digest and
//!   never again for a digest it already had (keel#560's repeat deploys).

use std::cmp::Ordering;

use semver::Version;

/// The semver version a tag spells, with an optional `v` prefix
/// (`v1.10.0`, `1.10.0`); `None` for any other tag (`latest`, `1.2`,
/// `V1.0.0`), which is watched by digest instead.
pub fn version(tag: &str) -> Option<Version> {
    Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()
}

/// True when polling watches `tag` by digest: it is not semver.
pub fn is_digest_watched(tag: &str) -> bool {
    version(tag).is_none()
}

/// The semver tag to deploy: the highest of `tags` by semver precedence
/// (`v1.10.0` over `v1.9.0`), and only if it is above `current`, the highest
/// version the stage has deployed or recorded. Pre-releases (`2.0.0-rc.1`)
/// count only with `prerelease`. Tags that are not semver are ignored, and
/// so is a `current` that is not.
///
/// Of tags of equal precedence (`v1.2.0` and `1.2.0`, or build metadata
/// `1.2.0+a`), none is chosen over the current version, and among
/// themselves the choice is stable (semver's full order, then the tag).
pub fn choose<'t>(
    tags: impl IntoIterator<Item = &'t str>,
    current: Option<&str>,
    prerelease: bool,
) -> Option<&'t str> {
    let floor = current.and_then(version);
    tags.into_iter()
        .filter_map(|tag| version(tag).map(|version| (version, tag)))
        .filter(|(version, _)| prerelease || version.pre.is_empty())
        .filter(|(version, _)| {
            floor
                .as_ref()
                .is_none_or(|floor| version.cmp_precedence(floor) == Ordering::Greater)
        })
        .max_by(|(a, a_tag), (b, b_tag)| {
            a.cmp_precedence(b)
                .then_with(|| a.cmp(b))
                .then_with(|| a_tag.cmp(b_tag))
        })
        .map(|(_, tag)| tag)
}

/// The highest version among `tags` (those the stage has deployed or
/// recorded), the `current` [`choose`] takes. Pre-releases count: a stage
/// that has run `2.0.0-rc.1` is not moved back to `1.9.0` by polling.
pub fn highest<'t>(tags: impl IntoIterator<Item = &'t str>) -> Option<&'t str> {
    choose(tags, None, true)
}

/// True when `head`, the digest a non-semver tag points to now, is not among
/// the digests `recorded` for that tag (the last one and any before it): a
/// new (tag, digest) to deploy. Nothing recorded means changed. `recorded`
/// may be an `Option<&str>` (the last digest only) or any list of them.
pub fn changed<'d>(recorded: impl IntoIterator<Item = &'d str>, head: &str) -> bool {
    !recorded
        .into_iter()
        .any(|digest| digest.eq_ignore_ascii_case(head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_semver_by_precedence_not_by_text() {
        let tags = ["v1.9.0", "v1.10.0", "v1.2.0", "latest"];
        assert_eq!(choose(tags, None, false), Some("v1.10.0"));
        assert_eq!(choose(["1.9.0", "1.10.0"], None, false), Some("1.10.0"));
        assert_eq!(choose(["v0.9.9", "1.0.0"], None, false), Some("1.0.0"));
    }

    #[test]
    fn the_v_prefix_is_optional_and_only_lower_case() {
        assert_eq!(version("v1.2.3"), Version::parse("1.2.3").ok());
        assert_eq!(version("1.2.3"), Version::parse("1.2.3").ok());
        assert_eq!(version("V1.2.3"), None);
        assert_eq!(version("vv1.2.3"), None);
        assert_eq!(
            choose(["v1.2.3", "1.2.4"], Some("v1.2.3"), false),
            Some("1.2.4")
        );
        // The same version spelled the other way is no upgrade.
        assert_eq!(choose(["1.2.3"], Some("v1.2.3"), false), None);
    }

    #[test]
    fn prereleases_are_skipped_unless_asked() {
        let tags = ["v1.9.0", "v2.0.0-rc.1", "v2.0.0-beta.2"];
        assert_eq!(choose(tags, None, false), Some("v1.9.0"));
        assert_eq!(choose(tags, None, true), Some("v2.0.0-rc.1"));
        // The release beats its own pre-releases.
        assert_eq!(
            choose(["v2.0.0-rc.1", "v2.0.0"], None, true),
            Some("v2.0.0")
        );
        assert_eq!(choose(["v2.0.0-rc.1"], None, false), None);
    }

    #[test]
    fn never_a_downgrade_nor_the_same_version() {
        let tags = ["v1.9.0", "v1.10.0"];
        assert_eq!(choose(tags, Some("v1.10.0"), false), None);
        assert_eq!(choose(tags, Some("v1.11.0"), false), None);
        assert_eq!(choose(tags, Some("v1.9.0"), false), Some("v1.10.0"));
        // A stage on a pre-release is not moved back to the release before.
        assert_eq!(choose(tags, Some("v2.0.0-rc.1"), false), None);
        assert_eq!(
            choose(["v2.0.0", "v1.10.0"], Some("v2.0.0-rc.1"), false),
            Some("v2.0.0")
        );
        // Build metadata does not make a version higher.
        assert_eq!(
            choose(["1.0.0+build.2"], Some("1.0.0+build.1"), false),
            None
        );
        // A current tag that is not semver sets no floor.
        assert_eq!(choose(tags, Some("latest"), false), Some("v1.10.0"));
    }

    #[test]
    fn tags_that_are_not_semver_are_left_to_the_digest_watch() {
        let tags = ["latest", "main", "1.2", "v1", "2024-05-01", "sha-abc123"];
        assert_eq!(choose(tags, None, true), None);
        assert!(tags.iter().all(|tag| is_digest_watched(tag)));
        assert!(!is_digest_watched("v1.0.0"));
        assert!(!is_digest_watched("v1.0.0-rc.1"));
    }

    #[test]
    fn ties_are_stable() {
        assert_eq!(choose(["v1.2.0", "1.2.0"], None, false), Some("v1.2.0"));
        assert_eq!(choose(["1.2.0", "v1.2.0"], None, false), Some("v1.2.0"));
    }

    #[test]
    fn the_highest_recorded_version_is_the_floor() {
        let recorded = ["v1.2.0", "latest", "v2.0.0-rc.1", "v1.10.0"];
        assert_eq!(highest(recorded), Some("v2.0.0-rc.1"));
        assert_eq!(highest(["latest"]), None);
    }

    #[test]
    fn a_digest_is_new_once() {
        let a = "sha256:aaaa";
        let b = "sha256:bbbb";
        assert!(changed(None, a), "nothing recorded");
        assert!(!changed(Some(a), a));
        assert!(changed(Some(a), b));
        // A tag moved back to a digest it had before is not redeployed.
        assert!(!changed([a, b], a));
        assert!(changed([a, b], "sha256:cccc"));
    }
}
