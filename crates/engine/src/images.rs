//! Images: pulls (bounded by their own limits), inspection, the local list,
//! removal.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bollard::query_parameters::{
    CreateImageOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use futures_util::{Stream, StreamExt};
use wharf_registry::auth::Credentials;

use crate::credentials::docker_credentials;
use crate::{Engine, EngineError};

/// How long a pull may take: bollard's own timeout covers an answer's
/// headers only, and a pull's answer is a stream of events that a stalled
/// registry can keep open for ever, holding the stage and a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullLimits {
    /// The whole pull (`pull_timeout`).
    pub overall: Duration,
    /// The longest gap between two events of the pull (`pull_idle_timeout`).
    pub idle: Duration,
}

impl PullLimits {
    /// The next item of `stream`, waiting no longer than the idle limit nor
    /// past the overall one (counted from `started`); `None` at its end.
    ///
    /// # Errors
    /// [`EngineError::TimedOut`] naming the limit that ran out and how long
    /// it is.
    pub async fn next<S: Stream + Unpin>(
        &self,
        stream: &mut S,
        started: std::time::Instant,
    ) -> Result<Option<S::Item>, EngineError> {
        let left = self.overall.saturating_sub(started.elapsed());
        let (wait, why) = if left <= self.idle {
            (
                left,
                format!(
                    "the pull did not finish within {} (pull_timeout)",
                    wharf_plugin_api::duration::format(self.overall)
                ),
            )
        } else {
            (
                self.idle,
                format!(
                    "the pull made no progress for {} (pull_idle_timeout)",
                    wharf_plugin_api::duration::format(self.idle)
                ),
            )
        };
        tokio::time::timeout(wait, stream.next())
            .await
            .map_err(|_| EngineError::TimedOut(why))
    }
}

/// What an image declares about itself.
#[derive(Debug, Clone, Default)]
pub struct ImageInfo {
    pub id: String,
    pub exposed_ports: Vec<String>,
    pub labels: HashMap<String, String>,
    pub has_healthcheck: bool,
}

/// One local image: its id, the names it carries, when it was created.
#[derive(Debug, Clone)]
pub struct ImageEntry {
    pub id: String,
    /// `repo:tag` and `repo@digest`, as the engine lists them.
    pub references: Vec<String>,
    pub created: i64,
}

/// One event of a pull, for the deployment log.
#[derive(Debug, Clone, Default)]
pub struct PullEvent {
    /// The layer, when the event is about one.
    pub layer: Option<String>,
    pub status: String,
    pub current: Option<i64>,
    pub total: Option<i64>,
}

impl Engine {
    /// Pull `repository` at `tag_or_digest` within `limits`, reporting each
    /// event. Giving up drops the stream, which closes the connection: the
    /// engine then cancels the pull itself.
    ///
    /// # Errors
    /// The registry or engine refused (no such tag: [`EngineError::NotFound`]
    /// or `Refused` with the registry's message); a limit ran out
    /// ([`EngineError::TimedOut`]).
    pub async fn pull(
        &self,
        repository: &str,
        tag_or_digest: &str,
        credentials: Option<&Credentials>,
        limits: PullLimits,
        mut progress: impl FnMut(PullEvent),
    ) -> Result<(), EngineError> {
        let started = std::time::Instant::now();
        let options = CreateImageOptionsBuilder::default()
            .from_image(repository)
            .tag(tag_or_digest)
            .build();
        let credentials = credentials.map(docker_credentials);
        let mut stream = self.docker.create_image(Some(options), None, credentials);
        while let Some(event) = limits.next(&mut stream, started).await? {
            let info = event.map_err(|e| self.classify(e))?;
            progress(PullEvent {
                layer: info.id,
                status: info.status.unwrap_or_default(),
                current: info.progress_detail.as_ref().and_then(|p| p.current),
                total: info.progress_detail.as_ref().and_then(|p| p.total),
            });
        }
        Ok(())
    }

