//! One poll of one stage: list the repository's tags, pick what to deploy
//! with [`wharf_registry::choose`], and read the digests it needs.
//!
//! What the stage has seen (deployed by any trigger, or recorded by
//! polling) comes from the store, so the choice survives restarts and a
//! webhook's deployment counts as much as a poll's.

use std::time::Instant;

use wharf_registry::auth::{self, Credentials, Lookup};
use wharf_registry::choose;
use wharf_registry::client::{Client, RegistryError, Repository};

use crate::metrics::Metrics;

/// A (tag, digest) to deploy, pinned to that digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub tag: String,
    pub digest: String,
}

/// What a stage polls with, copied from the catalog when the poll starts.
#[derive(Debug, Clone)]
pub struct Target {
    pub repository: Repository,
    /// The stage's tag globs, matched as a push's tag is.
    pub stage: crate::config::project::Stage,
}

/// The credentials the Docker config has for the repository's registry,
/// read at each poll (a `docker login` in between applies at once).
fn credentials(repository: &Repository) -> Option<Credentials> {
    let path = auth::config_path()?;
    match auth::lookup(&path, &repository.registry) {
        Ok(Lookup::Found(credentials)) => Some(credentials),
        Ok(Lookup::HelperOnly(_) | Lookup::None) => None,
        Err(why) => {
            tracing::debug!(%why, "polling without registry credentials");
            None
        }
    }
}

/// Poll `target` once: the (tag, digest) pairs to deploy, given `seen`,
/// every (tag, digest) the stage already has. The requests go one after
/// another: the caller holds the registry host for the whole poll.
///
/// # Errors
/// A registry request failed; nothing is deployed from this poll.
pub async fn poll(
    client: &Client,
    metrics: &Metrics,
    target: &Target,
    seen: &[(String, Option<String>)],
) -> Result<Vec<Found>, RegistryError> {
    let credentials = credentials(&target.repository);
    let started = Instant::now();
    let listed = client.tags(&target.repository, credentials.as_ref()).await;
    metrics.registry_request("tags", started.elapsed());
    let tags: Vec<String> = listed?
        .into_iter()
        .filter(|tag| target.stage.matches(tag))
        .collect();
    let mut wanted: Vec<&str> = Vec::new();
    let floor = choose::highest(seen.iter().map(|(tag, _)| tag.as_str()));
    if let Some(tag) = choose::choose(
        tags.iter().map(String::as_str),
        floor,
        target.stage.prerelease,
    ) {
        wanted.push(tag);
    }
    wanted.extend(
        tags.iter()
            .map(String::as_str)
            .filter(|tag| choose::is_digest_watched(tag)),
    );
    let mut found = Vec::new();
    for tag in wanted {
        let started = Instant::now();
        let digest = client
            .digest(&target.repository, tag, credentials.as_ref())
            .await;
        metrics.registry_request("digest", started.elapsed());
        let digest = digest?;
        let recorded = seen
            .iter()
            .filter(|(seen_tag, _)| seen_tag == tag)
            .filter_map(|(_, digest)| digest.as_deref());
        // A semver candidate is new by version; a watched tag by digest.
        if !choose::is_digest_watched(tag) || choose::changed(recorded, &digest) {
            found.push(Found {
                tag: tag.to_string(),
                digest,
            });
        }
    }
    Ok(found)
}
