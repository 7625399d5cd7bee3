//! Registry polling: one task, started by `wharf serve`, that checks the
//! registry of every stage with `poll = "<interval>"` and records a
//! deployment (trigger `poll`) for what it finds, through the engine like a
//! webhook's, so the queue, approvals and superseding are the same.
//!
//! - The stages polled are read from the live catalog at every turn, so
//!   reloads (a stage gaining, changing or losing `poll`) apply at once.
//! - Each stage is polled at its interval with ±10 % jitter (the first poll
//!   at a random point of its first interval), so stages loaded together do
//!   not poll together.
//! - One poll at a time per registry host; a stage whose host is busy waits
//!   for it. A failed poll backs its stage off (the interval doubled per
//!   failure in a row, up to 32 times or 10 minutes, whichever is longer);
//!   a `429` holds the whole host for its `Retry-After`.
//! - [`check`] decides what a poll deploys; [`status`] keeps `poll_error`.

pub mod check;
pub mod status;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{info, warn};
use wharf_registry::client::{Client, ClientConfig, RegistryError, Repository};

use crate::deploy::engine::Engine;
use crate::deploy::status::Status;
use crate::deploy::store::{NewDeployment, StoreError};
use crate::metrics::Metrics;
use check::{Found, Target};
use status::{PollStatus, StageKey};

/// How often the scheduler looks for due stages and catalog changes.
const TICK: Duration = Duration::from_millis(200);
/// The longest error back-off of a stage whose interval is shorter.
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// Failures in a row beyond which the back-off stops doubling.
const MAX_DOUBLINGS: u32 = 5;
/// A `429` without `Retry-After` holds its host this long.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A polled stage's schedule.
struct Scheduled {
    due: Instant,
    interval: Duration,
    failures: u32,
}

/// Why a poll failed: the registry (shown as `poll_error`, backed off), or
/// the store it reads what the stage has seen from and records into.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A finished poll, sent back to the scheduler.
struct Done {
    key: StageKey,
    host: String,
    result: Result<usize, PollError>,
}

/// Start the poller. It runs until the engine stops accepting deployments.
/// The registry client sets up TLS on its first request: a client that
/// cannot (its TLS backend fails) shows as each polled stage's `poll_error`.
pub fn start(
    engine: Arc<Engine>,
    metrics: Arc<Metrics>,
    status: Arc<PollStatus>,
    insecure_registries: Vec<String>,
) {
    let client = Arc::new(Client::new(ClientConfig {
        insecure_registries,
        ..ClientConfig::default()
    }));
    tokio::spawn(run(engine, client, metrics, status));
}

async fn run(
    engine: Arc<Engine>,
    client: Arc<Client>,
    metrics: Arc<Metrics>,
    status: Arc<PollStatus>,
) {
    let mut schedule: HashMap<StageKey, Scheduled> = HashMap::new();
    let mut busy: HashSet<String> = HashSet::new();
    let mut held: HashMap<String, Instant> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    while engine.is_accepting() {
        let now = Instant::now();
        let catalog = engine.catalog();
        let mut targets: Vec<(StageKey, Target, Duration)> = Vec::new();
        for project in catalog.projects() {
            let Ok(repository) = Repository::parse(&project.repository) else {
                continue;
            };
            for stage in project.stages.values() {
                if let Some(interval) = stage.poll {
                    targets.push((
                        (project.name.clone(), stage.name.clone()),
                        Target {
                            repository: repository.clone(),
                            stage: stage.clone(),
                        },
                        interval,
                    ));
                }
            }
        }
        let polled: HashSet<&StageKey> = targets.iter().map(|(key, _, _)| key).collect();
        schedule.retain(|key, _| polled.contains(key));
        status.retain(|key| polled.contains(key));
        held.retain(|_, until| *until > now);
        for (key, target, interval) in targets {
            let entry = schedule.entry(key.clone()).or_insert_with(|| Scheduled {
                due: now
                    + interval
                        .mul_f64(random_fraction())
                        .min(Duration::from_secs(30)),
                interval,
                failures: 0,
            });
            if entry.interval != interval {
                // A reload changed the interval: the new one applies now.
                entry.interval = interval;
                entry.due = entry.due.min(now + interval);
            }
            let host = target.repository.api_host().to_string();
            if entry.due > now || busy.contains(&host) || held.contains_key(&host) {
                continue;
            }
            // Not due again until this poll ends and reschedules it.
            entry.due = now + Duration::from_secs(24 * 3600);
            busy.insert(host.clone());
            let (engine, client, metrics, done) = (
                engine.clone(),
                client.clone(),
                metrics.clone(),
                done_tx.clone(),
            );
            tokio::spawn(async move {
                let result = poll_stage(&engine, &client, &metrics, &key, &target).await;
                let _ = done.send(Done { key, host, result });
            });
        }
        tokio::select! {
            Some(done) = done_rx.recv() => {
                finish(done, &mut schedule, &mut busy, &mut held, &metrics, &status);
                while let Ok(done) = done_rx.try_recv() {
                    finish(done, &mut schedule, &mut busy, &mut held, &metrics, &status);
                }
            }
            () = tokio::time::sleep(TICK) => {}
        }
    }
}

