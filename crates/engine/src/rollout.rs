//! One deployment across several engines (`hosts = ["a", "b"]`), one after
//! the other, all or nothing: the first engine that fails undoes the ones
//! already done, newest first. Shared by the docker and swarm deployers,
//! which differ only in what "deploy" and "undo" mean on one engine.

use std::time::Duration;

use async_trait::async_trait;
use wharf_plugin_api::{DeployError, LogSink};

use crate::hosts::Endpoint;
use crate::{Engine, EngineError};

/// Connect to `endpoint` for a deployment, or say clearly why not.
///
/// # Errors
/// `Unavailable` with the engine's address and the cause.
pub async fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<Engine, DeployError> {
    Engine::connect_to(endpoint, timeout).await.map_err(|e| match e {
        EngineError::Unreachable { host, message } => DeployError::Unavailable(match endpoint {
            Endpoint::Local => format!(
                "cannot reach the Docker engine at {host} (is dockerd running, and may wharf use its socket?): {message}"
            ),
            Endpoint::Remote(_) => format!("cannot reach the Docker engine {host}: {message}"),
        }),
        other => DeployError::Unavailable(other.to_string()),
    })
}

/// What a deployer does on one engine, and how it takes that back.
#[async_trait]
pub trait PerEngine: Sync {
    /// What a successful step leaves behind, to commit or undo later.
    type Done: Send;

    async fn deploy(&self, endpoint: &Endpoint) -> Result<Self::Done, DeployError>;

    /// Take a successful step back; what happened, for the error message.
    async fn undo(&self, done: Self::Done) -> String;
}

/// Run `step` on each of `engines` in order; the engines' labels with what
/// each step returned. With more than one engine the log gets a heading per
/// engine, and errors name the engine they came from.
///
/// # Errors
/// The first engine's error, after [`PerEngine::undo`] ran for every engine
/// already done; its message then ends with what each undo did (`what`
/// names the engines in it: "hosts", "swarms").
pub async fn one_after_another<S: PerEngine>(
    engines: &[Endpoint],
    what: &str,
    log: &LogSink,
    step: &S,
) -> Result<Vec<(String, S::Done)>, DeployError> {
    let several = engines.len() > 1;
    let mut done: Vec<(String, S::Done)> = Vec::new();
    for endpoint in engines {
        let label = endpoint.describe();
        if several {
            log.info(format!("== {label} =="));
        }
        let error = match step.deploy(endpoint).await {
            Ok(value) => {
                done.push((label, value));
                continue;
            }
            // Connection errors name the engine already.
            Err(error) if several && !error.to_string().contains(&label) => {
                error.reworded(|m| format!("{label}: {m}"))
            }
            Err(error) => error,
        };
        if done.is_empty() {
            return Err(error);
        }
        let mut undone = Vec::new();
        while let Some((done_label, value)) = done.pop() {
            log.info(format!("== {done_label}: rolling back =="));
            undone.push(format!("{done_label}: {}", step.undo(value).await));
        }
        let undone = undone.join("; ");
        return Err(
            error.reworded(|m| format!("{m}; rolled back the {what} already done: {undone}"))
        );
    }
    Ok(done)
}

/// One summary line from each engine's: the engine's label before each
/// when there are several.
pub fn summary(parts: Vec<(String, String)>) -> String {
    let several = parts.len() > 1;
    parts
        .into_iter()
        .map(|(label, part)| {
            if several {
                format!("{label}: {part}")
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hosts::Remote;

    fn engine(name: &str) -> Endpoint {
        Endpoint::Remote(Remote {
            label: name.into(),
            url: format!("tcp://{name}:2375"),
            tls: None,
            ssh_key: None,
        })
    }

    /// Fails on the engine labelled `fail_on`; records what it undid.
    struct Step {
        fail_on: &'static str,
        undone: std::sync::Mutex<Vec<String>>,
    }

    #[async_trait]
    impl PerEngine for Step {
        type Done = String;

        async fn deploy(&self, endpoint: &Endpoint) -> Result<String, DeployError> {
            match endpoint.describe() {
                label if label.starts_with(self.fail_on) => {
                    Err(DeployError::Failed("unhealthy".into()))
                }
                label => Ok(label),
            }
        }

        async fn undo(&self, done: String) -> String {
            self.undone.lock().unwrap().push(done);
            "restored".into()
        }
    }

    #[tokio::test]
    async fn the_first_failure_undoes_the_engines_done_newest_first() {
        let (log, mut lines) = LogSink::channel();
        let engines = [engine("a"), engine("b"), engine("c"), engine("d")];
        let step = Step {
            fail_on: "c",
            undone: Default::default(),
        };
        let error = one_after_another(&engines, "hosts", &log, &step)
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "c (tcp://c:2375): unhealthy; rolled back the hosts already done: b (tcp://b:2375): restored; a (tcp://a:2375): restored"
        );
        assert_eq!(
            *step.undone.lock().unwrap(),
            ["b (tcp://b:2375)", "a (tcp://a:2375)"]
        );
        drop(log);
        let mut headings = Vec::new();
        while let Some(line) = lines.recv().await {
            headings.push(line.text);
        }
        // d was never touched.
        assert!(!headings.iter().any(|l| l.contains("== d")), "{headings:?}");
    }

    #[tokio::test]
    async fn one_engine_keeps_its_error_and_summary_as_they_are() {
        let (log, _lines) = LogSink::channel();
        let step = Step {
            fail_on: "the local engine",
            undone: Default::default(),
        };
        let result = one_after_another(&[Endpoint::Local], "hosts", &log, &step).await;
        assert_eq!(result.unwrap_err().to_string(), "unhealthy");
        assert_eq!(summary(vec![("x".into(), "runs v2".into())]), "runs v2");
        assert_eq!(
            summary(vec![
                ("a".into(), "runs v2".into()),
                ("b".into(), "runs v2".into())
            ]),
            "a: runs v2; b: runs v2"
        );
    }
}
