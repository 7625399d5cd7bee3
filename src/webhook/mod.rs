//! From a webhook request to recorded deployments, independent of HTTP:
//! verify the signature, parse the payload (any known sender), validate each
//! pushed reference, match it to projects and stages (creating a project for
//! an unknown image when allowed, [`autocreate`]), and record the
//! deployments durably.
//!
//! The secret in the URL is checked before any of this, by the route.

pub mod autocreate;
pub mod matching;
pub mod payload;
pub mod signature;

use std::sync::Arc;

use serde::Serialize;

use crate::config::DaemonConfig;
use crate::deploy::engine::Engine;
use crate::deploy::status::Status;
use crate::deploy::store::StoreError;
use crate::reference::{is_valid_digest, is_valid_tag, normalize_repository};
use autocreate::AutoCreate;
use matching::{match_push, Push};
use signature::SignatureCheck;

/// The response body of an accepted webhook (SPEC "Success").
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub created_project: Option<String>,
    pub deployments: Vec<RecordedDeployment>,
    pub ignored: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct RecordedDeployment {
    pub id: String,
    pub project: String,
    pub stage: String,
    pub tag: String,
    pub status: Status,
}

/// Why a webhook was refused. The message is for the sender.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Handle one webhook body whose URL secret was already accepted.
///
/// # Errors
/// A bad signature (401), a body that is not a usable payload (400), or a
/// store that refused the write (500: nothing was recorded, the sender retries).
pub async fn accept(
    engine: &Arc<Engine>,
    config: &DaemonConfig,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Accepted, WebhookError> {
    let config_all = config;
    let config = &config.webhook;
    if !config.hmac_secret.is_empty() {
        match signature::verify(config.hmac_secret.as_bytes(), headers, body) {
            SignatureCheck::Valid => {}
            SignatureCheck::Invalid => {
                return Err(WebhookError::Unauthorized(
                    "the signature does not match the body",
                ))
            }
            SignatureCheck::Missing if config.require_signature => {
                return Err(WebhookError::Unauthorized(
                    "a signature is required (X-Hub-Signature-256 or X-Gitea-Signature)",
                ))
            }
            SignatureCheck::Missing => {}
        }
    }
    let payload =
        payload::parse(headers, body).map_err(|e| WebhookError::BadRequest(e.to_string()))?;
    let mut accepted = Accepted {
        created_project: None,
        deployments: Vec::new(),
        ignored: payload.ignored,
    };
    let mut pushes = Vec::new();
    let mut invalid = Vec::new();
    for event in payload.pushes {
        match validate(&event) {
            Ok(push) => pushes.push(push),
            Err(why) => invalid.push(why),
        }
    }
    if pushes.is_empty() {
        if let Some(first) = invalid.into_iter().next() {
            return Err(WebhookError::BadRequest(first));
        }
    } else {
        accepted.ignored.extend(invalid);
    }

    let mut catalog = engine.catalog();
    for push in pushes {
        let mut matched = match_push(&catalog, &push, "webhook");
        if matched.unknown_repository {
            match autocreate::for_push(engine, config_all, &push).await {
                AutoCreate::Created(name) => {
                    accepted.created_project.get_or_insert(name);
                    catalog = engine.catalog();
                    matched = match_push(&catalog, &push, "webhook");
                }
                AutoCreate::Exists => {
                    catalog = engine.catalog();
                    matched = match_push(&catalog, &push, "webhook");
                }
                AutoCreate::Skipped(why) => {
                    for line in &mut matched.ignored {
                        *line = format!("{line}: {why}");
                    }
                }
            }
        }
        accepted.ignored.extend(matched.ignored);
        if matched.deployments.is_empty() {
            continue;
        }
        // One sender event may carry several pushes (and GitHub's delivery id
        // is shared by them): a redelivery is the same event *and* image.
        let event_ids: Vec<String> = push
            .event_id
            .iter()
            .map(|id| format!("{id} {}:{}", push.repository, push.tag))
            .collect();
        match engine.submit(matched.deployments, event_ids).await? {
            Some(recorded) => {
                accepted
                    .deployments
                    .extend(recorded.into_iter().map(|d| RecordedDeployment {
                        id: d.id,
                        project: d.project,
                        stage: d.stage,
                        tag: d.tag,
                        status: d.status,
                    }))
            }
            None => accepted.ignored.push(format!(
                "event {} was already received",
                push.event_id.as_deref().unwrap_or("")
            )),
        }
    }
    Ok(accepted)
}

/// Check a pushed reference against Docker's grammar and normalize it.
fn validate(event: &payload::PushEvent) -> Result<Push, String> {
    if !is_valid_tag(&event.tag) {
        return Err(format!(
            "invalid tag '{}': a tag is 1 to 128 letters, digits, '_', '.' or '-', and does not start with '.' or '-'",
            truncate(&event.tag, 80)
        ));
    }
    let repository = normalize_repository(&event.repository)
        .map_err(|e| format!("invalid image reference: {e}"))?;
    if let Some(digest) = &event.digest {
        if !is_valid_digest(digest) {
            return Err(format!(
                "invalid digest '{}': expected sha256:<64 hex digits>",
                truncate(digest, 80)
            ));
        }
    }
    Ok(Push {
        repository,
        tag: event.tag.clone(),
        digest: event.digest.clone(),
        event_id: event.event_id.clone(),
    })
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", text.get(..cut).unwrap_or(text)),
        None => text.to_string(),
    }
}