/// Reschedule a stage after its poll, note the outcome.
fn finish(
    done: Done,
    schedule: &mut HashMap<StageKey, Scheduled>,
    busy: &mut HashSet<String>,
    held: &mut HashMap<String, Instant>,
    metrics: &Metrics,
    status: &PollStatus,
) {
    busy.remove(&done.host);
    let (project, stage) = (&done.key.0, &done.key.1);
    let Some(entry) = schedule.get_mut(&done.key) else {
        return;
    };
    let now = Instant::now();
    match done.result {
        Ok(deployed) => {
            metrics.poll(if deployed > 0 {
                "deployed"
            } else {
                "unchanged"
            });
            entry.failures = 0;
            entry.due = now + jitter(entry.interval);
            if status.set(&done.key, None) {
                info!(%project, %stage, "polling works again");
            }
        }
        Err(error) => {
            if let PollError::Registry(RegistryError::RateLimited { retry_after, .. }) = &error {
                metrics.poll("rate_limited");
                held.insert(
                    done.host.clone(),
                    now + retry_after.unwrap_or(DEFAULT_RETRY_AFTER),
                );
            } else {
                metrics.poll("error");
            }
            entry.failures = entry.failures.saturating_add(1);
            entry.due = now + backoff(entry.interval, entry.failures);
            let message = error.to_string();
            if status.set(&done.key, Some(message.clone())) {
                warn!(%project, %stage, error = %message, "polling failed; backing off");
            }
        }
    }
}

/// `interval` ±10 %.
fn jitter(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + random_fraction() * 0.2)
}

/// A number in [0, 1) for jitter: std's randomly keyed hasher over the
/// clock is plenty for spreading polls (no `rand` dependency for that).
fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The wait after `failures` failed polls in a row.
fn backoff(interval: Duration, failures: u32) -> Duration {
    let doubled = interval.saturating_mul(1 << failures.min(MAX_DOUBLINGS));
    doubled.min(interval.max(MAX_BACKOFF))
}

/// Poll one stage and record what it found; how many deployments it made.
async fn poll_stage(
    engine: &Arc<Engine>,
    client: &Client,
    metrics: &Metrics,
    key: &StageKey,
    target: &Target,
) -> Result<usize, PollError> {
    let (project, stage) = key.clone();
    let seen = engine
        .store()
        .call(move |store| store.seen_tags(&project, &stage))
        .await?;
    let found = check::poll(client, metrics, target, &seen).await?;
    let mut deployed = 0;
    for Found { tag, digest } in found {
        if !engine.is_accepting() {
            break;
        }
        let new = NewDeployment {
            project: key.0.clone(),
            stage: key.1.clone(),
            repository: target.repository.to_string(),
            tag: tag.clone(),
            digest: Some(digest.clone()),
            deployer: target.stage.deployer.clone(),
            status: if target.stage.auto_deploy {
                Status::Queued
            } else {
                Status::AwaitingApproval
            },
            trigger: "poll",
        };
        engine.submit(vec![new], Vec::new()).await?;
        let (project, stage) = key.clone();
        engine
            .store()
            .call(move |store| store.record_polled(&project, &stage, &tag, &digest))
            .await?;
        deployed += 1;
    }
    if deployed > 0 {
        info!(project = %key.0, stage = %key.1, deployed, "polling recorded deployments");
    }
    Ok(deployed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(result: Result<usize, PollError>) -> Done {
        Done {
            key: ("web".into(), "prod".into()),
            host: "r.example".into(),
            result,
        }
    }

    #[test]
    fn a_429_holds_the_host_and_an_error_backs_the_stage_off() {
        let metrics = Metrics::default();
        let status = PollStatus::default();
        let key: StageKey = ("web".into(), "prod".into());
        let mut schedule = HashMap::from([(
            key.clone(),
            Scheduled {
                due: Instant::now(),
                interval: Duration::from_secs(1),
                failures: 0,
            },
        )]);
        let mut busy = HashSet::from(["r.example".to_string()]);
        let mut held = HashMap::new();
        let limited = RegistryError::RateLimited {
            host: "r.example".into(),
            retry_after: Some(Duration::from_secs(120)),
        };
        let before = Instant::now();
        finish(
            done(Err(limited.into())),
            &mut schedule,
            &mut busy,
            &mut held,
            &metrics,
            &status,
        );
        assert!(busy.is_empty(), "the host is free for the next poll");
        assert!(held["r.example"] >= before + Duration::from_secs(119));
        assert_eq!(schedule[&key].failures, 1);
        assert!(status
            .error("web", "prod")
            .unwrap()
            .contains("rate-limiting"));
        finish(
            done(Ok(0)),
            &mut schedule,
            &mut busy,
            &mut held,
            &metrics,
            &status,
        );
        assert_eq!(schedule[&key].failures, 0);
        assert_eq!(status.error("web", "prod"), None, "a good poll clears it");
        let rendered = metrics.render(&[]);
        assert!(rendered.contains("wharf_polls_total{result=\"rate_limited\"} 1"));
        assert!(rendered.contains("wharf_polls_total{result=\"unchanged\"} 1"));
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        let second = Duration::from_secs(1);
        assert_eq!(backoff(second, 1), Duration::from_secs(2));
        assert_eq!(backoff(second, 3), Duration::from_secs(8));
        assert_eq!(backoff(second, 40), Duration::from_secs(32));
        let hour = Duration::from_secs(3600);
        assert_eq!(backoff(hour, 2), hour, "never shorter than the interval");
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(100));
            assert!(j >= Duration::from_secs(90) && j <= Duration::from_secs(110));
        }
    }
}
