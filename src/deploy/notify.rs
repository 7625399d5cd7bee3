//! Notifications: every `[[notify]]` entry gets a POST when a deployment
//! ends (filtered by its `events`), as plain JSON or a Slack-compatible
//! message.
//!
//! Notifying runs on its own task, fed by a channel from the engine, and each
//! delivery on a task of its own with a timeout and retries with backoff: a
//! receiver that hangs or fails never delays a deployment or another
//! receiver.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::store::Deployment;
use crate::config::NotifyConfig;

/// Tries per message, and the pause before the first retry (doubled after).
const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// One POST may take this long, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Deliver every ended deployment to the matching receivers until the engine
/// drops its sender.
///
/// The HTTP client (and its TLS setup) is built for the first message that
/// goes out, so a daemon without receivers never builds one.
pub async fn run(receivers: Vec<NotifyConfig>, mut ended: mpsc::UnboundedReceiver<Deployment>) {
    let mut client: Option<reqwest::Client> = None;
    let receivers: Arc<[NotifyConfig]> = receivers.into();
    while let Some(deployment) = ended.recv().await {
        for receiver in receivers.iter() {
            let status = deployment.status.as_str();
            if !receiver.events.is_empty() && !receiver.events.iter().any(|e| e == status) {
                continue;
            }
            let client = match &client {
                Some(client) => client.clone(),
                None => match reqwest::Client::builder()
                    .timeout(REQUEST_TIMEOUT)
                    .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
                    .build()
                {
                    Ok(built) => client.insert(built).clone(),
                    Err(e) => {
                        warn!(error = %e, "cannot build the HTTP client: notifications are off");
                        while ended.recv().await.is_some() {}
                        return;
                    }
                },
            };
            let body = message(receiver, &deployment);
            let url = receiver.url.clone();
            tokio::spawn(deliver(client, url, body, deployment.id.clone()));
        }
    }
}

async fn deliver(client: reqwest::Client, url: String, body: Value, id: String) {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        match client.post(&url).json(&body).send().await {
            Ok(response) if response.status().is_success() => {
                debug!(deployment = %id, host = %host_of(&url), "notification delivered");
                return;
            }
            Ok(response) => warn!(
                deployment = %id,
                host = %host_of(&url),
                status = response.status().as_u16(),
                attempt,
                "notification refused"
            ),
            Err(e) => warn!(
                deployment = %id,
                host = %host_of(&url),
                error = %without_url(e),
                attempt,
                "notification failed"
            ),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
}

/// Receiver URLs often hold a token in the path (Slack's do) or
/// `user:password@` before the host: only the host and port are logged,
/// read by a real URL parser, so no spelling of the userinfo slips through.
fn host_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => match (parsed.host_str(), parsed.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            (None, _) => "<no host>".to_string(),
        },
        Err(_) => "<unparsable url>".to_string(),
    }
}

fn without_url(error: reqwest::Error) -> reqwest::Error {
    error.without_url()
}

/// The body for one receiver.
pub fn message(receiver: &NotifyConfig, deployment: &Deployment) -> Value {
    if receiver.format == "slack" {
        let icon = match deployment.status.as_str() {
            "succeeded" => ":white_check_mark:",
            "failed" | "interrupted" => ":x:",
            _ => ":information_source:",
        };
        json!({
            "text": format!(
                "{icon} {}/{}: {}:{} {} ({}) — {}",
                deployment.project,
                deployment.stage,
                deployment.repository,
                deployment.tag,
                deployment.status.as_str(),
                deployment.trigger,
                deployment.reason.as_deref().unwrap_or("")
            )
        })
    } else {
        json!({ "event": "deployment.finished", "deployment": deployment })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deploy::store::Status;

    #[test]
    fn only_the_host_of_a_receiver_is_logged() {
        assert_eq!(
            host_of("https://hooks.slack.com/services/T0/B0/secret"),
            "hooks.slack.com"
        );
        assert_eq!(host_of("http://127.0.0.1:9/x?token=1"), "127.0.0.1:9");
        assert_eq!(
            host_of("https://user:pa55@hooks.example.com/x"),
            "hooks.example.com"
        );
        assert_eq!(host_of("http://u:p@w@[::1]:8/x"), "[::1]:8");
        assert_eq!(host_of("not a url user:pa55@x"), "<unparsable url>");
    }

    #[test]
    fn slack_messages_carry_a_text() {
        let deployment = Deployment {
            seq: 1,
            id: "d".into(),
            project: "web".into(),
            stage: "prod".into(),
            repository: "docker.io/acme/web".into(),
            tag: "v2".into(),
            digest: None,
            deployer: "script".into(),
            status: Status::Failed,
            trigger: "webhook".into(),
            reason: Some("exit 1".into()),
            created_ms: 0,
            started_ms: None,
            finished_ms: None,
        };
        let receiver = NotifyConfig {
            url: "http://x".into(),
            events: vec![],
            format: "slack".into(),
        };
        let text = message(&receiver, &deployment)["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(text.contains("web/prod") && text.contains("failed") && text.contains("exit 1"));
    }
}