    /// Inspect a local image; `None` when the engine does not have it.
    ///
    /// # Errors
    /// The engine failed (not "no such image").
    pub async fn image(&self, reference: &str) -> Result<Option<ImageInfo>, EngineError> {
        let image = match self.docker.inspect_image(reference).await {
            Ok(image) => image,
            Err(e) => {
                return match self.classify(e) {
                    EngineError::NotFound(_) => Ok(None),
                    other => Err(other),
                }
            }
        };
        let config = image.config.unwrap_or_default();
        let mut exposed_ports = config.exposed_ports.unwrap_or_default();
        exposed_ports.sort_by_key(|p| port_order(p));
        Ok(Some(ImageInfo {
            id: image.id.unwrap_or_default(),
            exposed_ports,
            labels: config.labels.unwrap_or_default(),
            has_healthcheck: config
                .healthcheck
                .and_then(|h| h.test)
                .is_some_and(|test| test.first().is_some_and(|t| t != "NONE")),
        }))
    }

    /// Every local image, with the names it carries.
    ///
    /// # Errors
    /// The engine failed.
    pub async fn images(&self) -> Result<Vec<ImageEntry>, EngineError> {
        let options = ListImagesOptionsBuilder::default().build();
        let images = self
            .docker
            .list_images(Some(options))
            .await
            .map_err(|e| self.classify(e))?;
        Ok(images
            .into_iter()
            .map(|image| ImageEntry {
                id: image.id,
                references: image
                    .repo_tags
                    .into_iter()
                    .chain(image.repo_digests)
                    .filter(|r| !r.starts_with("<none>"))
                    .collect(),
                created: image.created,
            })
            .collect())
    }

    /// Ids of the images any container uses, running or not.
    ///
    /// # Errors
    /// The engine failed.
    pub async fn images_in_use(&self) -> Result<HashSet<String>, EngineError> {
        let options = ListContainersOptionsBuilder::default().all(true).build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| self.classify(e))?;
        Ok(containers.into_iter().filter_map(|c| c.image_id).collect())
    }

    /// Remove one name of an image; the image goes with its last name.
    /// Never forced, so an image a container uses is never removed.
    ///
    /// # Errors
    /// The engine refused (in use, …).
    pub async fn remove_image(&self, reference: &str) -> Result<(), EngineError> {
        let options = RemoveImageOptionsBuilder::default().build();
        self.docker
            .remove_image(reference, Some(options), None)
            .await
            .map(|_| ())
            .map_err(|e| self.classify(e))
    }
}

/// EXPOSEd ports in a stable order: TCP before UDP, then by number.
fn port_order(port: &str) -> (bool, u32, String) {
    let (number, protocol) = port.split_once('/').unwrap_or((port, "tcp"));
    (
        protocol != "tcp",
        number.parse().unwrap_or(u32::MAX),
        protocol.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    const LIMITS: PullLimits = PullLimits {
        overall: Duration::from_millis(600),
        idle: Duration::from_millis(200),
    };

    /// Every item of `events` within `LIMITS`; the error's text otherwise.
    async fn drain(mut events: impl Stream<Item = u32> + Unpin) -> Result<usize, String> {
        let started = std::time::Instant::now();
        let mut count = 0;
        while LIMITS
            .next(&mut events, started)
            .await
            .map_err(|e| e.to_string())?
            .is_some()
        {
            count += 1;
        }
        Ok(count)
    }

    /// A stream of `n` items (or endless), one every `every`.
    fn ticking(n: Option<u32>, every: Duration) -> impl Stream<Item = u32> + Unpin {
        Box::pin(stream::unfold(0, move |i| async move {
            if n.is_some_and(|n| i >= n) {
                return None;
            }
            tokio::time::sleep(every).await;
            Some((i, i + 1))
        }))
    }

    #[tokio::test]
    async fn a_pull_that_keeps_going_in_time_is_not_cut() {
        let events = ticking(Some(5), Duration::from_millis(20));
        assert_eq!(drain(events).await, Ok(5));
    }

    #[tokio::test]
    async fn a_silent_pull_fails_on_the_idle_limit() {
        let started = std::time::Instant::now();
        let silent = stream::iter([1, 2]).chain(stream::pending());
        let error = drain(Box::pin(silent)).await.unwrap_err();
        assert_eq!(
            error,
            "the pull made no progress for 200ms (pull_idle_timeout)"
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_millis(500),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn a_pull_that_trickles_on_fails_on_the_overall_limit() {
        let started = std::time::Instant::now();
        let endless = ticking(None, Duration::from_millis(50));
        let error = drain(endless).await.unwrap_err();
        assert_eq!(error, "the pull did not finish within 600ms (pull_timeout)");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(600) && took < Duration::from_millis(900),
            "{took:?}"
        );
    }
}
